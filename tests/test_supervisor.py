"""Supervision trees, checked against OTP's supervisor scenarios on both backends."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

import otp
from otp import _supervisor
from otp.testing import wait_for_restart, wait_until
from tests._helpers import Add, Block, Counter, Crash, FailingInit, Get, child_ref

pytestmark = pytest.mark.anyio


def names(log: list[Any], kind: str) -> list[Any]:
    return [entry[1] for entry in log if entry[0] == kind]


def three(log: list[Any], strategy: otp.Strategy, **kw: Any) -> otp.SupervisorSpec:
    return otp.supervisor(
        "sup",
        [otp.worker(Counter, 0, log, name=n, **kw) for n in ("a", "b", "c")],
        strategy=strategy,
        max_restarts=10,
        within=60,
    )


async def refs(sup: otp.SupervisorRef) -> dict[str, Any]:
    return {info.id: info.ref for info in await sup.which_children()}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_supervisor, "_clock", fake)
    return fake


# ------------------------------------------------------------------- start and stop


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        sup = await node.start(three(log, otp.ONE_FOR_ONE))
        assert isinstance(sup, otp.SupervisorRef)
        assert node.whereis("sup") is sup
        assert names(log, "init") == ["a", "b", "c"]
        assert [i.id for i in await sup.which_children()] == ["a", "b", "c"]
    assert names(log, "terminate") == ["c", "b", "a"]
    assert all(entry[2] == "shutdown" for entry in log if entry[0] == "terminate")


async def test_which_children_and_count_children() -> None:
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor(
                "root",
                [
                    otp.worker(Counter, name="w", restart=otp.TRANSIENT),
                    otp.supervisor("inner", [otp.worker(Counter, id="x")]),
                ],
            )
        )
        infos = await sup.which_children()
        assert [(i.id, i.kind, i.restart) for i in infos] == [
            ("w", "worker", otp.TRANSIENT),
            ("inner", "supervisor", otp.PERMANENT),
        ]
        assert isinstance(infos[1].ref, otp.SupervisorRef)
        assert await sup.count_children() == otp.ChildCount(
            specs=2, active=2, supervisors=1, workers=1
        )


# ------------------------------------------------------------------- strategies


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        sup = await node.start(three(log, otp.ONE_FOR_ONE))
        before = await refs(sup)
        await before["b"].cast(Crash())
        new_b = await wait_for_restart(sup, "b", before["b"])
        after = await refs(sup)
        assert after["a"] is before["a"]
        assert after["c"] is before["c"]
        assert after["b"] is new_b
        assert not before["b"].alive
        assert await new_b.call(Get()) == 0  # fresh state


async def test_one_for_all_restarts_every_child_stopping_others_in_reverse() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        sup = await node.start(three(log, otp.ONE_FOR_ALL))
        before = await refs(sup)
        log.clear()
        await before["a"].cast(Crash())
        await wait_for_restart(sup, "a", before["a"])
        await wait_until(lambda: len(names(log, "init")) == 3)
        after = await refs(sup)
        assert all(after[k] != before[k] for k in "abc")
        assert all(not before[k].alive for k in "abc")
        # a crashed (terminate with the error); c then b were stopped; all start in order.
        stopped = [e for e in log if e[0] == "terminate"]
        assert [e[1] for e in stopped] == ["a", "c", "b"]
        assert isinstance(stopped[0][2], RuntimeError)
        assert names(log, "init") == ["a", "b", "c"]


async def test_rest_for_one_restarts_the_crashed_child_and_later_ones() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        sup = await node.start(three(log, otp.REST_FOR_ONE))
        before = await refs(sup)
        log.clear()
        await before["b"].cast(Crash())
        await wait_for_restart(sup, "c", before["c"])
        after = await refs(sup)
        assert after["a"] is before["a"]
        assert after["b"] != before["b"]
        assert after["c"] != before["c"]
        assert names(log, "terminate") == ["b", "c"]
        assert names(log, "init") == ["b", "c"]


# ------------------------------------------------------------------- intensity


async def test_intensity_boundary_n_tolerated_n_plus_one_gives_up(clock: FakeClock) -> None:
    log: list[Any] = []
    with pytest.raises(otp.SupervisorGaveUp) as info:
        async with otp.Node() as node:
            sup = await node.start(
                otp.supervisor(
                    "fragile",
                    [otp.worker(Counter, 0, log, name="w")],
                    max_restarts=3,
                    within=5.0,
                )
            )
            for _ in range(3):
                old = await child_ref(sup, "w")
                assert old is not None
                await old.cast(Crash())
                await wait_for_restart(sup, "w", old)
            assert sup.alive  # three restarts are tolerated
            old = await child_ref(sup, "w")
            assert old is not None
            await old.cast(Crash())  # the fourth within the window gives up
            await anyio.sleep_forever()  # the body is cancelled at once
    assert info.value.supervisor == "fragile"
    assert isinstance(info.value.last, RuntimeError)
    assert "fragile" in str(info.value)


async def test_except_star_catches_a_top_level_give_up(clock: FakeClock) -> None:
    caught: list[BaseException] = []
    try:
        async with otp.Node() as node:
            sup = await node.start(
                otp.supervisor("s", [otp.worker(Counter, name="w")], max_restarts=0)
            )
            ref = await child_ref(sup, "w")
            assert ref is not None
            await ref.cast(Crash())
            await anyio.sleep_forever()
    except* otp.SupervisorGaveUp as group:
        caught.extend(group.exceptions)
    assert len(caught) == 1


async def test_sliding_window_spread_out_crashes_never_give_up(clock: FakeClock) -> None:
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor("steady", [otp.worker(Counter, name="w")], max_restarts=2, within=1.0)
        )
        for _ in range(8):
            clock.now += 0.6  # at most two restarts fall in any 1 s window
            old = await child_ref(sup, "w")
            assert old is not None
            await old.cast(Crash())
            await wait_for_restart(sup, "w", old)
        assert sup.alive


async def test_failed_restarts_count_and_escalate(clock: FakeClock) -> None:
    attempts: list[int] = []

    class FailsAfterFirst(otp.GenServer):
        async def init(self) -> None:
            attempts.append(1)
            if len(attempts) > 1:
                raise RuntimeError("cannot come back")

        async def handle_cast(self, message: Any) -> None:
            raise RuntimeError("crash")

    with pytest.raises(otp.SupervisorGaveUp) as info:
        async with otp.Node() as node:
            sup = await node.start(
                otp.supervisor("s", [otp.worker(FailsAfterFirst, name="f")], max_restarts=3)
            )
            ref = await child_ref(sup, "f")
            assert ref is not None
            await ref.cast("die")
            await anyio.sleep_forever()
    # the crash + 3 failed restarts are tolerated restarts; the next failure gives up
    assert len(attempts) == 1 + 3
    assert str(info.value.last) == "cannot come back"


async def test_supervisor_serves_requests_between_failed_restart_retries(
    clock: FakeClock,
) -> None:
    gate = {"fail": True}

    class Flaky(otp.GenServer):
        async def init(self) -> None:
            if gate["fail"] and self.node.whereis("flaky-started") is not None:
                raise RuntimeError("still down")

        async def handle_cast(self, message: Any) -> None:
            raise RuntimeError("crash")

    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor(
                "s",
                [otp.worker(Flaky, id="flaky"), otp.worker(Counter, name="flaky-started")],
                max_restarts=1000,
            )
        )
        ref = await child_ref(sup, "flaky")
        assert ref is not None
        await ref.cast("die")
        await ref.join()
        # While restarts keep failing, the supervisor still answers.
        infos = await sup.which_children()
        assert infos[0].ref is None
        assert infos[0].restarting
        gate["fail"] = False
        new = await wait_for_restart(sup, "flaky", ref)
        assert new.alive


# ------------------------------------------------------------------- restart types


async def test_transient_child_restarted_only_after_abnormal_exit() -> None:
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor("s", [otp.worker(Counter, name="t", restart=otp.TRANSIENT)])
        )
        ref = await child_ref(sup, "t")
        assert ref is not None
        await ref.cast(Crash())
        ref = await wait_for_restart(sup, "t", ref)
        await ref.stop("normal")
        await anyio.wait_all_tasks_blocked()
        infos = await sup.which_children()
        assert infos[0].ref is None  # kept as a spec, not restarted
        assert await sup.restart_child("t") is not None
        ref2 = await child_ref(sup, "t")
        assert ref2 is not None
        await ref2.stop("shutdown")
        await anyio.wait_all_tasks_blocked()
        assert (await sup.which_children())[0].ref is None
        await sup.restart_child("t")
        ref3 = await child_ref(sup, "t")
        assert ref3 is not None
        await ref3.stop(("shutdown", "maintenance"))
        await anyio.wait_all_tasks_blocked()
        assert (await sup.which_children())[0].ref is None


async def test_permanent_child_restarted_even_after_normal_exit() -> None:
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("s", [otp.worker(Counter, name="p")]))
        ref = await child_ref(sup, "p")
        assert ref is not None
        await ref.stop("normal")
        assert (await wait_for_restart(sup, "p", ref)).alive


async def test_temporary_child_never_restarted_and_removed() -> None:
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor("s", [otp.worker(Counter, name="tmp", restart=otp.TEMPORARY)])
        )
        ref = await child_ref(sup, "tmp")
        assert ref is not None
        await ref.cast(Crash())
        await wait_until(lambda: not ref.alive)
        await anyio.wait_all_tasks_blocked()
        assert await sup.which_children() == []


async def test_temporary_bystander_of_one_for_all_is_removed() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor(
                "s",
                [
                    otp.worker(Counter, 0, log, name="perm"),
                    otp.worker(Counter, 0, log, name="temp", restart=otp.TEMPORARY),
                ],
                strategy=otp.ONE_FOR_ALL,
            )
        )
        before = await refs(sup)
        await before["perm"].cast(Crash())
        await wait_for_restart(sup, "perm", before["perm"])
        after = await refs(sup)
        assert list(after) == ["perm"]
        assert not before["temp"].alive
        assert ("terminate", "temp", "shutdown") in log


# ------------------------------------------------------------------- shutdown


async def test_timed_shutdown_kills_a_stuck_child_and_brutal_kill_skips_terminate() -> None:
    log: list[Any] = []

    class Stuck(otp.GenServer):
        async def terminate(self, reason: Any) -> None:
            log.append(("stuck terminate", reason))
            await anyio.sleep_forever()

    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor(
                "s",
                [
                    otp.worker(Counter, 0, log, name="first"),
                    otp.worker(Stuck, name="stuck", shutdown=0.05),
                    otp.worker(Counter, 0, log, name="brutal", shutdown=otp.BRUTAL_KILL),
                ],
            )
        )
        children = await refs(sup)
    assert children["brutal"].exit_reason == "killed"
    assert children["stuck"].exit_reason == "killed"
    assert ("stuck terminate", "shutdown") in log
    assert names(log, "terminate") == ["first"]  # brutal never ran terminate
    assert children["first"].exit_reason == "shutdown"


async def test_shutdown_none_waits_for_terminate() -> None:
    done: list[str] = []

    class Slow(otp.GenServer):
        async def terminate(self, reason: Any) -> None:
            await anyio.sleep(0.05)  # not synchronisation: a terminate that takes time
            done.append("terminated")

    async with otp.Node() as node:
        await node.start(otp.supervisor("s", [otp.worker(Slow, shutdown=None)]))
    assert done == ["terminated"]


async def test_terminate_child_then_restart_and_delete() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        sup = await node.start(three(log, otp.ONE_FOR_ONE))
        await sup.terminate_child("b")
        assert ("terminate", "b", "shutdown") in log
        assert (await refs(sup))["b"] is None
        with pytest.raises(otp.ChildRunning):
            await sup.delete_child("a")
        ref = await sup.restart_child("b")
        assert ref.alive
        with pytest.raises(otp.ChildRunning):
            await sup.restart_child("b")
        await sup.terminate_child(ref)  # by ref works too
        await sup.delete_child("b")
        assert list(await refs(sup)) == ["a", "c"]
        with pytest.raises(otp.NotFound):
            await sup.terminate_child("b")
        with pytest.raises(otp.NotFound):
            await sup.restart_child("zzz")
        with pytest.raises(otp.NotFound):
            await sup.delete_child("zzz")


async def test_start_child_errors_follow_otp() -> None:
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("s", [otp.worker(Counter, name="a")]))
        new = await sup.start_child(otp.worker(Counter, name="c"))
        assert new.alive
        assert [i.id for i in await sup.which_children()] == ["a", "c"]
        with pytest.raises(otp.AlreadyStarted):
            await sup.start_child(otp.worker(Counter, name="c"))
        await sup.terminate_child("c")
        with pytest.raises(otp.AlreadyPresent):
            await sup.start_child(otp.worker(Counter, name="c"))
        with pytest.raises(otp.StartFailed) as info:
            await sup.start_child(otp.worker(FailingInit, id="bad"))
        assert isinstance(info.value.__cause__, RuntimeError)
        assert [i.id for i in await sup.which_children()] == ["a", "c"]
        with pytest.raises(TypeError):
            await sup.start_child("not a spec")  # type: ignore[arg-type]


async def test_atomic_start_failure_stops_started_children() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        with pytest.raises(otp.StartFailed) as info:
            await node.start(
                otp.supervisor(
                    "s",
                    [
                        otp.worker(Counter, 0, log, name="a"),
                        otp.worker(Counter, 0, log, name="b"),
                        otp.worker(FailingInit, "bad config", id="broken"),
                        otp.worker(Counter, 0, log, name="never"),
                    ],
                )
            )
        assert info.value.child == "broken"
        assert "broken" in str(info.value)
        assert str(info.value.__cause__) == "bad config"
        assert names(log, "init") == ["a", "b"]
        assert names(log, "terminate") == ["b", "a"]
        assert node.whereis("s") is None
        assert node.whereis("a") is None


async def test_duplicate_child_ids_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="two children with id 'Counter'"):
        otp.supervisor("s", [otp.worker(Counter), otp.worker(Counter)])


async def test_spec_validation() -> None:
    with pytest.raises(TypeError):
        otp.worker(int)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shutdown"):
        otp.worker(Counter, shutdown=-1)
    with pytest.raises(TypeError, match="restart"):
        otp.worker(Counter, restart="permanent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_restarts"):
        otp.supervisor("s", max_restarts=-1)
    with pytest.raises(ValueError, match="within"):
        otp.supervisor("s", within=0)
    with pytest.raises(TypeError, match="strategy"):
        otp.supervisor("s", strategy="one_for_one")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="children"):
        otp.supervisor("s", [Counter])  # type: ignore[list-item]
    assert otp.worker(Counter, name="n").id == "n"
    assert otp.worker(Counter, name="n", id="i").id == "i"
    assert otp.worker(Counter).id == "Counter"
    assert otp.supervisor("s").shutdown is None
    assert otp.worker(Counter).shutdown == 5.0


# ------------------------------------------------------------------- nesting


class FailsOnRestart(otp.GenServer):
    """Its second start fails (its init raises); the others succeed."""

    async def init(self, starts: list[int]) -> None:
        starts.append(1)
        if len(starts) == 2:
            raise RuntimeError("no restart")

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        raise RuntimeError("boom")


def reports(caplog: pytest.LogCaptureFixture, sup: Any) -> list[tuple[str, str]]:
    return [
        (r.otp_event, r.getMessage())
        for r in caplog.records
        if getattr(r, "otp_supervisor", None) is sup and hasattr(r, "otp_event")
    ]


async def test_a_give_up_is_not_reported_as_a_restart(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # OTP reports child_terminated, then shutdown with reached_max_restart_intensity: the
    # exit that exceeds the intensity is never announced as "restarting it".
    async with otp.Node() as node:
        root = await node.start(
            otp.supervisor(
                "root",
                [otp.supervisor("inner", [otp.worker(Counter, name="leaf")], max_restarts=1)],
                max_restarts=5,
            )
        )
        inner = node.whereis("inner")
        with caplog.at_level(logging.INFO, logger="otp"):
            leaf = node.whereis("leaf")
            with pytest.raises(otp.ActorExited):
                await leaf.call(Crash())
            leaf = await wait_for_restart(inner, "leaf", leaf)  # the first restart is within it
            with pytest.raises(otp.ActorExited):
                await leaf.call(Crash())
            await wait_for_restart(root, "inner", inner)
        events = reports(caplog, inner)
        assert [e for e, _ in events if e in ("child_exited", "gave_up")] == [
            "child_exited",
            "child_exited",
            "gave_up",
        ]
        exits = [m for e, m in events if e == "child_exited"]
        assert "restarting it (one_for_one)" in exits[0]
        assert "restarting it" not in exits[1]
        assert "not restarted: the restart intensity is reached" in exits[1]
        [(_, parent)] = [(e, m) for e, m in reports(caplog, root) if e == "child_exited"]
        assert "child 'inner'" in parent and "restarting it" in parent


async def test_a_failed_restart_that_gives_up_does_not_promise_another_try(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    starts: list[int] = []
    async with otp.Node() as node:
        root = await node.start(
            otp.supervisor(
                "root",
                [
                    otp.supervisor(
                        "inner", [otp.worker(FailsOnRestart, starts, name="w")], max_restarts=1
                    )
                ],
                max_restarts=5,
            )
        )
        inner = node.whereis("inner")
        with caplog.at_level(logging.INFO, logger="otp"):
            with pytest.raises(otp.ActorExited):
                await node.whereis("w").call(Get())
            await wait_for_restart(root, "inner", inner)  # the failed restart was one too many
        events = [(e, m) for e, m in reports(caplog, inner) if e != "child_started"]
        assert [e for e, _ in events] == ["child_exited", "restart_failed", "gave_up"]
        assert "restarting it" in events[0][1]
        assert "will try again" not in events[1][1]
        assert "not restarted: the restart intensity is reached" in events[1][1]


async def test_nested_supervisor_that_gives_up_is_restarted_by_its_parent(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with otp.Node() as node:
        root = await node.start(
            otp.supervisor(
                "root",
                [
                    otp.worker(Counter, name="sibling"),
                    otp.supervisor("inner", [otp.worker(Counter, name="leaf")], max_restarts=0),
                ],
                max_restarts=5,
            )
        )
        sibling = node.whereis("sibling")
        inner = node.whereis("inner")
        leaf = node.whereis("leaf")
        with caplog.at_level(logging.ERROR, logger="otp"):
            await leaf.cast(Crash())
            new_inner = await wait_for_restart(root, "inner", inner)
        assert isinstance(inner.exit_reason, otp.SupervisorGaveUp)
        assert node.whereis("sibling") is sibling  # one-for-one at the root
        assert node.whereis("leaf") not in (None, leaf)
        assert isinstance(new_inner, otp.SupervisorRef)
        assert any("gives up" in r.getMessage() for r in caplog.records)


async def test_transient_nested_supervisor_that_gives_up_is_not_restarted(
    clock: FakeClock,
) -> None:
    async with otp.Node() as node:
        root = await node.start(
            otp.supervisor(
                "root",
                [
                    otp.supervisor(
                        "inner",
                        [otp.worker(Counter, name="leaf")],
                        max_restarts=0,
                        restart=otp.TRANSIENT,
                    )
                ],
            )
        )
        inner = node.whereis("inner")
        await node.whereis("leaf").cast(Crash())
        await inner.join()
        await anyio.wait_all_tasks_blocked()
        infos = await root.which_children()
        assert infos[0].ref is None
        assert root.alive


async def test_killing_a_supervisor_takes_its_subtree_down() -> None:
    async with otp.Node() as node:
        await node.start(
            otp.supervisor("root", [otp.supervisor("inner", [otp.worker(Counter, name="leaf")])])
        )
        inner = node.whereis("inner")
        leaf = node.whereis("leaf")
        inner.kill()
        assert await leaf.join() == "killed"
        await wait_for_restart(node.whereis("root"), "inner", inner)
        assert node.whereis("leaf").alive


# ------------------------------------------------------------------- dynamic & pools


async def test_dynamic_supervisor_starts_children_at_run_time() -> None:
    async with otp.Node() as node:
        dyn = await node.start(otp.dynamic_supervisor("dyn", max_children=3))
        refs_ = [await dyn.start_child(otp.worker(Counter, i)) for i in range(3)]
        assert [await r.call(Get()) for r in refs_] == [0, 1, 2]
        infos = await dyn.which_children()
        assert len({i.id for i in infos}) == 3
        with pytest.raises(otp.MaxChildren):
            await dyn.start_child(otp.worker(Counter))
        await dyn.terminate_child(refs_[0])
        assert (await dyn.count_children()).active == 2
        await refs_[1].cast(Crash())
        await wait_for_restart(dyn, infos[1].id, refs_[1])
        assert (await dyn.count_children()).active == 2


async def test_dynamic_supervisor_stops_many_children_concurrently() -> None:
    # Each terminate returns only once all 40 are running at the same time: stopped one
    # after another, the first would wait out its shutdown time and be killed, and so on.
    inside: list[str] = []
    all_inside = anyio.Event()

    class SlowStop(otp.GenServer):
        async def terminate(self, reason: Any) -> None:
            inside.append(reason)
            if len(inside) == 40:
                all_inside.set()
            await all_inside.wait()

    async with otp.Node() as node:
        dyn = await node.start(otp.dynamic_supervisor("dyn"))
        refs = [await dyn.start_child(otp.worker(SlowStop, shutdown=2.0)) for _ in range(40)]
        with anyio.fail_after(10):
            await dyn.stop("shutdown")
        assert inside == ["shutdown"] * 40
        assert [ref.exit_reason for ref in refs] == ["shutdown"] * 40  # none was killed


async def test_worker_pool_round_robin_and_least_busy() -> None:
    async with otp.Node() as node:
        pool = await node.start(otp.worker_pool("pool", Counter, size=3))
        assert isinstance(pool, otp.PoolRef)
        for _ in range(6):
            await pool.call(Add(1))
        totals = [await w.call(Get()) for w in pool.workers()]
        assert totals == [2, 2, 2]
        busy = await node.start(otp.worker_pool("busy", Counter, size=2, dispatch=otp.LEAST_BUSY))
        event = anyio.Event()
        first, second = busy.workers()
        await first.cast(Block(event))
        await anyio.wait_all_tasks_blocked()
        for _ in range(3):
            first.cast_nowait(Add(100))  # first: one message in hand, three queued
        for _ in range(3):
            busy.cast_nowait(Add(1))  # loads 0, 1, 2 on second: all below first's 4
        assert await second.call(Get()) == 3
        event.set()
        assert await first.call(Get()) == 300
        assert [i.id for i in await busy.which_children()] == ["busy.0", "busy.1"]


async def test_least_busy_ties_go_to_pool_order_not_fewest_handled() -> None:
    # The promise (docs/supervision.md): the shortest mailbox, the message in hand counted;
    # among equals the first worker in pool order, however many each has handled.
    async with otp.Node() as node:
        pool = await node.start(otp.worker_pool("lb", Counter, size=2, dispatch=otp.LEAST_BUSY))
        first, second = pool.workers()
        for _ in range(5):
            await first.call(Add(1))  # first has handled five, second none; both idle
        assert first.statistics().messages_handled == 5
        await anyio.wait_all_tasks_blocked()
        await pool.call(Add(10))
        assert await first.call(Get()) == 15
        assert await second.call(Get()) == 0
        event = anyio.Event()
        await first.cast(Block(event))
        await anyio.wait_all_tasks_blocked()  # first: one in hand, an empty mailbox
        await pool.call(Add(10))
        assert await second.call(Get()) == 10
        event.set()


async def test_backoff_delays_restarts(clock: FakeClock) -> None:
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor(
                "s",
                [otp.worker(Counter, name="w")],
                backoff=otp.Backoff(min=0.05, max=1.0, jitter=0.0),
            )
        )
        ref = await child_ref(sup, "w")
        assert ref is not None
        await ref.cast(Crash())
        await ref.join()
        await anyio.wait_all_tasks_blocked()
        info = (await sup.which_children())[0]
        assert info.restarting
        assert info.ref is None
        assert (await wait_for_restart(sup, "w", ref)).alive


def test_backoff_delays_grow_and_cap() -> None:
    backoff = otp.Backoff(min=0.1, max=1.0, jitter=0.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    jittered = otp.Backoff(min=1.0, max=1.0, jitter=0.5)
    assert all(0.5 <= jittered.delay(1) <= 1.5 for _ in range(50))
    with pytest.raises(ValueError, match="min"):
        otp.Backoff(min=2, max=1)


async def test_events_report_starts_exits_restarts_and_give_ups(clock: FakeClock) -> None:
    events: list[otp.Event] = []
    with pytest.raises(otp.SupervisorGaveUp):
        async with otp.Node() as node:
            remove = node.add_event_listener(events.append)
            node.add_event_listener(lambda e: 1 / 0)  # a failing listener is ignored
            sup = await node.start(
                otp.supervisor("s", [otp.worker(Counter, name="w")], max_restarts=1)
            )
            for _ in range(2):
                ref = await child_ref(sup, "w")
                assert ref is not None
                await ref.cast(Crash())
                if _ == 0:
                    await wait_for_restart(sup, "w", ref)
            await anyio.sleep_forever()
    kinds = [e.kind for e in events]
    assert kinds.count("started") >= 3  # supervisor, child, restarted child
    assert "restarted" in kinds
    assert "gave_up" in kinds
    exits = [e for e in events if e.kind == "exited"]
    crashed = [e for e in exits if type(e.reason) is RuntimeError]
    assert len(crashed) == 2
    assert any(isinstance(e.reason, otp.SupervisorGaveUp) for e in exits)
    restart = next(e for e in events if e.kind == "restarted")
    assert restart.supervisor is not None
    assert restart.detail == "w"
    remove()
    remove()  # harmless twice


async def test_dead_letter_and_overflow_events() -> None:
    events: list[otp.Event] = []
    async with otp.Node() as node:
        node.add_event_listener(events.append)
        ref = await node.spawn(Counter, mailbox=otp.Mailbox(1, otp.Overflow.DROP_NEWEST))
        event = anyio.Event()
        ref.cast_nowait(Block(event))
        await anyio.wait_all_tasks_blocked()
        ref.cast_nowait(Add(1))
        ref.cast_nowait(Add(2))  # dropped
        event.set()
    kinds = [e.kind for e in events]
    assert "overflow" in kinds
    assert "dead_letter" in kinds
    overflow = next(e for e in events if e.kind == "overflow")
    assert overflow.detail == Add(2)


async def test_tree_snapshot_lists_every_actor_with_its_counters() -> None:
    async with otp.Node() as node:
        await node.spawn(Counter, name="loose")
        dyn = await node.start(otp.dynamic_supervisor("dyn"))
        await dyn.start_child(otp.worker(Counter))
        await dyn.start_child(otp.worker(Counter))
        sup = await node.start(otp.supervisor("s", [otp.worker(Counter, name="w")]))
        await node.whereis("w").call(Add(1))
        tree = node.tree()
        assert [c.id for c in tree.children] == ["loose", "dyn", "s"]
        dyn_snap = tree.children[1]
        assert isinstance(dyn_snap, otp.SupervisorSnapshot)
        assert [c.id for c in dyn_snap.children] == ["Counter#1", "Counter#2"]
        s_snap = tree.children[2]
        assert isinstance(s_snap, otp.SupervisorSnapshot)
        assert s_snap.strategy is otp.ONE_FOR_ONE
        (w,) = s_snap.children
        assert isinstance(w, otp.ActorSnapshot)
        assert w.alive
        assert w.messages_handled == 1
        assert w.uptime >= 0.0
        assert w.mailbox is not None
        assert w.mailbox.enqueued == 1
        assert w.ref is node.whereis("w")
        assert sup.alive
