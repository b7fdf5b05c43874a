"""Membership and failure detection: which nodes are up, in which incarnation.

Every heartbeat, the session's renewal script returns every live node with its
incarnation (one round trip). A node present with a new incarnation is ``nodeup``; one
that is gone, or replaced by a new incarnation, is ``nodedown``. Each transition is
reported exactly once, as a node event (``"nodeup"``/``"nodedown"``, ``detail`` the node's
name) and to node monitors.

Announcements are hints, checked against Redis: anyone who may PUBLISH on the prefix can
send a ``hello`` or a ``bye`` naming any node. A ``hello`` (a node started or
reconnected), or any frame of a node not known to be up, is a ``nodeup`` only once Redis
confirms that the node's key holds that incarnation (one pipelined round trip for all the
claims waiting to be checked); a ``bye`` is a ``nodedown`` once the key no longer holds it
(a leaving node deletes its key before it says goodbye). An announcement Redis
contradicts is a wire error (reason ``"unconfirmed"``: counted, a dead letter, one
WARNING) and changes nothing; the heartbeat stays the authority either way.

Failure detection: a node that stops renewing its key (crashed, hung, cut off) loses it
after ``node_ttl - heartbeat`` to ``node_ttl`` seconds; its peers see that on their next
heartbeat, so detection takes at most ``node_ttl + heartbeat`` (one more heartbeat when the
observer's own key had lapsed too, since Redis then lost or expired keys wholesale).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import attrs

from .._actor import ActorRef
from .._exceptions import CodecError
from .._remote import RemoteRef
from ._describe import describe

if TYPE_CHECKING:
    from ._broker import RedisBroker

__all__ = ["Membership", "NodeDown", "NodeMonitor"]

logger = logging.getLogger("otp.redis")

#: Claims checked in one pipeline at most.
_CHECK_BATCH: Final = 256
#: Claims waiting to be checked at most; past it, announcements are refused unchecked
#: (the heartbeat still finds every live node).
_CHECK_LIMIT: Final = 10_000

#: What a claim to check says: the node is up (``hello``: refused loudly if false;
#: ``frame``: any other frame, ignored if false) or it left (``bye``).
_HELLO: Final = "hello"
_FRAME: Final = "frame"
_BYE: Final = "bye"


@attrs.frozen
class NodeDown:
    """What a node monitor delivers (Erlang's ``{nodedown, Node}``): ``node`` went down;
    ``reason`` is ``"timeout"`` (its claim expired), ``"left"`` (it said goodbye),
    ``"restarted"`` (a new incarnation replaced it), ``"noconnection"`` (this node lost
    Redis) or ``"unknown"`` (it was not up when the monitor was set)."""

    node: str
    reason: str


@attrs.define(eq=False)
class NodeMonitor:
    """A live node monitor (:meth:`RedisBroker.monitor_node`); :meth:`cancel` ends it."""

    node: str
    _deliver: Callable[[NodeDown], None] = attrs.field(repr=False)
    _owner: Membership = attrs.field(repr=False)
    active: bool = True

    def cancel(self) -> bool:
        """End the monitor; ``True`` if it was still active."""
        if not self.active:
            return False
        self.active = False
        self._owner._drop_monitor(self)
        return True


class Membership:
    """The cluster as one node sees it (see the module docs)."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        # nodes up -> their incarnation (this node included once its heartbeat ran)
        self.up: dict[str, str] = {}
        # nodes seen down -> the incarnation that went
        self.gone: dict[str, str] = {}
        self.monitors: dict[str, list[NodeMonitor]] = {}
        self.transitions = 0
        # announcements waiting for Redis to confirm them: (node, incarnation, what) ->
        # the frame's bytes (for the dead letter if Redis contradicts it)
        self.checks: dict[tuple[str, str, str], bytes] = {}
        self.checking = False
        # nodes that said goodbye (bye not yet confirmed) -> the incarnation that did
        self.leaving: dict[str, str] = {}
        #: Announcements Redis contradicted (each also a wire error).
        self.unconfirmed = 0

    # ------------------------------------------------------------------ updates

    def update(self, members: dict[str, str], *, conclusive: bool) -> None:
        """A heartbeat's view of the live nodes."""
        me = self.broker.node_name
        for name, incarnation in members.items():
            if name != me:
                self.seen(name, incarnation)
        if conclusive:
            for name in [n for n in self.up if n not in members and n != me]:
                left = self.leaving.get(name) == self.up[name]
                self.nodedown(name, "left" if left else "timeout")

    def seen(self, node: str, incarnation: str) -> None:
        """``node`` is up in ``incarnation`` (a heartbeat, a hello, or any frame of it)."""
        known = self.up.get(node)
        if known == incarnation or node == self.broker.node_name:
            return
        if known is not None:
            self.nodedown(node, "restarted")
        self.up[node] = incarnation
        self.gone.pop(node, None)
        self.transitions += 1
        logger.info(
            "node %r is up (incarnation %s)",
            node,
            incarnation,
            extra={"otp_event": "nodeup", "otp_node": node},
        )
        self.broker._emit("nodeup", detail=node)

    def heard(self, node: str, incarnation: str, data: bytes, *, hello: bool) -> None:
        """A frame from ``node`` in ``incarnation``, which this node does not know to be up
        (a ``hello`` if ``hello``): up once Redis confirms the claim (see the module docs)."""
        if node == self.broker.node_name or self.up.get(node) == incarnation:
            return
        self._check(node, incarnation, _HELLO if hello else _FRAME, data)

    def heard_bye(self, node: str, incarnation: str, data: bytes) -> None:
        """A ``bye`` from ``node`` in ``incarnation``: down once Redis confirms it left."""
        if self.up.get(node) != incarnation:
            return
        self.leaving[node] = incarnation
        self._check(node, incarnation, _BYE, data)

    def _check(self, node: str, incarnation: str, what: str, data: bytes) -> None:
        key = (node, incarnation, what)
        if key in self.checks:
            return
        if len(self.checks) >= _CHECK_LIMIT:
            if what != _FRAME:
                self._refuse(node, incarnation, what, data, "too many announcements to check")
            return
        self.checks[key] = data
        task_group = self.broker.session.task_group
        if not self.checking and task_group is not None:
            self.checking = True
            task_group.start_soon(self._confirm)

    async def _confirm(self) -> None:
        # One task checks every waiting claim, a pipeline of GETs (the ACL of the docs
        # allows GET, not MGET) per batch.
        checks = self.checks
        names = self.broker.names
        try:
            while checks:
                batch = list(itertools.islice(checks.items(), _CHECK_BATCH))
                for key, _ in batch:
                    del checks[key]
                client = self.broker.session.client
                if client is None:
                    continue
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        requests = [pipe.get(names.node_key(node)) for (node, _, _), _ in batch]
                    held = [await request for request in requests]
                except Exception as exc:  # the heartbeat decides instead
                    logger.debug(
                        "checking %d announcement(s) failed: %s", len(batch), describe(exc)
                    )
                    for (node, incarnation, what), _ in batch:
                        if what == _BYE and self.leaving.get(node) == incarnation:
                            del self.leaving[node]
                    continue
                for ((node, incarnation, what), data), holder in zip(batch, held):
                    holds = holder is not None and holder == incarnation.encode()
                    self._decide(node, incarnation, what, data, holds)
        finally:
            self.checking = False

    def _decide(self, node: str, incarnation: str, what: str, data: bytes, holds: bool) -> None:
        if what == _BYE:
            if self.leaving.get(node) == incarnation:
                del self.leaving[node]
            if holds:
                self._refuse(node, incarnation, what, data, "its key still holds it")
            elif self.up.get(node) == incarnation:
                self.nodedown(node, "left")
        elif holds:
            self.seen(node, incarnation)
        elif what == _HELLO:
            self._refuse(node, incarnation, what, data, "its key does not hold it")

    def _refuse(self, node: str, incarnation: str, what: str, data: bytes, why: str) -> None:
        self.unconfirmed += 1
        claim = "is up" if what == _HELLO else "left"
        error = CodecError(
            "unconfirmed",
            f"a {what!r} frame claims node {node[:64]!r} (incarnation {incarnation}) {claim}, "
            f"but Redis does not confirm it ({why}); someone else publishes on this prefix",
        )
        self.broker._wire_error(error, data, None)

    def watch(self, node: str, incarnation: str | None) -> None:
        """Kept for callers from before every node was watched: nothing to do, since the
        heartbeat follows every node of the cluster."""

    def nodedown(self, node: str, reason: str) -> None:
        """``node`` went down (no-op if it was not up)."""
        incarnation = self.up.pop(node, None)
        if incarnation is None:
            return
        self.gone[node] = incarnation
        self.transitions += 1
        logger.log(
            logging.INFO if reason == "left" else logging.WARNING,
            "node %r is down (%s)",
            node,
            {
                "left": "it left",
                "restarted": "a new incarnation replaced it",
                "noconnection": "this node lost Redis",
            }.get(reason, f"no heartbeat within {self.broker.node_ttl:g}s"),
            extra={"otp_event": "nodedown", "otp_node": node, "otp_reason": reason},
        )
        self.broker._emit("nodedown", reason=reason, detail=node)
        self.broker._peer_down(node)
        for monitor in self.monitors.pop(node, ()):
            monitor.active = False
            monitor._deliver(NodeDown(node, reason))

    def all_down(self, reason: str) -> None:
        for node in list(self.up):
            if node != self.broker.node_name:
                self.nodedown(node, reason)

    # ------------------------------------------------------------------ questions

    def alive(self, ref: RemoteRef) -> bool:
        """Whether ``ref``'s node incarnation may be up, as far as this node knows."""
        up = self.up.get(ref.node)
        if ref.incarnation is None:
            # By-name refs reach whichever incarnation runs now.
            return up is not None or ref.node not in self.gone
        if up is not None:
            return up == ref.incarnation
        return self.gone.get(ref.node) != ref.incarnation

    def why_unreachable(self, ref: RemoteRef) -> str | None:
        """``None`` if ``ref`` may be reached; else ``"nodedown"`` (its node is down) or
        ``"noproc"`` (its node runs another incarnation: the actor is gone)."""
        if self.alive(ref):
            return None
        up = self.up.get(ref.node)
        return "noproc" if up is not None else "nodedown"

    # ------------------------------------------------------------------ node monitors

    def monitor(self, node: str, deliver: Callable[[NodeDown], None]) -> NodeMonitor:
        monitor = NodeMonitor(node, deliver, self)
        if node not in self.up and node != self.broker.node_name:
            monitor.active = False
            deliver(NodeDown(node, "unknown"))
            return monitor
        self.monitors.setdefault(node, []).append(monitor)
        return monitor

    def _drop_monitor(self, monitor: NodeMonitor) -> None:
        watchers = self.monitors.get(monitor.node)
        if watchers and monitor in watchers:
            watchers.remove(monitor)
            if not watchers:
                del self.monitors[monitor.node]


def deliver_to(target: ActorRef | Callable[[NodeDown], None]) -> Callable[[NodeDown], None]:
    """A node monitor's delivery: to an actor's ``handle_info``, or a callable."""
    if isinstance(target, ActorRef):
        ref = target

        def to_actor(down: NodeDown) -> None:
            ref._deliver_control(down)

        return to_actor
    if callable(target):
        return target
    raise TypeError(f"monitor_node needs an otp.ActorRef or a callable, not {target!r}")
