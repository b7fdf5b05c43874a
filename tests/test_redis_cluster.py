"""Cluster primitives on the Redis broker: nodes in this process (each with its own
RedisBroker and connections) and, at the end, real peer processes."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("coredis", reason="the Redis broker needs coredis (pip install anyotp[redis])")

import coredis

import otp
import otp.testing
from tests._cluster_messages import Echo, InitFails
from tests._helpers import Counter
from tests._redis_support import prefix, redis_nodes, redis_url  # noqa: F401

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::ResourceWarning")]


@pytest.fixture(autouse=True)
def _collect_coredis_garbage() -> Iterator[None]:
    yield  # see test_redis.py: coredis leaves streams of failed connections unclosed
    gc.collect()


NodeFactory = Callable[..., Any]


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> NodeFactory:  # noqa: F811
    return redis_nodes(redis_url, prefix)


# ---------------------------------------------------------------------------- multi_call


async def test_multi_call_gives_replies_and_failures_per_node(nodes: NodeFactory) -> None:
    async with nodes("a", "b", "c") as (a, b, c):
        await a.spawn(Echo, name="svc")
        await b.spawn(Echo, name="svc")  # c has no "svc"
        result = await a.multi_call("svc", "hi", timeout=2.0)
        assert result.replies == {"a": ["a", "hi", None], "b": ["b", "hi", None]}
        assert result.bad_nodes == ["c"]
        assert result.failures["c"].reason == "noproc"  # type: ignore[attr-defined]
        replies, bad = await c.multi_call("svc", "x", nodes=["a", "gone"], timeout=2.0)
        assert replies == {"a": ["a", "x", None]} and bad == ["gone"]
        crashed = await b.multi_call("svc", "crash", nodes=["a"], timeout=2.0)
        assert isinstance(crashed.failures["a"], otp.ActorExited)


# ---------------------------------------------------------------------------- supervisors


async def test_remote_supervisor_operations_and_their_errors(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        await a.start(otp.supervisor("sup", [otp.worker(Echo, "first", id="first")]))
        sup = await b.broker.whereis("sup")
        assert isinstance(sup, otp.RemoteRef)
        [info] = await sup.which_children()
        assert info.id == "first" and isinstance(info.ref, otp.RemoteRef)
        assert await info.ref.call("hey") == ["a", "hey", "first"]
        child = await sup.start_child(otp.worker(Echo, "second", id="second"))
        assert isinstance(child, otp.RemoteRef) and child.node == "a"
        assert await child.call("x") == ["a", "x", "second"]
        assert (await sup.count_children()).active == 2
        with pytest.raises(otp.AlreadyStarted):
            await sup.start_child(otp.worker(Echo, id="second"))
        with pytest.raises(otp.ChildRunning):
            await sup.delete_child("second")
        await sup.terminate_child("second")
        assert not await _running(sup, "second")
        again = await sup.restart_child("second")
        assert await again.call("y") == ["a", "y", "second"]
        await sup.terminate_child(again)  # by ref, as locally
        await sup.delete_child("second")
        with pytest.raises(otp.NotFound):
            await sup.restart_child("second")
        with pytest.raises(otp.NotFound):
            await sup.terminate_child("nope")
        with pytest.raises(otp.StartFailed) as failed:
            await sup.start_child(otp.worker(InitFails))
        assert isinstance(failed.value.__cause__, otp.RemoteError)
        assert "no init today" in str(failed.value)
        with pytest.raises(otp.CodecError, match="has no wire name"):
            await sup.start_child(otp.worker(Counter))  # not registered: refused here
        assert [i.id for i in await sup.which_children()] == ["first"]


async def _running(sup: Any, child_id: str) -> bool:
    return any(i.id == child_id and i.ref is not None for i in await sup.which_children())


# ---------------------------------------------------------------------------- global names


async def test_a_global_name_is_unique_across_nodes_and_located_anywhere(
    nodes: NodeFactory,
) -> None:
    async with nodes("a", "b") as (a, b):
        svc = await a.spawn(Echo, "one", name=otp.Global("svc"))
        with pytest.raises(otp.NameTaken) as taken:
            await b.spawn(Echo, name=otp.Global("svc"))
        holder = taken.value.holder
        assert isinstance(holder, otp.RemoteRef) and holder.node == "a" and holder.id == svc.id
        assert b.whereis("svc") is None  # the failed start left nothing behind
        found = await b.locate("svc")
        assert isinstance(found, otp.RemoteRef) and found.node == "a"
        assert await found.call("hi") == ["a", "hi", "one"]
        assert await a.locate("svc") is svc
        # A plain name on another node is another namespace, as in Erlang.
        plain = await b.spawn(Echo, name="svc")
        await plain.stop()
        # Freed when the actor exits: another node may take it at once.
        await svc.stop()
        await until_claimed(b, "svc2", "svc")
        moved = await a.locate("svc")
        assert isinstance(moved, otp.RemoteRef) and moved.node == "b"


async def until_claimed(node: otp.Node, tag: str, name: str) -> otp.ActorRef:
    """Start Echo(tag) as Global(name) on ``node`` once the name is free (the release is
    one Redis round trip behind the exit)."""
    box: list[otp.ActorRef] = []

    async def claim() -> bool:
        try:
            box.append(await node.spawn(Echo, tag, name=otp.Global(name)))
        except otp.NameTaken:
            return False
        return True

    await otp.testing.wait_until(claim)
    return box[0]


async def test_a_global_name_is_freed_when_its_node_leaves(nodes: NodeFactory) -> None:
    async with nodes("b") as (b,):
        async with nodes("a") as (a,):
            await a.spawn(Echo, name=otp.Global("svc"))
        # a has left: its names went with it, without waiting for a TTL.
        ref = await b.spawn(Echo, "b", name=otp.Global("svc"))
        assert await b.locate("svc") is ref


async def test_a_supervised_global_child_keeps_its_name_across_restarts(
    nodes: NodeFactory,
) -> None:
    async with nodes("a", "b") as (a, b):
        sup = await a.start(otp.supervisor("sup", [otp.worker(Echo, name=otp.Global("svc"))]))
        first = a.whereis("svc")
        first.kill()
        fresh = await otp.testing.wait_for_restart(sup, "svc", first)
        located = await b.locate("svc")
        assert located is not None and located.id == fresh.id
        with pytest.raises(otp.NameTaken):
            await b.spawn(Echo, name=otp.Global("svc"))


async def test_concurrent_claims_have_exactly_one_winner(nodes: NodeFactory) -> None:
    async with nodes("a", "b", "c") as all_nodes:
        outcomes: list[Any] = []

        async def claim(node: otp.Node, i: int) -> None:
            try:
                outcomes.append(await node.spawn(Echo, i, name=otp.Global("race")))
            except otp.NameTaken:
                outcomes.append(None)

        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(claim, all_nodes[i % 3], i)
        winners = [ref for ref in outcomes if ref is not None]
        assert len(winners) == 1 and len(outcomes) == 12


async def test_a_node_taken_over_gives_up_the_name_and_stops_the_actor(
    nodes: NodeFactory,
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    async with nodes("a") as (a,):
        events: list[Any] = []
        a.add_event_listener(lambda e: events.append(e) if e.kind == "global_name_lost" else None)
        svc = await a.spawn(Echo, name=otp.Global("svc"))
        client = coredis.Redis.from_url(redis_url)
        async with client:
            key = f"{prefix}:g:svc"
            # Redis lost the key (a restart): the next heartbeat writes it again.
            await client.delete([key])
            await otp.testing.wait_until(lambda: client.exists([key]), timeout=5.0)
            # Another incarnation took it meanwhile (this node was cut off): give it up.
            await client.set(key, "other someone 1")
            assert await svc.join(timeout=5.0) == ("global_name_conflict", "svc")
            assert events and events[0].detail == "svc"
            assert await client.get(key) == b"other someone 1"  # never deleted by a


# ---------------------------------------------------------------------------- groups


async def test_groups_span_nodes(nodes: NodeFactory) -> None:
    async with nodes("a", "b", "c") as (a, b, c):
        wa = await a.spawn(Echo, "wa")
        wb1, wb2 = await b.spawn(Echo, "wb1"), await b.spawn(Echo, "wb2")
        await a.groups.join("workers", wa)
        await b.groups.join("workers", [wb1, wb2])
        await b.groups.join("other", wb1)
        members = await c.groups.members("workers")
        assert [(m.node, m.id) for m in members] == [("a", wa.id), ("b", wb1.id), ("b", wb2.id)]
        assert all(isinstance(m, otp.RemoteRef) for m in members)
        assert await members[1].call("x") == ["b", "x", "wb1"]
        mine = await a.groups.members("workers")
        assert mine[0] is wa  # this node's own members are local refs
        assert await c.groups.which_groups() == ["other", "workers"]
        # Routing by key agrees on every node.
        for key in ("k1", "k2", "k3"):
            routed = {(await n.groups.route("workers", key)).id for n in (a, b, c)}
            assert len(routed) == 1
        # Leave, exit and a node leaving all remove members everywhere.
        await b.groups.leave("workers", wb2)
        assert [m.id for m in await c.groups.members("workers")] == [wa.id, wb1.id]
        await wb1.stop()  # the exit's removal is one Redis round trip behind it

        async def only_wa() -> bool:
            return [m.id for m in await c.groups.members("workers")] == [wa.id]

        await otp.testing.wait_until(only_wa)
        assert await c.groups.which_groups() == ["workers"]


async def test_group_members_of_a_node_that_left_vanish(nodes: NodeFactory) -> None:
    async with nodes("c") as (c,):
        async with nodes("a") as (a,):
            await a.groups.join("g", await a.spawn(Echo))
            assert len(await c.groups.members("g")) == 1
        assert await c.groups.members("g") == []


async def test_group_monitor_sees_changes_on_other_nodes(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        w = await b.spawn(Echo)
        async with a.groups.monitor("g") as watch:
            assert watch.members == []
            await b.groups.join("g", w)
            with anyio.fail_after(5):
                change = await watch.receive()
            assert [r.id for r in change.joined] == [w.id] and change.left == ()
            w.kill()
            with anyio.fail_after(5):
                change = await watch.receive()
            assert [r.id for r in change.left] == [w.id]


# ---------------------------------------------------------------------------- broadcast


async def test_broadcast_reaches_every_node_with_the_filter(nodes: NodeFactory) -> None:
    async with nodes("a", "b", "c") as (a, b, c):
        refs = {
            "a": [await a.spawn(Recorder, name="ra")],
            "b": [await b.spawn(Recorder, name="rb"), await b.spawn(Recorder)],
            "c": [await c.spawn(Recorder, name="rc")],
        }
        staged: list[Any] = []
        a.broker.use(lambda envelope: staged.append(envelope.topic) or envelope)
        assert await a.broker.broadcast("hello") == 4
        assert staged == [otp.BROADCAST]  # middleware once, on the broadcasting node
        for group in refs.values():
            for ref in group:
                assert await ref.call("got") == ["hello"]
        seen: list[Any] = []

        def named(ref: Any) -> bool:
            seen.append(ref)
            return ref.name in ("ra", "rc")

        assert await b.broker.broadcast("picked", where=named) == 2
        assert {type(r).__name__ for r in seen} == {"ActorRef", "RemoteRef"}
        assert await refs["c"][0].call("got") == ["hello", "picked"]
        assert await refs["b"][0].call("got") == ["hello"]
        assert await c.broker.broadcast("none", where=lambda ref: False) == 0
        assert c.broker.recent_dead_letters[-1].reason == "no_subscriber"


class Recorder(otp.GenServer):
    async def init(self) -> None:
        self.got: list[Any] = []

    async def handle_info(self, message: Any) -> None:
        self.got.append(message)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return list(self.got)


async def test_calls_by_global_name_reach_another_node(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        await a.spawn(Echo, "held", name=otp.Global("svc"))
        assert await b.call(otp.Global("svc"), "hi") == ["a", "hi", "held"]
        with pytest.raises(otp.ActorExited):
            await b.call(otp.Global("nobody"), "hi")


async def test_hostile_cluster_keys_are_ignored(
    nodes: NodeFactory,
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    async with nodes("a") as (a,):
        client = coredis.Redis.from_url(redis_url)
        async with client:
            await client.set(f"{prefix}:g:junk", "not a holder")
            assert await a.locate("junk") is None
            with pytest.raises(otp.NameTaken) as taken:
                await a.spawn(Echo, name=otp.Global("junk"))
            assert taken.value.holder is None
            member = await a.spawn(Echo)
            await a.groups.join("g", member)
            index = f"{prefix}:pgi:1:g"
            await client.sadd(index, ["ghost node"])
            await client.hset(f"{prefix}:pgm:1:g:a {a.broker.incarnation}", {"x": "y z"})
            assert await a.groups.members("g") == [member]
            assert await client.sismember(index, "ghost node") == 0  # forgotten


async def test_cluster_operations_while_redis_fails_raise_redis_unavailable(
    nodes: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import otp.redis
    from otp.redis import _globals, _groups

    async with nodes("a") as (a,):
        member = await a.spawn(Echo)

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("Redis went away")

        monkeypatch.setattr(_globals, "run", broken)
        monkeypatch.setattr(_groups, "run", broken)
        with pytest.raises(otp.redis.RedisUnavailable, match="claiming the global name"):
            await a.spawn(Echo, name=otp.Global("svc"))
        assert a.whereis("svc") is None  # nothing half-started
        with pytest.raises(otp.redis.RedisUnavailable, match="joining group"):
            await a.groups.join("g", member)
        assert a.groups.local_members("g") == []  # nothing half-joined
        with pytest.raises(otp.redis.RedisUnavailable, match="reading group"):
            await a.groups.members("g")
