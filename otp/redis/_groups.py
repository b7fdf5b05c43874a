"""Process groups on Redis (the store behind ``node.groups``).

Each node keeps its own members of a group in one hash per node incarnation,
``P:pgm:<len>:<group>:<node> <incarnation>`` (field: actor id, value: ``"<join seq>
<name>"``), with a time to live of ``node_ttl`` renewed on every heartbeat (with the
node's other keys, see ``_cluster``). ``P:pgi:<len>:<group>`` is the set of the node
incarnations that have members, ``P:pgs`` the set of groups. Readers drop index entries
whose hash has expired, so the members of a node that died vanish ``node_ttl`` after its
last heartbeat at the latest, and at once for a node this node saw go down.

Joins and leaves publish a hint on the topic ``$otp.pg.<group>`` for the watchers of
``node.groups.monitor``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._remote import RemoteRef
from ._scripts import run

if TYPE_CHECKING:
    import coredis  # type: ignore[import-not-found, unused-ignore]

    from .._actor import ActorRef
    from .._node import NodeEvent
    from ._cluster import ClusterPrimitives

__all__ = ["GroupTable"]

logger = logging.getLogger("otp.redis")

# KEYS: the member hash, the group's index, the set of groups; ARGV: actor id, value,
# index token, group, TTL ms.
_JOIN: Final = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
"""

# KEYS: member hashes then (last two) nothing; ARGV: pairs of (actor id) per key, with
# KEYS[2i-1] the hash and KEYS[2i] its index; ARGV[2i-1] the id, ARGV[2i] the token.
_LEAVE: Final = """
local left = 0
for i = 1, #KEYS, 2 do
  left = left + redis.call('HDEL', KEYS[i], ARGV[i])
  if redis.call('HLEN', KEYS[i]) == 0 then
    redis.call('DEL', KEYS[i])
    redis.call('SREM', KEYS[i + 1], ARGV[i + 1])
  end
end
return left
"""

# KEYS[1] the group's index; ARGV[1] the member-hash prefix. Returns {token, {fields}}...
_MEMBERS: Final = """
local out = {}
for _, token in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local found = redis.call('HGETALL', ARGV[1] .. token)
  if #found == 0 then
    redis.call('SREM', KEYS[1], token)
  else
    out[#out + 1] = token
    out[#out + 1] = found
  end
end
return out
"""

# KEYS[1] the set of groups; ARGV[1] the key prefix ("P:"). Returns the groups with
# members anywhere, forgetting the others.
_GROUPS: Final = """
local out = {}
for _, group in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local index = ARGV[1] .. 'pgi:' .. string.len(group) .. ':' .. group
  local hashes = ARGV[1] .. 'pgm:' .. string.len(group) .. ':' .. group .. ':'
  local live = false
  for _, token in ipairs(redis.call('SMEMBERS', index)) do
    if redis.call('EXISTS', hashes .. token) == 1 then
      live = true
    else
      redis.call('SREM', index, token)
    end
  end
  if live then out[#out + 1] = group else redis.call('SREM', KEYS[1], group) end
end
return out
"""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class GroupTable:
    """This node's side of the groups on Redis (see the module docs)."""

    def __init__(self, broker: ClusterPrimitives) -> None:
        self.broker = broker
        self._seq = itertools.count(1)
        # group -> actor id -> the value written (this node's members, for renewals)
        self.mine: dict[str, dict[int, str]] = {}

    # ------------------------------------------------------------------ names

    def _prefix(self) -> str:
        return f"{self.broker.prefix}:"

    def index_key(self, group: str) -> bytes:
        return f"{self._prefix()}pgi:{len(group)}:{group}".encode()

    def hash_prefix(self, group: str) -> str:
        return f"{self._prefix()}pgm:{len(group)}:{group}:"

    def token(self) -> str:
        return f"{self.broker.node_name} {self.broker.incarnation}"

    def hash_key(self, group: str) -> bytes:
        return f"{self.hash_prefix(group)}{self.token()}".encode()

    @property
    def groups_key(self) -> bytes:
        return f"{self._prefix()}pgs".encode()

    def _client(self) -> coredis.Redis[bytes]:
        broker = self.broker
        broker._require_node()
        client = broker.session.client
        assert client is not None
        return client

    # ------------------------------------------------------------------ changes

    async def join(self, group: str, ref: ActorRef) -> None:
        value = f"{next(self._seq)} {ref.name or ''}"
        self.broker.remote_actors.exported[ref.id] = ref  # so other nodes' refs reach it
        self.mine.setdefault(group, {})[ref.id] = value
        await run(
            self._client(),
            _JOIN,
            keys=[self.hash_key(group), self.index_key(group), self.groups_key],
            args=[str(ref.id), value, self.token(), group, int(self.broker.node_ttl * 1000)],
        )
        await self._hint(group)

    async def leave(self, group: str, ref: ActorRef) -> None:
        if self._forget(group, ref.id):
            await self.leave_now(self._client(), [(group, ref.id)])
            await self._hint(group)

    def exited(self, group: str, ref: ActorRef) -> None:
        if self._forget(group, ref.id):
            self.broker._cluster_later(("group", group, ref.id))

    def _forget(self, group: str, actor_id: int) -> bool:
        members = self.mine.get(group)
        if members is None or members.pop(actor_id, None) is None:
            return False
        if not members:
            del self.mine[group]
        return True

    async def leave_now(self, client: coredis.Redis[bytes], items: list[tuple[str, int]]) -> None:
        """Remove these (group, actor id) entries of this node; hint their watchers."""
        if not items:
            return
        keys: list[bytes] = []
        args: list[str] = []
        for group, actor_id in items:
            keys += [self.hash_key(group), self.index_key(group)]
            args += [str(actor_id), self.token()]
        await run(client, _LEAVE, keys=keys, args=args)

    async def hint_all(self, groups: set[str]) -> None:
        for group in sorted(groups):
            await self._hint(group)

    async def _hint(self, group: str) -> None:
        broker = self.broker
        try:
            await broker._cluster_publish(f"$otp.pg.{group}", group)
        except Exception as exc:  # a hint is best effort: watchers also see nodedowns
            logger.debug("group hint for %r failed: %s", group, exc)

    # ------------------------------------------------------------------ reads

    async def members(self, group: str) -> list[Any]:
        broker = self.broker
        node = broker._require_node()
        found = await run(
            self._client(), _MEMBERS, keys=[self.index_key(group)], args=[self.hash_prefix(group)]
        )
        rows: list[tuple[str, int, Any]] = []
        me = self.token()
        local = {ref.id: ref for ref in node.groups.local_members(group)}
        for token, fields in zip(found[::2], found[1::2]):
            token = _text(token)
            peer, _, incarnation = token.partition(" ")
            for raw_id, raw_value in zip(fields[::2], fields[1::2]):
                actor_id_text = _text(raw_id)
                seq_text, _, name = _text(raw_value).partition(" ")
                if not actor_id_text.isdigit() or not seq_text.isdigit():
                    continue  # not written by anyotp: ignored
                actor_id = int(actor_id_text)
                ref: Any
                if token == me:
                    ref = local.get(actor_id)
                    if ref is None:
                        continue  # it left a moment ago
                else:
                    ref = RemoteRef(broker.remote_actors, peer, name or None, actor_id, incarnation)
                    if not ref.alive:
                        continue  # its node is down: the key expires soon
                    broker.membership.watch(peer, incarnation)
                rows.append((peer, int(seq_text), ref))
        rows.sort(key=lambda row: (row[0], row[1]))
        return [ref for _, _, ref in rows]

    async def which_groups(self) -> list[str]:
        found = await run(self._client(), _GROUPS, keys=[self.groups_key], args=[self._prefix()])
        return sorted(_text(group) for group in found)

    # ------------------------------------------------------------------ renewal

    async def rewrite_now(self, client: coredis.Redis[bytes], group: str) -> None:
        """Write this node's members of ``group`` again (their hash vanished: Redis
        restarted or lost the keys)."""
        for actor_id, value in list(self.mine.get(group, {}).items()):
            await run(
                client,
                _JOIN,
                keys=[self.hash_key(group), self.index_key(group), self.groups_key],
                args=[str(actor_id), value, self.token(), group, int(self.broker.node_ttl * 1000)],
            )
        await self._hint(group)

    # ------------------------------------------------------------------ watching

    @asynccontextmanager
    async def watch(self, group: str, hint: Callable[[], None]) -> AsyncIterator[None]:
        broker = self.broker
        node = broker._require_node()

        def on_event(event: NodeEvent) -> None:
            if event.kind in ("nodedown", "nodeup", "broker_reconnected"):
                hint()

        remove = node.add_event_listener(on_event)
        try:
            async with (
                broker.subscribe(f"$otp.pg.{group}") as hints,
                anyio.create_task_group() as task_group,
            ):

                async def follow() -> None:
                    async for _ in hints:
                        hint()

                task_group.start_soon(follow)
                hint()  # anything that changed while subscribing
                yield
                task_group.cancel_scope.cancel()
        finally:
            remove()
