"""Benchmark peer: aio-pika's own RPC pattern (aio_pika.patterns.RPC), the
way its documentation shows it, as a server and as a load-generating client.

    python aio_pika_rpc.py serve NAME
    python aio_pika_rpc.py bench NAME CALLS INFLIGHT N

`bench` keeps INFLIGHT calls of NAME(n=N) in flight until CALLS are answered
and prints one JSON line with the same keys as `rabbit-rpc bench --json`.
The broker URL comes from AMQP_URL (default: local guest).
"""

import asyncio
import json
import os
import sys
import time

import aio_pika
from aio_pika.patterns import RPC

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


async def serve(name: str) -> None:
    connection = await aio_pika.connect_robust(URL)
    channel = await connection.channel()
    rpc = await RPC.create(channel)

    async def handler(*, n: int) -> str:
        return str(fib(n))

    await rpc.register(name, handler, auto_delete=True)
    print(f"aio-pika serving {name}", file=sys.stderr, flush=True)
    await asyncio.Future()


async def bench(name: str, calls: int, inflight: int, n: int) -> None:
    connection = await aio_pika.connect_robust(URL)
    channel = await connection.channel()
    rpc = await RPC.create(channel)
    await rpc.call(name, kwargs={"n": n})  # warm up, and fail fast without a server

    latencies = []
    errors = 0
    issued = 0

    async def worker() -> None:
        nonlocal issued, errors
        while issued < calls:
            issued += 1
            sent = time.perf_counter()
            try:
                await rpc.call(name, kwargs={"n": n})
                latencies.append(time.perf_counter() - sent)
            except Exception:  # noqa: BLE001 - count every failure
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    seconds = time.perf_counter() - started
    latencies.sort()

    def ms(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    done = len(latencies) + errors
    print(json.dumps({
        "queue": name, "calls": done, "ok": len(latencies), "errors": errors,
        "inflight": inflight, "body_bytes": len(str(n)), "duration_s": seconds,
        "rps": done / seconds, "p50_ms": ms(0.5), "p90_ms": ms(0.9),
        "p99_ms": ms(0.99), "p999_ms": ms(0.999),
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
    }))
    await connection.close()


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "serve":
        asyncio.run(serve(args[1]))
    elif len(args) == 5 and args[0] == "bench":
        asyncio.run(bench(args[1], int(args[2]), int(args[3]), int(args[4])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
