"""Node lifecycle, otp.run, registry, monitors and task hygiene."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import otp
from tests._helpers import Block, Counter, Crash, Get

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_returns_what_main_returns(backend: str) -> None:
    async def main(x: int) -> int:
        async with otp.Node() as node:
            ref = await node.spawn(Counter, x)
            return int(await ref.call(Get()))

    assert otp.run(main, 41, backend=backend) == 41


def test_run_rejects_unknown_backend() -> None:
    async def main() -> None:
        pass

    with pytest.raises(ValueError, match="backend"):
        otp.run(main, backend="curio")


async def test_leaving_node_stops_actors_in_reverse_start_order() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        for name in ("first", "second", "third"):
            await node.spawn(Counter, 0, log, name=name)
    terminates = [entry for entry in log if entry[0] == "terminate"]
    assert terminates == [
        ("terminate", "third", "shutdown"),
        ("terminate", "second", "shutdown"),
        ("terminate", "first", "shutdown"),
    ]


async def test_no_task_outlives_the_node() -> None:
    before = {t.id for t in anyio.get_running_tasks()}

    class Ticker(otp.GenServer):
        async def init(self) -> None:
            self.send_after(3600, "never")

    async with otp.Node() as node:
        for _ in range(20):
            await node.spawn(Counter)
        await node.spawn(Ticker)
        await node.start(otp.supervisor("sup", [otp.worker(Counter, id=f"w{i}") for i in range(5)]))
        assert len(anyio.get_running_tasks()) > len(before) + 25
    after = {t.id for t in anyio.get_running_tasks()}
    assert after == before


async def test_body_exception_propagates_bare_and_actors_still_terminate() -> None:
    log: list[Any] = []
    with pytest.raises(KeyError, match="body"):
        async with otp.Node() as node:
            await node.spawn(Counter, 0, log, name="a")
            raise KeyError("body")
    assert ("terminate", "a", "shutdown") in log


async def test_cancelled_body_still_shuts_down_in_order() -> None:
    log: list[Any] = []
    # The body is cancelled from outside the node (as a deadline would) once both actors
    # run: a fixed deadline could fire mid-spawn on a loaded machine.
    with anyio.CancelScope() as scope:
        async with otp.Node() as node:
            await node.spawn(Counter, 0, log, name="a")
            await node.spawn(Counter, 0, log, name="b")
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert [e for e in log if e[0] == "terminate"] == [
        ("terminate", "b", "shutdown"),
        ("terminate", "a", "shutdown"),
    ]


async def test_stuck_terminate_is_killed_after_its_shutdown_time() -> None:
    class Stuck(otp.GenServer):
        async def terminate(self, reason: Any) -> None:
            await anyio.sleep_forever()

    async with otp.Node() as node:
        ref = await node.spawn(Stuck, shutdown=0.01)
    assert ref.exit_reason == "killed"


async def test_brutal_kill_skips_terminate() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Counter, 0, log, name="brutal", shutdown=otp.BRUTAL_KILL)
    assert ref.exit_reason == "killed"
    assert not [e for e in log if e[0] == "terminate"]


async def test_unsupervised_crash_does_not_take_node_down() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        await ref.cast(Crash("unsupervised"))
        reason = await ref.join()
        assert isinstance(reason, RuntimeError)
        other = await node.spawn(Counter, 3)
        assert await other.call(Get()) == 3


async def test_node_cannot_be_reentered_or_used_outside() -> None:
    node = otp.Node()
    with pytest.raises(RuntimeError, match="async with"):
        await node.spawn(Counter)
    async with node:
        pass
    with pytest.raises(RuntimeError):
        await node.spawn(Counter)
    with pytest.raises(RuntimeError, match="already"):
        async with node:
            pass


class Watcher(otp.GenServer):
    async def init(self) -> None:
        self.downs: list[otp.Down] = []
        self.got = anyio.Event()

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case ("monitor", ref):
                return self.monitor(ref)
            case ("demonitor", mref):
                return self.demonitor(mref)
            case "downs":
                return list(self.downs)

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, otp.Down):
            self.downs.append(message)
            self.got.set()


async def test_monitor_delivers_down_with_reason() -> None:
    async with otp.Node() as node:
        watcher = await node.spawn(Watcher)
        target = await node.spawn(Counter)
        mref = await watcher.call(("monitor", target))
        assert isinstance(mref, otp.MonitorRef)
        await target.cast(Crash("watched"))
        await target.join()
        downs = await watcher.call("downs")
        assert len(downs) == 1
        assert downs[0].ref == target
        assert isinstance(downs[0].reason, RuntimeError)
        assert downs[0].monitor == mref


async def test_monitor_dead_actor_gives_noproc_at_once() -> None:
    async with otp.Node() as node:
        watcher = await node.spawn(Watcher)
        target = await node.spawn(Counter)
        await target.stop()
        await watcher.call(("monitor", target))
        assert await watcher.call("downs") == [otp.Down(target, "noproc")]


async def test_demonitor_and_watcher_exit_drop_the_monitor() -> None:
    async with otp.Node() as node:
        watcher = await node.spawn(Watcher)
        target = await node.spawn(Counter)
        assert target.statistics().monitored_by == ()
        mref = await watcher.call(("monitor", target))
        assert target.statistics().monitored_by == (watcher,)
        assert await watcher.call(("demonitor", mref)) is True
        assert await watcher.call(("demonitor", mref)) is False
        assert target.statistics().monitored_by == ()
        await watcher.call(("monitor", target))
        assert target.statistics().monitored_by == (watcher,)
        await watcher.stop()
        assert target.statistics().monitored_by == ()  # no leak on the target
        await target.stop()


async def test_whereis_returns_none_for_unknown() -> None:
    async with otp.Node() as node:
        assert node.whereis("nobody") is None


async def test_kill_interrupts_a_stuck_callback() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        event = anyio.Event()
        await ref.cast(Block(event))
        await anyio.wait_all_tasks_blocked()
        ref.kill()
        assert await ref.join() == "killed"
