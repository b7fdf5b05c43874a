"""Global names on Redis: one key per :class:`otp.Global` name.

``P:g:<name>`` holds ``"<node> <incarnation> <actor id>"`` of the holder, with a time to
live of ``node_ttl`` that the holder's node renews on every heartbeat (with its other keys,
see ``_cluster``). So a name is freed when its actor exits (the holder's node deletes the
key, only if it still holds that exact value) or, for a node that died, ``node_ttl`` after
its last heartbeat; a node that saw the holder's node go down may take the name at once.

Claiming is one Lua script, atomic in Redis: the key is set if it is free, if this node's
own incarnation holds it (a stale entry of an actor that exited here: the local registry
already made sure no live local actor holds the name), or if it holds exactly the value of
an incarnation this node knows is down. Otherwise the start raises :class:`otp.NameTaken`
with a ref to the holder. Of two nodes claiming at once, exactly one wins.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import NameTaken
from .._remote import RemoteRef
from ._scripts import run

if TYPE_CHECKING:
    import coredis  # type: ignore[import-not-found, unused-ignore]

    from .._actor import ActorRef
    from ._cluster import ClusterPrimitives

__all__ = ["GlobalNames"]

logger = logging.getLogger("otp.redis")

# KEYS[1] the name's key; ARGV: the new value, this incarnation's prefix ("node inc "),
# the TTL in ms, and a stale value that may be replaced ("" for none). Returns 1, or the
# holder's value.
_CLAIM: Final = """
local held = redis.call('GET', KEYS[1])
local stale = ARGV[4] ~= '' and held == ARGV[4]
if (not held) or string.sub(held, 1, #ARGV[2]) == ARGV[2] or stale then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return 1
end
return held
"""

# Delete KEYS[i] only if it still holds ARGV[i] (another incarnation may hold it by now).
_RELEASE: Final = """
local freed = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    redis.call('DEL', key)
    freed = freed + 1
  end
end
return freed
"""


def parse_holder(value: bytes | str) -> tuple[str, str, int] | None:
    """``(node, incarnation, actor id)`` of a key's value, or ``None`` if it is not one."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    parts = text.split(" ")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


class GlobalNames:
    """The global names of one node (see the module docs)."""

    def __init__(self, broker: ClusterPrimitives) -> None:
        self.broker = broker
        #: name -> (the local holder, the value written in Redis)
        self.owned: dict[str, tuple[ActorRef, str]] = {}

    def key(self, name: str) -> bytes:
        return f"{self.broker.prefix}:g:{name}".encode()

    def _value(self, ref: ActorRef) -> str:
        broker = self.broker
        return f"{broker.node_name} {broker.incarnation} {ref.id}"

    # ------------------------------------------------------------------ claim

    async def claim(self, name: str, ref: ActorRef) -> None:
        broker = self.broker
        broker._require_node()
        client = broker.session.client
        assert client is not None
        value = self._value(ref)
        mine = f"{broker.node_name} {broker.incarnation} "
        # Held before the await: if this start is cancelled meanwhile, the release that
        # follows (the local name is dropped) deletes what may have been written.
        self.owned[name] = (ref, value)
        try:
            stale = ""
            for _ in range(2):
                held = await run(
                    client, _CLAIM, keys=[self.key(name)], args=[value, mine, self.ttl_ms, stale]
                )
                if held == 1:
                    return
                holder = parse_holder(held)
                if holder is None or not self._holder_down(holder) or stale:
                    break
                stale = held.decode() if isinstance(held, bytes) else str(held)
        except BaseException:
            self.release(name, ref)
            raise
        self.owned.pop(name, None)
        raise NameTaken(name, self._holder_ref(name, held))

    @property
    def ttl_ms(self) -> int:
        return int(self.broker.node_ttl * 1000)

    def _holder_down(self, holder: tuple[str, str, int]) -> bool:
        node, incarnation, actor_id = holder
        probe = RemoteRef(self.broker.remote_actors, node, None, actor_id, incarnation)
        return not self.broker.membership.alive(probe)

    def _holder_ref(self, name: str, value: Any) -> Any:
        holder = parse_holder(value) if isinstance(value, (bytes, str)) else None
        if holder is None:
            return None
        node, incarnation, actor_id = holder
        return RemoteRef(self.broker.remote_actors, node, name, actor_id, incarnation)

    # ------------------------------------------------------------------ release

    def release(self, name: str, ref: ActorRef) -> None:
        """The actor exited or gave the name up: delete the key (in the background)."""
        entry = self.owned.get(name)
        if entry is None or entry[0] is not ref:
            return
        del self.owned[name]
        self.broker._cluster_later(("global", self.key(name), entry[1]))

    @staticmethod
    async def release_now(client: coredis.Redis[bytes], items: list[tuple[bytes, str]]) -> None:
        if items:
            await run(client, _RELEASE, keys=[k for k, _ in items], args=[v for _, v in items])

    # ------------------------------------------------------------------ lookup

    async def locate(self, name: str) -> Any:
        """The holder of ``name``: a local ref, a remote ref, or ``None``."""
        broker = self.broker
        node = broker._require_node()
        entry = self.owned.get(name)
        if entry is not None and entry[0].alive:
            return entry[0]
        client = broker.session.client
        if client is None or not broker.session.connected:
            return None
        value = await client.get(self.key(name))
        if value is None:
            return None
        holder = parse_holder(value)
        if holder is None:
            return None
        holder_node, incarnation, actor_id = holder
        if holder_node == broker.node_name and incarnation == broker.incarnation:
            local = node.whereis(name)
            return local if local is not None and local.id == actor_id else None
        ref = RemoteRef(broker.remote_actors, holder_node, name, actor_id, incarnation)
        if not ref.alive:
            return None  # its node is down; the key expires soon
        broker.membership.watch(holder_node, incarnation)
        return ref

    # ------------------------------------------------------------------ renewal

    def renewals(self) -> list[tuple[bytes, str]]:
        """(key, value) of every name this node holds, for the heartbeat's renewal."""
        return [(self.key(name), value) for name, (_, value) in self.owned.items()]

    def lost(self, key: bytes) -> ActorRef | None:
        """Another incarnation holds the name of ``key`` now (this node was cut off longer
        than ``node_ttl``): forget it and return the local actor that had it."""
        for name, (ref, _) in list(self.owned.items()):
            if self.key(name) == key:
                del self.owned[name]
                logger.warning(
                    "global name %r of %r was taken over by another node while this node was "
                    "out of reach; the actor stops (as Erlang's global resolves a clash)",
                    name,
                    ref,
                    extra={"otp_event": "global_name_lost", "otp_actor": ref},
                )
                self.broker._emit("global_name_lost", actor=ref, detail=name)
                return ref
        return None
