#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/{request,reply}):
messages as a broker hands them over, an AMQP 0-9-1 property list followed
by the body, of the shapes rabbit-rpc, the tutorials and AMQP 1.0 clients
send. Run from anywhere; rewrites the seeds (libFuzzer's finds are kept in
a scratch directory by scripts/fuzz.sh, not here)."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
BITS = {  # property -> flag bit, in wire order
    "content_type": 15, "content_encoding": 14, "headers": 13,
    "delivery_mode": 12, "priority": 11, "correlation_id": 10,
    "reply_to": 9, "expiration": 8, "message_id": 7, "timestamp": 6,
    "type": 5, "user_id": 4, "app_id": 3, "cluster_id": 2,
}


def short(text):
    data = text.encode()
    return struct.pack(">B", len(data)) + data


def value(v):
    if isinstance(v, bool):
        return b"t" + struct.pack(">B", v)
    if isinstance(v, int):
        return b"l" + struct.pack(">q", v)
    if isinstance(v, dict):
        return b"F" + table(v)
    if isinstance(v, list):
        items = b"".join(value(x) for x in v)
        return b"A" + struct.pack(">I", len(items)) + items
    data = v.encode() if isinstance(v, str) else v
    return b"S" + struct.pack(">I", len(data)) + data


def table(d):
    items = b"".join(short(k) + value(v) for k, v in d.items())
    return struct.pack(">I", len(items)) + items


def message(body, **props):
    flags, fields = 0, b""
    for name, bit in BITS.items():
        if name not in props:
            continue
        flags |= 1 << bit
        v = props[name]
        if name == "headers":
            fields += table(v)
        elif name in ("delivery_mode", "priority"):
            fields += struct.pack(">B", v)
        elif name == "timestamp":
            fields += struct.pack(">Q", v)
        else:
            fields += short(v)
    return struct.pack(">H", flags) + fields + (body.encode() if isinstance(body, str) else body)


TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ARGS = {"n": 30, "x": 1.5, "name": "fib", "tags": ["a"], "next": {"n": 1, "x": 0, "name": "", "tags": [], "next": None}}
REQUESTS = {
    "tutorial": message("30", correlation_id="c6d2e1f0", reply_to="amq.rabbitmq.reply-to.g1h2AA==", content_type="text/plain"),
    "typed": message(json.dumps(ARGS), correlation_id="1", reply_to="amq.rabbitmq.reply-to.x", content_type="application/json",
                     user_id="alice", expiration="5000", headers={"rpc-timeout-ms": 5000, "traceparent": TRACE, "tenant": "acme"}),
    "amqp10": message(json.dumps(ARGS), message_id="m-1", reply_to="/queues/amq.rabbitmq.reply-to.x", content_type="application/json; charset=utf-8",
                      delivery_mode=2, priority=4, timestamp=1764633600, app_id="x", type="t"),
    "control": message("0", correlation_id="p", reply_to="amq.gen-abc", headers={"rpc-control": "describe", "rpc-timeout-ms": "250"}),
    "odd-headers": message("{}", correlation_id="q", reply_to="rabbit-rpc.reply.x", headers={"rpc-timeout-ms": -1, "rpc-control": 7, "nested": {"a": [1, "b", True]}}),
}
REPLIES = {
    "ok": message("832040", correlation_id="c6d2e1f0", content_type="text/plain"),
    "typed": message(json.dumps(ARGS), correlation_id="1", content_type="application/json", headers={"traceparent": TRACE}),
    "error": message("n = -1 is out of range", correlation_id="2", content_type="text/plain; charset=utf-8",
                     headers={"rpc-status": "invalid_argument", "rpc-error-details": json.dumps({"field": "n", "max": 100000})}),
    "ping": message(json.dumps({"procedure": "rpc_queue", "server": "rabbit-rpc serve fib on web-1 pid 1", "version": "0.1.0", "state": "serving", "in_flight": 2}),
                    correlation_id="p", content_type="application/json", headers={"rpc-control": "ping"}),
    "describe": message(json.dumps({"procedure": "add", "doc": "Adds.", "request": {"content_types": ["application/json"]}, "reply": {"content_types": ["application/json"]}}),
                        correlation_id="d", content_type="application/json", headers={"rpc-control": "describe"}),
    "odd-status": message("?", correlation_id="3", headers={"rpc-status": 3, "rpc-error-details": {"a": 1}}),
}

for target, seeds in (("request", REQUESTS), ("reply", REPLIES)):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
