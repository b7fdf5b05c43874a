"""GenServer semantics: call, cast, send, replies, crashes, continues and timeouts."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import attrs
import pytest

import otp
from otp.testing import start_probe, wait_until
from tests._helpers import Add, Block, Counter, Crash, FailingInit, Get, Sleep

pytestmark = pytest.mark.anyio


async def test_contract_example() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter, 5, name="counter")
        await ref.cast(Add(2))
        assert await ref.call(Get(), timeout=5.0) == 7
        assert node.whereis("counter") == ref
        assert ref.name == "counter"
        assert ref.alive


async def test_refs_are_hashable_and_equal_per_incarnation() -> None:
    async with otp.Node() as node:
        a = await node.spawn(Counter)
        b = await node.spawn(Counter)
        assert a == a and a != b
        assert len({a, b, a}) == 2
        assert "Counter" in repr(a)


async def test_call_default_timeout_is_five_seconds() -> None:
    import inspect

    assert inspect.signature(otp.ActorRef.call).parameters["timeout"].default == 5.0


async def test_call_timeout_keeps_server_running_and_drops_late_reply() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter, name="slow")
        release = anyio.Event()  # the handler answers only once the call has timed out
        with pytest.raises(otp.CallTimeout) as info:
            await ref.call(Block(release), timeout=0.01)
        assert isinstance(info.value, TimeoutError)
        assert "'slow'" in str(info.value)
        release.set()
        # The late reply is dropped; the next call gets its own answer.
        assert await ref.call(Add(1)) == 1
        assert ref.alive


async def test_call_dead_actor_raises_at_once() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter, name="c")
        await ref.stop()
        assert not ref.alive
        with anyio.fail_after(1):
            with pytest.raises(otp.ActorExited) as info:
                await ref.call(Get())
        assert info.value.reason == "normal"
        assert "'c'" in str(info.value)


async def test_caller_woken_when_target_dies_during_call() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        event = anyio.Event()
        errors: list[BaseException] = []

        async def caller() -> None:
            try:
                await ref.call(Block(event), timeout=None)
            except otp.ActorExited as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            ref.kill()
        assert len(errors) == 1
        assert isinstance(errors[0], otp.ActorExited)
        assert errors[0].reason == "killed"


async def test_queued_callers_get_actor_exited_when_it_crashes() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        event = anyio.Event()
        results: list[Any] = []

        async def call(request: Any) -> None:
            try:
                results.append(await ref.call(request, timeout=None))
            except otp.ActorExited as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            await ref.cast(Block(event))
            tg.start_soon(call, Crash("kaput"))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(call, Get())
            await anyio.wait_all_tasks_blocked()
            event.set()
        assert len(results) == 2
        assert all(isinstance(r, otp.ActorExited) for r in results)
        crashed = results[0]
        assert isinstance(crashed.__cause__, RuntimeError)
        assert str(crashed.__cause__) == "kaput"


async def test_handle_call_crash_runs_terminate_notifies_monitors_frees_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[Any] = []

    async with otp.Node() as node:
        ref = await node.spawn(Counter, 0, log, name="crashy")
        probe = await start_probe(node)
        await probe.monitor(ref)
        with caplog.at_level(logging.ERROR, logger="otp"):
            with pytest.raises(otp.ActorExited) as info:
                await ref.call(Crash("bad request"))
            await ref.join()
        assert isinstance(info.value.__cause__, RuntimeError)
        assert isinstance(info.value.reason, RuntimeError)
        assert log[-1][0] == "terminate" and isinstance(log[-1][2], RuntimeError)
        assert isinstance(await probe.expect_down(ref), RuntimeError)
        await probe.ref.call("sync")  # a round trip: every Down sent before it is recorded
        assert [d.ref for d in probe.messages if isinstance(d, otp.Down)] == [ref]
        assert node.whereis("crashy") is None
        assert any("crash report" in r.getMessage() for r in caplog.records)
        # The node survives an unsupervised crash.
        again = await node.spawn(Counter, name="crashy")
        assert await again.call(Get()) == 0


async def test_cancelled_caller_leaves_server_consistent() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        with anyio.move_on_after(0.01):
            await ref.call(Sleep(0.05))
        with anyio.CancelScope() as scope:
            scope.cancel()
            await ref.call(Add(5))
        assert await ref.call(Add(1)) in (1, 6)
        assert ref.alive


async def test_calling_yourself_raises_instead_of_deadlocking() -> None:
    class Selfish(otp.GenServer):
        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            try:
                await self.ref.call("again")
            except otp.CalledSelf as exc:
                return exc
            return "deadlock"

    async with otp.Node() as node:
        ref = await node.spawn(Selfish)
        with anyio.fail_after(2):
            result = await ref.call("go")
        assert isinstance(result, otp.CalledSelf)
        assert isinstance(result, RuntimeError)


async def test_cast_and_send_to_dead_actor_become_dead_letters() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        await ref.stop()
        before = node.broker.statistics().dead_letters
        await ref.cast(Add(1))
        await ref.send("hello")
        ref.cast_nowait(Add(2))
        assert node.broker.statistics().dead_letters == before + 3


async def test_send_goes_to_handle_info_in_order_with_casts() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        await ref.send("a")
        await ref.cast(Add(1))
        ref.send_nowait("b")
        assert await ref.call("infos") == ["a", "b"]
        assert await ref.call(Get()) == 1


async def test_deferred_reply_with_noreply() -> None:
    class Deferred(otp.GenServer):
        async def init(self) -> None:
            self.waiting: list[otp.Caller] = []

        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            if request == "wait":
                self.waiting.append(caller)
                return otp.NOREPLY
            for waiter in self.waiting:
                self.reply(waiter, request)
            self.waiting.clear()
            return "released"

    async with otp.Node() as node:
        ref = await node.spawn(Deferred)
        results: list[Any] = []

        async def waiter() -> None:
            results.append(await ref.call("wait"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert await ref.call("go") == "released"
        assert results == ["go", "go"]


async def test_pending_noreply_callers_fail_when_server_exits() -> None:
    class Hoarder(otp.GenServer):
        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            return otp.NOREPLY

    async with otp.Node() as node:
        ref = await node.spawn(Hoarder)
        errors: list[BaseException] = []

        async def waiter() -> None:
            try:
                await ref.call("x", timeout=None)
            except otp.ActorExited as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            await ref.stop("shutdown")
        assert len(errors) == 1 and errors[0].reason == "shutdown"  # type: ignore[attr-defined]


async def test_handle_continue_runs_before_queued_messages() -> None:
    order: list[str] = []

    class Continuing(otp.GenServer):
        async def init(self) -> None:
            self.continue_with("after-init")

        async def handle_continue(self, arg: Any) -> None:
            order.append(arg)

        async def handle_cast(self, message: Any) -> None:
            order.append(message)
            if message == "first":
                self.continue_with("after-first")

        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            return list(order)

    async with otp.Node() as node:
        ref = await node.spawn(Continuing)
        ref.cast_nowait("first")
        ref.cast_nowait("second")
        assert await ref.call("order") == ["after-init", "first", "after-first", "second"]


async def test_idle_timeout_delivers_idle_message() -> None:
    class Idle(otp.GenServer):
        idle_timeout = 0.01

        async def init(self, fired: anyio.Event) -> None:
            self.fired = fired
            self.seen: list[Any] = []

        async def handle_info(self, message: Any) -> None:
            self.seen.append(message)
            self.idle_timeout = None
            self.fired.set()

        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            await self.fired.wait()
            return self.seen

    async with otp.Node() as node:
        fired = anyio.Event()
        ref = await node.spawn(Idle, fired)
        with anyio.fail_after(5):
            # The idle timeout fires before the call arrives only if nothing is queued,
            # so wait for it from outside first.
            await fired.wait()
        assert await ref.call("seen") == [otp.IdleTimeout(0.01)]


async def test_send_after_delivers_and_cancel_prevents() -> None:
    class Timed(otp.GenServer):
        async def init(self, got: anyio.Event) -> None:
            self.got = got
            self.seen: list[Any] = []
            cancelled = self.send_after(0.0, "cancelled")
            cancelled.cancel()
            self.send_after(0.01, "tick")

        async def handle_info(self, message: Any) -> None:
            self.seen.append(message)
            self.got.set()

        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            if request == "negative":
                try:
                    self.send_after(-1, "x")
                except ValueError as error:
                    return error
            return list(self.seen)

    async with otp.Node() as node:
        got = anyio.Event()
        ref = await node.spawn(Timed, got)
        with anyio.fail_after(5):
            await got.wait()
        assert await ref.call("seen") == ["tick"]
        error = await ref.call("negative")
        assert isinstance(error, ValueError) and "send_after" in str(error)


async def test_stop_from_inside_does_not_deadlock() -> None:
    class Quitter(otp.GenServer):
        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            if request == "self.stop":
                self.stop("done")
            else:
                await self.ref.stop("done")
            return "bye"

    async with otp.Node() as node:
        for how in ("self.stop", "ref.stop"):
            ref = await node.spawn(Quitter)
            with anyio.fail_after(2):
                assert await ref.call(how) == "bye"
                assert await ref.join() == "done"


async def test_stop_runs_terminate_with_reason_and_is_idempotent() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Counter, 0, log, name="s")
        await ref.stop("custom")
        assert log[-1] == ("terminate", "s", "custom")
        assert ref.exit_reason == "custom"
        await ref.stop()  # already dead: returns quietly
        assert node.whereis("s") is None


async def test_stop_with_full_blocked_mailbox_works_at_once() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter, mailbox=otp.Mailbox(capacity=2))
        event = anyio.Event()
        await ref.cast(Block(event))  # being handled
        await anyio.wait_all_tasks_blocked()
        await ref.cast(Add(1))
        await ref.cast(Add(1))  # mailbox now full
        blocked_done: list[str] = []

        async def blocked_sender() -> None:
            await ref.cast(Add(100))
            blocked_done.append("returned")

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_sender)
            await anyio.wait_all_tasks_blocked()
            assert ref.statistics().mailbox.blocked_senders == 1
            with anyio.fail_after(2):
                # The current callback is stuck forever: stop gives it its shutdown
                # time, then kills; the request itself never waits behind the mailbox.
                with pytest.raises(otp.CallTimeout):
                    await ref.stop("shutdown", timeout=0.05)
                ref.kill()
                await ref.join()
        assert not ref.alive
        assert blocked_done == ["returned"]


async def test_init_failure_raises_start_failed_and_frees_name() -> None:
    async with otp.Node() as node:
        with pytest.raises(otp.StartFailed) as info:
            await node.spawn(FailingInit, "nope", name="broken")
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "broken" in str(info.value)
        assert node.whereis("broken") is None


async def test_name_taken_and_freed_on_exit() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter, name="unique")
        with pytest.raises(otp.NameTaken) as info:
            await node.spawn(Counter, name="unique")
        assert isinstance(info.value, ValueError)
        assert "unique" in str(info.value)
        await ref.stop()
        assert node.whereis("unique") is None
        new = await node.spawn(Counter, name="unique")
        assert node.whereis("unique") is new and new != ref
        assert node.registered() == ["unique"]


async def test_default_callbacks_crash_on_unhandled_call_and_cast() -> None:
    class Bare(otp.GenServer):
        pass

    async with otp.Node() as node:
        ref = await node.spawn(Bare)
        with pytest.raises(otp.ActorExited) as info:
            await ref.call("x")
        assert isinstance(info.value.__cause__, NotImplementedError)
        assert "handle_call" in str(info.value.__cause__)
        with pytest.raises(otp.StartFailed) as start:
            await node.spawn(Bare, 1, 2)
        assert isinstance(start.value.__cause__, TypeError)


async def test_unexpected_info_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    class Bare(otp.GenServer):
        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            return "alive"

    async with otp.Node() as node:
        ref = await node.spawn(Bare)
        with caplog.at_level(logging.WARNING, logger="otp"):
            await ref.send("stray")
            assert await ref.call("ping") == "alive"
        assert any("unexpected message" in r.getMessage() for r in caplog.records)


async def test_terminate_crash_becomes_exit_reason() -> None:
    class BadTerminate(otp.GenServer):
        async def terminate(self, reason: Any) -> None:
            raise KeyError("terminate failed")

    async with otp.Node() as node:
        ref = await node.spawn(BadTerminate)
        await ref.send("crash in terminate on the way out")
        with pytest.raises(otp.ActorExited) as info:
            await ref.stop("normal")
        assert isinstance(info.value.reason, KeyError)
        assert isinstance(await ref.join(), KeyError)
        assert isinstance(ref.exit_reason, KeyError)


class _Quitting(otp.GenServer):
    """handle_call stops its own server and replies; terminate is slow (or raises)."""

    async def init(self, log: list[Any], how: str = "ok") -> None:
        self.log = log
        self.how = how

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        self.stop(request)
        return "bye"

    async def terminate(self, reason: Any) -> None:
        self.log.append("terminate started")
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        self.log.append("terminate finished")
        if self.how == "raise":
            raise ValueError("cleanup failed")
        if self.how == "hang":
            await anyio.sleep_forever()


async def test_stop_reason_reply_is_sent_after_terminate() -> None:
    # OTP: {stop, Reason, Reply, State} replies once terminate/2 has returned.
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(_Quitting, log)
        with anyio.fail_after(5):
            assert await ref.call("normal") == "bye"
        assert log == ["terminate started", "terminate finished"]
        assert await ref.join() == "normal"


async def test_stop_reason_reply_is_sent_even_when_terminate_raises() -> None:
    # OTP sends the reply in an `after` around terminate/2; the server exits with the crash.
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(_Quitting, log, "raise")
        with anyio.fail_after(5):
            assert await ref.call("normal") == "bye"
            assert log == ["terminate started", "terminate finished"]
            assert isinstance(await ref.join(), ValueError)


async def test_stop_reason_reply_never_comes_when_killed_in_terminate() -> None:
    # A server killed inside terminate never sends its reply: the caller hears of the exit.
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(_Quitting, log, "hang")
        async with anyio.create_task_group() as tg:
            errors: list[BaseException] = []

            async def call() -> None:
                try:
                    await ref.call("normal")
                except otp.ActorExited as exc:
                    errors.append(exc)

            tg.start_soon(call)
            await wait_until(lambda: log == ["terminate started", "terminate finished"])
            ref.kill()
        assert [getattr(e, "reason", None) for e in errors] == ["killed"]


async def test_reply_not_delayed_when_another_task_stops_the_server() -> None:
    # A stop requested from outside while handle_call runs is not the call's own
    # {stop, ...}: the reply goes at once, as gen_server replies before it handles the
    # EXIT or system message that stops it.
    gate, release, replied = anyio.Event(), anyio.Event(), anyio.Event()
    log: list[str] = []

    class Slow(otp.GenServer):
        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            await gate.wait()
            return "done"

        async def terminate(self, reason: Any) -> None:
            await release.wait()
            log.append("terminated")

    async with otp.Node() as node:
        ref = await node.spawn(Slow)
        seen: list[Any] = []

        async def call() -> None:
            seen.append(await ref.call("x", timeout=None))
            seen.append(list(log))
            replied.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ref.stop)
            await anyio.wait_all_tasks_blocked()
            gate.set()
            with anyio.fail_after(5):
                await replied.wait()
            release.set()
        assert seen == ["done", []]
        assert log == ["terminated"]


async def test_gen_server_stop_exits_with_terminate_crash_reason() -> None:
    # OTP: gen_server:stop/1 exits with the new reason when terminate/2 crashes.
    class BadTerminate(otp.GenServer):
        async def terminate(self, reason: Any) -> None:
            raise KeyError("terminate failed")

    async with otp.Node() as node:
        ref = await node.spawn(BadTerminate, name="bad")
        with pytest.raises(otp.ActorExited) as info:
            await ref.stop()
        assert isinstance(info.value.reason, KeyError)
        assert info.value.__cause__ is info.value.reason
        assert "'bad'" in str(info.value)
        assert ref.exit_reason is info.value.reason
        await ref.stop()  # already dead: returns quietly, as before


async def test_gen_server_stop_exits_with_other_reason_when_killed() -> None:
    # gen_server:stop/3 exits with whatever reason the server exited with.
    class Stubborn(otp.GenServer):
        async def terminate(self, reason: Any) -> None:
            await anyio.sleep_forever()

    async with otp.Node() as node:
        ref = await node.spawn(Stubborn)
        async with anyio.create_task_group() as tg:
            outcome: list[Any] = []

            async def stopper() -> None:
                try:
                    await ref.stop("normal")
                    outcome.append("returned")
                except otp.ActorExited as exc:
                    outcome.append(exc.reason)

            tg.start_soon(stopper)
            await anyio.wait_all_tasks_blocked()
            ref.kill()
        assert outcome == ["killed"]


async def test_statistics_snapshot() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter, name="stats")
        for _ in range(3):
            await ref.cast(Add(1))
        assert await ref.call(Get()) == 3
        stats = ref.statistics()
        assert stats.name == "stats" and stats.alive
        assert stats.messages_handled == 4
        assert stats.mailbox.enqueued == 4
        assert stats.mailbox.depth == 0
        assert stats.mailbox.high_water >= 1
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            stats.name = "x"  # type: ignore[misc]


async def test_join_timeout_raises_call_timeout() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        with pytest.raises(otp.CallTimeout):
            await ref.join(timeout=0.01)


async def test_spawn_rejects_bad_input() -> None:
    async with otp.Node() as node:
        with pytest.raises(TypeError, match="GenServer"):
            await node.spawn(object)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Mailbox"):
            await node.spawn(Counter, mailbox=10)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="shutdown"):
            await node.spawn(Counter, shutdown=-1)
        with pytest.raises(TypeError, match="name"):
            await node.spawn(Counter, name="")


async def test_get_state_returns_a_copy_between_callbacks() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter, 4)
        await ref.cast(Add(1))
        state = await ref.get_state()
        assert state["total"] == 5
        assert "ref" not in state
        assert "node" not in state
        state["total"] = 100  # a copy: the actor is unaffected
        assert await ref.call(Get()) == 5
        await ref.stop()
        with pytest.raises(otp.ActorExited):
            await ref.get_state()
