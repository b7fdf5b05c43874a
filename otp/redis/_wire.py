"""The broker's side of the wire: the :class:`Wire` mixin of :class:`RedisBroker`.

What arrives from Redis (control frames, handed to the server of local actors, the remote
actors or the membership; publishes, decoded in order on the topic lane and held while
the lease has run out), the encoding of frames going out (``_dumps``, ``_frame_of``), the
frames refused (``_wire_error``: a dead letter and a WARNING), and the session's and
membership's events (connection lost, reconnected, lease renewed, fenced, a peer down).
"""

from __future__ import annotations

import datetime
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._broker import DeadLetter, Envelope
from .._codec import Codec, Undecodable
from .._exceptions import CodecError
from ._describe import describe
from ._frames import (
    Bye,
    Call,
    Cast,
    Credit,
    Demonitor,
    DownNotice,
    ExitSignal,
    Frame,
    Hello,
    Monitor,
    Pub,
    Reply,
    Stop,
    Sync,
    Where,
    Whereis,
    decode,
    malformed,
    pub_tree,
    ref_tree,
)
from ._naming import INBOX

if TYPE_CHECKING:
    from ._inbound import Inbound
    from ._membership import Membership
    from ._remote import RemoteActors
    from ._serve import Server
    from ._session import Session

__all__ = ["Wire"]

logger = logging.getLogger("otp.redis")

_UTC = datetime.UTC

#: Frames of these kinds act for this node's identity: served only while its lease runs.
_SERVED: Final = (Call, Cast, Stop, ExitSignal, Monitor, Whereis, Sync)


class Wire:
    """Frames in and out of a :class:`RedisBroker` (a mixin of it: the attributes below
    are set in ``RedisBroker.__init__``, the methods defined there or in
    :class:`otp.InMemoryBroker`)."""

    codec: Codec
    node_name: str
    incarnation: str
    wire_errors: int
    session: Session
    membership: Membership
    remote_actors: RemoteActors
    server: Server
    inbound: Inbound
    _me: dict[str, str]
    _topic_lane: deque[tuple[str | None, bytes] | Pub]
    _topic_wake: anyio.Event
    _held_pubs: deque[Pub]
    _announce_due: bool

    if TYPE_CHECKING:

        def _emit(self, kind: str, **fields: Any) -> None: ...
        def _announce(self) -> None: ...
        def _dead_letter(self, letter: DeadLetter) -> None: ...
        def _lookup(self, topic: Any) -> tuple[Any, ...]: ...

    # ------------------------------------------------------------------ the session's events

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

    def _peer_down(self, node: str) -> None:
        self.remote_actors.peer_down(node)
        self.server.peer_down(node)

    def _reconnected(self) -> None:
        # Announce once the claim is renewed (Redis may have restarted and lost the key):
        # peers believe a hello only if the key holds this incarnation (_membership).
        self._announce_due = True
        self.session.hurry_renewal()
        self.server.grant()

    def _lease_ok(self) -> None:
        if self._announce_due:
            self._announce_due = False
            self._announce()
        self.server.lease_ok()
        if self._held_pubs:
            self._topic_lane.extend(self._held_pubs)
            self._held_pubs.clear()
            self._topic_wake.set()

    def _fenced(self) -> None:
        self.server.fenced()
        while self._held_pubs:
            pub = self._held_pubs.popleft()
            self._dead_letter(DeadLetter(pub.message, None, "fenced", topic=pub.topic))

    # ------------------------------------------------------------------ wire errors

    def _wire_error(self, error: CodecError, data: bytes, topic: str | None) -> None:
        self.wire_errors += 1
        letter = DeadLetter(Undecodable.of(error, data), None, error.reason, topic=topic)
        logger.warning(
            "node %r dropped a message from Redis%s: %s",
            self.node_name,
            f" on topic {topic[:200]!r}" if topic else "",
            error,
            extra={"otp_event": "wire_error", "otp_reason": error.reason, "otp_topic": topic},
        )
        self._dead_letter(letter)
        self._emit("dead_letter", reason=error.reason, detail=letter.message)

    def _dumps(self, tree: dict[str, Any]) -> bytes:
        data = self.codec.dumps(tree)
        if len(data) > self.codec.max_size:
            raise CodecError(
                "oversized",
                f"message of {len(data)} bytes exceeds the codec's max_size={self.codec.max_size}",
            )
        return data

    # ------------------------------------------------------------------ control frames in

    def _on_control(self, data: bytes) -> None:
        """A frame on this node's control channel or the cluster channel."""
        try:
            frame = decode(self.codec.loads(data))
            if frame.node == self.node_name and frame.incarnation == self.incarnation:
                return  # our own announcement
            self._on_frame(frame, data)
        except CodecError as error:
            self._wire_error(error, data, None)
        except Exception as exc:  # a frame the checks let through and the code did not expect
            logger.warning("a frame could not be handled", exc_info=True)
            self._wire_error(CodecError("malformed", describe(exc)), data, None)

    def _on_frame(self, frame: Frame, data: bytes = b"") -> None:
        membership = self.membership
        if frame.node not in membership.up or isinstance(frame, Hello):
            # A claim, believed once Redis confirms it (see _membership).
            membership.heard(frame.node, frame.incarnation, data, hello=isinstance(frame, Hello))
        if isinstance(frame, _SERVED):
            self.server.serve(frame)
        elif isinstance(frame, Reply):
            self.remote_actors.on_reply(frame)
        elif isinstance(frame, Credit):
            self.remote_actors.on_credit(frame)
        elif isinstance(frame, DownNotice):
            self.remote_actors.on_down(frame)
        elif isinstance(frame, Demonitor):
            self.server.on_demonitor(frame.node, frame.mid)
        elif isinstance(frame, Where):
            self.remote_actors.on_where(frame)
        elif isinstance(frame, Bye):
            membership.heard_bye(frame.node, frame.incarnation, data)
        elif isinstance(frame, Hello):
            pass  # checked above
        else:
            raise malformed(f"a {frame.kind} frame on a control channel")

    # ------------------------------------------------------------------ topics in

    def _on_topic(self, topic: str | None, data: bytes) -> None:
        self._topic_lane.append((topic, data))
        self._topic_wake.set()

    async def _topic_lane_loop(self) -> None:
        lane = self._topic_lane
        while True:
            while lane:
                item = lane.popleft()
                if isinstance(item, Pub):
                    pub: Pub | None = item
                    data = b""
                else:
                    topic, data = item
                    try:
                        pub = self._decode_pub(topic, data)
                    except CodecError as error:
                        self._wire_error(error, data, topic or "$otp.inbox")
                        continue
                    except Exception as exc:
                        logger.warning("a publish could not be handled", exc_info=True)
                        failure = CodecError("malformed", describe(exc))
                        self._wire_error(failure, data, topic or "$otp.inbox")
                        continue
                assert pub is not None
                session = self.session
                if session.fenced:
                    self._dead_letter(DeadLetter(pub.message, None, "fenced", topic=pub.topic))
                    continue
                if not session.serving:
                    self._held_pubs.append(pub)
                    session.hurry_renewal()
                    continue
                try:
                    envelope = self._envelope_of(pub)
                except CodecError as error:
                    self._wire_error(error, data, pub.topic)
                    continue
                targets = self._lookup(envelope.topic)
                if targets:
                    # Never waits: a full BLOCK receiver gets a queue of its own.
                    self.inbound.deliver(envelope, targets)
            self._topic_wake = anyio.Event()
            if not lane:
                await self._topic_wake.wait()

    def _decode_pub(self, topic: str | None, data: bytes) -> Pub:
        """A publish frame; ``topic`` is its channel's (``None``: this node's inboxes)."""
        frame = decode(self.codec.loads(data))
        if not isinstance(frame, Pub):
            raise malformed(f"a {frame.kind} frame on a topic channel")
        if topic is None:
            if not frame.topic.startswith(f"{INBOX}{self.node_name}."):
                raise malformed(f"topic {frame.topic[:200]!r} on this node's inbox channel")
        elif frame.topic != topic:
            raise malformed(f"frame topic {frame.topic[:200]!r} differs from its channel")
        return frame

    def _envelope_of(self, pub: Pub) -> Envelope:
        refs = self.remote_actors
        sender = refs._ref_from_wire(ref_tree(pub.sender)) if pub.sender is not None else None
        return Envelope(
            id=pub.id,
            topic=pub.topic,
            message=self.codec.from_wire(pub.message, refs=refs),
            timestamp=datetime.datetime.fromtimestamp(pub.timestamp, _UTC),
            sender=sender,
            reply_to=pub.reply_to,
            headers=pub.headers,
            priority=pub.priority,
        )

    # ------------------------------------------------------------------ frames out

    def _frame_of(self, envelope: Envelope) -> bytes:
        refs = self.remote_actors
        me = self._me
        tree = pub_tree(
            me["node"],
            me["incarnation"],
            envelope.id,
            envelope.topic,
            self.codec.to_wire(envelope.message, refs=refs),
            envelope.timestamp.timestamp(),
            refs._ref_to_wire(envelope.sender) if envelope.sender is not None else None,
            envelope.reply_to,
            envelope.headers,
            envelope.priority,
        )
        return self._dumps(tree)
