"""Durable topics on Redis Streams: appending publishes and consuming with consumer groups
(at least once, work sharing)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import attrs
from coredis.exceptions import (  # type: ignore[import-not-found, unused-ignore]
    StreamDuplicateConsumerGroupError,
)

from .._envelopes import Envelope
from .._exceptions import CodecError
from .._mailbox import WAIT as _WAIT
from .._mailbox import Mailbox
from .._subscriptions import Subscription
from .._topics import _check_pattern, _Pattern
from ._describe import describe

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._broker import RedisBroker

__all__ = ["StreamSubscription", "Streams"]

logger = logging.getLogger("otp.redis")


class StreamSubscription(Subscription):
    """A consumer-group subscription to a durable topic (see :meth:`RedisBroker.consume`).

    It yields :class:`otp.Envelope` like any subscription; ``envelope.id`` is the Redis
    stream entry id. Acknowledge each envelope once it is handled with
    :meth:`ack`: until then Redis keeps it pending, and if this consumer goes away it is
    delivered again to another consumer of the group after ``claim_after`` seconds.
    """

    __slots__ = (
        "_ack",
        "_acked_while_claiming",
        "_claiming",
        "_outstanding",
        "_room",
        "consumer",
        "group",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        group: str,
        consumer: str,
        mailbox: Mailbox | None,
        ack: Callable[[str], Any],
    ) -> None:
        super().__init__(topic, mailbox, on_drop=self._dropped)
        #: The durable topic.
        self.topic = topic
        #: The consumer group's name.
        self.group = group
        #: This consumer's name in the group.
        self.consumer = consumer
        self._ack = ack
        # Entries handed to this subscription and not acknowledged yet: never claimed
        # back (that would deliver them twice without any failure).
        self._outstanding: set[str] = set()
        # Entries acknowledged while an XAUTOCLAIM was in flight: Redis may have run the
        # claim before the XACK, so the claim's reply can hold them though they are done.
        self._claiming = False
        self._acked_while_claiming: set[str] = set()
        self._room = anyio.Event()

    def _dropped(self, receiver: Any, envelope: Envelope, reason: str) -> None:
        # An unacknowledged stream entry stays pending in Redis and is delivered again
        # (to another consumer after claim_after, or to this one when it restarts under
        # the same name): closing the subscription loses nothing, so it is no dead letter.
        self._outstanding.discard(envelope.id)
        if reason != "subscription_closed":
            logger.warning(
                "stream entry %s on %r dropped by the subscription's overflow policy (%s); "
                "it stays pending in Redis and will be delivered again",
                envelope.id,
                envelope.topic,
                reason,
            )

    def __repr__(self) -> str:
        return (
            f"<StreamSubscription {self.topic!r} group={self.group!r} "
            f"consumer={self.consumer!r} depth={len(self)}>"
        )

    async def ack(self, envelope: Envelope) -> None:
        """Acknowledge ``envelope``: Redis forgets it for this group (``XACK``)."""
        await self._ack(envelope.id)
        self._outstanding.discard(envelope.id)
        if self._claiming:
            self._acked_while_claiming.add(envelope.id)
        self._room.set()

    async def receive(self) -> Envelope:
        envelope = await super().receive()
        self._room.set()  # the reader may fetch more
        return envelope


class Streams:
    """The durable topics of one broker."""

    def __init__(self, broker: RedisBroker, patterns: Iterable[str], maxlen: int | None) -> None:
        self.broker = broker
        self.patterns = tuple(patterns)
        self.compiled = tuple(_Pattern(_check_pattern(p)) for p in self.patterns)
        self.maxlen = maxlen

    def is_durable(self, topic: str) -> bool:
        return bool(self.compiled) and any(p.match(topic.split(".")) for p in self.compiled)

    def stream_args(self, topic: str) -> tuple[bytes, int | None]:
        """Where a durable topic's publishes are appended: the stream key and its cap."""
        return self.broker.names.stream(topic), self.maxlen

    @asynccontextmanager
    async def consumer(
        self,
        topic: str,
        group: str,
        consumer: str | None,
        mailbox: Mailbox | None,
        start: str,
        claim_after: float,
        batch: int,
    ) -> AsyncIterator[StreamSubscription]:
        broker = self.broker
        broker._require_node()
        client = broker.session.client
        assert client is not None
        key = broker.names.stream(topic)
        name = consumer or f"{broker.node_name}-{next(broker._counter)}"
        try:
            await client.xgroup_create(key, group, start, mkstream=True)
        except StreamDuplicateConsumerGroupError:
            pass

        async def ack(entry_id: str) -> None:
            live = broker.session.client
            if live is None:
                raise RuntimeError("the broker has stopped; the entry stays pending")
            await live.xack(key, group, [entry_id])

        sub = StreamSubscription(topic, group, name, mailbox, ack)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._consume_loop, sub, key, claim_after, batch)
            try:
                yield sub
            finally:
                task_group.cancel_scope.cancel()
                sub._close(discard=True)

    async def _consume_loop(
        self, sub: StreamSubscription, key: bytes, claim_after: float, batch: int
    ) -> None:
        session = self.broker.session
        low, high = session.backoff
        delay = low
        backlog = True  # first, this consumer's own pending entries (after a restart)
        cursor = "0"
        next_claim = 0.0
        claim_ms = max(1, int(claim_after * 1000))
        capacity = sub.statistics().capacity
        limit = batch if capacity is None else max(1, min(batch, capacity))
        while True:
            client = session.client
            if client is None:
                return
            # Bounded read-ahead: fetch only what the buffer can take now.
            room = limit - len(sub)
            if room <= 0:
                sub._room = anyio.Event()
                with anyio.move_on_after(max(0.05, min(claim_after / 4, 1.0))):
                    await sub._room.wait()
                continue
            try:
                entries: list[Any] = []
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + max(claim_after / 2, 0.05)
                    sub._claiming = True
                    try:
                        claimed = await client.xautoclaim(
                            key, sub.group, sub.consumer, claim_ms, "0-0", count=room
                        )
                    finally:
                        sub._claiming = False
                    done = sub._acked_while_claiming
                    for entry in claimed[1] if claimed else ():
                        if entry is None:
                            continue
                        entry_id = _entry_id(entry)
                        if entry_id not in sub._outstanding and entry_id not in done:
                            entries.append(entry)
                    done.clear()
                if not entries:
                    got = await client.xreadgroup(
                        sub.group,
                        sub.consumer,
                        streams={key: cursor if backlog else ">"},
                        count=room,
                        block=None if backlog else max(1, int(min(claim_after / 2, 1.0) * 1000)),
                    )
                    found = list(got.get(key, ())) if got else []
                    if backlog:
                        if found:
                            cursor = _entry_id(found[-1])
                        else:
                            backlog = False
                    entries.extend(
                        e for e in found if e is not None and _entry_id(e) not in sub._outstanding
                    )
                delay = low
            except Exception as exc:
                logger.warning("reading stream %r failed (%s); retrying", key, describe(exc))
                await anyio.sleep(delay * (0.5 + random.random()))
                delay = min(high, delay * 2)
                continue
            for entry in entries:
                if not entry.field_values:
                    continue  # deleted (trimmed) while pending
                await self._offer_entry(sub, key, entry)

    async def _offer_entry(self, sub: StreamSubscription, key: bytes, entry: Any) -> None:
        broker = self.broker
        entry_id = _entry_id(entry)
        data = entry.field_values.get(b"d", b"")
        try:
            envelope = attrs.evolve(
                broker._envelope_of(broker._decode_pub(sub.topic, data)), id=entry_id
            )
        except Exception as exc:
            error = exc if isinstance(exc, CodecError) else CodecError("malformed", describe(exc))
            broker._wire_error(error, data, sub.topic)
            client = broker.session.client
            if client is not None:
                await client.xack(key, sub.group, [entry_id])  # never redelivered
            return
        sub._outstanding.add(entry_id)
        if sub._offer(envelope) == _WAIT:  # a full BLOCK buffer: wait for room
            await sub._offer_blocking(envelope)


def _entry_id(entry: Any) -> str:
    identifier = entry.identifier
    return identifier.decode() if isinstance(identifier, bytes) else str(identifier)
