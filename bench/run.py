#!/usr/bin/env python3
"""rabbit-rpc's benchmark suite: one command, one machine, ratios against
peers measured in the same run.

    python3 bench/run.py [--rounds N] [--quick] [--long] [--tuning] [--baseline REV]
    python3 bench/run.py --gate [--rounds N] [--quick]

Peers, each a client and a server speaking RabbitMQ's RPC pattern:
  ours      rabbit-rpc bench  -> rabbit-rpc serve fib   (this project)
  raw       raw-lapin bench   -> raw-lapin serve        (plain lapin, no library: the ceiling)
  aio-pika  aio-pika's RPC pattern, client and server   (Python, from PyPI)
  go        rabbit-rpc bench  -> the tutorial's Go server (prefetch 1, naive fib)
  amqprs    raw-amqprs bench  -> raw-amqprs serve       (raw's pair in amqprs: --gate only)
  amqp10    raw-amqp10 bench  -> raw-amqp10 serve       (raw's pair over AMQP 1.0 with
                                                         fe2o3-amqp, RabbitMQ 4.x: --gate only)

`--gate` runs issue 19's transport gate instead of the suite: the three raw
pairs (lapin, amqprs, AMQP 1.0; the last only on RabbitMQ 4.2 or later) at
200 in flight on a durable classic and a durable quorum queue, in
interleaved rounds, with context switches per call beside the CPU time. A
pair clears the gate if it beats raw lapin by >= 1.10x on calls/s or on the
broker's CPU per call. raw-amqprs and raw-amqp10 are not members of the
workspace (each has its own Cargo.lock); --gate builds them into target/.

Our pair and the raw pair serve durable classic queues (`serve fib
--queue-type classic`), so both give the broker the same work; the
`quorum` rows run both pairs on quorum queues, which `serve fib` declares by
default.

`--baseline REV` also builds our binary at git revision REV (in
target/bench/baseline) and runs its pair in the same rounds as `base@200`
and `base@1`: a change's cost or gain, measured side by side.

Headline scenarios run in interleaved rounds (every peer once per round) and
report medians; scaling scenarios (calls in flight, body size, two servers)
run the same way for our pair. `--long` adds 10,000 calls in flight and the
1,000,000-call memory check. The table goes to stdout as Markdown; raw JSON
of every run goes to target/bench/results.json.

Needs: Rust (cargo), Python 3 with venv, and RabbitMQ: the one at AMQP_URL,
driven with the rabbitmqctl named by RABBITMQCTL (for the broker's CPU time
and clean-up), else the local one on 127.0.0.1:5672
(scripts/ensure-rabbitmq.sh starts or installs it). On RabbitMQ 4.3:
`scripts/rabbitmq4.sh up; export $(scripts/rabbitmq4.sh env); python3 bench/run.py`. Installs aio-pika into
target/bench/venv and, for the Go peer, Debian's golang-go and
golang-github-rabbitmq-amqp091-go-dev (the Go peer is skipped if that fails).
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target"
OURS = TARGET / "release" / "rabbit-rpc"
RAW = TARGET / "release" / "raw-lapin"
AMQPRS = TARGET / "release" / "raw-amqprs"
AMQP10 = TARGET / "release" / "raw-amqp10"
VENV = TARGET / "bench" / "venv"
PYTHON = VENV / "bin" / "python"
AIO = ROOT / "bench" / "peers" / "aio_pika_rpc.py"
GO_SERVER = TARGET / "bench" / "tutorial-go-server"
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
URL = os.environ.get("AMQP_URL", DEFAULT_URL)
# The broker under test's rabbitmqctl (scripts/rabbitmqctl4 for RabbitMQ 4.3).
CTL = os.environ.get("RABBITMQCTL", "rabbitmqctl")


def say(*args):
    print(*args, file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    say("$", " ".join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kwargs)


# --- setup -------------------------------------------------------------------


def setup_gate():
    """The raw pairs of --gate: raw-lapin (a workspace member), raw-amqprs and
    raw-amqp10 (each a workspace of its own, built into the same target/)."""
    run(["cargo", "build", "--release", "--locked", "-q", "-p", "raw-lapin"], cwd=ROOT)
    for crate in ("raw-amqprs", "raw-amqp10"):
        run(["cargo", "build", "--release", "--locked", "-q", "--manifest-path",
             ROOT / "bench" / crate / "Cargo.toml", "--target-dir", TARGET], cwd=ROOT)


def setup(want_go):
    if URL == DEFAULT_URL:
        run([ROOT / "scripts" / "ensure-rabbitmq.sh"], stdout=sys.stderr)
    run(["cargo", "build", "--release", "--locked", "-q", "-p", "rabbit-rpc-cli", "-p", "raw-lapin"],
        cwd=ROOT)
    if not PYTHON.exists():
        run([sys.executable, "-m", "venv", VENV])
    if subprocess.run([PYTHON, "-c", "import aio_pika"], capture_output=True).returncode != 0:
        run([PYTHON, "-m", "pip", "install", "-q", "aio-pika"])
    return want_go and build_go_server()


def build_go_server():
    try:
        if shutil.which("go") is None or not Path(
                "/usr/share/gocode/src/github.com/rabbitmq/amqp091-go").exists():
            sudo = [] if os.geteuid() == 0 else ["sudo"]
            run(sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                        "golang-go", "golang-github-rabbitmq-amqp091-go-dev"],
                stdout=subprocess.DEVNULL)
        env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOPROXY="off",
                   GOFLAGS="", GOTOOLCHAIN="local", GOCACHE=str(TARGET / "bench" / "go-cache"))
        run(["go", "build", "-o", GO_SERVER, "./server"], cwd=ROOT / "interop" / "tutorial-go",
            env=env)
        return True
    except (subprocess.CalledProcessError, OSError) as error:
        say(f"note: skipping the Go tutorial peer: {error}")
        return False


# --- servers -----------------------------------------------------------------


# The PIDs of the server processes on each queue, to charge their CPU time
# to each run.
SERVING = {}


class Server:
    """A server process, started and waited for until it says it is ready."""

    def __init__(self, cmd, ready, env=None, queue=None):
        self.log = open(TARGET / "bench" / f"server-{uuid.uuid4().hex[:8]}.log", "w+")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log,
                                     env=dict(os.environ, **(env or {})))
        deadline = time.monotonic() + 60
        while ready not in Path(self.log.name).read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} did not start:\n{Path(self.log.name).read_text()}")
            time.sleep(0.05)
        if queue:
            SERVING.setdefault(queue, []).append(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


def ours_server(queue, service="fib", options=(), queue_type="classic", serve_options=(),
                binary=None, env=None):
    """Our server on a queue of `queue_type`: classic unless said, like the
    raw peer's, so that both pairs give the broker the same work."""
    return Server([binary or OURS, "--url", URL, *options, "serve", service, "--queue", queue,
                   "--queue-type", queue_type, *serve_options],
                  f"serving {service} on queue", {"RUST_LOG": "info", **(env or {})}, queue)


def build_baseline(rev):
    """Our binary at git revision `rev`, built in a worktree of its own."""
    source = TARGET / "bench" / "baseline"
    if source.exists():
        run(["git", "worktree", "remove", "--force", source], cwd=ROOT)
    run(["git", "worktree", "add", "--detach", source, rev], cwd=ROOT, stdout=sys.stderr)
    run(["cargo", "build", "--release", "--locked", "-q", "-p", "rabbit-rpc-cli"], cwd=source,
        env=dict(os.environ, CARGO_TARGET_DIR=str(TARGET / "bench" / "baseline-target")))
    return TARGET / "bench" / "baseline-target" / "release" / "rabbit-rpc"


def raw_server(queue, queue_type="classic", binary=None):
    """A raw pair's server: raw-lapin's, or raw-amqprs's or raw-amqp10's."""
    binary = binary or RAW
    return Server([binary, "serve", queue], f"{Path(binary).name} serving",
                  {"AMQP_URL": URL, "QUEUE_TYPE": queue_type}, queue)


def aio_server(name):
    return Server([PYTHON, AIO, "serve", name], "aio-pika serving", {"AMQP_URL": URL}, name)


def go_server(queue):
    # The tutorial's Go library reads a trailing "/" as vhost "/".
    return Server([GO_SERVER], " [*] Awaiting RPC requests",
                  {"AMQP_URL": URL.replace("/%2f", "/"), "RPC_QUEUE": queue}, queue)


# --- clients -----------------------------------------------------------------


def broker_pid():
    """The local broker's Erlang VM, to charge its CPU time to each run: the
    default node's (not a node of scripts/cluster.sh's cluster)."""
    out = subprocess.run([CTL, "-q", "eval", "os:getpid()."], capture_output=True,
                         text=True)
    pid = out.stdout.strip().strip('"')
    return int(pid) if out.returncode == 0 and pid.isdigit() else None


BROKER = None


def cpu_ticks(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def server_ticks(queue):
    ticks = [cpu_ticks(pid) for pid in SERVING.get(queue, [])]
    return sum(ticks) if ticks and None not in ticks else None


def switches(pid):
    """Context switches (voluntary and not) of all threads of a process so
    far; threads that already ended are not counted."""
    total = 0
    try:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            for line in status.read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total


def server_switches(queue):
    counts = [switches(pid) for pid in SERVING.get(queue, [])]
    return sum(counts) if counts and None not in counts else None


def last_json(cmd, env=None, queue=None):
    """Runs a bench client, and charges to its result the CPU time per call of
    the broker, of the client and of the queue's servers."""
    before = cpu_ticks(BROKER) if BROKER else None
    served = server_ticks(queue)
    broker_cs, server_cs = (switches(BROKER) if BROKER else None), server_switches(queue)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env=dict(os.environ, **(env or {})), timeout=1800)
    after = cpu_ticks(BROKER) if BROKER else None
    broker_cs_after, server_cs_after = (switches(BROKER) if BROKER else None), \
        server_switches(queue)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    calls = result.get("calls")
    if before is not None and after is not None and calls:
        # /proc counts in 1/100 s.
        result["broker_us_per_call"] = (after - before) * 10_000 / calls
    if served is not None and server_ticks(queue) is not None and calls:
        result["server_us_per_call"] = (server_ticks(queue) - served) * 10_000 / calls
    if calls:
        done = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent = (done.ru_utime + done.ru_stime) - (children.ru_utime + children.ru_stime)
        result["client_us_per_call"] = spent * 1e6 / calls
        # Context switches per call: the client's from getrusage (all its
        # threads), the servers' and the broker's from /proc/PID/task/*.
        result["client_cs_per_call"] = ((done.ru_nvcsw + done.ru_nivcsw)
                                        - (children.ru_nvcsw + children.ru_nivcsw)) / calls
        if server_cs is not None and server_cs_after is not None:
            result["server_cs_per_call"] = (server_cs_after - server_cs) / calls
        if broker_cs is not None and broker_cs_after is not None:
            result["broker_cs_per_call"] = (broker_cs_after - broker_cs) / calls
    if result.get("errors"):
        raise RuntimeError(f"{cmd}: {result['errors']} calls failed")
    return result


def ours_client(queue, calls, inflight, body="10", body_size=None, options=(), extra=(),
                binary=None):
    body_args = ["--body-size", str(body_size)] if body_size is not None else ["--body", body]
    return last_json([binary or OURS, "--url", URL, *options, "bench", "--queue", queue,
                      "--calls", str(calls), "--inflight", str(inflight), "--json", *extra]
                     + body_args, queue=queue)


def raw_client(queue, calls, inflight, body="10", binary=None):
    return last_json([binary or RAW, "bench", queue, str(calls), str(inflight), body],
                     {"AMQP_URL": URL}, queue=queue)


def aio_client(name, calls, inflight, n=10):
    return last_json([PYTHON, AIO, "bench", name, str(calls), str(inflight), str(n)],
                     {"AMQP_URL": URL}, queue=name)


# --- the suite ---------------------------------------------------------------


def median(results, key):
    return statistics.median(r[key] for r in results)


def ratio(results, a, b, key="rps"):
    """Median over rounds of a/b, each round's pair measured side by side."""
    return statistics.median(x[key] / y[key] for x, y in zip(results[a], results[b]))


def broker(results, who="broker"):
    """The median CPU time per call of `who` (broker, client or server)."""
    values = [r[f"{who}_us_per_call"] for r in results if f"{who}_us_per_call" in r]
    return f"{statistics.median(values):.0f}" if values else "n/a"


def rounds(n, scenarios):
    """Runs every scenario once per round, n rounds, in order in odd rounds
    and in reverse in even ones, so neighbours (a peer and ours) swap places
    and drift on the machine falls on both alike."""
    results = {name: [] for name, _ in scenarios}
    for i in range(n):
        say(f"round {i + 1}/{n}")
        for name, scenario in (scenarios if i % 2 == 0 else scenarios[::-1]):
            results[name].append(scenario())
            r = results[name][-1]
            say(f"  {name}: {r['rps']:.0f} calls/s, p50 {r['p50_ms']:.3f} ms, "
                f"p99 {r['p99_ms']:.3f} ms, µs/call: broker {r.get('broker_us_per_call', 0):.0f} "
                f"client {r.get('client_us_per_call', 0):.0f} "
                f"server {r.get('server_us_per_call', 0):.0f}")
    return results


def broker_version():
    """The version of the broker at URL (its node's, not its CLI's)."""
    try:
        out = subprocess.run([CTL, "-q", "eval", "rabbit_misc:version()."], capture_output=True,
                             text=True, timeout=60)
        return out.stdout.strip().strip('"') or "unknown"
    except OSError:
        return "unknown"


LOAD = os.getloadavg()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="fewer calls per run")
    parser.add_argument("--long", action="store_true",
                        help="also 10,000 in flight and the 1,000,000-call memory check")
    parser.add_argument("--no-go", action="store_true", help="skip the Go tutorial peer")
    parser.add_argument("--headline-only", action="store_true",
                        help="only the ratios against peers")
    parser.add_argument("--baseline", metavar="REV",
                        help="also run our pair as built at git revision REV, side by side")
    parser.add_argument("--tuning", action="store_true",
                        help="also our pair with other prefetch, concurrency and thread counts "
                             "(the measurements behind the defaults)")
    parser.add_argument("--gate", action="store_true",
                        help="only issue 19's transport gate: raw lapin, amqprs and AMQP 1.0 pairs")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0

    def calls(n):
        return max(100, int(n * scale))

    (TARGET / "bench").mkdir(parents=True, exist_ok=True)
    if args.gate:
        return gate(args, calls)
    have_go = setup(not args.no_go)
    baseline = build_baseline(args.baseline) if args.baseline else None
    global BROKER
    BROKER = broker_pid()
    tag = uuid.uuid4().hex[:8]
    q = {name: f"bench.{name}.{tag}" for name in
         ["ours", "raw", "aio", "go", "echo", "two", "ours-quorum", "raw-quorum", "base"]}
    servers = [ours_server(q["ours"]), raw_server(q["raw"]), aio_server(q["aio"]),
               ours_server(q["echo"], "echo"), ours_server(q["two"]), ours_server(q["two"]),
               ours_server(q["ours-quorum"], queue_type="quorum"),
               raw_server(q["raw-quorum"], queue_type="quorum")]
    if baseline:
        servers.append(ours_server(q["base"], binary=baseline))
    if have_go:
        servers.append(go_server(q["go"]))
    out = {}
    try:
        go = have_go
        # The baseline's rows follow ours, so that each pair runs side by
        # side in every round.
        base200 = [("base@200", lambda: ours_client(q["base"], calls(40000), 200,
                                                    binary=baseline))] if baseline else []
        base1 = [("base@1", lambda: ours_client(q["base"], calls(3000), 1,
                                                binary=baseline))] if baseline else []
        headline = [
            ("raw@200", lambda: raw_client(q["raw"], calls(40000), 200)),
            ("ours@200", lambda: ours_client(q["ours"], calls(40000), 200)),
        ] + base200 + [
            ("aio-pika@200", lambda: aio_client(q["aio"], calls(4000), 200)),
        ] + ([("go@200", lambda: ours_client(q["go"], calls(5000), 200))] if go else []) + [
            ("raw@1", lambda: raw_client(q["raw"], calls(3000), 1)),
            ("ours@1", lambda: ours_client(q["ours"], calls(3000), 1)),
        ] + base1 + ([("go@1", lambda: ours_client(q["go"], calls(2000), 1))] if go else []) + [
            ("fib(30) ours", lambda: ours_client(q["ours"], calls(20000), 200, "30")),
            ("fib(30) json ours", lambda: ours_client(q["ours"], calls(20000), 200, '{"n":30}',
                                                      extra=["--content-type",
                                                             "application/json"])),
        ] + ([("fib(30) go", lambda: ours_client(q["go"], calls(300), 10, "30"))] if go else []) + [
            ("fib(100000) ours@1", lambda: ours_client(q["ours"], calls(200), 1, "100000")),
            ("raw@200 quorum", lambda: raw_client(q["raw-quorum"], calls(40000), 200)),
            ("ours@200 quorum", lambda: ours_client(q["ours-quorum"], calls(40000), 200)),
        ]
        out["headline"] = rounds(args.rounds, headline)

        scaling = [(f"inflight {c}", (lambda c=c, n=n: ours_client(q["ours"], calls(n), c)))
                   for c, n in [(1, 3000), (10, 20000), (100, 40000), (1000, 40000)]]
        scaling += [(f"body {label}",
                     (lambda b=b, n=n: ours_client(q["echo"], calls(n), 10, body_size=b)))
                    for label, b, n in [("10 B", 10, 20000), ("1 KiB", 1024, 20000),
                                        ("64 KiB", 65536, 5000), ("1 MiB", 1 << 20, 300)]]
        scaling += [("one server", lambda: ours_client(q["ours"], calls(40000), 200)),
                    ("two servers", lambda: ours_client(q["two"], calls(40000), 200))]
        if args.headline_only:
            scaling = []
        if scaling:
            out["scaling"] = rounds(args.rounds, scaling)

        if args.tuning:
            variants = [(f"prefetch {n}", ["--prefetch", str(n)]) for n in (1, 16, 128, 256, 512)]
            variants += [(f"concurrency {n}", ["--concurrency", str(n)]) for n in (1, 8, 64, 256)]
            tuned = {}
            for name, options in variants:
                tuned[name] = f"bench.tune.{len(tuned)}.{tag}"
                servers.append(ours_server(tuned[name], serve_options=options))
            tuned["server --threads 2"] = f"bench.tune.threads.{tag}"
            servers.append(ours_server(tuned["server --threads 2"], options=["--threads", "2"]))
            tuning = [(name, (lambda queue=queue: ours_client(queue, calls(40000), 200)))
                      for name, queue in tuned.items()]
            tuning += [("client --threads 2",
                        lambda: ours_client(q["ours"], calls(40000), 200, options=["--threads", "2"])),
                       ("client with publisher confirms",
                        lambda: ours_client(q["ours"], calls(40000), 200,
                                            extra=["--publisher-confirms"])),
                       ("defaults", lambda: ours_client(q["ours"], calls(40000), 200))]
            q.update({f"tune {name}": queue for name, queue in tuned.items()})
            out["tuning"] = rounds(args.rounds, tuning)

        if args.long:
            say("10,000 calls in flight")
            out["inflight 10000"] = ours_client(q["ours"], 100000, 10000)
            say("1,000,000 calls: client memory")
            out["million"] = ours_client(q["ours"], 1000000, 200)
    finally:
        clean_up(servers, q.values())
    (TARGET / "bench" / "results.json").write_text(json.dumps(out, indent=1))
    print_table(out, args, have_go)


def clean_up(servers, queues):
    """Stops the servers a run started and deletes its queues."""
    for server in servers:
        server.stop()
    for queue in queues:
        subprocess.run([CTL, "-q", "delete_queue", queue], capture_output=True)


# --- the transport gate (issue 19) ----------------------------------------------

GATE = 1.10


def gate(args, calls):
    """The raw pairs side by side at 200 in flight, classic and quorum, in
    interleaved rounds: does any beat raw lapin by >= GATE?"""
    setup_gate()
    global BROKER
    BROKER = broker_pid()
    version = broker_version()
    major = version.split(".")[0]
    pairs = [("lapin", RAW), ("amqprs", AMQPRS)]
    # Direct reply-to over AMQP 1.0 needs RabbitMQ 4.2 or later.
    if major.isdigit() and (int(major), int((version.split(".") + ["0"])[1])) >= (4, 2):
        pairs.append(("amqp10", AMQP10))
    else:
        say(f"note: no AMQP 1.0 rows: RabbitMQ {version} has no direct reply-to over AMQP 1.0")
    tag = uuid.uuid4().hex[:8]
    kinds = [("classic", 320_000), ("quorum", 200_000)]
    q = {(pair, kind): f"bench.gate.{pair}.{kind}.{tag}" for pair, _ in pairs for kind, _ in kinds}
    servers = []
    out = {}
    try:
        for (pair, kind), queue in q.items():
            servers.append(raw_server(queue, kind, dict(pairs)[pair]))
        scenarios = [(f"{pair} {kind}",
                      (lambda queue=q[(pair, kind)], n=n, binary=binary:
                       raw_client(queue, calls(n), 200, binary=binary)))
                     for kind, n in kinds for pair, binary in pairs]
        out["gate"] = rounds(args.rounds, scenarios)
    finally:
        clean_up(servers, q.values())
    (TARGET / "bench" / "gate.json").write_text(json.dumps(out, indent=1))
    print_gate(out["gate"], args, [pair for pair, _ in pairs], [kind for kind, _ in kinds],
               version)


def print_gate(g, args, pairs, kinds, version):
    cmd = "python3 bench/run.py --gate" + \
          (f" --rounds {args.rounds}" if args.rounds != 3 else "") + \
          (" --quick" if args.quick else "")
    print(f"Measured {date.today()} on {os.cpu_count()} cores ({platform.machine()}), "
          f"RabbitMQ {version} ({URL.split('@')[-1].split('/')[0]}), 200 calls in flight, "
          f"medians of {args.rounds} interleaved rounds: `{cmd}`; load average before and "
          f"after: {LOAD[0]:.2f} / {os.getloadavg()[0]:.2f}. Ratios against raw lapin are "
          "medians of each round's side-by-side ratio; µs and switches are per call.\n")
    print("| pair | queue | calls/s | p50 ms | p99 ms | broker µs | client µs | server µs "
          "| switches client / server / broker | calls/s vs lapin | broker µs vs lapin |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")

    def cs(results):
        def one(who):
            values = [r[f"{who}_cs_per_call"] for r in results if f"{who}_cs_per_call" in r]
            return f"{statistics.median(values):.2f}" if values else "n/a"
        return " / ".join(one(who) for who in ("client", "server", "broker"))

    verdicts = []
    for kind in kinds:
        base = f"lapin {kind}"
        for pair in pairs:
            name = f"{pair} {kind}"
            r = g[name]
            speed = ratio(g, name, base)
            # Broker CPU per call: lapin's over the pair's, so > 1 is better.
            cheaper = ratio(g, base, name, "broker_us_per_call") \
                if all("broker_us_per_call" in x for x in r + g[base]) else None
            print(f"| {pair} | {kind} | {median(r, 'rps'):,.0f} | {median(r, 'p50_ms'):.3f} "
                  f"| {median(r, 'p99_ms'):.3f} | {broker(r)} | {broker(r, 'client')} "
                  f"| {broker(r, 'server')} | {cs(r)} | {speed:.2f}× "
                  f"| {'n/a' if cheaper is None else f'{cheaper:.2f}×'} |")
            if pair != "lapin":
                cleared = speed >= GATE or (cheaper is not None and cheaper >= GATE)
                verdicts.append(f"{pair} on {kind}: {speed:.2f}× calls/s, "
                                f"{'n/a' if cheaper is None else f'{cheaper:.2f}×'} broker µs "
                                f"-> {'CLEARS' if cleared else 'does not clear'} the "
                                f"{GATE:.2f}× gate")
    print()
    for verdict in verdicts:
        print(f"- {verdict}")


def print_table(out, args, have_go):
    h = out["headline"]

    def rps(name):
        return median(h[name], "rps")

    def p(name, key):
        return median(h[name], key)

    cmd = "python3 bench/run.py" + (f" --rounds {args.rounds}" if args.rounds != 3 else "") + \
          (" --quick" if args.quick else "") + (" --long" if args.long else "") + \
          (" --tuning" if args.tuning else "") + \
          (" --headline-only" if args.headline_only else "") + \
          (" --no-go" if args.no_go else "") + \
          (f" --baseline {args.baseline}" if args.baseline else "")
    print(f"Measured {date.today()} on {os.cpu_count()} cores ({platform.machine()}), "
          f"RabbitMQ {broker_version()} ({URL.split('@')[-1].split('/')[0]}), "
          f"medians of {args.rounds} interleaved rounds: `{cmd}`. "
          "Ratios are medians of each round's side-by-side ratio.\n")
    print("CPU time per call (µs) of each process, from /proc and getrusage.\n")
    print("| scenario | calls/s | p50 ms | p99 ms | broker µs | client µs | server µs | ratio "
          "| target |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")

    def row(name, ratio="", target=""):
        print(f"| {name} | {rps(name):,.0f} | {p(name, 'p50_ms'):.3f} | {p(name, 'p99_ms'):.3f} "
              f"| {broker(h[name])} | {broker(h[name], 'client')} | {broker(h[name], 'server')} "
              f"| {ratio} | {target} |")

    row("raw@200", "ceiling")
    row("ours@200", f"{ratio(h, 'ours@200', 'raw@200'):.2f}× raw", "≥ 1.0× raw")
    row("aio-pika@200", f"ours {ratio(h, 'ours@200', 'aio-pika@200'):.1f}× aio-pika",
        "ours ≥ 12×")
    if have_go:
        row("go@200", f"ours {ratio(h, 'ours@200', 'go@200'):.1f}× go")
    row("raw@1")
    row("ours@1", f"p50 {ratio(h, 'ours@1', 'raw@1', 'p50_ms'):.2f}× raw",
        "p50 ≤ 1.0× raw, < go")
    if have_go:
        row("go@1", f"p50 {ratio(h, 'go@1', 'ours@1', 'p50_ms'):.2f}× ours")
        row("fib(30) go")
        row("fib(30) ours", f"{ratio(h, 'fib(30) ours', 'fib(30) go'):.0f}× go", "≥ 50× go")
    else:
        row("fib(30) ours")
    row("fib(30) json ours", f"{ratio(h, 'fib(30) json ours', 'fib(30) ours'):.2f}× text")
    row("fib(100000) ours@1", "", "p50 < 10 ms")
    if "base@200" in h:
        row("base@200", f"ours {ratio(h, 'ours@200', 'base@200'):.2f}× base")
        row("base@1", f"ours p50 {ratio(h, 'ours@1', 'base@1', 'p50_ms'):.2f}× base")
    row("raw@200 quorum", "ceiling on quorum")
    row("ours@200 quorum", f"{ratio(h, 'ours@200 quorum', 'raw@200 quorum'):.2f}× raw quorum, "
        f"{ratio(h, 'ours@200 quorum', 'ours@200'):.2f}× ours classic", "≥ 1.0× raw quorum")

    s = out.get("scaling")
    if s:
        print("\nOur pair as the work grows (same rounds, medians):\n")
        print("| scenario | calls/s | p50 ms | p99 ms | broker µs/call |")
        print("|---|---:|---:|---:|---:|")
        for name, results in s.items():
            print(f"| {name} | {median(results, 'rps'):,.0f} | {median(results, 'p50_ms'):.3f} "
                  f"| {median(results, 'p99_ms'):.3f} | {broker(results)} |")
        print(f"\ntwo servers / one server: {ratio(s, 'two servers', 'one server'):.2f}×")

    if "tuning" in out:
        t = out["tuning"]
        print("\nOur pair at 200 in flight with one setting changed (defaults: prefetch 256, "
              "concurrency 64, one thread each side):\n")
        print("| variant | calls/s | p50 ms | p99 ms | broker µs/call |")
        print("|---|---:|---:|---:|---:|")
        for name, results in t.items():
            print(f"| {name} | {median(results, 'rps'):,.0f} | {median(results, 'p50_ms'):.3f} "
                  f"| {median(results, 'p99_ms'):.3f} | {broker(results)} |")

    if "million" in out:
        big = out["inflight 10000"]
        print(f"\n10,000 in flight: {big['calls']:,} calls, {big['errors']} errors, "
              f"{big['rps']:,.0f} calls/s, p99 {big['p99_ms']:.1f} ms")
        m = out["million"]
        rss = [s["rss_mib"] for s in m["timeline"] if s.get("rss_mib")]
        if len(rss) >= 10:
            early, late = rss[len(rss) // 10], rss[-1]
            print(f"1,000,000 calls: {m['errors']} errors, client RSS {early:.1f} MiB at 10% "
                  f"→ {late:.1f} MiB at the end ({(late / early - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
