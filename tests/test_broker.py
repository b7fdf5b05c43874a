"""The pub/sub broker: topics, envelopes, subscriptions, actor delivery, overflow, dead
letters, priorities, statistics and the Broker protocol."""

from __future__ import annotations

import datetime
from typing import Any

import anyio
import attrs
import pytest

import otp
from otp.testing import broker_index, monitor_count, wait_until
from tests._helpers import Block

pytestmark = pytest.mark.anyio


def memory(node: otp.Node) -> otp.InMemoryBroker:
    """The node's broker, typed as the in-memory one these tests look inside."""
    assert isinstance(node.broker, otp.InMemoryBroker)
    return node.broker


@attrs.frozen
class Created:
    n: int


@attrs.frozen
class Cancelled:
    n: int


class Listener(otp.GenServer):
    """Subscribes to the given topics; records what reaches handle_info."""

    async def init(self, *topics: str) -> None:
        self.seen: list[Any] = []
        for topic in topics:
            await self.subscribe(topic)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case ("subscribe", topic):
                await self.subscribe(topic)
            case ("unsubscribe", topic):
                await self.unsubscribe(topic)
            case ("publish", topic, message):
                return await self.publish(topic, message)
            case "seen":
                return list(self.seen)
        return None

    async def handle_cast(self, message: Any) -> None:
        if isinstance(message, Block):
            await message.event.wait()

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, Block):
            await message.event.wait()
        else:
            self.seen.append(message)


async def seen(ref: otp.ActorRef) -> list[Any]:
    result: list[Any] = await ref.call("seen")
    return result


async def seen_when_idle(ref: otp.ActorRef) -> list[Any]:
    """What ``ref`` saw, once its (bounded) mailbox has room for the asking call."""
    await wait_until(lambda: ref.statistics().mailbox.depth == 0)
    return await seen(ref)


# ---------------------------------------------------------------------------- topics


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("orders.created", "orders.created", True),
        ("orders.created", "orders.cancelled", False),
        ("orders.*", "orders.created", True),
        ("orders.*", "orders.eu.created", False),
        ("orders.*", "orders", False),
        ("orders.#", "orders", True),
        ("orders.#", "orders.created", True),
        ("orders.#", "orders.eu.created", True),
        ("orders.#.created", "orders.created", True),
        ("orders.#.created", "orders.eu.fr.created", True),
        ("orders.#.created", "orders.eu.fr.cancelled", False),
        ("*.created", "orders.created", True),
        ("#", "anything.at.all", True),
        ("#.#", "a", True),
        ("*.*", "a", False),
        ("#", "$otp.dead_letters", False),
        ("*.dead_letters", "$otp.dead_letters", False),
        ("$otp.#", "$otp.dead_letters", True),
        ("$otp.dead_letters", "$otp.dead_letters", True),
        ("a.$b", "a.$b", True),
        ("a.*", "a.$b", True),
    ],
)
def test_topic_matches_examples(pattern: str, topic: str, expected: bool) -> None:
    assert otp.topic_matches(pattern, topic) is expected


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("", "empty"),
        ("orders..created", "empty segment"),
        (".orders", "empty segment"),
        ("orders.", "empty segment"),
        ("orders created", "whitespace"),
        ("orders.*", "wildcards belong in subscription patterns"),
        ("orders.#", "wildcards belong in subscription patterns"),
        ("orders.cre*ted", "wildcards belong"),
    ],
)
async def test_publishing_to_an_invalid_topic_raises(topic: str, problem: str) -> None:
    broker = otp.InMemoryBroker()
    with pytest.raises(otp.InvalidTopic, match=problem) as info:
        await broker.publish(topic, "x")
    assert info.value.topic == topic
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, otp.OTPError)
    assert "'orders.created'" in str(info.value)  # the way out: what a topic looks like
    assert broker.statistics().published == 0


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "empty"),
        ("orders..*", "empty segment"),
        ("orders.cre*", "whole segments"),
        ("orders.#x", "whole segments"),
        ("orders. *", "whitespace"),
    ],
)
async def test_subscribing_to_an_invalid_pattern_raises(pattern: str, problem: str) -> None:
    broker = otp.InMemoryBroker()
    with pytest.raises(otp.InvalidTopic, match=problem):
        broker.subscribe(pattern)
    async with otp.Node(broker=broker) as node:
        ref = await node.spawn(Listener)
        with pytest.raises(otp.ActorExited) as info:  # self.subscribe raised in handle_call
            await ref.call(("subscribe", pattern))
        assert isinstance(info.value.__cause__, otp.InvalidTopic)
    assert broker.statistics().subscribers == {}


async def test_topics_must_be_strings() -> None:
    broker = otp.InMemoryBroker()
    with pytest.raises(TypeError, match="must be a str"):
        await broker.publish(["orders"], "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a str"):
        await broker.publish(42, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a str"):
        broker.subscribe(None)  # type: ignore[arg-type]
    with pytest.raises(otp.InvalidTopic):
        otp.topic_matches("a.*", "a.*")
    with pytest.raises(otp.InvalidTopic):
        otp.topic_matches("a*", "a")


def test_the_broker_modules_know_nothing_of_supervisors() -> None:
    # Broadcast reads the node's index of live actors and exits arrive as monitors' Downs,
    # so no broker module imports a supervisor module (docs/architecture.md, the layers).
    import ast
    import pathlib

    root = pathlib.Path(otp.__file__).parent
    for name in ("_topics", "_envelopes", "_subscriptions", "_middleware", "_bus", "_broker"):
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = {
            node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level
        }
        assert not {m for m in imported if "supervisor" in m or "snapshots" in m}, name


def test_invalid_topic_pickles_with_its_fields() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(otp.InvalidTopic("a..b", "it has an empty segment")))
    assert (error.topic, error.problem) == ("a..b", "it has an empty segment")


# ---------------------------------------------------------------------------- envelopes


@otp.message("test_broker.created")
@attrs.frozen
class WireCreated:
    n: int


def test_message_names_a_class_for_the_wire() -> None:
    assert otp.message_type("test_broker.created") is WireCreated
    assert WireCreated.__otp_message__ == "test_broker.created"  # type: ignore[attr-defined]
    assert otp.message_type("test_broker.nothing") is None

    with pytest.raises(ValueError, match="already used"):

        @otp.message("test_broker.created")
        class Other: ...

    with pytest.raises(TypeError):
        otp.message("")


async def test_subscription_yields_envelopes_with_metadata() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("orders.*") as sub:
        assert await broker.publish("orders.created", Created(1), headers={"trace": "t1"}) == 1
        assert await broker.publish("orders.cancelled", Cancelled(1), priority=3) == 1
        first = await sub.receive()
        second = await sub.receive()
    # priority 3 was published second but is delivered first
    assert second.message == Created(1)
    assert second.topic == "orders.created"
    assert second.headers == {"trace": "t1"}
    assert second.sender is None and second.reply_to is None and second.priority == 0
    assert second.timestamp.tzinfo is datetime.UTC
    assert first.message == Cancelled(1) and first.priority == 3
    assert first.id != second.id
    with pytest.raises(TypeError):
        second.headers["trace"] = "changed"  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        second.topic = "x"  # type: ignore[misc]


async def test_actor_publish_sets_the_sender() -> None:
    async with otp.Node() as node, node.broker.subscribe("events.#") as sub:
        ref = await node.spawn(Listener)
        assert await ref.call(("publish", "events.x", Created(7))) == 1
        envelope = await sub.receive()
    assert envelope.sender == ref
    assert envelope.message == Created(7)


# ---------------------------------------------------------------------------- subscriptions


async def test_subscription_iterates_until_its_context_closes() -> None:
    broker = otp.InMemoryBroker()
    got: list[Any] = []
    all_in = anyio.Event()
    ended = anyio.Event()
    async with anyio.create_task_group() as tg, broker.subscribe("t") as sub:

        async def consume() -> None:
            async for envelope in sub:
                got.append(envelope.message)
                if len(got) == 3:
                    all_in.set()
            ended.set()  # the loop ends once the subscription closes

        tg.start_soon(consume)
        for n in range(3):
            await broker.publish("t", n)
        await all_in.wait()
        assert not ended.is_set()
    assert ended.is_set()
    assert got == [0, 1, 2]
    assert sub.closed
    with pytest.raises(anyio.EndOfStream):
        await sub.receive()
    assert [e async for e in sub] == []


async def test_unread_envelopes_become_dead_letters_when_the_subscription_closes() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("t") as sub:
        await broker.publish("t", "unread")
        assert len(sub) == 1
    letter = broker.recent_dead_letters[-1]
    assert (letter.message, letter.reason, letter.topic) == ("unread", "subscription_closed", "t")
    assert broker.statistics().subscribers == {}


async def test_receive_nowait_and_one_receiver_at_a_time() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("t") as sub, anyio.create_task_group() as tg:
        assert sub.receive_nowait() is None
        await broker.publish("t", 1)
        envelope = sub.receive_nowait()
        assert envelope is not None and envelope.message == 1

        tg.start_soon(sub.receive)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.BusyResourceError):
            await sub.receive()
        await broker.publish("t", 2)
    assert "Subscription 't'" in repr(sub)


async def test_leaving_the_node_ends_its_subscriptions() -> None:
    broker = otp.InMemoryBroker()
    async with otp.Node(broker=broker):
        cm = broker.subscribe("t")
        sub = await cm.__aenter__()
        await broker.publish("t", "buffered")
    assert sub.closed
    assert [e.message async for e in sub] == ["buffered"]  # still readable
    await cm.__aexit__(None, None, None)
    assert broker.statistics().subscribers == {}


async def test_subscription_statistics_follow_its_buffer() -> None:
    broker = otp.InMemoryBroker()
    box = otp.Mailbox(capacity=2, overflow=otp.Overflow.DROP_NEWEST)
    async with broker.subscribe("t", mailbox=box) as sub:
        for n in range(4):
            await broker.publish("t", n)
        stats = sub.statistics()
    assert (stats.depth, stats.enqueued, stats.dropped, stats.high_water) == (2, 2, 2, 2)
    assert stats.capacity == 2 and stats.overflow is otp.Overflow.DROP_NEWEST
    with pytest.raises(TypeError, match=r"otp\.Mailbox"):
        broker.subscribe("t", mailbox=3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- actors


async def test_actor_subscriptions_deliver_to_handle_info() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Listener, "orders.*", "audit.#")
        assert await node.broker.publish("orders.created", Created(1)) == 1
        assert await node.broker.publish("audit.orders.eu", "logged") == 1
        assert await node.broker.publish("orders.eu.created", Created(2)) == 0
        assert await seen(ref) == [Created(1), "logged"]


async def test_an_actor_gets_a_message_once_even_when_patterns_overlap() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Listener, "orders.*", "orders.#", "orders.created")
        await ref.call(("subscribe", "orders.*"))  # twice: still one subscription
        assert await node.broker.publish("orders.created", Created(1)) == 1
        assert await seen(ref) == [Created(1)]
        assert node.broker.statistics().subscribers == {
            "orders.*": 1,
            "orders.#": 1,
            "orders.created": 1,
        }
        await ref.call(("unsubscribe", "orders.*"))
        await ref.call(("unsubscribe", "orders.created"))
        await ref.call(("unsubscribe", "nothing.here"))  # harmless
        assert await node.broker.publish("orders.created", Created(2)) == 1
        await ref.call(("unsubscribe", "orders.#"))
        assert await node.broker.publish("orders.created", Created(3)) == 0
        assert await seen(ref) == [Created(1), Created(2)]
        assert broker_index(memory(node)).actors == 0


async def test_the_broker_watches_a_subscribed_actor_with_one_monitor_while_it_subscribes() -> None:
    # The broker learns of a subscriber's exit as any watcher does (a monitor); it holds
    # one however many patterns, and gives it back with the last unsubscribe.
    async with otp.Node() as node:
        ref = await node.spawn(Listener)
        baseline = monitor_count(ref)
        for _ in range(3):
            await ref.call(("subscribe", "a"))
            await ref.call(("subscribe", "b.*"))
            assert monitor_count(ref) == baseline + 1
            await ref.call(("unsubscribe", "a"))
            assert monitor_count(ref) == baseline + 1
            await ref.call(("unsubscribe", "b.*"))
            assert monitor_count(ref) == baseline
        assert ref.statistics().monitored_by == ()  # not an actor: invisible to users
        await ref.call(("subscribe", "a"))
        await ref.stop()
        assert broker_index(memory(node)).actors == 0
        assert node.broker.statistics().subscribers == {}


async def test_actor_subscriptions_end_when_the_actor_exits() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Listener, "t", "u.*")
        await ref.stop()
        assert node.broker.statistics().subscribers == {}
        assert broker_index(memory(node)).actors == 0
        assert await node.broker.publish("t", 1) == 0
        assert memory(node).recent_dead_letters[-1].reason == "no_subscriber"
        # a dead actor cannot subscribe again: no public path hands the broker a dead ref,
        # so this calls the broker's side of GenServer.subscribe (its Broker protocol hook)
        await memory(node)._subscribe_actor(ref, "t")
        assert node.broker.statistics().subscribers == {}


async def test_actors_and_subscriptions_share_a_topic() -> None:
    async with otp.Node() as node, node.broker.subscribe("t") as sub:
        a = await node.spawn(Listener, "t")
        b = await node.spawn(Listener, "*")
        assert await node.broker.publish("t", "hello") == 3
        assert (await sub.receive()).message == "hello"
        assert await seen(a) == ["hello"]
        assert await seen(b) == ["hello"]


# ---------------------------------------------------------------------------- overflow


async def test_a_slow_dropping_actor_never_blocks_the_publisher_or_the_others() -> None:
    async with otp.Node() as node:
        release = anyio.Event()
        slow = await node.spawn(
            Listener,
            "t",
            mailbox=otp.Mailbox(capacity=1, overflow=otp.Overflow.DROP_NEWEST),
        )
        fast = await node.spawn(Listener, "t")
        await slow.cast(Block(release))  # busy until released
        await anyio.wait_all_tasks_blocked()
        delivered = [await node.broker.publish("t", n) for n in range(5)]
        assert delivered == [2, 1, 1, 1, 1]
        release.set()
        await anyio.wait_all_tasks_blocked()  # slow drains: the calls below find room
        assert await seen(fast) == [0, 1, 2, 3, 4]
        assert await seen(slow) == [0]
        stats = node.broker.statistics()
        assert stats.dropped == 4
        drops = [d for d in memory(node).recent_dead_letters if d.reason == "dropped_newest"]
        assert [d.message for d in drops] == [1, 2, 3, 4]
        assert all(d.recipient == slow for d in drops)


async def test_a_full_fail_actor_loses_the_message_not_the_publisher() -> None:
    async with otp.Node() as node:
        release = anyio.Event()
        full = await node.spawn(
            Listener, "t", mailbox=otp.Mailbox(capacity=1, overflow=otp.Overflow.FAIL)
        )
        await full.cast(Block(release))
        await anyio.wait_all_tasks_blocked()
        assert await node.broker.publish("t", 1) == 1
        assert await node.broker.publish("t", 2) == 0  # no MailboxFull for the publisher
        release.set()
        assert await seen_when_idle(full) == [1]
        letter = memory(node).recent_dead_letters[-1]
        assert (letter.message, letter.reason, letter.topic) == (2, "mailbox_full", "t")
        assert node.broker.statistics().dropped == 1


async def test_a_drop_oldest_actor_keeps_the_newest() -> None:
    async with otp.Node() as node:
        release = anyio.Event()
        ref = await node.spawn(
            Listener, "t", mailbox=otp.Mailbox(capacity=2, overflow=otp.Overflow.DROP_OLDEST)
        )
        await ref.cast(Block(release))
        await anyio.wait_all_tasks_blocked()
        for n in range(5):
            assert await node.broker.publish("t", n) == 1
        release.set()
        assert await seen_when_idle(ref) == [3, 4]
        reasons = [d.reason for d in memory(node).recent_dead_letters]
        assert reasons.count("dropped_oldest") == 3


async def test_a_full_block_actor_makes_the_publisher_wait() -> None:
    async with otp.Node() as node:
        release = anyio.Event()
        ref = await node.spawn(Listener, "t", mailbox=otp.Mailbox(capacity=1))
        await ref.cast(Block(release))
        await anyio.wait_all_tasks_blocked()
        assert await node.broker.publish("t", 1) == 1
        done = anyio.Event()

        async def publish_second() -> None:
            assert await node.broker.publish("t", 2) == 1
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_second)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            assert ref.statistics().mailbox.blocked_senders == 1
            release.set()
        assert done.is_set()
        assert await seen(ref) == [1, 2]
        assert node.broker.statistics().dropped == 0


async def test_a_block_actor_that_exits_releases_the_waiting_publisher() -> None:
    async with otp.Node() as node:
        release = anyio.Event()
        ref = await node.spawn(Listener, "t", mailbox=otp.Mailbox(capacity=1))
        await ref.cast(Block(release))
        await anyio.wait_all_tasks_blocked()
        await node.broker.publish("t", 1)
        results: list[int] = []
        async with anyio.create_task_group() as tg:

            async def publish() -> None:
                results.append(await node.broker.publish("t", 2))

            tg.start_soon(publish)
            await anyio.wait_all_tasks_blocked()
            ref.kill()
        assert results == [0]
        assert any(
            d.message == 2 and d.reason == "noproc" for d in memory(node).recent_dead_letters
        )


@pytest.mark.parametrize(
    ("policy", "kept", "dropped", "reason"),
    [
        (otp.Overflow.DROP_NEWEST, [0, 1], [2, 3], "dropped_newest"),
        (otp.Overflow.DROP_OLDEST, [2, 3], [0, 1], "dropped_oldest"),
        (otp.Overflow.FAIL, [0, 1], [2, 3], "mailbox_full"),
    ],
)
async def test_subscription_overflow_policies(
    policy: otp.Overflow, kept: list[int], dropped: list[int], reason: str
) -> None:
    broker = otp.InMemoryBroker()
    async with (
        broker.subscribe("t", mailbox=otp.Mailbox(capacity=2, overflow=policy)) as small,
        broker.subscribe("t") as big,
    ):
        for n in range(4):
            await broker.publish("t", n)
        assert [small.receive_nowait().message for _ in range(2)] == kept  # type: ignore[union-attr]
        assert len(big) == 4
    letters = [d for d in broker.recent_dead_letters if d.reason == reason]
    assert [d.message for d in letters] == dropped
    assert all(d.recipient is small for d in letters)
    assert broker.statistics().dropped == 2


async def test_a_full_block_subscription_makes_the_publisher_wait() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("t", mailbox=otp.Mailbox(capacity=1)) as sub:
        await broker.publish("t", 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(broker.publish, "t", 2)
            await anyio.wait_all_tasks_blocked()
            assert sub.statistics().blocked_senders == 1
            assert (await sub.receive()).message == 1
        assert (await sub.receive()).message == 2
    assert broker.statistics().delivered == 2


async def test_closing_a_block_subscription_releases_its_publishers() -> None:
    broker = otp.InMemoryBroker()
    results: list[int] = []
    async with anyio.create_task_group() as tg:
        async with broker.subscribe("t", mailbox=otp.Mailbox(capacity=1)):
            await broker.publish("t", 1)

            async def publish() -> None:
                results.append(await broker.publish("t", 2))

            tg.start_soon(publish)
            await anyio.wait_all_tasks_blocked()
    assert results == [0]
    assert [(d.message, d.reason) for d in broker.recent_dead_letters] == [
        (2, "subscription_closed"),
        (1, "subscription_closed"),
    ]


async def test_a_cancelled_blocked_publisher_sends_nothing() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("t", mailbox=otp.Mailbox(capacity=1)) as sub:
        await broker.publish("t", 1)
        with anyio.move_on_after(0.01) as scope:
            await broker.publish("t", 2)
        assert scope.cancelled_caught
        assert (await sub.receive()).message == 1
        await broker.publish("t", 3)
        assert (await sub.receive()).message == 3
        assert len(sub) == 0


# ---------------------------------------------------------------------------- priorities


async def test_priorities_order_a_subscription_stably() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("t") as sub:
        for n, priority in enumerate([0, 5, 1, 5, 0, -2, 1]):
            await broker.publish("t", n, priority=priority)
        got = [(await sub.receive()) for _ in range(7)]
    assert [(e.priority, e.message) for e in got] == [
        (5, 1),
        (5, 3),
        (1, 2),
        (1, 6),
        (0, 0),
        (0, 4),
        (-2, 5),
    ]


async def test_drop_oldest_evicts_the_oldest_of_the_lowest_priority() -> None:
    broker = otp.InMemoryBroker()
    box = otp.Mailbox(capacity=2, overflow=otp.Overflow.DROP_OLDEST)
    async with broker.subscribe("t", mailbox=box) as sub:
        await broker.publish("t", "urgent", priority=9)
        await broker.publish("t", "low", priority=0)
        await broker.publish("t", "normal", priority=1)  # evicts "low"
        await broker.publish("t", "lowest", priority=-1)  # lower than all: dropped itself
        assert [sub.receive_nowait().message for _ in range(2)] == ["urgent", "normal"]  # type: ignore[union-attr]
    assert [(d.message, d.reason) for d in broker.recent_dead_letters] == [
        ("low", "dropped_oldest"),
        ("lowest", "dropped_lowest_priority"),
    ]


async def test_priority_must_be_an_int() -> None:
    broker = otp.InMemoryBroker()
    with pytest.raises(TypeError, match="priority"):
        await broker.publish("t", 1, priority=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="priority"):
        await broker.publish("t", 1, priority=True)


async def test_actors_get_queued_messages_in_priority_order() -> None:
    async with otp.Node() as node:
        release = anyio.Event()
        ref = await node.spawn(Listener, "t")
        await ref.cast(Block(release))
        await anyio.wait_all_tasks_blocked()
        await node.broker.publish("t", "a", priority=0)
        await node.broker.publish("t", "b", priority=5)
        await node.broker.publish("t", "c", priority=5)
        release.set()
        assert await seen(ref) == ["b", "c", "a"]


# ---------------------------------------------------------------------------- dead letters


async def test_dead_letters_reach_subscribers_of_the_dead_letter_topic() -> None:
    async with otp.Node() as node:
        watcher = await node.spawn(Listener, otp.DEAD_LETTERS)
        async with node.broker.subscribe("$otp.#") as sub:
            assert await node.broker.publish("nobody.listens", "lost") == 0
            dead = await node.spawn(Listener)
            await dead.stop()
            await dead.cast("too late")
            first = await sub.receive()
            second = await sub.receive()
        assert first.topic == otp.DEAD_LETTERS
        assert first.message == otp.DeadLetter(
            "lost", None, "no_subscriber", "nobody.listens", first.message.timestamp
        )
        assert (second.message.message, second.message.recipient, second.message.reason) == (
            "too late",
            dead,
            "noproc",
        )
        letters = await seen(watcher)
        assert [d.message for d in letters] == ["lost", "too late"]
        assert node.broker.statistics().dead_letters == 2


async def test_wildcards_at_the_start_do_not_see_system_topics() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("#") as everything, broker.subscribe("*.dead_letters") as star:
        await broker.publish("orders.created", 1)
        await broker.publish("nobody.here.x", 2)  # seen by '#': not a dead letter
        await broker.publish("$app.custom", 3)  # nobody: a dead letter, seen by no one
        assert len(everything) == 2
        assert [(await everything.receive()).message for _ in range(2)] == [1, 2]
        assert len(star) == 0
    assert broker.statistics().dead_letters == 1


async def test_a_slow_dead_letter_subscriber_cannot_loop_or_block() -> None:
    async with otp.Node() as node:
        release = anyio.Event()
        box = otp.Mailbox(capacity=1, overflow=otp.Overflow.DROP_OLDEST)
        watcher = await node.spawn(Listener, otp.DEAD_LETTERS, mailbox=box)
        blocking = await node.spawn(Listener, otp.DEAD_LETTERS, mailbox=otp.Mailbox(capacity=1))
        await watcher.cast(Block(release))
        await blocking.cast(Block(release))
        await anyio.wait_all_tasks_blocked()
        async with node.broker.subscribe(
            otp.DEAD_LETTERS, mailbox=otp.Mailbox(capacity=1, overflow=otp.Overflow.DROP_OLDEST)
        ) as sub:
            for n in range(5):
                await node.broker.publish(f"lost.{n}", n)
            assert sub.receive_nowait().message.message == 4  # type: ignore[union-attr]
        release.set()
        # DROP_OLDEST keeps the newest; BLOCK takes dead letters past its capacity.
        assert [d.message for d in await seen_when_idle(watcher)] == [4]
        assert [d.message for d in await seen(blocking)] == [0, 1, 2, 3, 4]
        assert node.broker.statistics().dead_letters == 5


# ---------------------------------------------------------------------------- statistics


async def test_statistics_are_a_frozen_snapshot() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("a.*"), broker.subscribe("a.*"), broker.subscribe("b"):
        await broker.publish("a.x", 1)
        await broker.publish("b", 2)
        await broker.publish("c", 3)
        stats = broker.statistics()
    assert stats == otp.BrokerStatistics(
        published=3,
        delivered=3,
        dropped=0,
        filtered=0,
        dead_letters=1,  # "c" had no subscriber
        subscribers={"a.*": 2, "b": 1},
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.published = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.subscribers["b"] = 5  # type: ignore[index]
    after = broker.statistics()
    assert after.subscribers == {}
    assert after.dead_letters == 4  # and 3 envelopes left unread when the blocks closed
    assert "published=3" in repr(after)


def test_in_memory_broker_implements_the_protocol() -> None:
    broker = otp.InMemoryBroker()
    assert isinstance(broker, otp.Broker)
    assert "InMemoryBroker" in repr(broker)


async def test_a_long_backlog_is_read_in_order_while_yielding_to_others() -> None:
    broker = otp.InMemoryBroker()
    ticks = 0
    async with broker.subscribe("t") as sub, anyio.create_task_group() as tg:

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.lowlevel.checkpoint()

        for n in range(300):
            await broker.publish("t", n)
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()
        before = ticks
        assert [(await sub.receive()).message for _ in range(300)] == list(range(300))
        assert ticks > before  # the reader yielded while draining its backlog
        tg.cancel_scope.cancel()


async def test_nodes_sharing_a_broker_talk_and_broadcast_to_both() -> None:
    broker = otp.InMemoryBroker()
    async with otp.Node(broker=broker, name="one") as one:
        async with otp.Node(broker=broker, name="two") as two:
            a = await one.spawn(Listener, "news")
            b = await two.spawn(Listener, "news")
            assert await broker.publish("news", "hi") == 2
            assert await broker.broadcast("all") == 2
            assert await seen(a) == ["hi", "all"]
            assert await seen(b) == ["hi", "all"]
            async with broker.subscribe("t") as sub:
                pass
            cm = broker.subscribe("t")
            sub = await cm.__aenter__()
        assert not sub.closed  # one node still serves the broker
        assert await broker.broadcast("only one") == 1
    assert sub.closed
    await cm.__aexit__(None, None, None)
    assert broker.statistics().subscribers == {}
