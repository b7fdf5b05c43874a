"""The Redis broker: the in-memory broker's local machinery, carried across nodes by the
session, membership, remote actors and streams it composes."""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from .._actor import ActorRef
from .._broker import (
    DeadLetter,
    Envelope,
    Subscription,
    _check_pattern,
    _check_priority,
    _check_topic,
    _Waiter,
)
from .._codec import Codec, JsonCodec, Undecodable
from .._exceptions import CodecError, InvalidTopic, NoSubscriber, RequestTimeout
from .._mailbox import Mailbox
from .._remote import RemoteRef
from ._cluster import ClusterPrimitives
from ._frames import get, malformed, opt
from ._membership import Membership
from ._naming import INBOX, Names, check_node_name
from ._remote import RemoteActors
from ._session import Session, describe
from ._streams import Streams, StreamSubscription

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["RedisBroker"]

logger = logging.getLogger("otp.redis")

_UTC = datetime.UTC


class RedisBroker(ClusterPrimitives):
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
        self.names = Names(prefix)
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
        client_kwargs: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "decode_responses": False,
            **(client_options or {}),
        }
        if username is not None:
            client_kwargs["username"] = username
        if password is not None:
            client_kwargs["password"] = password
        context = ssl_context
        if context is None and (ssl or ssl_ca_certs or ssl_certfile):
            context = _ssl.create_default_context(cafile=ssl_ca_certs)
            if ssl_certfile is not None:
                context.load_cert_chain(ssl_certfile, ssl_keyfile)
            if not ssl_check_hostname:
                context.check_hostname = False
        if context is not None:
            client_kwargs["ssl_context"] = context
        #: This node's name on Redis (set when the node enters).
        self.node_name = ""
        #: A random id of this node's run: a restarted node has a new one.
        self.incarnation = os.urandom(6).hex()
        #: Payloads refused by the codec so far.
        self.wire_errors = 0
        self._node: Node | None = None
        self._counter = itertools.count(1)
        self._control_channel = b""
        self.streams = Streams(self, durable, stream_maxlen)
        self.session = Session(
            self,
            url=url,
            client_kwargs=client_kwargs,
            connect_timeout=connect_timeout,
            heartbeat=self.heartbeat,
            node_ttl=self.node_ttl,
            backoff=self.backoff,
        )
        self.membership = Membership(self)
        self.remote_actors = RemoteActors(self)
        self._topic_lane: deque[tuple[str, bytes]] = deque()
        self._topic_wake = anyio.Event()

    def __repr__(self) -> str:
        state = "connected" if self.session.connected else "disconnected"
        return (
            f"<RedisBroker {self.node_name or '(no node)'!r} prefix={self.prefix!r} {state} "
            f"patterns={len(self._subs)}>"
        )

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """``True`` while the node's pub/sub connection to Redis is up."""
        return self.session.connected

    @property
    def reconnects(self) -> int:
        """Reconnections so far."""
        return self.session.reconnects

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected; ``False`` if ``timeout`` seconds passed first."""
        return await self.session.wait_connected(timeout)

    def _require_node(self) -> Node:
        if self._node is None or self.session.client is None:
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
        self.node_name = check_node_name(name)
        self._control_channel = self.names.control(self.node_name)
        await super()._attach(node)
        self._node = node
        session = self.session
        session.start_error = None
        try:
            await node._task_group.start(
                session.run,
                (self._topic_lane_loop, self.remote_actors.lane_loop, self._cluster_loop),
            )
        except BaseException:
            self._node = None
            await super()._detach(node)
            raise
        if session.start_error is not None:
            self._node = None
            await super()._detach(node)
            raise session.start_error
        await self._cluster_started()

    async def _detach(self, node: Node) -> None:
        if node is not self._node:
            return
        session = self.session
        try:
            # The node's actors have exited: their Down notices and last replies are
            # queued; send them, tell the peers, then leave.
            await self._cluster_flush(min(2.0, self.node_ttl))
            await session.flush(min(2.0, self.node_ttl))
            with anyio.move_on_after(1.0):
                await self.membership.say_goodbye({peer for peer, _ in self.remote_actors.mon_in})
        finally:
            session.stopping.set()
            with anyio.move_on_after(5.0):
                await session.stopped.wait()
            self._node = None
            await super()._detach(node)

    def _connection_lost(self, error: BaseException | None) -> None:
        logger.warning(
            "node %r lost its Redis connection (%s); reconnecting with backoff. Until then "
            "pub/sub messages for this node are lost, calls fail with 'noconnection' and "
            "remote monitors fire with 'noconnection'",
            self.node_name,
            describe(error),
            extra={"otp_event": "broker_disconnected", "otp_reason": error},
        )
        self._emit("broker_disconnected", reason=error)
        self.remote_actors.connection_lost()

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

    def _dumps(self, frame: dict[str, Any]) -> bytes:
        data = self.codec.dumps(frame)
        if len(data) > self.codec.max_size:
            raise CodecError(
                "oversized",
                f"message of {len(data)} bytes exceeds the codec's max_size={self.codec.max_size}",
            )
        return data

    # ------------------------------------------------------------------ topics in

    def _on_topic(self, topic: str, data: bytes) -> None:
        self._topic_lane.append((topic, data))
        self._topic_wake.set()

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
        refs = self.remote_actors
        frame = self.codec.loads(data)
        if type(frame) is not dict or frame.get("k") != "pub":
            raise malformed("not an anyotp publish frame")
        if get(frame, "t", str) != topic:
            raise malformed(f"frame topic {frame.get('t')!r} differs from its channel")
        self.membership.saw(frame)
        reply_to = opt(frame, "r", str)
        if reply_to is not None:
            try:
                _check_topic(reply_to)
            except InvalidTopic as exc:
                raise malformed(str(exc)) from None
        headers = opt(frame, "h", dict) or {}
        if not all(type(k) is str and type(v) is str for k, v in headers.items()):
            raise malformed("headers must map str to str")
        sender_tree = opt(frame, "s", dict)
        sender = refs._ref_from_wire(sender_tree) if sender_tree is not None else None
        timestamp = get(frame, "ts", (int, float))
        try:
            when = datetime.datetime.fromtimestamp(timestamp, _UTC)
        except (OverflowError, OSError, ValueError):
            raise malformed("bad timestamp") from None
        return Envelope(
            id=get(frame, "i", str),
            topic=topic,
            message=self.codec.from_wire(frame.get("m"), refs=refs),
            timestamp=when,
            sender=sender,
            reply_to=reply_to,
            headers=headers,
            priority=opt(frame, "p", int) or 0,
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
        refs = self.remote_actors
        frame: dict[str, Any] = {
            "k": "pub",
            "i": envelope.id,
            "t": envelope.topic,
            "m": self.codec.to_wire(envelope.message, refs=refs),
            "ts": envelope.timestamp.timestamp(),
            "f": self.node_name,
        }
        if envelope.sender is not None:
            frame["s"] = refs._ref_to_wire(envelope.sender)
        if envelope.reply_to is not None:
            frame["r"] = envelope.reply_to
        if envelope.headers:
            frame["h"] = dict(envelope.headers)
        if envelope.priority:
            frame["p"] = envelope.priority
        return self._dumps(frame)

    async def _send_envelope(self, envelope: Envelope) -> int:
        topic = envelope.topic
        data = self._frame_of(envelope)
        session = self.session
        client = session.client
        durable = self.streams.is_durable(topic)
        if client is None or (not session.connected and not durable):
            self._dead_letter(DeadLetter(envelope.message, None, "noconnection", topic=topic))
            return 0
        try:
            if durable:
                await self.streams.append(client, topic, data)
            received: int = await client.publish(self.names.topic(topic), data)
        except Exception as exc:
            logger.warning(
                "publish on %r failed: %s", topic, describe(exc), extra={"otp_event": "publish"}
            )
            self._dead_letter(DeadLetter(envelope.message, None, "noconnection", topic=topic))
            return 0
        if not received and not durable:
            self._dead_letter(DeadLetter(envelope.message, None, "no_subscriber", topic=topic))
        return received

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
        inbox = f"{INBOX}{self.node_name}.{next(self._counter)}"
        waiter = _Waiter(self._backend().promise(), self._receiver_dropped)
        self._add(inbox, waiter)
        try:
            with anyio.move_on_after(float("inf") if timeout is None else timeout):
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
            await self.session.retain(topic)
            yield sub
        finally:
            self._remove(topic, sub)
            sub._close(discard=True)
            self.session.release(topic)

    async def _subscribe_actor(self, ref: ActorRef, topic: str) -> None:
        _check_pattern(topic)
        mine = self._actor_subs.get(ref)
        if not ref._alive or (mine is not None and topic in mine):
            return
        await super()._subscribe_actor(ref, topic)
        if topic in self._actor_subs.get(ref, ()):
            await self.session.retain(topic)

    async def _unsubscribe_actor(self, ref: ActorRef, topic: str) -> None:
        if topic in self._actor_subs.get(ref, ()):
            await super()._unsubscribe_actor(ref, topic)
            self.session.release(topic)

    def _actor_exited(self, ref: ActorRef) -> None:
        topics = list(self._actor_subs.get(ref, ()))
        super()._actor_exited(ref)
        for topic in topics:
            self.session.release(topic)

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
        if not self.streams.is_durable(topic):
            raise ValueError(
                f"topic {topic!r} is not durable; list a pattern matching it in "
                "RedisBroker(durable=[...]) on every node so publishes are kept in a stream"
            )
        if not isinstance(group, str) or not group:
            raise TypeError(f"group must be a non-empty str, not {group!r}")
        if mailbox is not None and not isinstance(mailbox, Mailbox):
            raise TypeError(f"mailbox must be an otp.Mailbox, not {mailbox!r}")
        return self.streams.consumer(topic, group, consumer, mailbox, start, claim_after, batch)

    # ------------------------------------------------------------------ nodes and refs

    async def nodes(self) -> list[str]:
        """The names of the live nodes under this prefix (this one included), sorted."""
        self._require_node()
        return await self.membership.nodes()

    def remote(self, name: str, node: str) -> RemoteRef:
        """A ref to whatever actor is registered as ``name`` on ``node`` when a message
        arrives (Erlang's ``{Name, Node}``); nothing is asked over the network."""
        return self.remote_actors.remote(name, node)

    async def whereis(
        self, name: str, *, node: str | None = None, timeout: float = 2.0
    ) -> ActorRef | RemoteRef | None:
        """The actor registered as ``name``: on this node first (its local
        :class:`otp.ActorRef`), else on ``node`` or, without one, on any live node (a
        :class:`RemoteRef` pinned to that incarnation); ``None`` if no node has it or none
        answered within ``timeout`` seconds. With several holders, the first answer wins:
        pass ``node`` to choose."""
        return await self.remote_actors.whereis(name, node, timeout)
