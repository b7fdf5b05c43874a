"""A Redis-backed broker: pub/sub, streams and remote actor refs across processes and hosts.

::

    from otp.redis import RedisBroker

    async with otp.Node(name="a", broker=RedisBroker("redis://127.0.0.1:6379/0")) as node:
        ...  # the same code as with the in-memory broker

Needs the ``coredis`` package (``pip install 'anyotp[redis]'``), an anyio-native client, so
it runs on asyncio and trio alike. See ``docs/distributed.md`` for guarantees and security.

How it maps onto Redis (``P`` is the ``prefix``):

* topic ``T`` is the pub/sub channel ``P:t:T``; a wildcard pattern is a PSUBSCRIBE glob
  that matches a superset, filtered exactly on receipt with the topic grammar;
* each node listens on its channel ``P:n:<node>`` (calls, casts, replies, monitors) and on
  its request inbox ``P:t:$otp.inbox.<node>.*``;
* liveness: the key ``P:node:<node>`` holds the node's incarnation and expires unless the
  node refreshes it (``heartbeat``/``node_ttl``); ``P:nodes`` lists the nodes seen;
* durable topics are also appended to the stream ``P:s:T`` (consumer groups).
"""

from __future__ import annotations

import datetime
import itertools
import logging
import math
import os
import random
import re
import ssl as _ssl
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs
import coredis  # type: ignore[import-not-found, unused-ignore]
from anyio.abc import TaskStatus
from coredis.exceptions import (  # type: ignore[import-not-found, unused-ignore]
    StreamDuplicateConsumerGroupError,
)

from ._actor import ActorRef, Down, MonitorRef
from ._broker import (
    _WAIT,
    DEAD_LETTERS,
    DeadLetter,
    Envelope,
    InMemoryBroker,
    Subscription,
    _check_pattern,
    _check_priority,
    _check_topic,
    _is_wild,
    _Pattern,
    _Waiter,
)
from ._codec import Codec, JsonCodec, Undecodable
from ._compat import Expired
from ._exceptions import (
    ActorExited,
    CallTimeout,
    CodecError,
    InvalidTopic,
    MailboxFull,
    NoSubscriber,
    OTPError,
    RemoteError,
    RequestTimeout,
)
from ._mailbox import CALL, Full, Mailbox, Overflow
from ._remote import RemoteRef

if TYPE_CHECKING:
    from ._compat import Backend, Promise
    from ._node import Node

__all__ = [
    "NodeNameTaken",
    "RedisBroker",
    "RedisUnavailable",
    "StreamSubscription",
    "glob_for",
]

logger = logging.getLogger("otp.redis")

_UTC = datetime.UTC
_SEGMENT_RE: Final = re.compile(r"[^.*#\s]+")
_GLOB_SPECIAL: Final = re.compile(r"([\\*?\[\]])")
_INBOX: Final = "$otp.inbox."


# ---------------------------------------------------------------------------- errors


class RedisUnavailable(OTPError, ConnectionError):
    """The node could not reach Redis when it started (wrong URL, server down, bad
    password or TLS settings); the cause is ``__cause__``."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(
            f"cannot use Redis at {url}: {problem}; check that the server runs and that "
            "the URL, username/password and TLS options are right"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.url, self.problem))


class NodeNameTaken(OTPError, ValueError):
    """Another live node on the same Redis and prefix already uses this node name."""

    def __init__(self, node: str, prefix: str) -> None:
        self.node = node
        self.prefix = prefix
        super().__init__(
            f"node name {node!r} is in use by a live node under prefix {prefix!r}; give each "
            "node a unique otp.Node(name=...) or use another prefix"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node, self.prefix))


# ---------------------------------------------------------------------------- topics


def _escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def glob_for(pattern: str) -> str:
    """The Redis glob that matches (a superset of) the topics ``pattern`` matches.

    Literal segments are escaped; ``*`` and ``#`` become ``*``, and a ``#`` takes one
    neighbouring dot with it so it can match zero segments (``orders.#`` → ``orders*``,
    ``a.#.b`` → ``a*.b``). Redis' ``*`` also crosses dots, so receivers filter exactly.
    """
    _check_pattern(pattern)
    parts: list[str] = []
    at_start = True  # no dot before the next segment
    for segment in pattern.split("."):
        if segment == "#":
            # Redis' '*' absorbs the dot before it (or, at the start, the one after it),
            # so '#' can match zero segments.
            parts.append("*")
            continue
        if not at_start:
            parts.append(".")
        parts.append("*" if segment == "*" else _escape(segment))
        at_start = False
    return re.sub(r"\*{2,}", "*", "".join(parts))


def _check_node_name(name: str) -> str:
    if not isinstance(name, str) or _SEGMENT_RE.fullmatch(name) is None:
        raise ValueError(
            f"node name {name!r} cannot be used on Redis: it must be non-empty, without "
            "whitespace, '.', '*' or '#'"
        )
    return name


# ---------------------------------------------------------------------------- frames


def _malformed(problem: str) -> CodecError:
    return CodecError("malformed", problem)


def _get(frame: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = frame.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _malformed(f"field {key!r} is missing or not a {kind}")
    return value


def _opt(frame: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = frame.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _malformed(f"field {key!r} is not a {kind}")
    return value


def _reason_to_wire(codec: Codec, reason: Any, node: str, refs: Any) -> dict[str, Any]:
    if isinstance(reason, RemoteError):
        return {"x": [reason.type_name, reason.text, reason.node]}
    if isinstance(reason, BaseException):
        return {"x": [type(reason).__qualname__, str(reason), node]}
    try:
        return {"v": codec.to_wire(reason, refs=refs)}
    except CodecError:
        return {"x": [type(reason).__qualname__, repr(reason), node]}


def _reason_from_wire(codec: Codec, tree: Any, refs: Any) -> Any:
    if type(tree) is dict and "x" in tree:
        parts = tree["x"]
        if type(parts) is list and len(parts) == 3 and all(type(p) is str for p in parts):
            return RemoteError(parts[0], parts[1], parts[2])
        raise _malformed("bad exit reason")
    if type(tree) is dict and "v" in tree:
        return codec.from_wire(tree["v"], refs=refs)
        # JSON has no tuples: ("shutdown", term) arrives as a $tuple, already restored.
    raise _malformed("bad exit reason")


class _Gather:
    """Collects ``whereis`` answers: the first hit wins, all misses give ``None``."""

    __slots__ = ("asked", "misses", "promise")

    def __init__(self, promise: Promise, asked: set[str]) -> None:
        self.promise = promise
        self.asked = asked
        self.misses = 0

    def miss(self) -> None:
        self.misses += 1
        if self.misses >= len(self.asked):
            self.promise.resolve(None)


class _Pending:
    __slots__ = ("promise", "ref", "request")

    def __init__(self, promise: Promise, ref: RemoteRef, request: Any) -> None:
        self.promise = promise
        self.ref = ref
        self.request = request


# ---------------------------------------------------------------------------- streams


class StreamSubscription(Subscription):
    """A consumer-group subscription to a durable topic (see :meth:`RedisBroker.consume`).

    It yields :class:`otp.Envelope` like any subscription; ``envelope.id`` is the Redis
    stream entry id. Acknowledge each envelope once it is handled with
    :meth:`ack`: until then Redis keeps it pending, and if this consumer goes away it is
    delivered again to another consumer of the group after ``claim_after`` seconds.
    """

    __slots__ = ("_ack", "consumer", "group", "topic")

    def __init__(
        self,
        topic: str,
        group: str,
        consumer: str,
        mailbox: Mailbox | None,
        ack: Callable[[str], Any],
    ) -> None:
        super().__init__(topic, mailbox, on_drop=_ignore_close)
        #: The durable topic.
        self.topic = topic
        #: The consumer group's name.
        self.group = group
        #: This consumer's name in the group.
        self.consumer = consumer
        self._ack = ack

    def __repr__(self) -> str:
        return (
            f"<StreamSubscription {self.topic!r} group={self.group!r} "
            f"consumer={self.consumer!r} depth={len(self)}>"
        )

    async def ack(self, envelope: Envelope) -> None:
        """Acknowledge ``envelope``: Redis forgets it for this group (``XACK``)."""
        await self._ack(envelope.id)


def _ignore_close(receiver: Any, envelope: Envelope, reason: str) -> None:
    # An unacknowledged stream entry stays pending in Redis and is delivered again:
    # closing the subscription loses nothing, so it is no dead letter.
    if reason != "subscription_closed":
        logger.warning(
            "stream entry %s on %r dropped by the subscription's overflow policy (%s); it "
            "stays pending in Redis and will be delivered again",
            envelope.id,
            envelope.topic,
            reason,
        )


# ---------------------------------------------------------------------------- the broker


class RedisBroker(InMemoryBroker):
    """A :class:`otp.Broker` on Redis: ``otp.Node(name="a", broker=RedisBroker(url))``.

    It keeps the in-memory broker's local machinery (subscriptions, actor delivery,
    middleware, dead letters, statistics) and carries every publish through Redis, so
    subscribers on every node sharing the Redis server and ``prefix`` receive it.

    Arguments: ``url`` (``redis://``, ``rediss://`` for TLS, ``unix://``), ``prefix`` for
    every key and channel (several systems can share one Redis), ``codec`` (an
    :class:`otp.JsonCodec` by default), ``username``/``password`` (Redis ACL), TLS options
    (``ssl``, ``ssl_context``, ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
    ``ssl_check_hostname``), ``durable`` (topic patterns whose messages are also kept in a
    Redis stream for :meth:`consume`), ``stream_maxlen`` (approximate stream cap),
    ``heartbeat`` and ``node_ttl`` (seconds between liveness refreshes, and after which a
    silent node counts as down), ``backoff`` (first and largest reconnect delay),
    ``connect_timeout`` and ``client_options`` (passed to ``coredis.Redis.from_url``).

    Guarantees (pub/sub): at most once; one publisher's messages reach one subscriber in
    publish order; nothing is kept for a node that is not connected. ``publish`` returns
    the number of Redis subscriptions (node connections) that received the message, 0 when
    none did (a dead letter, unless the topic is durable). See ``docs/distributed.md``.

    One broker serves one node.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "otp",
        codec: Codec | None = None,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        ssl_context: _ssl.SSLContext | None = None,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_check_hostname: bool = True,
        durable: Iterable[str] = (),
        stream_maxlen: int | None = 100_000,
        heartbeat: float = 1.0,
        node_ttl: float = 5.0,
        backoff: tuple[float, float] = (0.05, 5.0),
        connect_timeout: float = 5.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"prefix must be a non-empty str without whitespace, not {prefix!r}")
        if not heartbeat > 0 or not node_ttl > heartbeat:
            raise ValueError(
                f"need 0 < heartbeat < node_ttl, got heartbeat={heartbeat!r}, node_ttl={node_ttl!r}"
            )
        if codec is not None and not isinstance(codec, Codec):
            raise TypeError(f"codec must be an otp.Codec, not {codec!r}")
        self.url = url
        self.prefix = prefix
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.heartbeat = float(heartbeat)
        self.node_ttl = float(node_ttl)
        self.backoff = (float(backoff[0]), float(backoff[1]))
        self.stream_maxlen = stream_maxlen
        self._durable = tuple(_Pattern(_check_pattern(p)) for p in durable)
        self._durable_patterns = tuple(durable)
        self._client_kwargs: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "decode_responses": False,
            **(client_options or {}),
        }
        if username is not None:
            self._client_kwargs["username"] = username
        if password is not None:
            self._client_kwargs["password"] = password
        context = ssl_context
        if context is None and (ssl or ssl_ca_certs or ssl_certfile):
            context = _ssl.create_default_context(cafile=ssl_ca_certs)
            if ssl_certfile is not None:
                context.load_cert_chain(ssl_certfile, ssl_keyfile)
            if not ssl_check_hostname:
                context.check_hostname = False
        if context is not None:
            self._client_kwargs["ssl_context"] = context
        self._connect_timeout = connect_timeout
        #: This node's name on Redis (set when the node enters).
        self.node_name = ""
        #: A random id of this node's run: a restarted node has a new one.
        self.incarnation = os.urandom(6).hex()
        #: Reconnections so far, and payloads refused by the codec.
        self.reconnects = 0
        self.wire_errors = 0
        self._node: Node | None = None
        self._client: coredis.Redis[bytes] | None = None
        self._pubsub: Any = None
        self._connected = False
        self._connected_event = anyio.Event()
        self._stopping = anyio.Event()
        self._stopped = anyio.Event()
        self._session_scope: anyio.CancelScope | None = None
        # (is a glob, redis name) -> how many local subscribers need it
        self._want: dict[tuple[bool, bytes], int] = {}
        self._ready: dict[tuple[bool, bytes], anyio.Event] = {}
        self._counter = itertools.count(1)
        self._calls: dict[int, _Pending] = {}
        self._gathers: dict[int, _Gather] = {}
        # monitors this node holds on remote actors: id -> (deliver, ref, watcher, monitor)
        self._mon_out: dict[
            int, tuple[Callable[[Down], None], RemoteRef, ActorRef | None, MonitorRef]
        ] = {}
        # monitors other nodes hold on local actors: (node, id) -> (actor, local monitor)
        self._mon_in: dict[tuple[str, int], tuple[ActorRef, MonitorRef]] = {}
        # peers this node talks to -> their incarnation (None: not known yet)
        self._peers: dict[str, str | None] = {}
        # peers seen going down -> the incarnation that went
        self._down: dict[str, str | None] = {}
        self._exported: weakref.WeakValueDictionary[int, ActorRef] = weakref.WeakValueDictionary()
        self._outbox: deque[tuple[float, Any]] = deque()
        self._outbox_wake = anyio.Event()
        self._last_push: tuple[bytes, bytes] | None = None
        self._topic_lane: deque[tuple[str, bytes]] = deque()
        self._topic_wake = anyio.Event()
        self._actor_lane: deque[dict[str, Any]] = deque()
        self._actor_wake = anyio.Event()
        self._task_group: Any = None
        self._start_error: BaseException | None = None

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        return (
            f"<RedisBroker {self.node_name or '(no node)'!r} prefix={self.prefix!r} {state} "
            f"patterns={len(self._subs)}>"
        )

    # ------------------------------------------------------------------ names on Redis

    def _channel(self, topic: str) -> bytes:
        return f"{self.prefix}:t:{topic}".encode()

    def _node_channel(self, node: str) -> bytes:
        return f"{self.prefix}:n:{node}".encode()

    def _node_key(self, node: str) -> bytes:
        return f"{self.prefix}:node:{node}".encode()

    def _stream_key(self, topic: str) -> bytes:
        return f"{self.prefix}:s:{topic}".encode()

    @property
    def _nodes_key(self) -> bytes:
        return f"{self.prefix}:nodes".encode()

    def _redis_target(self, pattern: str) -> tuple[bool, bytes] | None:
        if pattern == DEAD_LETTERS or pattern.startswith(_INBOX):
            return None  # node-local: dead letters, and inboxes (covered by the node's own)
        if _is_wild(pattern):
            return True, f"{_escape(self.prefix)}:t:{glob_for(pattern)}".encode()
        return False, self._channel(pattern)

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """``True`` while the node's pub/sub connection to Redis is up."""
        return self._connected

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected; ``False`` if ``timeout`` seconds passed first."""
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            while not self._connected:
                await self._connected_event.wait()
            return True
        return False

    def _require_node(self) -> Node:
        if self._node is None or self._client is None:
            raise RuntimeError(
                f"{self!r} serves no node yet; use it as "
                "`async with otp.Node(name=..., broker=RedisBroker(url)) as node:`"
            )
        return self._node

    def _emit(self, kind: str, **fields: Any) -> None:
        if self._node is not None:
            self._node._emit(kind, **fields)

    # ------------------------------------------------------------------ node hooks

    async def _attach(self, node: Node) -> None:
        if self._node is not None:
            raise RuntimeError(f"{self!r} already serves node {self._node.name!r}; one per Node")
        name = node.name
        if name == "nonode":
            name = f"nonode-{os.urandom(3).hex()}"
        self.node_name = _check_node_name(name)
        await super()._attach(node)
        self._node = node
        self._start_error = None
        try:
            await node._task_group.start(self._run)
        except BaseException:
            self._node = None
            await super()._detach(node)
            raise
        if self._start_error is not None:
            self._node = None
            await super()._detach(node)
            raise self._start_error

    async def _detach(self, node: Node) -> None:
        if node is not self._node:
            return
        try:
            # The node's actors have exited: their Down notices and last replies are
            # queued; send them, tell the peers, then leave.
            await self._flush(min(2.0, self.node_ttl))
            with anyio.move_on_after(1.0):
                await self._say_goodbye()
        finally:
            self._stopping.set()
            with anyio.move_on_after(5.0):
                await self._stopped.wait()
            self._node = None
            await super()._detach(node)

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self.url, client_name=f"otp:{self.prefix}:{self.node_name}", **self._client_kwargs
        )
        failure: BaseException | None = None
        try:
            async with client:
                self._client = client
                try:
                    with anyio.fail_after(self._connect_timeout + 1.0):
                        await self._claim_name()
                except Exception as exc:
                    failure = exc
                else:
                    async with anyio.create_task_group() as task_group:
                        self._task_group = task_group
                        await task_group.start(self._listen)
                        task_group.start_soon(self._heartbeat_loop)
                        task_group.start_soon(self._outbox_loop)
                        task_group.start_soon(self._topic_lane_loop)
                        task_group.start_soon(self._actor_lane_loop)
                        task_status.started()
                        await self._stopping.wait()
                        task_group.cancel_scope.cancel()
        except Exception as exc:
            if failure is None:
                failure = exc
        finally:
            self._client = None
            self._task_group = None
            self._connected = False
            self._stopped.set()
        if failure is not None:
            # Reported by _attach, in the node's own task, not through its task group.
            if isinstance(failure, (NodeNameTaken, RedisUnavailable)):
                self._start_error = failure
            else:
                self._start_error = RedisUnavailable(self.url, _describe(failure))
                self._start_error.__cause__ = failure
            task_status.started()

    async def _claim_name(self) -> None:
        client = self._client
        assert client is not None
        key = self._node_key(self.node_name)
        ttl = int(self.node_ttl * 1000)
        deadline = time.monotonic() + self.node_ttl + self.heartbeat
        while True:
            if await client.set(key, self.incarnation, condition=coredis.PureToken.NX, px=ttl):
                break
            if time.monotonic() > deadline:
                raise NodeNameTaken(self.node_name, self.prefix)
            # A node of that name crashed recently (its key has not expired yet), or a
            # live one holds it: wait for the key to expire.
            logger.info(
                "node name %r is still held on Redis; waiting up to %.1fs for it to expire",
                self.node_name,
                self.node_ttl,
            )
            await anyio.sleep(min(self.heartbeat, 0.25))
        await client.zadd(self._nodes_key, {self.node_name: time.time()})

    # ------------------------------------------------------------------ the listener

    async def _listen(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        client = self._client
        assert client is not None
        low, high = self.backoff
        delay = low
        first = True
        lost_at = 0.0
        while True:
            error: BaseException | None = None
            try:
                with anyio.CancelScope() as scope:
                    self._session_scope = scope
                    async with client.pubsub(
                        retry_policy=None,
                        ignore_subscribe_messages=True,
                        subscription_timeout=self._connect_timeout,
                        max_idle_seconds=max(1.0, self.heartbeat),
                    ) as pubsub:
                        await pubsub.subscribe(self._node_channel(self.node_name))
                        inbox = f"{_INBOX}{self.node_name}.*"
                        await pubsub.psubscribe(
                            f"{_escape(self.prefix)}:t:{_escape(inbox[:-1])}*".encode()
                        )
                        self._pubsub = pubsub
                        await self._resubscribe(pubsub)
                        self._set_connected(True)
                        delay = low
                        if first:
                            first = False
                            task_status.started()
                        else:
                            self.reconnects += 1
                            down_for = time.monotonic() - lost_at
                            logger.warning(
                                "node %r reconnected to Redis after %.2fs",
                                self.node_name,
                                down_for,
                                extra={"otp_event": "broker_reconnected"},
                            )
                            self._emit("broker_reconnected", detail=down_for)
                        async for message in pubsub:
                            self._on_push(message)
                error = ConnectionError("the pub/sub connection was closed")
            except Exception as exc:
                if first:
                    raise
                error = exc
            finally:
                self._pubsub = None
                self._session_scope = None
            if self._connected:
                lost_at = time.monotonic()
                self._set_connected(False)
                self._connection_lost(error)
            await anyio.sleep(delay * (0.5 + random.random()))
            delay = min(high, delay * 2)

    async def _resubscribe(self, pubsub: Any) -> None:
        channels = [name for (glob, name) in self._want if not glob]
        globs = [name for (glob, name) in self._want if glob]
        if channels:
            await pubsub.subscribe(*channels)
        if globs:
            await pubsub.psubscribe(*globs)

    def _set_connected(self, up: bool) -> None:
        self._connected = up
        if up:
            self._connected_event.set()
        else:
            self._connected_event = anyio.Event()

    def _kick(self) -> None:
        """Drop the current pub/sub session so the listener reconnects."""
        if self._session_scope is not None:
            self._session_scope.cancel()

    def _connection_lost(self, error: BaseException | None) -> None:
        logger.warning(
            "node %r lost its Redis connection (%s); reconnecting with backoff. Until then "
            "pub/sub messages for this node are lost, calls fail with 'noconnection' and "
            "remote monitors fire with 'noconnection'",
            self.node_name,
            _describe(error),
            extra={"otp_event": "broker_disconnected", "otp_reason": error},
        )
        self._emit("broker_disconnected", reason=error)
        for pending in list(self._calls.values()):
            pending.promise.fail(_exited(pending.ref, "noconnection"))
        for gather in list(self._gathers.values()):
            gather.promise.resolve(None)
        for mid in list(self._mon_out):
            self._fire_monitor(mid, "noconnection", tell=True)

    def _on_push(self, message: Any) -> None:
        kind = message["type"]
        if kind != "message" and kind != "pmessage":
            return
        channel: bytes = message["channel"]
        data: bytes = message["data"]
        if channel == self._node_channel_b:
            self._on_control(data)
            return
        # One PUBLISH reaches a connection once per matching subscription, back to back:
        # a channel and a pattern (or two patterns) matching it give duplicates.
        pair = (channel, data)
        if pair == self._last_push:
            return
        self._last_push = pair
        if channel.startswith(self._topic_prefix_b):
            try:
                topic = channel[len(self._topic_prefix_b) :].decode()
            except UnicodeDecodeError:
                topic = channel.decode(errors="replace")
            self._topic_lane.append((topic, data))
            self._topic_wake.set()

    @property
    def _node_channel_b(self) -> bytes:
        return self._node_channel(self.node_name)

    @property
    def _topic_prefix_b(self) -> bytes:
        return f"{self.prefix}:t:".encode()

    # ------------------------------------------------------------------ wire errors

    def _wire_error(self, error: CodecError, data: bytes, topic: str | None) -> None:
        self.wire_errors += 1
        letter = DeadLetter(Undecodable.of(error, data), None, error.reason, topic=topic)
        logger.warning(
            "node %r dropped a message from Redis%s: %s",
            self.node_name,
            f" on topic {topic!r}" if topic else "",
            error,
            extra={"otp_event": "wire_error", "otp_reason": error.reason, "otp_topic": topic},
        )
        self._dead_letter(letter)
        self._emit("dead_letter", reason=error.reason, detail=letter.message)

    # ------------------------------------------------------------------ topics in

    async def _topic_lane_loop(self) -> None:
        lane = self._topic_lane
        while True:
            while lane:
                topic, data = lane.popleft()
                try:
                    envelope = self._decode_pub(topic, data)
                except CodecError as error:
                    self._wire_error(error, data, topic)
                    continue
                targets = self._lookup(envelope.topic)
                if targets:
                    await self._deliver(
                        envelope.topic, envelope.message, envelope.sender, envelope, targets
                    )
            self._topic_wake = anyio.Event()
            if not lane:
                await self._topic_wake.wait()

    def _decode_pub(self, topic: str, data: bytes) -> Envelope:
        frame = self.codec.loads(data)
        if type(frame) is not dict or frame.get("k") != "pub":
            raise _malformed("not an anyotp publish frame")
        if _get(frame, "t", str) != topic:
            raise _malformed(f"frame topic {frame.get('t')!r} differs from its channel")
        self._saw(frame)
        reply_to = _opt(frame, "r", str)
        if reply_to is not None:
            try:
                _check_topic(reply_to)
            except InvalidTopic as exc:
                raise _malformed(str(exc)) from None
        headers = _opt(frame, "h", dict) or {}
        if not all(type(k) is str and type(v) is str for k, v in headers.items()):
            raise _malformed("headers must map str to str")
        sender_tree = _opt(frame, "s", dict)
        sender = self._ref_from_wire(sender_tree) if sender_tree is not None else None
        timestamp = _get(frame, "ts", (int, float))
        try:
            when = datetime.datetime.fromtimestamp(timestamp, _UTC)
        except (OverflowError, OSError, ValueError):
            raise _malformed("bad timestamp") from None
        return Envelope(
            id=_get(frame, "i", str),
            topic=topic,
            message=self.codec.from_wire(frame.get("m"), refs=self),
            timestamp=when,
            sender=sender,
            reply_to=reply_to,
            headers=headers,
            priority=_opt(frame, "p", int) or 0,
        )

    # ------------------------------------------------------------------ topics out

    def publish_nowait(
        self,
        topic: str,
        message: Any,
        *,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
        priority: int = 0,
    ) -> int:
        """Not available: publishing through Redis is network I/O, which cannot be done
        without waiting. Raises ``TypeError``; use ``await broker.publish(...)``."""
        raise TypeError(
            "RedisBroker.publish_nowait is not available: publishing goes through Redis, "
            "which needs I/O; use await broker.publish(...)"
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
        """Publish ``message`` on ``topic`` to every node's subscribers through Redis.

        Returns how many Redis subscriptions received it (0: nobody listened, recorded as
        a dead letter unless the topic is durable). Middleware runs here, on the
        publishing node. Raises :class:`InvalidTopic`, :class:`otp.CodecError` for a
        message that cannot be encoded or is larger than the codec's ``max_size``, and
        whatever a middleware stage raises. While Redis is unreachable the message becomes
        a dead letter (reason ``"noconnection"``) and 0 is returned.
        """
        _check_topic(topic)
        if priority:
            _check_priority(priority)
        if reply_to is not None:
            _check_topic(reply_to)
        self._require_node()
        await self._backend().checkpoint()
        self._published += 1
        envelope: Envelope | None = self._envelope(
            topic, message, sender, reply_to, headers, priority
        )
        if self._stages:
            assert envelope is not None
            envelope = await self._run_stages(envelope)
            if envelope is None:
                return 0
            _check_topic(envelope.topic)
        assert envelope is not None
        return await self._send_envelope(envelope)

    def _frame_of(self, envelope: Envelope) -> bytes:
        frame: dict[str, Any] = {
            "k": "pub",
            "i": envelope.id,
            "t": envelope.topic,
            "m": self.codec.to_wire(envelope.message, refs=self),
            "ts": envelope.timestamp.timestamp(),
            "f": self.node_name,
        }
        if envelope.sender is not None:
            frame["s"] = self._ref_to_wire(envelope.sender)
        if envelope.reply_to is not None:
            frame["r"] = envelope.reply_to
        if envelope.headers:
            frame["h"] = dict(envelope.headers)
        if envelope.priority:
            frame["p"] = envelope.priority
        return self._dumps(frame)

    def _dumps(self, frame: dict[str, Any]) -> bytes:
        data = self.codec.dumps(frame)
        if len(data) > self.codec.max_size:
            raise CodecError(
                "oversized",
                f"message of {len(data)} bytes exceeds the codec's max_size={self.codec.max_size}",
            )
        return data

    async def _send_envelope(self, envelope: Envelope) -> int:
        topic = envelope.topic
        data = self._frame_of(envelope)
        client = self._client
        durable = bool(self._durable) and any(p.match(topic.split(".")) for p in self._durable)
        if client is None or (not self._connected and not durable):
            self._dead_letter(DeadLetter(envelope.message, None, "noconnection", topic=topic))
            return 0
        try:
            if durable:
                await self._append(client, topic, data)
            received = await client.publish(self._channel(topic), data)
        except Exception as exc:
            logger.warning(
                "publish on %r failed: %s", topic, _describe(exc), extra={"otp_event": "publish"}
            )
            self._dead_letter(DeadLetter(envelope.message, None, "noconnection", topic=topic))
            return 0
        if not received and not durable:
            self._dead_letter(DeadLetter(envelope.message, None, "no_subscriber", topic=topic))
        return received

    async def _append(self, client: coredis.Redis[bytes], topic: str, data: bytes) -> None:
        if self.stream_maxlen is None:
            await client.xadd(self._stream_key(topic), {b"d": data})
        else:
            await client.xadd(
                self._stream_key(topic),
                {b"d": data},
                trim_strategy=coredis.PureToken.MAXLEN,
                threshold=self.stream_maxlen,
                trim_operator=coredis.PureToken.APPROXIMATELY,
            )

    # ------------------------------------------------------------------ request / reply

    async def request(
        self,
        topic: str,
        message: Any,
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """As :meth:`otp.InMemoryBroker.request`, across nodes: the reply comes back on
        this node's inbox. :class:`NoSubscriber` means no node listened to ``topic``."""
        _check_topic(topic)
        self._require_node()
        inbox = f"{_INBOX}{self.node_name}.{next(self._counter)}"
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

    # ------------------------------------------------------------------ subscriptions

    def subscribe(
        self, topic: str, *, mailbox: Mailbox | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        """Subscribe to ``topic`` (wildcards allowed) on every node, for the body of an
        ``async with``; the Redis subscription is confirmed when the block starts."""
        _check_pattern(topic)
        if mailbox is not None and not isinstance(mailbox, Mailbox):
            raise TypeError(f"mailbox must be an otp.Mailbox, not {mailbox!r}")
        return self._redis_subscription(topic, mailbox)

    @asynccontextmanager
    async def _redis_subscription(
        self, topic: str, mailbox: Mailbox | None
    ) -> AsyncIterator[Subscription]:
        self._require_node()
        sub = Subscription(topic, mailbox, on_drop=self._receiver_dropped)
        self._add(topic, sub)
        try:
            await self._retain(topic)
            yield sub
        finally:
            self._remove(topic, sub)
            sub._close(discard=True)
            self._release(topic)

    async def _subscribe_actor(self, ref: ActorRef, topic: str) -> None:
        _check_pattern(topic)
        mine = self._actor_subs.get(ref)
        if not ref._alive or (mine is not None and topic in mine):
            return
        await super()._subscribe_actor(ref, topic)
        if topic in self._actor_subs.get(ref, ()):
            await self._retain(topic)

    async def _unsubscribe_actor(self, ref: ActorRef, topic: str) -> None:
        if topic in self._actor_subs.get(ref, ()):
            await super()._unsubscribe_actor(ref, topic)
            self._release(topic)

    def _actor_exited(self, ref: ActorRef) -> None:
        topics = list(self._actor_subs.get(ref, ()))
        super()._actor_exited(ref)
        for topic in topics:
            self._release(topic)

    async def _retain(self, pattern: str) -> None:
        target = self._redis_target(pattern)
        if target is None:
            return
        count = self._want.get(target, 0)
        self._want[target] = count + 1
        if count:
            ready = self._ready.get(target)
            if ready is not None:
                with anyio.move_on_after(self._connect_timeout):
                    await ready.wait()
            return
        pubsub = self._pubsub
        if pubsub is None:
            return  # the listener subscribes when it (re)connects
        ready = self._ready[target] = anyio.Event()
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
                _describe(exc),
            )
            self._kick()
        finally:
            ready.set()
            if self._ready.get(target) is ready:
                del self._ready[target]

    def _release(self, pattern: str) -> None:
        target = self._redis_target(pattern)
        if target is None or target not in self._want:
            return
        count = self._want[target] - 1
        if count:
            self._want[target] = count
            return
        del self._want[target]
        self._post_local(("unsub", target))

    # ------------------------------------------------------------------ the outbox

    def _post_local(self, item: Any) -> None:
        self._outbox.append((time.monotonic(), item))
        self._outbox_wake.set()

    def _post(self, node: str, frame: dict[str, Any]) -> None:
        """Queue a control frame for ``node`` (from synchronous code); sent in order."""
        try:
            data = self._dumps(frame)
        except CodecError as error:
            logger.error("cannot encode a %r frame for node %r: %s", frame.get("k"), node, error)
            return
        self._post_local(("frame", self._node_channel(node), data))

    async def _outbox_loop(self) -> None:
        outbox = self._outbox
        while True:
            while outbox:
                queued_at, item = outbox[0]
                if item[0] == "flushed":
                    outbox.popleft()
                    item[1].set()
                    continue
                if item[0] == "unsub":
                    outbox.popleft()
                    await self._unsubscribe(item[1])
                    continue
                # A frame: while disconnected, wait; frames older than node_ttl are
                # dropped (the peers have counted this node as down by then).
                if time.monotonic() - queued_at > self.node_ttl:
                    outbox.popleft()
                    logger.info("dropped a stale %s frame queued while disconnected", item[1])
                    continue
                if not self._connected:
                    with anyio.move_on_after(self.heartbeat):
                        await self._connected_event.wait()
                    continue
                client = self._client
                assert client is not None
                try:
                    await client.publish(item[1], item[2])
                except Exception as exc:
                    logger.info("sending a control frame failed (%s); retrying", _describe(exc))
                    await anyio.sleep(self.backoff[0])
                    continue
                outbox.popleft()
            self._outbox_wake = anyio.Event()
            if not outbox:
                await self._outbox_wake.wait()

    async def _unsubscribe(self, target: tuple[bool, bytes]) -> None:
        pubsub = self._pubsub
        if pubsub is None or target in self._want:
            return
        glob, name = target
        try:
            if glob:
                await pubsub.punsubscribe(name)
            else:
                await pubsub.unsubscribe(name)
        except Exception as exc:
            logger.debug("unsubscribing %r failed: %s", name, _describe(exc))

    async def _flush(self, timeout: float) -> None:
        if self._task_group is None:
            return
        done = anyio.Event()
        self._post_local(("flushed", done))
        with anyio.move_on_after(timeout):
            await done.wait()

    # ------------------------------------------------------------------ liveness

    async def _heartbeat_loop(self) -> None:
        client = self._client
        assert client is not None
        key = self._node_key(self.node_name)
        ttl = int(self.node_ttl * 1000)
        while True:
            await anyio.sleep(self.heartbeat)
            try:
                with anyio.fail_after(max(self.heartbeat, self.node_ttl / 2)):
                    await client.set(key, self.incarnation, px=ttl)
                    await client.zadd(self._nodes_key, {self.node_name: time.time()})
                    peers = list(self._peers)
                    if peers:
                        found = await client.mget([self._node_key(p) for p in peers])
                        for peer, value in zip(peers, found):
                            self._check_peer(peer, value.decode() if value else None)
            except Exception as exc:
                logger.info("heartbeat failed: %s", _describe(exc))
                self._kick()

    def _check_peer(self, peer: str, incarnation: str | None) -> None:
        known = self._peers.get(peer, "?")
        if known == "?":
            return  # forgotten meanwhile
        if incarnation is None:
            self._nodedown(peer, known)
        elif known is None:
            self._peers[peer] = incarnation
        elif known != incarnation:
            self._nodedown(peer, known)
            self._peers[peer] = incarnation

    def _watch(self, node: str, incarnation: str | None) -> None:
        if node == self.node_name:
            return
        known = self._peers.get(node, "?")
        if known == "?" or known is None:
            self._peers[node] = incarnation
        if incarnation is not None and self._down.get(node, incarnation) != incarnation:
            del self._down[node]  # a new incarnation is up

    def _saw(self, frame: Mapping[str, Any]) -> None:
        """A frame from a peer: learn its incarnation; a new one means the old is down."""
        peer = frame.get("f")
        incarnation = frame.get("fi")
        if type(peer) is not str or peer == self.node_name or type(incarnation) is not str:
            return
        known = self._peers.get(peer, "?")
        if known not in ("?", None, incarnation):
            self._nodedown(peer, known)
        if known != incarnation and peer in self._peers:
            self._peers[peer] = incarnation
        if self._down.get(peer, incarnation) != incarnation:
            del self._down[peer]  # a new incarnation is up

    def _nodedown(self, peer: str, incarnation: str | None, *, left: bool = False) -> None:
        self._peers.pop(peer, None)
        self._down[peer] = incarnation if incarnation is not None else "*"
        logger.log(
            logging.INFO if left else logging.WARNING,
            "node %r is down (%s)",
            peer,
            "it left" if left else f"no heartbeat within {self.node_ttl:g}s",
            extra={"otp_event": "nodedown", "otp_node": peer},
        )
        self._emit("nodedown", detail=peer)
        for pending in list(self._calls.values()):
            if pending.ref.node == peer:
                pending.promise.fail(_exited(pending.ref, "nodedown"))
        for gather in list(self._gathers.values()):
            if peer in gather.asked:
                gather.miss()
        for mid, (_, ref, _, _) in list(self._mon_out.items()):
            if ref.node == peer:
                self._fire_monitor(mid, "nodedown", tell=False)
        for key in [k for k in self._mon_in if k[0] == peer]:
            actor, monitor = self._mon_in.pop(key)
            actor._monitors.pop(monitor, None)

    def _remote_node_alive(self, ref: RemoteRef) -> bool:
        # By-name refs reach whichever incarnation runs now: the network decides.
        if ref.incarnation is None:
            return True
        down = self._down.get(ref.node)
        return down is None or (down != "*" and down != ref.incarnation)

    async def _say_goodbye(self) -> None:
        client = self._client
        if client is None:
            return
        data = self._dumps({"k": "bye", "f": self.node_name, "fi": self.incarnation})
        for peer in sorted(set(self._peers) | {peer for peer, _ in self._mon_in}):
            try:
                await client.publish(self._node_channel(peer), data)
            except Exception:
                break
        try:
            await client.delete([self._node_key(self.node_name)])
            await client.zrem(self._nodes_key, [self.node_name])
        except Exception as exc:
            logger.debug("leaving Redis cleanly failed: %s", _describe(exc))

    async def nodes(self) -> list[str]:
        """The names of the live nodes under this prefix (this one included), sorted."""
        self._require_node()
        client = self._client
        assert client is not None
        members = [m.decode() for m in await client.zrange(self._nodes_key, 0, -1)]
        if not members:
            return []
        values = await client.mget([self._node_key(m) for m in members])
        live = sorted(m for m, v in zip(members, values) if v is not None)
        stale = [m for m, v in zip(members, values) if v is None]
        if stale:
            # Forget nodes that are gone (their key expired); re-added when they return.
            cutoff = time.time() - 60 * self.node_ttl
            scores = await client.zmscore(self._nodes_key, stale)
            old = [m for m, s in zip(stale, scores) if s is not None and s < cutoff]
            if old:
                await client.zrem(self._nodes_key, old)
        return live

    # ------------------------------------------------------------------ refs on the wire

    def _ref_to_wire(self, ref: Any) -> dict[str, Any]:
        if isinstance(ref, RemoteRef):
            if ref._transport is not self and ref.node != self.node_name:
                pass  # a ref another broker made: its coordinates still hold
            return {"n": ref.node, "i": ref.incarnation, "a": ref.id, "nm": ref.name}
        if isinstance(ref, ActorRef):
            if self._node is None or ref._node is not self._node:
                raise CodecError(
                    "unencodable", f"{ref!r} belongs to another node than this broker's"
                )
            self._exported[ref.id] = ref
            return {"n": self.node_name, "i": self.incarnation, "a": ref.id, "nm": ref.name}
        raise CodecError("unencodable", f"{ref!r} is not an actor ref")

    def _ref_from_wire(self, tree: dict[str, Any]) -> Any:
        node = _get(tree, "n", str)
        incarnation = _opt(tree, "i", str)
        actor_id = _opt(tree, "a", int)
        name = _opt(tree, "nm", str)
        if actor_id is None and name is None:
            raise _malformed("an actor ref needs a name or an id")
        if node == self.node_name and incarnation in (None, self.incarnation):
            local = self._resolve_local({"nm": name, "a": actor_id, "i": incarnation})
            if local is not None:
                return local
            ref = RemoteRef(self, node, name, actor_id, incarnation)
            ref._mark_exited("noproc")
            return ref
        return RemoteRef(self, node, name, actor_id, incarnation)

    def _target_of(self, ref: RemoteRef) -> dict[str, Any]:
        return {"nm": ref.name, "a": ref.id, "i": ref.incarnation}

    def _resolve_local(self, to: Mapping[str, Any]) -> ActorRef | None:
        node = self._node
        if node is None:
            return None
        incarnation = to.get("i")
        if incarnation is not None and incarnation != self.incarnation:
            return None
        actor_id = to.get("a")
        name = to.get("nm")
        ref: Any = None
        if actor_id is not None:
            ref = self._exported.get(actor_id)
            if ref is None and isinstance(name, str):
                held = node.whereis(name)
                if held is not None and held.id == actor_id:
                    ref = held
        elif isinstance(name, str):
            ref = node.whereis(name)
        if ref is None or not ref._alive:
            return None
        return ref  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ remote refs

    def remote(self, name: str, node: str) -> RemoteRef:
        """A ref to whatever actor is registered as ``name`` on ``node`` when a message
        arrives (Erlang's ``{Name, Node}``); nothing is asked over the network."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"an actor name must be a non-empty str, not {name!r}")
        _check_node_name(node)
        return RemoteRef(self, node, name)

    async def whereis(
        self, name: str, *, node: str | None = None, timeout: float = 2.0
    ) -> ActorRef | RemoteRef | None:
        """The actor registered as ``name``: on this node first (its local
        :class:`otp.ActorRef`), else on ``node`` or, without one, on any live node (a
        :class:`RemoteRef` pinned to that incarnation); ``None`` if no node has it or none
        answered within ``timeout`` seconds. With several holders, the first answer wins:
        pass ``node`` to choose."""
        local_node = self._require_node()
        if node is None or node == self.node_name:
            local = local_node.whereis(name)
            if local is not None:
                self._exported[local.id] = local
                return local  # type: ignore[no-any-return]
            if node is not None:
                return None
            asked = set(await self.nodes()) - {self.node_name}
        else:
            asked = {_check_node_name(node)}
        if not asked or not self._connected:
            return None
        client = self._client
        assert client is not None
        cid = next(self._counter)
        gather = _Gather(self._backend().promise(), asked)
        self._gathers[cid] = gather
        data = self._dumps(
            {"k": "whereis", "c": cid, "nm": name, "f": self.node_name, "fi": self.incarnation}
        )
        try:
            for peer in sorted(asked):
                try:
                    received = await client.publish(self._node_channel(peer), data)
                except Exception:
                    received = 0
                if not received:
                    gather.miss()
            try:
                found: RemoteRef | None = await gather.promise.wait(timeout)
            except Expired:
                return None
        finally:
            self._gathers.pop(cid, None)
        if found is not None:
            self._watch(found.node, found.incarnation)
        return found

    async def _publish_control(self, node: str, frame: dict[str, Any]) -> int:
        client = self._client
        if client is None or not self._connected:
            return -1
        data = self._dumps(frame)
        if self._outbox:
            # Frames queued from synchronous code (monitors, casts) go first: what one node
            # sends another arrives in the order it was sent.
            await self._flush(self.node_ttl)
        try:
            return await client.publish(self._node_channel(node), data)
        except Exception as exc:
            logger.info("sending to node %r failed: %s", node, _describe(exc))
            return -1

    def _unreachable(self, ref: RemoteRef) -> str | None:
        if ref._exit_reason is not None:
            return None
        if not self._remote_node_alive(ref):
            return "nodedown"
        if not self._connected:
            return "noconnection"
        return None

    async def _remote_call(self, ref: RemoteRef, request: Any, timeout: float | None) -> Any:
        await self._backend().checkpoint()
        if ref._exit_reason is not None:
            raise _exited(ref, ref._exit_reason)
        why = self._unreachable(ref)
        if why is not None:
            raise _exited(ref, why)
        tree = self.codec.to_wire(request, refs=self)
        cid = next(self._counter)
        promise = self._backend().promise()
        self._calls[cid] = _Pending(promise, ref, request)
        self._watch(ref.node, ref.incarnation)
        try:
            received = await self._publish_control(
                ref.node,
                {
                    "k": "call",
                    "c": cid,
                    "to": self._target_of(ref),
                    "m": tree,
                    "tm": timeout,
                    "f": self.node_name,
                    "fi": self.incarnation,
                },
            )
            if received <= 0:
                raise _exited(ref, "noconnection" if received < 0 else "nodedown")
            try:
                return await promise.wait(timeout)
            except Expired:
                raise CallTimeout(ref, timeout or 0.0, request) from None
        finally:
            self._calls.pop(cid, None)

    def _post_frame(self, ref: RemoteRef, kind: str, message: Any) -> dict[str, Any]:
        return {
            "k": kind,
            "to": self._target_of(ref),
            "m": self.codec.to_wire(message, refs=self),
            "f": self.node_name,
            "fi": self.incarnation,
        }

    async def _remote_post(self, ref: RemoteRef, kind: str, message: Any) -> None:
        await self._backend().checkpoint()
        frame = self._post_frame(ref, kind, message)
        why = "noproc" if ref._exit_reason is not None else self._unreachable(ref)
        if why is None:
            received = await self._publish_control(ref.node, frame)
            if received > 0:
                return
            why = "noconnection" if received < 0 else "nodedown"
        self._dead_letter(DeadLetter(message, ref, why))

    def _remote_post_nowait(self, ref: RemoteRef, kind: str, message: Any) -> None:
        frame = self._post_frame(ref, kind, message)
        if ref._exit_reason is not None or not self._remote_node_alive(ref):
            self._dead_letter(DeadLetter(message, ref, "noproc"))
            return
        self._post(ref.node, frame)

    async def _remote_stop(self, ref: RemoteRef, reason: Any, timeout: float | None) -> None:
        await self._backend().checkpoint()
        if ref._exit_reason is not None or not self._remote_node_alive(ref):
            return
        if not self._connected:
            raise CallTimeout(ref, timeout or 0.0, "stop")
        cid = next(self._counter)
        promise = self._backend().promise()
        self._calls[cid] = _Pending(promise, ref, "stop")
        self._watch(ref.node, ref.incarnation)
        try:
            received = await self._publish_control(
                ref.node,
                {
                    "k": "stop",
                    "c": cid,
                    "to": self._target_of(ref),
                    "why": _reason_to_wire(self.codec, reason, self.node_name, self),
                    "f": self.node_name,
                    "fi": self.incarnation,
                },
            )
            if received == 0:
                return  # nobody there: it is not running
            if received < 0:
                raise CallTimeout(ref, timeout or 0.0, "stop")
            try:
                await promise.wait(timeout)
            except Expired:
                raise CallTimeout(ref, timeout or 0.0, "stop") from None
            except ActorExited:
                return
        finally:
            self._calls.pop(cid, None)

    def _remote_monitor(
        self, ref: RemoteRef, deliver: Callable[[Down], None], watcher: ActorRef | None
    ) -> MonitorRef:
        monitor = MonitorRef(next(self._counter), ref)  # type: ignore[arg-type]
        reason: Any = None
        if ref._exit_reason is not None:
            reason = ref._exit_reason
        elif not self._remote_node_alive(ref):
            reason = "nodedown"
        elif not self._connected:
            reason = "noconnection"
        if reason is not None:
            deliver(Down(ref, reason, monitor))  # type: ignore[arg-type]
            return monitor
        self._mon_out[monitor.id] = (deliver, ref, watcher, monitor)
        self._watch(ref.node, ref.incarnation)
        self._post(
            ref.node,
            {
                "k": "mon",
                "mid": monitor.id,
                "to": self._target_of(ref),
                "f": self.node_name,
                "fi": self.incarnation,
            },
        )
        return monitor

    def _remote_demonitor(self, monitor: MonitorRef) -> bool:
        entry = self._mon_out.pop(monitor.id, None)
        if entry is None:
            return False
        ref = entry[1]
        self._post(
            ref.node, {"k": "demon", "mid": monitor.id, "f": self.node_name, "fi": self.incarnation}
        )
        return True

    def _fire_monitor(self, mid: int, reason: Any, *, tell: bool) -> None:
        entry = self._mon_out.pop(mid, None)
        if entry is None:
            return
        deliver, ref, watcher, monitor = entry
        if reason not in ("nodedown", "noconnection"):
            ref._mark_exited(reason)
        if watcher is not None:
            watcher._watching.pop(monitor, None)
        if tell:  # the remote side may still hold it
            self._post(
                ref.node, {"k": "demon", "mid": mid, "f": self.node_name, "fi": self.incarnation}
            )
        deliver(Down(ref, reason, monitor))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ control frames in

    def _on_control(self, data: bytes) -> None:
        try:
            frame = self.codec.loads(data)
            if type(frame) is not dict:
                raise _malformed("a control frame is a map")
            kind = _get(frame, "k", str)
            self._saw(frame)
            if kind in ("call", "cast", "send", "stop"):
                _get(frame, "to", dict)
                _get(frame, "f", str)
                self._actor_lane.append(frame)
                self._actor_wake.set()
            elif kind == "reply":
                self._on_reply(frame)
            elif kind == "mon":
                self._on_monitor(frame)
            elif kind == "demon":
                entry = self._mon_in.pop((_get(frame, "f", str), _get(frame, "mid", int)), None)
                if entry is not None:
                    entry[0]._monitors.pop(entry[1], None)
            elif kind == "down":
                mid = _get(frame, "mid", int)
                reason = _reason_from_wire(self.codec, frame.get("why"), self)
                self._fire_monitor(mid, reason, tell=False)
            elif kind == "whereis":
                self._on_whereis(frame)
            elif kind == "where":
                self._on_where(frame)
            elif kind == "bye":
                peer = _get(frame, "f", str)
                if peer in self._peers:
                    self._nodedown(peer, _opt(frame, "fi", str), left=True)
            else:
                raise _malformed(f"unknown frame kind {kind!r}")
        except CodecError as error:
            self._wire_error(error, data, None)

    def _on_reply(self, frame: Mapping[str, Any]) -> None:
        pending = self._calls.get(_get(frame, "c", int))
        if pending is None:
            return  # the caller gave up: a late reply is dropped, as locally
        ref = pending.ref
        if "ok" in frame:
            value = self.codec.from_wire(frame["ok"], refs=self)
            pending.promise.resolve(value)
        elif "exit" in frame:
            reason = _reason_from_wire(self.codec, frame["exit"], self)
            if reason == "noproc":
                ref._mark_exited("noproc")
            elif ref.id is not None:
                ref._mark_exited(reason)
            pending.promise.fail(_exited(ref, reason))
        elif "full" in frame:
            info = _get(frame, "full", list)
            capacity = info[0] if info and type(info[0]) is int else None
            try:
                overflow: Any = Overflow(info[1])
            except (IndexError, ValueError):
                overflow = None
            pending.promise.fail(MailboxFull(ref, capacity, overflow))
        elif "err" in frame:
            pending.promise.fail(CodecError("unencodable", str(frame["err"])))
        else:
            raise _malformed("a reply without a result")

    def _on_monitor(self, frame: Mapping[str, Any]) -> None:
        peer = _get(frame, "f", str)
        mid = _get(frame, "mid", int)
        target = self._resolve_local(_get(frame, "to", dict))
        self._watch(peer, _opt(frame, "fi", str))
        if target is None:
            self._post(peer, self._down_frame(mid, "noproc"))
            return

        def deliver(down: Down) -> None:
            if self._mon_in.pop((peer, mid), None) is not None:
                self._post(peer, self._down_frame(mid, down.reason))

        self._mon_in[(peer, mid)] = (target, None)  # type: ignore[assignment]
        local = target._add_monitor(deliver)
        if (peer, mid) in self._mon_in:
            self._mon_in[(peer, mid)] = (target, local)

    def _down_frame(self, mid: int, reason: Any) -> dict[str, Any]:
        return {
            "k": "down",
            "mid": mid,
            "why": _reason_to_wire(self.codec, reason, self.node_name, self),
            "f": self.node_name,
            "fi": self.incarnation,
        }

    def _on_whereis(self, frame: Mapping[str, Any]) -> None:
        peer = _get(frame, "f", str)
        name = _get(frame, "nm", str)
        node = self._node
        ref = node.whereis(name) if node is not None else None
        if ref is not None:
            self._exported[ref.id] = ref
        self._post(
            peer,
            {
                "k": "where",
                "c": _get(frame, "c", int),
                "nm": name,
                "a": ref.id if ref is not None else None,
                "f": self.node_name,
                "fi": self.incarnation,
            },
        )

    def _on_where(self, frame: Mapping[str, Any]) -> None:
        gather = self._gathers.get(_get(frame, "c", int))
        if gather is None:
            return
        actor_id = _opt(frame, "a", int)
        if actor_id is None:
            gather.miss()
            return
        gather.promise.resolve(
            RemoteRef(
                self,
                _get(frame, "f", str),
                _get(frame, "nm", str),
                actor_id,
                _opt(frame, "fi", str),
            )
        )

    # ------------------------------------------------------------------ actors in

    async def _actor_lane_loop(self) -> None:
        lane = self._actor_lane
        while True:
            while lane:
                frame = lane.popleft()
                try:
                    await self._on_actor_frame(frame)
                except CodecError as error:
                    self._wire_error(error, b"", None)
            self._actor_wake = anyio.Event()
            if not lane:
                await self._actor_wake.wait()

    async def _on_actor_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["k"]
        peer: str = frame["f"]
        target = self._resolve_local(frame["to"])
        if kind == "stop":
            cid = _get(frame, "c", int)
            reason = _reason_from_wire(self.codec, frame.get("why"), self)
            if target is None:
                await self._answer_frame(peer, {"k": "reply", "c": cid, "ok": None})
            else:
                assert self._task_group is not None
                self._task_group.start_soon(self._stop_for, peer, cid, target, reason)
            return
        message = self.codec.from_wire(frame.get("m"), refs=self)
        if kind == "call":
            await self._call_for(peer, frame, target, message)
            return
        if target is None:
            self._dead_letter(
                DeadLetter(message, frame["to"].get("nm") or frame["to"].get("a"), "noproc")
            )
            return
        try:
            if kind == "cast":
                await target.cast(message)
            else:
                await target.send(message)
        except MailboxFull:
            self._dead_letter(DeadLetter(message, target, "mailbox_full"))

    async def _call_for(
        self, peer: str, frame: dict[str, Any], target: ActorRef | None, request: Any
    ) -> None:
        cid = _get(frame, "c", int)
        timeout = _opt(frame, "tm", (int, float))
        if target is None:
            await self._answer_frame(peer, self._exit_reply(cid, "noproc"))
            return
        # Enqueue in arrival order (a cast then a call from one sender stay in order);
        # the reply is awaited in a task of its own.
        backend: Backend = target._backend
        caller = backend.promise()
        item = (CALL, request, caller)
        mailbox = target._mailbox
        try:
            mailbox.put(item)
        except Full:
            if mailbox._overflow is not Overflow.BLOCK:
                await self._answer_frame(
                    peer,
                    {"k": "reply", "c": cid, "full": [mailbox._capacity, mailbox._overflow.value]},
                )
                return
            if not await mailbox.put_blocking(item, backend):
                await self._answer_frame(peer, self._exit_reply(cid, target.exit_reason))
                return
        assert self._task_group is not None
        self._task_group.start_soon(self._reply_for, peer, cid, caller, timeout)

    def _exit_reply(self, cid: int, reason: Any) -> dict[str, Any]:
        return {
            "k": "reply",
            "c": cid,
            "exit": _reason_to_wire(self.codec, reason, self.node_name, self),
        }

    async def _reply_for(self, peer: str, cid: int, caller: Promise, timeout: float | None) -> None:
        try:
            value = await caller.wait(None if timeout is None else timeout + 1.0)
        except Expired:
            return  # the caller has given up too
        except ActorExited as exc:
            await self._answer_frame(peer, self._exit_reply(cid, exc.reason))
            return
        except MailboxFull as exc:
            policy = exc.policy.value if isinstance(exc.policy, Overflow) else None
            await self._answer_frame(peer, {"k": "reply", "c": cid, "full": [exc.capacity, policy]})
            return
        try:
            tree = self.codec.to_wire(value, refs=self)
        except CodecError as error:
            logger.error("the reply to a call from node %r cannot be encoded: %s", peer, error)
            await self._answer_frame(peer, {"k": "reply", "c": cid, "err": str(error)})
            return
        await self._answer_frame(peer, {"k": "reply", "c": cid, "ok": tree})

    async def _stop_for(self, peer: str, cid: int, target: ActorRef, reason: Any) -> None:
        await target.stop(reason)
        await self._answer_frame(peer, {"k": "reply", "c": cid, "ok": None})

    async def _answer_frame(self, peer: str, frame: dict[str, Any]) -> None:
        frame["f"] = self.node_name
        frame["fi"] = self.incarnation
        if await self._publish_control(peer, frame) < 0:
            self._post(peer, frame)  # retried once connected again

    # ------------------------------------------------------------------ streams

    def consume(
        self,
        topic: str,
        group: str,
        *,
        consumer: str | None = None,
        mailbox: Mailbox | None = None,
        start: str = "0",
        claim_after: float = 30.0,
        batch: int = 100,
    ) -> AbstractAsyncContextManager[StreamSubscription]:
        """Consume the durable ``topic`` as a member of consumer ``group``, for the body of
        an ``async with``; yields a :class:`StreamSubscription`.

        At-least-once and work sharing: each entry goes to one consumer of the group and
        stays pending until :meth:`StreamSubscription.ack`; entries a consumer left
        unacknowledged for ``claim_after`` seconds are claimed by another consumer and
        delivered again (so a handler must tolerate duplicates). ``start`` is where a new
        group begins (``"0"``: everything the stream holds, ``"$"``: only new entries);
        ``consumer`` names this member (default: unique per subscription). The topic must
        be concrete and match one of the broker's ``durable`` patterns (on every node).
        """
        _check_topic(topic)
        if not any(p.match(topic.split(".")) for p in self._durable):
            raise ValueError(
                f"topic {topic!r} is not durable; list a pattern matching it in "
                "RedisBroker(durable=[...]) on every node so publishes are kept in a stream"
            )
        if not isinstance(group, str) or not group:
            raise TypeError(f"group must be a non-empty str, not {group!r}")
        if mailbox is not None and not isinstance(mailbox, Mailbox):
            raise TypeError(f"mailbox must be an otp.Mailbox, not {mailbox!r}")
        return self._consumer(topic, group, consumer, mailbox, start, claim_after, batch)

    @asynccontextmanager
    async def _consumer(
        self,
        topic: str,
        group: str,
        consumer: str | None,
        mailbox: Mailbox | None,
        start: str,
        claim_after: float,
        batch: int,
    ) -> AsyncIterator[StreamSubscription]:
        self._require_node()
        client = self._client
        assert client is not None
        key = self._stream_key(topic)
        name = consumer or f"{self.node_name}-{next(self._counter)}"
        try:
            await client.xgroup_create(key, group, start, mkstream=True)
        except StreamDuplicateConsumerGroupError:
            pass

        async def ack(entry_id: str) -> None:
            live = self._client
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
        low, high = self.backoff
        delay = low
        backlog = True  # first, this consumer's own pending entries (after a restart)
        cursor = "0"
        next_claim = 0.0
        claim_ms = max(1, int(claim_after * 1000))
        while True:
            client = self._client
            if client is None:
                return
            try:
                entries: list[Any] = []
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + max(claim_after / 2, 0.05)
                    claimed = await client.xautoclaim(
                        key, sub.group, sub.consumer, claim_ms, "0-0", count=batch
                    )
                    entries.extend(claimed[1] if claimed else ())
                if not entries:
                    got = await client.xreadgroup(
                        sub.group,
                        sub.consumer,
                        streams={key: cursor if backlog else ">"},
                        count=batch,
                        block=None if backlog else max(1, int(min(claim_after / 2, 1.0) * 1000)),
                    )
                    found = list(got.get(key, ())) if got else []
                    if backlog:
                        if found:
                            last = found[-1].identifier
                            cursor = last.decode() if isinstance(last, bytes) else str(last)
                        else:
                            backlog = False
                    entries.extend(found)
                delay = low
            except Exception as exc:
                logger.warning("reading stream %r failed (%s); retrying", key, _describe(exc))
                await anyio.sleep(delay * (0.5 + random.random()))
                delay = min(high, delay * 2)
                continue
            for entry in entries:
                if entry is None or not entry.field_values:
                    continue  # deleted (trimmed) while pending
                await self._offer_entry(sub, key, entry)

    async def _offer_entry(self, sub: StreamSubscription, key: bytes, entry: Any) -> None:
        entry_id = entry.identifier
        entry_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        data = entry.field_values.get(b"d", b"")
        try:
            envelope = attrs.evolve(self._decode_pub(sub.topic, data), id=entry_id)
        except CodecError as error:
            self._wire_error(error, data, sub.topic)
            client = self._client
            if client is not None:
                await client.xack(key, sub.group, [entry_id])  # never redelivered
            return
        if sub._offer(envelope) == _WAIT:  # a full BLOCK buffer: wait for room
            await sub._offer_blocking(envelope)


# ---------------------------------------------------------------------------- helpers


def _exited(ref: RemoteRef, reason: Any) -> ActorExited:
    error = ActorExited(ref, reason)
    if isinstance(reason, BaseException):
        error.__cause__ = reason
    return error


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "closed"
    if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        return _describe(error.exceptions[0])
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
