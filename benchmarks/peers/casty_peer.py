"""casty (Rust runtime, asyncio, Python 3.12+): typed virtual actors, ``system.ref(actor,
key)``, ``ref.ask(Askable)`` the call, ``ref.tell`` the cast.

casty's actors are *virtual* (Orleans-style): a key is activated by its first message and
deactivated after ``idle_after``, so spawn+stop is an activation (first message) and its
end (``system.release``); every message and state is serialised even in one process.
Run it from its own virtualenv (it needs Python 3.12+)::

    python3.12 -m venv /tmp/vcasty && /tmp/vcasty/bin/pip install casty rich
    python -m benchmarks --peer-python /tmp/vcasty/bin/python
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from casty import ActorSystem, Askable, Context, actor

from .._common import split
from .._core import Ctx, Metrics, memory_sample, settle_memory


@dataclass(frozen=True)
class Echo(Askable[int]):
    value: int


@dataclass(frozen=True)
class Hit:
    value: int


@dataclass(frozen=True)
class Count(Askable[int]):
    pass


@actor(initial=0)
async def echo(ctx: Context[int, Echo]) -> None:
    async for msg in ctx.inbox:
        msg.reply_to.tell(msg.value)


@actor(initial=0)
async def sink(ctx: Context[int, Hit | Count]) -> None:
    seen = 0
    async for msg in ctx.inbox:
        match msg:
            case Hit():
                seen += 1
            case Count():
                msg.reply_to.tell(seen)


def _only_asyncio(ctx: Ctx) -> None:
    if ctx.backend != "asyncio":
        raise RuntimeError("casty runs on asyncio only")


def call(ctx: Ctx) -> Metrics:
    _only_asyncio(ctx)
    n = ctx.n(5_000)

    async def main() -> Metrics:
        async with ActorSystem() as system:
            ref = system.ref(echo, "echo")
            for i in range(max(10, n // 10)):
                await ref.ask(Echo(i))
            t0 = perf_counter()
            for i in range(n):
                await ref.ask(Echo(i))
            elapsed = perf_counter() - t0
        return {"call": elapsed / n}

    return asyncio.run(main())


def one_way(producers: int, key: str) -> Any:
    def variant(ctx: Ctx) -> Metrics:
        _only_asyncio(ctx)
        n = ctx.n(20_000)

        async def main() -> Metrics:
            async with ActorSystem() as system:
                ref = system.ref(sink, "sink")
                await ref.ask(Count())  # activated
                sent = 0

                async def produce(k: int) -> None:
                    tell = ref.tell
                    for i in range(k):
                        tell(Hit(i))
                        if i & 63 == 63:
                            await asyncio.sleep(0)  # tell never yields: as a cast loop would

                async def phase(k: int) -> float:
                    nonlocal sent
                    t0 = perf_counter()
                    await asyncio.gather(*(produce(s) for s in split(k, producers)))
                    sent += k
                    # The ask queues behind every tell: when it answers, all were handled.
                    seen = await ref.ask(Count())
                    elapsed = perf_counter() - t0
                    assert seen == sent, (seen, sent)
                    return elapsed

                await phase(max(10, n // 10))
                elapsed = await phase(n)
            return {key: elapsed / n}

        return asyncio.run(main())

    return variant


def spawn_stop(ctx: Ctx) -> Metrics:
    # An activation by its first message, then its end by system.release (virtual actors
    # have no spawn): the closest counterpart of start + stop.
    _only_asyncio(ctx)
    n = ctx.n(10_000, minimum=100)

    async def main() -> Metrics:
        async with ActorSystem() as system:
            t0 = perf_counter()
            for i in range(n):
                await system.ref(sink, f"s{i}").ask(Count())
            for i in range(n):
                await system.release(sink, f"s{i}")
            elapsed = perf_counter() - t0
        return {"spawn_stop": elapsed / n}

    return asyncio.run(main())


def idle_memory(ctx: Ctx) -> Metrics:
    _only_asyncio(ctx)
    n = ctx.n(10_000, minimum=200)

    async def main() -> Metrics:
        async with ActorSystem() as system:
            before = settle_memory()
            refs = [system.ref(sink, f"k{i}") for i in range(n)]
            await asyncio.gather(*(r.ask(Count()) for r in refs))  # every key active
            rss = (settle_memory() - before) / n
            memory_sample(ctx, "idle_10k", rss)
        return {"idle_10k": rss}

    return asyncio.run(main())
