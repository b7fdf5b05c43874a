"""Subscribers that receive envelopes rather than mailbox items: :class:`Subscription`
(an async iterator with its own bounded, prioritised buffer) and the inbox of a pending
request. Actors are the other kind of subscriber (``ActorRef._offer``); both answer an
offer with otp._mailbox's offer codes.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._backends import backend as _current_backend
from ._mailbox import ACCEPTED, DROPPED, WAIT, Mailbox, MailboxStatistics, Overflow

if TYPE_CHECKING:
    from ._backends import Backend, Parker, Promise
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


class _Buffer:
    """A subscription's buffer: ordered by priority (higher first), FIFO within one
    priority, bounded and overflowing as its :class:`Mailbox` says."""

    __slots__ = (
        "_blocked",
        "_capacity",
        "_levels",
        "_order",
        "_overflow",
        "_parker",
        "_size",
        "dropped",
        "enqueued",
        "high_water",
    )

    def __init__(self, spec: Mailbox, parker: Parker) -> None:
        self._capacity = spec.capacity
        self._overflow = spec.overflow
        self._parker = parker
        # priority -> its queue, and the negated priorities that have one, ascending
        # (so the most urgent comes first).
        self._levels: dict[int, deque[Envelope]] = {}
        self._order: list[int] = []
        self._size = 0
        self._blocked: deque[tuple[Envelope, Promise]] = deque()
        self.enqueued = 0
        self.dropped = 0
        self.high_water = 0

    def __len__(self) -> int:
        return self._size

    def _append(self, envelope: Envelope) -> None:
        priority = envelope.priority
        queue = self._levels.get(priority)
        if queue is None:
            queue = self._levels[priority] = deque()
            bisect.insort(self._order, -priority)
        queue.append(envelope)
        self._size += 1
        self.enqueued += 1
        if self._size > self.high_water:
            self.high_water = self._size
        self._parker.wake()

    def _pop(self, index: int) -> Envelope:
        priority = -self._order[index]
        queue = self._levels[priority]
        envelope = queue.popleft()
        self._size -= 1
        if not queue:
            del self._levels[priority]
            del self._order[index]
        return envelope

    def put(self, envelope: Envelope) -> tuple[int, Envelope | None, str]:
        """Queue without waiting: ``(status, dropped envelope or None, reason)``."""
        cap = self._capacity
        if cap is None or (self._size < cap and not self._blocked):
            self._append(envelope)
            return ACCEPTED, None, ""
        overflow = self._overflow
        if overflow is Overflow.BLOCK:
            return WAIT, None, ""
        self.dropped += 1
        if overflow is Overflow.DROP_OLDEST:
            # The oldest message of the lowest priority goes, counting the new one.
            if envelope.priority < -self._order[-1]:
                return DROPPED, envelope, "dropped_lowest_priority"
            old = self._pop(len(self._order) - 1)
            self._append(envelope)
            return ACCEPTED, old, "dropped_oldest"
        if overflow is Overflow.DROP_NEWEST:
            return DROPPED, envelope, "dropped_newest"
        return DROPPED, envelope, "mailbox_full"

    def put_past_capacity(self, envelope: Envelope) -> None:
        self._append(envelope)

    async def put_blocking(self, envelope: Envelope, backend: Backend) -> bool:
        """Wait for room (``Overflow.BLOCK``); ``False`` if the buffer closed first."""
        promise = backend.promise()
        self._blocked.append((envelope, promise))
        return bool(await promise.wait(None))

    def get(self) -> Envelope:
        envelope = self._pop(0)
        if self._blocked:
            self._admit()
        return envelope

    def _admit(self) -> None:
        blocked = self._blocked
        cap = self._capacity
        assert cap is not None
        while blocked and self._size < cap:
            envelope, promise = blocked.popleft()
            if promise.resolve(True):
                self._append(envelope)

    def close(self) -> list[Envelope]:
        """Release blocked publishers; return the envelopes they could not deliver."""
        refused = []
        while self._blocked:
            envelope, promise = self._blocked.popleft()
            if promise.resolve(False):
                refused.append(envelope)
        return refused

    def drain(self) -> list[Envelope]:
        left = []
        while self._size:
            left.append(self._pop(0))
        return left

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            depth=self._size,
            high_water=self.high_water,
            enqueued=self.enqueued,
            dropped=self.dropped,
            blocked_senders=sum(1 for _, p in self._blocked if not p.done()),
            capacity=self._capacity,
            overflow=self._overflow,
        )


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
        "_on_drop",
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
        self._buffer = _Buffer(mailbox, parker)
        self._on_drop = on_drop or _ignore_drop
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
        if buffer._size:
            self._budget -= 1
            if not self._budget:
                self._budget = _BUDGET
                await self._backend.checkpoint()
                if buffer._size:
                    return buffer.get()
            else:
                return buffer.get()
        if self._receiving:
            raise anyio.BusyResourceError("receiving from")
        self._receiving = True
        try:
            while not buffer._size:
                if self._closed:
                    raise anyio.EndOfStream
                await self._parker.park(None)
        finally:
            self._receiving = False
        return buffer.get()

    def receive_nowait(self) -> Envelope | None:
        """The next envelope if one is waiting, else ``None``."""
        if self._buffer._size:
            return self._buffer.get()
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
            self._on_drop(self, envelope, "subscription_closed")
            return DROPPED
        status, dropped, reason = self._buffer.put(envelope)
        if dropped is not None:
            self._on_drop(self, dropped, reason)
        return status

    async def _offer_blocking(self, envelope: Envelope) -> bool:
        # Called after _offer said WAIT; the refusal of a closing buffer is reported by
        # _close, so a False here needs no dead letter from the caller.
        return await self._buffer.put_blocking(envelope, self._backend)

    def _offer_system(self, envelope: Envelope) -> None:
        # Dead letters: never waited for. A full BLOCK buffer takes them past its capacity;
        # the other policies apply as usual.
        if self._closed:
            return
        status, dropped, reason = self._buffer.put(envelope)
        if status == WAIT:
            self._buffer.put_past_capacity(envelope)
        elif dropped is not None:
            self._on_drop(self, dropped, reason)

    def _close(self, *, discard: bool) -> None:
        self._closed = True
        for envelope in self._buffer.close():
            self._on_drop(self, envelope, "subscription_closed")
        if discard:
            for envelope in self._buffer.drain():
                self._on_drop(self, envelope, "subscription_closed")
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
