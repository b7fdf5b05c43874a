"""The anyotp side of every scenario, written as a user would write it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

import anyio

import otp

from ._common import Counter, split
from ._core import Ctx, Metrics, memory_sample, settle_memory

# Crash reports go to the "otp" logger; the restart scenario crashes on purpose, and a
# benchmark measures the runtime, not a log handler.
logging.getLogger("otp").setLevel(logging.CRITICAL)

TOPIC = "bench.fanout"


class Echo(otp.GenServer):
    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return request


class Sink(otp.GenServer):
    """Counts every cast and broker message with the shared :class:`Counter`."""

    async def init(self, counter: Counter, topic: str | None = None) -> None:
        self.hit = counter.hit
        if topic is not None:
            await self.subscribe(topic)

    async def handle_cast(self, message: Any) -> None:
        self.hit()

    async def handle_info(self, message: Any) -> None:
        self.hit()


class Idle(otp.GenServer):
    pass


class Crashy(otp.GenServer):
    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return request

    async def handle_cast(self, message: Any) -> None:
        raise RuntimeError("crash requested by the benchmark")


def _run(ctx: Ctx, main: Callable[[], Coroutine[Any, Any, Metrics]]) -> Metrics:
    return otp.run(main, backend=ctx.backend)


def call(ctx: Ctx) -> Metrics:
    """``await ref.call(request)`` with the default 5 s timeout, then with ``timeout=None``."""
    n = ctx.n(10_000)
    warm = max(10, n // 10)

    async def main() -> Metrics:
        async with otp.Node() as node:
            ref = await node.spawn(Echo)

            async def calls(k: int, timeout: float | None) -> float:
                call = ref.call
                t0 = perf_counter()
                for i in range(k):
                    await call(i, timeout)
                return perf_counter() - t0

            await calls(warm, 5.0)
            default = await calls(n, 5.0)
            await calls(warm, None)
            untimed = await calls(n, None)
        return {"call": default / n, "call_nt": untimed / n}

    return _run(ctx, main)


def one_way(producers: int, checkpoint: bool, key: str) -> Callable[[Ctx], Metrics]:
    """``producers`` tasks ``await ref.cast`` (``checkpoint``) or ``ref.cast_nowait`` their
    share of the messages to one actor."""

    def variant(ctx: Ctx) -> Metrics:
        n = ctx.n(40_000 if not checkpoint else 20_000)
        warm = max(10, n // 10)

        async def main() -> Metrics:
            counter = Counter()
            async with otp.Node() as node:
                ref = await node.spawn(Sink, counter)

                async def produce(k: int) -> None:
                    if checkpoint:
                        cast = ref.cast
                        for i in range(k):
                            await cast(i)
                    else:
                        cast_nowait = ref.cast_nowait
                        for i in range(k):
                            cast_nowait(i)

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

                await phase(warm)
                elapsed = await phase(n)
            return {key: elapsed / n}

        return _run(ctx, main)

    return variant


def fan_out(subscribers: int, nowait: bool = False) -> Callable[[Ctx], Metrics]:
    """Actors subscribed to one topic; ``await node.broker.publish(topic, message)`` (or
    ``broker.publish_nowait``, which does not yield, like the floor's send); the time runs
    until every actor has handled every message."""

    def variant(ctx: Ctx) -> Metrics:
        deliveries = ctx.n(40_000)
        messages = max(2, deliveries // subscribers)
        warm = max(1, messages // 10)

        async def main() -> Metrics:
            counters = [Counter() for _ in range(subscribers)]
            async with otp.Node() as node:
                for c in counters:
                    await node.spawn(Sink, c, TOPIC)
                publish = node.broker.publish
                publish_nowait = node.broker.publish_nowait  # type: ignore[attr-defined]

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
                    if nowait:
                        for i in range(k):
                            publish_nowait(TOPIC, i)
                    else:
                        for i in range(k):
                            await publish(TOPIC, i)
                    await done.wait()
                    return perf_counter() - t0

                await phase(warm)
                elapsed = await phase(messages)
            key = f"fanout_nowait_{subscribers}" if nowait else f"fanout_{subscribers}"
            return {key: elapsed / (messages * subscribers)}

        return _run(ctx, main)

    return variant


def publish_nobody(ctx: Ctx) -> Metrics:
    """``await node.broker.publish(topic, message)`` on a topic with no subscriber (each
    becomes a dead letter)."""
    n = ctx.n(50_000)

    async def main() -> Metrics:
        async with otp.Node() as node:
            publish = node.broker.publish
            for i in range(n // 10):
                await publish("nobody.home", i)
            t0 = perf_counter()
            for i in range(n):
                await publish("nobody.home", i)
            elapsed = perf_counter() - t0
        return {"publish_nobody": elapsed / n}

    return _run(ctx, main)


def spawn_stop(ctx: Ctx) -> Metrics:
    """``await node.spawn(Idle)`` N times, then ``await ref.stop()`` on each."""
    n = ctx.n(10_000, minimum=100)

    async def main() -> Metrics:
        async with otp.Node() as node:
            t0 = perf_counter()
            refs = [await node.spawn(Idle) for _ in range(n)]
            for ref in refs:
                await ref.stop()
            elapsed = perf_counter() - t0
        return {"spawn_stop": elapsed / n}

    return _run(ctx, main)


def restart(ctx: Ctx) -> Metrics:
    """A ONE_FOR_ONE supervisor with one worker: crash it with a cast, wait until the name
    points at the new incarnation, and call it."""
    n = ctx.n(1_000, minimum=20)

    async def main() -> Metrics:
        async with otp.Node() as node:
            spec = otp.supervisor(
                "bench_sup",
                children=[otp.worker(Crashy, name="victim")],
                max_restarts=1_000_000_000,
                within=1.0,
            )
            await node.start(spec)
            whereis = node.whereis
            checkpoint = anyio.lowlevel.checkpoint

            async def cycle() -> None:
                old = whereis("victim")
                old.cast_nowait("crash")
                while (new := whereis("victim")) is None or new is old:
                    await checkpoint()
                await new.call("ping")

            for _ in range(max(2, n // 10)):
                await cycle()
            t0 = perf_counter()
            for _ in range(n):
                await cycle()
            elapsed = perf_counter() - t0
        return {"restart": elapsed / n}

    return _run(ctx, main)


def idle_memory(ctx: Ctx) -> Metrics:
    """RSS per idle actor with N started by ``node.spawn``."""
    n = ctx.n(10_000, minimum=200)

    async def main() -> Metrics:
        async with otp.Node() as node:
            before = settle_memory()
            refs = [await node.spawn(Idle) for _ in range(n)]
            rss = (settle_memory() - before) / n
            del refs
            return memory_sample(ctx, "idle_10k", rss)

    return _run(ctx, main)


def _dynamic_supervisor(name: str) -> Any:
    """``otp.dynamic_supervisor`` where it exists, else a plain supervisor (whose children
    then need unique ids)."""
    factory = getattr(otp, "dynamic_supervisor", None)
    if factory is not None:
        return factory(name, max_restarts=1_000_000_000, within=1.0)
    return otp.supervisor(name, max_restarts=1_000_000_000, within=1.0)


def _child_specs(n: int) -> list[Any]:
    if hasattr(otp, "dynamic_supervisor"):
        return [otp.worker(Idle)] * n  # the dynamic supervisor numbers the children
    return [otp.worker(Idle, id=f"w{i}") for i in range(n)]


def many_under_one(ctx: Ctx) -> Metrics:
    """One dynamic supervisor, N ``await sup.start_child(otp.worker(Idle))``. ``start``:
    all N started; RSS per actor; ``shutdown``: ``await sup.stop()``."""
    n = ctx.n(100_000, minimum=500)

    async def main() -> Metrics:
        async with otp.Node() as node:
            specs = _child_specs(n)
            sup = await node.start(_dynamic_supervisor("bench_pool"))
            before = settle_memory()
            t0 = perf_counter()
            start_child = sup.start_child
            for spec in specs:
                await start_child(spec)
            start = perf_counter() - t0
            rss = (settle_memory() - before) / n
            t0 = perf_counter()
            await sup.stop()
            stop = perf_counter() - t0
        return {"sup_start": start, "idle_100k": rss, "sup_stop": stop}

    return _run(ctx, main)


def start_child(ctx: Ctx) -> Metrics:
    """``await sup.start_child(otp.worker(Idle))`` N times on one dynamic supervisor."""
    n = ctx.n(1_000, minimum=100)

    async def main() -> Metrics:
        async with otp.Node() as node:
            sup = await node.start(_dynamic_supervisor("bench_dyn"))
            specs = _child_specs(n)
            t0 = perf_counter()
            for spec in specs:
                await sup.start_child(spec)
            elapsed = perf_counter() - t0
            await sup.stop()
        return {"start_child": elapsed / n}

    return _run(ctx, main)


def spawn_many(ctx: Ctx) -> Metrics:
    """The floor of ``start_child``: what the same number of ``node.spawn`` calls cost."""
    n = ctx.n(1_000, minimum=100)

    async def main() -> Metrics:
        async with otp.Node() as node:
            t0 = perf_counter()
            for _ in range(n):
                await node.spawn(Idle)
            elapsed = perf_counter() - t0
        return {"start_child": elapsed / n}

    return _run(ctx, main)
