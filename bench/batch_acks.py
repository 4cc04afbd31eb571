#!/usr/bin/env python3
"""What acknowledging requests in batches (`basic.ack` with `multiple`) would
give, measured on the raw lapin pair: `raw-lapin serve` as it is against
`RAW_BATCH_ACKS=1 raw-lapin serve`, each on its own queue, driven by the same
`raw-lapin bench`, alternately (ABBA).

    python3 bench/batch_acks.py [--rounds N] [--queue-type classic|quorum]

Prints the median of the per-round throughput ratios (batched/plain) and each
side's median CPU per call of broker, client and server. Needs the release
build of raw-lapin (`cargo build --release -p raw-lapin`).
"""

import argparse
import statistics
import subprocess
import uuid

import run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--queue-type", choices=["classic", "quorum"], default="classic")
    args = parser.parse_args()
    run.BROKER = run.broker_pid()
    tag = uuid.uuid4().hex[:6]
    queues = {"plain": f"bench.acks.plain.{tag}", "batched": f"bench.acks.batched.{tag}"}
    servers = [run.Server([run.RAW, "serve", queue], "raw-lapin serving",
                          {"AMQP_URL": run.URL, "QUEUE_TYPE": args.queue_type,
                           **({"RAW_BATCH_ACKS": "1"} if side == "batched" else {})}, queue)
               for side, queue in queues.items()]
    try:
        results = run.rounds(args.rounds, [
            (side, lambda queue=queue: run.raw_client(queue, 40000, 200))
            for side, queue in queues.items()])
    finally:
        for server in servers:
            server.stop()
        for queue in queues.values():
            subprocess.run([run.CTL, "-q", "delete_queue", queue], capture_output=True)
    ratios = [b["rps"] / a["rps"] for a, b in zip(results["plain"], results["batched"])]
    print(f"`python3 bench/batch_acks.py --rounds {args.rounds} --queue-type {args.queue_type}`: "
          f"batched/plain {statistics.median(ratios):.3f}× "
          f"(rounds: {' '.join(f'{x:.2f}' for x in ratios)})")
    for side, rs in results.items():
        line = ", ".join(f"{who} {run.broker(rs, who)}" for who in ("broker", "client", "server"))
        print(f"{side}: {statistics.median(r['rps'] for r in rs):,.0f} calls/s; µs/call: {line}")


if __name__ == "__main__":
    main()
