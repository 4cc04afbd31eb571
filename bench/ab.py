#!/usr/bin/env python3
"""Our pair against itself at another git revision, or with other options:
a change's cost or gain, side by side, with more rounds than the suite gives
one scenario.

    python3 bench/ab.py REV [--rounds N] [--calls N] [--inflight C]
        [--queue-type classic|quorum] [--serve-options=OPTS] [--bench-options=OPTS]

Builds our binary at REV (as `bench/run.py --baseline` does; REV `.` is this
build), starts a `serve fib` of each build on a queue of its own, and runs
each build's `bench` against its own server, alternately, in ABBA order
(this side first in odd rounds, REV's first in even ones). --serve-options
and --bench-options (one string, split on spaces) and --serve-env go to this side only: with
REV `.` they measure what an option costs, e.g.
`python3 bench/ab.py . --bench-options=--resilient`. Prints each round's
ratios and their medians: throughput this/REV and p50 this/REV.
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
    parser.add_argument("--queue-type", choices=["classic", "quorum"], default="classic")
    parser.add_argument("--serve-options", default="", help="for this side's serve")
    parser.add_argument("--bench-options", default="", help="for this side's bench")
    parser.add_argument("--serve-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for this side's serve (repeatable)")
    args = parser.parse_args()
    (run.TARGET / "bench").mkdir(parents=True, exist_ok=True)
    if run.URL == run.DEFAULT_URL:
        run.run([run.ROOT / "scripts" / "ensure-rabbitmq.sh"], stdout=run.sys.stderr)
    run.run(["cargo", "build", "--release", "--locked", "-q", "-p", "rabbit-rpc-cli"],
            cwd=run.ROOT)
    base = None if args.rev == "." else run.build_baseline(args.rev)
    run.BROKER = run.broker_pid()
    tag = uuid.uuid4().hex[:8]
    queues = {"this": f"bench.ab.this.{tag}", "base": f"bench.ab.base.{tag}"}
    servers = [run.ours_server(queues["this"], queue_type=args.queue_type,
                               serve_options=args.serve_options.split(),
                               env=dict(pair.split("=", 1) for pair in args.serve_env)),
               run.ours_server(queues["base"], queue_type=args.queue_type, binary=base)]
    try:
        results = run.rounds(args.rounds, [
            ("this", lambda: run.ours_client(queues["this"], args.calls, args.inflight,
                                             extra=args.bench_options.split())),
            ("base", lambda: run.ours_client(queues["base"], args.calls, args.inflight,
                                             binary=base))])
    finally:
        for server in servers:
            server.stop()
        for queue in queues.values():
            subprocess.run([run.CTL, "-q", "delete_queue", queue], capture_output=True)
    pairs = list(zip(results["this"], results["base"]))
    rps = [this["rps"] / base["rps"] for this, base in pairs]
    p50 = [this["p50_ms"] / base["p50_ms"] for this, base in pairs]
    options = "".join(f" --{name.replace('_', '-')}={value}" for name, value in
                      [("queue_type", args.queue_type), ("serve_options", args.serve_options),
                       ("bench_options", args.bench_options)] if value and value != "classic")
    options += "".join(f" --serve-env={pair}" for pair in args.serve_env)
    print(f"`python3 bench/ab.py {args.rev} --rounds {args.rounds} --calls {args.calls} "
          f"--inflight {args.inflight}{options}`")
    print("throughput this/base per round: " + " ".join(f"{x:.2f}" for x in rps))
    print(f"median {statistics.median(rps):.3f}×; p50 this/base median "
          f"{statistics.median(p50):.3f}×")
    for who in ("broker", "server", "client"):
        key = f"{who}_us_per_call"
        cpu = {side: [r[key] for r in rs if key in r] for side, rs in results.items()}
        if cpu["this"] and cpu["base"]:
            print(f"{who} CPU per call, median: this {statistics.median(cpu['this']):.1f} µs, "
                  f"base {statistics.median(cpu['base']):.1f} µs")


if __name__ == "__main__":
    main()
