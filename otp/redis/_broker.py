"""The Redis broker: the in-memory broker's local machinery, carried across nodes by the
session, membership, remote actors, the server of local actors and streams it composes.

It extends :class:`otp.InMemoryBroker` only through that class's extension points
(``_dispatch``, ``_dispatch_nowait``, ``_needs_envelope``, ``_new_inbox``,
``_pattern_wanted``/``_pattern_unwanted``, ``_attach``/``_detach``), so it stands in for it
everywhere: ``publish``, ``publish_nowait``, ``request``, ``reply``, ``subscribe``,
middleware and dead letters are the in-memory broker's own code.
"""

from __future__ import annotations

import itertools
import logging
import os
import ssl as _ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from .._actor import ActorRef
from .._broker import BrokerStatistics, DeadLetter, Envelope
from .._codec import Codec, JsonCodec
from .._mailbox import Mailbox
from .._remote import RemoteRef
from .._topics import _check_topic
from ._clients import _client_factory
from ._cluster import ClusterPrimitives
from ._describe import describe, redact
from ._frames import (
    Bye,
    Hello,
    Pub,
    encode,
)
from ._inbound import Inbound
from ._membership import Membership, NodeDown, NodeMonitor, deliver_to
from ._naming import INBOX, Names, check_node_name
from ._remote import RemoteActors
from ._scripts import run
from ._serve import Server
from ._session import Session
from ._streams import Streams, StreamSubscription
from ._wire import Wire

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["RedisBroker", "RedisStatistics"]

logger = logging.getLogger("otp.redis")


#: Leave: delete the node's key if it still holds this incarnation (a takeover's is not
#: ours to delete), forget the name, say goodbye. KEYS: the node's key, the nodes set,
#: the cluster channel. ARGV: incarnation, name, the bye frame.
_GOODBYE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1
"""


@attrs.frozen
class RedisStatistics(BrokerStatistics):
    r""":class:`otp.BrokerStatistics` of a :class:`RedisBroker`, with its own counters:
    ``wire_errors`` (frames refused: dead letters), ``expired`` (calls dropped past their
    deadline), ``reconnects``, ``nodes_up`` (other nodes seen up now), ``sent``
    (frames sent), ``pipelines`` (batches of several), ``outbox`` (frames waiting to be
    sent), ``backlog`` (inbound frames and publishes waiting for room in a mailbox or a
    subscription), ``inbound_full`` (those refused because that backlog was at
    ``inbound_limit``), ``credit_waits`` (times a sender waited for credit), ``held``
    (frames held while the lease ran out), ``fenced`` and ``awaiting`` (remote calls and
    ``send_request``\ s of this node waiting for their answer now)."""

    wire_errors: int = 0
    expired: int = 0
    reconnects: int = 0
    nodes_up: int = 0
    sent: int = 0
    pipelines: int = 0
    outbox: int = 0
    backlog: int = 0
    inbound_full: int = 0
    credit_waits: int = 0
    held: int = 0
    fenced: bool = False
    awaiting: int = 0


class RedisBroker(Wire, ClusterPrimitives):
    """A :class:`otp.Broker` on Redis: ``otp.Node(name="a", broker=RedisBroker(url))``.

    It keeps the in-memory broker's local machinery (subscriptions, actor delivery,
    middleware, dead letters, statistics) and carries every publish through Redis, so
    subscribers on every node sharing the Redis server and ``prefix`` receive it.

    Arguments: ``url`` (``redis://``, ``rediss://`` for TLS, ``unix://``,
    ``redis+sentinel://host:26379/<service>`` for Redis Sentinel), ``prefix`` for every key
    and channel (several systems can share one Redis), ``codec`` (an :class:`otp.JsonCodec`
    by default), ``username``/``password`` (Redis ACL), TLS options (``ssl``,
    ``ssl_context``, ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
    ``ssl_check_hostname``), ``sentinels`` and ``service`` (Sentinel addresses and the
    monitored service's name, instead of a URL), ``durable`` (topic patterns whose
    messages are also kept in a Redis stream for :meth:`consume`), ``stream_maxlen``
    (approximate stream cap), ``heartbeat`` and ``node_ttl`` (seconds between lease
    renewals, and after which a silent node counts as down), ``backoff`` (first and
    largest reconnect delay), ``window`` (casts and sends to one remote actor that may be
    unconsumed at once: the credit window), ``inbound_limit`` (inbound frames and publishes
    that may wait for room in full mailboxes and subscriptions), ``outbox_limit`` (frames
    queued for sending before ``await cast`` waits), ``connect_timeout`` and
    ``client_options`` (passed to coredis).

    Guarantees: at most once for calls, casts, sends and pub/sub; at least once for
    durable topics (:meth:`consume`); one sender's messages reach one receiver in order.
    ``publish`` returns the number of Redis subscriptions (node connections) that
    received the message, 0 when none did (a dead letter, unless the topic is durable);
    ``publish_nowait`` queues it and returns 1 (0 and a dead letter while disconnected).
    See ``docs/distributed.md`` for the protocol and every failure.

    One broker serves one node.
    """

    # The internal interface: what the collaborator modules of this package (_session,
    # _membership, _serve, _remote, _inbound, _streams, _globals, _groups) use of the
    # broker they serve; nothing outside otp/redis uses it, and tests/test_architecture.py
    # holds the same list.
    # - identity and the node: _me (this node's name and incarnation for frames), _node,
    #   _require_node, _counter (frame and request ids);
    # - the clock: _cluster_time, _clock_tolerance, _clock_sample;
    # - the wire: _dumps, _wire_error, _decode_pub, _envelope_of, _control_channel,
    #   _inbox_channel, _on_control, _on_topic;
    # - the session's and membership's events: _connection_lost, _reconnected, _lease_ok,
    #   _fenced, _peer_down;
    # - the cluster primitives (_cluster.py): _cluster_later, _cluster_publish,
    #   _exits_pending;
    # - local delivery (InMemoryBroker's): _deliver, _deliver_now, _delivered (the
    #   inbound queue counts what it delivered past the in-memory path).

    _needs_envelope = True

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
        sentinels: Iterable[tuple[str, int]] | None = None,
        service: str | None = None,
        durable: Iterable[str] = (),
        stream_maxlen: int | None = 100_000,
        heartbeat: float = 1.0,
        node_ttl: float = 5.0,
        backoff: tuple[float, float] = (0.05, 5.0),
        window: int = 1024,
        inbound_limit: int = 100_000,
        outbox_limit: int = 10_000,
        connect_timeout: float = 5.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.names = Names(prefix)
        if not heartbeat > 0 or not node_ttl > heartbeat or not node_ttl < 1e6:
            raise ValueError(
                f"need 0 < heartbeat < node_ttl, got heartbeat={heartbeat!r}, node_ttl={node_ttl!r}"
            )
        for label, value in (
            ("window", window),
            ("inbound_limit", inbound_limit),
            ("outbox_limit", outbox_limit),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, not {value!r}")
        if codec is not None and not isinstance(codec, Codec):
            raise TypeError(f"codec must be an otp.Codec, not {codec!r}")
        #: The URL with its password removed (safe to log).
        self.url = redact(url)
        self.prefix = prefix
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.heartbeat = float(heartbeat)
        self.node_ttl = float(node_ttl)
        self.backoff = (float(backoff[0]), float(backoff[1]))
        self.stream_maxlen = stream_maxlen
        client_factory = _client_factory(
            url,
            username=username,
            password=password,
            ssl=ssl,
            ssl_context=ssl_context,
            ssl_ca_certs=ssl_ca_certs,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            ssl_check_hostname=ssl_check_hostname,
            sentinels=sentinels,
            service=service,
            connect_timeout=connect_timeout,
            client_options=client_options or {},
        )
        #: This node's name on Redis (set when the node enters).
        self.node_name = ""
        #: A random id of this node's run: a restarted node has a new one.
        self.incarnation = os.urandom(6).hex()
        #: Frames refused so far (each a dead letter and a WARNING).
        self.wire_errors = 0
        self._node: Node | None = None
        self._counter = itertools.count(1)
        self._control_channel = b""
        self._inbox_channel = b""
        self._me: dict[str, str] = {}
        # cluster clock: Redis TIME minus this host's time.time(), and the round trip
        # of the sample it came from
        self._clock_offset = 0.0
        self._clock_rtt = 0.0
        self.streams = Streams(self, durable, stream_maxlen)
        self.session = Session(
            self,
            url=self.url,
            client_factory=client_factory,
            connect_timeout=connect_timeout,
            heartbeat=self.heartbeat,
            node_ttl=self.node_ttl,
            backoff=self.backoff,
            outbox_limit=outbox_limit,
        )
        self.membership = Membership(self)
        self.remote_actors = RemoteActors(self, window=window)
        self.server = Server(self, window=window, inbound_limit=inbound_limit)
        self.inbound = Inbound(self, limit=inbound_limit)
        self._topic_lane: deque[tuple[str | None, bytes] | Pub] = deque()
        self._topic_wake = anyio.Event()
        self._held_pubs: deque[Pub] = deque()
        self._announce_due = False

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

    @property
    def fenced(self) -> bool:
        """``True`` once another process took over this node's name (see
        :class:`otp.redis.NodeFenced`)."""
        return self.session.fenced

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until connected; ``False`` if ``timeout`` seconds passed first."""
        return await self.session.wait_connected(timeout)

    def statistics(self) -> RedisStatistics:
        """A frozen snapshot of the broker's counters (see :class:`RedisStatistics`)."""
        base = super().statistics()
        session = self.session
        return RedisStatistics(
            **{a.name: getattr(base, a.name) for a in attrs.fields(BrokerStatistics)},
            wire_errors=self.wire_errors,
            expired=self.server.expired,
            reconnects=session.reconnects,
            nodes_up=len(self.membership.up),
            sent=session.sent,
            pipelines=session.pipelines,
            outbox=len(session.outbox),
            backlog=self.server.backlogged + self.inbound.queued,
            inbound_full=self.server.overflowed + self.inbound.overflowed,
            credit_waits=self.remote_actors.credit_waits,
            held=len(self.server.held) + len(self._held_pubs),
            fenced=session.fenced,
            awaiting=len(self.remote_actors.calls),
        )

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

    # ------------------------------------------------------------------ the cluster clock

    def _cluster_time(self) -> float:
        """Now on the cluster clock (Redis' ``TIME``, as estimated on every heartbeat)."""
        return time.time() + self._clock_offset

    def _clock_tolerance(self) -> float:
        return 0.05 + self._clock_rtt

    def _clock_sample(self, redis_time: float, sent: float, received: float) -> None:
        rtt = received - sent
        if self._clock_rtt == 0.0 or rtt <= 2 * self._clock_rtt + 0.005:
            self._clock_offset = redis_time - (sent + received) / 2
            self._clock_rtt = rtt if self._clock_rtt == 0.0 else min(rtt, self._clock_rtt * 2)

    # ------------------------------------------------------------------ node hooks

    async def _attach(self, node: Node) -> None:
        if self._node is not None:
            raise RuntimeError(f"{self!r} already serves node {self._node.name!r}; one per Node")
        name = node.name
        if name == "nonode":
            name = f"nonode-{os.urandom(3).hex()}"
        self.node_name = check_node_name(name)
        self._control_channel = self.names.control(self.node_name)
        self._inbox_channel = self.names.inbox(self.node_name)
        self._me = {"node": self.node_name, "incarnation": self.incarnation}
        await super()._attach(node)
        self._node = node
        session = self.session
        session.start_error = None
        try:
            await node._task_group.start(session.run, (self._topic_lane_loop, self._cluster_loop))
        except BaseException:
            self._node = None
            await super()._detach(node)
            raise
        if session.start_error is not None:
            self._node = None
            await super()._detach(node)
            raise session.start_error
        self._announce()
        await self._cluster_started()

    def _announce(self) -> None:
        self.session.send(self.names.cluster, self._dumps(encode(Hello(**self._me))))

    async def _detach(self, node: Node) -> None:
        if node is not self._node:
            return
        session = self.session
        try:
            if not session.fenced and session.client is not None:
                # The node's actors have exited: their Down notices and last replies are
                # queued; send them, tell the peers, then leave.
                await self._cluster_flush(min(2.0, self.node_ttl))
                await session.flush(min(2.0, self.node_ttl))
                with anyio.move_on_after(1.0):
                    await self._say_goodbye()
        finally:
            session.stopping.set()
            with anyio.move_on_after(5.0):
                await session.stopped.wait()
            self._node = None
            await super()._detach(node)

    async def _say_goodbye(self) -> None:
        client = self.session.client
        if client is None:
            return
        names = self.names
        try:
            # One script: a peer confirms the goodbye by the key no longer holding this
            # incarnation, and no heartbeat of a peer runs between the key going and the
            # goodbye (which would report "timeout" instead of "left").
            await run(
                client,
                _GOODBYE,
                [names.node_key(self.node_name), names.nodes, names.cluster],
                [self.incarnation, self.node_name, self._dumps(encode(Bye(**self._me)))],
            )
        except Exception as exc:
            logger.debug("leaving Redis cleanly failed: %s", describe(exc))

    # ------------------------------------------------------------------ topics out

    def _new_inbox(self) -> str:
        return f"{INBOX}{self.node_name or self._prefix}.{next(self._counter)}"

    async def _dispatch(
        self,
        topic: str,
        message: Any,
        sender: ActorRef | None,
        envelope: Envelope | None,
        targets: tuple[Any, ...],
    ) -> int:
        # Every publish goes through Redis (this node's subscribers get it back from
        # there, as every other node's do): returns the receiving connections.
        self._require_node()
        assert envelope is not None
        _check_topic(envelope.topic)
        data = self._frame_of(envelope)
        promise = self._backend().promise()
        self._send_pub(envelope, data, lambda received: _resolve(promise, received))
        received: int = await promise.wait(None)
        return received

    def _dispatch_nowait(
        self,
        topic: str,
        message: Any,
        sender: ActorRef | None,
        envelope: Envelope | None,
        targets: tuple[Any, ...],
    ) -> int:
        self._require_node()
        assert envelope is not None
        _check_topic(envelope.topic)
        data = self._frame_of(envelope)
        if not self.session.connected and not self.streams.is_durable(envelope.topic):
            self._dead_letter(DeadLetter(envelope.message, None, "noconnection", topic=topic))
            return 0
        self._send_pub(envelope, data, None)
        return 1

    async def _send_envelope(self, envelope: Envelope) -> int:
        """Publish a ready envelope through Redis, without middleware; returns the
        receiving connections (for the cluster primitives' requests)."""
        return await self._dispatch(envelope.topic, envelope.message, envelope.sender, envelope, ())

    def _send_pub(
        self, envelope: Envelope, data: bytes, done: Callable[[int], None] | None
    ) -> None:
        topic = envelope.topic
        durable = self.streams.is_durable(topic)

        def sent(received: int) -> None:
            if received < 0:
                self._dead_letter(DeadLetter(envelope.message, None, "noconnection", topic=topic))
            elif received == 0 and not durable:
                self._dead_letter(DeadLetter(envelope.message, None, "no_subscriber", topic=topic))
            if done is not None:
                done(max(0, received))

        self.session.send(
            self.names.topic(topic),
            data,
            sent,
            retry=durable,
            stream=self.streams.stream_args(topic) if durable else None,
        )

    # ------------------------------------------------------------------ subscriptions

    async def _pattern_wanted(self, pattern: str) -> None:
        self._require_node()
        await self.session.retain(pattern)

    def _pattern_unwanted(self, pattern: str) -> None:
        self.session.release(pattern)

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
        delivered again (so a handler must tolerate duplicates). At most ``batch`` entries
        are read ahead into the subscription's buffer, and only when it has room, so
        nothing waits there long enough to be claimed by another consumer while this one
        is healthy. ``start`` is where a new group begins (``"0"``: everything the stream
        holds, ``"$"``: only new entries); ``consumer`` names this member (default: unique
        per subscription). The topic must be concrete and match one of the broker's
        ``durable`` patterns (on every node).
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
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, not {batch!r}")
        if not claim_after > 0:
            raise ValueError(f"claim_after must be positive, not {claim_after!r}")
        return self.streams.consumer(topic, group, consumer, mailbox, start, claim_after, batch)

    # ------------------------------------------------------------------ nodes and refs

    async def nodes(self) -> list[str]:
        """The names of the live nodes under this prefix (this one included), sorted; one
        round trip to Redis."""
        self._require_node()
        _, members = await self.session.renew(read_only=True)
        return sorted(members)

    def monitor_node(
        self, node: str, watcher: ActorRef | Callable[[NodeDown], None]
    ) -> NodeMonitor:
        """Watch ``node`` (Erlang's ``monitor_node``): when it goes down, ``watcher`` gets
        a :class:`otp.redis.NodeDown` (in ``handle_info`` for an actor, as the argument for
        a callable), once. A node that is not up now is reported at once (reason
        ``"unknown"``). Returns a :class:`NodeMonitor`; ``cancel()`` ends it."""
        self._require_node()
        return self.membership.monitor(check_node_name(node), deliver_to(watcher))

    def up_nodes(self) -> dict[str, str]:
        """The other nodes this node sees up now, with their incarnations (no round
        trip: what the last heartbeat and announcements said)."""
        return dict(self.membership.up)

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


def _resolve(promise: Any, value: Any) -> None:
    promise.resolve(value)
