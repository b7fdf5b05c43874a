"""pykka: one thread per actor; ``ask`` is the call, ``tell`` the cast, ``broadcast`` the
fan-out (``ActorRegistry.broadcast`` to every actor of a class).

A pykka actor is an OS thread, which costs about a millisecond to start and stop: the
spawn+stop and idle-memory samples use 1,000 actors instead of 10,000 (both figures are
per actor and do not depend on the count) to keep a full run within minutes.
"""

from __future__ import annotations

import gc
import threading
from time import perf_counter
from typing import Any

import pykka

from .._common import Counter, split
from .._core import Ctx, Metrics, memory_sample, settle_memory


class _Echo(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


class _Sink(pykka.ThreadingActor):
    def __init__(self, counter: Counter) -> None:
        super().__init__()
        self.counter = counter

    def on_receive(self, message: Any) -> Any:
        self.counter.hit()


class _Idle(pykka.ThreadingActor):
    pass


def call(ctx: Ctx) -> Metrics:
    n = ctx.n(2_000)
    gc.collect()
    ref = _Echo.start()
    try:
        for i in range(max(10, n // 10)):
            ref.ask(i)
        t0 = perf_counter()
        for i in range(n):
            ref.ask(i)
        elapsed = perf_counter() - t0
    finally:
        ref.stop()
    return {"call": elapsed / n}


def one_way(producers: int, key: str) -> Any:
    def variant(ctx: Ctx) -> Metrics:
        n = ctx.n(20_000)
        gc.collect()
        counter = Counter()
        ref = _Sink.start(counter)

        def produce(k: int) -> None:
            tell = ref.tell
            for i in range(k):
                tell(i)

        def phase(k: int) -> float:
            done = threading.Event()
            counter.expect(k, done.set)
            t0 = perf_counter()
            threads = [threading.Thread(target=produce, args=(s,)) for s in split(k, producers)]
            for t in threads:
                t.start()
            done.wait()
            elapsed = perf_counter() - t0
            for t in threads:
                t.join()
            return elapsed

        try:
            phase(max(10, n // 10))
            elapsed = phase(n)
        finally:
            ref.stop()
        return {key: elapsed / n}

    return variant


def fan_out(subscribers: int) -> Any:
    def variant(ctx: Ctx) -> Metrics:
        deliveries = ctx.n(10_000)
        messages = max(2, deliveries // subscribers)
        gc.collect()
        counters = [Counter() for _ in range(subscribers)]
        refs = [_Sink.start(c) for c in counters]

        def phase(k: int) -> float:
            done = threading.Event()
            lock = threading.Lock()
            left = [subscribers]

            def one_done() -> None:
                with lock:
                    left[0] -= 1
                    if not left[0]:
                        done.set()

            for c in counters:
                c.expect(k, one_done)
            broadcast = pykka.ActorRegistry.broadcast
            t0 = perf_counter()
            for i in range(k):
                broadcast(i, target_class=_Sink)
            done.wait()
            return perf_counter() - t0

        try:
            phase(max(1, messages // 10))
            elapsed = phase(messages)
        finally:
            for ref in refs:
                ref.stop()
        return {f"fanout_{subscribers}": elapsed / (messages * subscribers)}

    return variant


def spawn_stop(ctx: Ctx) -> Metrics:
    n = ctx.n(1_000, minimum=20)
    gc.collect()
    t0 = perf_counter()
    refs = [_Idle.start() for _ in range(n)]
    for ref in refs:
        ref.stop()
    return {"spawn_stop": (perf_counter() - t0) / n}


def idle_memory(ctx: Ctx) -> Metrics:
    n = ctx.n(1_000, minimum=50)
    before = settle_memory()
    refs = [_Idle.start() for _ in range(n)]
    rss = (settle_memory() - before) / n
    memory_sample(ctx, "idle_10k", rss)
    for ref in refs:
        ref.stop(block=False)
    pykka.ActorRegistry.stop_all()
    return {"idle_10k": rss}
