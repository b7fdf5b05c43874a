"""otpylib (its own asyncio runtime): OTPModule gen_servers, ``gen_server.call``/``cast``
by registered name, called from inside an otpylib process as its docs require."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from otpylib import gen_server, process
from otpylib.module import GEN_SERVER, OTPModule
from otpylib.runtime import set_runtime
from otpylib.runtime.backends.asyncio_backend import AsyncIOBackend

from .._common import Counter, split
from .._core import Ctx, Metrics, memory_sample, settle_memory

_names = itertools.count()
#: otpylib passes only ``init_arg`` to a module; the counters travel through here.
_counters: dict[str, Counter] = {}


class BenchEcho(metaclass=OTPModule, behavior=GEN_SERVER, version="1.0.0"):  # type: ignore[metaclass,call-arg]
    async def init(self, arg: Any) -> Any:
        return arg

    async def handle_call(self, message: Any, caller: Any, state: Any) -> Any:
        return (gen_server.Reply(payload=message), state)

    async def handle_cast(self, message: Any, state: Any) -> Any:
        _counters[state].hit()
        return (gen_server.NoReply(), state)

    async def handle_info(self, message: Any, state: Any) -> Any:
        return (gen_server.NoReply(), state)

    async def terminate(self, reason: Any, state: Any) -> None:
        pass


def _run(body: Callable[[], Awaitable[Metrics]]) -> Metrics:
    async def main() -> Metrics:
        backend = AsyncIOBackend()
        await backend.initialize()
        set_runtime(backend)
        done: asyncio.Future[Metrics] = asyncio.get_running_loop().create_future()

        async def client() -> None:
            try:
                done.set_result(await body())
            except BaseException as exc:
                done.set_exception(exc)

        await process.spawn(client, mailbox=True)
        try:
            return await done
        finally:
            await backend.shutdown()

    return asyncio.run(main())


def call(ctx: Ctx) -> Metrics:
    n = ctx.n(5_000)

    async def body() -> Metrics:
        name = f"bench_echo_{next(_names)}"
        await gen_server.start(BenchEcho, name, name=name)
        for i in range(max(10, n // 10)):
            await gen_server.call(name, i)
        t0 = perf_counter()
        for i in range(n):
            await gen_server.call(name, i)
        return {"call": (perf_counter() - t0) / n}

    return _run(body)


def one_way(producers: int, key: str) -> Any:
    def variant(ctx: Ctx) -> Metrics:
        n = ctx.n(20_000)

        async def body() -> Metrics:
            name = f"bench_sink_{next(_names)}"
            counter = _counters[name] = Counter()
            await gen_server.start(BenchEcho, name, name=name)

            async def produce(k: int) -> None:
                for i in range(k):
                    await gen_server.cast(name, i)

            async def phase(k: int) -> float:
                loop = asyncio.get_running_loop()
                done = loop.create_future()
                counter.expect(k, lambda: done.set_result(None))
                t0 = perf_counter()
                tasks = [asyncio.create_task(produce(s)) for s in split(k, producers)]
                await done
                elapsed = perf_counter() - t0
                await asyncio.gather(*tasks)
                return elapsed

            await phase(max(10, n // 10))
            elapsed = await phase(n)
            del _counters[name]
            return {key: elapsed / n}

        return _run(body)

    return variant


def spawn_stop(ctx: Ctx) -> Metrics:
    n = ctx.n(2_000, minimum=50)

    async def body() -> Metrics:
        t0 = perf_counter()
        pids = [await gen_server.start(BenchEcho, None) for _ in range(n)]
        for pid in pids:
            await process.exit(pid, "shutdown")
            while process.is_alive(pid):  # noqa: ASYNC110 - otpylib has no join
                await asyncio.sleep(0)
        return {"spawn_stop": (perf_counter() - t0) / n}

    return _run(body)


def idle_memory(ctx: Ctx) -> Metrics:
    n = ctx.n(10_000, minimum=200)

    async def body() -> Metrics:
        before = settle_memory()
        pids = [await gen_server.start(BenchEcho, None) for _ in range(n)]
        rss = (settle_memory() - before) / n
        del pids
        return memory_sample(ctx, "idle_10k", rss)

    return _run(body)
