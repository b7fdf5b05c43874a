"""The pub/sub broker: topics with wildcards, envelopes, request/reply, broadcast, middleware,
priorities, dead letters and statistics.

Topic grammar. A topic is one or more dot-separated segments (``orders.eu.created``); a
segment is any non-empty run of characters other than ``.``, ``*``, ``#`` and whitespace.
A subscription *pattern* may also use two wildcards, each a whole segment: ``*`` matches
exactly one segment and ``#`` matches zero or more (``orders.*`` matches
``orders.created`` but not ``orders.eu.created``; ``orders.#`` matches ``orders``,
``orders.created`` and ``orders.eu.created``). As in MQTT, a pattern that *starts* with a
wildcard does not match a topic whose first segment starts with ``$`` (the system topics
such as :data:`DEAD_LETTERS` and request inboxes): subscribe to them by name.

The way of one message: ``publish`` looks the topic up in a route cache (a tuple of
subscribers per concrete topic, rebuilt only after a subscription change), runs the
middleware stages if there are any, then hands the message to each subscriber in turn:
an actor gets it in its mailbox (``handle_info``), a :class:`Subscription` gets an
:class:`Envelope` in its own buffer. No task is spawned per message and the envelope is
only built when a stage or a subscription needs it.
"""

from __future__ import annotations

import bisect
import datetime
import inspect
import itertools
import logging
import math
import os
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import MappingProxyType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Protocol,
    TypeAlias,
    TypeVar,
    overload,
    runtime_checkable,
)

import anyio
import attrs

from ._actor import ActorRef, Down, MonitorRef
from ._backends import backend as _current_backend
from ._exceptions import InvalidTopic, NoSubscriber, RequestTimeout
from ._mailbox import (
    ACCEPTED,
    DROPPED,
    GONE,
    INFO,
    WAIT,
    Full,
    Mailbox,
    MailboxStatistics,
    Overflow,
    Wrapped,
)

if TYPE_CHECKING:
    from ._backends import Backend, Parker, Promise
    from ._call import Call, R
    from ._node import Node

__all__ = [
    "BROADCAST",
    "DEAD_LETTERS",
    "Broker",
    "BrokerStatistics",
    "DeadLetter",
    "Envelope",
    "InMemoryBroker",
    "Middleware",
    "Request",
    "Subscription",
    "message",
    "message_type",
    "topic_matches",
]

logger = logging.getLogger("otp")

#: The topic on which every dead letter is published as a :class:`DeadLetter`.
DEAD_LETTERS: Final = "$otp.dead_letters"

#: The topic middleware sees on the envelope of a :meth:`Broker.broadcast`.
BROADCAST: Final = "$otp.broadcast"

#: Request inboxes are topics under this prefix (``$otp.inbox.<id>``).
_INBOX: Final = "$otp.inbox."

#: The runtime's own topics; user code may subscribe to them but not publish on them.
_SYSTEM: Final = "$otp."

#: The route cache's key for the dead-letter route: not a str, so no user publish (whose
#: topic is checked on a cache miss) can hit it.
_DEAD_LETTERS_KEY: Final = object()

#: Concrete topics remembered by the route cache before it starts over.
_ROUTE_CACHE_SIZE: Final = 10_000

#: How many buffered envelopes a subscription hands out back to back before it yields.
_BUDGET: Final = 64

_UTC = datetime.UTC

C = TypeVar("C", bound=type)

_MESSAGE_TYPES: dict[str, type] = {}


def message(name: str) -> Callable[[C], C]:
    """Give a message class a stable wire name: ``@otp.message("orders.created")``.

    The name is what a wire codec writes instead of the Python path, so classes can move
    between modules without breaking other nodes. Raises ``ValueError`` if another class
    already holds the name.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"a message name must be a non-empty str, not {name!r}")

    def register(cls: C) -> C:
        holder = _MESSAGE_TYPES.get(name)
        # The same class defined again (a module re-imported or re-run) takes the name
        # over; any other class is a collision that would make the wire ambiguous.
        if holder is not None and (holder.__module__, holder.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise ValueError(
                f"message name {name!r} is already used by "
                f"{holder.__module__}.{holder.__qualname__}, so "
                f"{cls.__module__}.{cls.__qualname__} cannot have it; give each message class "
                "a unique name"
            )
        _MESSAGE_TYPES[name] = cls
        cls.__otp_message__ = name  # type: ignore[attr-defined]
        return cls

    return register


def message_type(name: str) -> type | None:
    """The class registered under a wire name with :func:`message`, or ``None``."""
    return _MESSAGE_TYPES.get(name)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(_UTC)


# ---------------------------------------------------------------------------- data


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


def _freeze_headers(value: Mapping[str, str] | None) -> Mapping[str, str]:
    if not value:
        return _NO_HEADERS
    if isinstance(value, MappingProxyType):
        return value
    return MappingProxyType(dict(value))


@attrs.frozen
class Envelope:
    """A published message with its metadata, as a :class:`Subscription` yields it.

    ``id`` is unique per broker, ``timestamp`` is UTC, ``sender`` is the publishing actor
    (or ``None``), ``reply_to`` the inbox topic of a :meth:`Broker.request` (answer it with
    :meth:`Broker.reply`), ``headers`` free-form string metadata (read-only), ``priority``
    the publisher's priority (higher first). Akka's counterpart is the event-bus
    classifier's event; NATS's is the message with its subject, reply subject and headers.
    """

    id: str
    topic: str
    message: Any
    timestamp: datetime.datetime
    sender: ActorRef | None = None
    reply_to: str | None = None
    headers: Mapping[str, str] = attrs.field(default=_NO_HEADERS, converter=_freeze_headers)
    priority: int = 0


@attrs.frozen
class DeadLetter:
    """A message nobody received (Akka's ``DeadLetter``), published on :data:`DEAD_LETTERS`.

    ``reason`` says why: ``"no_subscriber"`` (nobody subscribes to ``topic``),
    ``"noproc"`` / ``"actor_exited"`` (the recipient actor is dead),
    ``"dropped_newest"`` / ``"dropped_oldest"`` / ``"dropped_lowest_priority"`` /
    ``"mailbox_full"`` (an overflow policy), ``"subscription_closed"``,
    ``"dropped_by_middleware"`` (``recipient`` is the stage) or ``"late_reply"``.
    """

    message: Any
    recipient: Any
    reason: str
    topic: str | None = None
    timestamp: datetime.datetime = attrs.field(factory=_utcnow)


@attrs.frozen
class BrokerStatistics:
    """A snapshot of a broker's counters (:meth:`Broker.statistics`).

    ``published`` counts publishes with a valid topic (requests, replies and broadcasts
    included); ``delivered`` the messages a subscriber accepted into its mailbox or
    buffer; ``dropped`` the deliveries a subscriber's overflow policy refused or evicted;
    ``filtered`` the messages middleware dropped; ``dead_letters`` every dead letter
    recorded (drops included); ``subscribers`` the subscriber count per pattern.
    """

    published: int
    delivered: int
    dropped: int
    filtered: int
    dead_letters: int
    subscribers: Mapping[str, int]


@attrs.frozen
class Request:
    """A requested message, as an actor subscriber receives it in ``handle_info``.

    Published with a ``reply_to`` (by :meth:`Broker.request`), a message reaches actors
    wrapped in a ``Request`` so they can answer; subscriptions see the bare
    :class:`Envelope` and answer with :meth:`Broker.reply`. Match it like any message::

        case otp.Request(message=GetPrice(symbol)) as request:
            await request.reply(self.prices[symbol])

    The first reply wins; later ones become dead letters. NATS's request/reply and
    Akka's ``ask`` pattern are the counterparts.
    """

    envelope: Envelope
    _broker: Broker = attrs.field(alias="broker", eq=False, repr=False)

    @property
    def message(self) -> Any:
        """The requested message."""
        return self.envelope.message

    async def reply(
        self,
        value: Any,
        *,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Answer the request with ``value``; returns 1 if the requester got it, 0 if it
        had given up (the reply is then a dead letter)."""
        return await self._broker.reply(self.envelope, value, sender=sender, headers=headers)


#: A middleware stage: takes an envelope and returns it (maybe changed with
#: ``attrs.evolve``), or ``None`` to drop the message. May be sync or async.
Middleware: TypeAlias = Callable[[Envelope], Envelope | Awaitable[Envelope | None] | None]


# ---------------------------------------------------------------------------- topics


_SEGMENT = r"[^.*#\s]+"
_TOPIC_RE: Final = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_PATTERN_RE: Final = re.compile(rf"(?:{_SEGMENT}|\*|#)(?:\.(?:{_SEGMENT}|\*|#))*")


def _topic_problem(topic: str, *, pattern: bool) -> str:
    if any(not segment for segment in topic.split(".")):
        return "it has an empty segment (segments are separated by single dots)"
    if any(c.isspace() for c in topic):
        return "it contains whitespace"
    if not pattern:
        return "wildcards belong in subscription patterns; publish to a concrete topic"
    return "'*' and '#' must be whole segments (like 'orders.*' or 'orders.#')"


def _check_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid concrete topic; raise otherwise."""
    return _validate(topic, pattern=False)


def _check_publish_topic(topic: object) -> str:
    """Return ``topic`` if user code may publish on it: a valid concrete topic that is not
    one of the runtime's own ``$otp.`` topics (request inboxes excepted: replies go there)."""
    _check_topic(topic)
    assert isinstance(topic, str)
    if topic.startswith(_SYSTEM) and not topic.startswith(_INBOX):
        raise InvalidTopic(
            topic,
            "topics under '$otp.' belong to the runtime (the broker publishes dead letters "
            "itself); subscribe to them, and publish your own messages on a topic of yours",
        )
    return topic


def _check_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid subscription pattern; raise otherwise."""
    return _validate(pattern, pattern=True)


def _validate(value: object, *, pattern: bool) -> str:
    if not isinstance(value, str):
        example = "a topic pattern must be a str like 'orders.*'"
        if not pattern:
            example = "a topic must be a str like 'orders.created'"
        raise TypeError(f"{example}, not {value!r}")
    if (_PATTERN_RE if pattern else _TOPIC_RE).fullmatch(value) is None:
        if not value:
            raise InvalidTopic(value, "it is empty")
        raise InvalidTopic(value, _topic_problem(value, pattern=pattern))
    return value


def _is_wild(pattern: str) -> bool:
    return "*" in pattern or "#" in pattern


class _Pattern:
    """A compiled wildcard pattern."""

    __slots__ = ("guard_system", "has_hash", "segments")

    def __init__(self, pattern: str) -> None:
        self.segments = tuple(pattern.split("."))
        self.has_hash = "#" in self.segments
        self.guard_system = self.segments[0] in ("*", "#")

    def match(self, topic: list[str]) -> bool:
        p = self.segments
        if self.guard_system and topic[0].startswith("$"):
            return False
        if not self.has_hash:
            if len(p) != len(topic):
                return False
            return all(want == "*" or want == got for want, got in zip(p, topic))
        # '#' present: simulate the pattern as an NFA, one topic segment at a time
        # (linear in len(pattern) * len(topic), whatever the number of '#').
        n = len(p)
        states = self._closure([0])
        for segment in topic:
            following: list[int] = []
            for i in states:
                if i < n:
                    want = p[i]
                    if want == "#":
                        following.append(i)
                    elif want == "*" or want == segment:
                        following.append(i + 1)
            if not following:
                return False
            states = self._closure(following)
        return n in states

    def _closure(self, start: list[int]) -> set[int]:
        # Every state reachable by letting a '#' match zero segments.
        p = self.segments
        n = len(p)
        seen: set[int] = set()
        stack = list(start)
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            if i < n and p[i] == "#":
                stack.append(i + 1)
        return seen


def topic_matches(pattern: str, topic: str) -> bool:
    """``True`` if the concrete ``topic`` matches the subscription ``pattern``.

    ``*`` matches one segment, ``#`` zero or more; a pattern starting with a wildcard
    does not match a topic whose first segment starts with ``$``. Raises
    :class:`InvalidTopic` if either breaks the grammar.
    """
    _check_pattern(pattern)
    _check_topic(topic)
    return _Pattern(pattern).match(topic.split("."))


def _check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int (higher is delivered first), not {priority!r}")
    return priority


# ---------------------------------------------------------------------------- the protocol


@runtime_checkable
class Broker(Protocol):
    """What a broker offers; :class:`InMemoryBroker` is the default.

    The public methods are the user-facing contract and are kept small so a networked
    broker (Redis, NATS) can implement them unchanged: a topic is a string, a request is a
    publish with a ``reply_to`` inbox topic, a reply is a publish to that inbox. The
    underscored methods are the runtime's hooks: the :class:`otp.Node` and the actors call
    them; users never do.
    """

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
        reply_to: str | None = None,
        priority: int = 0,
    ) -> int:
        """Deliver ``message`` to every subscriber whose pattern matches ``topic`` and
        return how many accepted it. Raises :class:`InvalidTopic`."""
        ...

    def subscribe(
        self, topic: str, *, mailbox: Mailbox | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        """An async context manager yielding a :class:`Subscription` to ``topic``
        (wildcards allowed) for the body of the ``async with``."""
        ...

    @overload
    async def request(
        self,
        topic: str,
        message: Call[R],
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> R: ...
    @overload
    async def request(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self,
        topic: str,
        message: Call[object],
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> object: ...
    @overload
    async def request(
        self,
        topic: str,
        message: Any,
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Publish ``message`` with a fresh ``reply_to`` inbox and return the first reply
        (typed ``R`` for an ``otp.Call[R]`` message). Raises :class:`NoSubscriber`,
        :class:`RequestTimeout`."""
        ...

    async def reply(
        self,
        envelope: Envelope,
        value: Any,
        *,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Publish ``value`` to ``envelope.reply_to``; returns 1 if the requester got it.
        Raises ``ValueError`` if the envelope was not a request."""
        ...

    async def broadcast(
        self,
        message: Any,
        *,
        where: Callable[[ActorRef], bool] | None = None,
        sender: ActorRef | None = None,
    ) -> int:
        """Send ``message`` to ``handle_info`` of every live worker actor of the node(s)
        (those for which ``where(ref)`` is true); returns how many accepted it."""
        ...

    def use(self, stage: Middleware) -> Middleware:
        """Append a middleware stage to the chain every published message goes through."""
        ...

    def remove_middleware(self, stage: Middleware) -> None:
        """Take a stage out of the chain. Raises ``ValueError`` if it is not in it."""
        ...

    def statistics(self) -> BrokerStatistics:
        """A frozen snapshot of the counters."""
        ...

    async def _attach(self, node: Node) -> None:
        """The node enters: the broker may now reach its actors."""
        ...

    async def _detach(self, node: Node) -> None:
        """The node leaves, after its actors have exited."""
        ...

    async def _subscribe_actor(self, ref: ActorRef, topic: str) -> None:
        """Deliver messages on ``topic`` to ``ref``'s ``handle_info`` until it exits (the
        broker learns of the exit by monitoring ``ref``)."""
        ...

    async def _unsubscribe_actor(self, ref: ActorRef, topic: str) -> None:
        """End one subscription of ``ref`` (no-op if it has none on ``topic``)."""
        ...

    def _dead_letter(self, letter: DeadLetter) -> None:
        """Record a dead letter and publish it on :data:`DEAD_LETTERS`; synchronous."""
        ...


# ---------------------------------------------------------------------------- receivers

# A receiver's ``_offer`` answers with otp._mailbox's offer codes (ACCEPTED, DROPPED,
# WAIT), as an actor's does (ActorRef._offer).
_WAIT: Final = WAIT  # for otp/redis/_streams.py

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


# ---------------------------------------------------------------------------- the broker


class InMemoryBroker:
    """The default broker: topics live in this process and delivery is immediate.

    Guarantees: delivery is at-most-once; one publisher's messages reach one subscriber in
    the order they were published (within one priority, for subscriptions); each
    subscriber's overflow policy applies to it alone. A full ``BLOCK`` subscriber makes the
    publisher wait (nothing is lost); a full ``DROP_*``/``FAIL`` subscriber loses the
    message (a dead letter) and the publisher goes on to the others without an error. A
    dead subscriber's message is a dead letter. An actor gets each message once even if
    several of its patterns match; each subscription gets its own copy.

    Several nodes in one process may share one broker; :meth:`broadcast` then reaches the
    actors of all of them.

    Extension points for a networked broker (``otp.redis.RedisBroker`` uses exactly these,
    so it stands in wherever an ``InMemoryBroker`` does): :meth:`_dispatch` and
    :meth:`_dispatch_nowait` (where a publish goes after its middleware; locally, to the
    subscribers), :attr:`_needs_envelope` (always build the envelope), :meth:`_new_inbox`
    (the reply topic of a request), :meth:`_pattern_wanted` / :meth:`_pattern_unwanted`
    (a subscriber of a pattern came or went), and ``_attach``/``_detach``. Received
    traffic is handed to local subscribers with :meth:`_deliver`.
    """

    #: Build an :class:`Envelope` for every publish (a networked broker sends it).
    _needs_envelope: bool = False

    def __init__(self) -> None:
        self._nodes: list[Node] = []
        self._backend_cache: Backend | None = None
        self._prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)
        # pattern -> its subscribers (actor refs, Subscriptions, request waiters) in
        # subscription order; a dict used as an ordered set.
        self._subs: dict[str, dict[Any, None]] = {}
        # the wildcard patterns among them, compiled.
        self._wild: dict[str, _Pattern] = {}
        # actor -> the patterns it subscribed to, and the monitor that ends them when it
        # exits (the broker learns of exits as any watcher does: a Down, synchronously
        # from the exit routine).
        self._actor_subs: dict[ActorRef, set[str]] = {}
        self._actor_monitors: dict[ActorRef, MonitorRef] = {}
        # concrete topic -> its subscribers (a snapshot, rebuilt after changes).
        self._routes: dict[str, tuple[Any, ...]] = {}
        self._stages: tuple[Middleware, ...] = ()
        self._published = 0
        self._delivered = 0
        self._dropped = 0
        self._filtered = 0
        self._dead_letters = 0
        #: The last 100 dead letters, oldest first.
        self.recent_dead_letters: deque[DeadLetter] = deque(maxlen=100)

    def __repr__(self) -> str:
        return f"<InMemoryBroker patterns={len(self._subs)} middleware={len(self._stages)}>"

    # ------------------------------------------------------------------ node hooks

    async def _attach(self, node: Node) -> None:
        self._nodes.append(node)
        self._backend_cache = _current_backend()  # the node's: it attaches in its loop

    async def _detach(self, node: Node) -> None:
        if node in self._nodes:
            self._nodes.remove(node)
        if self._nodes:
            return
        self._backend_cache = None
        # The last node left: subscriptions end (what is buffered can still be read).
        for subs in list(self._subs.values()):
            for sub in list(subs):
                if isinstance(sub, Subscription):
                    sub._close(discard=False)
        self._routes.clear()

    def _backend(self) -> Backend:
        # A node fixes the backend; a broker used without a node asks each time.
        return self._backend_cache or _current_backend()

    # ------------------------------------------------------------------ subscriptions

    def _add(self, pattern: str, subscriber: Any) -> None:
        subs = self._subs.get(pattern)
        if subs is None:
            subs = self._subs[pattern] = {}
            if _is_wild(pattern):
                self._wild[pattern] = _Pattern(pattern)
        subs[subscriber] = None
        self._invalidate(pattern)

    def _remove(self, pattern: str, subscriber: Any) -> None:
        subs = self._subs.get(pattern)
        if subs is None or subs.pop(subscriber, False) is False:
            return
        self._invalidate(pattern)
        if not subs:
            del self._subs[pattern]
            self._wild.pop(pattern, None)

    def _invalidate(self, pattern: str) -> None:
        if pattern in self._wild:
            self._routes.clear()
        else:
            self._routes.pop(pattern, None)
            if pattern == DEAD_LETTERS:
                self._routes.pop(_DEAD_LETTERS_KEY, None)  # type: ignore[call-overload]

    def subscribe(
        self, topic: str, *, mailbox: Mailbox | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        """Subscribe to ``topic`` (wildcards allowed) for the body of an ``async with``;
        yields a :class:`Subscription`, an async iterator of :class:`Envelope`.

        ``mailbox`` shapes its buffer (default: unbounded). Leaving the block ends the
        subscription; envelopes still buffered become dead letters. Raises
        :class:`InvalidTopic` for a bad pattern. Akka: ``eventStream.subscribe``.
        """
        _check_pattern(topic)
        if mailbox is not None and not isinstance(mailbox, Mailbox):
            raise TypeError(f"mailbox must be an otp.Mailbox, not {mailbox!r}")
        return self._subscription(topic, mailbox)

    @asynccontextmanager
    async def _subscription(
        self, topic: str, mailbox: Mailbox | None
    ) -> AsyncIterator[Subscription]:
        sub = Subscription(topic, mailbox, on_drop=self._receiver_dropped)
        self._add(topic, sub)
        try:
            await self._pattern_wanted(topic)
            yield sub
        finally:
            self._remove(topic, sub)
            sub._close(discard=True)
            self._pattern_unwanted(topic)

    async def _pattern_wanted(self, pattern: str) -> None:
        """Extension point: one more subscriber (a subscription or an actor) of
        ``pattern``, already added locally. A networked broker subscribes upstream here;
        it may raise to refuse (the subscriber is then removed)."""

    def _pattern_unwanted(self, pattern: str) -> None:
        """Extension point: one subscriber of ``pattern`` less; synchronous."""

    async def _subscribe_actor(self, ref: ActorRef, topic: str) -> None:
        _check_pattern(topic)
        if not ref.alive:
            return
        mine = self._actor_subs.get(ref)
        if mine is None:
            mine = self._actor_subs[ref] = set()
            self._actor_monitors[ref] = ref._add_monitor(self._subscriber_down)
        elif topic in mine:
            return
        mine.add(topic)
        self._add(topic, ref)
        await self._pattern_wanted(topic)

    async def _unsubscribe_actor(self, ref: ActorRef, topic: str) -> None:
        mine = self._actor_subs.get(ref)
        if mine is None or topic not in mine:
            return
        mine.discard(topic)
        self._remove(topic, ref)
        if not mine:
            del self._actor_subs[ref]
            ref._remove_monitor(self._actor_monitors.pop(ref))
        self._pattern_unwanted(topic)

    def _subscriber_down(self, down: Down) -> None:
        # A subscribed actor exited: every subscription of it ends.
        ref: Any = down.ref
        self._actor_monitors.pop(ref, None)
        mine = self._actor_subs.pop(ref, None)
        if mine:
            for topic in mine:
                self._remove(topic, ref)
                self._pattern_unwanted(topic)

    # ------------------------------------------------------------------ routing

    def _route(self, topic: Any, key: Any = None) -> tuple[Any, ...]:
        _check_topic(topic)
        found: list[Any] = []
        actors: set[Any] = set()
        exact = self._subs.get(topic)
        if exact:
            self._collect(exact, found, actors)
        if self._wild:
            segments = topic.split(".")
            for pattern, compiled in self._wild.items():
                if compiled.match(segments):
                    self._collect(self._subs[pattern], found, actors)
        route = tuple(found)
        routes = self._routes
        if len(routes) >= _ROUTE_CACHE_SIZE:
            routes.clear()
        routes[topic if key is None else key] = route
        return route

    @staticmethod
    def _collect(subs: Iterable[Any], found: list[Any], actors: set[Any]) -> None:
        for sub in subs:
            if isinstance(sub, _Receiver):
                found.append(sub)
            elif sub not in actors:  # an actor gets each message once
                actors.add(sub)
                found.append(sub)

    def _lookup(self, topic: Any) -> tuple[Any, ...]:
        try:
            return self._routes[topic]
        except (KeyError, TypeError):
            return self._route(topic)

    # ------------------------------------------------------------------ middleware

    def use(self, stage: Middleware) -> Middleware:
        """Append ``stage`` to the middleware chain and return it (usable as a decorator).

        Every publish (requests, replies and broadcasts included; dead letters excluded)
        passes the stages in order before delivery. A stage gets the :class:`Envelope`
        and returns it, a changed one (``attrs.evolve``; a new ``topic`` re-routes it) or
        ``None`` to drop the message, which is counted in ``filtered`` and recorded as a
        dead letter with reason ``"dropped_by_middleware"``. A stage may be sync or async;
        an exception it raises reaches the publisher and nothing is delivered. Broadcasts
        carry the topic :data:`BROADCAST`.
        """
        if not callable(stage):
            raise TypeError(f"a middleware stage must be callable, not {stage!r}")
        self._stages = (*self._stages, stage)
        return stage

    def remove_middleware(self, stage: Middleware) -> None:
        """Take ``stage`` out of the chain. Raises ``ValueError`` if it is not in it."""
        stages = list(self._stages)
        try:
            stages.remove(stage)
        except ValueError:
            raise ValueError(
                f"middleware {stage!r} is not installed on {self!r}; add it with use()"
            ) from None
        self._stages = tuple(stages)

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The installed stages, in the order they run."""
        return self._stages

    async def _run_stages(self, envelope: Envelope) -> Envelope | None:
        for stage in self._stages:
            result = stage(envelope)
            if inspect.isawaitable(result):
                result = await result
            next_envelope = self._stage_result(stage, envelope, result)
            if next_envelope is None:
                return None
            envelope = next_envelope
        return envelope

    def _stage_result(self, stage: Any, envelope: Envelope, result: Any) -> Envelope | None:
        # What a stage returned: the (maybe changed) envelope, or None to drop it.
        if result is None:
            self._filtered += 1
            self._dead_letter(
                DeadLetter(envelope.message, stage, "dropped_by_middleware", topic=envelope.topic)
            )
            return None
        if not isinstance(result, Envelope):
            raise TypeError(
                f"middleware {stage!r} returned {result!r}; a stage must return the "
                "envelope (changed with attrs.evolve if need be) or None to drop it"
            )
        return result

    # ------------------------------------------------------------------ publishing

    def _envelope(
        self,
        topic: str,
        message: Any,
        sender: ActorRef | None,
        reply_to: str | None = None,
        headers: Mapping[str, str] | None = None,
        priority: int = 0,
    ) -> Envelope:
        return Envelope(
            id=f"{self._prefix}-{next(self._ids)}",
            topic=topic,
            message=message,
            timestamp=_utcnow(),
            sender=sender,
            reply_to=reply_to,
            headers=headers,
            priority=priority,
        )

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
        reply_to: str | None = None,
        priority: int = 0,
    ) -> int:
        """Deliver ``message`` to every subscriber of a pattern matching ``topic``; return
        how many accepted it (0: a dead letter, as Akka records one).

        Actors get the message itself in ``handle_info`` (wrapped in a :class:`Request`
        when ``reply_to`` is set); subscriptions get an :class:`Envelope`. ``headers``
        travel in the envelope; ``priority`` (higher first) orders subscription buffers.
        A full ``BLOCK`` subscriber makes this wait; every other overflow policy lets it go
        on at once. A cancelled publish may have reached some subscribers already. Raises
        :class:`InvalidTopic` (and ``TypeError``) for a bad topic, whatever a middleware
        stage raises.
        """
        backend = self._backend()
        if backend.budget_spent():  # an amortised checkpoint, as ActorRef.cast
            await backend.checkpoint()
        targets, envelope = self._begin(topic, message, sender, headers, reply_to, priority)
        if envelope is not None and self._stages:
            envelope = await self._run_stages(envelope)
            if envelope is None:
                return 0
            topic, message, targets = self._after_stages(topic, envelope, targets)
        return await self._dispatch(topic, message, sender, envelope, targets)

    def publish_nowait(
        self,
        topic: str,
        message: Any,
        *,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
        priority: int = 0,
    ) -> int:
        """:meth:`publish` without yielding: the fast path for a producer that publishes
        many messages and yields elsewhere (as ``cast_nowait`` is to ``cast``).

        It never waits, so a full ``BLOCK`` subscriber does not get the message (a dead
        letter with reason ``"mailbox_full"``). Raises ``TypeError`` if a middleware stage
        is asynchronous (use :meth:`publish` then).
        """
        targets, envelope = self._begin(topic, message, sender, headers, None, priority)
        if envelope is not None and self._stages:
            envelope = self._run_stages_nowait(envelope)
            if envelope is None:
                return 0
            topic, message, targets = self._after_stages(topic, envelope, targets)
        return self._dispatch_nowait(topic, message, sender, envelope, targets)

    def _dispatch_nowait(
        self,
        topic: str,
        message: Any,
        sender: ActorRef | None,
        envelope: Envelope | None,
        targets: tuple[Any, ...],
    ) -> int:
        """Extension point: where :meth:`publish_nowait` sends a message after its
        middleware (locally: to the subscribers with room; full ``BLOCK`` ones get a dead
        letter). Returns how many accepted it."""
        delivered, waiting = self._deliver_now(topic, message, sender, envelope, targets)
        for _, _, _, dead in waiting:
            self._dropped += 1
            self._dead_letter(attrs.evolve(dead, reason="mailbox_full"))
        self._delivered += delivered
        return delivered

    def _begin(
        self,
        topic: str,
        message: Any,
        sender: ActorRef | None,
        headers: Mapping[str, str] | None,
        reply_to: str | None,
        priority: int,
    ) -> tuple[tuple[Any, ...], Envelope | None]:
        # Route, count, and build the envelope only when something needs it.
        try:
            targets = self._routes[topic]
        except (KeyError, TypeError):
            # A topic reaches the route cache only through this check (dead letters use
            # their own key), so a cache hit is a topic user code may publish on.
            targets = self._route(_check_publish_topic(topic))
        self._published += 1
        envelope: Envelope | None = None
        if headers or reply_to is not None or priority or self._stages or self._needs_envelope:
            if priority:
                _check_priority(priority)
            if reply_to is not None:
                _check_topic(reply_to)
            envelope = self._envelope(topic, message, sender, reply_to, headers, priority)
        return targets, envelope

    def _after_stages(
        self, topic: str, envelope: Envelope, targets: tuple[Any, ...]
    ) -> tuple[str, Any, tuple[Any, ...]]:
        # A stage may have changed the message or re-routed it to another topic.
        if envelope.topic != topic:
            new = envelope.topic
            try:
                targets = self._routes[new]
            except (KeyError, TypeError):
                targets = self._route(_check_publish_topic(new))
            return new, envelope.message, targets
        return topic, envelope.message, targets

    def _run_stages_nowait(self, envelope: Envelope) -> Envelope | None:
        for stage in self._stages:
            result = stage(envelope)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError(
                    f"middleware {stage!r} is asynchronous; publish_nowait cannot await it: "
                    "use await broker.publish(...)"
                )
            next_envelope = self._stage_result(stage, envelope, result)
            if next_envelope is None:
                return None
            envelope = next_envelope
        return envelope

    async def _deliver(
        self,
        topic: str,
        message: Any,
        sender: ActorRef | None,
        envelope: Envelope | None,
        targets: tuple[Any, ...],
    ) -> int:
        """Hand ``message`` to the local ``targets`` of ``topic`` (a route from
        :meth:`_lookup`); return how many accepted it.

        ``envelope`` is what subscriptions receive (built lazily from ``topic``, ``message``
        and ``sender`` when ``None``); a networked broker passes the envelope it decoded so
        its id, timestamp and sender survive. Middleware is not run here. Every subscriber
        with room gets the message first; full ``BLOCK`` subscribers are waited on after.
        """
        delivered, waiting = self._deliver_now(topic, message, sender, envelope, targets)
        for target, item, priority, dead in waiting:
            if isinstance(target, _Receiver):
                if await target._offer_blocking(item):  # a refusal is reported by _close
                    delivered += 1
            elif await target._offer_blocking(item, priority):
                delivered += 1
            else:
                self._dead_letter(dead)
        self._delivered += delivered
        return delivered

    #: Extension point: where :meth:`publish` sends a message after its middleware
    #: (same signature as :meth:`_deliver`; locally it *is* :meth:`_deliver`, without an
    #: extra call on the hot path). A networked broker sends it to the network instead.
    _dispatch = _deliver

    def _new_inbox(self) -> str:
        """Extension point: a fresh reply topic for :meth:`request`."""
        return f"{_INBOX}{self._prefix}-{next(self._ids)}"

    def _deliver_now(
        self,
        topic: str,
        message: Any,
        sender: ActorRef | None,
        envelope: Envelope | None,
        targets: tuple[Any, ...],
    ) -> tuple[int, list[tuple[Any, Any, int, DeadLetter]]]:
        # Deliver to everyone with room; return the count and the full BLOCK subscribers
        # as (target, item, priority, dead letter if it never gets in).
        if not targets:
            self._dead_letter(DeadLetter(message, None, "no_subscriber", topic=topic))
            return 0, []
        payload = message
        if envelope is not None and envelope.reply_to is not None:
            payload = Request(envelope, broker=self)
        priority = envelope.priority if envelope is not None else 0
        delivered = 0
        waiting: list[tuple[Any, Any, int, DeadLetter]] = []
        item: Wrapped | None = None
        for target in targets:
            # Which kind of subscriber: the exact-class test first, as an isinstance that
            # does not match costs more; the isinstance then only runs for receivers.
            if target.__class__ is ActorRef or not isinstance(target, _Receiver):
                if item is None:  # one item for every actor: items are never modified
                    item = Wrapped(INFO, payload)
                # ActorRef._offer with its common case inlined, as its interface allows:
                # the call costs ~380 instructions, 7 % of a fan-out delivery (callgrind).
                if target._alive:
                    try:
                        if target._mailbox.put(item, priority):
                            delivered += 1
                            continue
                        status = DROPPED
                    except Full:
                        status = target._offer_full()
                else:
                    status = GONE
                if status == WAIT:
                    dead = DeadLetter(message, target, "noproc", topic=topic)
                    waiting.append((target, item, priority, dead))
                elif status == GONE:
                    self._dead_letter(DeadLetter(message, target, "noproc", topic=topic))
                else:
                    self._dropped += 1  # DROPPED: the actor recorded the letter
                    if status != DROPPED:  # REFUSED (FAIL): the publisher goes on
                        self._dead_letter(DeadLetter(message, target, "mailbox_full", topic=topic))
            else:  # a receiver of envelopes (a Subscription, a request's inbox)
                if envelope is None:
                    envelope = self._envelope(topic, message, sender)
                status = target._offer(envelope)
                if status == ACCEPTED:
                    delivered += 1
                elif status == WAIT:
                    dead = DeadLetter(message, target, "closed", topic=topic)
                    waiting.append((target, envelope, priority, dead))
        return delivered, waiting

    # ------------------------------------------------------------------ request / reply

    @overload
    async def request(
        self,
        topic: str,
        message: Call[R],
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> R: ...
    @overload
    async def request(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self,
        topic: str,
        message: Call[object],
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> object: ...
    @overload
    async def request(
        self,
        topic: str,
        message: Any,
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any: ...

    async def request(
        self,
        topic: str,
        message: Any,
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Publish ``message`` on ``topic`` with a fresh ``reply_to`` inbox and return the
        first reply (NATS request/reply, Akka's ``ask``).

        Actor subscribers receive it as a :class:`Request` and answer with
        ``await request.reply(value)``; subscriptions answer with :meth:`reply`. Raises
        :class:`NoSubscriber` at once if no subscriber accepted the request, and
        :class:`RequestTimeout` if no reply came within ``timeout`` seconds (``None``
        waits forever; publishing to a full ``BLOCK`` subscriber counts against it).
        """
        _check_topic(topic)
        inbox = self._new_inbox()
        waiter = _Waiter(self._backend().promise(), self._receiver_dropped)
        self._add(inbox, waiter)
        try:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                if not await self.publish(
                    topic, message, sender=sender, headers=headers, reply_to=inbox
                ):
                    raise NoSubscriber(topic)
                return await waiter.promise.wait(None)
            raise RequestTimeout(topic, timeout or 0.0)
        finally:
            self._remove(inbox, waiter)

    async def reply(
        self,
        envelope: Envelope,
        value: Any,
        *,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Answer the request ``envelope`` with ``value`` by publishing it on its
        ``reply_to`` topic; returns 1 if the requester got it, 0 if it had given up (the
        reply is then a dead letter). Raises ``ValueError`` if the envelope carries no
        ``reply_to``."""
        if not isinstance(envelope, Envelope):
            raise TypeError(f"reply() needs the request's otp.Envelope, not {envelope!r}")
        if envelope.reply_to is None:
            raise ValueError(
                f"envelope {envelope.id} on topic {envelope.topic!r} has no reply_to: it was "
                "published, not requested; only answer envelopes that broker.request sent"
            )
        return await self.publish(envelope.reply_to, value, sender=sender, headers=headers)

    # ------------------------------------------------------------------ broadcast

    async def broadcast(
        self,
        message: Any,
        *,
        where: Callable[[ActorRef], bool] | None = None,
        sender: ActorRef | None = None,
    ) -> int:
        """Send ``message`` to ``handle_info`` of every live worker actor on the node(s)
        this broker serves, or of those for which ``where(ref)`` is true; return how many
        accepted it. Supervisors are not sent to.

        Delivery is as for :meth:`publish` (each mailbox's overflow policy applies; a full
        ``BLOCK`` mailbox makes this wait); middleware sees the topic :data:`BROADCAST`;
        reaching nobody records a dead letter. Erlang's counterpart is sending to every
        process in ``erlang:processes()``. Raises ``RuntimeError`` outside a node, and
        whatever ``where`` raises (before anything is sent).
        """
        if not self._nodes:
            raise RuntimeError(
                f"{self!r} serves no node; broadcast reaches the actors of a node, so call it "
                "inside `async with otp.Node() as node:` (node.broker.broadcast(...))"
            )
        await self._backend().checkpoint()
        self._published += 1
        if self._stages:
            envelope = await self._run_stages(self._envelope(BROADCAST, message, sender))
            if envelope is None:
                return 0
            message = envelope.message
        targets = [ref for ref in self._live_workers() if where is None or where(ref)]
        if not targets:
            self._dead_letter(DeadLetter(message, None, "no_subscriber", topic=BROADCAST))
            return 0
        return await self._broadcast_to(message, targets)

    async def _broadcast_to(self, message: Any, targets: Iterable[ActorRef]) -> int:
        # Middleware has run: hand ``message`` to each target's handle_info, as a publish
        # on BROADCAST whose route is ``targets`` (those with room first, then the full
        # BLOCK ones are waited on).
        return await self._deliver(BROADCAST, message, None, None, tuple(targets))

    def _live_workers(self) -> list[ActorRef]:
        # The nodes index their live actors; a broker knows nothing of supervisors.
        return [ref for node in self._nodes for ref in node._live_workers()]

    # ------------------------------------------------------------------ dead letters

    def _receiver_dropped(self, receiver: Any, envelope: Envelope, reason: str) -> None:
        if reason in _OVERFLOW_REASONS:
            self._dropped += 1
        self._dead_letter(DeadLetter(envelope.message, receiver, reason, topic=envelope.topic))

    def _dead_letter(self, letter: DeadLetter) -> None:
        if isinstance(letter.message, DeadLetter):
            # A dead letter that could not be delivered is discarded (as in Akka):
            # publishing it again could loop.
            return
        self._dead_letters += 1
        self.recent_dead_letters.append(letter)
        try:
            targets = self._routes[_DEAD_LETTERS_KEY]  # type: ignore[index]
        except KeyError:
            targets = self._route(DEAD_LETTERS, key=_DEAD_LETTERS_KEY)
        if not targets:
            return
        envelope: Envelope | None = None
        item = Wrapped(INFO, letter)
        for target in targets:
            if isinstance(target, _Receiver):
                if envelope is None:
                    envelope = self._envelope(DEAD_LETTERS, letter, None)
                target._offer_system(envelope)
            else:  # an ActorRef: never waited for (a full BLOCK mailbox takes it)
                status = target._offer_system(item)
                if status != ACCEPTED and status != GONE:
                    self._dropped += 1  # DROPPED or REFUSED

    # ------------------------------------------------------------------ statistics

    def statistics(self) -> BrokerStatistics:
        """A frozen snapshot of the broker's counters (see :class:`BrokerStatistics`)."""
        return BrokerStatistics(
            published=self._published,
            delivered=self._delivered,
            dropped=self._dropped,
            filtered=self._filtered,
            dead_letters=self._dead_letters,
            subscribers=MappingProxyType({p: len(s) for p, s in self._subs.items()}),
        )
