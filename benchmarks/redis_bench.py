"""The Redis broker across processes, beside raw coredis in the same run.

Starts a peer process (this script with ``--peer``) that runs an anyotp node with an
``echo`` actor and a counting subscriber, plus a raw coredis subscriber; then measures, from
this process:

* call round-trip: ``await ref.call(...)`` on the peer's actor (sequential, then with
  concurrent callers), beside a raw PUBLISH request / PUBLISH reply round trip;
* pub/sub throughput: ``await broker.publish(...)`` of small attrs messages until the peer's
  subscriber has counted them all, beside a raw ``await client.publish(bytes)`` loop;
* bulk throughput: ``broker.publish_nowait(...)`` and remote ``await ref.cast(...)`` (the
  broker pipelines queued frames), beside raw coredis pipelines of the same PUBLISHes;
  the targets of issue 10 (>= 20k/s per node on asyncio; call p50 <= 1.2x raw) are
  marked ok or MISSED.

Run: ``python benchmarks/redis_bench.py [--url redis://127.0.0.1:6379/0] [--n 2000]
[--backend asyncio|trio] [--quick]``. Needs a Redis server and coredis. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import coredis

import otp
from otp.redis import RedisBroker


@otp.message("bench.tick")
@attrs.frozen
class Tick:
    n: int
    payload: str = "x" * 32


@otp.message("bench.end")
@attrs.frozen
class End:
    count: int


class Echo(otp.GenServer):
    async def handle_call(self, request: Any, caller: Any) -> Any:
        return request


class CountingSink(otp.GenServer):
    async def init(self) -> None:
        self.count = 0
        self.casts = 0
        await self.subscribe("bench.ticks")

    async def handle_cast(self, message: Any) -> None:
        self.casts += 1

    async def handle_call(self, request: Any, caller: Any) -> Any:
        casts, self.casts = self.casts, 0
        return casts

    async def handle_info(self, message: Any) -> None:
        match message:
            case Tick():
                self.count += 1
            case End(expected):
                await self.publish("bench.done", End(self.count))
                self.count = 0
                del expected


# ---------------------------------------------------------------------------- the peer


async def peer(url: str, prefix: str) -> None:
    broker = RedisBroker(url, prefix=prefix)
    async with otp.Node(name="bench-peer", broker=broker) as node:
        await node.spawn(Echo, name="echo")
        await node.spawn(CountingSink, name="sink")
        raw = coredis.Redis.from_url(url)
        async with raw, raw.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(f"{prefix}:raw:req", f"{prefix}:raw:ticks")
            print("READY", flush=True)
            count = 0
            async for message in pubsub:
                if message["type"] != "message":
                    continue
                channel = message["channel"]
                if channel.endswith(b":raw:req"):
                    await raw.publish(f"{prefix}:raw:rep", message["data"])
                elif message["data"] == b"end":
                    await raw.publish(f"{prefix}:raw:done", str(count).encode())
                    count = 0
                else:
                    count += 1


# ---------------------------------------------------------------------------- measuring


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} us"


async def bench_calls(node: otp.Node, n: int, concurrency: int) -> dict[str, float]:
    ref = await node.broker.whereis("echo", node="bench-peer")  # type: ignore[attr-defined]
    assert ref is not None
    for _ in range(50):
        await ref.call(1)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await ref.call(i)
        samples.append(time.perf_counter() - start)
    per_task = max(1, n // concurrency)
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):

            async def caller() -> None:
                for i in range(per_task):
                    await ref.call(i)

            tg.start_soon(caller)
    elapsed = time.perf_counter() - start
    samples.sort()
    return {
        "mean": statistics.fmean(samples),
        "p50": samples[len(samples) // 2],
        "p99": samples[int(len(samples) * 0.99) - 1],
        "rate": per_task * concurrency / elapsed,
    }


async def bench_raw_round_trip(raw: Any, prefix: str, n: int) -> dict[str, float]:
    async with raw.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(f"{prefix}:raw:rep")
        samples = []
        for i in range(n + 50):
            start = time.perf_counter()
            await raw.publish(f"{prefix}:raw:req", str(i).encode())
            while True:
                message = await pubsub.get_message()
                if message is not None and message["type"] == "message":
                    break
            if i >= 50:
                samples.append(time.perf_counter() - start)
    samples.sort()
    return {
        "mean": statistics.fmean(samples),
        "p50": samples[len(samples) // 2],
        "p99": samples[int(len(samples) * 0.99) - 1],
    }


async def bench_publish(node: otp.Node, n: int) -> float:
    broker = node.broker
    async with broker.subscribe("bench.done") as done:
        start = time.perf_counter()
        for i in range(n):
            await broker.publish("bench.ticks", Tick(i))
        await broker.publish("bench.ticks", End(n))
        got = (await done.receive()).message
        elapsed = time.perf_counter() - start
    assert got == End(n), f"the peer counted {got}, expected {n}"
    return n / elapsed


async def bench_casts(node: otp.Node, n: int) -> float:
    ref = await node.broker.whereis("sink", node="bench-peer")  # type: ignore[attr-defined]
    assert ref is not None
    await ref.call("reset")
    start = time.perf_counter()
    for i in range(n):
        await ref.cast(Tick(i))
    got = await ref.call("count", timeout=60)
    elapsed = time.perf_counter() - start
    assert got == n, f"the peer counted {got} casts, expected {n}"
    return n / elapsed


async def bench_publish_nowait(node: otp.Node, n: int) -> float:
    broker = node.broker
    async with broker.subscribe("bench.done") as done:
        start = time.perf_counter()
        for i in range(n):
            broker.publish_nowait("bench.ticks", Tick(i))
            if i % 256 == 255:
                await anyio.lowlevel.checkpoint()
        await broker.publish("bench.ticks", End(n))
        got = (await done.receive()).message
        elapsed = time.perf_counter() - start
    assert got == End(n), f"the peer counted {got}, expected {n}"
    return n / elapsed


async def bench_raw_pipelined(raw: Any, prefix: str, n: int, batch: int = 512) -> float:
    payload = otp.JsonCodec().encode(Tick(0))
    async with raw.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(f"{prefix}:raw:done")
        start = time.perf_counter()
        sent = 0
        while sent < n:
            size = min(batch, n - sent)
            async with raw.pipeline(transaction=False) as pipe:
                for _ in range(size):
                    pipe.publish(f"{prefix}:raw:ticks", payload)
            sent += size
        await raw.publish(f"{prefix}:raw:ticks", b"end")
        while True:
            message = await pubsub.get_message()
            if message is not None and message["type"] == "message":
                break
        elapsed = time.perf_counter() - start
    assert int(message["data"]) == n
    return n / elapsed


async def bench_raw_publish(raw: Any, prefix: str, n: int) -> float:
    payload = otp.JsonCodec().encode(Tick(0))  # a payload of the same size
    async with raw.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(f"{prefix}:raw:done")
        start = time.perf_counter()
        for _ in range(n):
            await raw.publish(f"{prefix}:raw:ticks", payload)
        await raw.publish(f"{prefix}:raw:ticks", b"end")
        while True:
            message = await pubsub.get_message()
            if message is not None and message["type"] == "message":
                break
        elapsed = time.perf_counter() - start
    assert int(message["data"]) == n
    return n / elapsed


def start_peer(url: str, prefix: str, backend: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--peer", url, prefix, backend],
        stdout=subprocess.PIPE,
    )


async def run(
    url: str, prefix: str, proc: subprocess.Popen[bytes], n: int, concurrency: int
) -> list[tuple[str, str, str]]:
    try:
        assert proc.stdout is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        if line.strip() != b"READY":
            raise RuntimeError(f"the benchmark peer did not start: {line!r}")
        rows: list[tuple[str, str, str]] = []
        raw = coredis.Redis.from_url(url)
        async with raw, otp.Node(name="bench-main", broker=RedisBroker(url, prefix=prefix)) as node:
            calls = await bench_calls(node, n, concurrency)
            raw_rt = await bench_raw_round_trip(raw, prefix, n)
            rows.append(
                (
                    "call round-trip (sequential)",
                    f"{_us(calls['mean'])} mean, p50 {_us(calls['p50'])}, p99 {_us(calls['p99'])}",
                    f"raw PUBLISH req/rep: {_us(raw_rt['mean'])} mean, p50 {_us(raw_rt['p50'])}",
                )
            )
            rows.append(
                (
                    f"calls/s ({concurrency} concurrent callers)",
                    f"{calls['rate']:,.0f}/s",
                    f"raw sequential: {1 / raw_rt['mean']:,.0f}/s",
                )
            )
            ratio = calls["p50"] / raw_rt["p50"]
            rows.append(
                (
                    "call p50 / raw p50 (target <= 1.2x)",
                    f"{ratio:.2f}x {'ok' if ratio <= 1.2 else 'MISSED'}",
                    "",
                )
            )
            publish = await bench_publish(node, n)
            raw_publish = await bench_raw_publish(raw, prefix, n)
            rows.append(
                (
                    "pub/sub throughput (awaited publish)",
                    f"{publish:,.0f} msg/s",
                    f"raw coredis publish: {raw_publish:,.0f} msg/s "
                    f"(anyotp at {publish / raw_publish:.0%})",
                )
            )
            bulk = max(n, 20_000) if n >= 2000 else n
            raw_pipe = await bench_raw_pipelined(raw, prefix, bulk)
            nowait = await bench_publish_nowait(node, bulk)
            rows.append(
                (
                    f"publish_nowait, {bulk} msgs (target >= 20k/s)",
                    f"{nowait:,.0f} msg/s {'ok' if nowait >= 20_000 else 'MISSED'}",
                    f"raw pipelined publish: {raw_pipe:,.0f} msg/s "
                    f"(anyotp at {nowait / raw_pipe:.0%})",
                )
            )
            casts = await bench_casts(node, bulk)
            rows.append(
                (
                    f"remote await cast, {bulk} msgs (target >= 20k/s)",
                    f"{casts:,.0f} msg/s {'ok' if casts >= 20_000 else 'MISSED'}",
                    f"raw pipelined publish: {raw_pipe:,.0f} msg/s "
                    f"(anyotp at {casts / raw_pipe:.0%})",
                )
            )
        return rows
    finally:
        assert proc.stdout is not None
        proc.stdout.close()
        proc.kill()
        proc.wait()


def print_table(rows: list[tuple[str, str, str]], header: str) -> None:
    print(header)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    names = ("measure", "anyotp RedisBroker", "raw coredis")
    widths = [max(w, len(h)) for w, h in zip(widths, names)]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(h.ljust(w) for h, w in zip(names, widths)))
    print(line)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        url, prefix, backend = sys.argv[2:5]
        otp.run(peer, url, prefix, backend=backend)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--quick", action="store_true", help="n=200: a smoke run")
    args = parser.parse_args()
    n = 200 if args.quick else args.n
    prefix = f"otp-bench-{uuid.uuid4().hex[:8]}"
    proc = start_peer(args.url, prefix, args.backend)
    rows = otp.run(run, args.url, prefix, proc, n, args.concurrency, backend=args.backend)
    print_table(rows, f"Redis broker, {n} operations, {args.backend}, Redis at {args.url}")


if __name__ == "__main__":
    main()
