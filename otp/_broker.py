"""The pub/sub broker: topics with wildcards, envelopes, dead letters.

Topic grammar: a topic is dot-separated segments (``orders.created``). In a subscription
pattern ``*`` matches exactly one segment and ``#`` matches zero or more segments
(``orders.*`` matches ``orders.created`` but not ``orders.eu.created``; ``orders.#``
matches ``orders``, ``orders.created`` and ``orders.eu.created``).
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, runtime_checkable

import attrs

from ._mailbox import INFO, Full, Mailbox, MailboxQueue, Overflow

if TYPE_CHECKING:
    from ._actor import ActorRef
    from ._node import Node

__all__ = [
    "DEAD_LETTERS",
    "Broker",
    "BrokerStatistics",
    "DeadLetter",
    "Envelope",
    "InMemoryBroker",
    "Subscription",
    "message",
    "message_type",
    "topic_matches",
]

logger = logging.getLogger("otp")

#: The topic on which every dead letter is published as a :class:`DeadLetter`.
DEAD_LETTERS: Final = "$otp.dead_letters"

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
        if holder is not None and holder.__qualname__ != cls.__qualname__:
            raise ValueError(
                f"message name {name!r} is already used by "
                f"{holder.__module__}.{holder.__qualname__}; pick a unique name"
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


@attrs.frozen
class Envelope:
    """A published message with its metadata, as a :meth:`Broker.subscribe` iterator yields it."""

    id: str
    topic: str
    message: Any
    timestamp: datetime.datetime
    sender: ActorRef | None = None
    reply_to: str | None = None
    headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class DeadLetter:
    """A message nobody received: no subscriber, a dead recipient, or an overflow drop."""

    message: Any
    recipient: Any
    reason: str
    topic: str | None = None
    timestamp: datetime.datetime = attrs.field(factory=_utcnow)


@attrs.frozen
class BrokerStatistics:
    """A snapshot of a broker's counters."""

    published: int
    delivered: int
    dropped: int
    dead_letters: int
    subscribers: dict[str, int]


def _check_topic(topic: str, *, pattern: bool) -> None:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"a topic must be a non-empty str, not {topic!r}")
    segments = topic.split(".")
    if any(not s for s in segments):
        raise ValueError(
            f"topic {topic!r} has an empty segment; segments are separated by single dots"
        )
    if not pattern and any(s in ("*", "#") for s in segments):
        raise ValueError(f"publish to a concrete topic, not the pattern {topic!r}")
    if pattern:
        for s in segments:
            if s not in ("*", "#") and ("*" in s or "#" in s):
                raise ValueError(
                    f"pattern {topic!r}: '*' and '#' must be whole segments (like 'orders.*')"
                )


def topic_matches(pattern: str, topic: str) -> bool:
    """``True`` if ``topic`` matches ``pattern`` (``*``: one segment, ``#``: zero or more)."""
    return _match(pattern.split("."), 0, topic.split("."), 0)


def _match(p: list[str], i: int, t: list[str], j: int) -> bool:
    while i < len(p):
        seg = p[i]
        if seg == "#":
            if i == len(p) - 1:
                return True
            return any(_match(p, i + 1, t, k) for k in range(j, len(t) + 1))
        if j >= len(t):
            return False
        if seg != "*" and seg != t[j]:
            return False
        i += 1
        j += 1
    return j == len(t)


def _is_pattern(topic: str) -> bool:
    return "*" in topic or "#" in topic


@runtime_checkable
class Broker(Protocol):
    """What a broker offers; :class:`InMemoryBroker` is the default, ``otp.redis`` another."""

    async def publish(
        self, topic: str, message: Any, *, sender: ActorRef | None = None
    ) -> None: ...

    def subscribe(self, topic: str, *, mailbox: Mailbox | None = None) -> Any: ...

    def statistics(self) -> BrokerStatistics: ...

    async def _attach(self, node: Node) -> None: ...

    async def _detach(self, node: Node) -> None: ...

    async def _subscribe_actor(self, ref: ActorRef, topic: str) -> None: ...

    async def _unsubscribe_actor(self, ref: ActorRef, topic: str) -> None: ...

    def _actor_exited(self, ref: ActorRef) -> None: ...

    def _dead_letter(self, letter: DeadLetter) -> None: ...


class Subscription:
    """An async iterator of :class:`Envelope` for one pattern (``broker.subscribe``).

    It has its own buffer shaped by a :class:`otp.Mailbox` (unbounded by default).
    """

    def __init__(
        self, broker: InMemoryBroker, pattern: str, mailbox: Mailbox, backend: Any
    ) -> None:
        self.pattern = pattern
        self._broker = broker
        self._parker = backend.parker()
        self._queue = MailboxQueue(mailbox, self._parker, self._on_drop)
        self._backend = backend
        self._closed = False

    def __repr__(self) -> str:
        return f"<Subscription {self.pattern!r} depth={len(self._queue)}>"

    def _on_drop(self, item: tuple[int, Any, Any], why: str) -> None:
        envelope = item[1]
        self._broker._count_drop()
        self._broker._dead_letter(DeadLetter(envelope.message, self, why, topic=envelope.topic))

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Envelope:
        if self._closed and not self._queue:
            raise StopAsyncIteration
        return await self.receive()

    async def receive(self) -> Envelope:
        """Wait for the next envelope."""
        queue = self._queue
        while not queue:
            if self._closed:
                raise StopAsyncIteration
            await self._parker.park(None)
        return queue.get()[1]  # type: ignore[no-any-return]

    def receive_nowait(self) -> Envelope | None:
        """The next envelope if one is waiting, else ``None``."""
        if self._queue:
            return self._queue.get()[1]  # type: ignore[no-any-return]
        return None

    def statistics(self) -> Any:
        return self._queue.statistics()


class _ActorSubscriber:
    __slots__ = ("pattern", "ref")

    def __init__(self, ref: ActorRef, pattern: str) -> None:
        self.ref = ref
        self.pattern = pattern


class InMemoryBroker:
    """The default broker: topics live in this process, delivery is immediate.

    Delivery is at-most-once and ordered per publisher and subscriber. A subscriber's
    overflow policy applies: a full ``BLOCK`` subscriber makes the publisher wait, a full
    ``DROP_*``/``FAIL`` subscriber loses the message (a dead letter) without affecting
    the others.
    """

    def __init__(self) -> None:
        self._node: Node | None = None
        self._prefix = os.urandom(4).hex() + "-"
        self._ids = itertools.count(1)
        # pattern -> list of subscribers (actors or subscriptions), in subscription order.
        self._subs: dict[str, list[Any]] = {}
        self._actor_subs: dict[ActorRef, dict[str, _ActorSubscriber]] = {}
        self._match_cache: dict[str, list[Any]] = {}
        self._published = 0
        self._delivered = 0
        self._dropped = 0
        self._dead_letters = 0
        self.recent_dead_letters: deque[DeadLetter] = deque(maxlen=100)

    def __repr__(self) -> str:
        return f"<InMemoryBroker patterns={len(self._subs)}>"

    async def _attach(self, node: Node) -> None:
        self._node = node

    async def _detach(self, node: Node) -> None:
        for subs in self._subs.values():
            for sub in subs:
                if isinstance(sub, Subscription):
                    sub._closed = True
                    sub._parker.wake()

    def _backend(self) -> Any:
        from . import _compat

        return _compat.backend()

    # ------------------------------------------------------------------ subscriptions

    def _add(self, pattern: str, subscriber: Any) -> None:
        self._subs.setdefault(pattern, []).append(subscriber)
        self._match_cache.clear()

    def _remove(self, pattern: str, subscriber: Any) -> None:
        subs = self._subs.get(pattern)
        if subs is None:
            return
        try:
            subs.remove(subscriber)
        except ValueError:
            return
        if not subs:
            del self._subs[pattern]
        self._match_cache.clear()

    @asynccontextmanager
    async def subscribe(
        self, topic: str, *, mailbox: Mailbox | None = None
    ) -> AsyncIterator[Subscription]:
        """Subscribe to ``topic`` (wildcards allowed) for the body of an ``async with``;
        yields an async iterator of :class:`Envelope`."""
        _check_topic(topic, pattern=True)
        sub = Subscription(self, topic, mailbox or Mailbox(), self._backend())
        self._add(topic, sub)
        try:
            yield sub
        finally:
            sub._closed = True
            self._remove(topic, sub)

    async def _subscribe_actor(self, ref: ActorRef, topic: str) -> None:
        _check_topic(topic, pattern=True)
        if not ref.alive:
            return
        mine = self._actor_subs.setdefault(ref, {})
        if topic in mine:
            return
        sub = mine[topic] = _ActorSubscriber(ref, topic)
        self._add(topic, sub)

    async def _unsubscribe_actor(self, ref: ActorRef, topic: str) -> None:
        mine = self._actor_subs.get(ref)
        if mine is None:
            return
        sub = mine.pop(topic, None)
        if sub is not None:
            self._remove(topic, sub)
        if not mine:
            del self._actor_subs[ref]

    def _actor_exited(self, ref: ActorRef) -> None:
        mine = self._actor_subs.pop(ref, None)
        if mine:
            for topic, sub in mine.items():
                self._remove(topic, sub)

    # ------------------------------------------------------------------ publishing

    def _matching(self, topic: str) -> list[Any]:
        cached = self._match_cache.get(topic)
        if cached is None:
            cached = []
            for pattern, subs in self._subs.items():
                if pattern == topic or (_is_pattern(pattern) and topic_matches(pattern, topic)):
                    cached.extend(subs)
            if len(self._match_cache) > 10_000:
                self._match_cache.clear()
            self._match_cache[topic] = cached
        return cached

    async def publish(self, topic: str, message: Any, *, sender: ActorRef | None = None) -> None:
        """Deliver ``message`` to every subscriber of a pattern matching ``topic``.

        Actors get the message itself in ``handle_info``; subscriptions get an
        :class:`Envelope`. A message nobody receives becomes a dead letter.
        """
        _check_topic(topic, pattern=False)
        self._published += 1
        targets = self._matching(topic)
        if not targets:
            self._dead_letter(DeadLetter(message, None, "no_subscriber", topic=topic))
            return
        envelope: Envelope | None = None
        for target in list(targets):
            if isinstance(target, _ActorSubscriber):
                await self._deliver_actor(target.ref, topic, message)
            else:
                if envelope is None:
                    envelope = Envelope(
                        id=f"{self._prefix}{next(self._ids)}",
                        topic=topic,
                        message=message,
                        timestamp=_utcnow(),
                        sender=sender,
                    )
                await self._deliver_queue(target, envelope)

    async def _deliver_actor(self, ref: ActorRef, topic: str, message: Any) -> None:
        if not ref.alive:
            self._dead_letter(DeadLetter(message, ref, "noproc", topic=topic))
            return
        mailbox = ref._mailbox
        item = (INFO, message, None)
        try:
            accepted = mailbox.put(item)
        except Full:
            if mailbox._overflow is Overflow.BLOCK:
                if await mailbox.put_blocking(item, ref._backend):
                    self._delivered += 1
                else:
                    self._dead_letter(DeadLetter(message, ref, "noproc", topic=topic))
                return
            # FAIL: the subscriber refused it; the publisher is not affected.
            self._dropped += 1
            self._dead_letter(DeadLetter(message, ref, "mailbox_full", topic=topic))
            return
        if accepted:
            self._delivered += 1
        else:
            self._dropped += 1

    async def _deliver_queue(self, sub: Subscription, envelope: Envelope) -> None:
        if sub._closed:
            return
        queue = sub._queue
        item = (INFO, envelope, None)
        try:
            accepted = queue.put(item)
        except Full:
            if queue._overflow is Overflow.BLOCK:
                if await queue.put_blocking(item, sub._backend):
                    self._delivered += 1
                return
            self._dropped += 1
            self._dead_letter(
                DeadLetter(envelope.message, sub, "mailbox_full", topic=envelope.topic)
            )
            return
        if accepted:
            self._delivered += 1

    def _count_drop(self) -> None:
        self._dropped += 1

    # ------------------------------------------------------------------ dead letters

    def _dead_letter(self, letter: DeadLetter) -> None:
        self._dead_letters += 1
        self.recent_dead_letters.append(letter)
        subs = self._subs.get(DEAD_LETTERS)
        if subs:
            envelope = Envelope(
                id=f"{self._prefix}{next(self._ids)}",
                topic=DEAD_LETTERS,
                message=letter,
                timestamp=letter.timestamp,
            )
            for sub in list(subs):
                if isinstance(sub, _ActorSubscriber):
                    if sub.ref.alive:
                        sub.ref._mailbox.put_control((INFO, letter, None))
                elif not sub._closed:
                    sub._queue.put_control((INFO, envelope, None))

    def statistics(self) -> BrokerStatistics:
        """A frozen snapshot of the broker's counters."""
        return BrokerStatistics(
            published=self._published,
            delivered=self._delivered,
            dropped=self._dropped,
            dead_letters=self._dead_letters,
            subscribers={p: len(s) for p, s in self._subs.items()},
        )
