"""otp.testing.BrokerProbe: record what is published on a topic and wait for matches."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

import otp
from otp.testing import BrokerProbe

pytestmark = pytest.mark.anyio


@attrs.frozen
class Created:
    n: int


@attrs.frozen
class Cancelled:
    n: int


class Shop(otp.GenServer):
    async def handle_cast(self, message: Any) -> None:
        await self.publish(f"orders.{type(message).__name__.lower()}", message)


async def test_probe_expects_by_class_predicate_and_value() -> None:
    async with otp.Node() as node, BrokerProbe(node.broker, "orders.*") as probe:
        shop = await node.spawn(Shop)
        for n in range(3):
            await shop.cast(Created(n))
        await shop.cast(Cancelled(0))
        assert await probe.expect(Cancelled, timeout=1.0) == Cancelled(0)  # selective
        assert await probe.expect(lambda m: isinstance(m, Created) and m.n == 2) == Created(2)
        assert await probe.expect(Created(0)) == Created(0)
        assert probe.unread == [Created(1)]
        assert probe.messages == [Created(0), Created(1), Created(2), Cancelled(0)]
        envelope = await probe.expect_envelope(Created)
        assert envelope.sender == shop and envelope.topic == "orders.created"
        assert [e.topic for e in probe.received][-1] == "orders.cancelled"
        probe.clear()
        assert probe.messages == [] and probe.unread == []
        assert "BrokerProbe 'orders.*'" in repr(probe)


async def test_probe_expect_times_out_with_what_arrived() -> None:
    broker = otp.InMemoryBroker()
    async with BrokerProbe(broker, "t.#") as probe:
        await broker.publish("t.a", Created(1))
        with pytest.raises(AssertionError, match=r"Cancelled within 0\.01s.*Created\(n=1\)"):
            await probe.expect(Cancelled, timeout=0.01)


async def test_probe_waits_for_a_later_publish() -> None:
    broker = otp.InMemoryBroker()
    async with BrokerProbe(broker) as probe, anyio.create_task_group() as tg:
        tg.start_soon(broker.publish, "late.topic", "hello")
        assert await probe.expect("hello", timeout=5.0) == "hello"


async def test_probe_expect_nothing() -> None:
    broker = otp.InMemoryBroker()
    async with BrokerProbe(broker, "t") as probe:
        await broker.publish("t", Created(1))
        await probe.expect_nothing(Cancelled, within=0.01)
        with pytest.raises(AssertionError, match="expected no an instance of Created"):
            await probe.expect_nothing(Created, within=1.0)


async def test_probe_sees_dead_letters_by_name_and_must_be_entered() -> None:
    broker = otp.InMemoryBroker()
    probe = BrokerProbe(broker, otp.DEAD_LETTERS)
    with pytest.raises(RuntimeError, match="async with"):
        await probe.expect()
    async with probe:
        await broker.publish("nowhere", 1)
        letter = await probe.expect(otp.DeadLetter)
        assert (letter.message, letter.reason) == (1, "no_subscriber")
        with pytest.raises(RuntimeError, match="already in use"):
            await probe.__aenter__()
    assert broker.statistics().subscribers == {}


async def test_probe_fails_at_once_when_its_subscription_closes() -> None:
    broker = otp.InMemoryBroker()
    async with otp.Node(broker=broker):
        probe = BrokerProbe(broker, "t")
        await probe.__aenter__()
    with pytest.raises(AssertionError, match="subscription closed"):
        await probe.expect(timeout=5.0)
    await probe.expect_nothing(within=5.0)  # returns at once: nothing more can come
    await probe.__aexit__(None, None, None)
    assert broker.statistics().subscribers == {}
