"""Mailboxes: the bounded or unbounded queue in front of every actor.

A mailbox holds *user* messages (calls, casts, sends and broker deliveries) in arrival
order, which keeps each sender's messages in the order it sent them. Control traffic never
waits here: stop requests are a flag on the actor, replies go straight to the caller and
``Down`` notices are appended past the capacity, so they are never refused or dropped.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ._compat import Backend, Parker, Promise

__all__ = ["Mailbox", "MailboxStatistics", "Overflow"]


class Overflow(enum.Enum):
    """What happens to a message sent to a full mailbox."""

    #: The sender waits until there is room (per-sender order is kept, nothing is lost).
    BLOCK = "block"
    #: The new message is dropped and recorded as a dead letter.
    DROP_NEWEST = "drop_newest"
    #: The oldest queued message is dropped (a dead letter) to make room for the new one.
    DROP_OLDEST = "drop_oldest"
    #: The sender gets :class:`otp.MailboxFull`.
    FAIL = "fail"

    def __repr__(self) -> str:
        return f"Overflow.{self.name}"

    __str__ = __repr__


def _check_capacity(instance: object, attribute: object, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"Mailbox capacity must be None (unbounded) or an int >= 1, not {value!r}")


@attrs.frozen
class Mailbox:
    """How an actor's mailbox is shaped: ``capacity`` (``None`` is unbounded) and the
    ``overflow`` policy applied when it is full.

    ``capacity`` counts queued user messages (calls, casts, sends, broker deliveries), not
    the one being handled. Erlang mailboxes are unbounded; the bound is an addition.
    """

    capacity: int | None = attrs.field(default=None, validator=_check_capacity)
    overflow: Overflow = attrs.field(
        default=Overflow.BLOCK, validator=attrs.validators.instance_of(Overflow)
    )


@attrs.frozen
class MailboxStatistics:
    """A snapshot of one mailbox's counters."""

    #: Messages queued now.
    depth: int
    #: The largest depth seen.
    high_water: int
    #: Messages accepted into the mailbox, ever.
    enqueued: int
    #: Messages dropped by an overflow policy or refused with ``MailboxFull``.
    dropped: int
    #: Senders waiting for room (``Overflow.BLOCK``).
    blocked_senders: int
    capacity: int | None
    overflow: Overflow


class Full(Exception):
    """Internal: raised by :meth:`MailboxQueue.put` when a BLOCK mailbox has no room."""


# Mailbox items are plain tuples ``(kind, message, caller)`` for speed: the hot path
# allocates nothing else.
CALL = 0
CAST = 1
INFO = 2
SYSTEM = 3  # (SYSTEM, fn(server) -> reply, caller): sys-style requests, past the capacity


class MailboxQueue:
    """The live queue behind one actor incarnation (single consumer: the actor)."""

    __slots__ = (
        "_blocked",
        "_capacity",
        "_closed",
        "_items",
        "_on_drop",
        "_overflow",
        "_parker",
        "dropped",
        "enqueued",
        "high_water",
    )

    def __init__(
        self,
        spec: Mailbox,
        parker: Parker,
        on_drop: Callable[[tuple[int, Any, Any], str], None],
    ) -> None:
        self._items: deque[tuple[int, Any, Any]] = deque()
        self._capacity = spec.capacity
        self._overflow = spec.overflow
        self._parker = parker
        self._on_drop = on_drop
        # Senders waiting for room, oldest first: (item, promise resolved once admitted).
        self._blocked: deque[tuple[tuple[int, Any, Any], Promise]] = deque()
        self._closed = False
        self.enqueued = 0
        self.dropped = 0
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._items)

    def _append(self, item: tuple[int, Any, Any]) -> None:
        items = self._items
        items.append(item)
        self.enqueued += 1
        n = len(items)
        if n > self.high_water:
            self.high_water = n
        self._parker.wake()

    def put(self, item: tuple[int, Any, Any]) -> bool:
        """Queue a user message without waiting.

        Returns ``False`` when the overflow policy dropped the *new* message. Raises
        :class:`Full` for ``BLOCK`` when the sender must wait, and ``MailboxFull``-worthy
        refusals are reported as :class:`OverflowError` subclasses by the caller.
        """
        cap = self._capacity
        if cap is None or (len(self._items) < cap and not self._blocked):
            self._append(item)
            return True
        overflow = self._overflow
        if overflow is Overflow.BLOCK:
            raise Full
        if overflow is Overflow.DROP_OLDEST:
            old = self._items.popleft()
            self.dropped += 1
            self._append(item)
            self._on_drop(old, "dropped_oldest")
            return True
        self.dropped += 1
        if overflow is Overflow.DROP_NEWEST:
            self._on_drop(item, "dropped_newest")
            return False
        raise Full  # FAIL: the caller raises MailboxFull

    def put_control(self, item: tuple[int, Any, Any]) -> None:
        """Queue a message that must never be refused or dropped (``Down``), past capacity."""
        self._append(item)

    async def put_blocking(self, item: tuple[int, Any, Any], backend: Backend) -> bool:
        """Wait for room and queue ``item`` (``Overflow.BLOCK``).

        Returns ``False`` if the mailbox closed first (the actor exited); the item is then
        the closer's to dispose of. A cancelled sender's message is not queued.
        """
        promise = backend.promise()
        self._blocked.append((item, promise))
        return bool(await promise.wait(None))

    def get(self) -> tuple[int, Any, Any]:
        """Take the oldest message (the mailbox must not be empty)."""
        item = self._items.popleft()
        if self._blocked:
            self._admit()
        return item

    def _admit(self) -> None:
        # Move the oldest blocked senders' messages in while there is room.
        blocked = self._blocked
        cap = self._capacity
        assert cap is not None
        while blocked and len(self._items) < cap:
            item, promise = blocked.popleft()
            if promise.resolve(True):
                self._append(item)
            # else: the sender was cancelled while waiting; its message was never sent.

    def close(self) -> list[tuple[int, Any, Any]]:
        """Refuse everything from now on; return what was queued or waiting to be."""
        self._closed = True
        left = list(self._items)
        self._items.clear()
        # Blocked senders learn that the actor is gone and dispose of their own message.
        while self._blocked:
            _, promise = self._blocked.popleft()
            promise.resolve(False)
        return left

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            depth=len(self._items),
            high_water=self.high_water,
            enqueued=self.enqueued,
            dropped=self.dropped,
            blocked_senders=sum(1 for _, p in self._blocked if not p.done()),
            capacity=self._capacity,
            overflow=self._overflow,
        )
