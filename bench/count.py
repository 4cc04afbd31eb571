#!/usr/bin/env python3
"""Instructions and context switches per call: our client and server against
the raw lapin pair's, on the same broker, the same calls.

    python3 bench/count.py [--calls N] [--warm N] [--inflight C] [--rounds N]
        [--queue-type classic|quorum] [--rev REV] [--only ours,raw,base]

For each pair (ours: `rabbit-rpc bench` -> `rabbit-rpc serve fib`; raw:
`raw-lapin bench` -> `raw-lapin serve`; with `--rev REV`, base: our pair as
built at git revision REV, in target/bench/baseline like run.py's
--baseline):

* instructions per call of each side, counted by valgrind's callgrind, one
  side under callgrind while the other runs natively: a run of --warm calls
  and one of --warm + --calls calls, each in a process of its own, and
  (I(long) - I(short)) / --calls, so start-up, connection and shutdown
  cancel out;
* with --raw-wire, the same for the raw pair sending what our requests
  carry beyond the tutorial's (mandatory, expiration, user_id, message_id,
  content_type: `RAW_EXTRAS`, see bench/raw-lapin), pair 'raw+wire': how
  much of a difference is the wire's, not our code's;
* context switches per call of each side (voluntary + involuntary, every
  thread: getrusage for the client, /proc/PID/task/*/status for the
  server) and the broker's CPU time per call (as run.py measures it), from
  --rounds native runs per pair, interleaved, medians.

Prints a Markdown table; the figures of every run go to
target/bench/count.json and callgrind's files to target/bench/count/
(`callgrind_annotate --inclusive=yes FILE` shows where each side spends).
Needs valgrind, and the broker as run.py does (AMQP_URL, RABBITMQCTL).
"""

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import run

OUT = run.TARGET / "bench" / "count"
# What our requests carry beyond the tutorial's (see bench/raw-lapin): the
# raw pair with them ('raw+wire') costs what our wire costs, without our code.
RAW_WIRE = "mandatory,expiration,user_id,message_id,content_type"


def callgrind(out_file):
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
            "--dump-instr=no", "--collect-systime=no"]


def instructions(out_file):
    """The instructions (Ir) a callgrind run counted, all dumps together."""
    total = 0
    for path in sorted(out_file.parent.glob(out_file.name + "*")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total += int(line.split()[1])
                break
    if not total:
        raise RuntimeError(f"no totals in {out_file}")
    return total


def clear(out_file):
    for path in out_file.parent.glob(out_file.name + "*"):
        path.unlink()


def switches(pid):
    """Context switches (voluntary + involuntary) of every thread of `pid`."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        total += sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", text))
    return total


class Pair:
    """How to start a pair's server and run its client, natively or under
    a prefix (callgrind)."""

    def __init__(self, name, binary=None):
        self.name = name
        self.binary = binary

    def server(self, queue, qtype, prefix=()):
        if self.name.startswith("raw"):
            cmd = [*prefix, run.RAW, "serve", queue]
            return run.Server(cmd, "raw-lapin serving", {"AMQP_URL": run.URL, "QUEUE_TYPE": qtype},
                              queue)
        cmd = [*prefix, self.binary or run.OURS, "--url", run.URL, "serve", "fib", "--queue", queue,
               "--queue-type", qtype]
        return run.Server(cmd, "serving fib on queue", {"RUST_LOG": "info"}, queue)

    def client(self, queue, calls, inflight, prefix=()):
        if self.name.startswith("raw"):
            extras = RAW_WIRE if self.name == "raw+wire" else ""
            return [*prefix, run.RAW, "bench", queue, str(calls), str(inflight), "10"], \
                {"AMQP_URL": run.URL, "RAW_EXTRAS": extras}
        return [*prefix, self.binary or run.OURS, "--url", run.URL, "bench", "--queue", queue,
                "--calls", str(calls), "--inflight", str(inflight), "--json", "--body", "10"], {}


def stop(server, timeout=120):
    """Stops a server with SIGTERM and waits for it (callgrind writes its
    file as the process ends)."""
    server.proc.terminate()
    try:
        server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    server.log.close()
    os.unlink(server.log.name)


def client_run(pair, queue, calls, inflight, prefix=()):
    cmd, env = pair.client(queue, calls, inflight, prefix)
    run.say("$", " ".join(str(c) for c in cmd))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env=dict(os.environ, **env), timeout=3600)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result.get("errors"):
        raise RuntimeError(f"{cmd}: {result['errors']} calls failed")
    return result


def count_client(pair, queue, args):
    """Instructions per call of the client: a long run less a short one."""
    counted = {}
    for calls in (args.warm, args.warm + args.calls):
        out_file = OUT / f"{pair.name}-client-{calls}.out"
        clear(out_file)
        client_run(pair, queue, calls, args.inflight, callgrind(out_file))
        counted[calls] = instructions(out_file)
    return (counted[args.warm + args.calls] - counted[args.warm]) / args.calls, counted


def count_server(pair, args, tag):
    """Instructions per call of the server: a server that answered a long
    run less one that answered a short one, each on a fresh queue."""
    counted = {}
    for calls in (args.warm, args.warm + args.calls):
        queue = f"bench.count.{pair.name.replace('+', '-')}.server.{calls}.{tag}"
        out_file = OUT / f"{pair.name}-server-{calls}.out"
        clear(out_file)
        server = pair.server(queue, args.queue_type, callgrind(out_file))
        try:
            client_run(pair, queue, calls, args.inflight)
        finally:
            stop(server)
            subprocess.run([run.CTL, "-q", "delete_queue", queue], capture_output=True)
        counted[calls] = instructions(out_file)
    return (counted[args.warm + args.calls] - counted[args.warm]) / args.calls, counted


def native(pair, queue, server, args):
    """One native run: context switches of each side, CPU time per call of
    the broker, the client and the server."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = switches(server.proc.pid)
    cmd, env = pair.client(queue, args.native_calls, args.inflight)
    result = run.last_json(cmd, env, queue=queue)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    calls = result["calls"]
    result["client_cs_per_call"] = (done.ru_nvcsw + done.ru_nivcsw - children.ru_nvcsw
                                    - children.ru_nivcsw) / calls
    result["server_cs_per_call"] = (switches(server.proc.pid) - served) / calls
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000,
                        help="calls counted under callgrind, beyond the warm-up (default 20000)")
    parser.add_argument("--warm", type=int, default=2000,
                        help="calls of the short run subtracted (default 2000)")
    parser.add_argument("--inflight", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5,
                        help="native rounds for context switches and broker CPU (default 5; "
                             "0 for none)")
    parser.add_argument("--native-calls", type=int, default=40000,
                        help="calls per native round (default 40000)")
    parser.add_argument("--queue-type", choices=["classic", "quorum"], default="classic")
    parser.add_argument("--rev", metavar="REV",
                        help="also count our pair as built at git revision REV (pair 'base')")
    parser.add_argument("--only", default="",
                        help="comma-separated pairs to count (ours, raw, base, raw+wire)")
    parser.add_argument("--raw-wire", action="store_true",
                        help="also the raw pair sending our requests' properties and flags "
                             "(pair 'raw+wire')")
    parser.add_argument("--sides", default="client,server",
                        help="the sides to count under callgrind (default client,server; "
                             "empty for native runs only)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if run.URL == run.DEFAULT_URL:
        run.run([run.ROOT / "scripts" / "ensure-rabbitmq.sh"], stdout=sys.stderr)
    run.run(["cargo", "build", "--release", "--locked", "-q", "-p", "rabbit-rpc-cli", "-p",
             "raw-lapin"], cwd=run.ROOT)
    pairs = [Pair("ours"), Pair("raw")]
    if args.raw_wire or "raw+wire" in args.only.split(","):
        pairs.append(Pair("raw+wire"))
    if args.rev:
        pairs.append(Pair("base", run.build_baseline(args.rev)))
    if args.only:
        pairs = [p for p in pairs if p.name in args.only.split(",")]
    run.BROKER = run.broker_pid()
    tag = uuid.uuid4().hex[:8]
    out = {p.name: {} for p in pairs}

    # Native rounds, interleaved (in order, then reversed), medians.
    queues = {p.name: f"bench.count.{p.name.replace('+', '-')}.{tag}" for p in pairs}
    servers = {}
    try:
        for p in pairs if args.rounds else []:
            servers[p.name] = p.server(queues[p.name], args.queue_type)
        for p in pairs if args.rounds else []:  # a warm-up each, uncounted
            client_run(p, queues[p.name], 2000, args.inflight)
        runs = {p.name: [] for p in pairs}
        for i in range(args.rounds):
            for p in (pairs if i % 2 == 0 else pairs[::-1]):
                r = native(p, queues[p.name], servers[p.name], args)
                runs[p.name].append(r)
                run.say(f"  {p.name}: {r['rps']:.0f} calls/s, ctx switches/call client "
                        f"{r['client_cs_per_call']:.3f} server {r['server_cs_per_call']:.3f}, "
                        f"µs/call broker {r.get('broker_us_per_call', 0):.1f} client "
                        f"{r.get('client_us_per_call', 0):.1f} server "
                        f"{r.get('server_us_per_call', 0):.1f}")
        for name, rs in runs.items():
            out[name]["native"] = rs
            for key in ("client_cs_per_call", "server_cs_per_call", "broker_us_per_call",
                        "client_us_per_call", "server_us_per_call", "rps"):
                values = [r[key] for r in rs if key in r]
                if values:
                    out[name][key] = statistics.median(values)
    finally:
        for server in servers.values():
            server.stop()
        for queue in queues.values():
            subprocess.run([run.CTL, "-q", "delete_queue", queue], capture_output=True)

    sides = [side for side in args.sides.split(",") if side]
    for p in pairs:
        if "client" in sides:
            # The client under callgrind against a native server.
            queue = f"bench.count.{p.name.replace('+', '-')}.client.{tag}"
            server = p.server(queue, args.queue_type)
            try:
                per_call, counted = count_client(p, queue, args)
            finally:
                server.stop()
                subprocess.run([run.CTL, "-q", "delete_queue", queue], capture_output=True)
            out[p.name]["client_ir_per_call"] = per_call
            out[p.name]["client_ir"] = counted
            run.say(f"  {p.name} client: {per_call:,.0f} instructions/call")
        if "server" in sides:
            per_call, counted = count_server(p, args, tag)
            out[p.name]["server_ir_per_call"] = per_call
            out[p.name]["server_ir"] = counted
            run.say(f"  {p.name} server: {per_call:,.0f} instructions/call")

    (run.TARGET / "bench" / "count.json").write_text(json.dumps(out, indent=1))
    print_table(out, args)


def print_table(out, args):
    cmd = "python3 bench/count.py" + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in
        [("calls", args.calls), ("warm", args.warm), ("inflight", args.inflight),
         ("rounds", args.rounds), ("native_calls", args.native_calls)]
        if v != {"calls": 20000, "warm": 2000, "inflight": 200, "rounds": 5,
                 "native_calls": 40000}[k])
    cmd += (f" --queue-type {args.queue_type}" if args.queue_type != "classic" else "") + \
        (f" --rev {args.rev}" if args.rev else "") + (f" --only {args.only}" if args.only else "") + \
        (" --raw-wire" if args.raw_wire else "")
    print(f"Measured {date.today()} on {os.cpu_count()} cores ({platform.machine()}), RabbitMQ "
          f"{run.broker_version()} ({run.URL.split('@')[-1].split('/')[0]}), {args.queue_type} "
          f"queue, {args.inflight} calls in flight: `{cmd}`. Instructions: callgrind, "
          f"({args.warm + args.calls:,} calls − {args.warm:,}) / {args.calls:,}; the rest: "
          f"medians of {args.rounds} native runs of {args.native_calls:,} calls.\n")
    print("| pair | client instr/call | server instr/call | client ctx sw/call "
          "| server ctx sw/call | broker µs/call | client µs/call | server µs/call |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    raw = out.get("raw", {})

    def cell(r, key, fmt, ratio=True):
        if key not in r:
            return "n/a"
        text = format(r[key], fmt)
        if ratio and r is not raw and raw.get(key):
            text += f" ({r[key] / raw[key]:.2f}×)"
        return text

    for name, r in out.items():
        print(f"| {name} | {cell(r, 'client_ir_per_call', ',.0f')} "
              f"| {cell(r, 'server_ir_per_call', ',.0f')} "
              f"| {cell(r, 'client_cs_per_call', '.2f')} | {cell(r, 'server_cs_per_call', '.2f')} "
              f"| {cell(r, 'broker_us_per_call', '.1f')} | {cell(r, 'client_us_per_call', '.1f')} "
              f"| {cell(r, 'server_us_per_call', '.1f')} |")


if __name__ == "__main__":
    main()
