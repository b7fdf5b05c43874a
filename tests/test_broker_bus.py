"""The broker as a bus: request/reply, broadcast and middleware."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

import otp
from otp.testing import wait_for_restart
from tests._helpers import Block, Counter

pytestmark = pytest.mark.anyio


def memory(node: otp.Node) -> otp.InMemoryBroker:
    """The node's broker, typed as the in-memory one these tests look inside."""
    assert isinstance(node.broker, otp.InMemoryBroker)
    return node.broker


@attrs.frozen
class Quote:
    symbol: str


@attrs.frozen
class Hello:
    n: int = 0


class Pricer(otp.GenServer):
    """Answers Quote requests on prices.*; ignores everything else it is told."""

    async def init(self, prices: dict[str, float], topic: str = "prices.*") -> None:
        self.prices = prices
        self.other: list[Any] = []
        await self.subscribe(topic)

    async def handle_info(self, message: Any) -> None:
        match message:
            case otp.Request(message=Quote(symbol)) as request:
                assert request.envelope.reply_to is not None
                await request.reply(self.prices[symbol], sender=self.ref)
            case _:
                self.other.append(message)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case ("ask", topic, message):
                return await self.node.broker.request(topic, message, sender=self.ref)
        return list(self.other)


class Silent(otp.GenServer):
    """Subscribes and never answers."""

    async def init(self, topic: str) -> None:
        self.got: list[Any] = []
        await self.subscribe(topic)

    async def handle_info(self, message: Any) -> None:
        self.got.append(message)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return list(self.got)


class Greeter(otp.GenServer):
    async def init(self, log: list[Any]) -> None:
        self.log = log

    async def handle_info(self, message: Any) -> None:
        self.log.append((self.ref.name, message))

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return None


# ---------------------------------------------------------------------------- request/reply


async def test_an_actor_answers_a_request() -> None:
    async with otp.Node() as node:
        await node.spawn(Pricer, {"ACME": 12.5})
        assert await node.broker.request("prices.quote", Quote("ACME"), timeout=5.0) == 12.5
        # nothing is left behind: the inbox is gone
        assert set(node.broker.statistics().subscribers) == {"prices.*"}


async def test_an_actor_can_request_from_another_actor() -> None:
    async with otp.Node() as node:
        await node.spawn(Pricer, {"ACME": 1.0})
        asker = await node.spawn(Pricer, {}, "other.*")
        async with node.broker.subscribe("prices.#") as sub:
            assert await asker.call(("ask", "prices.quote", Quote("ACME"))) == 1.0
            envelope = await sub.receive()
        assert envelope.sender == asker
        assert envelope.reply_to is not None and envelope.reply_to.startswith("$otp.inbox.")


async def test_a_subscription_answers_with_broker_reply() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("math.double") as sub, anyio.create_task_group() as tg:

        async def serve() -> None:
            envelope = await sub.receive()
            assert await broker.reply(envelope, envelope.message * 2, headers={"by": "x"}) == 1

        tg.start_soon(serve)
        assert await broker.request("math.double", 21, headers={"trace": "1"}) == 42


async def test_the_first_reply_wins_and_the_rest_are_dead_letters() -> None:
    broker = otp.InMemoryBroker()
    async with (
        broker.subscribe("q") as first,
        broker.subscribe("q") as second,
        anyio.create_task_group() as tg,
    ):
        answer = anyio.Event()

        async def serve() -> None:
            a = await first.receive()
            b = await second.receive()
            assert await broker.reply(a, "first") == 1
            answer.set()
            assert await broker.reply(b, "second") == 0

        tg.start_soon(serve)
        assert await broker.request("q", "?") == "first"
        await answer.wait()
    late = [d for d in broker.recent_dead_letters if d.message == "second"]
    assert len(late) == 1
    assert late[0].reason in {"late_reply", "no_subscriber"}
    assert late[0].topic is not None and late[0].topic.startswith("$otp.inbox.")


async def test_a_request_nobody_receives_fails_at_once() -> None:
    broker = otp.InMemoryBroker()
    with pytest.raises(otp.NoSubscriber, match=r"'nobody\.home'") as info:
        await broker.request("nobody.home", "?", timeout=None)
    assert info.value.topic == "nobody.home"
    assert isinstance(info.value, LookupError)
    assert broker.statistics().subscribers == {}


async def test_an_unanswered_request_times_out() -> None:
    async with otp.Node() as node:
        silent = await node.spawn(Silent, "q")
        with pytest.raises(otp.RequestTimeout, match="'q'") as info:
            await node.broker.request("q", "?", timeout=0.01)
        assert isinstance(info.value, TimeoutError)
        assert info.value.timeout == 0.01
        assert node.broker.statistics().subscribers.keys() == {"q"}
        # the silent actor got the Request wrapper; a late reply is a dead letter
        (request,) = await silent.call("got")
        assert isinstance(request, otp.Request)
        assert request.message == "?"
        assert await request.reply("too late") == 0
        assert memory(node).recent_dead_letters[-1].message == "too late"


async def test_the_request_timeout_covers_a_blocked_publish() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("q", mailbox=otp.Mailbox(capacity=1)):
        await broker.publish("q", "filler")
        with pytest.raises(otp.RequestTimeout):
            await broker.request("q", "?", timeout=0.01)


async def test_replying_to_a_plain_envelope_is_an_error() -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("t") as sub:
        await broker.publish("t", 1)
        envelope = await sub.receive()
        with pytest.raises(ValueError, match="no reply_to"):
            await broker.reply(envelope, 2)
        with pytest.raises(TypeError, match="Envelope"):
            await broker.reply("not an envelope", 2)  # type: ignore[arg-type]


async def test_request_errors_pickle() -> None:
    import pickle

    for error in (otp.NoSubscriber("t"), otp.RequestTimeout("t", 1.0)):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)


# ---------------------------------------------------------------------------- broadcast


async def test_broadcast_reaches_every_worker_but_no_supervisor() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        await node.spawn(Greeter, log, name="top")
        await node.start(
            otp.supervisor(
                "root",
                [
                    otp.worker(Greeter, log, name="a"),
                    otp.supervisor("inner", [otp.worker(Greeter, log, name="b")]),
                ],
            )
        )
        assert await node.broker.broadcast(Hello(1)) == 3
        assert await node.broker.broadcast(Hello(2), where=lambda ref: ref.name != "top") == 2
        for name in ("top", "a", "b"):
            await node.whereis(name).call("sync")  # handled after what was queued before
        assert sorted(log, key=repr) == sorted(
            [("top", Hello(1)), ("a", Hello(1)), ("b", Hello(1)), ("a", Hello(2)), ("b", Hello(2))],
            key=repr,
        )


async def test_broadcast_reaches_dynamic_children_pool_workers_and_linked_actors() -> None:
    # The node indexes its live actors as they start and exit (no walk of supervisors):
    # children added later, pool workers and spawn_link'ed actors are reached; a stopped or
    # killed incarnation is not, its restarted successor is.
    log: list[Any] = []
    async with otp.Node() as node:
        dynamic = await node.start(otp.dynamic_supervisor("dynamic"))
        pool = await node.start(otp.worker_pool("pool", Greeter, log, size=2))
        assert await node.broker.broadcast(Hello(0)) == 2  # the pool's workers
        child = await dynamic.start_child(otp.worker(Greeter, log, name="child"))
        assert child is not None
        linked = await node.spawn(Greeter, log, name="linked", link=child)
        assert await node.broker.broadcast(Hello(1)) == 4
        await dynamic.terminate_child(child)  # takes "linked" with it
        await linked.join()
        assert await node.broker.broadcast(Hello(2)) == 2
        first = (await pool.which_children())[0]
        assert first.ref is not None
        first.ref.kill()
        again = await wait_for_restart(pool, first.id, first.ref)
        assert await node.broker.broadcast(Hello(3), where=lambda ref: ref is again) == 1
        await again.call("sync")
        assert log.count((None, Hello(3))) == 1
        await pool.stop()
        letters = memory(node).recent_dead_letters
        assert await node.broker.broadcast(Hello(4)) == 0
        assert (letters[-1].reason, letters[-1].topic) == ("no_subscriber", otp.BROADCAST)


async def test_broadcast_respects_overflow_and_counts_deliveries() -> None:
    async with otp.Node() as node:
        release = anyio.Event()
        full = await node.spawn(
            Counter, mailbox=otp.Mailbox(capacity=1, overflow=otp.Overflow.DROP_NEWEST)
        )
        await node.spawn(Counter)
        await full.cast(Block(release))
        await anyio.wait_all_tasks_blocked()
        await full.cast("filler")
        assert await node.broker.broadcast("hi") == 1
        release.set()
        stats = node.broker.statistics()
        assert (stats.published, stats.delivered, stats.dropped) == (1, 1, 1)
        assert await node.broker.broadcast("nobody", where=lambda ref: False) == 0
        letter = memory(node).recent_dead_letters[-1]
        assert (letter.message, letter.reason, letter.topic) == (
            "nobody",
            "no_subscriber",
            otp.BROADCAST,
        )


async def test_broadcast_needs_a_node() -> None:
    broker = otp.InMemoryBroker()
    with pytest.raises(RuntimeError, match=r"async with otp\.Node"):
        await broker.broadcast("hi")


async def test_a_broadcast_predicate_error_reaches_the_caller_before_any_delivery() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)

        def boom(ref: otp.ActorRef) -> bool:
            raise LookupError("bad predicate")

        with pytest.raises(LookupError, match="bad predicate"):
            await node.broker.broadcast("hi", where=boom)
        assert await ref.call("infos") == []


# ---------------------------------------------------------------------------- middleware


async def test_middleware_passes_transforms_and_drops_in_order() -> None:
    broker = otp.InMemoryBroker()
    seen: list[str] = []

    @broker.use
    def log(envelope: otp.Envelope) -> otp.Envelope:
        seen.append(f"log {envelope.message}")
        return envelope

    async def validate(envelope: otp.Envelope) -> otp.Envelope | None:
        await anyio.lowlevel.checkpoint()
        return None if envelope.message < 0 else envelope

    def stamp(envelope: otp.Envelope) -> otp.Envelope:
        return attrs.evolve(envelope, message=envelope.message * 10, headers={"stamped": "y"})

    assert broker.use(validate) is validate
    broker.use(stamp)
    assert broker.middleware == (log, validate, stamp)
    async with broker.subscribe("t") as sub:
        assert await broker.publish("t", 1) == 1
        assert await broker.publish("t", -1) == 0
        envelope = await sub.receive()
    assert (envelope.message, envelope.headers) == (10, {"stamped": "y"})
    assert seen == ["log 1", "log -1"]
    stats = broker.statistics()
    assert (stats.published, stats.delivered, stats.filtered) == (2, 1, 1)
    letter = broker.recent_dead_letters[0]
    assert (letter.message, letter.recipient, letter.reason) == (
        -1,
        validate,
        "dropped_by_middleware",
    )


async def test_middleware_can_reroute_and_actors_see_the_result() -> None:
    async with otp.Node() as node:
        node.broker.use(
            lambda e: attrs.evolve(e, topic="v2." + e.topic) if e.topic.startswith("v1") else e
        )
        ref = await node.spawn(Silent, "v2.#")
        assert await node.broker.publish("v1.orders", "moved") == 1
        assert await node.broker.publish("other", "stays") == 0
        assert await ref.call("got") == ["moved"]


async def test_middleware_errors_reach_the_publisher_and_nothing_is_delivered() -> None:
    broker = otp.InMemoryBroker()

    def strict(envelope: otp.Envelope) -> otp.Envelope:
        if not isinstance(envelope.message, int):
            raise TypeError(f"{envelope.topic} carries ints only")
        return envelope

    broker.use(strict)
    async with broker.subscribe("t") as sub:
        with pytest.raises(TypeError, match="ints only"):
            await broker.publish("t", "text")
        assert len(sub) == 0
        broker.use(lambda e: "not an envelope")  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match="must return the envelope"):
            await broker.publish("t", 1)
    with pytest.raises(TypeError, match="callable"):
        broker.use(42)  # type: ignore[arg-type]


async def test_middleware_can_be_removed() -> None:
    broker = otp.InMemoryBroker()

    def drop_all(envelope: otp.Envelope) -> None:
        return None

    broker.use(drop_all)
    async with broker.subscribe("t") as sub:
        assert await broker.publish("t", 1) == 0
        broker.remove_middleware(drop_all)
        assert await broker.publish("t", 2) == 1
        assert (await sub.receive()).message == 2
    with pytest.raises(ValueError, match="not installed"):
        broker.remove_middleware(drop_all)


async def test_middleware_sees_requests_replies_and_broadcasts() -> None:
    topics: list[str] = []
    async with otp.Node() as node:
        node.broker.use(lambda e: topics.append(e.topic) or e)  # type: ignore[func-returns-value]
        await node.spawn(Pricer, {"X": 2.0})
        assert await node.broker.request("prices.x", Quote("X")) == 2.0
        assert await node.broker.broadcast(Hello()) == 1
    assert topics[0] == "prices.x"
    assert topics[1].startswith("$otp.inbox.")
    assert topics[2] == otp.BROADCAST


async def test_a_middleware_can_drop_a_broadcast() -> None:
    async with otp.Node() as node:
        node.broker.use(lambda e: None if e.topic == otp.BROADCAST else e)
        await node.spawn(Counter)
        assert await node.broker.broadcast("hi") == 0
        assert node.broker.statistics().filtered == 1


async def test_publish_nowait_delivers_without_yielding_and_never_waits() -> None:
    async with otp.Node() as node:
        broker = node.broker
        assert isinstance(broker, otp.InMemoryBroker)
        async with (
            broker.subscribe("jobs.*") as sub,
            broker.subscribe("jobs.*", mailbox=otp.Mailbox(1, otp.Overflow.BLOCK)) as tight,
        ):
            assert broker.publish_nowait("jobs.a", 1) == 2
            # the tight subscription is full now: publish_nowait does not wait for it
            assert broker.publish_nowait("jobs.b", 2, headers={"k": "v"}) == 1
            assert [(await sub.receive()).message for _ in range(2)] == [1, 2]
            assert (await tight.receive()).message == 1
        assert broker.publish_nowait("nobody.here", 3) == 0
        reasons = [d.reason for d in broker.recent_dead_letters]
        assert "mailbox_full" in reasons
        assert "no_subscriber" in reasons


async def test_publish_nowait_runs_sync_middleware_and_refuses_async_stages() -> None:
    async with otp.Node() as node:
        broker = node.broker
        assert isinstance(broker, otp.InMemoryBroker)
        broker.use(lambda env: None if env.message == "drop" else env)
        async with broker.subscribe("t") as sub:
            assert broker.publish_nowait("t", "drop") == 0
            assert broker.publish_nowait("t", "keep") == 1
            assert (await sub.receive()).message == "keep"

            async def slow_stage(env: otp.Envelope) -> otp.Envelope:
                return env

            broker.use(slow_stage)
            with pytest.raises(TypeError, match="asynchronous"):
                broker.publish_nowait("t", "x")
