"""A broker probe for users' tests: record what is published on a topic, wait for a match.

::

    async with otp.BrokerProbe(node.broker, "orders.*") as probe:
        await place_order(...)
        created = await probe.expect(OrderCreated, timeout=1.0)
        await probe.expect_nothing(OrderCancelled)

Akka's counterpart is a ``TestProbe`` subscribed to the event stream.
"""

from __future__ import annotations

import math
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import anyio

from ._broker import Broker
from ._envelopes import Envelope
from ._mailbox import Mailbox
from ._subscriptions import Subscription

__all__ = ["BrokerProbe"]


def _describe(pattern: Any) -> str:
    if isinstance(pattern, type):
        return f"an instance of {pattern.__qualname__}"
    if callable(pattern):
        name = getattr(pattern, "__qualname__", None) or repr(pattern)
        return f"a message satisfying {name}"
    return f"a message equal to {pattern!r}"


def _matches(pattern: Any, message: Any) -> bool:
    if isinstance(pattern, type):
        return isinstance(message, pattern)
    if callable(pattern):
        return bool(pattern(message))
    return bool(message == pattern)


class BrokerProbe:
    """Subscribes to ``topic`` (wildcards allowed; ``"#"``: every non-system topic) for the
    body of an ``async with`` and records every envelope published there, in order.

    :meth:`expect` is a *selective receive* (Erlang's ``receive``): it takes the oldest
    not-yet-expected message that matches, wherever it is, and leaves the others for later
    ``expect`` calls; :attr:`received` keeps everything. Nothing here sleeps except
    :meth:`expect_nothing`, which has to wait out its period.

    ``mailbox`` shapes the probe's buffer (unbounded by default).
    """

    def __init__(self, broker: Broker, topic: str = "#", *, mailbox: Mailbox | None = None) -> None:
        self.broker = broker
        self.topic = topic
        self._mailbox = mailbox
        self._received: list[Envelope] = []
        self._pending: list[Envelope] = []
        self._subscription: Subscription | None = None
        self._stack: AsyncExitStack | None = None

    def __repr__(self) -> str:
        self._drain()
        return (
            f"<BrokerProbe {self.topic!r} received={len(self._received)} "
            f"unread={len(self._pending)}>"
        )

    async def __aenter__(self) -> BrokerProbe:
        if self._stack is not None:
            raise RuntimeError(f"{self!r} is already in use; create one probe per `async with`")
        stack = AsyncExitStack()
        self._subscription = await stack.enter_async_context(
            self.broker.subscribe(self.topic, mailbox=self._mailbox)
        )
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._drain()
        stack, self._stack = self._stack, None
        assert stack is not None
        return await stack.__aexit__(exc_type, exc, tb)

    # ------------------------------------------------------------------ what arrived

    def _drain(self) -> None:
        sub = self._subscription
        if sub is None:
            return
        while (envelope := sub.receive_nowait()) is not None:
            self._record(envelope)

    def _record(self, envelope: Envelope) -> None:
        self._received.append(envelope)
        self._pending.append(envelope)

    @property
    def received(self) -> list[Envelope]:
        """Every envelope recorded so far, oldest first (expected or not)."""
        self._drain()
        return list(self._received)

    @property
    def messages(self) -> list[Any]:
        """The messages of :attr:`received`."""
        return [envelope.message for envelope in self.received]

    @property
    def unread(self) -> list[Any]:
        """The messages no ``expect`` has taken yet, oldest first."""
        self._drain()
        return [envelope.message for envelope in self._pending]

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self._drain()
        self._received.clear()
        self._pending.clear()

    # ------------------------------------------------------------------ expectations

    def _take(self, pattern: Any) -> Envelope | None:
        self._drain()
        for index, envelope in enumerate(self._pending):
            if _matches(pattern, envelope.message):
                del self._pending[index]
                return envelope
        return None

    async def expect_envelope(self, pattern: Any = object, *, timeout: float = 5.0) -> Envelope:
        """Like :meth:`expect`, but return the whole :class:`otp.Envelope`."""
        sub = self._subscription
        if sub is None:
            raise RuntimeError(
                "use the probe as `async with otp.BrokerProbe(broker, topic) as probe:` first"
            )
        closed = False
        with anyio.move_on_after(timeout):
            while True:
                found = self._take(pattern)
                if found is not None:
                    return found
                try:
                    self._record(await sub.receive())
                except anyio.EndOfStream:
                    closed = True
                    break
        why = "the subscription closed" if closed else f"within {timeout:g}s"
        raise AssertionError(
            f"probe on {self.topic!r} expected {_describe(pattern)} {why}, but got none; "
            f"unread: {self.unread!r}; all received: {self.messages!r}"
        )

    async def expect(self, pattern: Any = object, *, timeout: float = 5.0) -> Any:
        """Wait for a message matching ``pattern`` published on the probe's topic and
        return it.

        ``pattern`` is a class (``isinstance``), a predicate (a callable that is not a
        class) or a value (``==``); the default matches anything. Raises
        ``AssertionError`` after ``timeout`` seconds, listing what arrived.
        """
        return (await self.expect_envelope(pattern, timeout=timeout)).message

    async def expect_nothing(self, pattern: Any = object, *, within: float = 0.05) -> None:
        """Assert that no message matching ``pattern`` is (or gets) published within
        ``within`` seconds; raises ``AssertionError`` naming the one that was.

        This one has to wait out the whole period: keep ``within`` short.
        """
        with anyio.move_on_after(within):
            try:
                found = await self.expect(pattern, timeout=math.inf)
            except AssertionError:
                return  # the subscription closed: nothing more can come
            raise AssertionError(
                f"probe on {self.topic!r} expected no {_describe(pattern)}, got {found!r}"
            )
