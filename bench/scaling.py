#!/usr/bin/env python3
"""How our pair scales on the 3-node cluster of scripts/cluster.sh: servers
(1, 2, 4), nodes (one node against three, where client, servers and the
queue's leader sit), classic against quorum, and one procedure spread over
two queues (shards) against one queue. The numbers behind docs/SCALING.md.

    scripts/cluster.sh up && python3 bench/scaling.py [--rounds N] [--calls N]

Every scenario gets its own queue and its own `rabbit-rpc serve fib`
processes, started once; then each round runs every scenario's bench once
(order reversed every other round), and the table gives medians. Clients
run `rabbit-rpc bench --inflight 200 --body 10`; a scenario with two
clients runs them at once and adds their calls/s. Each process is given one
node's URL, so where it connects is known. Needs the release build and the
cluster up; the default broker on 5672 serves the single-node rows.
"""

import argparse
import statistics
import subprocess
import sys
import threading
import uuid

import run

PORTS = {0: 5672, 1: 5701, 2: 5702, 3: 5703}


def url(node):
    """Node 0 is the default single broker; 1-3 are the cluster's."""
    return f"amqp://guest:guest@127.0.0.1:{PORTS[node]}/%2f"


def rabbitmqctl(node, *args):
    target = [] if node == 0 else ["-n", f"rc{node}@localhost"]
    return subprocess.run(["rabbitmqctl", *target, "-q", *args], capture_output=True, text=True)


class Scenario:
    """Queues (declared from `declare_on`, so the leader sits there), servers
    on `servers` nodes per queue, clients on `clients` nodes (one bench per
    entry: (node, queue index))."""

    def __init__(self, name, queue_type, declare_on, servers, clients, shards=1):
        self.name = name
        tag = uuid.uuid4().hex[:6]
        self.queues = [f"bench.scaling.{i}.{tag}" for i in range(shards)]
        self.node0 = declare_on == 0
        self.processes = []
        try:
            self.start(declare_on, queue_type, servers)
        except BaseException:
            self.stop()
            raise
        self.clients = clients

    def start(self, declare_on, queue_type, servers):
        for queue in self.queues:
            # Declared from `declare_on` (the raw peer declares and leaves it
            # there), so that its leader, or a classic queue, lives there.
            run.Server([run.RAW, "serve", queue], "raw-lapin serving",
                       {"AMQP_URL": url(declare_on), "QUEUE_TYPE": queue_type}).stop()
            for node in servers:
                self.processes.append(run.Server(
                    [run.OURS, "--url", url(node), "serve", "fib", "--queue", queue],
                    "serving fib on queue", {"RUST_LOG": "info"}))

    def bench(self, calls):
        results = [None] * len(self.clients)

        def one(i, node, shard):
            results[i] = run.last_json(
                [run.OURS, "--url", url(node), "bench", "--queue", self.queues[shard],
                 "--calls", str(calls), "--inflight", "200", "--body", "10", "--json"])

        threads = [threading.Thread(target=one, args=(i, node, shard))
                   for i, (node, shard) in enumerate(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if any(r is None for r in results):
            raise RuntimeError(f"{self.name}: a bench failed")
        return {"rps": sum(r["rps"] for r in results),
                "p50_ms": statistics.median(r["p50_ms"] for r in results),
                "p99_ms": max(r["p99_ms"] for r in results)}

    def stop(self):
        for process in self.processes:
            process.stop()
        for queue in self.queues:
            rabbitmqctl(0 if self.node0 else 1, "delete_queue", queue)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20000, help="per bench")
    args = parser.parse_args()
    if rabbitmqctl(1, "cluster_status").returncode != 0:
        sys.exit("the cluster is not up: run scripts/cluster.sh up")
    # (name, queue type, node that declares the queue (its leader), server
    # nodes, client (node, shard) list, shards)
    plan = [
        ("one node: 1 server", "quorum", 0, [0], [(0, 0)], 1),
        ("one node: 1 server, classic", "classic", 0, [0], [(0, 0)], 1),
        ("cluster: 1 server, all on the leader's node", "quorum", 1, [1], [(1, 0)], 1),
        ("cluster: 1 server, client and server on other nodes", "quorum", 1, [2], [(3, 0)], 1),
        ("cluster: 2 servers (nodes 2, 3)", "quorum", 1, [2, 3], [(3, 0)], 1),
        ("cluster: 4 servers (nodes 1, 2, 3, 2)", "quorum", 1, [1, 2, 3, 2], [(3, 0)], 1),
        ("cluster: 1 server, classic, other nodes", "classic", 1, [2], [(3, 0)], 1),
        ("cluster: 1 queue, 2 servers, 2 clients", "quorum", 1, [2, 3], [(2, 0), (3, 0)], 1),
        ("cluster: 2 shards (leaders on nodes 1, 2), 1 server each, 2 clients", "quorum",
         None, [2, 3], [(2, 0), (3, 1)], 2),
    ]
    scenarios = []
    try:
        for name, queue_type, declare_on, servers, clients, shards in plan:
            if shards == 1:
                scenarios.append(Scenario(name, queue_type, declare_on, servers, clients))
            else:
                # One queue per shard, each led by its own node, each with
                # one server of its own.
                scenario = Scenario(name, queue_type, 1, servers[:1], clients, shards=1)
                second = Scenario(name, queue_type, 2, servers[1:], [], shards=1)
                scenario.queues += second.queues
                scenario.processes += second.processes
                scenarios.append(scenario)
        results = run.rounds(args.rounds, [
            (s.name, lambda s=s: s.bench(args.calls)) for s in scenarios])
    finally:
        for scenario in scenarios:
            scenario.stop()
    print(f"`python3 bench/scaling.py --rounds {args.rounds} --calls {args.calls}`, "
          f"{args.rounds} interleaved rounds, medians, 200 calls in flight per client:\n")
    print("| scenario | calls/s | p50 ms |")
    print("|---|---:|---:|")
    for name, rs in results.items():
        print(f"| {name} | {statistics.median(r['rps'] for r in rs):,.0f} "
              f"| {statistics.median(r['p50_ms'] for r in rs):.2f} |")


if __name__ == "__main__":
    main()
