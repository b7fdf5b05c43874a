"""RemoteRef with the local semantics across two nodes on Redis: ``send_request`` and
request id collections, exit signals (``erlang:exit/2`` to a remote pid), worker pools
reached by name from another node, and stops that free a global name in the cluster
before they return."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("coredis", reason="the Redis broker needs coredis (pip install anyotp[redis])")

import coredis

import otp
from otp.testing import wait_until
from tests._cluster_messages import Echo
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


@otp.message("test.remote_api.server")
class Server(otp.GenServer):
    """Answers ``["echo", x]`` with x, holds ``["later", key]`` until a cast
    ``["release", key, value]``, crashes on ``"crash"``, tells who it is on ``"who"``, and
    keeps the casts ``["note", x]`` and the sends it gets (``"notes"`` lists them)."""

    async def init(self) -> None:
        self.waiting: dict[str, otp.Caller] = {}
        self.notes: list[Any] = []

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case ["echo", value]:
                return value
            case ["later", key]:
                self.waiting[key] = caller
                return otp.NOREPLY
            case "crash":
                raise RuntimeError("crash")
            case "who" | ["who", _]:
                return self.ref.id
            case "notes":
                return list(self.notes)
            case _:
                return await super().handle_call(request, caller)

    async def handle_cast(self, message: Any) -> None:
        match message:
            case ["release", key, value]:
                self.reply(self.waiting.pop(key), value)
            case ["note", value]:
                self.notes.append(value)

    async def handle_info(self, message: Any) -> None:
        self.notes.append(message)


@otp.message("test.remote_api.trapper")
class Trapper(otp.GenServer):
    """Traps exits and records them; ``"got"`` answers what it trapped."""

    trap_exit = True

    async def init(self) -> None:
        self.got: list[Any] = []

    async def handle_info(self, message: Any) -> None:
        self.got.append(message)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return list(self.got)


@otp.message("test.remote_api.signaller")
class Signaller(otp.GenServer):
    """Sends an exit signal to a ref from inside an actor (so the signal has a sender)."""

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        ref, reason = request
        ref.exit(reason)
        return "sent"


async def remote(node: otp.Node, name: str) -> otp.RemoteRef:
    ref = await node.broker.whereis(name)  # type: ignore[attr-defined]
    assert isinstance(ref, otp.RemoteRef)
    return ref


# ---------------------------------------------------------------------------- send_request


async def test_send_request_to_a_remote_actor_waits_receives_and_checks(
    nodes: NodeFactory,
) -> None:
    async with nodes("a", "b") as (a, b):
        await a.spawn(Server, name="srv")
        ref = await remote(b, "srv")
        handle = ref.send_request(["echo", 7])
        assert handle.target is ref and handle.request == ["echo", 7]
        assert await handle.wait(2.0) == 7
        assert handle.done() and handle.result() == 7
        assert await handle.receive(2.0) == 7  # a reply can be collected again

        later = ref.send_request(["later", "k"])
        assert not later.done()
        with pytest.raises(RuntimeError, match="no reply yet"):
            later.result()
        with pytest.raises(otp.CallTimeout):
            await later.wait(0.05)  # wait_response keeps it pending
        await ref.cast(["release", "k", "v"])
        assert await later.wait(2.0) == "v"

        dropped = ref.send_request(["later", "gone"])
        with pytest.raises(otp.CallTimeout):
            await dropped.receive(0.05)  # receive_response abandons it
        await ref.cast(["release", "gone", "late"])
        assert await ref.call(["echo", "after"]) == "after"  # the late reply has come
        with pytest.raises(RuntimeError, match="abandoned"):
            dropped.result()
        # Every answered or abandoned request is forgotten by the transport.
        assert b.broker.statistics().awaiting == 0


async def test_send_request_fails_as_locally(nodes: NodeFactory) -> None:
    async with nodes("b") as (b,):
        async with nodes("a") as (a,):
            await a.spawn(Server, name="srv")
            ref = await remote(b, "srv")
            crashed = ref.send_request("crash")
            with pytest.raises(otp.ActorExited) as info:
                await crashed.wait(2.0)
            assert isinstance(info.value.reason, otp.RemoteError)
            # The ref knows its actor exited: a new request fails at once, without a frame.
            dead = ref.send_request(["echo", 1])
            assert dead.done()
            with pytest.raises(otp.ActorExited):
                dead.result()
            await a.spawn(Server, name="srv2")
            other = await remote(b, "srv2")
            held = other.send_request(["later", "k"])
            assert await other.call(["echo", 0]) == 0  # in order: the request is there
        # Node a left: the pending request fails (its actor was shut down, and the node
        # went with it, whichever b learns first).
        with pytest.raises(otp.ActorExited) as info:
            await held.wait(2.0)
        assert info.value.reason in ("shutdown", "nodedown")
        assert b.broker.statistics().awaiting == 0


async def test_request_id_collections_mix_local_and_remote_refs(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        await a.spawn(Server, name="srv")
        local = await b.spawn(Server)
        ref = await remote(b, "srv")
        ids: otp.RequestIds[str] = otp.RequestIds()
        ids.add(ref.send_request(["later", "r"]), "remote-later")
        ids.add(ref.send_request(["echo", 1]), "remote")
        ids.add(local.send_request(["echo", 2]), "local")
        assert len(ids) == 3
        firsts = {(await ids.wait_any(2.0))[1] for _ in range(2)}
        assert firsts == {"remote", "local"}
        assert ids.check() is None
        await ref.cast(["release", "r", "done"])
        handle, label = await ids.wait_any(2.0)
        assert label == "remote-later" and handle.result() == "done" and len(ids) == 0

        ids.add(ref.send_request(["echo", "x"]), "x")
        ids.add(ref.send_request(["echo", "y"]), "y")
        done = await ids.wait_all(2.0)
        assert [(h.result(), label) for h, label in done] == [("x", "x"), ("y", "y")]

        ids.add(ref.send_request(["later", "never"]), "never")
        with pytest.raises(otp.CallTimeout):
            await ids.receive_any(0.05)
        assert len(ids) == 0


# ---------------------------------------------------------------------------- exit signals


async def test_exit_to_a_remote_actor_that_does_not_trap(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        srv = await a.spawn(Server, name="srv")
        ref = await remote(b, "srv")
        ref.exit("normal")  # ignored by an actor that does not trap exits
        ref.exit(None)  # None means "normal"
        assert await ref.call(["echo", 1]) == 1  # frames arrive in order: it survived
        ref.exit("boom")
        assert await srv.join(2.0) == "boom"

        killed = await a.spawn(Server, name="k")
        (await remote(b, "k")).exit("kill")
        assert await killed.join(2.0) == "killed"
        ref.exit("boom")  # a dead actor ignores a signal; nothing raises


async def test_exit_to_a_remote_actor_that_traps(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        trapper = await a.spawn(Trapper, name="trap")
        ref = await remote(b, "trap")
        ref.exit("normal")
        ref.exit(("shutdown", "why"))
        signaller = await b.spawn(Signaller)
        assert await signaller.call([ref, "from-an-actor"]) == "sent"
        got = await wait_until(lambda: _trapped(trapper, 3))
        assert [m.reason for m in got] == ["normal", ("shutdown", "why"), "from-an-actor"]
        assert got[0].ref is None and got[1].ref is None  # sent from outside any actor
        sender = got[2].ref
        assert isinstance(sender, otp.RemoteRef) and sender.node == "b"
        assert sender.id == signaller.id
        assert trapper.alive  # every signal was trapped
        ref.exit("kill")  # untrappable
        assert await trapper.join(2.0) == "killed"


async def _trapped(ref: otp.ActorRef, count: int) -> list[Any] | None:
    got: list[Any] = await ref.call("got")
    return got if len(got) == count else None


# ---------------------------------------------------------------------------- pools


async def test_a_pool_reached_from_another_node_dispatches_to_its_workers(
    nodes: NodeFactory,
) -> None:
    async with nodes("a", "b") as (a, b):
        pool = await a.start(otp.worker_pool("pool", Server, size=3))
        workers = {w.id for w in pool.workers()}
        ref = await remote(b, "pool")
        # Round robin over the three workers, as the local PoolRef does; before, every
        # call reached the supervisor, which crashed on the unknown call.
        seen = [await ref.call("who") for _ in range(6)]
        assert set(seen) == workers and seen[:3] == seen[3:]
        handle = ref.send_request("who")
        assert await handle.wait(2.0) in workers
        # Supervisor operations still reach the supervisor.
        children = await ref.which_children()
        assert [info.id for info in children] == ["pool.0", "pool.1", "pool.2"]
        # Casts and sends go to the workers, one each in turn.
        for i in range(3):
            await ref.cast(["note", i])
            await ref.send(f"sent-{i}")

        async def notes() -> list[list[Any]]:
            return [await w.call("notes") for w in pool.workers()]

        spread = await wait_until(lambda: _all_noted(notes, 6))
        assert sorted(len(n) for n in spread) == [2, 2, 2]
        assert pool.alive


async def _all_noted(notes: Any, total: int) -> list[list[Any]] | None:
    got = await notes()
    return got if sum(len(n) for n in got) == total else None


async def test_a_global_pool_name_dispatches_across_nodes(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        pool = await a.start(otp.worker_pool(otp.Global("gpool"), Server, size=2))
        workers = {w.id for w in pool.workers()}
        seen = {await b.call(otp.Global("gpool"), "who") for _ in range(4)}
        assert seen == workers
        found = await b.locate("gpool")
        assert isinstance(found, otp.RemoteRef)
        assert {await found.call("who") for _ in range(2)} == workers


async def test_multi_call_to_pools_reaches_a_worker_on_every_node(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        pools = {
            "a": await a.start(otp.worker_pool("svc", Server, size=2)),
            "b": await b.start(otp.worker_pool("svc", Server, size=2)),
        }
        replies, bad = await a.multi_call("svc", "who", timeout=2.0)
        assert bad == []
        for node, pool in pools.items():
            assert replies[node] in {w.id for w in pool.workers()}


async def test_a_consistent_hash_pool_keeps_keys_across_nodes(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        pool = await a.start(
            otp.worker_pool(
                "hashed", Server, size=4, dispatch=otp.CONSISTENT_HASH, key=lambda m: str(m[1])
            )
        )
        ref = await remote(b, "hashed")
        keys = [f"user-{i}" for i in range(12)]
        # A key reaches, from another node, the worker the local PoolRef picks for it.
        owners = {key: await pool.call(["who", key]) for key in keys}
        assert len(set(owners.values())) > 1  # the keys spread over the workers
        for key in keys:
            assert await ref.call(["who", key]) == owners[key]
            assert await ref.send_request(["who", key]).wait(2.0) == owners[key]


# ---------------------------------------------------------------------------- stop and names


@pytest.fixture
def slow_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """Releases of global names reach Redis 0.2 s late (a slow or distant Redis), so a
    stop that did not wait for its release would return with the name still held."""
    from otp.redis._globals import GlobalNames

    release_now = GlobalNames.release_now

    async def late(client: Any, items: list[tuple[bytes, str]]) -> None:
        await anyio.sleep(0.2)
        await release_now(client, items)

    monkeypatch.setattr(GlobalNames, "release_now", staticmethod(late))


@pytest.mark.usefixtures("slow_release")
async def test_stop_frees_a_global_name_in_the_cluster_before_it_returns(
    nodes: NodeFactory,
) -> None:
    async with nodes("a", "b") as (a, b):
        svc = await a.spawn(Echo, "a", name=otp.Global("svc"))
        await svc.stop()  # a local stop
        assert await b.locate("svc") is None
        moved = await b.spawn(Echo, "b", name=otp.Global("svc"))  # no NameTaken
        ref = await a.locate("svc")
        assert isinstance(ref, otp.RemoteRef) and ref.id == moved.id
        await ref.stop()  # a remote stop
        assert await a.locate("svc") is None
        back = await a.spawn(Echo, "a", name=otp.Global("svc"))
        located = await b.locate("svc")
        assert isinstance(located, otp.RemoteRef) and located.id == back.id
        # A pool (a supervisor) under a global name: its stop waits for it too.
        await back.stop()
        pool = await a.start(otp.worker_pool(otp.Global("svc"), Server, size=2))
        await pool.stop()
        await b.spawn(Echo, "b", name=otp.Global("svc"))


@pytest.mark.usefixtures("slow_release")
async def test_a_remote_down_comes_after_the_name_is_free(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        await a.spawn(Echo, "a", name=otp.Global("svc"))
        ref = await b.locate("svc")
        assert isinstance(ref, otp.RemoteRef)
        probe = await otp.testing.start_probe(b)
        await probe.monitor(ref)  # type: ignore[arg-type]
        ref.exit("kill")
        assert await probe.expect_down(ref) == "killed"  # type: ignore[arg-type]
        assert await b.locate("svc") is None
        await b.spawn(Echo, "b", name=otp.Global("svc"))


@pytest.mark.usefixtures("slow_release")
async def test_a_caller_that_learns_of_an_exit_finds_the_name_free(
    nodes: NodeFactory,
) -> None:
    async with nodes("a", "b") as (a, b):
        await a.spawn(Server, name=otp.Global("svc"))
        ref = await b.locate("svc")
        assert isinstance(ref, otp.RemoteRef)
        with pytest.raises(otp.ActorExited):
            await ref.call("crash")  # answered once the name is released
        taken = await b.spawn(Server, name=otp.Global("svc"))
        await taken.stop()
        # A stop by name of an actor that has just exited by itself waits for it too.
        local = await a.spawn(Server, name=otp.Global("svc"))
        local.exit("boom")
        assert await local.join(2.0) == "boom"  # its release is still on its way
        await b.broker.remote("svc", "a").stop()
        await b.spawn(Server, name=otp.Global("svc"))


@pytest.mark.usefixtures("slow_release")
async def test_terminate_child_frees_the_childs_global_name_before_it_returns(
    nodes: NodeFactory,
) -> None:
    async with nodes("a", "b") as (a, b):
        child = otp.worker(Server, name=otp.Global("svc"), id="svc")
        sup = await a.start(otp.supervisor("sup", [child]))
        await sup.terminate_child("svc")  # a local supervisor
        taken = await b.spawn(Server, name=otp.Global("svc"))
        await taken.stop()
        await sup.restart_child("svc")
        remote_sup = await remote(b, "sup")
        await remote_sup.terminate_child("svc")  # from another node
        assert await b.locate("svc") is None
        await b.spawn(Server, name=otp.Global("svc"))


async def test_a_pending_request_fails_when_this_node_loses_redis(
    nodes: NodeFactory,
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    async with nodes("a", "b") as (a, b):
        await a.spawn(Server, name="srv")
        ref = await remote(b, "srv")
        held = ref.send_request(["later", "k"])
        assert await ref.call(["echo", 0]) == 0  # in order: the request is there
        async with coredis.Redis.from_url(redis_url) as raw:
            for client in await raw.client_list():
                if client.get("name") == f"otp:{prefix}:b":
                    await raw.client_kill(identifier=int(client["id"]))
        with pytest.raises(otp.ActorExited) as info:
            await held.wait(5.0)
        assert info.value.reason == "noconnection"
        assert b.broker.statistics().awaiting == 0
        await wait_until(lambda: b.broker.statistics().reconnects >= 1)
        assert await ref.call(["echo", 1], timeout=5.0) == 1  # the ref works again


class Gate(otp.GenServer):
    """Traps exits; a cast ``"hold"`` blocks it until ``opened`` is set; records the
    other casts and what it trapped, in order."""

    trap_exit = True

    async def init(self, opened: anyio.Event) -> None:
        self.opened = opened
        self.got: list[Any] = []

    async def handle_cast(self, message: Any) -> None:
        if message == "hold":
            await self.opened.wait()
        else:
            self.got.append(message)

    async def handle_info(self, message: Any) -> None:
        self.got.append(message)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return list(self.got)


async def test_a_trapped_exit_keeps_its_place_behind_casts_waiting_for_room(
    nodes: NodeFactory,
) -> None:
    async with nodes("a", "b") as (a, b):
        opened = anyio.Event()
        gate = await a.spawn(
            Gate, opened, name="gate", mailbox=otp.Mailbox(capacity=1, overflow=otp.Overflow.BLOCK)
        )
        ref = await remote(b, "gate")
        for message in ("hold", "one", "two", "three"):
            await ref.cast(message)
        ref.exit("late")
        await wait_until(lambda: a.broker.statistics().backlog >= 3)  # two, three, the exit
        opened.set()

        async def got() -> list[Any] | None:
            seen: list[Any] = await gate.call("got")
            return seen if len(seen) == 4 else None

        assert await wait_until(got) == ["one", "two", "three", otp.Exit(None, "late")]
