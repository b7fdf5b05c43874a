"""Mailbox overflow policies, statistics and hypothesis properties."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otp
from otp.testing import wait_until
from tests._helpers import Block

pytestmark = pytest.mark.anyio

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class Recorder(otp.GenServer):
    """Records every cast; blocks on the first Block message until it is released."""

    async def init(self) -> None:
        self.seen: list[Any] = []

    async def handle_cast(self, message: Any) -> None:
        if isinstance(message, Block):
            await message.event.wait()
        else:
            self.seen.append(message)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return list(self.seen)


class Watcher(Recorder):
    """A Recorder that monitors ``target`` from its init and records what arrives by info."""

    async def init(self, target: otp.ActorRef) -> None:
        await super().init()
        self.monitor(target)

    async def handle_info(self, message: Any) -> None:
        self.seen.append(message)


def test_mailbox_spec_validation() -> None:
    assert otp.Mailbox().capacity is None
    assert otp.Mailbox().overflow is otp.Overflow.BLOCK
    with pytest.raises(ValueError, match="capacity"):
        otp.Mailbox(capacity=0)
    with pytest.raises(TypeError):
        otp.Mailbox(capacity=1, overflow="drop")  # type: ignore[arg-type]


async def _fill(
    policy: otp.Overflow, capacity: int, messages: list[int]
) -> tuple[list[Any], otp.MailboxStatistics, list[BaseException], int]:
    """Block the actor, cast ``messages`` at a full mailbox, release, return what it saw."""
    async with otp.Node() as node:
        ref = await node.spawn(Recorder, mailbox=otp.Mailbox(capacity, policy))
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()  # the actor now handles Block
        errors: list[BaseException] = []
        for m in messages:
            try:
                ref.cast_nowait(m)
            except otp.MailboxFull as exc:
                errors.append(exc)
        stats = ref.statistics().mailbox
        event.set()
        await anyio.wait_all_tasks_blocked()  # drained: the call below finds room
        seen = await ref.call("seen")
        return seen, stats, errors, node.broker.statistics().dead_letters


@given(capacity=st.integers(1, 8), messages=st.lists(st.integers(), max_size=30))
@PROPERTY
def test_drop_oldest_keeps_the_last_capacity_in_order(
    anyio_backend: str, capacity: int, messages: list[int]
) -> None:
    seen, stats, errors, dead = anyio.run(
        _fill, otp.Overflow.DROP_OLDEST, capacity, messages, backend=anyio_backend
    )
    assert seen == messages[-capacity:] if messages else seen == []
    assert not errors
    assert stats.dropped == max(0, len(messages) - capacity)
    assert dead == stats.dropped
    assert stats.depth == min(capacity, len(messages))


@given(capacity=st.integers(1, 8), messages=st.lists(st.integers(), max_size=30))
@PROPERTY
def test_drop_newest_keeps_the_first_capacity(
    anyio_backend: str, capacity: int, messages: list[int]
) -> None:
    seen, stats, errors, dead = anyio.run(
        _fill, otp.Overflow.DROP_NEWEST, capacity, messages, backend=anyio_backend
    )
    assert seen == messages[:capacity]
    assert not errors
    assert stats.dropped == dead == max(0, len(messages) - capacity)


@given(capacity=st.integers(1, 8), messages=st.lists(st.integers(), max_size=30))
@PROPERTY
def test_fail_refuses_past_capacity(anyio_backend: str, capacity: int, messages: list[int]) -> None:
    seen, stats, errors, _ = anyio.run(
        _fill, otp.Overflow.FAIL, capacity, messages, backend=anyio_backend
    )
    assert seen == messages[:capacity]
    assert len(errors) == max(0, len(messages) - capacity)
    assert all(isinstance(e, OverflowError) for e in errors)
    assert stats.dropped == len(errors)


@given(
    capacity=st.integers(1, 4),
    per_sender=st.lists(st.integers(0, 12), min_size=1, max_size=4),
)
@PROPERTY
def test_block_loses_nothing_and_keeps_per_sender_order(
    anyio_backend: str, capacity: int, per_sender: list[int]
) -> None:
    async def scenario() -> list[Any]:
        async with otp.Node() as node:
            ref = await node.spawn(Recorder, mailbox=otp.Mailbox(capacity, otp.Overflow.BLOCK))

            async def sender(sid: int, count: int) -> None:
                for i in range(count):
                    await ref.cast((sid, i))

            async with anyio.create_task_group() as tg:
                for sid, count in enumerate(per_sender):
                    tg.start_soon(sender, sid, count)
            seen: list[Any] = await ref.call("seen")
            assert ref.statistics().mailbox.high_water <= capacity
            return seen

    seen = anyio.run(scenario, backend=anyio_backend)
    assert sorted(seen) == sorted((s, i) for s, n in enumerate(per_sender) for i in range(n))
    for sid in range(len(per_sender)):
        mine = [i for s, i in seen if s == sid]
        assert mine == sorted(mine)


async def test_block_cast_nowait_raises_mailbox_full_when_full() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Recorder, mailbox=otp.Mailbox(1))
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        ref.cast_nowait(1)
        with pytest.raises(otp.MailboxFull, match="full"):
            ref.cast_nowait(2)
        event.set()
        await anyio.wait_all_tasks_blocked()
        assert await ref.call("seen") == [1]


async def test_cancelled_blocked_sender_sends_nothing() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Recorder, mailbox=otp.Mailbox(1))
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        ref.cast_nowait("kept")
        with anyio.move_on_after(0.01) as scope:
            await ref.cast("cancelled")
        assert scope.cancelled_caught
        event.set()
        await anyio.wait_all_tasks_blocked()
        assert await ref.call("seen") == ["kept"]


async def test_dropped_call_fails_fast_with_mailbox_full() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Recorder, mailbox=otp.Mailbox(1, otp.Overflow.DROP_NEWEST))
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        ref.cast_nowait("queued")
        with anyio.fail_after(1), pytest.raises(otp.MailboxFull):
            await ref.call("seen")
        event.set()
        await anyio.wait_all_tasks_blocked()
        assert await ref.call("seen") == ["queued"]


async def test_fail_policy_call_raises_mailbox_full() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Recorder, mailbox=otp.Mailbox(1, otp.Overflow.FAIL))
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        ref.cast_nowait("queued")
        with pytest.raises(otp.MailboxFull):
            await ref.call("seen")
        with pytest.raises(otp.MailboxFull):
            await ref.cast("x")
        event.set()


async def test_down_is_never_refused_by_a_full_mailbox() -> None:
    async with otp.Node() as node:
        target = await node.spawn(Recorder)
        watcher = await node.spawn(Watcher, target, mailbox=otp.Mailbox(1, otp.Overflow.FAIL))
        event = anyio.Event()
        watcher.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        watcher.cast_nowait("fills it")
        await target.stop()
        assert watcher.statistics().mailbox.depth == 2
        event.set()
        await anyio.wait_all_tasks_blocked()
        seen = await watcher.call("seen")
        assert seen[0] == "fills it"
        assert seen[1] == otp.Down(target, "normal")


async def test_priority_casts_are_handled_first_and_in_order_within_a_priority() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Recorder)
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        ref.cast_nowait("low-1", priority=-1)
        ref.cast_nowait("normal-1")
        ref.cast_nowait("high-1", priority=5)
        ref.cast_nowait("normal-2")
        ref.cast_nowait("high-2", priority=5)
        ref.cast_nowait("urgent", priority=9)
        assert ref.statistics().mailbox.depth == 6
        event.set()
        await anyio.wait_all_tasks_blocked()
        assert await ref.call("seen") == [
            "urgent",
            "high-1",
            "high-2",
            "normal-1",
            "normal-2",
            "low-1",
        ]


async def test_drop_oldest_evicts_the_lowest_priority_first() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Recorder, mailbox=otp.Mailbox(2, otp.Overflow.DROP_OLDEST))
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        ref.cast_nowait("high", priority=1)
        ref.cast_nowait("normal")
        ref.cast_nowait("high-2", priority=1)  # evicts "normal", the lowest
        ref.cast_nowait("low", priority=-1)  # lowest itself: dropped
        event.set()
        await anyio.wait_all_tasks_blocked()
        assert await ref.call("seen") == ["high", "high-2"]
        assert ref.statistics().mailbox.dropped == 2


async def test_priority_publish_reaches_actor_mailboxes_in_priority_order() -> None:
    class Subscriber(Recorder):
        async def init(self) -> None:
            await super().init()
            await self.subscribe("jobs.*")

        async def handle_info(self, message: Any) -> None:
            self.seen.append(message)

    async with otp.Node() as node:
        ref = await node.spawn(Subscriber)
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        await node.broker.publish("jobs.a", "bulk")
        await node.broker.publish("jobs.b", "vip", priority=3)
        event.set()
        await anyio.wait_all_tasks_blocked()
        assert await ref.call("seen") == ["vip", "bulk"]


async def test_control_messages_are_outside_the_capacity_and_never_evicted() -> None:
    for policy in (otp.Overflow.DROP_OLDEST, otp.Overflow.FAIL, otp.Overflow.DROP_NEWEST):
        async with otp.Node() as node:
            target = await node.spawn(Recorder)
            watcher = await node.spawn(Watcher, target, mailbox=otp.Mailbox(2, policy))
            event = anyio.Event()
            watcher.cast_nowait(Block(event))
            await anyio.wait_all_tasks_blocked()
            watcher.cast_nowait(1)
            await target.stop()  # a Down is queued: it does not take a slot
            watcher.cast_nowait(2)  # fits: capacity counts user messages only
            if policy is otp.Overflow.DROP_OLDEST:
                watcher.cast_nowait(3)  # evicts 1, the oldest user message, not the Down
            event.set()
            await anyio.wait_all_tasks_blocked()
            seen = await watcher.call("seen")
            down = otp.Down(target, "normal")
            if policy is otp.Overflow.DROP_OLDEST:
                assert seen == [down, 2, 3]
            else:
                assert seen == [1, down, 2]


async def test_call_timeout_covers_waiting_for_room_in_a_block_mailbox() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Recorder, mailbox=otp.Mailbox(1))
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        ref.cast_nowait("fills it")
        with anyio.fail_after(5), pytest.raises(otp.CallTimeout):
            await ref.call("seen", timeout=0.05)
        assert ref.statistics().mailbox.blocked_senders == 0  # the timed-out call left
        event.set()
        await anyio.wait_all_tasks_blocked()
        assert await ref.call("seen") == ["fills it"]


async def test_blocked_caller_gets_the_crash_as_cause() -> None:
    class Crasher(Recorder):
        async def handle_cast(self, message: Any) -> None:
            if isinstance(message, Block):
                await message.event.wait()
                raise RuntimeError("crashed while busy")
            self.seen.append(message)

    async with otp.Node() as node:
        ref = await node.spawn(Crasher, mailbox=otp.Mailbox(1))
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        ref.cast_nowait("fills it")
        errors: list[BaseException] = []

        async def caller() -> None:
            try:
                await ref.call("seen", timeout=None)
            except otp.ActorExited as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            event.set()
        (error,) = errors
        assert isinstance(error.__cause__, RuntimeError)


async def test_call_timeout_validation_and_zero() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Recorder)
        for bad in (-1, float("nan")):
            with pytest.raises(ValueError, match="timeout"):
                await ref.call("seen", timeout=bad)
        for _ in range(5):  # deterministic on both backends
            with pytest.raises(otp.CallTimeout):
                await ref.call("seen", timeout=0)
        assert await ref.call("seen") == []


class _Gated(otp.GenServer):
    """Handles every message at once, except a Block, which it waits on."""

    async def handle_cast(self, message: Any) -> None:
        if isinstance(message, Block):
            await message.event.wait()

    async def handle_info(self, message: Any) -> None:
        pass

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return request


_OPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["cast", "send"]), st.sampled_from([-1, 0, 0, 0, 2])),
        st.tuples(st.sampled_from(["gate", "call", "settle"]), st.just(0)),
    ),
    max_size=40,
)


@given(
    ops=_OPS,
    shape=st.sampled_from(
        [(None, otp.Overflow.BLOCK), (2, otp.Overflow.DROP_NEWEST), (3, otp.Overflow.DROP_OLDEST)]
    ),
)
@PROPERTY
def test_statistics_follow_a_model_of_the_mailbox(
    anyio_backend: str, ops: list[tuple[str, int]], shape: tuple[int | None, otp.Overflow]
) -> None:
    """depth, enqueued, high_water, dropped and messages_handled are exact after every step
    (they are derived when read: the hot paths keep fewer counters), priorities and
    overflow included; a Block in hand is not counted as handled until it returns."""
    capacity, policy = shape

    async def scenario() -> None:
        async with otp.Node() as node:
            ref = await node.spawn(_Gated, mailbox=otp.Mailbox(capacity, policy))
            queue: list[tuple[int, int, Any]] = []  # (priority, seq, message): the model
            seq = 0
            in_hand: Block | None = None
            handled = enqueued = high = dropped = 0

            def check() -> None:
                stats = ref.statistics()
                assert stats.messages_handled == handled
                assert (stats.mailbox.depth, stats.mailbox.enqueued) == (len(queue), enqueued)
                assert (stats.mailbox.high_water, stats.mailbox.dropped) == (high, dropped)

            for op, priority in ops:
                if op == "settle":
                    if in_hand is not None:
                        in_hand.event.set()
                        in_hand = None
                        handled += 1
                    await anyio.wait_all_tasks_blocked()
                    while queue and in_hand is None:  # the actor's order: priority, then FIFO
                        best = max(queue, key=lambda e: (e[0], -e[1]))
                        queue.remove(best)
                        if isinstance(best[2], Block):
                            in_hand = best[2]
                        else:
                            handled += 1
                    check()
                    continue
                message: Any = Block(anyio.Event()) if op == "gate" else seq
                seq += 1
                accepted = True
                if capacity is not None and len(queue) >= capacity:
                    dropped += 1
                    lowest = min(e[0] for e in queue)
                    if policy is otp.Overflow.DROP_NEWEST or priority < lowest:
                        accepted = False
                    else:  # DROP_OLDEST: the oldest message of the lowest priority goes
                        queue.remove(min((e for e in queue if e[0] == lowest), key=lambda e: e[1]))
                if op == "cast":
                    ref.cast_nowait(message, priority=priority)
                elif op == "send":
                    ref.send_nowait(message, priority=priority)
                elif op == "gate":
                    ref.cast_nowait(message)
                else:  # a call whose reply nobody collects (a dropped one fails its handle)
                    ref.send_request(message)
                if accepted:
                    queue.append((priority, seq, message))
                    enqueued += 1
                    high = max(high, len(queue))
                check()
            if in_hand is not None:
                ref.kill()  # the Block in hand never returns: it is not counted as handled
                await ref.join()
            else:
                await ref.stop()  # what is still queued becomes dead letters, unhandled
            queue.clear()
            check()

    anyio.run(scenario, backend=anyio_backend)


class _Runner(otp.GenServer):
    """On ``"first"`` asks for something that must come before the casts queued behind it."""

    async def init(self, action: str, seen: list[Any]) -> None:
        self.action = action
        self.seen = seen

    async def handle_cast(self, message: Any) -> None:
        self.seen.append(message)
        if message == "first":
            if self.action == "priority":
                self.ref.cast_nowait("urgent", priority=5)
            elif self.action == "continue":
                self.continue_with("continued")
            else:
                self.stop()

    async def handle_continue(self, arg: Any) -> None:
        self.seen.append(arg)


@pytest.mark.parametrize("action", ["priority", "continue", "stop"])
async def test_a_run_of_casts_stops_for_what_a_callback_asked(action: str) -> None:
    # The loop handles queued casts back to back; a priority message, a continue or a stop
    # asked for by one of them still comes before the casts behind it.
    seen: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(_Runner, action, seen)
        for message in ("first", "second", "third"):
            ref.cast_nowait(message)
        if action == "stop":
            assert await ref.join() == "normal"
            assert seen == ["first"]
            assert ref.statistics().messages_handled == 1
            return
        await wait_until(lambda: ref.statistics().messages_handled == 3 + (action == "priority"))
        expected = "urgent" if action == "priority" else "continued"
        assert seen == ["first", expected, "second", "third"]


class _Drops:
    def __init__(self) -> None:
        self.dropped: list[tuple[Any, str]] = []

    def _on_drop(self, item: Any, why: str) -> None:
        self.dropped.append((item, why))


@pytest.mark.anyio
async def test_put_past_capacity_holds_room_only_while_queued() -> None:
    # A subscription's dead letters to a full BLOCK buffer: never refused, evictable as
    # any user message, and once taken they give their room back (no control count).
    from otp._backends import backend
    from otp._mailbox import Full, MailboxQueue

    queue = MailboxQueue(otp.Mailbox(capacity=1), backend().parker(), _Drops())
    queue.put("a")
    queue.put_past_capacity("b")
    queue.put_past_capacity("c", priority=1)
    assert len(queue) == 3
    with pytest.raises(Full):
        queue.put("d")
    assert [queue.get() for _ in range(3)] == ["c", "a", "b"]
    queue.put("e")  # the whole capacity is back, and no more
    with pytest.raises(Full):
        queue.put("f")
    stats = queue.statistics()
    assert (stats.depth, stats.enqueued, stats.high_water, stats.dropped) == (1, 4, 3, 0)

    owner = _Drops()
    evicting = MailboxQueue(
        otp.Mailbox(capacity=1, overflow=otp.Overflow.DROP_OLDEST), backend().parker(), owner
    )
    evicting.put("a")
    evicting.put_past_capacity("b")
    assert evicting.put("c")  # evicts "a", then the past-capacity "b" is a user message
    assert evicting.put("d")
    assert owner.dropped == [("a", "dropped_oldest"), ("b", "dropped_oldest")]
    assert [evicting.get() for _ in range(2)] == ["c", "d"]
