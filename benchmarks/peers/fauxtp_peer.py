"""fauxtp (anyio): ``GenServer.start(task_group=...)``, ``call(pid, ...)``, ``cast(pid, ...)``.

Its ``start`` returns before ``init`` has run and its stop is cancelling the actor's scope
(``ActorHandle.cancel_scope``); exit is observed through ``on_exit``.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import anyio
from fauxtp import GenServer
from fauxtp import call as fcall
from fauxtp import cast as fcast
from fauxtp.primitives.pid import PID

from .._common import Counter, split
from .._core import Ctx, Metrics, memory_sample, settle_memory


class _Echo(GenServer):
    async def init(self) -> Any:
        return None

    async def handle_call(self, request: Any, from_ref: Any, state: Any) -> Any:
        return request, state


class _Sink(GenServer):
    def __init__(self, counter: Counter) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.counter = counter

    async def init(self) -> Any:
        return None

    async def handle_cast(self, request: Any, state: Any) -> Any:
        self.counter.hit()
        return state


class _Idle(GenServer):
    async def init(self) -> Any:
        return None


def _run(ctx: Ctx, main: Any) -> Metrics:
    result: Metrics = anyio.run(main, backend=ctx.backend)
    return result


def call(ctx: Ctx) -> Metrics:
    n = ctx.n(5_000)

    async def main() -> Metrics:
        async with anyio.create_task_group() as tg:
            pid = await _Echo.start(task_group=tg)
            for i in range(max(10, n // 10)):
                await fcall(pid, i)
            t0 = perf_counter()
            for i in range(n):
                await fcall(pid, i)
            elapsed = perf_counter() - t0
            tg.cancel_scope.cancel()
        return {"call": elapsed / n}

    return _run(ctx, main)


def one_way(producers: int, key: str) -> Any:
    def variant(ctx: Ctx) -> Metrics:
        n = ctx.n(20_000)

        async def main() -> Metrics:
            counter = Counter()
            async with anyio.create_task_group() as tg:
                pid = await _Sink.start(counter, task_group=tg)

                async def produce(target: PID, k: int) -> None:
                    for i in range(k):
                        await fcast(target, i)

                async def phase(k: int) -> float:
                    done = anyio.Event()
                    counter.expect(k, done.set)
                    t0 = perf_counter()
                    async with anyio.create_task_group() as producers_tg:
                        for share in split(k, producers):
                            producers_tg.start_soon(produce, pid, share)
                        await done.wait()
                        elapsed = perf_counter() - t0
                    return elapsed  # noqa: RET504 - taken before the producers are joined

                await phase(max(10, n // 10))
                elapsed = await phase(n)
                tg.cancel_scope.cancel()
            return {key: elapsed / n}

        return _run(ctx, main)

    return variant


def spawn_stop(ctx: Ctx) -> Metrics:
    # fauxtp spends ~0.3 ms per actor here; 2,000 keeps a full run within minutes (the
    # figure is per actor).
    n = ctx.n(2_000, minimum=50)

    async def main() -> Metrics:
        async with anyio.create_task_group() as tg:
            t0 = perf_counter()
            running = []
            for _ in range(n):
                exited = anyio.Event()

                async def on_exit(pid: PID, reason: str, exited: anyio.Event = exited) -> None:
                    exited.set()

                handle = await _Idle.start_link(task_group=tg, on_exit=on_exit)
                running.append((handle, exited))
            for handle, exited in running:
                handle.cancel_scope.cancel()
                await exited.wait()
            elapsed = perf_counter() - t0
        return {"spawn_stop": elapsed / n}

    return _run(ctx, main)


async def _many(n: int, ctx: Ctx) -> Metrics:
    async with anyio.create_task_group() as tg:
        before = settle_memory()
        t0 = perf_counter()
        pids = [await _Idle.start(task_group=tg) for _ in range(n)]
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        start = perf_counter() - t0
        rss = (settle_memory() - before) / n
        memory_sample(ctx, "idle_10k", rss)
        del pids
        tg.cancel_scope.cancel()
    return {"start": start, "rss": rss}


def idle_memory(ctx: Ctx) -> Metrics:
    n = ctx.n(10_000, minimum=200)
    return {"idle_10k": _run(ctx, lambda: _many(n, ctx))["rss"]}
