"""Mailboxes: the bounded or unbounded queue in front of every actor.

A mailbox holds *user* messages (calls, casts, sends and broker deliveries) in arrival
order, which keeps each sender's messages in the order it sent them. Control traffic never
waits here: stop requests are a flag on the actor, replies go straight to the caller and
``Down`` notices are appended past the capacity, so they are never refused or dropped.
"""

from __future__ import annotations

import bisect
import enum
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, final

import attrs

if TYPE_CHECKING:
    from ._backends import Backend, Parker, Promise

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
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(
            f"Mailbox capacity must be None (unbounded) or an int >= 1, not {value!r} "
            f"({type(value).__name__})"
        )
    if value is not None and value < 1:
        raise ValueError(f"Mailbox capacity must be None (unbounded) or an int >= 1, not {value!r}")


def check_priority(priority: object) -> None:
    """Raise ``TypeError`` unless ``priority`` is an int (not a bool)."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(
            f"priority must be an int (higher is handled first, 0 is the default), not "
            f"{priority!r} ({type(priority).__name__})"
        )


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


class Kind(enum.IntEnum):
    """What a :class:`Wrapped` mailbox item carries (the one place item kinds are defined).

    A plain cast is never wrapped: the message itself is the mailbox item, so the hot path
    allocates nothing; ``CAST`` appears only where an item is described (a crash report).
    """

    #: A request; ``caller`` is the promise its reply resolves.
    CALL = 0
    #: A ``handle_cast`` message (see above).
    CAST = 1
    #: A ``handle_info`` message from ``send`` or a broker delivery.
    INFO = 2
    #: ``(fn(server) -> reply, caller)``: a sys-style request, run between callbacks;
    #: past the capacity.
    SYSTEM = 3
    #: A ``handle_info`` message that is never refused nor dropped (``Down``, timers,
    #: ``Exit``); past the capacity.
    CONTROL = 4


CALL: Final = Kind.CALL
CAST: Final = Kind.CAST
INFO: Final = Kind.INFO
SYSTEM: Final = Kind.SYSTEM
CONTROL: Final = Kind.CONTROL

# What offering a message to a receiver (an actor's mailbox, a subscription's buffer, a
# request's inbox) came to, as a broker reads it:
ACCEPTED: Final = 0  # queued (or handed over)
DROPPED: Final = 1  # an overflow policy dropped it; the receiver has recorded the dead letter
WAIT: Final = 2  # a full BLOCK receiver: the sender may wait for room (the blocking offer)
REFUSED: Final = 3  # a full FAIL receiver refused it; nothing recorded (the sender writes it)
GONE: Final = 4  # the receiver has exited; nothing recorded


@final
class Wrapped:
    """A mailbox item other than a plain cast (the "envelope" of a call, an info message,
    a control or system item): its :class:`Kind`, the message and, for ``CALL`` and
    ``SYSTEM``, the caller's promise. (Not :class:`otp.Envelope`, the broker's.)

    Never modified once built, so the broker queues one into every subscriber's mailbox.
    A slotted class rather than ``attrs.frozen`` because one is built per call and per
    broker delivery, and a frozen attrs ``__init__`` costs over twice as much.
    """

    __slots__ = ("caller", "kind", "message")

    def __init__(self, kind: Kind, message: Any, caller: Any = None) -> None:
        self.kind = kind
        self.message = message
        self.caller = caller

    def __repr__(self) -> str:
        return f"Wrapped({self.kind.name}, {self.message!r})"


#: A mailbox item: a :class:`Wrapped`, or a cast's message itself (any other object).
Item = Any


def wrap(kind: Kind, message: Any, caller: Any = None) -> Item:
    """The mailbox item for ``message`` of ``kind``: a cast is the message itself."""
    if kind is CAST:
        return message
    return Wrapped(kind, message, caller)


def unwrap(item: Item) -> tuple[Kind, Any, Any]:
    """``(kind, message, caller)`` of a mailbox item."""
    if type(item) is Wrapped:
        return item.kind, item.message, item.caller
    return CAST, item, None


class _Owner(Protocol):
    """What a :class:`MailboxQueue` needs of its actor: told of every dropped item."""

    def _on_drop(self, item: Item, why: str) -> None: ...


#: The shared, immutable "none yet" of the lazily created containers below (an empty
#: tuple is falsy, iterable and untracked by the cyclic GC).
_NONE: tuple[()] = ()


class MailboxQueue:
    """The live queue behind one actor incarnation (single consumer: the actor).

    Items (:data:`Item`) of priority 0 (almost all) live in one deque; other priorities get
    a lane each, created on first use. ``get`` takes from the highest priority first and
    keeps arrival order within a priority. ``capacity`` counts every lane.

    The counters are kept where they cost least and the statistics derived from them when
    read, exactly (``statistics``):

    - ``taken``: items the consumer took;
    - ``_removed``: items that left otherwise (evicted by ``DROP_OLDEST``, left at close);
      so *enqueued* is ``taken + _removed + depth``;
    - ``_high``: the largest depth seen just before a take (or a close). Between two takes
      the depth never falls (senders append, an eviction makes room for the new message),
      so the high-water mark is ``max(_high, depth)``;
    - ``_control``: control items queued (``SYSTEM``, ``CONTROL``), kept outside the
      capacity. Only a bounded mailbox has a capacity to keep them out of, so only a
      bounded one counts them: senders to an unbounded mailbox and the actor loop's inlined
      take (``ActorRef._loop``, unbounded mailboxes only) skip the count.

    The actor inlines the two hot paths (``ActorRef.cast_nowait`` and ``cast`` append to
    ``_items`` of an unbounded mailbox and wake the parker; ``ActorRef._loop`` takes as
    ``get`` does, keeping ``taken`` and ``_high``, and handles a run of casts back to back
    while ``_look`` stays clear); they must stay in step with ``put`` and ``get`` here.
    """

    #: The reason given to the owner's ``_on_drop`` when ``DROP_OLDEST`` drops the *new*
    #: message (it is below every queued priority). A subscription's queue says
    #: ``"dropped_lowest_priority"`` (``otp._subscriptions``); read only on that path.
    new_lowest_reason: ClassVar[str] = "dropped_oldest"

    __slots__ = (
        "_blocked",
        "_capacity",
        "_closed",
        "_control",
        "_extra",
        "_high",
        "_items",
        "_lanes",
        "_look",
        "_order",
        "_overflow",
        "_owner",
        "_parker",
        "_removed",
        "dropped",
        "taken",
    )

    def __init__(
        self,
        spec: Mailbox,
        parker: Parker,
        owner: _Owner,
    ) -> None:
        self._items: deque[Item] = deque()
        # Lanes for priorities other than 0, and their priorities in descending order.
        # Both are created on first use (an empty dict is not tracked by the GC; the
        # order list and the blocked deque would be): a 100,000-actor start is dominated
        # by the collector walking every actor's objects.
        self._lanes: dict[int, deque[Item]] = {}
        self._order: list[int] | tuple[()] = _NONE
        self._extra = 0  # messages waiting in lanes
        # Set when the actor loop must look before it takes the next cast of a run inline:
        # a message went into a priority lane (here), or the actor was asked to stop or
        # to continue (ActorRef._request_stop, _continue). The loop clears it when a run
        # starts, having checked all three itself.
        self._look = False
        self._control = 0  # control items queued in _items (bounded mailboxes only)
        self._capacity = spec.capacity
        self._overflow = spec.overflow
        self._parker = parker
        self._owner = owner  # not its bound _on_drop: one object fewer per actor
        # Senders waiting for room, oldest first: (item, priority, promise resolved once in).
        # Only a bounded BLOCK mailbox ever has one: created by the first put_blocking.
        self._blocked: deque[tuple[Item, int, Promise]] | tuple[()] = _NONE
        self._closed = False
        self.taken = 0
        self._removed = 0
        self._high = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items) + self._extra

    def __bool__(self) -> bool:
        return bool(self._items) or self._extra > 0

    @property
    def enqueued(self) -> int:
        """Items accepted into the mailbox, ever (control items included)."""
        return self.taken + self._removed + len(self._items) + self._extra

    @property
    def capacity(self) -> int | None:
        """The mailbox's capacity (``None``: unbounded), as its :class:`Mailbox` says."""
        return self._capacity

    @property
    def overflow(self) -> Overflow:
        """What a full mailbox does with one more message, as its :class:`Mailbox` says."""
        return self._overflow

    @property
    def high_water(self) -> int:
        """The largest depth seen."""
        depth = len(self._items) + self._extra
        return depth if depth > self._high else self._high

    def _append(self, item: Item, priority: int = 0) -> None:
        if priority:
            lane = self._lanes.get(priority)
            if lane is None:
                lane = self._lanes[priority] = deque()
            if not lane:
                order = self._order
                if order.__class__ is tuple:
                    order = self._order = []
                bisect.insort(order, -priority)  # type: ignore[arg-type]
            lane.append(item)
            self._extra += 1
            self._look = True
        else:
            self._items.append(item)
        if self._parker.waiter is not None:  # the actor sleeps: wake it
            self._parker.wake()

    def put(self, item: Item, priority: int = 0) -> bool:
        """Queue a user message without waiting.

        Returns ``False`` when the overflow policy dropped the *new* message. Raises
        :class:`Full` when the sender must wait (``BLOCK``) or be refused (``FAIL``).
        """
        cap = self._capacity
        if cap is None and not priority:
            # The hot path (unbounded, priority 0): _append inlined.
            self._items.append(item)
            if self._parker.waiter is not None:  # the actor sleeps: wake it
                self._parker.wake()
            return True
        if priority and priority.__class__ is not int:
            check_priority(priority)
        if cap is None or (
            len(self._items) + self._extra - self._control < cap and not self._blocked
        ):
            self._append(item, priority)
            return True
        overflow = self._overflow
        if overflow is Overflow.BLOCK:
            raise Full
        if overflow is Overflow.DROP_OLDEST:
            # The oldest user message of the lowest priority goes (the new one, if it is
            # the lowest); control messages are never evicted.
            lowest = self._lowest_user_priority()
            if lowest is None or priority < lowest:
                self.dropped += 1
                self._owner._on_drop(item, self.new_lowest_reason)
                return False
            old = self._evict(lowest)
            self._removed += 1
            self.dropped += 1
            self._append(item, priority)
            self._owner._on_drop(old, "dropped_oldest")
            return True
        self.dropped += 1
        if overflow is Overflow.DROP_NEWEST:
            self._owner._on_drop(item, "dropped_newest")
            return False
        raise Full  # FAIL: the caller raises MailboxFull

    def put_control(self, item: Wrapped) -> None:
        """Queue a message that must never be refused or dropped (``Down``, timers, system
        requests): in order with the rest, but outside the capacity. An ``INFO`` item is
        queued as ``CONTROL``."""
        if item.kind is INFO:
            item = Wrapped(CONTROL, item.message)
        if self._capacity is not None:
            self._control += 1
        self._append(item)

    def put_past_capacity(self, item: Item, priority: int = 0) -> None:
        """Queue a user message past the capacity, never refused nor dropped (a dead letter
        to a full ``BLOCK`` subscription). Unlike :meth:`put_control` it is not counted in
        ``_control``: it holds room until taken, as any user message, and ``DROP_OLDEST``
        may evict it."""
        self._append(item, priority)

    def _lowest_user_priority(self) -> int | None:
        # The lowest priority that holds a user message, or None when there is none.
        order = self._order  # negated priorities, ascending: the last is the lowest
        if order and order[-1] > 0:
            return -order[-1]
        if len(self._items) > self._control:
            return 0
        return -order[-1] if order else None

    def _evict(self, priority: int) -> Item:
        if priority:
            return self._pop(priority)
        items = self._items
        for index, item in enumerate(items):
            if type(item) is not Wrapped or item.kind < SYSTEM:  # a user message
                del items[index]
                return item
        raise AssertionError("no user message to evict")  # pragma: no cover

    async def put_blocking(
        self,
        item: Item,
        backend: Backend,
        priority: int = 0,
        timeout: float | None = None,
    ) -> bool:
        """Wait for room and queue ``item`` (``Overflow.BLOCK``).

        Returns ``False`` if the mailbox closed first (the actor exited); the sender then
        disposes of its own message. A cancelled sender's message is not queued, nor is one
        whose ``timeout`` passed (``Expired`` is raised then).
        """
        promise = backend.promise()
        blocked = self._blocked
        if blocked.__class__ is tuple:
            blocked = self._blocked = deque()
        blocked.append((item, priority, promise))  # type: ignore[union-attr]
        return bool(await promise.wait(timeout))

    def _pop(self, priority: int) -> Item:
        if not priority:
            return self._items.popleft()
        lane = self._lanes[priority]
        item = lane.popleft()
        self._extra -= 1
        if not lane:
            self._order.remove(-priority)  # type: ignore[union-attr]  # a list: lanes exist
        return item

    def get(self) -> Item:
        """Take the next item: highest priority first, oldest first within one."""
        depth = len(self._items) + self._extra
        if depth > self._high:
            self._high = depth
        if self._extra:
            top = -self._order[0]  # type: ignore[misc]  # a list while lanes hold messages
            item = self._pop(top) if top > 0 or not self._items else self._items.popleft()
        else:
            item = self._items.popleft()
        self.taken += 1
        if self._control and type(item) is Wrapped and item.kind >= SYSTEM:
            self._control -= 1
        if self._blocked:
            self._admit()
        return item

    def _admit(self) -> None:
        # Move the oldest blocked senders' messages in while there is room.
        blocked = self._blocked
        cap = self._capacity
        assert cap is not None
        while blocked and len(self._items) + self._extra - self._control < cap:
            item, priority, promise = blocked.popleft()
            if promise.resolve(True):
                self._append(item, priority)
            # else: the sender was cancelled while waiting; its message was never sent.

    def refuse_blocked(self) -> list[Item]:
        """Release every blocked sender with ``False`` (their ``put_blocking`` returns it);
        return the messages of those still waiting (not cancelled), oldest first. The queue
        itself stays as it is: a closed subscription is read until empty."""
        blocked = self._blocked
        self._blocked = _NONE
        return [item for item, _, promise in blocked if promise.resolve(False)]

    def close(self) -> list[Item]:
        """Refuse everything from now on; return what was queued, in delivery order."""
        self._closed = True
        depth = len(self._items) + self._extra
        if depth > self._high:
            self._high = depth
        order = self._order
        if order:
            left: list[Item] = []
            for priority in [-p for p in order if p < 0]:  # higher priorities first
                left.extend(self._lanes[priority])
            left.extend(self._items)
            for priority in [-p for p in order if p > 0]:
                left.extend(self._lanes[priority])
        else:  # priority 0 only (almost always): no lanes to merge
            left = list(self._items)
        self._removed += len(left)
        self._items.clear()
        self._lanes.clear()
        self._order = _NONE
        self._extra = 0
        self._control = 0
        # Blocked senders learn that the actor is gone and dispose of their own message.
        blocked = self._blocked
        self._blocked = _NONE
        for _, _, promise in blocked:
            promise.resolve(False)
        return left

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> MailboxStatistics:
        depth = len(self._items) + self._extra
        return MailboxStatistics(
            depth=depth,
            high_water=depth if depth > self._high else self._high,
            enqueued=self.taken + self._removed + depth,
            dropped=self.dropped,
            blocked_senders=sum(1 for _, _, p in self._blocked if not p.done()),
            capacity=self._capacity,
            overflow=self._overflow,
        )
