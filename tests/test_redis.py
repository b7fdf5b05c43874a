"""The Redis broker within one process: several Nodes, each with its own RedisBroker (its own
connections), on one real Redis. Cross-process tests are in test_redis_processes.py."""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("coredis", reason="the Redis broker needs coredis (pip install anyotp[redis])")

import coredis

import otp
from otp.redis import NodeNameTaken, RedisBroker, RedisUnavailable, glob_for
from otp.testing import monitor_count, wait_until
from tests._redis_messages import Add, Counter, Crash, Get, OrderCreated, Slow, Watcher
from tests._redis_support import prefix, redis_nodes, redis_url  # noqa: F401

pytestmark = [
    pytest.mark.anyio,
    # coredis leaves anyio memory streams of failed connections unclosed (its bug, not a
    # leak of ours); collect them while this filter is in force (see the fixture below).
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture(autouse=True)
def _collect_coredis_garbage() -> Iterator[None]:
    yield
    gc.collect()


NodeFactory = Callable[..., Any]


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> NodeFactory:  # noqa: F811
    """``async with nodes("a", "b") as (a, b):`` nodes on one Redis under this test's prefix."""

    return redis_nodes(redis_url, prefix)


@asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    client = coredis.Redis.from_url(url)
    async with client:
        yield client


@contextmanager
def stream_reads(broker: RedisBroker) -> Iterator[dict[str, int]]:
    """Count the stream reads of ``broker``'s consumers (``XREADGROUP``, ``XAUTOCLAIM``)
    as they return: once a consumer's reader has returned from two reads, what the first
    one found has been handed to its subscription (an event, instead of waiting a while
    to see that nothing more comes)."""
    client = broker.session.client
    assert client is not None
    counts = {"xreadgroup": 0, "xautoclaim": 0}
    for name in counts:
        original = getattr(client, name)

        async def counted(*args: Any, _name: str = name, _call: Any = original, **kw: Any) -> Any:
            try:
                return await _call(*args, **kw)
            finally:
                counts[_name] += 1

        setattr(client, name, counted)
    try:
        yield counts
    finally:
        for name in counts:
            delattr(client, name)  # the class's method again


class Recorder(otp.GenServer):
    async def init(self, *topics: str) -> None:
        self.got: list[Any] = []
        for topic in topics:
            await self.subscribe(topic)

    async def handle_info(self, message: Any) -> None:
        self.got.append(message)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return list(self.got)


async def has_got(ref: otp.ActorRef, count: int) -> bool:
    """Whether ``ref`` (a Recorder, Watcher or GatedSubscriber: a call answers with what it
    received) has received ``count`` messages; a predicate for ``wait_until``."""
    return len(await ref.call(None)) == count


# ---------------------------------------------------------------------------- topics


def _redis_glob_regex(glob: str) -> re.Pattern[str]:
    # The subset of Redis' glob that glob_for writes: '*' and backslash escapes.
    out = []
    chars = iter(glob)
    for c in chars:
        if c == "*":
            out.append(".*")
        elif c == "\\":
            out.append(re.escape(next(chars)))
        else:
            out.append(re.escape(c))
    return re.compile("".join(out), re.DOTALL)


_segment = st.sampled_from(["a", "b", "c?", "[x]", "d\\e", "$s"])
_pattern_segment = st.one_of(_segment, st.just("*"), st.just("#"))


@given(
    pattern=st.lists(_pattern_segment, min_size=1, max_size=5).map(".".join),
    topic=st.lists(_segment, min_size=1, max_size=6).map(".".join),
)
def test_glob_matches_a_superset_of_the_pattern(pattern: str, topic: str) -> None:
    if otp.topic_matches(pattern, topic):
        assert _redis_glob_regex(glob_for(pattern)).fullmatch(topic), (pattern, topic)


def test_glob_examples() -> None:
    assert glob_for("orders.created") == "orders.created"
    assert glob_for("orders.*") == "orders.*"
    assert glob_for("orders.#") == "orders*"
    assert glob_for("a.#.b") == "a*.b"
    assert glob_for("#.b") == "*b"
    assert glob_for("q?.[x]") == r"q\?.\[x\]"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisBroker(prefix="has space")
    with pytest.raises(ValueError, match="heartbeat"):
        RedisBroker(heartbeat=2.0, node_ttl=1.0)
    with pytest.raises(TypeError, match="codec"):
        RedisBroker(codec="json")  # type: ignore[arg-type]
    with pytest.raises(otp.InvalidTopic):
        RedisBroker(durable=["bad..pattern"])


def leaf(error: BaseException) -> BaseException:
    # otp.Node's __aenter__ lets an error of broker._attach out through its task group,
    # which may wrap it in an ExceptionGroup.
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def test_unreachable_redis_fails_the_node_start_clearly() -> None:
    broker = RedisBroker("redis://127.0.0.1:1/0", connect_timeout=0.5)
    with pytest.raises(BaseException) as caught:
        async with otp.Node(name="lonely", broker=broker):
            pass
    assert isinstance(leaf(caught.value), RedisUnavailable)
    assert "127.0.0.1:1" in str(leaf(caught.value))


async def test_a_broker_needs_its_node() -> None:
    broker = RedisBroker()
    with pytest.raises(RuntimeError, match="serves no node"):
        await broker.publish("a.b", 1)


# ---------------------------------------------------------------------------- pub/sub


async def test_publish_reaches_every_node_and_filters_patterns_exactly(nodes: Any) -> None:
    async with nodes("a", "b") as (a, b):
        star = await b.spawn(Recorder, "orders.*")
        hash_ = await b.spawn(Recorder, "orders.#")
        both = await b.spawn(Recorder, "orders.created", "orders.*", "#")
        async with a.broker.subscribe("orders.*") as local_sub:
            assert await a.broker.publish("orders.created", OrderCreated(1)) >= 1
            assert await a.broker.publish("orders.eu.created", OrderCreated(2)) >= 1
            assert await a.broker.publish("ordersx", OrderCreated(3)) >= 1
            assert await a.broker.publish("orders", OrderCreated(4)) >= 1
            with anyio.fail_after(5):
                first = await local_sub.receive()
            assert first.message == OrderCreated(1)
            await wait_until(lambda: has_got(hash_, 3))
            await wait_until(lambda: has_got(both, 4))
            assert local_sub.receive_nowait() is None
        assert await star.call(None) == [OrderCreated(1)]
        assert await hash_.call(None) == [OrderCreated(1), OrderCreated(2), OrderCreated(4)]
        # An actor whose several patterns match gets a message once.
        assert await both.call(None) == [OrderCreated(i) for i in (1, 2, 3, 4)]


async def test_envelope_metadata_crosses_nodes(nodes: Any) -> None:
    async with nodes("a", "b") as (a, b):
        sender = await a.spawn(Counter, name="sender")
        async with b.broker.subscribe("meta.#") as sub:
            await a.broker.publish(
                "meta.x", {"k": [1, 2]}, sender=sender, headers={"h": "v"}, priority=3
            )
            with anyio.fail_after(5):
                envelope = await sub.receive()
        assert envelope.message == {"k": [1, 2]}
        assert envelope.headers == {"h": "v"}
        assert envelope.priority == 3
        assert envelope.topic == "meta.x"
        assert isinstance(envelope.sender, otp.RemoteRef)
        assert envelope.sender.node == "a"
        assert await envelope.sender.call(Get()) == 0
        # Back on its own node the sender is the local ref again.
        async with a.broker.subscribe("meta.#") as mine:
            await a.broker.publish("meta.y", 1, sender=sender)
            with anyio.fail_after(5):
                assert (await mine.receive()).sender is sender


async def test_publish_without_subscribers_is_a_dead_letter(nodes: Any) -> None:
    async with nodes("a") as (a,):
        assert await a.broker.publish("nobody.home", 1) == 0
        letter = a.broker.recent_dead_letters[-1]
        assert (letter.reason, letter.topic) == ("no_subscriber", "nobody.home")


async def test_unencodable_and_oversized_messages_raise_at_the_publisher(nodes: Any) -> None:
    @attrs.frozen
    class Unregistered:
        x: int

    async with nodes("a") as (a,):
        with pytest.raises(otp.CodecError, match=r"@otp\.message"):
            await a.broker.publish("x.y", Unregistered(1))
        with pytest.raises(otp.CodecError, match="oversized"):
            await a.broker.publish("x.y", "x" * (2 << 20))


async def test_request_reply_and_no_subscriber(nodes: Any) -> None:
    async with nodes("a", "b") as (a, b):
        await b.spawn(Counter, 5, name="counter")
        async with b.broker.subscribe("svc.echo") as sub:

            async def serve() -> None:
                async for envelope in sub:
                    await b.broker.reply(envelope, ("echo", envelope.message))

            async with anyio.create_task_group() as tg:
                tg.start_soon(serve)
                assert await a.broker.request("svc.echo", 7, timeout=5) == ("echo", 7)
                tg.cancel_scope.cancel()
        with pytest.raises(otp.NoSubscriber):
            await a.broker.request("svc.nobody", 1, timeout=5)
        async with b.broker.subscribe("svc.silent"):
            with pytest.raises(otp.RequestTimeout):
                await a.broker.request("svc.silent", 1, timeout=0.2)


async def test_middleware_runs_on_the_publishing_node(nodes: Any) -> None:
    async with nodes("a", "b") as (a, b):

        @a.broker.use
        def stamp(envelope: otp.Envelope) -> otp.Envelope | None:
            if envelope.message == "drop":
                return None
            return attrs.evolve(envelope, headers={"stamped": "yes"})

        async with b.broker.subscribe("mw.x") as sub:
            assert await a.broker.publish("mw.x", "drop") == 0
            await a.broker.publish("mw.x", "keep")
            with anyio.fail_after(5):
                envelope = await sub.receive()
        assert (envelope.message, envelope.headers) == ("keep", {"stamped": "yes"})
        assert a.broker.statistics().filtered == 1


async def test_subscriptions_end_with_their_actor(nodes: Any) -> None:
    async with nodes("a", "b") as (a, b):
        rec = await b.spawn(Recorder, "gone.*")
        await rec.stop()
        await wait_until(lambda: not b.broker.session.want)
        async with b.broker.subscribe("gone.*"):
            assert b.broker.session.want
        await wait_until(lambda: not b.broker.session.want)
        assert await a.broker.publish("gone.x", 1) == 0


# ---------------------------------------------------------------------------- remote refs


async def test_remote_call_cast_send_stop(nodes: Any) -> None:
    async with nodes("a", "b") as (a, b):
        local = await b.spawn(Counter, 1, name="counter")
        assert await b.broker.whereis("counter") is local
        ref = await a.broker.whereis("counter")
        assert isinstance(ref, otp.RemoteRef)
        assert ref == await a.broker.whereis("counter", node="b")
        assert await a.broker.whereis("counter", node="a") is None
        await ref.cast(Add(1))
        await ref.send(Add(1))
        ref.cast_nowait(Add(1))
        ref.send_nowait(Add(1))
        assert await ref.call(Get()) == 5
        with pytest.raises(otp.CallTimeout):
            await ref.call(Slow(0.5), timeout=0.05)
        assert await ref.call("stop-me") == "bye"
        await wait_until(lambda: not local.alive)
        with pytest.raises(otp.ActorExited) as caught:
            await ref.call(Get())
        assert caught.value.reason == "noproc"
        again = await b.spawn(Counter, 0, name="counter")
        # The old ref names the old incarnation; a new lookup finds the new one.
        with pytest.raises(otp.ActorExited):
            await ref.call(Get())
        fresh = await a.broker.whereis("counter")
        assert fresh is not None and fresh != ref
        await fresh.stop("shutdown")
        assert not again.alive
        assert again.exit_reason == "shutdown"
        await fresh.stop()  # stopping a dead actor returns at once


class Held(otp.GenServer):
    """Answers each call with its request; a ``"hold"`` only once ``gate`` is set."""

    async def init(self, gate: anyio.Event) -> None:
        self.gate = gate

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "hold":
            await self.gate.wait()
        return request


async def test_remote_mailbox_full(nodes: Any) -> None:
    # Deterministic: the first call is held by a gate (not a timer) until the third has
    # found the mailbox full.
    async with nodes("a", "b") as (a, b):
        gate = anyio.Event()
        tight = await b.spawn(Held, gate, name="tight", mailbox=otp.Mailbox(1, otp.Overflow.FAIL))
        ref = await a.broker.whereis("tight")
        assert ref is not None
        answers: list[Any] = []

        def enqueued() -> int:
            return int(tight.statistics().mailbox.enqueued)

        async def call(request: str) -> None:
            answers.append(await ref.call(request, timeout=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "hold")
            await wait_until(lambda: enqueued() == 1)  # being handled, held
            tg.start_soon(call, "queued")
            await wait_until(lambda: enqueued() == 2)  # queued: the mailbox is full
            with pytest.raises(otp.MailboxFull):
                await ref.call("refused")
            gate.set()
        assert sorted(answers) == ["hold", "queued"]  # both answered once the gate opened


async def test_remote_monitors(nodes: Any) -> None:
    async with nodes("a", "b") as (a, b):
        target = await b.spawn(Counter, name="target")
        ref = await a.broker.whereis("target")
        assert ref is not None
        watcher = await a.spawn(Watcher, ref)
        await ref.call(Get())
        with pytest.raises(otp.ActorExited):
            await ref.call(Crash("oops"))
        await wait_until(lambda: watcher.call("downs"))
        (down,) = await watcher.call("downs")
        assert down.ref == ref
        assert isinstance(down.reason, otp.RemoteError)
        assert "oops" in str(down.reason)
        assert not otp.is_normal_exit(down.reason)
        assert not target.alive
        # Monitoring a dead remote actor: "noproc" at once (or once asked).
        late = await a.spawn(Watcher, ref)
        await wait_until(lambda: late.call("downs"))
        assert (await late.call("downs"))[0].reason == RemoteErrorLike("oops")
        nobody = await a.spawn(Watcher, a.broker.remote("nobody", "b"))
        await wait_until(lambda: nobody.call("downs"))
        assert (await nobody.call("downs"))[0].reason == "noproc"


class RemoteErrorLike:
    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, otp.RemoteError) and self.text in str(other)


async def test_demonitor_and_watcher_exit_tell_the_remote_node(nodes: Any) -> None:
    class Demonitoring(otp.GenServer):
        async def init(self, target: Any) -> None:
            self.monitor_ref = self.monitor(target)

        async def handle_call(self, request: Any, caller: Any) -> Any:
            return self.demonitor(self.monitor_ref)

    async with nodes("a", "b") as (a, b):
        target = await b.spawn(Counter, name="t")
        ref = await a.broker.whereis("t")
        assert ref is not None
        before = monitor_count(target)
        one = await a.spawn(Demonitoring, ref)
        two = await a.spawn(Demonitoring, ref)
        await ref.call(Get())
        await wait_until(lambda: monitor_count(target) == before + 2)
        assert await one.call(None) is True
        assert await one.call(None) is False
        await two.stop()
        await wait_until(lambda: monitor_count(target) == before)
        assert not b.broker.server.mon_in


async def test_node_leaving_cleanly(nodes: Any, redis_url: str, prefix: str) -> None:  # noqa: F811
    async with nodes("a") as (a,):
        events: list[otp.Event] = []
        a.add_event_listener(events.append)
        async with otp.Node(
            name="b", broker=RedisBroker(redis_url, prefix=prefix, heartbeat=0.1, node_ttl=0.6)
        ) as b:
            await b.spawn(Counter, name="c")
            ref = await a.broker.whereis("c")
            assert ref is not None
            watcher = await a.spawn(Watcher, ref)
            await ref.call(Get())
            assert await a.broker.nodes() == ["a", "b"]
        await wait_until(lambda: watcher.call("downs"))
        # Its actors stopped with "shutdown" before it left.
        assert [d.reason for d in await watcher.call("downs")] == ["shutdown"]
        await wait_until(lambda: any(e.kind == "nodedown" for e in events))
        assert await a.broker.nodes() == ["a"]
        with pytest.raises(otp.ActorExited):
            await ref.call(Get())


async def test_refs_inside_messages(nodes: Any) -> None:
    from tests._redis_messages import PingMe

    async with nodes("a", "b") as (a, b):
        await b.spawn(Counter, name="pinger")
        me = await a.spawn(Watcher, a.broker.remote("nobody", "b"))
        ref = await a.broker.whereis("pinger")
        assert ref is not None
        await ref.cast(PingMe(me))
        await wait_until(lambda: me.call(None))
        assert await me.call(None) == [Add(1)]


async def test_node_names_are_unique(nodes: Any, redis_url: str, prefix: str) -> None:  # noqa: F811
    async with nodes("a"):
        broker = RedisBroker(redis_url, prefix=prefix, heartbeat=0.1, node_ttl=0.3)
        with pytest.raises(BaseException) as caught:
            async with otp.Node(name="a", broker=broker):
                pass
        assert isinstance(leaf(caught.value), NodeNameTaken)
    with pytest.raises(BaseException) as caught:
        async with otp.Node(name="bad.name", broker=RedisBroker(redis_url, prefix=prefix)):
            pass
    assert isinstance(leaf(caught.value), ValueError)
    assert "node name" in str(leaf(caught.value))


async def test_default_node_names_do_not_collide(nodes: Any) -> None:
    async with nodes("nonode", "nonode") as (a, b):
        assert a.broker.node_name != b.broker.node_name
        assert a.broker.node_name.startswith("nonode-")


# ---------------------------------------------------------------------------- wire errors


async def test_wire_errors_become_dead_letters_and_log(
    nodes: Any,
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with nodes("a") as (a,):
        events: list[otp.Event] = []
        a.add_event_listener(events.append)
        async with a.broker.subscribe("in.x"), a.broker.subscribe(otp.DEAD_LETTERS) as dead:
            async with raw_client(redis_url) as raw:
                with caplog.at_level(logging.WARNING, logger="otp.redis"):
                    await raw.publish(f"{prefix}:t:in.x", b"{not json")
                    await raw.publish(f"{prefix}:t:in.x", b'{"k":"pub"}')
                    await raw.publish(f"{prefix}:n:a", b'"just a string"')
                    with anyio.fail_after(5):
                        letters = [(await dead.receive()).message for _ in range(3)]
        assert [letter.reason for letter in letters] == ["malformed"] * 3
        assert isinstance(letters[0].message, otp.Undecodable)
        assert letters[0].message.data == b"{not json"
        assert letters[0].topic == "in.x"
        assert a.broker.wire_errors == 3
        assert sum(e.kind == "dead_letter" for e in events) == 3
        assert any(getattr(r, "otp_event", None) == "wire_error" for r in caplog.records)


# ---------------------------------------------------------------------------- reconnection


async def test_reconnects_after_the_connection_is_killed(
    nodes: Any,
    redis_url: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with nodes("a", "b", backoff=(0.01, 0.1)) as (a, b):
        events: list[otp.Event] = []
        b.add_event_listener(events.append)
        rec = await b.spawn(Recorder, "rc.*")
        await b.spawn(Counter, name="c")
        ref = await a.broker.whereis("c")
        assert ref is not None
        watcher = await a.spawn(Watcher, ref)
        await ref.call(Get())
        async with raw_client(redis_url) as raw:
            # Kill every pub/sub connection of node b: it must notice and come back.
            clients = await raw.client_list()
            mine = [c["id"] for c in clients if c.get("name") == f"otp:{b.broker.prefix}:b"]
            with caplog.at_level(logging.WARNING, logger="otp.redis"):
                for client_id in mine:
                    await raw.client_kill(identifier=int(client_id))
                await wait_until(lambda: any(e.kind == "broker_reconnected" for e in events))
        assert any(e.kind == "broker_disconnected" for e in events)
        assert b.broker.connected and b.broker.reconnects == 1
        # Subscriptions were restored.
        await a.broker.publish("rc.x", 1)
        await wait_until(lambda: has_got(rec, 1))
        assert await rec.call(None) == [1]
        assert await ref.call(Get()) == 0
        assert not await watcher.call("downs")


async def test_monitors_and_calls_fail_with_noconnection(
    nodes: Any,
    redis_url: str,  # noqa: F811
) -> None:
    async with nodes("a", "b", backoff=(0.2, 0.5)) as (a, b):
        await b.spawn(Counter, name="c")
        ref = await a.broker.whereis("c")
        assert ref is not None
        watcher = await a.spawn(Watcher, ref)
        await ref.call(Get())
        outcome: list[Any] = []

        async def slow_call() -> None:
            try:
                await ref.call(Slow(0.3), timeout=5)
            except otp.ActorExited as exc:
                outcome.append(exc.reason)

        served = b.whereis("c")
        before = served.statistics().mailbox.enqueued
        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)
            await wait_until(lambda: served.statistics().mailbox.enqueued > before)
            async with raw_client(redis_url) as raw:
                clients = await raw.client_list()
                for c in clients:
                    if c.get("name") == f"otp:{a.broker.prefix}:a":
                        await raw.client_kill(identifier=int(c["id"]))
        assert outcome == ["noconnection"]
        assert [d.reason for d in await watcher.call("downs")] == ["noconnection"]
        assert await a.broker.wait_connected(5)
        assert await ref.call(Get()) == 0


# ---------------------------------------------------------------------------- streams


async def test_durable_topics_work_sharing_and_redelivery(nodes: Any) -> None:
    async with nodes("a", "b", durable=["jobs.#"]) as (a, b):
        for i in range(6):
            await a.broker.publish("jobs.build", OrderCreated(i))  # nobody listens yet: kept
        assert not a.broker.recent_dead_letters
        taken_by_y: list[int] = []
        # y takes a share of the work and dies without acknowledging it...
        async with b.broker.consume("jobs.build", "builders", consumer="y", batch=2) as y:
            with anyio.fail_after(5):
                taken_by_y.append((await y.receive()).message.id)
        assert taken_by_y
        # ...so x gets everything: the new entries, and y's once they were idle long enough.
        seen: list[int] = []
        async with a.broker.consume("jobs.build", "builders", consumer="x", claim_after=0.2) as x:
            for i in range(6, 10):
                await a.broker.publish("jobs.build", OrderCreated(i))
            with anyio.fail_after(5):
                async for envelope in x:
                    seen.append(envelope.message.id)
                    await x.ack(envelope)
                    if set(seen) == set(range(10)):
                        break
        assert set(taken_by_y) <= set(seen)
        # Acknowledged entries are not delivered again, to x or a new member: its reader
        # claims (every claim_after / 2) and reads, and hands out nothing.
        with stream_reads(a.broker) as reads:
            async with a.broker.consume(
                "jobs.build", "builders", consumer="z", claim_after=0.2
            ) as z:
                await wait_until(lambda: reads["xautoclaim"] >= 2 and reads["xreadgroup"] >= 2)
                assert z.receive_nowait() is None
        with pytest.raises(ValueError, match="not durable"):
            a.broker.consume("other.topic", "g")


async def test_malformed_stream_entries_are_dead_letters(
    nodes: Any,
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    async with nodes("a", durable=["jobs.*"]) as (a,):
        async with raw_client(redis_url) as raw:
            await raw.xadd(f"{prefix}:s:jobs.x", {"d": b"garbage"})
        async with a.broker.consume("jobs.x", "g") as sub:
            await a.broker.publish("jobs.x", Add(1))
            with anyio.fail_after(5):
                envelope = await sub.receive()
            await sub.ack(envelope)
        assert envelope.message == Add(1)
        assert a.broker.recent_dead_letters[-1].reason == "malformed"
        async with raw_client(redis_url) as raw:
            pending = await raw.xpending(f"{prefix}:s:jobs.x", "g")
            await raw.delete([f"{prefix}:s:jobs.x"])
        assert pending.pending == 0


async def test_publish_nowait_and_request_are_the_in_memory_brokers_own(nodes: Any) -> None:
    # RedisBroker stands in for InMemoryBroker: no method raises for being networked.
    async with nodes("a", "b") as (a, b):
        assert isinstance(a.broker, otp.InMemoryBroker)
        assert isinstance(a.broker, otp.Broker)
        rec = await b.spawn(Recorder, "nw.*")
        for i in range(100):
            assert a.broker.publish_nowait("nw.x", i) == 1
        await wait_until(lambda: has_got(rec, 100))
        assert await rec.call(None) == list(range(100))
        stats = a.broker.statistics()
        assert stats.published >= 100 and stats.sent >= 100
        assert stats.pipelines >= 1  # queued frames went out together
        assert a.broker.publish_nowait("nobody.here", 1) == 1
        await wait_until(
            lambda: any(d.reason == "no_subscriber" for d in a.broker.recent_dead_letters)
        )


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


async def test_a_full_mailbox_delays_only_its_actor_and_backpressures_casts(nodes: Any) -> None:
    async with nodes("a", "b", window=8) as (a, b):
        gate = anyio.Event()
        await b.spawn(Gate, gate, name="gated", mailbox=otp.Mailbox(2, otp.Overflow.BLOCK))
        await b.spawn(Counter, 5, name="free")
        gated = await a.broker.whereis("gated")
        free = await a.broker.whereis("free")
        assert gated is not None and free is not None
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for _ in range(40):
                await gated.cast(Add(1))
                sent += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            # The sender runs out of credit and waits, as a local sender would...
            await wait_until(lambda: a.broker.statistics().credit_waits >= 1)
            assert sent < 40
            assert b.broker.statistics().backlog <= 8  # bounded by the window
            # ...while the node's other actors are served at once.
            with anyio.fail_after(2):
                assert await free.call(Get(), timeout=2) == 5
            gate.set()
        assert await gated.call(None, timeout=5) == 40


async def test_monitor_node_and_membership_events(nodes: Any, redis_url: str, prefix: str) -> None:  # noqa: F811
    from otp.redis import NodeDown

    async with nodes("a") as (a,):
        events: list[otp.Event] = []
        a.add_event_listener(
            lambda e: events.append(e) if e.kind in ("nodeup", "nodedown") else None
        )
        got: list[NodeDown] = []
        a.broker.monitor_node("nowhere", got.append)
        assert got == [NodeDown("nowhere", "unknown")]
        async with otp.Node(
            name="b", broker=RedisBroker(redis_url, prefix=prefix, heartbeat=0.1, node_ttl=0.6)
        ):
            await wait_until(lambda: "b" in a.broker.up_nodes())
            watcher = await a.spawn(Watcher, a.broker.remote("nobody", "a"))
            a.broker.monitor_node("b", watcher)
            a.broker.monitor_node("b", got.append).cancel()
            assert await a.broker.nodes() == ["a", "b"]
        await wait_until(lambda: watcher.call(None))
        assert await watcher.call(None) == [NodeDown("b", "left")]
        assert got == [NodeDown("nowhere", "unknown")]  # the cancelled one said nothing
        assert [(e.kind, e.detail) for e in events] == [("nodeup", "b"), ("nodedown", "b")]


async def test_durable_consumers_never_duplicate_without_a_failure(nodes: Any) -> None:
    async with nodes("a", durable=["jobs.*"]) as (a,):
        for i in range(300):
            a.broker.publish_nowait("jobs.dup", OrderCreated(i))
        await a.broker.publish("jobs.dup", OrderCreated(300))
        seen: list[int] = []
        # Handling takes longer than claim_after in total: the read-ahead must not let
        # entries wait in the buffer long enough to be claimed again.
        async with a.broker.consume(
            "jobs.dup", "g", claim_after=0.2, batch=50, mailbox=otp.Mailbox(10)
        ) as jobs:
            with anyio.fail_after(20):
                async for envelope in jobs:
                    seen.append(envelope.message.id)
                    await anyio.sleep(0.002)  # work
                    await jobs.ack(envelope)
                    if len(set(seen)) == 301:
                        break
            # Past claim_after since the last ack (claims come every claim_after / 2): the
            # reader claims and reads again, and hands out nothing more.
            with stream_reads(a.broker) as reads:
                await wait_until(lambda: reads["xautoclaim"] >= 3 and reads["xreadgroup"] >= 2)
            while (extra := jobs.receive_nowait()) is not None:
                seen.append(extra.message.id)
        assert len(seen) == len(set(seen)) == 301


class GatedSubscriber(otp.GenServer):
    """Subscribes to ``topic`` and handles each message only once ``gate`` is set."""

    async def init(self, topic: str, gate: anyio.Event) -> None:
        self.gate = gate
        self.got: list[Any] = []
        await self.subscribe(topic)

    async def handle_info(self, message: Any) -> None:
        await self.gate.wait()
        self.got.append(message)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return list(self.got)


async def test_a_full_subscriber_delays_only_its_own_publishes(nodes: Any) -> None:
    # One node, three receivers: a subscription and an actor, both BLOCK and full, and a
    # free subscription. Publishes to the free one are delivered while the others wait.
    async with nodes("a", "b") as (a, b):
        gate = anyio.Event()
        actor = await b.spawn(
            GatedSubscriber, "hol.actor", gate, mailbox=otp.Mailbox(1, otp.Overflow.BLOCK)
        )
        async with (
            b.broker.subscribe("hol.full", mailbox=otp.Mailbox(2, otp.Overflow.BLOCK)) as full,
            b.broker.subscribe("hol.free") as free,
        ):
            for i in range(10):
                await a.broker.publish("hol.full", i)
                await a.broker.publish("hol.actor", i)
            # Both are full: 2 in the subscription, 1 being handled and 1 in the mailbox.
            await wait_until(lambda: b.broker.statistics().backlog == 8 + 8)
            assert len(full) == 2
            for i in range(20):
                await a.broker.publish("hol.free", i)
            with anyio.fail_after(5):
                got = [(await free.receive()).message for _ in range(20)]
            assert got == list(range(20))  # all of them, while the others stay full
            assert len(full) == 2 and b.broker.statistics().backlog == 16
            # Each full receiver gets all its publishes, in order, once it has room.
            with anyio.fail_after(5):
                assert [(await full.receive()).message for _ in range(10)] == list(range(10))
            gate.set()
            await wait_until(lambda: has_got(actor, 10))
            assert await actor.call(None) == list(range(10))
            await wait_until(lambda: b.broker.statistics().backlog == 0)
            assert b.broker.inbound.backlogs == {}
            assert b.broker.statistics().inbound_full == 0


async def test_inbound_publishes_waiting_for_room_are_bounded(nodes: Any) -> None:
    async with nodes("a", "b", inbound_limit=6) as (a, b):
        async with b.broker.subscribe(
            "hol.full", mailbox=otp.Mailbox(2, otp.Overflow.BLOCK)
        ) as sub:
            for i in range(10):
                await a.broker.publish("hol.full", i)
            # 2 in the buffer, 6 waiting (the limit), 2 refused as dead letters.
            await wait_until(lambda: b.broker.statistics().inbound_full == 2)
            assert b.broker.statistics().backlog == 6
            refused = [d for d in b.broker.recent_dead_letters if d.reason == "inbound_full"]
            assert [d.message for d in refused] == [8, 9]
            with anyio.fail_after(5):
                assert [(await sub.receive()).message for _ in range(8)] == list(range(8))
            await wait_until(lambda: b.broker.statistics().backlog == 0)


async def test_an_ack_racing_a_claim_delivers_nothing_twice(nodes: Any) -> None:
    # Redis runs an XAUTOCLAIM (the entry idle past claim_after, handed out but not yet
    # acknowledged), then the XACK; the ack returns before the claim's reply is read.
    async with nodes("a", durable=["jobs.*"]) as (a,):
        await a.broker.publish("jobs.race", OrderCreated(1))
        async with a.broker.consume("jobs.race", "g", claim_after=0.05) as jobs:
            client = a.broker.session.client
            assert client is not None
            original = client.xautoclaim
            claimed, acked = anyio.Event(), anyio.Event()
            calls = 0

            async def racing(*args: Any, **kwargs: Any) -> Any:
                nonlocal calls
                reply = await original(*args, **kwargs)
                calls += 1
                if reply and any(e is not None for e in reply[1]) and not claimed.is_set():
                    claimed.set()
                    await acked.wait()
                return reply

            client.xautoclaim = racing  # type: ignore[method-assign]
            with anyio.fail_after(5):
                first = await jobs.receive()
                await claimed.wait()
                await jobs.ack(first)
                acked.set()
            after = calls
            await wait_until(lambda: calls >= after + 2)  # the reader went on twice since
            assert jobs.receive_nowait() is None  # not delivered a second time
