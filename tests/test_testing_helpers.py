"""otp.testing: the Probe actor, waits without sleeps, and the pytest plugin."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest

import otp
import otp.testing
from otp.testing import (
    BrokerIndex,
    Probe,
    ProbeServer,
    Received,
    broker_index,
    monitor_count,
    start_probe,
    wait_for_name,
    wait_for_restart,
    wait_until,
)
from tests._helpers import Add, Counter, Crash, Get

pytestmark = pytest.mark.anyio


@attrs.frozen
class Ping:
    n: int


@attrs.frozen
class Pong:
    n: int


class Echo(otp.GenServer):
    """Answers each Ping cast by casting Pong to the ref it was told about."""

    async def init(self, target: otp.ActorRef) -> None:
        self.target = target

    async def handle_cast(self, message: Any) -> None:
        if isinstance(message, Ping):
            await self.target.cast(Pong(message.n))


async def test_probe_expects_by_class_predicate_and_value() -> None:
    async with otp.Node() as node:
        probe = await start_probe(node)
        echo = await node.spawn(Echo, probe.ref)
        for n in range(3):
            await echo.cast(Ping(n))
        assert await probe.expect(Pong) == Pong(0)
        assert await probe.expect(lambda m: isinstance(m, Pong) and m.n == 2) == Pong(2)
        assert await probe.expect(Pong(1)) == Pong(1)
        assert probe.unread == []
        assert probe.messages == [Pong(0), Pong(1), Pong(2)]
        assert probe.received[0] == Received("cast", Pong(0))


async def test_expect_is_a_selective_receive() -> None:
    async with otp.Node() as node:
        probe = await start_probe(node)
        await probe.ref.send("first")
        await probe.ref.cast(Ping(1))
        assert await probe.expect(Ping, kind="cast") == Ping(1)
        assert probe.unread == ["first"]
        assert await probe.expect(kind="info") == "first"


async def test_expect_waits_for_a_message_that_comes_later() -> None:
    async with otp.Node() as node:
        probe = await start_probe(node)

        class Later(otp.GenServer):
            async def init(self) -> None:
                self.send_after(0.02, "go")

            async def handle_info(self, message: Any) -> None:
                await probe.ref.cast(Pong(42))

        await node.spawn(Later)
        assert await probe.expect(Pong, timeout=5.0) == Pong(42)


async def test_expect_timeout_says_what_arrived() -> None:
    async with otp.Node() as node:
        probe = await start_probe(node)
        await probe.ref.cast(Ping(7))
        with pytest.raises(AssertionError, match=r"Pong.*within 0.05s.*Ping\(n=7\)"):
            await probe.expect(Pong, timeout=0.05)
        # The unmatched message is still there for a later expect.
        assert await probe.expect(Ping) == Ping(7)


async def test_expect_many_and_expect_nothing() -> None:
    async with otp.Node() as node:
        probe = await start_probe(node)
        for n in (1, 2):
            await probe.ref.cast(Ping(n))
        assert await probe.expect_many(Ping(2), Ping(1)) == [Ping(2), Ping(1)]
        await probe.expect_nothing(Ping, within=0.02)
        await probe.ref.cast(Ping(3))
        with pytest.raises(AssertionError, match="expected no"):
            await probe.expect_nothing(Ping, within=1.0)


async def test_probe_replies_to_calls() -> None:
    async with otp.Node() as node:
        fixed = await start_probe(node, reply="ok")
        assert await fixed.ref.call(Ping(1)) == "ok"
        assert await fixed.expect(Ping, kind="call") == Ping(1)

        async def double(request: Ping) -> int:
            return request.n * 2

        computed = await start_probe(node, reply=double, name="doubler")
        assert node.whereis("doubler") == computed.ref
        assert await computed.ref.call(Ping(21)) == 42


async def test_probe_receives_broker_messages() -> None:
    async with otp.Node() as node:
        probe = await start_probe(node, subscribe=["orders.*"])
        await node.broker.publish("orders.created", Ping(1))
        await node.broker.publish("users.created", Ping(2))  # not subscribed
        assert await probe.expect(Ping, kind="info") == Ping(1)
        await probe.subscribe("users.*")
        await node.broker.publish("users.created", Ping(3))
        assert await probe.expect(Ping) == Ping(3)
        assert probe.messages == [Ping(1), Ping(3)]


async def test_probe_monitors_and_sees_exits() -> None:
    async with otp.Node() as node:
        probe = await start_probe(node)
        counter = await node.spawn(Counter)
        await probe.monitor(counter)
        await counter.cast(Crash("kaboom"))
        reason = await probe.expect_down(counter)
        assert isinstance(reason, RuntimeError)
        assert str(reason) == "kaboom"


async def test_probe_under_a_supervisor_follows_restarts() -> None:
    async with otp.Node() as node:
        probe = Probe()
        sup = await node.start(otp.supervisor("sup", [otp.worker(ProbeServer, probe, id="probe")]))
        first = probe.ref
        first.kill()
        second = await wait_for_restart(sup, "probe", first)
        assert probe.ref is second
        await second.cast(Ping(1))
        assert await probe.expect(Ping) == Ping(1)
        await probe.stop()
        assert not second.alive


async def test_wait_for_restart_returns_the_new_ref() -> None:
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("sup", [otp.worker(Counter, 5, name="c")]))
        old = node.whereis("c")
        await old.cast(Crash())
        new = await wait_for_restart(sup, "c", old, timeout=5.0)
        assert new is not old
        assert new.alive
        assert await new.call(Get()) == 5
        assert await wait_for_name(node, "c", not_ref=old) is new


async def test_wait_for_restart_times_out_and_knows_unknown_children() -> None:
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("sup", [otp.worker(Counter, name="c")]))
        current = node.whereis("c")
        with pytest.raises(AssertionError, match=r"did not restart child .c. within 0\.03s"):
            await wait_for_restart(sup, "c", current, timeout=0.03)
        with pytest.raises(AssertionError, match="no child 'nope'"):
            await wait_for_restart(sup, "nope", None)


async def test_wait_until_sync_and_async_predicates() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        await ref.cast(Add(3))

        async def total() -> int:
            return int(await ref.call(Get()))

        assert await wait_until(total) == 3
        assert await wait_until(lambda: node.whereis("late") is None) is True
        with pytest.raises(AssertionError, match="never"):
            await wait_until(lambda: False, timeout=0.02, message="never")


async def test_wait_for_name_times_out() -> None:
    async with otp.Node() as node:
        with pytest.raises(AssertionError, match="'ghost'"):
            await wait_for_name(node, "ghost", timeout=0.02)


def test_pytest_plugin_runs_tests_on_both_backends(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["otp.pytest_plugin"]\n')
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import pytest
            import otp
            from otp.testing import start_probe

            pytestmark = pytest.mark.anyio

            async def test_probe(otp_node, anyio_backend):
                probe = await start_probe(otp_node)
                await probe.ref.cast(anyio_backend)
                assert await probe.expect(str) == anyio_backend
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


async def test_broker_probe_is_reexported_and_records_publishes() -> None:
    with pytest.warns(DeprecationWarning, match="otp.testing"):
        assert otp.BrokerProbe is otp.testing.BrokerProbe  # the deprecated alias still works
    async with otp.Node() as node:
        async with otp.testing.BrokerProbe(node.broker, "orders.*") as seen:
            await node.broker.publish("orders.created", Ping(1))
            assert await seen.expect(Ping) == Ping(1)


class Subscriber(otp.GenServer):
    async def init(self, *topics: str) -> None:
        for topic in topics:
            await self.subscribe(topic)


async def test_broker_index_counts_patterns_actors_and_routes_until_they_are_gone() -> None:
    async with otp.Node() as node:
        broker = node.broker
        assert isinstance(broker, otp.InMemoryBroker)
        empty = broker_index(broker)
        assert (empty.patterns, empty.wildcards, empty.actors) == (0, 0, 0)
        ref = await node.spawn(Subscriber, "a.*", "b")
        async with broker.subscribe("b") as sub:
            await broker.publish("a.x", 1)
            await broker.publish("b", 2)
            index = broker_index(broker)
            assert isinstance(index, BrokerIndex)
            assert (index.patterns, index.wildcards, index.actors) == (2, 1, 1)
            assert 1 <= index.routes <= 2  # "a.x" and "b" resolved (a cache: may hold fewer)
            assert (await sub.receive()).message == 2
        assert broker_index(broker).patterns == 2  # the actor still holds both
        await ref.stop()
        index = broker_index(broker)
        assert (index.patterns, index.wildcards, index.actors) == (0, 0, 0)
        assert index.routes <= 2


async def test_monitor_count_follows_monitors_from_anywhere() -> None:
    async with otp.Node() as node:
        target = await node.spawn(Counter)
        before = monitor_count(target)
        probe = await start_probe(node)
        await probe.monitor(target)
        await probe.monitor(target)  # two monitors of one watcher count twice
        assert monitor_count(target) == before + 2
        assert target.statistics().monitored_by == (probe.ref,)
        await probe.stop()
        assert monitor_count(target) == before
        await target.stop()
        assert monitor_count(target) == 0


def test_broker_index_refuses_a_broker_without_the_in_memory_indexes() -> None:
    class Elsewhere:  # satisfies nothing of InMemoryBroker: a third-party broker
        pass

    with pytest.raises(TypeError, match=r"needs an otp\.InMemoryBroker"):
        broker_index(Elsewhere())  # type: ignore[arg-type]
