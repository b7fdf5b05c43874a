"""Membership and failure detection: which peers are up, in which incarnation.

A node watches the peers it talks to. On every heartbeat it reads their liveness keys; a
missing key or a new incarnation means the one it knew is down. Frames from a peer also
tell its incarnation. A ``bye`` frame is a clean leave.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._remote import RemoteRef
from ._session import describe

if TYPE_CHECKING:
    import coredis  # type: ignore[import-not-found, unused-ignore]

    from ._broker import RedisBroker

__all__ = ["Membership"]

logger = logging.getLogger("otp.redis")


class Membership:
    """The peers of one node (see the module docs)."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        # peers this node talks to -> their incarnation (None: not known yet)
        self.peers: dict[str, str | None] = {}
        # peers seen going down -> the incarnation that went ("*": whichever)
        self.down: dict[str, str] = {}

    async def check_peers(self, client: coredis.Redis[bytes]) -> None:
        """Read the liveness keys of the watched peers (one heartbeat's check)."""
        peers = list(self.peers)
        if not peers:
            return
        names = self.broker.names
        found = await client.mget([names.node_key(p) for p in peers])
        for peer, value in zip(peers, found):
            self.check_peer(peer, value.decode() if value else None)

    def check_peer(self, peer: str, incarnation: str | None) -> None:
        known = self.peers.get(peer, "?")
        if known == "?":
            return  # forgotten meanwhile
        if incarnation is None:
            self.nodedown(peer, known)
        elif known is None:
            self.peers[peer] = incarnation
        elif known != incarnation:
            self.nodedown(peer, known)
            self.peers[peer] = incarnation

    def watch(self, node: str, incarnation: str | None) -> None:
        """Start watching ``node`` (this node is about to talk to it)."""
        if node == self.broker.node_name:
            return
        known = self.peers.get(node, "?")
        if known == "?" or known is None:
            self.peers[node] = incarnation
        if incarnation is not None and self.down.get(node, incarnation) != incarnation:
            del self.down[node]  # a new incarnation is up

    def saw(self, frame: Mapping[str, Any]) -> None:
        """A frame from a peer: learn its incarnation; a new one means the old is down."""
        peer = frame.get("f")
        incarnation = frame.get("fi")
        if type(peer) is not str or peer == self.broker.node_name or type(incarnation) is not str:
            return
        known = self.peers.get(peer, "?")
        if known not in ("?", None, incarnation):
            self.nodedown(peer, known)
        if known != incarnation and peer in self.peers:
            self.peers[peer] = incarnation
        if self.down.get(peer, incarnation) != incarnation:
            del self.down[peer]  # a new incarnation is up

    def nodedown(self, peer: str, incarnation: str | None, *, left: bool = False) -> None:
        broker = self.broker
        self.peers.pop(peer, None)
        self.down[peer] = incarnation if incarnation is not None else "*"
        logger.log(
            logging.INFO if left else logging.WARNING,
            "node %r is down (%s)",
            peer,
            "it left" if left else f"no heartbeat within {broker.node_ttl:g}s",
            extra={"otp_event": "nodedown", "otp_node": peer},
        )
        broker._emit("nodedown", detail=peer)
        broker.remote_actors.peer_down(peer)

    def alive(self, ref: RemoteRef) -> bool:
        """Whether ``ref``'s node incarnation may still be up, as far as this node knows."""
        # By-name refs reach whichever incarnation runs now: the network decides.
        if ref.incarnation is None:
            return True
        down = self.down.get(ref.node)
        return down is None or (down != "*" and down != ref.incarnation)

    async def say_goodbye(self, also: set[str]) -> None:
        """Tell the peers (and ``also``) this node leaves; delete its liveness key."""
        broker = self.broker
        client = broker.session.client
        if client is None:
            return
        names = broker.names
        data = broker._dumps({"k": "bye", "f": broker.node_name, "fi": broker.incarnation})
        for peer in sorted(set(self.peers) | also):
            try:
                await client.publish(names.control(peer), data)
            except Exception:
                break
        try:
            await client.delete([names.node_key(broker.node_name)])
            await client.zrem(names.nodes, [broker.node_name])
        except Exception as exc:
            logger.debug("leaving Redis cleanly failed: %s", describe(exc))

    async def nodes(self) -> list[str]:
        """The names of the live nodes under this prefix (this one included), sorted."""
        broker = self.broker
        client = broker.session.client
        assert client is not None
        names = broker.names
        members = [m.decode() for m in await client.zrange(names.nodes, 0, -1)]
        if not members:
            return []
        values = await client.mget([names.node_key(m) for m in members])
        live = sorted(m for m, v in zip(members, values) if v is not None)
        stale = [m for m, v in zip(members, values) if v is None]
        if stale:
            # Forget nodes that are gone (their key expired); re-added when they return.
            cutoff = time.time() - 60 * broker.node_ttl
            scores = await client.zmscore(names.nodes, stale)
            old = [m for m, s in zip(stale, scores) if s is not None and s < cutoff]
            if old:
                await client.zrem(names.nodes, old)
        return live
