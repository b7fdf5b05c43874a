"""Subscribers that receive envelopes rather than mailbox items: :class:`Subscription`
(an async iterator with its own bounded, prioritised buffer) and the inbox of a pending
request. Actors are the other kind of subscriber (``ActorRef._offer``); both answer an
offer with otp._mailbox's offer codes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, final

import anyio

from ._backends import backend as _current_backend
from ._mailbox import (
    ACCEPTED,
    DROPPED,
    WAIT,
    Full,
    Item,
    Mailbox,
    MailboxQueue,
    MailboxStatistics,
    Overflow,
)

if TYPE_CHECKING:
    from ._backends import Promise
    from ._envelopes import Envelope

__all__ = ["Subscription"]

#: How many buffered envelopes a subscription hands out back to back before it yields.
_BUDGET: Final = 64

# A receiver's ``_offer`` answers with otp._mailbox's offer codes (ACCEPTED, DROPPED,
# WAIT), as an actor's does (ActorRef._offer).

# Drop reasons that count as ``dropped`` (an overflow policy at work).
_OVERFLOW_REASONS: Final = frozenset(
    {"dropped_newest", "dropped_oldest", "dropped_lowest_priority", "mailbox_full"}
)

_DropHook = Callable[[Any, "Envelope", str], None]


def _ignore_drop(receiver: Any, envelope: Envelope, reason: str) -> None:
    pass


class _Receiver:
    """Base of the non-actor subscribers (they receive envelopes)."""

    __slots__ = ()

    def _offer(self, envelope: Envelope) -> int:
        raise NotImplementedError

    async def _offer_blocking(self, envelope: Envelope) -> bool:
        raise NotImplementedError

    def _offer_system(self, envelope: Envelope) -> None:
        raise NotImplementedError


@final
class _SubscriptionQueue(MailboxQueue):
    """A subscription's buffer: an actor's :class:`MailboxQueue` of envelopes (ordered by
    priority, higher first, FIFO within one; bounded and overflowing as its
    :class:`Mailbox` says). Only the drop reason of a new envelope below every queued
    priority under ``DROP_OLDEST`` differs; the rest of a subscription's policy
    (``FAIL`` drops, dead letters past the capacity, a close that keeps the buffer) is
    :class:`Subscription`'s."""

    __slots__ = ()
    new_lowest_reason: ClassVar[str] = "dropped_lowest_priority"


class Subscription(_Receiver):
    """An async iterator of :class:`Envelope` for one pattern, made by
    :meth:`Broker.subscribe` (Akka's event-stream subscriber, a NATS subscription).

    It has its own buffer shaped by an :class:`otp.Mailbox` (unbounded and ``BLOCK`` by
    default): ``capacity`` bounds it, ``overflow`` says what a full buffer does with the
    next message. The buffer hands out higher-``priority`` envelopes first, and envelopes
    of one priority in arrival order. Iteration ends once the subscription is closed and
    its buffer is empty. One task at a time may receive.

    Networked brokers may reuse it: create it with the pattern, the mailbox and an
    ``on_drop(subscription, envelope, reason)`` hook, and feed it with ``_offer``.
    """

    __slots__ = (
        "__weakref__",
        "_backend",
        "_budget",
        "_buffer",
        "_closed",
        "_drop_hook",
        "_parker",
        "_receiving",
        "pattern",
    )

    def __init__(
        self,
        pattern: str,
        mailbox: Mailbox | None = None,
        *,
        on_drop: _DropHook | None = None,
    ) -> None:
        if mailbox is None:
            mailbox = _UNBOUNDED
        elif not isinstance(mailbox, Mailbox):
            raise TypeError(f"mailbox must be an otp.Mailbox, not {mailbox!r}")
        #: The pattern this subscription receives.
        self.pattern = pattern
        self._backend = backend = _current_backend()
        self._parker = parker = backend.parker()
        self._buffer = _SubscriptionQueue(mailbox, parker, self)
        self._drop_hook = on_drop or _ignore_drop
        self._closed = False
        self._receiving = False
        self._budget = _BUDGET

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Subscription {self.pattern!r} depth={len(self._buffer)}{state}>"

    def __len__(self) -> int:
        """The number of envelopes waiting in the buffer."""
        return len(self._buffer)

    @property
    def closed(self) -> bool:
        """``True`` once the ``async with`` has ended or the node has left."""
        return self._closed

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Envelope:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def receive(self) -> Envelope:
        """Wait for the next envelope.

        Raises ``anyio.EndOfStream`` once the subscription is closed and drained, and
        ``anyio.BusyResourceError`` if another task is already waiting on it.
        """
        buffer = self._buffer
        if buffer:
            self._budget -= 1
            if not self._budget:
                self._budget = _BUDGET
                await self._backend.checkpoint()
                if buffer:
                    return buffer.get()  # type: ignore[no-any-return]
            else:
                return buffer.get()  # type: ignore[no-any-return]
        if self._receiving:
            raise anyio.BusyResourceError("receiving from")
        self._receiving = True
        try:
            while not buffer:
                if self._closed:
                    raise anyio.EndOfStream
                await self._parker.park(None)
        finally:
            self._receiving = False
        return buffer.get()  # type: ignore[no-any-return]

    def receive_nowait(self) -> Envelope | None:
        """The next envelope if one is waiting, else ``None``."""
        if self._buffer:
            return self._buffer.get()  # type: ignore[no-any-return]
        return None

    def statistics(self) -> MailboxStatistics:
        """A snapshot of the buffer's counters."""
        return self._buffer.statistics()

    # -------------------------------------------------------------- the broker's side
    # The internal interface (brokers, otp/redis's streams; not for users): _offer,
    # _offer_blocking, _offer_system (the receiver protocol, as on ActorRef) and _close.
    # tests/test_architecture.py holds the same list.

    def _offer(self, envelope: Envelope) -> int:
        if self._closed:
            self._drop_hook(self, envelope, "subscription_closed")
            return DROPPED
        buffer = self._buffer
        try:
            # A dropped envelope (the new one or an evicted one) has reached _on_drop.
            return ACCEPTED if buffer.put(envelope, envelope.priority) else DROPPED
        except Full:
            if buffer.overflow is Overflow.BLOCK:
                return WAIT
            # FAIL: a publisher is never refused; the envelope is dropped (MailboxQueue
            # has counted it in ``dropped``).
            self._drop_hook(self, envelope, "mailbox_full")
            return DROPPED

    async def _offer_blocking(self, envelope: Envelope) -> bool:
        # Called after _offer said WAIT; the refusal of a closing buffer is reported by
        # _close, so a False here needs no dead letter from the caller.
        return await self._buffer.put_blocking(envelope, self._backend, envelope.priority)

    def _offer_system(self, envelope: Envelope) -> None:
        # Dead letters: never waited for. A full BLOCK buffer takes them past its capacity;
        # the other policies apply as usual.
        if self._closed:
            return
        buffer = self._buffer
        try:
            buffer.put(envelope, envelope.priority)
        except Full:
            if buffer.overflow is Overflow.BLOCK:
                buffer.put_past_capacity(envelope, envelope.priority)
            else:
                self._drop_hook(self, envelope, "mailbox_full")

    def _on_drop(self, item: Item, why: str) -> None:
        # The buffer's owner hook (MailboxQueue calls it for every envelope an overflow
        # policy drops): hand it to the broker's on_drop.
        self._drop_hook(self, item, why)

    def _close(self, *, discard: bool) -> None:
        self._closed = True
        for envelope in self._buffer.refuse_blocked():
            self._drop_hook(self, envelope, "subscription_closed")
        if discard:
            for envelope in self._buffer.close():
                self._drop_hook(self, envelope, "subscription_closed")
        self._parker.wake()


_UNBOUNDED: Final = Mailbox()


class _Waiter(_Receiver):
    """The inbox of one pending request: takes the first reply."""

    __slots__ = ("_on_drop", "promise")

    def __init__(self, promise: Promise, on_drop: _DropHook) -> None:
        self.promise = promise
        self._on_drop = on_drop

    def _offer(self, envelope: Envelope) -> int:
        if self.promise.resolve(envelope.message):
            return ACCEPTED
        self._on_drop(self, envelope, "late_reply")
        return DROPPED

    async def _offer_blocking(self, envelope: Envelope) -> bool:  # pragma: no cover
        return self._offer(envelope) == ACCEPTED

    def _offer_system(self, envelope: Envelope) -> None:  # pragma: no cover
        self._offer(envelope)
