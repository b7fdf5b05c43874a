"""What the broker carries: message classes' wire names (:func:`message`), the
:class:`Envelope` of a published message and its headers, :class:`DeadLetter`,
:class:`Request` (a requested message as an actor receives it), the middleware stage type
and :class:`BrokerStatistics`.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import attrs

if TYPE_CHECKING:
    from ._actor import ActorRef
    from ._broker import Broker

__all__ = [
    "BrokerStatistics",
    "DeadLetter",
    "Envelope",
    "Middleware",
    "Request",
    "message",
    "message_type",
]

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


def _check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int (higher is delivered first), not {priority!r}")
    return priority
