"""Membership and failure detection: which nodes are up, in which incarnation.

Every heartbeat, the session's renewal script returns every live node with its
incarnation (one round trip). A node present with a new incarnation is ``nodeup``; one
that is gone, or replaced by a new incarnation, is ``nodedown``. A ``hello`` on the
cluster channel (a node started or reconnected) is a ``nodeup`` at once, a ``bye`` a
``nodedown`` at once. Each transition is reported exactly once, as a node event
(``"nodeup"``/``"nodedown"``, ``detail`` the node's name) and to node monitors.

Failure detection: a node that stops renewing its key (crashed, hung, cut off) loses it
after ``node_ttl - heartbeat`` to ``node_ttl`` seconds; its peers see that on their next
heartbeat, so detection takes at most ``node_ttl + heartbeat`` (one more heartbeat when the
observer's own key had lapsed too, since Redis then lost or expired keys wholesale).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from .._actor import ActorRef
from .._remote import RemoteRef

if TYPE_CHECKING:
    from ._broker import RedisBroker

__all__ = ["Membership", "NodeDown", "NodeMonitor"]

logger = logging.getLogger("otp.redis")


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

    # ------------------------------------------------------------------ updates

    def update(self, members: dict[str, str], *, conclusive: bool) -> None:
        """A heartbeat's view of the live nodes."""
        me = self.broker.node_name
        for name, incarnation in members.items():
            if name != me:
                self.seen(name, incarnation)
        if conclusive:
            for name in [n for n in self.up if n not in members and n != me]:
                self.nodedown(name, "timeout")

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
