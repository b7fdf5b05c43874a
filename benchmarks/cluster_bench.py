"""Latency of the cluster primitives on Redis: ``python -m benchmarks.cluster_bench [URL]``.

Three nodes in this process, each with its own RedisBroker (its own connections), on the
Redis at URL (default redis://127.0.0.1:6379/0) under a fresh prefix. Prints the median and
the 90th percentile of each operation, next to a plain remote call for scale.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import otp
from otp.redis import RedisBroker


class Echo(otp.GenServer):
    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return request

    async def handle_info(self, message: Any) -> None:
        pass  # broadcasts


async def _timed(label: str, rounds: int, op: Callable[[int], Awaitable[Any]]) -> None:
    samples = []
    for i in range(rounds):
        started = time.perf_counter()
        await op(i)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p90 = samples[int(len(samples) * 0.9) - 1]
    print(f"{label:<44} p50 {statistics.median(samples):7.3f} ms   p90 {p90:7.3f} ms")


async def main(url: str) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                otp.Node(name=name, broker=RedisBroker(url, prefix=prefix))
            )
            for name in ("a", "b", "c")
        ]
        a, b, c = nodes
        await b.spawn(Echo, name="echo")
        remote = await a.broker.whereis("echo", node="b")
        await _timed("remote call (for scale)", 300, lambda i: remote.call(i))
        await _timed("spawn with a plain name", 200, lambda i: _spawn_stop(a, f"plain-{i}"))
        await _timed(
            "spawn with otp.Global (claim + release)",
            200,
            lambda i: _spawn_stop(a, otp.Global(f"g-{i}")),
        )
        await c.spawn(Echo, name=otp.Global("svc"))
        await _timed("node.locate(global name on another node)", 300, lambda i: a.locate("svc"))
        for node in nodes:
            await node.groups.join("g", [await node.spawn(Echo) for _ in range(10)])
        await _timed("groups.join (one member)", 200, lambda i: _join(a))
        await _timed("groups.members (3 nodes, 10+ each)", 300, lambda i: a.groups.members("g"))
        await _timed("groups.route (members + ring)", 300, lambda i: a.groups.route("g", str(i)))
        for node in nodes:
            await node.spawn(Echo, name="stats")
        await _timed("multi_call (3 nodes)", 200, lambda i: a.multi_call("stats", i))
        await _timed("broadcast (3 nodes, ~35 workers)", 200, lambda i: a.broker.broadcast(i))


async def _spawn_stop(node: otp.Node, name: str) -> None:
    ref = await node.spawn(Echo, name=name)
    await ref.stop()


async def _join(node: otp.Node) -> None:
    await node.groups.join("joins", await node.spawn(Echo))


if __name__ == "__main__":
    otp.run(main, sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0")
