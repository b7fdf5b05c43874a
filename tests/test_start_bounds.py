"""Starts and shutdowns that cannot hang forever: start_timeout (OTP's start_link
Timeout), a supervisor that stays answerable and stoppable while a child's init hangs."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import otp
from otp import _supervisor, _supervisor_refs
from tests._helpers import Counter, child_ref

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


class Hangs(otp.GenServer):
    """``init`` returns on the first ``ok`` starts (``attempts`` counts), then hangs."""

    async def init(self, state: dict[str, Any]) -> None:
        state["attempts"] += 1
        if state["attempts"] > state.get("ok", 0):
            try:
                await anyio.sleep_forever()
            finally:
                state["cancelled"] = state.get("cancelled", 0) + 1

    async def handle_cast(self, message: Any) -> None:
        raise RuntimeError("crash")


async def test_spawn_start_timeout_kills_a_hanging_init_and_raises_start_failed() -> None:
    state: dict[str, Any] = {"attempts": 0}
    async with otp.Node() as node:
        with anyio.fail_after(5):
            with pytest.raises(otp.StartFailed) as info:
                await node.spawn(Hangs, state, name="h", start_timeout=0.05)
        assert isinstance(info.value.__cause__, TimeoutError)
        assert "0.05s" in str(info.value.__cause__)
        assert state["cancelled"] == 1  # the init was cancelled, not left running
        assert node.whereis("h") is None
        with pytest.raises(ValueError, match="start_timeout"):
            await node.spawn(Counter, start_timeout=0)


async def test_worker_start_timeout_fails_the_first_start_and_stops_siblings() -> None:
    state: dict[str, Any] = {"attempts": 0}
    log: list[Any] = []
    async with otp.Node() as node:
        with anyio.fail_after(5):
            with pytest.raises(otp.StartFailed) as info:
                await node.start(
                    otp.supervisor(
                        "s",
                        [
                            otp.worker(Counter, 0, log, name="first"),
                            otp.worker(Hangs, state, id="slow", start_timeout=0.05),
                        ],
                    )
                )
        assert info.value.child == "slow"
        assert isinstance(info.value.__cause__, TimeoutError)
        assert log == [("init", "first"), ("terminate", "first", "shutdown")]
        assert node.whereis("s") is None
        with pytest.raises(otp.StartFailed):  # at the top: the supervisor's own bound
            await node.start(
                otp.supervisor("t", [otp.worker(Hangs, state, id="slow")], start_timeout=0.05)
            )


async def test_restart_that_times_out_counts_as_a_failed_restart(clock: FakeClock) -> None:
    state: dict[str, Any] = {"attempts": 0, "ok": 1}
    with anyio.fail_after(10), pytest.raises(otp.SupervisorGaveUp) as info:
        async with otp.Node() as node:
            sup = await node.start(
                otp.supervisor(
                    "s",
                    [otp.worker(Hangs, state, id="h", start_timeout=0.05)],
                    max_restarts=2,
                )
            )
            ref = await child_ref(sup, "h")
            assert ref is not None
            await ref.cast("die")
            await anyio.sleep_forever()  # the give-up cancels the body
    # the crash and one timed-out restart are tolerated; the second timeout gives up
    assert state["attempts"] == 1 + 2
    assert isinstance(info.value.last, TimeoutError)


async def test_supervisor_answers_and_stops_while_a_restart_init_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_supervisor_refs, "BUSY_GRACE", 0.05)
    state: dict[str, Any] = {"attempts": 0, "ok": 1}
    with anyio.fail_after(10):
        async with otp.Node() as node:
            sup = await node.start(
                otp.supervisor("s", [otp.worker(Hangs, state, id="h"), otp.worker(Counter)])
            )
            ref = await child_ref(sup, "h")
            assert ref is not None
            await ref.cast("die")
            await ref.join()
            # The restart's init never returns: which_children still answers.
            infos = await sup.which_children()
            assert [(i.id, i.ref is None, i.restarting) for i in infos] == [
                ("h", True, True),
                ("Counter", False, False),
            ]
            assert (await sup.count_children()).active == 1
            assert state["attempts"] == 2
        # Leaving the node asked the supervisor to stop: the pending start was given up.
    assert state["cancelled"] == 1
    assert not sup.alive and sup.exit_reason == "shutdown"


class Stubborn(otp.GenServer):
    """Swallows every cancellation while ``hold["on"]``: it outlives kill()."""

    async def init(self, hold: dict[str, Any]) -> None:
        self.hold = hold

    async def handle_cast(self, message: Any) -> None:
        self.hold["busy"].set()
        while self.hold["on"]:
            try:
                await anyio.sleep(0.01)  # not synchronisation: the stubborn loop itself
            except anyio.get_cancelled_exc_class():
                pass  # the bug under test: cancellation swallowed


@pytest.mark.parametrize("supervised", [False, True])
async def test_node_exit_reports_an_actor_that_swallows_kill_and_goes_on(
    supervised: bool, caplog: pytest.LogCaptureFixture
) -> None:
    hold: dict[str, Any] = {"on": True, "busy": anyio.Event()}
    log: list[Any] = []
    seen: list[str] = []

    def on_event(event: Any) -> None:
        if event.kind == "actor_stuck":
            seen.append(event.actor.name)
        elif event.kind == "exited" and event.actor.name == "before":
            # The shutdown went on past the stuck actor (and its supervisor) to the one
            # started before it: only now let the stuck one end, so the test can finish.
            hold["on"] = False

    with anyio.fail_after(20):
        async with otp.Node(kill_timeout=0.2) as node:
            node.add_event_listener(on_event)
            await node.spawn(Counter, 0, log, name="before")
            if supervised:
                sup = await node.start(
                    otp.supervisor("s", [otp.worker(Stubborn, hold, name="stuck", shutdown=0.05)])
                )
                stuck = await child_ref(sup, "stuck")
            else:
                stuck = await node.spawn(Stubborn, hold, name="stuck", shutdown=0.05)
            assert stuck is not None
            await stuck.cast("go")
            await hold["busy"].wait()
    assert seen == ["stuck"]
    assert any("did not exit within 0.2s of being killed" in r.getMessage() for r in caplog.records)
    assert ("terminate", "before", "shutdown") in log
    assert not stuck.alive


def test_kill_timeout_is_validated() -> None:
    with pytest.raises(ValueError, match="kill_timeout"):
        otp.Node(kill_timeout=0)
    with pytest.raises(TypeError, match="kill_timeout"):
        otp.Node(kill_timeout="5")  # type: ignore[arg-type]
