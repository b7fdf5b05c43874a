"""The amortised checkpoint of ``await cast`` / ``send`` / ``publish``.

A one-way send that finds room yields to the scheduler once per budget (64 operations or
1 ms, whichever comes first) instead of once per message. These tests pin the promise
that makes that safe: no other task waits behind a tight producer for more than one
budget, and cancellation is still honoured.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

import otp
from otp._backends import BUDGET_OPS, BUDGET_SLICE

pytestmark = pytest.mark.anyio


@pytest.fixture
def rounds(anyio_backend: str) -> int:
    """How many producer turns may come between two turns of another ready task: asyncio
    runs ready tasks in FIFO order (one), trio runs each once a batch but reverses a batch
    at random to shake out order dependence, so two turns can come back to back."""
    return 2 if anyio_backend == "trio" else 1


class Sink(otp.GenServer):
    async def init(self) -> None:
        self.seen = 0

    async def handle_cast(self, message: Any) -> None:
        self.seen += 1

    async def handle_info(self, message: Any) -> None:
        self.seen += 1

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return self.seen


async def _max_run_between_ticks(send: Any, n: int, work: float = 0.0) -> int:
    """Run ``n`` sends in a tight loop beside a ticker task; return the longest run of sends
    that happened with no tick in between (how long the ticker was starved, in sends)."""
    sent = 0
    runs: list[int] = []
    last = 0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal last
        while not done.is_set():
            runs.append(sent - last)
            last = sent
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()  # the ticker is running
        for i in range(n):
            if work:
                until = time.perf_counter() + work
                while time.perf_counter() < until:
                    pass
            await send(i)
            sent += 1
        done.set()
    runs.append(sent - last)
    return max(runs)


async def test_a_tight_cast_loop_yields_at_least_once_per_budget(rounds: int) -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Sink)
        longest = await _max_run_between_ticks(ref.cast, 20 * BUDGET_OPS)
        assert 1 < longest <= rounds * BUDGET_OPS
        assert await ref.call("seen") == 20 * BUDGET_OPS


async def test_a_tight_send_loop_yields_at_least_once_per_budget(rounds: int) -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Sink)
        longest = await _max_run_between_ticks(ref.send, 10 * BUDGET_OPS)
        assert longest <= rounds * BUDGET_OPS
        assert await ref.call("seen") == 10 * BUDGET_OPS


class Subscriber(Sink):
    async def init(self) -> None:
        await super().init()
        await self.subscribe("fair.topic")


async def test_a_tight_publish_loop_yields_at_least_once_per_budget(rounds: int) -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Subscriber)

        async def publish(i: int) -> None:
            await node.broker.publish("fair.topic", i)

        longest = await _max_run_between_ticks(publish, 10 * BUDGET_OPS)
        assert longest <= rounds * BUDGET_OPS
        assert await ref.call("seen") == 10 * BUDGET_OPS


async def test_a_slow_producer_yields_once_per_time_slice(rounds: int) -> None:
    # Each send follows half a slice of busy work: the producer must yield after at most
    # a slice's worth of them (2, plus one for the send that notices), whatever the load.
    async with otp.Node() as node:
        ref = await node.spawn(Sink)
        longest = await _max_run_between_ticks(ref.cast, 40, work=BUDGET_SLICE / 2)
        assert longest <= rounds * 3


async def test_a_cancelled_scope_still_stops_a_cast_loop() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Sink)
        sent = 0
        with anyio.move_on_after(0.05) as scope:
            while True:
                await ref.cast(sent)
                sent += 1
        assert scope.cancelled_caught
        assert await ref.call("seen") == sent


async def test_a_cast_loop_cancelled_from_another_task_stops() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Sink)
        stopped = anyio.Event()

        async def producer(scope: anyio.CancelScope) -> None:
            with scope:
                while True:
                    await ref.cast(0)
            stopped.set()

        scope = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(producer, scope)
            await anyio.lowlevel.checkpoint()
            scope.cancel()
            with anyio.fail_after(5):
                await stopped.wait()


async def test_cast_in_a_cancelled_scope_raises_on_trio_at_once(anyio_backend: str) -> None:
    # trio raises Cancelled at the first operation after the cancel (checked on every send,
    # as trio.lowlevel.checkpoint_if_cancelled does); asyncio delivers a cancellation of the
    # task's own scope at the next real yield, at most one budget later (docs/core.md).
    async with otp.Node() as node:
        ref = await node.spawn(Sink)
        sent = 0
        with anyio.CancelScope() as scope:
            scope.cancel()
            for _ in range(2 * BUDGET_OPS):
                await ref.cast(0)
                sent += 1
        if anyio_backend == "trio":
            assert sent == 0
        else:
            assert sent <= BUDGET_OPS


class Spinner(otp.GenServer):
    """Each cast takes ``work`` seconds of busy work (no await)."""

    async def init(self, work: float) -> None:
        self.work = work
        self.seen = 0

    async def handle_cast(self, message: Any) -> None:
        until = time.perf_counter() + self.work
        while time.perf_counter() < until:
            pass
        self.seen += 1

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return self.seen


@pytest.mark.parametrize("work", [0.0, BUDGET_SLICE / 4])
async def test_an_actor_draining_its_mailbox_yields_once_per_budget(
    rounds: int, work: float
) -> None:
    # The loop asks every BUDGET_OPS messages whether the slice has passed: with slow
    # messages other tasks wait at most that many of them; with fast ones about a slice.
    async with otp.Node() as node:
        ref = await node.spawn(Spinner, work)
        total = 20 * BUDGET_OPS if work else 40_000
        for i in range(total):
            ref.cast_nowait(i)
        runs: list[int] = []
        last = 0
        while (seen := ref.statistics().messages_handled) < total:
            runs.append(seen - last)
            last = seen
            await anyio.lowlevel.checkpoint()
        runs.append(total - last)
        if work:
            assert max(runs) <= rounds * BUDGET_OPS
        else:
            assert len([r for r in runs if r]) >= 2  # it yielded while draining
        assert await ref.call("seen") == total
