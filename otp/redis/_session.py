"""The session: one node's connection to Redis.

It connects, claims the node's name, listens on the node's channels and its topics'
channels, renews the node's liveness key, reconnects with backoff when the connection
drops (resubscribing everything), and sends queued frames in order (the outbox).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import coredis  # type: ignore[import-not-found, unused-ignore]
from anyio.abc import TaskStatus

from .._exceptions import CodecError, NodeNameTaken, RedisUnavailable

if TYPE_CHECKING:
    from ._broker import RedisBroker

__all__ = ["Session", "describe"]

logger = logging.getLogger("otp.redis")


def describe(error: BaseException | None) -> str:
    """A one-line description of ``error`` for logs."""
    if error is None:
        return "closed"
    if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        return describe(error.exceptions[0])
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Session:
    """The connection of one :class:`RedisBroker` to Redis (see the module docs)."""

    def __init__(
        self,
        broker: RedisBroker,
        *,
        url: str,
        client_kwargs: dict[str, Any],
        connect_timeout: float,
        heartbeat: float,
        node_ttl: float,
        backoff: tuple[float, float],
    ) -> None:
        self.broker = broker
        self.names = broker.names
        self.url = url
        self.client_kwargs = client_kwargs
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self.backoff = backoff
        self.client: coredis.Redis[bytes] | None = None
        self.pubsub: Any = None
        self.connected = False
        self.connected_event = anyio.Event()
        self.reconnects = 0
        self.stopping = anyio.Event()
        self.stopped = anyio.Event()
        self.scope: anyio.CancelScope | None = None
        self.task_group: Any = None
        self.start_error: BaseException | None = None
        # (is a glob, redis name) -> how many local subscribers need it
        self.want: dict[tuple[bool, bytes], int] = {}
        self.ready: dict[tuple[bool, bytes], anyio.Event] = {}
        self.outbox: deque[tuple[float, Any]] = deque()
        self.outbox_wake = anyio.Event()
        self.last_push: tuple[bytes, bytes] | None = None

    # ------------------------------------------------------------------ state

    async def wait_connected(self, timeout: float | None = None) -> bool:
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            while not self.connected:
                await self.connected_event.wait()
            return True
        return False

    def set_connected(self, up: bool) -> None:
        self.connected = up
        if up:
            self.connected_event.set()
        else:
            self.connected_event = anyio.Event()

    def kick(self) -> None:
        """Drop the current pub/sub session so the listener reconnects."""
        if self.scope is not None:
            self.scope.cancel()

    # ------------------------------------------------------------------ running

    async def run(
        self,
        loops: Sequence[Callable[[], Coroutine[Any, Any, None]]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect, claim the name, then listen and run ``loops`` until :attr:`stopping`.

        A start-up failure is kept in :attr:`start_error` (reported by the broker in the
        node's task) and ``task_status.started()`` is called either way.
        """
        broker = self.broker
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self.url,
            client_name=f"otp:{self.names.prefix}:{broker.node_name}",
            **self.client_kwargs,
        )
        failure: BaseException | None = None
        try:
            async with client:
                self.client = client
                try:
                    with anyio.fail_after(self.connect_timeout + 1.0):
                        await self.claim_name()
                except Exception as exc:
                    failure = exc
                else:
                    async with anyio.create_task_group() as task_group:
                        self.task_group = task_group
                        await task_group.start(self.listen)
                        task_group.start_soon(self.heartbeat_loop)
                        task_group.start_soon(self.outbox_loop)
                        for loop in loops:
                            task_group.start_soon(loop)
                        task_status.started()
                        await self.stopping.wait()
                        task_group.cancel_scope.cancel()
        except Exception as exc:
            if failure is None:
                failure = exc
        finally:
            self.client = None
            self.task_group = None
            self.connected = False
            self.stopped.set()
        if failure is not None:
            if isinstance(failure, (NodeNameTaken, RedisUnavailable)):
                self.start_error = failure
            else:
                self.start_error = RedisUnavailable(self.url, describe(failure))
                self.start_error.__cause__ = failure
            task_status.started()

    async def claim_name(self) -> None:
        client = self.client
        assert client is not None
        broker = self.broker
        key = self.names.node_key(broker.node_name)
        ttl = int(self.node_ttl * 1000)
        deadline = time.monotonic() + self.node_ttl + self.heartbeat
        while True:
            if await client.set(key, broker.incarnation, condition=coredis.PureToken.NX, px=ttl):
                break
            if time.monotonic() > deadline:
                raise NodeNameTaken(broker.node_name, self.names.prefix)
            # A node of that name crashed recently (its key has not expired yet), or a
            # live one holds it: wait for the key to expire.
            logger.info(
                "node name %r is still held on Redis; waiting up to %.1fs for it to expire",
                broker.node_name,
                self.node_ttl,
            )
            await anyio.sleep(min(self.heartbeat, 0.25))
        await client.zadd(self.names.nodes, {broker.node_name: time.time()})

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
                    async with client.pubsub(
                        retry_policy=None,
                        ignore_subscribe_messages=True,
                        subscription_timeout=self.connect_timeout,
                        max_idle_seconds=max(1.0, self.heartbeat),
                    ) as pubsub:
                        await pubsub.subscribe(self.names.control(broker.node_name))
                        await pubsub.psubscribe(self.names.inbox_glob(broker.node_name))
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
        kind = message["type"]
        if kind != "message" and kind != "pmessage":
            return
        channel: bytes = message["channel"]
        data: bytes = message["data"]
        broker = self.broker
        if channel == broker._control_channel:
            broker.remote_actors.on_control(data)
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
            logger.warning(
                "subscribing to %r on Redis failed (%s); it is retried on reconnection",
                pattern,
                describe(exc),
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
        self.post_local(("unsub", target))

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

    # ------------------------------------------------------------------ the outbox

    def post_local(self, item: Any) -> None:
        self.outbox.append((time.monotonic(), item))
        self.outbox_wake.set()

    def post(self, node: str, frame: dict[str, Any]) -> None:
        """Queue a control frame for ``node`` (from synchronous code); sent in order."""
        try:
            data = self.broker._dumps(frame)
        except CodecError as error:
            logger.error("cannot encode a %r frame for node %r: %s", frame.get("k"), node, error)
            return
        self.post_local(("frame", self.names.control(node), data))

    async def outbox_loop(self) -> None:
        outbox = self.outbox
        while True:
            while outbox:
                queued_at, item = outbox[0]
                if item[0] == "flushed":
                    outbox.popleft()
                    item[1].set()
                    continue
                if item[0] == "unsub":
                    outbox.popleft()
                    await self.unsubscribe(item[1])
                    continue
                # A frame: while disconnected, wait; frames older than node_ttl are
                # dropped (the peers have counted this node as down by then).
                if time.monotonic() - queued_at > self.node_ttl:
                    outbox.popleft()
                    logger.info("dropped a stale %s frame queued while disconnected", item[1])
                    continue
                if not self.connected:
                    with anyio.move_on_after(self.heartbeat):
                        await self.connected_event.wait()
                    continue
                client = self.client
                assert client is not None
                try:
                    await client.publish(item[1], item[2])
                except Exception as exc:
                    logger.info("sending a control frame failed (%s); retrying", describe(exc))
                    await anyio.sleep(self.backoff[0])
                    continue
                outbox.popleft()
            self.outbox_wake = anyio.Event()
            if not outbox:
                await self.outbox_wake.wait()

    async def flush(self, timeout: float) -> None:
        """Wait until what is queued now has been sent (at most ``timeout`` seconds)."""
        if self.task_group is None:
            return
        done = anyio.Event()
        self.post_local(("flushed", done))
        with anyio.move_on_after(timeout):
            await done.wait()

    async def publish_control(self, node: str, frame: dict[str, Any]) -> int:
        """Send ``frame`` to ``node`` now, after what is queued; the number of receivers,
        or -1 if Redis is out of reach."""
        client = self.client
        if client is None or not self.connected:
            return -1
        data = self.broker._dumps(frame)
        if self.outbox:
            # Frames queued from synchronous code (monitors, casts) go first: what one node
            # sends another arrives in the order it was sent.
            await self.flush(self.node_ttl)
        try:
            received: int = await client.publish(self.names.control(node), data)
        except Exception as exc:
            logger.info("sending to node %r failed: %s", node, describe(exc))
            return -1
        return received

    # ------------------------------------------------------------------ liveness

    async def heartbeat_loop(self) -> None:
        client = self.client
        assert client is not None
        broker = self.broker
        key = self.names.node_key(broker.node_name)
        ttl = int(self.node_ttl * 1000)
        while True:
            await anyio.sleep(self.heartbeat)
            try:
                with anyio.fail_after(max(self.heartbeat, self.node_ttl / 2)):
                    await client.set(key, broker.incarnation, px=ttl)
                    await client.zadd(self.names.nodes, {broker.node_name: time.time()})
                    await broker.membership.check_peers(client)
            except Exception as exc:
                logger.info("heartbeat failed: %s", describe(exc))
                self.kick()
