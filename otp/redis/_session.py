"""The session: one node's connection to Redis and its claim on its name.

* **Claim.** A node starts by claiming its name: ``SET P:node:<name> <incarnation> NX PX
  <node_ttl>``. If the key is held and someone listens on the name's control channel
  (``PUBSUB NUMSUB``), a live node has the name: :class:`NodeNameTaken` at once. If the
  key is held but nobody listens, the holder crashed: the claim waits for the key to
  expire (at most ``node_ttl``).
* **Lease.** Every ``heartbeat`` one script renews the key *only if it still holds this
  incarnation* (or sets it again if it is gone: Redis restarted or the node was paused
  past ``node_ttl``), and returns every live node with its incarnation (membership). The
  node serves remote traffic only while its lease runs (``node_ttl`` from the last renewal
  it sent): a node paused past its lease holds what arrives until a renewal answers.
* **Fencing.** If the renewal finds the key holding *another* incarnation, the name was
  taken over: this incarnation is fenced. It stops serving at once, drops what it held,
  emits ``"fenced"`` and ends its Node with :class:`NodeFenced`.
* **Listening.** One pub/sub connection carries the node's control channel, the cluster
  channel, its request inboxes and its topics; it reconnects with backoff and
  resubscribes everything.
* **Sending.** Every frame goes through one outbox, sent in order by one task; when
  several are queued they go in one round trip (one ``EVALSHA`` publishing them all). A
  call published while nothing is queued or being written goes from the caller's own task
  (``send_now``); one task writes at a time, so the order per destination holds.
"""

from __future__ import annotations

import logging
import math
import random
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import coredis  # type: ignore[import-not-found, unused-ignore]
from anyio.abc import TaskStatus

from .._exceptions import CodecError, NodeFenced, NodeNameTaken, RedisUnavailable

if TYPE_CHECKING:
    from ._broker import RedisBroker

__all__ = ["Session", "describe", "redact"]

logger = logging.getLogger("otp.redis")

#: Frames sent in one pipeline at most.
_BATCH: Final = 512

#: Scheduling rounds the sender waits under load while the outbox still grows.
_LINGER: Final = 16

#: Publish several frames in one command: ARGV holds channel, data pairs; returns the
#: receivers of each (as PUBLISH would), -1 for one Redis refused (an ACL, say).
_PUBLISH_MANY: Final = """
local out = {}
for i = 1, #ARGV, 2 do
  local received = redis.pcall('PUBLISH', ARGV[i], ARGV[i + 1])
  if type(received) ~= 'number' then
    received = -1
  end
  out[#out + 1] = received
end
return out
"""

#: Renew the node's key if it still holds this incarnation (1), set it again if it is
#: gone (2), or report a takeover (0); then list the live nodes as name, incarnation.
#: KEYS: the node's key, the nodes set. ARGV: incarnation, ttl ms, name, now, key prefix,
#: cutoff for forgetting dead names, "1" to renew or "0" to only read.
_RENEW: Final = """
local status = -1
if ARGV[7] == '1' then
  local held = redis.call('GET', KEYS[1])
  if held == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    status = 1
  elseif not held then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    status = 2
  else
    status = 0
  end
  if status > 0 then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  end
end
local now = redis.call('TIME')
local out = {status, now[1], now[2]}
for _, name in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local incarnation = redis.call('GET', ARGV[5] .. name)
  if incarnation then
    table.insert(out, name)
    table.insert(out, incarnation)
  else
    local seen = tonumber(redis.call('ZSCORE', KEYS[2], name))
    if seen and seen < tonumber(ARGV[6]) then
      redis.call('ZREM', KEYS[2], name)
    end
  end
end
return out
"""


def describe(error: BaseException | None) -> str:
    """A one-line description of ``error`` for logs, without secrets."""
    if error is None:
        return "closed"
    if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        return describe(error.exceptions[0])
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def redact(url: str) -> str:
    """``url`` with its password (and any ``password=`` query value) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        netloc = f"{user}:***@{host}" if user else f"***@{host}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{k}=***" if "pass" in k.lower() or "secret" in k.lower() else f"{k}={v}"
            for k, v in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class _Out:
    """One queued frame: where to, the bytes, and what to tell when sent."""

    __slots__ = ("channel", "data", "done", "queued_at", "retry", "stream")

    def __init__(
        self,
        channel: bytes | None,
        data: bytes,
        done: Callable[[int], None] | None,
        retry: bool,
        stream: tuple[bytes, int | None] | None = None,
    ) -> None:
        self.channel = channel
        self.data = data
        self.done = done
        self.retry = retry
        self.stream = stream
        self.queued_at = time.monotonic()


class Session:
    """The connection of one :class:`RedisBroker` to Redis (see the module docs)."""

    def __init__(
        self,
        broker: RedisBroker,
        *,
        url: str,
        client_factory: Callable[[str], AbstractAsyncContextManager[coredis.Redis[bytes]]],
        connect_timeout: float,
        heartbeat: float,
        node_ttl: float,
        backoff: tuple[float, float],
        outbox_limit: int,
    ) -> None:
        self.broker = broker
        self.names = broker.names
        self.url = url
        self.client_factory = client_factory
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self.backoff = backoff
        self.outbox_limit = outbox_limit
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
        # The lease: serve remote traffic only before this (monotonic) time.
        self.lease_until = 0.0
        self.fenced = False
        self.claim_lost = False
        self.renew_now = anyio.Event()
        self.renewed = anyio.Event()
        # (is a glob, redis name) -> how many local subscribers need it
        self.want: dict[tuple[bool, bytes], int] = {}
        self.ready: dict[tuple[bool, bytes], anyio.Event] = {}
        self.outbox: deque[_Out] = deque()
        self.outbox_wake = anyio.Event()
        self.outbox_room = anyio.Event()
        # A task is writing to Redis now (the sender, or a caller in send_now).
        self.writing = False
        self.sent = 0
        self.pipelines = 0
        self.last_push: tuple[bytes, bytes] | None = None
        self._script: Any = None
        self._publish_many: Any = None

    # ------------------------------------------------------------------ state

    @property
    def serving(self) -> bool:
        """Whether this node may act on remote traffic now (its lease runs)."""
        return not self.fenced and time.monotonic() < self.lease_until

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

    def hurry_renewal(self) -> None:
        """Renew the lease now (traffic arrived after it ran out)."""
        self.renew_now.set()

    # ------------------------------------------------------------------ running

    async def run(
        self,
        loops: Sequence[Callable[[], Coroutine[Any, Any, None]]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect, claim the name, then listen and run ``loops`` until :attr:`stopping`.

        A start-up failure is kept in :attr:`start_error` (the broker raises it in the
        node's task) and ``task_status.started()`` is called either way. A failure after
        start-up propagates as itself (the node's task group ends the Node with it).
        """
        broker = self.broker
        # The factory gives a context that yields the client: a coredis client is its own;
        # a Sentinel's also holds the sentinels' connections while the client is in use.
        connection = self.client_factory(f"otp:{self.names.prefix}:{broker.node_name}")
        started = False
        try:
            async with connection as client:
                self.client = client
                self._script = client.register_script(_RENEW)
                self._publish_many = client.register_script(_PUBLISH_MANY)
                try:
                    with anyio.fail_after(self.connect_timeout + self.node_ttl + 1.0):
                        await self.claim_name()
                except (NodeNameTaken, RedisUnavailable) as exc:
                    self.start_error = exc
                except Exception as exc:
                    self.start_error = RedisUnavailable(redact(self.url), describe(exc))
                    self.start_error.__cause__ = exc
                if self.start_error is not None:
                    task_status.started()
                    started = True
                    return
                async with anyio.create_task_group() as task_group:
                    self.task_group = task_group
                    try:
                        await task_group.start(self.listen)
                    except Exception as exc:
                        self.start_error = RedisUnavailable(redact(self.url), describe(exc))
                        self.start_error.__cause__ = exc
                        task_group.cancel_scope.cancel()
                        task_status.started()
                        started = True
                        return
                    task_group.start_soon(self.heartbeat_loop)
                    task_group.start_soon(self.sender_loop)
                    for loop in loops:
                        task_group.start_soon(loop)
                    task_status.started()
                    started = True
                    await self.stopping.wait()
                    task_group.cancel_scope.cancel()
        except Exception as exc:
            if started:
                # After start-up the Node ends with this error, as itself (not wrapped in
                # the groups of the task groups it crossed).
                raise _leaf(exc) from exc.__cause__
            self.start_error = RedisUnavailable(redact(self.url), describe(exc))
            self.start_error.__cause__ = exc
            task_status.started()
        finally:
            self.client = None
            self.task_group = None
            self.connected = False
            self.stopped.set()

    async def claim_name(self) -> None:
        client = self.client
        assert client is not None
        broker = self.broker
        name = broker.node_name
        key = self.names.node_key(name)
        ttl = max(1, int(self.node_ttl * 1000))
        deadline = time.monotonic() + self.node_ttl + self.heartbeat
        while True:
            sent_at = time.monotonic()
            if await client.set(key, broker.incarnation, condition=coredis.PureToken.NX, px=ttl):
                break
            listeners = await client.pubsub_numsub(self.names.control(name))
            if any(count for count in listeners.values()):
                # Someone listens on the name's channel: a live (or paused) node.
                raise NodeNameTaken(name, self.names.prefix)
            if time.monotonic() > deadline:
                raise NodeNameTaken(name, self.names.prefix)
            # The holder crashed (nobody listens): wait for its key to expire.
            logger.info(
                "node name %r is still held on Redis by a node that is gone; waiting up to "
                "%.1fs for its key to expire",
                name,
                self.node_ttl,
            )
            await anyio.sleep(min(self.heartbeat, 0.1))
        self.lease_until = sent_at + self.node_ttl
        await client.zadd(self.names.nodes, {name: time.time()})

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

    # ------------------------------------------------------------------ the outbox

    def send(
        self,
        channel: bytes,
        data: bytes,
        done: Callable[[int], None] | None = None,
        *,
        retry: bool = False,
        stream: tuple[bytes, int | None] | None = None,
    ) -> None:
        """Queue ``data`` for ``channel``; ``done(receivers)`` is called once it is sent
        (``-1``: it could not be). A ``retry`` frame (an answer, a durable publish) waits
        out a disconnection (for at most ``node_ttl``); the others fail at once when the
        connection is down. ``stream`` (key, cap) also appends ``data`` to that stream,
        in the same pipeline, before publishing."""
        if not self.connected and not retry:
            if done is not None:
                done(-1)
            return
        self.outbox.append(_Out(channel, data, done, retry, stream))
        self.outbox_wake.set()

    async def send_now(
        self, channel: bytes, data: bytes, done: Callable[[int], None] | None = None
    ) -> None:
        """:meth:`send`, but when nothing is queued or being written, publish from the
        calling task at once: no hop to the sender task, so a lone call reaches Redis a
        scheduling round sooner. Order per destination holds as with :meth:`send`: only
        one task writes at a time (``writing``), and frames queued meanwhile go after.
        A cancelled caller leaves ``done`` uncalled (it has gone: whether the frame was
        sent is unknown, which an at-most-once frame allows)."""
        client = self.client
        if self.writing or self.outbox or not self.connected or client is None:
            self.send(channel, data, done)
            return
        self.writing = True
        try:
            received = await client.publish(channel, data)
        except Exception as exc:
            logger.info("sending a frame failed (%s)", describe(exc))
            received = -1
        finally:
            self.writing = False
            if self.outbox:
                self.outbox_wake.set()
        if received >= 0:
            self.sent += 1
        if done is not None:
            done(int(received))

    def send_frame(self, node: str, data: bytes, *, retry: bool = False) -> None:
        """Queue a control frame for ``node``; sent in order."""
        self.send(self.names.control(node), data, retry=retry)

    def post(self, node: str, frame: dict[str, Any], *, retry: bool = True) -> None:
        """Encode and queue a control frame for ``node`` (from synchronous code)."""
        try:
            data = self.broker._dumps(frame)
        except CodecError as error:
            logger.error("cannot encode a %r frame for node %r: %s", frame.get("k"), node, error)
            return
        self.send_frame(node, data, retry=retry)

    async def wait_for_room(self) -> None:
        """Wait while the outbox holds more than its limit (backpressure on senders)."""
        while len(self.outbox) > self.outbox_limit and self.connected:
            self.outbox_room = anyio.Event()
            await self.outbox_room.wait()

    async def sender_loop(self) -> None:
        outbox = self.outbox
        low = self.backoff[0]
        busy = False
        checkpoint = anyio.lowlevel.checkpoint
        while True:
            if not outbox:
                busy = False
                self.outbox_room.set()
                self.outbox_wake = anyio.Event()
                await self.outbox_wake.wait()
                continue
            if not self.connected:
                self._drop_unsendable()
                if outbox:
                    with anyio.move_on_after(self.heartbeat):
                        await self.connected_event.wait()
                continue
            if busy and len(outbox) < _BATCH:
                # Under load (the last batch had several frames), let the producers queue
                # a few more before sending: bigger batches, fewer round trips. An idle
                # node sends a lone frame at once (no latency added to a single call).
                for _ in range(_LINGER):
                    before = len(outbox)
                    await checkpoint()
                    if len(outbox) == before or len(outbox) >= _BATCH:
                        break
            if self.writing:  # a caller publishes a lone frame itself (send_now)
                self.outbox_wake = anyio.Event()
                await self.outbox_wake.wait()
                continue
            batch = self._take_batch()
            if not batch:
                continue
            self.writing = True
            try:
                results = await self._write(batch)
            except Exception as exc:
                self.writing = False
                logger.info("sending %d frame(s) failed (%s); retrying", len(batch), describe(exc))
                for out in reversed(batch):
                    if out.retry:
                        outbox.appendleft(out)
                    elif out.done is not None:
                        out.done(-1)
                await anyio.sleep(low)
                continue
            self.writing = False
            self.sent += len(batch)
            busy = len(batch) > 1
            for out, received in zip(batch, results):
                if out.done is not None:
                    out.done(int(received))
            if len(outbox) <= self.outbox_limit:
                self.outbox_room.set()

    def _take_batch(self) -> list[_Out]:
        """The frames to send next, in order: up to ``_BATCH``, stopping at a flush marker
        (whose ``done`` runs at once when nothing is before it)."""
        outbox = self.outbox
        batch: list[_Out] = []
        while outbox and len(batch) < _BATCH:
            out = outbox.popleft()
            if out.channel is None:  # a flush marker: all before it is sent
                if not batch:
                    assert out.done is not None
                    out.done(0)
                    continue
                outbox.appendleft(out)
                break
            batch.append(out)
        return batch

    async def _write(self, batch: list[_Out]) -> list[Any]:
        """Send ``batch`` to Redis in one round trip; the receivers of each frame.

        A lone frame is one PUBLISH. Several are one ``EVALSHA`` of ``_PUBLISH_MANY`` (its
        arguments are packed by coredis' C packer: a few microseconds a frame instead of
        the ~20 of a pipelined command object); a batch with a durable frame (an XADD
        before its PUBLISH) goes as one pipeline. Either way the frames reach Redis in
        queue order, so the order per destination holds."""
        client = self.client
        assert client is not None
        if len(batch) == 1 and batch[0].stream is None:
            only = batch[0]
            assert only.channel is not None
            return [await client.publish(only.channel, only.data)]
        if any(out.stream is not None for out in batch):
            async with client.pipeline(transaction=False) as pipe:
                requests = []
                for out in batch:
                    if out.stream is not None:
                        _append(pipe, out.stream, out.data)
                    requests.append(pipe.publish(out.channel or b"", out.data))
            self.pipelines += 1
            return [await request for request in requests]
        assert self._publish_many is not None
        args: list[bytes] = []
        for out in batch:
            assert out.channel is not None
            args.append(out.channel)
            args.append(out.data)
        received = await self._publish_many(keys=[], args=args)
        self.pipelines += 1
        if type(received) is not list or len(received) != len(batch):
            raise ConnectionError(f"PUBLISH of a batch answered {str(received)[:100]!r}")
        return received

    def pending_answers(self) -> int:
        return sum(1 for out in self.outbox if out.retry)

    def _drop_unsendable(self) -> None:
        # While disconnected: user frames fail, answers wait up to node_ttl (by then the
        # peers count this node as down).
        now = time.monotonic()
        kept: deque[_Out] = deque()
        for out in self.outbox:
            if out.channel is None:
                assert out.done is not None
                out.done(0)
            elif out.retry and now - out.queued_at <= self.node_ttl:
                kept.append(out)
            elif out.done is not None:
                out.done(-1)
        self.outbox.clear()
        self.outbox.extend(kept)
        self.outbox_room.set()

    async def flush(self, timeout: float) -> None:
        """Wait until what is queued now has been sent (at most ``timeout`` seconds)."""
        if self.task_group is None or not self.outbox:
            return
        done = anyio.Event()
        self.outbox.append(_Out(None, b"", lambda _: done.set(), True))
        self.outbox_wake.set()
        with anyio.move_on_after(timeout):
            await done.wait()

    # ------------------------------------------------------------------ the lease

    async def renew(self, *, read_only: bool = False) -> tuple[int, dict[str, str]]:
        """Run the renewal script: ``(status, {node: incarnation})`` (see ``_RENEW``); it
        also samples the cluster clock (Redis' ``TIME``)."""
        client = self.client
        assert client is not None
        assert self._script is not None
        broker = self.broker
        names = self.names
        now = sent = time.time()
        reply = await self._script(
            keys=[names.node_key(broker.node_name), names.nodes],
            args=[
                broker.incarnation,
                max(1, int(self.node_ttl * 1000)),
                broker.node_name,
                now,
                names.node_key(""),
                now - 60 * self.node_ttl,
                "0" if read_only else "1",
            ],
        )
        status = int(reply[0])
        broker._clock_sample(int(reply[1]) + int(reply[2]) / 1e6, sent, time.time())
        members: dict[str, str] = {}
        items = reply[3:]
        for i in range(0, len(items) - 1, 2):
            name, incarnation = items[i], items[i + 1]
            members[name.decode() if isinstance(name, bytes) else str(name)] = (
                incarnation.decode() if isinstance(incarnation, bytes) else str(incarnation)
            )
        return status, members

    async def heartbeat_loop(self) -> None:
        broker = self.broker
        while True:
            with anyio.move_on_after(self.heartbeat):
                await self.renew_now.wait()
            self.renew_now = anyio.Event()
            sent_at = time.monotonic()
            try:
                with anyio.fail_after(max(self.heartbeat, self.node_ttl / 2)):
                    status, members = await self.renew()
            except Exception as exc:
                logger.info("heartbeat failed: %s", describe(exc))
                self.kick()
                if not self.serving and not self.claim_lost:
                    self._lose_claim()
                continue
            if status == 0:
                self._fence()
                raise NodeFenced(broker.node_name, self.names.prefix)
            if status == 2:
                logger.warning(
                    "node %r found its claim gone (Redis restarted, or this node was paused "
                    "past node_ttl=%gs) and claimed its name again",
                    broker.node_name,
                    self.node_ttl,
                    extra={"otp_event": "claim_restored"},
                )
            self.lease_until = sent_at + self.node_ttl
            if self.claim_lost:
                self.claim_lost = False
                broker._emit("claim_restored", detail=broker.node_name)
            self.renewed.set()
            self.renewed = anyio.Event()
            # Missing peers are conclusive only if this node's own key was still there:
            # a lost key of its own means Redis lost or expired keys (a restart, a stall).
            broker.membership.update(members, conclusive=status == 1)
            broker._lease_ok()

    def _lose_claim(self) -> None:
        self.claim_lost = True
        logger.warning(
            "node %r cannot renew its claim on Redis; it holds remote traffic until it can",
            self.broker.node_name,
            extra={"otp_event": "claim_lost"},
        )
        self.broker._emit("claim_lost", detail=self.broker.node_name)

    def _fence(self) -> None:
        broker = self.broker
        self.fenced = True
        self.lease_until = 0.0
        logger.error(
            "node %r was taken over: another process now holds its name on Redis; this "
            "incarnation (%s) stops serving and its Node ends with NodeFenced",
            broker.node_name,
            broker.incarnation,
            extra={"otp_event": "fenced"},
        )
        broker._emit("fenced", reason="taken_over", detail=broker.node_name)
        broker._fenced()


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


def _append(pipe: Any, stream: tuple[bytes, int | None], data: bytes) -> None:
    key, maxlen = stream
    if maxlen is None:
        pipe.xadd(key, {b"d": data})
    else:
        pipe.xadd(
            key,
            {b"d": data},
            trim_strategy=coredis.PureToken.MAXLEN,
            threshold=maxlen,
            trim_operator=coredis.PureToken.APPROXIMATELY,
        )


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
