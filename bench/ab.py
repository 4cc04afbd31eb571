#!/usr/bin/env python3
"""Our pair against itself at another git revision: a change's cost or gain,
side by side, with more rounds than the suite gives one scenario.

    python3 bench/ab.py REV [--rounds N] [--calls N] [--inflight C]

Builds our binary at REV (as `bench/run.py --baseline` does), starts a
`serve fib --queue-type classic` of each build on a queue of its own, and
runs each build's `bench` against its own server, alternately, in ABBA
order (this build first in odd rounds, REV's first in even ones). Prints
each round's ratios and their medians: throughput this/REV and p50
this/REV.
"""

import argparse
import statistics
import subprocess
import uuid

import run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=40000)
    parser.add_argument("--inflight", type=int, default=200)
    args = parser.parse_args()
    (run.TARGET / "bench").mkdir(parents=True, exist_ok=True)
    run.run([run.ROOT / "scripts" / "ensure-rabbitmq.sh"], stdout=run.sys.stderr)
    run.run(["cargo", "build", "--release", "--locked", "-q", "-p", "rabbit-rpc-cli"],
            cwd=run.ROOT)
    base = run.build_baseline(args.rev)
    tag = uuid.uuid4().hex[:8]
    queues = {"this": f"bench.ab.this.{tag}", "base": f"bench.ab.base.{tag}"}
    servers = [run.ours_server(queues["this"]), run.ours_server(queues["base"], binary=base)]
    rows = []
    try:
        for i in range(args.rounds):
            order = ["this", "base"] if i % 2 == 0 else ["base", "this"]
            result = {}
            for which in order:
                result[which] = run.ours_client(queues[which], args.calls, args.inflight,
                                                binary=None if which == "this" else base)
            rows.append(result)
            run.say(f"round {i + 1}: this {result['this']['rps']:.0f} calls/s p50 "
                    f"{result['this']['p50_ms']:.3f} ms, {args.rev} {result['base']['rps']:.0f} "
                    f"calls/s p50 {result['base']['p50_ms']:.3f} ms")
    finally:
        for server in servers:
            server.stop()
        for queue in queues.values():
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", queue], capture_output=True)
    rps = [r["this"]["rps"] / r["base"]["rps"] for r in rows]
    p50 = [r["this"]["p50_ms"] / r["base"]["p50_ms"] for r in rows]
    print(f"`python3 bench/ab.py {args.rev} --rounds {args.rounds} --calls {args.calls} "
          f"--inflight {args.inflight}`")
    print("throughput this/base per round: " + " ".join(f"{x:.2f}" for x in rps))
    print(f"median {statistics.median(rps):.3f}×; p50 this/base median "
          f"{statistics.median(p50):.3f}×")


if __name__ == "__main__":
    main()
