"""The same jobs written naively on anyio memory-object streams: what a GenServer built on
anyio alone would pay (every ``send``/``receive`` is a checkpoint)."""

from __future__ import annotations

import math
from collections.abc import Callable
from time import perf_counter
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._common import Counter, split
from ._core import Ctx, Metrics, memory_sample, settle_memory


def _run(ctx: Ctx, main: Callable[[], Any]) -> Metrics:
    result: Metrics = anyio.run(main, backend=ctx.backend)
    return result


async def _echo(request: Any) -> Any:
    return request


def call(ctx: Ctx) -> Metrics:
    """One stream carries requests, another the replies."""
    n = ctx.n(10_000)
    warm = max(10, n // 10)

    async def main() -> Metrics:
        req_send, req_recv = anyio.create_memory_object_stream[int](math.inf)
        rep_send, rep_recv = anyio.create_memory_object_stream[int](math.inf)

        async def server() -> None:
            async with rep_send:
                async for request in req_recv:
                    await rep_send.send(await _echo(request))

        async def calls(k: int) -> float:
            send = req_send.send
            receive = rep_recv.receive
            t0 = perf_counter()
            for i in range(k):
                await send(i)
                await receive()
            return perf_counter() - t0

        async with anyio.create_task_group() as tg:
            tg.start_soon(server)
            await calls(warm)
            elapsed = await calls(n)
            await req_send.aclose()
        return {"call": elapsed / n, "call_nt": elapsed / n}

    return _run(ctx, main)


def one_way(producers: int, checkpoint: bool, key: str) -> Callable[[Ctx], Metrics]:
    """Producers ``send_nowait`` (or ``await send`` with ``checkpoint``) into one stream; the
    consumer iterates it with ``async for``."""

    def variant(ctx: Ctx) -> Metrics:
        n = ctx.n(40_000 if not checkpoint else 20_000)
        warm = max(10, n // 10)

        async def main() -> Metrics:
            send, recv = anyio.create_memory_object_stream[int](math.inf)
            counter = Counter()

            async def consume() -> None:
                handle = counter.handle
                async for message in recv:
                    await handle(message)

            async def produce(k: int) -> None:
                if checkpoint:
                    s = send.send
                    for i in range(k):
                        await s(i)
                else:
                    s_nowait = send.send_nowait
                    for i in range(k):
                        s_nowait(i)

            async def phase(k: int) -> float:
                done = anyio.Event()
                counter.expect(k, done.set)
                t0 = perf_counter()
                async with anyio.create_task_group() as tg:
                    for share in split(k, producers):
                        tg.start_soon(produce, share)
                    await done.wait()
                    elapsed = perf_counter() - t0
                return elapsed  # noqa: RET504 - taken before the producers are joined

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await phase(warm)
                elapsed = await phase(n)
                tg.cancel_scope.cancel()
            return {key: elapsed / n}

        return _run(ctx, main)

    return variant


def fan_out(subscribers: int, key: str | None = None) -> Callable[[Ctx], Metrics]:
    """One stream per subscriber, ``send_nowait`` to each, consumers ``async for``."""

    def variant(ctx: Ctx) -> Metrics:
        deliveries = ctx.n(40_000)
        messages = max(2, deliveries // subscribers)
        warm = max(1, messages // 10)

        async def main() -> Metrics:
            counters = [Counter() for _ in range(subscribers)]
            streams = [anyio.create_memory_object_stream[int](math.inf) for _ in counters]
            puts = [s.send_nowait for s, _ in streams]

            async def consume(recv: MemoryObjectReceiveStream[int], counter: Counter) -> None:
                handle = counter.handle
                async for message in recv:
                    await handle(message)

            async def phase(k: int) -> float:
                done = anyio.Event()
                left = [subscribers]

                def one_done() -> None:
                    left[0] -= 1
                    if not left[0]:
                        done.set()

                for c in counters:
                    c.expect(k, one_done)
                t0 = perf_counter()
                for i in range(k):
                    for put in puts:
                        put(i)
                await done.wait()
                return perf_counter() - t0

            async with anyio.create_task_group() as tg:
                for (_, recv), counter in zip(streams, counters):
                    tg.start_soon(consume, recv, counter)
                await phase(warm)
                elapsed = await phase(messages)
                tg.cancel_scope.cancel()
            return {f"fanout_{subscribers}": elapsed / (messages * subscribers)}

        return _run(ctx, main)

    if key is None:
        return variant

    def renamed(ctx: Ctx) -> Metrics:
        (value,) = variant(ctx).values()
        return {key: value}

    return renamed


async def _stoppable_worker(
    recv: MemoryObjectReceiveStream[Any],
    done: anyio.Event,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    async with recv:
        async for message in recv:
            if message is None:
                break
    done.set()


def spawn_stop(ctx: Ctx) -> Metrics:
    """``await tg.start(worker)`` N times, then a sentinel to each and wait for it to end."""
    n = ctx.n(10_000, minimum=100)

    async def main() -> Metrics:
        t0 = perf_counter()
        async with anyio.create_task_group() as tg:
            running: list[tuple[MemoryObjectSendStream[Any], anyio.Event]] = []
            for _ in range(n):
                send, recv = anyio.create_memory_object_stream[Any](math.inf)
                done = anyio.Event()
                await tg.start(_stoppable_worker, recv, done)
                running.append((send, done))
            for send, done in running:
                send.send_nowait(None)
                await done.wait()
        return {"spawn_stop": (perf_counter() - t0) / n}

    return _run(ctx, main)


class _Crash(Exception):
    pass


def restart(ctx: Ctx) -> Metrics:
    """Each incarnation runs in its own task group; ``except*`` restarts it."""
    n = ctx.n(1_000, minimum=20)

    async def main() -> Metrics:
        current: list[MemoryObjectSendStream[Any] | None] = [None]

        async def child(recv: MemoryObjectReceiveStream[Any]) -> None:
            async for request, event in recv:
                if request == "crash":
                    raise _Crash
                event.set()

        async def supervisor() -> None:
            while True:
                send, recv = anyio.create_memory_object_stream[Any](math.inf)
                current[0] = send
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(child, recv)
                except* _Crash:
                    current[0] = None

        async def cycle() -> None:
            old = current[0]
            assert old is not None
            old.send_nowait(("crash", None))
            while (new := current[0]) is None or new is old:
                await anyio.lowlevel.checkpoint()
            event = anyio.Event()
            new.send_nowait(("ping", event))
            await event.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(supervisor)
            while current[0] is None:
                await anyio.lowlevel.checkpoint()
            for _ in range(max(2, n // 10)):
                await cycle()
            t0 = perf_counter()
            for _ in range(n):
                await cycle()
            elapsed = perf_counter() - t0
            tg.cancel_scope.cancel()
        return {"restart": elapsed / n}

    return _run(ctx, main)


async def _many(n: int, memory_only: Ctx | None) -> Metrics:
    all_started = anyio.Event()
    started = [0]

    async def idle(recv: MemoryObjectReceiveStream[Any]) -> None:
        started[0] += 1
        if started[0] == n:
            all_started.set()
        await recv.receive()

    before = settle_memory()
    async with anyio.create_task_group() as tg:
        t0 = perf_counter()
        sends = []
        for _ in range(n):
            send, recv = anyio.create_memory_object_stream[Any](math.inf)
            sends.append(send)
            tg.start_soon(idle, recv)
        await all_started.wait()
        start = perf_counter() - t0
        await anyio.lowlevel.checkpoint()
        rss = (settle_memory() - before) / n
        if memory_only is not None:
            memory_sample(memory_only, "idle_10k", rss)
        t0 = perf_counter()
        for send in reversed(sends):
            send.send_nowait(None)
    return {"start": start, "rss": rss, "stop": perf_counter() - t0}


def idle_memory(ctx: Ctx) -> Metrics:
    n = ctx.n(10_000, minimum=200)
    result = _run(ctx, lambda: _many(n, ctx))
    return {"idle_10k": result["rss"]}


def many_under_one(ctx: Ctx) -> Metrics:
    n = ctx.n(100_000, minimum=500)
    result = _run(ctx, lambda: _many(n, None))
    return {"sup_start": result["start"], "idle_100k": result["rss"], "sup_stop": result["stop"]}
