#!/usr/bin/env python3
"""What the broker does per call for each pair, beyond its CPU time: the
Erlang work (reductions per call, by the kind of broker process doing it:
rabbit_channel, rabbit_prequeue (the classic queue), rabbit_reader,
rabbit_writer) and the socket reads and writes per call on each connection,
over a steady window in the middle of a long run. The pairs: the raw lapin
pair sending our requests' extras (`RAW_EXTRAS`, all five), ours, and the
two crossed.

    python3 bench/broker_work.py [--calls N] [--inflight C] [--window S]

Equal reductions per call with unequal CPU per call say that the broker
does the same work, differently scheduled (fewer frames per read or write,
more wake-ups). Socket counts are the broker's own (`rabbitmqctl
list_connections recv_cnt send_cnt`); calls in the window are estimated from
the run's rate, so per-call figures are within a few percent.
"""

import argparse
import json
import os
import subprocess
import time
import uuid

import run

ALL = "mandatory,expiration,user_id,message_id,content_type"
REDUCTIONS = ("lists:foreach(fun(P) -> case erlang:process_info(P, reductions) of "
              "undefined -> ok; {reductions, R} -> K = case proc_lib:translate_initial_call(P) "
              "of {M, _, _} -> M; _ -> x end, io:format(\"~s ~p ~p~n\", [pid_to_list(P), K, R]) "
              "end end, erlang:processes()), ok.")


def reductions():
    out = subprocess.run([run.CTL, "-q", "eval", REDUCTIONS], capture_output=True,
                         text=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            found[parts[0]] = (parts[1], int(parts[2]))
    return found


def connections():
    out = subprocess.run([run.CTL, "-q", "list_connections", "name", "recv_cnt", "send_cnt",
                          "recv_oct", "send_oct", "--formatter", "json"], capture_output=True,
                         text=True).stdout
    return {c["name"]: c for c in json.loads(out)}


def measure(cmd, env, window):
    client = subprocess.Popen(cmd, env=dict(os.environ, **env), stdout=subprocess.PIPE,
                              text=True)
    time.sleep(2)
    conns, reds, started = connections(), reductions(), time.monotonic()
    time.sleep(window)
    conns2, reds2, ended = connections(), reductions(), time.monotonic()
    out, _ = client.communicate()
    if client.returncode != 0:
        raise RuntimeError(f"{cmd} failed")
    result = json.loads(out.strip().splitlines()[-1])
    calls = result["rps"] * (ended - started)
    by_kind = {}
    for pid, (kind, count) in reds2.items():
        by_kind[kind] = by_kind.get(kind, 0) + count - reds.get(pid, (kind, 0))[1]
    sockets = []
    for name, after in conns2.items():
        before = conns.get(name)
        if before and after["recv_oct"] - before["recv_oct"] > 10 * calls:
            sockets.append({k: (after[k] - before[k]) / calls
                            for k in ("recv_cnt", "send_cnt", "recv_oct", "send_oct")})
    # The server's connection first: it receives replies and acknowledgements,
    # more bytes than the client's requests.
    sockets.sort(key=lambda s: -s["recv_oct"])
    return {"rps": result["rps"], "reductions": {k: v / calls for k, v in by_kind.items()},
            "sockets": sockets}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=600000, help="long enough for the window")
    parser.add_argument("--inflight", type=int, default=200)
    parser.add_argument("--window", type=float, default=6.0, help="seconds measured")
    args = parser.parse_args()
    if run.URL == run.DEFAULT_URL:
        run.run([run.ROOT / "scripts" / "ensure-rabbitmq.sh"], stdout=run.sys.stderr)
    run.run(["cargo", "build", "--release", "--locked", "-q", "-p", "rabbit-rpc-cli", "-p",
             "raw-lapin"], cwd=run.ROOT)
    tag = uuid.uuid4().hex[:8]
    queues = {"raw": f"bench.work.raw.{tag}", "ours": f"bench.work.ours.{tag}"}
    servers = [run.raw_server(queues["raw"]), run.ours_server(queues["ours"])]

    def raw(server):
        return ([run.RAW, "bench", queues[server], str(args.calls), str(args.inflight), "10"],
                {"AMQP_URL": run.URL, "RAW_EXTRAS": ALL})

    def ours(server):
        return ([run.OURS, "--url", run.URL, "bench", "--queue", queues[server], "--calls",
                 str(args.calls), "--inflight", str(args.inflight), "--json", "--body", "10"], {})

    pairs = [("raw+wire", raw("raw")), ("ours", ours("ours")),
             ("raw+wire client, our server", raw("ours")), ("our client, raw server", ours("raw"))]
    results = {}
    try:
        for name, (cmd, env) in pairs:
            run.say(name)
            results[name] = measure(cmd, env, args.window)
    finally:
        for server in servers:
            server.stop()
        for queue in queues.values():
            subprocess.run([run.CTL, "-q", "delete_queue", queue], capture_output=True)
    (run.TARGET / "bench").mkdir(parents=True, exist_ok=True)
    (run.TARGET / "bench" / "broker_work.json").write_text(json.dumps(results, indent=1))
    kinds = sorted({k for r in results.values() for k, v in r["reductions"].items() if v >= 1},
                   key=lambda k: -results["raw+wire"]["reductions"].get(k, 0))
    print(f"`python3 bench/broker_work.py --calls {args.calls} --inflight {args.inflight} "
          f"--window {args.window:g}` (RabbitMQ {run.broker_version()}):\n")
    print("| per call | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    print("| calls/s | " + " | ".join(f"{r['rps']:,.0f}" for r in results.values()) + " |")
    print("| reductions | " + " | ".join(f"{sum(r['reductions'].values()):,.0f}"
                                         for r in results.values()) + " |")
    for kind in kinds:
        print(f"| … {kind} | " + " | ".join(f"{r['reductions'].get(kind, 0):,.0f}"
                                            for r in results.values()) + " |")
    for key, label in [("recv_cnt", "socket reads"), ("send_cnt", "socket writes")]:
        print(f"| {label} (server's / client's connection) | " + " | ".join(
            " / ".join(f"{s[key]:.3f}" for s in r["sockets"]) for r in results.values()) + " |")


if __name__ == "__main__":
    main()
