"""triotp (trio): module-style gen_servers started in a nursery, ``gen_server.call``/``cast``
by registered name. Its mailboxes are unbuffered trio channels, so a cast waits for the
server to take the message.

triotp 0.2 pins trio < 0.20 and 0.3 needs Python >= 3.13: run it from its own virtualenv
with ``python -m benchmarks --peer-python /path/to/venv/bin/python`` (see the docs).
"""

from __future__ import annotations

import itertools
from time import perf_counter
from types import SimpleNamespace
from typing import Any

import trio
from triotp import gen_server, mailbox

from .._common import Counter, split
from .._core import Ctx, Metrics, memory_sample, run_backend, settle_memory

_names = itertools.count()


async def _init(arg: Any) -> Any:
    counter, started = arg
    if started is not None:
        started.set()
    return counter


async def _handle_call(message: Any, caller: Any, state: Any) -> Any:
    return (gen_server.Reply(payload=message), state)


async def _handle_cast(message: Any, state: Any) -> Any:
    if message == "stop":
        return (gen_server.Stop(), state)
    state.hit()
    return (gen_server.NoReply(), state)


async def _handle_info(message: Any, state: Any) -> Any:
    return (gen_server.NoReply(), state)


async def _terminate(reason: Any, state: Any) -> None:
    pass


_module = SimpleNamespace(
    __name__="bench_triotp_server",
    init=_init,
    handle_call=_handle_call,
    handle_cast=_handle_cast,
    handle_info=_handle_info,
    terminate=_terminate,
)


async def _start(
    nursery: trio.Nursery, counter: Counter | None, name: str | None, done: trio.Event | None = None
) -> None:
    started = trio.Event()

    async def run() -> None:
        await gen_server.start(_module, (counter, started), name)
        if done is not None:
            done.set()

    nursery.start_soon(run)
    await started.wait()


def call(ctx: Ctx) -> Metrics:
    n = ctx.n(5_000)

    async def main() -> Metrics:
        mailbox._init()
        name = f"bench_echo_{next(_names)}"
        async with trio.open_nursery() as nursery:
            await _start(nursery, Counter(), name)
            for i in range(max(10, n // 10)):
                await gen_server.call(name, i)
            t0 = perf_counter()
            for i in range(n):
                await gen_server.call(name, i)
            elapsed = perf_counter() - t0
            nursery.cancel_scope.cancel()
        return {"call": elapsed / n}

    return run_backend("trio", main)


def one_way(producers: int, key: str) -> Any:
    def variant(ctx: Ctx) -> Metrics:
        n = ctx.n(20_000)

        async def main() -> Metrics:
            mailbox._init()
            name = f"bench_sink_{next(_names)}"
            counter = Counter()

            async def produce(k: int) -> None:
                for i in range(k):
                    await gen_server.cast(name, i)

            async with trio.open_nursery() as nursery:
                await _start(nursery, counter, name)

                async def phase(k: int) -> float:
                    done = trio.Event()
                    counter.expect(k, done.set)
                    t0 = perf_counter()
                    async with trio.open_nursery() as producers_nursery:
                        for share in split(k, producers):
                            producers_nursery.start_soon(produce, share)
                        await done.wait()
                        elapsed = perf_counter() - t0
                    return elapsed  # noqa: RET504 - taken before the producers are joined

                await phase(max(10, n // 10))
                elapsed = await phase(n)
                nursery.cancel_scope.cancel()
            return {key: elapsed / n}

        return run_backend("trio", main)

    return variant


def spawn_stop(ctx: Ctx) -> Metrics:
    # ~0.8 ms per actor: 2,000 keeps a full run within minutes (the figure is per actor).
    n = ctx.n(2_000, minimum=50)

    async def main() -> Metrics:
        mailbox._init()
        async with trio.open_nursery() as nursery:
            t0 = perf_counter()
            running = []
            for _ in range(n):
                name = f"bench_idle_{next(_names)}"
                done = trio.Event()
                await _start(nursery, Counter(), name, done)
                running.append((name, done))
            for name, done in running:
                await gen_server.cast(name, "stop")
                await done.wait()
            elapsed = perf_counter() - t0
        return {"spawn_stop": elapsed / n}

    return run_backend("trio", main)


async def _many(n: int, ctx: Ctx) -> Metrics:
    mailbox._init()
    counter = Counter()
    before = settle_memory()
    async with trio.open_nursery() as nursery:
        t0 = perf_counter()
        for _ in range(n):
            await _start(nursery, counter, None)
        start = perf_counter() - t0
        await trio.lowlevel.checkpoint()
        rss = (settle_memory() - before) / n
        memory_sample(ctx, "idle_10k", rss)
        nursery.cancel_scope.cancel()
    return {"start": start, "rss": rss}


def idle_memory(ctx: Ctx) -> Metrics:
    n = ctx.n(10_000, minimum=200)
    return {"idle_10k": run_backend("trio", lambda: _many(n, ctx))["rss"]}
