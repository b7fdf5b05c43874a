"""Listening on Redis: the :class:`Listener` mixin of :class:`Session` (its pub/sub side).

One pub/sub connection carries the node's control channel, the cluster channel, its
request inboxes and its topics; it reconnects with backoff and resubscribes everything.
Local subscribers retain and release the Redis channels and patterns they need.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import coredis  # type: ignore[import-not-found, unused-ignore]
from anyio.abc import TaskStatus

from ._describe import describe

if TYPE_CHECKING:
    from ._broker import RedisBroker
    from ._naming import Names

__all__ = ["Listener"]

logger = logging.getLogger("otp.redis")


class Listener:
    """The pub/sub side of a :class:`Session` (a mixin of it: the attributes below are
    set in ``Session.__init__``)."""

    broker: RedisBroker
    names: Names
    client: coredis.Redis[bytes] | None
    pubsub: Any
    connected: bool
    reconnects: int
    connect_timeout: float
    heartbeat: float
    backoff: tuple[float, float]
    scope: anyio.CancelScope | None
    task_group: Any
    want: dict[tuple[bool, bytes], int]
    ready: dict[tuple[bool, bytes], anyio.Event]
    last_push: tuple[bytes, bytes] | None

    if TYPE_CHECKING:

        def set_connected(self, up: bool) -> None: ...
        def kick(self) -> None: ...

    # ------------------------------------------------------------------ the listener

    async def listen(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        client = self.client
        assert client is not None
        broker = self.broker
        low, high = self.backoff
        delay = low
        first = True
        lost_at = 0.0
        while True:
            error: BaseException | None = None
            try:
                with anyio.CancelScope() as scope:
                    self.scope = scope
                    async with _pubsub(
                        client,
                        self.on_publish,
                        retry_policy=None,
                        ignore_subscribe_messages=True,
                        subscription_timeout=self.connect_timeout,
                        max_idle_seconds=max(1.0, self.heartbeat),
                    ) as pubsub:
                        await pubsub.subscribe(
                            self.names.control(broker.node_name),
                            self.names.cluster,
                            self.names.inbox(broker.node_name),
                        )
                        self.pubsub = pubsub
                        await self.resubscribe(pubsub)
                        self.set_connected(True)
                        delay = low
                        if first:
                            first = False
                            task_status.started()
                        else:
                            self.reconnects += 1
                            down_for = time.monotonic() - lost_at
                            logger.warning(
                                "node %r reconnected to Redis after %.2fs",
                                broker.node_name,
                                down_for,
                                extra={"otp_event": "broker_reconnected"},
                            )
                            broker._emit("broker_reconnected", detail=down_for)
                            broker._reconnected()
                        async for message in pubsub:
                            self.on_push(message)
                error = ConnectionError("the pub/sub connection was closed")
            except Exception as exc:
                if first:
                    raise
                error = exc
            finally:
                self.pubsub = None
                self.scope = None
            if self.connected:
                lost_at = time.monotonic()
                self.set_connected(False)
                broker._connection_lost(error)
            await anyio.sleep(delay * (0.5 + random.random()))
            delay = min(high, delay * 2)

    def on_push(self, message: Any) -> None:
        """A message coredis' own PubSub parsed (the fast path of ``_PubSub`` is off)."""
        kind = message["type"]
        if kind == "message" or kind == "pmessage":
            self.on_publish(message["channel"], message["data"])

    def on_publish(self, channel: bytes, data: bytes) -> None:
        """``data`` published on ``channel`` (on a channel or pattern of this node)."""
        broker = self.broker
        if channel == broker._control_channel or channel == self.names.cluster:
            broker._on_control(data)
            return
        if channel == broker._inbox_channel:
            broker._on_topic(None, data)  # the frame names the inbox
            return
        # One PUBLISH reaches a connection once per matching subscription, back to back:
        # a channel and a pattern (or two patterns) matching it give duplicates.
        pair = (channel, data)
        if pair == self.last_push:
            return
        self.last_push = pair
        topic_prefix = self.names.topic_prefix
        if channel.startswith(topic_prefix):
            try:
                topic = channel[len(topic_prefix) :].decode()
            except UnicodeDecodeError:
                topic = channel.decode(errors="replace")
            broker._on_topic(topic, data)

    async def resubscribe(self, pubsub: Any) -> None:
        channels = [name for (glob, name) in self.want if not glob]
        globs = [name for (glob, name) in self.want if glob]
        if channels:
            await pubsub.subscribe(*channels)
        if globs:
            await pubsub.psubscribe(*globs)

    # ------------------------------------------------------------------ subscriptions

    async def retain(self, pattern: str) -> None:
        """One more local subscriber needs ``pattern``: subscribe on Redis if it is the
        first, and wait until the subscription is confirmed."""
        target = self.names.redis_target(pattern)
        if target is None:
            return
        count = self.want.get(target, 0)
        self.want[target] = count + 1
        if count:
            ready = self.ready.get(target)
            if ready is not None:
                with anyio.move_on_after(self.connect_timeout):
                    await ready.wait()
            return
        pubsub = self.pubsub
        if pubsub is None:
            return  # the listener subscribes when it (re)connects
        ready = self.ready[target] = anyio.Event()
        try:
            glob, name = target
            if glob:
                await pubsub.psubscribe(name)
            else:
                await pubsub.subscribe(name)
        except Exception as exc:
            hint = ""
            if glob and isinstance(exc, TimeoutError):
                literal = name.decode(errors="replace")
                hint = (
                    f"; Redis did not confirm PSUBSCRIBE {literal!r}: if the Redis user has "
                    f"channel ACLs, allow that pattern literally (ACL SETUSER ... '&{literal}')"
                )
            logger.warning(
                "subscribing to %r on Redis failed (%s)%s; it is retried on reconnection",
                pattern,
                describe(exc),
                hint,
            )
            self.kick()
        finally:
            ready.set()
            if self.ready.get(target) is ready:
                del self.ready[target]

    def release(self, pattern: str) -> None:
        """One local subscriber less needs ``pattern``: unsubscribe after the last."""
        target = self.names.redis_target(pattern)
        if target is None or target not in self.want:
            return
        count = self.want[target] - 1
        if count:
            self.want[target] = count
            return
        del self.want[target]
        if self.task_group is not None:
            self.task_group.start_soon(self.unsubscribe, target)

    async def unsubscribe(self, target: tuple[bool, bytes]) -> None:
        pubsub = self.pubsub
        if pubsub is None or target in self.want:
            return
        glob, name = target
        try:
            if glob:
                await pubsub.punsubscribe(name)
            else:
                await pubsub.unsubscribe(name)
        except Exception as exc:
            logger.debug("unsubscribing %r failed: %s", name, describe(exc))


#: How many pushes the listener handles in a row before it lets other tasks run.
_PUSH_BURST: Final = 64


class _PubSub(coredis.patterns.pubsub.PubSub[bytes]):  # type: ignore[misc, unused-ignore]
    """coredis' PubSub, with each published message handed to ``on_publish(channel,
    data)`` as soon as the connection parsed it, a whole read at a time.

    coredis moves every push through two tasks and a message dict (its reader's buffer,
    ``_consume_push_messages``, the iterator's stream): a scheduling round each. Here the
    consuming task takes what the reader parsed without waiting while there is some, and
    lets other tasks run every ``_PUSH_BURST`` pushes. Subscription acknowledgements
    still go coredis' way (they set its subscription waiters and reach the iterator). If
    the coredis in use lacks the buffer read here, this falls back to coredis' own
    consumer and the listener handles the messages from the iterator.
    """

    on_publish: Callable[[bytes, bytes], None]

    async def _consume_push_messages(self) -> None:
        connection = self.connection
        buffer = getattr(connection, "_push_message_buffer_out", None)
        scope = getattr(self, "_current_scope", None)
        if (
            buffer is None
            or not hasattr(buffer, "receive_nowait")
            or (scope is not None and scope.cancel_called)
        ):
            # Another coredis, or coredis draining the unsubscriptions of a pub/sub that
            # is closing: its own consumer (what still arrives then is not handled).
            await super()._consume_push_messages()
            return
        on_publish = self.on_publish
        handle = self._handle_message
        forward = self._send_stream.send_nowait
        checkpoint = anyio.lowlevel.checkpoint
        burst = 0
        while True:
            try:
                try:
                    response = buffer.receive_nowait()
                    burst += 1
                    if burst >= _PUSH_BURST:
                        burst = 0
                        await checkpoint()
                except anyio.WouldBlock:
                    burst = 0
                    response = await buffer.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError) as e:
                raise coredis.exceptions.ConnectionError(
                    "Connection lost while waiting for push messages"
                ) from e
            self._last_checkin = time.monotonic()
            kind = response[0]
            if kind == b"message" and len(response) == 3:
                on_publish(response[1], response[2])
            elif kind == b"pmessage" and len(response) == 4:
                on_publish(response[2], response[3])
            else:
                forward(await handle(response))


def _pubsub(
    client: coredis.Redis[bytes], on_publish: Callable[[bytes, bytes], None], **options: Any
) -> Any:
    """A :class:`_PubSub` on ``client``'s connections (coredis' own for another client)."""
    if type(client).pubsub is not coredis.Redis.pubsub:
        return client.pubsub(**options)
    pubsub = _PubSub(client.connection_pool, **options)
    pubsub.on_publish = on_publish
    return pubsub
