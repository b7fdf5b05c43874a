"""The Redis broker's sending and receiving paths under load: batches, order, the
listener's fast path and backpressure across nodes (issue 10, points 5 and 10)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("coredis", reason="the Redis broker needs coredis (pip install anyotp[redis])")

import otp
from otp.redis import RedisBroker
from otp.testing import wait_until
from tests._redis_messages import Add, Counter, Get
from tests._redis_support import prefix, redis_nodes, redis_url  # noqa: F401

pytestmark = [
    pytest.mark.anyio,
    # coredis leaves anyio memory streams of failed connections unclosed (its bug).
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture(autouse=True)
def _collect_coredis_garbage() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> Any:  # noqa: F811
    return redis_nodes(redis_url, prefix)


class Recorder(otp.GenServer):
    async def init(self, topic: str) -> None:
        self.got: list[Any] = []
        await self.subscribe(topic)

    async def handle_info(self, message: Any) -> None:
        self.got.append(message)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return list(self.got)


async def has_got(ref: otp.ActorRef, count: int) -> bool:
    """Whether the Recorder ``ref`` has received ``count`` messages (asked by call)."""
    return len(await ref.call(None)) == count


async def test_queued_frames_go_out_together_in_order_each_with_its_receivers(
    nodes: Any,
) -> None:
    async with nodes("a", "b") as (a, b):
        rec = await b.spawn(Recorder, "bt.x")
        before = a.broker.statistics()
        for i in range(300):
            a.broker.publish_nowait("bt.x", i)
            if i % 3 == 0:
                a.broker.publish_nowait("bt.nobody", i)  # in the same batches
        await wait_until(lambda: has_got(rec, 300), timeout=10)
        assert await rec.call(None) == list(range(300))
        stats = a.broker.statistics()
        assert stats.sent - before.sent >= 400
        # 400 frames queued at once went out in a few round trips, not one each...
        assert 1 <= stats.pipelines - before.pipelines <= 40
        # ...and each frame still learnt its own receivers: those nobody heard are dead
        # letters, the others are not.
        await wait_until(lambda: a.broker.statistics().dead_letters - before.dead_letters == 100)
        letters = list(a.broker.recent_dead_letters)
        assert all((d.topic, d.reason) == ("bt.nobody", "no_subscriber") for d in letters)


async def test_published_messages_skip_coredis_per_message_path(nodes: Any) -> None:
    async with nodes("a", "b") as (a, b):
        await b.spawn(Counter, 0, name="counter")
        ref = await a.broker.whereis("counter", node="b")
        assert ref is not None
        pubsub = b.broker.session.pubsub
        handled = 0
        original = pubsub._handle_message

        async def counting(response: Any) -> Any:
            nonlocal handled
            handled += 1
            return await original(response)

        pubsub._handle_message = counting
        for _ in range(200):
            await ref.cast(Add(1))
        assert await ref.call(Get(), timeout=5) == 200
        # The listener handed every frame on as the connection parsed it: none went
        # through coredis' message dicts and its iterator's stream.
        assert handled == 0


async def test_the_listener_falls_back_to_coredis_own_path(
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from otp.redis import _listener

    async def plain(self: Any) -> None:
        await super(_listener._PubSub, self)._consume_push_messages()

    monkeypatch.setattr(_listener._PubSub, "_consume_push_messages", plain)
    make = redis_nodes(redis_url, prefix)
    async with make("a", "b") as (a, b):
        await b.spawn(Counter, 0, name="counter")
        ref = await a.broker.whereis("counter", node="b")
        assert ref is not None
        for _ in range(50):
            await ref.cast(Add(1))
        assert await ref.call(Get(), timeout=5) == 50
        with anyio.fail_after(5):
            assert await a.broker.publish("bt.none", 1) == 0
    assert isinstance(a.broker, RedisBroker)


class Gate(otp.GenServer):
    """Counts casts, each only once ``gate`` is set: a mailbox that stays full."""

    async def init(self, gate: anyio.Event) -> None:
        self.gate = gate
        self.got = 0

    async def handle_cast(self, message: Any) -> None:
        await self.gate.wait()
        self.got += 1

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return self.got


async def test_cast_nowait_to_a_full_block_mailbox_elsewhere_raises_mailbox_full(
    nodes: Any,
) -> None:
    async with nodes("a", "b", window=8) as (a, b):
        gate = anyio.Event()
        await b.spawn(Gate, gate, name="gated", mailbox=otp.Mailbox(2, otp.Overflow.BLOCK))
        await b.spawn(Counter, 0, name="free")
        gated = await a.broker.whereis("gated", node="b")
        free = await a.broker.whereis("free", node="b")
        assert gated is not None and free is not None
        for _ in range(8):  # the window
            gated.cast_nowait(Add(1))
        # They arrive; the mailbox fills and the rest wait for room over there.
        await wait_until(lambda: b.broker.statistics().backlog >= 1)
        # Its node tells this one that the flow's frames wait for room: from then on a
        # remote cast_nowait raises, as a local one at a full BLOCK mailbox does.
        sent = 8
        refusal: list[otp.MailboxFull] = []

        def refused() -> bool:
            nonlocal sent
            try:
                gated.cast_nowait(Add(1))
            except otp.MailboxFull as exc:
                refusal.append(exc)
                return True
            sent += 1
            return False

        await wait_until(refused)
        assert refusal[0].policy is otp.Overflow.BLOCK
        with pytest.raises(otp.MailboxFull):
            gated.send_nowait(Add(1))  # the same flow
        # Only that actor's flow is held: a burst to another actor there never raises,
        # even past the credit window.
        for _ in range(20):
            free.cast_nowait(Add(1))
        assert await free.call(Get(), timeout=5) == 20
        gate.set()
        assert await gated.call(None, timeout=5) == sent
        # Once nothing waits there any more, cast_nowait goes through again.
        flows = a.broker.remote_actors.flows
        await wait_until(lambda: not any(flow.blocked for flow in flows.values()))
        gated.cast_nowait(Add(1))
        assert await gated.call(None, timeout=5) == sent + 1


async def test_a_lone_call_is_published_by_its_caller_and_order_holds(nodes: Any) -> None:
    async with nodes("a", "b") as (a, b):
        await b.spawn(Counter, 0, name="counter")
        ref = await a.broker.whereis("counter", node="b")
        assert ref is not None
        session = a.broker.session
        queued: list[bytes] = []
        send = session.send

        def recording(channel: bytes, data: bytes, *args: Any, **kwargs: Any) -> None:
            queued.append(data)
            send(channel, data, *args, **kwargs)

        session.send = recording
        # Nothing queued: the call goes from the caller's task, not through the outbox.
        assert await ref.call(Get(), timeout=5) == 0
        assert queued == []
        # Casts queued first: a call goes behind them, and sees them all.
        for _ in range(50):
            ref.cast_nowait(Add(1))
        assert await ref.call(Get(), timeout=5) == 50
        assert len(queued) == 51
