"""What an idle actor costs the interpreter, and the start-up paths the leaner actor took.

An idle actor should cost little more than a bare anyio task waiting on an event: at
100,000 actors the cyclic GC walking every tracked object dominates the start (see
docs/performance.md, "Session 3"). The count is measured against such a bare task in the
same run, so it holds across anyio and Python versions.
"""

from __future__ import annotations

import gc
from typing import Any

import anyio
import pytest

import otp
from otp.testing import monitor_count

pytestmark = pytest.mark.anyio

N = 300


class Idle(otp.GenServer):
    pass


def _tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


async def _bare_tasks_per_task() -> float:
    events = [anyio.Event() for _ in range(N)]
    async with anyio.create_task_group() as tg:
        before = _tracked()
        for event in events:
            tg.start_soon(event.wait)
        await anyio.wait_all_tasks_blocked()
        grown = _tracked() - before
        for event in events:
            event.set()
    return grown / N


async def test_an_idle_actor_costs_few_objects_more_than_a_bare_waiting_task() -> None:
    floor = await _bare_tasks_per_task()
    async with otp.Node() as node:
        sup = await node.start(otp.dynamic_supervisor("footprint"))
        spec = otp.worker(Idle, restart=otp.TEMPORARY)
        await sup.start_child(spec)  # warm: first-use caches are not per actor
        before = _tracked()
        for _ in range(N):
            await sup.start_child(spec)
        per_actor = (_tracked() - before) / N
        await sup.stop()
    # The ref, its server, mailbox, parker, the two coroutines of its loop, the
    # supervisor's child record and monitor: about 4-8 more than the bare task on either
    # backend (it was 20-23 more, with a second cancel scope, lists and deques made eagerly,
    # bound methods and a held start promise).
    assert per_actor <= floor + 10, (per_actor, floor)


async def test_a_top_level_actor_needs_no_monitor_of_the_node() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Idle)
        assert [child.ref for child in node.tree().children] == [ref]  # the node knows it
        assert ref.statistics().monitored_by == ()
        assert monitor_count(ref) == 0  # not even a watcher-less one of the runtime's
        await ref.stop()
        assert node.tree().children == ()


class _SlowClaims(otp.InMemoryBroker):
    """A cluster broker stand-in whose global-name claim waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.claiming = anyio.Event()
        self.go = anyio.Event()

    async def _claim_global(self, name: str, ref: Any) -> None:
        self.claiming.set()
        await self.go.wait()

    def _release_global(self, name: str, ref: Any) -> None:
        pass

    async def _locate_global(self, name: str, timeout: float) -> Any:
        return None


async def test_a_kill_before_the_actor_task_exists_is_not_lost() -> None:
    # While its global name is claimed, the new actor is already reachable by name but
    # has no task yet (nor the scope anyio makes with it): the kill must still land.
    broker = _SlowClaims()
    async with otp.Node(broker=broker) as node:
        spawned: list[otp.ActorRef] = []

        async def spawn() -> None:
            spawned.append(await node.spawn(Idle, name=otp.Global("svc")))

        async with anyio.create_task_group() as tg:
            tg.start_soon(spawn)
            await broker.claiming.wait()
            found = node.whereis("svc")
            assert found is not None and found.alive
            early: otp.ActorRef = found
            early.kill()
            broker.go.set()
        with anyio.fail_after(5):
            assert await early.join() == "killed"
        assert spawned == [] or not spawned[0].alive


async def test_a_stale_wake_after_a_killed_sleep_is_harmless() -> None:
    # A killed actor's parker may keep its cancelled wait: late sends find it dead.
    async with otp.Node() as node:
        ref = await node.spawn(Idle)
        ref.kill()
        assert await ref.join() == "killed"
        ref.cast_nowait("late")  # a dead letter, not an error
        await ref.send("late")


# The actor's task takes over the cancel scope anyio runs each task in where anyio has one
# (TaskHandle._cancel_scope, anyio >= 4.14); older anyio releases that the package still
# accepts take the fallback, a scope of the actor's own. Both paths keep the same rules.
@pytest.fixture(params=["task_scope", "own_scope"])
def start_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "own_scope":
        import otp._actor
        import otp._start

        monkeypatch.setattr(otp._actor, "_OUTER_SCOPE", False)
        monkeypatch.setattr(otp._start, "_OUTER_SCOPE", False)
    return str(request.param)


class Crashy(otp.GenServer):
    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        if request == "crash":
            raise RuntimeError("asked to")
        return request


async def test_both_start_paths_keep_stop_kill_links_and_restarts(start_path: str) -> None:
    async with otp.Node() as node:
        # stop and kill
        a = await node.spawn(Idle)
        await a.stop()
        assert not a.alive
        b = await node.spawn(Idle)
        b.kill()
        await b.join()
        assert not b.alive
        # a crash propagates over a link to a non-trapping actor
        c = await node.spawn(Crashy)
        d = await node.spawn(Idle, link=c)
        with pytest.raises(otp.ActorExited):
            await c.call("crash")
        await d.join()
        assert not d.alive
        # a supervisor restarts a crashed child, and its stop ends the child
        sup = await node.start(otp.supervisor("s", [otp.worker(Crashy, id="w")]))
        first = node.whereis("w") or (await sup.which_children())[0].ref
        assert first is not None
        with pytest.raises(otp.ActorExited):
            await first.call("crash")
        await otp.testing.wait_for_restart(sup, "w", first)
        second = (await sup.which_children())[0].ref
        assert second is not None and second is not first
        assert await second.call("hello") == "hello"
        await sup.stop()
        assert not second.alive
