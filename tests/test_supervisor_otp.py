"""Supervisor edge cases pinned to Erlang/OTP 25's behaviour.

Each test is named after the OTP behaviour it pins down; the comment above it gives the
event trace the same scenario produced under ``erl`` (OTP 25, supervisor.erl), which the
anyotp trace must equal.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import otp
from otp import _supervisor
from otp.testing import wait_for_restart, wait_until
from tests._helpers import Counter, Crash, child_ref

pytestmark = pytest.mark.anyio


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


class Verdicts:
    """Lets a test decide each start of a :class:`Gated` child: ``"ok"`` or ``"fail"``."""

    def __init__(self, first: str = "ok") -> None:
        self.attempts = 0
        self.queued = [first]
        self.arrived = anyio.Event()  # set while an init waits for its verdict
        self.given = anyio.Event()

    def give(self, verdict: str) -> None:
        self.queued.append(verdict)
        self.given.set()

    async def next(self) -> str:
        self.attempts += 1
        while not self.queued:
            self.arrived.set()
            self.given = anyio.Event()
            await self.given.wait()
        self.arrived = anyio.Event()
        return self.queued.pop(0)


class Gated(otp.GenServer):
    """A child whose every ``init`` waits for the test's verdict."""

    async def init(self, verdicts: Verdicts) -> None:
        if await verdicts.next() == "fail":
            raise RuntimeError("still down")

    async def handle_cast(self, message: Any) -> None:
        raise RuntimeError("crash")


class FailsOnce(Counter):
    """A Counter whose next ``init`` fails if its name is in ``fail_next``."""

    async def init(  # type: ignore[override]
        self, start: int, log: list[Any], fail_next: set[str]
    ) -> None:
        name = self.ref.name
        if name in fail_next:
            fail_next.discard(name)
            log.append(("init_failed", name))
            raise RuntimeError("cannot start")
        await super().init(start, log)


def trapping(log: list[Any], fail_next: set[str], *ids: str) -> list[otp.WorkerSpec]:
    return [otp.worker(FailsOnce, 0, log, fail_next, name=i) for i in ids]


def shape(log: list[Any]) -> list[tuple[Any, ...]]:
    """The log with exceptions reduced to "crash", as in the Erlang trace."""
    return [
        (e[0], e[1], "crash") if len(e) > 2 and isinstance(e[2], Exception) else tuple(e)
        for e in log
    ]


# erl: restart_child(sup, a) while a's restart keeps failing -> {error, restarting};
# the retries go on and a comes back once its init succeeds (no extra start attempt).
async def test_restart_child_while_restarting_returns_restarting_and_retries_go_on(
    clock: FakeClock,
) -> None:
    verdicts = Verdicts()
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor("s", [otp.worker(Gated, verdicts, id="g")], max_restarts=100)
        )
        first = await child_ref(sup, "g")
        assert first is not None
        await first.cast("die")
        with anyio.fail_after(5):
            await verdicts.arrived.wait()  # the restart waits for its verdict
        results: list[Any] = []

        async def restart_it() -> None:
            try:
                results.append(await sup.restart_child("g"))
            except otp.Restarting as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(restart_it)
            while not results:  # fail attempts until the call is answered between two
                with anyio.fail_after(5):
                    await verdicts.arrived.wait()
                verdicts.give("fail")
                await anyio.wait_all_tasks_blocked()
        (error,) = results
        assert isinstance(error, otp.Restarting)
        assert error.child_id == "g" and "being restarted" in str(error)
        tried = verdicts.attempts
        verdicts.give("ok")  # the pending retry succeeds
        new = await wait_for_restart(sup, "g", first)
        assert new.alive
        assert verdicts.attempts == tried  # restart_child made no start attempt of its own
        assert not (await sup.which_children())[0].restarting


# erl: delete_child(sup, a) in the same window -> {error, restarting}; the spec stays, the
# retries go on, and the supervisor reaches its intensity and gives up (shutdown).
async def test_delete_child_while_restarting_returns_restarting_and_give_up_still_happens(
    clock: FakeClock,
) -> None:
    verdicts = Verdicts()
    results: list[Any] = []
    with pytest.raises(otp.SupervisorGaveUp) as info:
        async with otp.Node() as node:
            sup = await node.start(
                otp.supervisor("s", [otp.worker(Gated, verdicts, id="g")], max_restarts=3)
            )
            first = await child_ref(sup, "g")
            assert first is not None
            await first.cast("die")
            with anyio.fail_after(5):
                await verdicts.arrived.wait()

            async def delete_it() -> None:
                try:
                    results.append(await sup.delete_child("g"))
                except otp.Restarting as exc:
                    results.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(delete_it)
                while True:  # every retry fails; the fourth failure in the window gives up
                    with anyio.fail_after(5):
                        await verdicts.arrived.wait()
                    verdicts.give("fail")
                    await anyio.wait_all_tasks_blocked()
    assert isinstance(results[0], otp.Restarting)
    assert str(info.value.last) == "still down"
    assert verdicts.attempts == 1 + 3  # the first start and three failed restarts


# erl (one_for_all, children a b c, b's init fails once on the restart):
#   c crashes: terminate c crash, terminate b shutdown, terminate a shutdown,
#   init a ok, init b fail, [retry] terminate a shutdown, init a, init b, init c.
async def test_one_for_all_retry_after_failed_restart_restarts_the_whole_group() -> None:
    log: list[Any] = []
    fail_next: set[str] = set()
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor("s", trapping(log, fail_next, "a", "b", "c"), strategy=otp.ONE_FOR_ALL)
        )
        before = {i.id: i.ref for i in await sup.which_children()}
        log.clear()
        fail_next.add("b")
        await before["c"].cast(Crash())
        await wait_for_restart(sup, "c", before["c"])
        after = {i.id: i.ref for i in await sup.which_children()}
        assert shape(log) == [
            ("terminate", "c", "crash"),
            ("terminate", "b", "shutdown"),
            ("terminate", "a", "shutdown"),
            ("init", "a"),
            ("init_failed", "b"),
            ("terminate", "a", "shutdown"),
            ("init", "a"),
            ("init", "b"),
            ("init", "c"),
        ]
        assert all(ref is not None and ref.alive for ref in after.values())


# erl (rest_for_one, children a b c d, c's init fails once on the restart):
#   b crashes: terminate b crash, terminate d shutdown, terminate c shutdown,
#   init b ok, init c fail, [retry] init c, init d  (b keeps the incarnation it got).
async def test_rest_for_one_retry_after_failed_restart_restarts_from_the_failed_child() -> None:
    log: list[Any] = []
    fail_next: set[str] = set()
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor(
                "s", trapping(log, fail_next, "a", "b", "c", "d"), strategy=otp.REST_FOR_ONE
            )
        )
        before = {i.id: i.ref for i in await sup.which_children()}
        log.clear()
        fail_next.add("c")
        await before["b"].cast(Crash())
        await wait_for_restart(sup, "d", before["d"])
        assert shape(log) == [
            ("terminate", "b", "crash"),
            ("terminate", "d", "shutdown"),
            ("terminate", "c", "shutdown"),
            ("init", "b"),
            ("init_failed", "c"),
            ("init", "c"),
            ("init", "d"),
        ]


# ------------------------------------------------------------------- init returning ignore


class Ignores(otp.GenServer):
    """``init`` follows ``plans[name]``: ``"ignore"`` returns otp.IGNORE, else it starts."""

    async def init(self, child: str, plans: dict[str, list[str]], log: list[Any]) -> object:
        plan = plans.get(child) or ["ok"]
        verdict = plan.pop(0) if len(plan) > 1 else plan[0]
        log.append(("init", child, verdict))
        return otp.IGNORE if verdict == "ignore" else None

    async def handle_cast(self, message: Any) -> None:
        raise RuntimeError("crash")


def ignoring(child: str, plans: dict[str, list[str]], log: list[Any], **kw: Any) -> otp.WorkerSpec:
    return otp.worker(Ignores, child, plans, log, id=child, **kw)


# erl (one_for_all; a ok, b ignore, t temporary ignore): which_children [{b,undefined},
# {a,Pid}] (t is not kept), count_children specs 2 active 1; terminate_child(b) -> ok;
# restart_child(b) -> {ok,undefined} (init runs again); start_child(d) ignoring ->
# {ok,undefined} and kept; a temporary e ignoring -> {ok,undefined}, not kept.
async def test_init_ignore_keeps_the_spec_and_start_or_restart_child_return_none() -> None:
    log: list[Any] = []
    plans = {"b": ["ignore"], "t": ["ignore"], "d": ["ignore"], "e": ["ignore"]}
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor(
                "s",
                [
                    ignoring("a", plans, log),
                    ignoring("b", plans, log),
                    ignoring("t", plans, log, restart=otp.TEMPORARY),
                ],
                strategy=otp.ONE_FOR_ALL,
            )
        )
        infos = await sup.which_children()
        assert [(i.id, i.ref is not None, i.restarting) for i in infos] == [
            ("a", True, False),
            ("b", False, False),
        ]
        assert await sup.count_children() == otp.ChildCount(
            specs=2, active=1, supervisors=0, workers=2
        )
        await sup.terminate_child("b")  # nothing runs: ok
        assert await sup.restart_child("b") is None
        assert await sup.start_child(ignoring("d", plans, log)) is None
        assert await sup.start_child(ignoring("e", plans, log, restart=otp.TEMPORARY)) is None
        assert [i.id for i in await sup.which_children()] == ["a", "b", "d"]
        assert [e[1] for e in log] == ["a", "b", "t", "b", "d", "e"]
        assert node.whereis("s") is sup and sup.alive


# erl (same tree, b ignores again and d now starts): a crashes -> terminate a crash,
# init a ok, init b ignore, init d ok: a group restart starts an ignored child again.
async def test_one_for_all_restart_starts_an_ignored_child_again() -> None:
    log: list[Any] = []
    plans = {"b": ["ignore"], "d": ["ignore", "ok"]}
    async with otp.Node() as node:
        sup = await node.start(
            otp.supervisor(
                "s",
                [ignoring("a", plans, log), ignoring("b", plans, log)],
                strategy=otp.ONE_FOR_ALL,
            )
        )
        assert await sup.start_child(ignoring("d", plans, log)) is None
        a = await child_ref(sup, "a")
        assert a is not None
        log.clear()
        await a.cast("die")
        await wait_for_restart(sup, "a", a)
        await wait_until(lambda: len(log) == 3)
        assert log == [("init", "a", "ok"), ("init", "b", "ignore"), ("init", "d", "ok")]
        running = {i.id: i.ref is not None for i in await sup.which_children()}
        assert running == {"a": True, "b": False, "d": True}


# erl: gen_server:start returning ignore (no pid): node.spawn / node.start(worker) /
# spawn_link raise otp.Ignored instead, so their result is always a running actor.
async def test_spawn_of_an_actor_whose_init_ignores_raises_ignored() -> None:
    log: list[Any] = []
    plans = {"x": ["ignore"]}
    async with otp.Node() as node:
        with pytest.raises(otp.Ignored) as info:
            await node.spawn(Ignores, "x", plans, log, name="x")
        assert "returned otp.IGNORE" in str(info.value)
        assert node.whereis("x") is None  # its name is free again
        with pytest.raises(otp.Ignored):
            await node.start(otp.worker(Ignores, "x", plans, log, name="x"))
        assert node.whereis("x") is None
        assert node.tree().children == ()


# ------------------------------------------------------------------- significant children


def significant_tree(log: list[Any], mode: otp.AutoShutdown) -> otp.SupervisorSpec:
    return otp.supervisor(
        "s",
        [
            otp.worker(Counter, 0, log, name="p"),
            otp.worker(Counter, 0, log, name="t1", restart=otp.TRANSIENT, significant=True),
            otp.worker(Counter, 0, log, name="t2", restart=otp.TRANSIENT, significant=True),
            otp.worker(Counter, 0, log, name="tmp", restart=otp.TEMPORARY, significant=True),
        ],
        auto_shutdown=mode,
        restart=otp.TRANSIENT,
    )


# erl (any_significant; p permanent, t1 t2 transient significant, tmp temporary
# significant): t1 crashes -> restarted, supervisor alive; terminate_child(t1) -> alive
# (not its own exit); t2 exits normal -> the supervisor exits with reason shutdown.
async def test_any_significant_shuts_down_on_a_significant_childs_own_normal_exit() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        root = await node.start(
            otp.supervisor("root", [significant_tree(log, otp.ANY_SIGNIFICANT)])
        )
        sup = node.whereis("s")
        t1 = await child_ref(sup, "t1")
        assert t1 is not None
        await t1.cast(Crash())
        await wait_for_restart(sup, "t1", t1)
        await sup.terminate_child("t1")
        assert sup.alive
        await node.whereis("t2").stop("normal")
        assert await sup.join() == "shutdown"
        await wait_until(lambda: ("terminate", "p", "shutdown") in log)
        # A transient supervisor that shut itself down is not restarted by its parent.
        infos = await root.which_children()
        assert [(i.id, i.ref) for i in infos] == [("s", None)]


# erl (all_significant, same tree): t1 crashes -> restarted; terminate_child(t1) -> alive;
# t2 exits normal -> alive (tmp still runs); tmp exits normal -> shutdown.
async def test_all_significant_shuts_down_once_no_significant_child_runs() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        sup = await node.start(significant_tree(log, otp.ALL_SIGNIFICANT))
        t1 = await child_ref(sup, "t1")
        assert t1 is not None
        await t1.cast(Crash())
        await wait_for_restart(sup, "t1", t1)
        await sup.terminate_child("t1")
        await node.whereis("t2").stop("normal")
        running = {i.id: i.ref is not None for i in await sup.which_children()}
        assert running == {"p": True, "t1": False, "t2": False, "tmp": True}
        await node.whereis("tmp").stop("normal")
        assert await sup.join() == "shutdown"


# erl: a temporary significant child that crashes also shuts an any_significant
# supervisor down (any exit of a temporary child is its own); a permanent significant
# child or a significant child under auto_shutdown never is a bad_combination error.
async def test_temporary_significant_child_crash_triggers_auto_shutdown() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        sup = await node.start(significant_tree(log, otp.ANY_SIGNIFICANT))
        await node.whereis("tmp").cast(Crash())
        assert await sup.join() == "shutdown"


async def test_significant_spec_errors_are_otps_bad_combination() -> None:
    with pytest.raises(ValueError, match="significant and PERMANENT"):
        otp.worker(Counter, significant=True)
    with pytest.raises(ValueError, match="significant and PERMANENT"):
        otp.supervisor("s", significant=True, auto_shutdown=otp.ANY_SIGNIFICANT)
    child = otp.worker(Counter, name="j", restart=otp.TRANSIENT, significant=True)
    with pytest.raises(ValueError, match=r"auto_shutdown=otp\.NEVER"):
        otp.supervisor("s", [child])
    with pytest.raises(TypeError, match="auto_shutdown"):
        otp.supervisor("s", auto_shutdown="any")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="significant"):
        otp.worker(Counter, restart=otp.TRANSIENT, significant=1)  # type: ignore[arg-type]
    assert otp.supervisor("ok", [child], auto_shutdown=otp.ALL_SIGNIFICANT).children == (child,)
    async with otp.Node() as node:
        for spec in (otp.supervisor("plain"), otp.dynamic_supervisor("dyn")):
            sup = await node.start(spec)
            with pytest.raises(ValueError, match=r"auto_shutdown=otp\.NEVER"):
                await sup.start_child(child)
            assert sup.alive and await sup.which_children() == []


# ------------------------------------------------------------------- killing a supervisor


class Trapping(Counter):
    async def init(self, start: int = 0, log: list[Any] | None = None) -> None:  # type: ignore[override]
        await super().init(start, log)
        self.trap_exit = True


# erl: exit(Sup, kill) with children a (traps exits) and b: a runs terminate(killed);
# the DOWN reasons are sup killed, a killed, b killed.
@pytest.mark.parametrize("how", ["base_kill", "exit_kill", "ref_kill"])
async def test_killed_supervisor_kills_its_children_trapping_ones_terminate_killed(
    how: str,
) -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        root = await node.start(
            otp.supervisor(
                "root",
                [
                    otp.supervisor(
                        "inner",
                        [
                            otp.worker(Trapping, 0, log, name="a"),
                            otp.worker(Counter, 0, log, name="b"),
                        ],
                    )
                ],
            )
        )
        inner, a, b = (node.whereis(n) for n in ("inner", "a", "b"))
        log.clear()
        if how == "base_kill":
            otp.ActorRef.kill(inner)  # not SupervisorRef's method: the process does it
        elif how == "exit_kill":
            inner.exit("kill")
        else:
            inner.kill()
        with anyio.fail_after(5):
            assert [await inner.join(), await a.join(), await b.join()] == ["killed"] * 3
        assert log == [("terminate", "a", "killed")]  # b was killed without terminate
        new_inner = await wait_for_restart(root, "inner", inner)
        assert new_inner.alive and node.whereis("a").alive


class IgnoringMachine(otp.StateMachine):
    async def init(self) -> object:
        return otp.IGNORE  # gen_statem's init may return ignore too


async def test_state_machine_init_may_ignore() -> None:
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("s", [otp.worker(IgnoringMachine, id="m")]))
        assert [(i.id, i.ref) for i in await sup.which_children()] == [("m", None)]
        with pytest.raises(otp.Ignored):
            await node.spawn(IgnoringMachine)
