"""Cluster primitives in one program: a global name, a process group of shards, routing
keys to shards by consistent hashing, multi_call, and a pool that keeps a key on one worker.

    python examples/cluster_shards.py                          # one node, in-memory broker
    python examples/cluster_shards.py redis://127.0.0.1:6379/0 # three nodes on Redis

With a Redis URL the same code runs on three nodes (each with its own RedisBroker, as
three processes would): the group spans them and the global name is unique among them.
"""

from __future__ import annotations

import sys
import uuid
from contextlib import AsyncExitStack
from typing import Any

import attrs

import otp


@otp.message("example.shards.put")
@attrs.frozen
class Put:
    key: str
    value: int


@otp.message("example.shards.get")
@attrs.frozen
class Get:
    key: str


@otp.message("example.shards.shard")
class Shard(otp.GenServer):
    """Holds the keys routed to it."""

    async def init(self) -> None:
        self.data: dict[str, int] = {}

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case Put(key, value):
                self.data[key] = value
                return "ok"
            case Get(key):
                return self.data.get(key)
            case "ping":
                return "pong"
            case _:
                raise ValueError(f"unexpected call {request!r}")


async def main(url: str | None) -> None:
    async with AsyncExitStack() as stack:
        names = ["a", "b", "c"] if url else ["solo"]
        prefix = f"example-{uuid.uuid4().hex[:8]}"
        nodes: list[otp.Node] = []
        for name in names:
            broker = None
            if url:
                from otp.redis import RedisBroker

                broker = RedisBroker(url, prefix=prefix)
            nodes.append(await stack.enter_async_context(otp.Node(name=name, broker=broker)))
        first = nodes[0]

        # A global name: one holder in the cluster, found from any node.
        await first.spawn(Shard, name=otp.Global("coordinator"))
        try:
            await nodes[-1].spawn(Shard, name=otp.Global("coordinator"))
        except otp.NameTaken:
            print("a second coordinator was refused: NameTaken")
        coordinator = await nodes[-1].locate("coordinator")
        assert coordinator is not None
        print("the coordinator answers:", await coordinator.call("ping"))

        # A group of shards (two per node), and keys routed by consistent hashing.
        for node in nodes:
            for _ in range(6 // len(nodes)):
                await node.groups.join("shards", await node.spawn(Shard))
        members = await first.groups.members("shards")
        print(f"{len(members)} shards in the group")
        keys = [f"user-{i}" for i in range(12)]
        owners = {key: await first.groups.route("shards", key) for key in keys}
        for key in keys:
            await owners[key].call(Put(key, len(key)))
        gone = owners["user-0"]
        # A shard leaves on its own node (a remote ref knows its node, a local one is here).
        home = next(n for n in nodes if n.name == getattr(gone, "node", first.name))
        [mine] = [r for r in home.groups.local_members("shards") if r.id == gone.id]
        await home.groups.leave("shards", mine)
        moved = [k for k in keys if await first.groups.route("shards", k) != owners[k]]
        print(
            "after one shard left, only its keys moved:",
            moved == [k for k in keys if owners[k] == gone],
        )

        # multi_call: one request to the "stats" actor of every node.
        for node in nodes:
            await node.spawn(Shard, name="stats")
        replies, bad_nodes = await first.multi_call("stats", "ping", timeout=5.0)
        print(f"multi_call: {len(replies)} replies, bad nodes {bad_nodes}")

        # A local pool that keeps each key on one worker.
        pool = await first.start(
            otp.worker_pool(
                "pool", Shard, size=4, dispatch=otp.CONSISTENT_HASH, key=lambda m: m.key
            )
        )
        await pool.call(Put("alice", 1))
        print("alice's worker remembers her:", await pool.call(Get("alice")) == 1)


if __name__ == "__main__":
    otp.run(main, sys.argv[1] if len(sys.argv) > 1 else None)
