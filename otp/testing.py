"""Helpers for testing code built on anyotp: a recording probe actor and waits without sleeps.

::

    import otp
    from otp.testing import start_probe, wait_for_restart

    async def test_counter_reports_to_probe():
        async with otp.Node() as node:
            probe = await start_probe(node, subscribe=["orders.*"])
            await node.broker.publish("orders.created", OrderCreated(1))
            assert await probe.expect(OrderCreated) == OrderCreated(1)

What is here:

* :func:`start_probe` / :class:`Probe`: an actor that records every call, cast, send and
  broker message it receives; ``await probe.expect(pattern, timeout=...)`` waits for one
  (a class, a predicate or an equal value) and fails with a readable ``AssertionError``
  listing what did arrive. ``probe.monitor(ref)`` + ``probe.expect_down(ref)`` waits for an
  actor's exit.
* :func:`wait_for_restart`, :func:`wait_for_name`, :func:`wait_until`: wait for a
  supervisor to restart a child, for a name to be registered again, or for any condition,
  bounded by a timeout instead of guessed with ``sleep``.
* :class:`BrokerProbe` (``otp.BrokerProbe`` is a deprecated alias): records what is
  published on a topic:
  ``async with BrokerProbe(node.broker, "orders.*") as seen: ... await seen.expect(...)``.
* :func:`render_tree_text`: a snapshot as plain text at a fixed width, for exact asserts.
* :func:`broker_index` and :func:`monitor_count`: the sizes of the runtime's own
  bookkeeping (a broker's subscription indexes, the monitors on an actor), for tests that
  check nothing leaks once subscribers and watchers are gone.
* pytest fixtures (``anyio_backend`` over asyncio and trio, and ``otp_node``) live in
  :mod:`otp.pytest_plugin`: enable them with ``pytest_plugins = ["otp.pytest_plugin"]``
  in your top-level ``conftest.py``.

This module imports rich (through the observer); the ``otp`` core does not.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

import anyio
import attrs

from ._actor import ActorRef, Down
from ._broker import Broker, InMemoryBroker
from ._gen_server import GenServer
from ._mailbox import Mailbox
from ._node import Node
from ._observer import render_text
from ._probe import BrokerProbe, _describe, _matches
from ._snapshots import ActorSnapshot, SupervisorSnapshot, TreeSnapshot
from ._supervisor_refs import SupervisorRef

__all__ = [
    "BrokerIndex",
    "BrokerProbe",
    "Probe",
    "ProbeServer",
    "Received",
    "broker_index",
    "monitor_count",
    "render_tree_text",
    "start_probe",
    "wait_for_name",
    "wait_for_restart",
    "wait_until",
]

#: How often the polling helpers look again (seconds). Short: they exist to replace sleeps.
POLL_INTERVAL = 0.005

Kind = Literal["call", "cast", "info"]


@attrs.frozen
class Received:
    """One message a :class:`Probe` received: how it came (``kind``) and what it was."""

    kind: Kind
    message: Any


@attrs.frozen
class _Monitor:
    target: ActorRef


@attrs.frozen
class _Subscribe:
    topic: str


class ProbeServer(GenServer):
    """The actor behind a :class:`Probe`: records what it receives and tells the probe.

    You rarely use it directly; :func:`start_probe` starts one. To put a probe under a
    supervisor use ``otp.worker(ProbeServer, probe)`` with a ``Probe()`` made beforehand.
    """

    async def init(self, probe: Probe, topics: Iterable[str] = ()) -> None:
        self.probe = probe
        probe._attach(self.ref)
        for topic in topics:
            await self.subscribe(topic)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if isinstance(request, _Monitor):
            return self.monitor(request.target)
        if isinstance(request, _Subscribe):
            await self.subscribe(request.topic)
            return None
        self.probe._record(Received("call", request))
        reply = self.probe.reply
        if callable(reply):
            result = reply(request)
            if inspect.isawaitable(result):
                result = await result
            return result
        return reply

    async def handle_cast(self, message: Any) -> None:
        self.probe._record(Received("cast", message))

    async def handle_info(self, message: Any) -> None:
        self.probe._record(Received("info", message))


class Probe:
    """A test double that records every message its actor receives, in arrival order.

    Start one with :func:`start_probe`; hand :attr:`ref` to the code under test (or
    subscribe it to topics), then ``await probe.expect(...)``.

    ``expect`` is a *selective receive*, like Erlang's ``receive``: it takes the oldest
    not-yet-expected message that matches, wherever it is in the queue, and leaves the
    others for later ``expect`` calls. :attr:`received` keeps everything, expected or not.

    ``reply`` is what the probe answers to calls: a value, or a function of the request
    (sync or async). The default answers ``None``.
    """

    def __init__(self, *, reply: Any = None) -> None:
        self.reply = reply
        #: Everything received, in order (calls, casts, sends, broker messages, Down).
        self.received: list[Received] = []
        self._pending: list[Received] = []
        self._ref: ActorRef | None = None
        self._arrived: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Probe {self._ref!r} received={len(self.received)} unread={len(self._pending)}>"

    # ------------------------------------------------------------------ wiring

    def _attach(self, ref: ActorRef) -> None:
        self._ref = ref

    def _record(self, item: Received) -> None:
        self.received.append(item)
        self._pending.append(item)
        arrived, self._arrived = self._arrived, None
        if arrived is not None:
            arrived.set()

    @property
    def ref(self) -> ActorRef:
        """The probe actor's ref (the current incarnation's, if a supervisor restarted it)."""
        if self._ref is None:
            raise RuntimeError("this Probe has no actor yet; start it with start_probe(node)")
        return self._ref

    @property
    def messages(self) -> list[Any]:
        """The messages received so far (without their kind), oldest first."""
        return [item.message for item in self.received]

    @property
    def unread(self) -> list[Any]:
        """The messages no ``expect`` has taken yet, oldest first."""
        return [item.message for item in self._pending]

    def clear(self) -> None:
        """Forget what was received so far."""
        self.received.clear()
        self._pending.clear()

    # ------------------------------------------------------------------ expectations

    def _take(self, pattern: Any, kind: Kind | None) -> Received | None:
        for index, item in enumerate(self._pending):
            if (kind is None or item.kind == kind) and _matches(pattern, item.message):
                del self._pending[index]
                return item
        return None

    async def expect(
        self, pattern: Any = object, *, timeout: float = 5.0, kind: Kind | None = None
    ) -> Any:
        """Wait for a message matching ``pattern`` and return it.

        ``pattern`` is a class (``isinstance``), a predicate (a callable that is not a
        class) or a value (``==``); the default matches anything. ``kind`` restricts the
        match to ``"call"``, ``"cast"`` or ``"info"`` (sends, broker messages, ``Down``).
        Raises ``AssertionError`` after ``timeout`` seconds, listing what arrived.
        """
        with anyio.move_on_after(timeout):
            while True:
                item = self._take(pattern, kind)
                if item is not None:
                    return item.message
                if self._arrived is None:
                    self._arrived = anyio.Event()
                await self._arrived.wait()
        what = _describe(pattern) + (f" by {kind}" if kind else "")
        raise AssertionError(
            f"probe expected {what} within {timeout:g}s, but got none; "
            f"unread: {self.unread!r}; all received: {self.messages!r}"
        )

    async def expect_many(
        self, *patterns: Any, timeout: float = 5.0, kind: Kind | None = None
    ) -> list[Any]:
        """``expect`` each pattern in turn (one message each) within ``timeout`` overall."""
        results: list[Any] = []
        deadline = anyio.current_time() + timeout
        for pattern in patterns:
            left = max(0.0, deadline - anyio.current_time())
            results.append(await self.expect(pattern, timeout=left, kind=kind))
        return results

    async def expect_nothing(
        self, pattern: Any = object, *, within: float = 0.05, kind: Kind | None = None
    ) -> None:
        """Assert that no message matching ``pattern`` arrives within ``within`` seconds.

        This one has to wait out the whole period: keep ``within`` short.
        """
        with anyio.move_on_after(within):
            found = await self.expect(pattern, timeout=math.inf, kind=kind)
            raise AssertionError(f"probe expected no {_describe(pattern)}, got {found!r}")

    # ------------------------------------------------------------------ acting

    async def monitor(self, target: ActorRef) -> None:
        """Make the probe monitor ``target``: its exit arrives as ``otp.Down``
        (see :meth:`expect_down`)."""
        await self.ref.call(_Monitor(target))

    async def expect_down(self, target: ActorRef, *, timeout: float = 5.0) -> Any:
        """Wait for the ``otp.Down`` of a monitored ``target`` and return its exit reason."""
        down: Down = await self.expect(
            lambda m: isinstance(m, Down) and m.ref == target, timeout=timeout, kind="info"
        )
        return down.reason

    async def subscribe(self, topic: str) -> None:
        """Subscribe the probe actor to a broker ``topic`` (wildcards allowed)."""
        await self.ref.call(_Subscribe(topic))

    async def stop(self) -> None:
        """Stop the probe actor."""
        await self.ref.stop()


async def start_probe(
    node: Node,
    *,
    name: str | None = None,
    subscribe: Iterable[str] = (),
    reply: Any = None,
    mailbox: Mailbox | None = None,
) -> Probe:
    """Spawn a :class:`Probe` actor on ``node`` and return the probe once it is running.

    ``subscribe`` lists broker topics it receives (as ``info`` messages); ``name``
    registers it; ``reply`` is its answer to calls (a value or a function of the request).
    """
    probe = Probe(reply=reply)
    await node.spawn(ProbeServer, probe, tuple(subscribe), name=name, mailbox=mailbox)
    return probe


# ---------------------------------------------------------------------------- waiting


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 5.0,
    *,
    message: str | None = None,
) -> Any:
    """Wait until ``predicate()`` (sync or async) returns something truthy; return it.

    Polls every few milliseconds; raises ``AssertionError`` (with ``message``, if given)
    after ``timeout`` seconds. Prefer an event (a :class:`Probe`) when the code under test
    can send one; this is for state you can only look at.
    """
    with anyio.move_on_after(timeout):
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await anyio.sleep(POLL_INTERVAL)
    raise AssertionError(message or f"condition {predicate!r} did not hold within {timeout:g}s")


async def wait_for_restart(
    supervisor: SupervisorRef,
    child_id: str,
    old_ref: ActorRef | None,
    *,
    timeout: float = 5.0,
) -> ActorRef:
    """Wait until ``supervisor`` runs child ``child_id`` as a live ref other than
    ``old_ref`` (its incarnation before the crash) and return the new ref.

    Take ``old_ref`` before causing the crash, so a quick restart is not missed. Raises
    ``AssertionError`` after ``timeout`` seconds, or if there is no such child.
    """

    async def restarted() -> ActorRef | None:
        for info in await supervisor.which_children():
            if info.id == child_id:
                ref = info.ref
                if ref is not None and ref is not old_ref and ref.alive:
                    return ref
                return None
        raise AssertionError(f"supervisor {supervisor.name!r} has no child {child_id!r}")

    result: ActorRef = await wait_until(
        restarted,
        timeout,
        message=(
            f"supervisor {supervisor.name!r} did not restart child {child_id!r} within {timeout:g}s"
        ),
    )
    return result


async def wait_for_name(
    node: Node, name: str, *, not_ref: ActorRef | None = None, timeout: float = 5.0
) -> ActorRef:
    """Wait until ``name`` is registered to a live ref other than ``not_ref``; return it.

    Pass the ref you saw before a crash as ``not_ref`` to wait for the restarted actor.
    """

    def registered() -> ActorRef | None:
        ref = node.whereis(name)
        if ref is not None and ref is not not_ref and ref.alive:
            return ref
        return None

    result: ActorRef = await wait_until(
        registered, timeout, message=f"no live actor registered as {name!r} within {timeout:g}s"
    )
    return result


def render_tree_text(
    snapshot: TreeSnapshot | SupervisorSnapshot | ActorSnapshot, width: int = 100
) -> str:
    """A snapshot (``node.tree()``) as plain text at ``width`` columns, for exact asserts."""
    return render_text(snapshot, width)


# ---------------------------------------------------------------------------- bookkeeping


@attrs.frozen
class BrokerIndex:
    """The sizes of an in-memory broker's subscription indexes (:func:`broker_index`).

    Once every subscription has closed and every subscribed actor has exited, ``patterns``,
    ``wildcards`` and ``actors`` are back at zero; ``routes`` is a cache of resolved
    topics that stays bounded (at most 10,000) however many topics were published.
    """

    #: Patterns with at least one subscriber (actor, subscription or request waiter).
    patterns: int
    #: The wildcard patterns (``*``, ``#``) among them.
    wildcards: int
    #: Actors with at least one subscription.
    actors: int
    #: Cached topic routes.
    routes: int


def broker_index(broker: Broker) -> BrokerIndex:
    """The sizes of ``broker``'s subscription indexes now, for leak tests.

    Works on :class:`otp.InMemoryBroker` and brokers built on it (``RedisBroker``: its
    local side). The public view of the same state is ``broker.statistics().subscribers``
    (subscribers per pattern); this adds what it cannot show: the per-actor index and the
    route cache. There is no OTP counterpart (``pg`` keeps no such caches).

    Raises :class:`TypeError` for a broker not built on :class:`otp.InMemoryBroker`
    (it has no such indexes to show).
    """
    if not isinstance(broker, InMemoryBroker):
        raise TypeError(
            f"broker_index() needs an otp.InMemoryBroker or a broker built on it "
            f"(otp.redis.RedisBroker), not {type(broker).__name__}"
        )
    patterns, wildcards, actors, routes = broker._index_sizes()
    return BrokerIndex(patterns=patterns, wildcards=wildcards, actors=actors, routes=routes)


def monitor_count(ref: ActorRef) -> int:
    """How many monitors watch the local actor ``ref`` now, for leak tests.

    It counts every monitor: those of actors on this node (``ref.statistics()
    .monitored_by`` lists those, once per actor), those of actors on other nodes (a
    networked broker holds them for its peers, with no local watcher) and any the runtime
    keeps itself, so compare it with a count taken before. A dead actor has none. OTP's
    counterpart is ``length(element(2, process_info(Pid, monitored_by)))``.
    """
    return ref._monitor_count()
