#!/usr/bin/env python3
"""What the broker spends per call on what rabbit-rpc's requests carry beyond
the tutorial's: the raw lapin pair with each extra added alone
(`RAW_EXTRAS`, see bench/raw-lapin), then all together, beside our pair as
it is and without the extras its bench can leave out (`--timeout 60d`
sends no expiration, `--content-type=` none); then the raw client with all
five and ids as long as ours (`RAW_ID_PREFIX`), and the pairs crossed (the
raw client with all five against our server, our client against the raw
server, with and without a content type), to tell which side a difference
comes from.

    python3 bench/broker_extras.py [--rounds N] [--calls N] [--inflight C]
        [--only "NAME;..."]

Interleaved rounds (in order, then reversed), medians of the broker's CPU
time per call (from /proc, as run.py measures it). Prints a Markdown table;
JSON to target/bench/broker_extras.json.
"""

import argparse
import json
import statistics
import subprocess
import uuid

import run

EXTRAS = ["mandatory", "expiration", "user_id", "message_id", "content_type"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40000)
    parser.add_argument("--inflight", type=int, default=200)
    parser.add_argument("--only", default="",
                        help="scenario names to run, separated by semicolons (default: all)")
    args = parser.parse_args()
    (run.TARGET / "bench").mkdir(parents=True, exist_ok=True)
    if run.URL == run.DEFAULT_URL:
        run.run([run.ROOT / "scripts" / "ensure-rabbitmq.sh"], stdout=run.sys.stderr)
    run.run(["cargo", "build", "--release", "--locked", "-q", "-p", "rabbit-rpc-cli", "-p",
             "raw-lapin"], cwd=run.ROOT)
    run.BROKER = run.broker_pid()
    tag = uuid.uuid4().hex[:8]
    queues = {"raw": f"bench.extras.raw.{tag}", "ours": f"bench.extras.ours.{tag}"}
    servers = [run.raw_server(queues["raw"]), run.ours_server(queues["ours"])]

    def raw(extras, server="raw", env=None):
        return lambda: run.last_json(
            [run.RAW, "bench", queues[server], str(args.calls), str(args.inflight), "10"],
            {"AMQP_URL": run.URL, "RAW_EXTRAS": ",".join(extras), **(env or {})},
            queue=queues[server])

    def ours(*extra, server="ours"):
        return lambda: run.ours_client(queues[server], args.calls, args.inflight, extra=extra)

    scenarios = [("raw", raw([]))] + [(f"raw + {e}", raw([e])) for e in EXTRAS] + [
        ("raw + all five", raw(EXTRAS)),
        ("ours", ours()),
        ("ours, no expiration (--timeout 60d)", ours("--timeout", "60d")),
        ("ours, no content type (--content-type=)", ours("--content-type=")),
        ("raw + all five, ids as long as ours", raw(EXTRAS, env={"RAW_ID_PREFIX": "8208dd30-"})),
        ("raw client + all five, our server", raw(EXTRAS, server="ours")),
        ("our client, raw server", ours(server="raw")),
        ("our client, raw server, no content type", ours("--content-type=", server="raw")),
    ]
    if args.only:
        wanted = args.only.split(";")
        scenarios = [s for s in scenarios if s[0] in wanted]
    try:
        results = run.rounds(args.rounds, scenarios)
    finally:
        for server in servers:
            server.stop()
        for queue in queues.values():
            subprocess.run([run.CTL, "-q", "delete_queue", queue], capture_output=True)
    (run.TARGET / "bench" / "broker_extras.json").write_text(json.dumps(results, indent=1))
    base = statistics.median(r["broker_us_per_call"] for r in next(iter(results.values())))
    print(f"`python3 bench/broker_extras.py --rounds {args.rounds} --calls {args.calls} "
          f"--inflight {args.inflight}" + (f" --only '{args.only}'" if args.only else "")
          + f"` (RabbitMQ {run.broker_version()}), medians:\n")
    print(f"| pair | broker µs/call | × {next(iter(results))} | calls/s |")
    print("|---|---:|---:|---:|")
    for name, rs in results.items():
        us = statistics.median(r["broker_us_per_call"] for r in rs)
        rps = statistics.median(r["rps"] for r in rs)
        print(f"| {name} | {us:.1f} | {us / base:.2f} | {rps:,.0f} |")


if __name__ == "__main__":
    main()
