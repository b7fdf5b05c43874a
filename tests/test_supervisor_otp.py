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
from tests._helpers import Counter, Crash, child_ref, restarted

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
        new = await restarted(sup, "g", first)
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

            node._task_group.start_soon(delete_it)
            while True:  # every retry fails; the fourth failure within the window gives up
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
        await restarted(sup, "c", before["c"])
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
        await restarted(sup, "d", before["d"])
        assert shape(log) == [
            ("terminate", "b", "crash"),
            ("terminate", "d", "shutdown"),
            ("terminate", "c", "shutdown"),
            ("init", "b"),
            ("init_failed", "c"),
            ("init", "c"),
            ("init", "d"),
        ]
