"""Broker properties: the wildcard matcher against a reference, routing against the
matcher, and no leaks after thousands of subscribers come and go."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otp
from otp.testing import broker_index

pytestmark = pytest.mark.anyio

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# A small alphabet makes matches likely; "$sys" exercises the system-topic rule.
words = st.sampled_from(["a", "b", "c", "$sys"])
topics = st.lists(words, min_size=1, max_size=6).map(".".join)
patterns = st.lists(st.one_of(words, st.just("*"), st.just("#")), min_size=1, max_size=6).map(
    ".".join
)


def reference_matches(pattern: str, topic: str) -> bool:
    """The grammar as a regex over '.'-prefixed segments: '*' is one segment, '#' any
    number; a leading wildcard never matches a leading '$' segment."""
    segments = pattern.split(".")
    if segments[0] in ("*", "#") and topic.startswith("$"):
        return False
    regex = "".join(
        r"\.[^.]+" if s == "*" else r"(?:\.[^.]+)*" if s == "#" else r"\." + re.escape(s)
        for s in segments
    )
    return re.fullmatch(regex, "." + topic) is not None


@PROPERTY
@given(pattern=patterns, topic=topics)
def test_matcher_agrees_with_the_regex_reference(pattern: str, topic: str) -> None:
    assert otp.topic_matches(pattern, topic) is reference_matches(pattern, topic)


@PROPERTY
@given(
    segments=st.lists(
        st.text(alphabet=st.sampled_from("ab.*# \t$"), max_size=4), min_size=1, max_size=4
    )
)
def test_validation_accepts_exactly_the_grammar(segments: list[str]) -> None:
    candidate = ".".join(segments)
    segment = r"[^.*#\s]+"
    valid_topic = re.fullmatch(rf"{segment}(\.{segment})*", candidate) is not None
    wild = rf"(?:{segment}|\*|#)"
    valid_pattern = re.fullmatch(rf"{wild}(\.{wild})*", candidate) is not None
    for pattern, topic, valid in (
        (candidate, "a", valid_pattern),
        ("#", candidate, valid_topic),
    ):
        if valid:
            otp.topic_matches(pattern, topic)
        else:
            with pytest.raises(otp.InvalidTopic):
                otp.topic_matches(pattern, topic)


@PROPERTY
@given(
    subscribed=st.lists(patterns, min_size=1, max_size=5),
    published=st.lists(topics, max_size=12),
)
async def test_each_subscription_gets_exactly_the_matching_messages_in_order(
    subscribed: list[str], published: list[str]
) -> None:
    broker = otp.InMemoryBroker()
    async with contextlib.AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(broker.subscribe(p)) for p in subscribed]
        for n, topic in enumerate(published):
            expected = sum(reference_matches(p, topic) for p in subscribed)
            assert await broker.publish(topic, n) == expected
        for pattern, sub in zip(subscribed, subs):
            got = []
            while (envelope := sub.receive_nowait()) is not None:
                got.append((envelope.topic, envelope.message))
            want = [(t, n) for n, t in enumerate(published) if reference_matches(pattern, t)]
            assert got == want
    stats = broker.statistics()
    assert stats.published == len(published)
    assert stats.delivered == sum(reference_matches(p, t) for p in subscribed for t in published)
    index = broker_index(broker)
    assert (index.patterns, index.wildcards) == (0, 0)


@PROPERTY
@given(priorities=st.lists(st.integers(-3, 3), max_size=20))
async def test_subscription_order_is_by_priority_then_arrival(priorities: list[int]) -> None:
    broker = otp.InMemoryBroker()
    async with broker.subscribe("t") as sub:
        for n, priority in enumerate(priorities):
            await broker.publish("t", n, priority=priority)
        got = [sub.receive_nowait() for _ in priorities]
    order = sorted(range(len(priorities)), key=lambda n: (-priorities[n], n))
    assert [e.message for e in got if e is not None] == order


class Churn(otp.GenServer):
    async def init(self, topics: tuple[str, ...]) -> None:
        for topic in topics:
            await self.subscribe(topic)

    async def handle_info(self, message: Any) -> None:
        if message == "stop":
            self.stop()


async def test_no_leak_after_thousands_of_subscribers_come_and_go() -> None:
    async with otp.Node() as node:
        broker = node.broker
        assert isinstance(broker, otp.InMemoryBroker)
        await broker.publish("warm.up", 0)
        shapes = [("churn.*",), ("churn.#", "churn.a"), ("churn.a",), ("churn.a", "*.a")]
        for wave in range(4):
            refs = [await node.spawn(Churn, shapes[n % 4]) for n in range(500)]
            assert await broker.publish("churn.a", wave) == 500
            if wave % 2:
                await broker.broadcast("stop")  # they stop themselves
                for ref in refs:
                    await ref.join()
            else:
                for ref in refs:
                    await ref.stop()
            assert broker.statistics().subscribers == {}
        for n in range(1000):
            async with broker.subscribe(f"sub.{n % 7}.*") as sub:
                await broker.publish(f"sub.{n % 7}.x", n)
                assert (await sub.receive()).message == n
        responder = await node.spawn(Churn, ())
        async with broker.subscribe("ask") as asked, anyio.create_task_group() as tg:

            async def answer() -> None:
                async for envelope in asked:
                    await broker.reply(envelope, envelope.message)

            tg.start_soon(answer)
            for n in range(1000):
                assert await broker.request("ask", n) == n
            tg.cancel_scope.cancel()
        await responder.stop()
        index = broker_index(broker)
        assert (index.patterns, index.wildcards, index.actors) == (0, 0, 0)
        assert node.tree().children == ()  # no top-level actor left
        assert index.routes <= 10_000
        assert broker.statistics().subscribers == {}
