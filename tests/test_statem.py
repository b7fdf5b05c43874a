"""otp.StateMachine: gen_statem's rules, each pinned by a test, on both backends.

The order rules were checked against OTP 25's gen_statem (``erl``): the scenario comments
give the Erlang event trace each test reproduces.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import attrs
import pytest
from hypothesis import assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

import otp
from otp import EventType as E
from otp.testing import wait_for_restart, wait_until

pytestmark = pytest.mark.anyio


@attrs.frozen
class Do:
    """Content of an event: the scripted machine logs ``tag`` and returns ``then``."""

    tag: str
    then: Any = None  # a transition, or a callable (machine, event) -> transition


class Scripted(otp.StateMachine):
    """A handle_event machine driven by its events: every event is logged as
    ``(state, type, tag-or-content)`` in a shared list; a ``Do`` event returns its ``then``.
    ``on_enter[state]`` is what the enter call of ``state`` returns."""

    callback_mode = otp.CallbackMode.HANDLE_EVENT_FUNCTION

    async def init(
        self,
        log: list[Any],
        state: Any = "a",
        actions: tuple[Any, ...] = (),
        on_enter: dict[Any, Any] | None = None,
    ) -> otp.NextState:
        self.log = log
        self.on_enter = on_enter or {}
        self.terminated: Any = None
        return otp.NextState(state, *actions)

    async def handle_event(self, event: otp.StateEvent, state: Any) -> otp.Transition:
        if event.type is E.ENTER:
            self.log.append((state, "enter", event.content))
            return await _resolve(self.on_enter.get(state), self, event)
        content = event.content
        if isinstance(content, Do):
            self.log.append((state, event.type.value, content.tag))
            return await _resolve(content.then, self, event)
        self.log.append((state, event.type.value, content))
        return None

    async def terminate(self, reason: Any) -> None:
        self.log.append(("terminate", reason, self.state))


class ScriptedEnter(Scripted):
    state_enter = True


async def _resolve(then: Any, machine: Scripted, event: otp.StateEvent) -> Any:
    if not callable(then):
        return then
    result = then(machine, event)
    return await result if inspect.isawaitable(result) else result


async def _when_queued(machine: Scripted, then: Any) -> Any:
    """Wait in the callback until a message is queued behind this event, then return."""
    ref = machine.ref
    await wait_until(lambda: ref.statistics().mailbox.depth >= 1)
    return then


def _timer_tasks() -> int:
    """How many ``send_after`` timer tasks run now (the machine's timeouts are those)."""
    return sum(1 for task in anyio.get_running_tasks() if "_run_timer" in str(task.name))


async def _logged(log: list[Any], n: int, timeout: float = 5.0) -> list[Any]:
    """Wait until ``log`` has ``n`` entries and return them."""
    await wait_until(lambda: len(log) >= n, timeout=timeout)
    return list(log)


# ---------------------------------------------------------------------------- the two modes


@attrs.frozen
class Press:
    digit: int


class Lock(otp.StateMachine):
    """State functions: one async method per state."""

    async def init(self, code: list[int]) -> otp.NextState:
        self.code = code
        self.pressed: list[int] = []
        return otp.NextState("locked")

    async def locked(self, event: otp.StateEvent) -> otp.Transition:
        match event:
            case otp.StateEvent(E.CAST, Press(digit)):
                self.pressed.append(digit)
                if self.pressed[-len(self.code) :] == self.code:
                    self.pressed.clear()
                    return otp.NextState("open")
            case otp.StateEvent(E.CALL, "state", caller):
                return otp.KeepState(otp.Reply(caller, "locked"))
            case otp.StateEvent(E.INFO, "go"):
                return otp.NextState("open")
            case otp.StateEvent(E.CALL, "nowhere", caller):
                return otp.NextState("nowhere")
        return None

    async def open(self, event: otp.StateEvent) -> otp.Transition:
        match event:
            case otp.StateEvent("call", "state", caller):  # EventType members are strings
                return otp.KeepState(otp.Reply(caller, "open"))
            case otp.StateEvent(E.CAST, "lock"):
                return otp.NextState("locked")
        return otp.KeepState()


async def test_state_functions_get_calls_casts_and_sends() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Lock, [1, 2], name="lock")
        assert node.whereis("lock") == ref
        assert await ref.call("state") == "locked"
        await ref.cast(Press(1))
        await ref.cast(Press(2))
        assert await ref.call("state") == "open"
        await ref.cast("lock")
        assert await ref.call("state") == "locked"
        await ref.send("go")
        assert await ref.call("state") == "open"
        assert (await ref.get_state())["state"] == "open"


async def test_state_functions_reject_a_state_without_a_function() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Lock, [1])
        with pytest.raises(otp.ActorExited) as info:
            await ref.call("nowhere")
        assert isinstance(info.value.__cause__, otp.BadTransition)
        assert "'nowhere' has no state function" in str(info.value.__cause__)


async def test_handle_event_mode_gets_the_state() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log, ("any", 1))  # any value may be a state
        await ref.cast(Do("go", otp.NextState(frozenset({2}))))
        await ref.cast("x")
        await ref.send("y")
        assert await _logged(log, 3) == [
            (("any", 1), "cast", "go"),
            (frozenset({2}), "cast", "x"),
            (frozenset({2}), "info", "y"),
        ]


async def test_class_checks_catch_mistakes_at_definition() -> None:
    with pytest.raises(TypeError, match="overrides handle_call"):

        class A(otp.StateMachine):
            async def handle_call(self, request: Any, caller: otp.Caller) -> Any: ...

    with pytest.raises(TypeError, match="EventTimeout"):

        class B(otp.StateMachine):
            idle_timeout = 1.0

    with pytest.raises(TypeError, match="HANDLE_EVENT_FUNCTION"):

        class C(otp.StateMachine):
            async def handle_event(self, event: otp.StateEvent, state: Any) -> otp.Transition:
                return None

    with pytest.raises(TypeError, match="CallbackMode"):

        class D(otp.StateMachine):
            callback_mode = "state_functions"  # type: ignore[assignment]


# ---------------------------------------------------------------------------- init


async def test_init_sets_the_state_and_its_actions_run_before_any_message() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(
            Scripted,
            log,
            "a",
            (otp.NextEvent(Do("first")), otp.NextEvent(Do("second")), otp.StateTimeout(0, "t0")),
        )
        await ref.cast("message")
        assert await _logged(log, 4) == [
            ("a", "internal", "first"),
            ("a", "internal", "second"),
            ("a", "state_timeout", "t0"),
            ("a", "cast", "message"),
        ]


async def test_init_must_return_next_state() -> None:
    class Forgot(otp.StateMachine):
        async def init(self) -> otp.NextState:
            return None  # type: ignore[return-value]

    async with otp.Node() as node:
        with pytest.raises(otp.StartFailed) as info:
            await node.spawn(Forgot)
        assert isinstance(info.value.__cause__, otp.BadTransition)
        assert "otp.NextState(initial_state" in str(info.value.__cause__)


async def test_init_cannot_postpone() -> None:
    async with otp.Node() as node:
        with pytest.raises(otp.StartFailed) as info:
            await node.spawn(Scripted, [], "a", (otp.Postpone(),))
        assert isinstance(info.value.__cause__, otp.BadTransition)


async def test_the_machine_counts_as_started_before_the_initial_enter_call() -> None:
    # gen_statem acks the start, then runs the initial enter call (enter/8).
    gate = anyio.Event()

    class Slow(otp.StateMachine):
        state_enter = True

        async def init(self) -> otp.NextState:
            return otp.NextState("idle")

        async def idle(self, event: otp.StateEvent) -> otp.Transition:
            if event.type is E.ENTER:
                await gate.wait()
            return None

    async with otp.Node() as node:
        with anyio.fail_after(5):
            ref = await node.spawn(Slow)
        gate.set()
        assert ref.alive


# ---------------------------------------------------------------------------- state enter


async def test_state_enter_runs_on_start_and_on_each_change_with_the_old_state() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(ScriptedEnter, log, "a")
        await ref.cast(Do("to b", otp.NextState("b")))
        await ref.cast(Do("same", otp.NextState("b")))  # the same state: no enter call
        await ref.cast(Do("keep", otp.KeepState()))
        await ref.cast(Do("none"))
        await ref.cast(Do("back", otp.NextState("a")))
        assert await _logged(log, 8) == [
            ("a", "enter", "a"),  # the initial state enters itself
            ("a", "cast", "to b"),
            ("b", "enter", "a"),
            ("b", "cast", "same"),
            ("b", "cast", "keep"),
            ("b", "cast", "none"),
            ("b", "cast", "back"),
            ("a", "enter", "b"),
        ]


async def test_repeat_state_runs_the_enter_call_again() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(ScriptedEnter, log, "a")
        await ref.cast(Do("repeat", otp.RepeatState()))
        await ref.cast(Do("keep", otp.KeepState()))
        assert await _logged(log, 4) == [
            ("a", "enter", "a"),
            ("a", "cast", "repeat"),
            ("a", "enter", "a"),  # the old state is the current one
            ("a", "cast", "keep"),
        ]


async def test_repeat_state_without_state_enter_is_keep_state() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log, "a")
        await ref.cast(Do("p", otp.KeepState(otp.Postpone())))
        await ref.cast(Do("repeat", otp.RepeatState(otp.StateTimeout(0, "kept"))))
        await ref.cast("after")
        # repeat_state is no state change: the postponed event stays, the timeout runs.
        assert await _logged(log, 4) == [
            ("a", "cast", "p"),
            ("a", "cast", "repeat"),
            ("a", "state_timeout", "kept"),
            ("a", "cast", "after"),
        ]
        postponed = (await ref.get_state())["_otp_machine"]["postponed"]
        assert [e.content.tag for e in postponed] == ["p"]


async def test_repeat_state_from_an_enter_call_runs_it_again() -> None:
    # OTP 25: an enter call returning repeat_state twice -> [{a,enter,a,0},{a,enter,a,1},
    # {a,enter,a,2}, ...].
    log: list[Any] = []
    runs = iter(range(3))

    def enter_a(machine: Scripted, event: otp.StateEvent) -> otp.Transition:
        return otp.RepeatState() if next(runs) < 2 else None

    async with otp.Node() as node:
        ref = await node.spawn(ScriptedEnter, log, "a", (), {"a": enter_a})
        await ref.cast("x")
        assert await _logged(log, 4) == [("a", "enter", "a")] * 3 + [("a", "cast", "x")]


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (otp.KeepState(otp.Postpone()), "an enter call cannot postpone"),
        (otp.KeepState(otp.NextEvent("x")), "an enter call cannot insert"),
        (otp.NextState("elsewhere"), "an enter call cannot change the state"),
    ],
)
async def test_an_enter_call_may_not_postpone_insert_or_change_state(
    returned: Any, message: str
) -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(ScriptedEnter, log, "a", (), {"b": returned})
        with pytest.raises(otp.ActorExited) as info:
            await ref.call(Do("to b", otp.NextState("b")))
        error = info.value.__cause__
        assert isinstance(error, otp.BadTransition)
        assert message in str(error)
        assert log[-1] == ("terminate", error, "b")


async def test_an_enter_call_may_reply_set_timeouts_and_stop() -> None:
    log: list[Any] = []

    def enter_b(machine: Scripted, event: otp.StateEvent) -> otp.Transition:
        return otp.KeepState(otp.Reply(machine.caller, "entered b"), otp.StateTimeout(0, "st"))

    def to_b(machine: Scripted, event: otp.StateEvent) -> otp.Transition:
        machine.caller = event.caller  # type: ignore[attr-defined]
        return otp.NextState("b")

    async with otp.Node() as node:
        ref = await node.spawn(
            ScriptedEnter, log, "a", (), {"b": enter_b, "c": otp.Stop(("shutdown", "c"))}
        )
        assert await ref.call(Do("to b", to_b)) == "entered b"
        assert (await _logged(log, 4))[3] == ("b", "state_timeout", "st")
        await ref.cast(Do("to c", otp.NextState("c")))
        assert await ref.join(5) == ("shutdown", "c")
        assert log[-1] == ("terminate", ("shutdown", "c"), "c")


# ---------------------------------------------------------------------------- timeouts


async def test_state_timeout_fires_with_its_content() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(Do("arm", otp.KeepState(otp.StateTimeout(0.01, "expired"))))
        assert await _logged(log, 2) == [("a", "cast", "arm"), ("a", "state_timeout", "expired")]


async def test_state_timeout_survives_keep_state_but_not_a_state_change() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        # Inserted events run before any timer can fire: the order below is deterministic.
        await ref.cast(
            Do(
                "arm",
                otp.KeepState(
                    otp.StateTimeout(0.02, "kept"),
                    otp.NextEvent(Do("keep", otp.KeepState())),
                    otp.NextEvent(Do("same", otp.NextState("a"))),  # the same state: no change
                    otp.NextEvent(Do("repeat", otp.RepeatState())),
                ),
            )
        )
        assert await _logged(log, 5) == [
            ("a", "cast", "arm"),
            ("a", "internal", "keep"),
            ("a", "internal", "same"),
            ("a", "internal", "repeat"),
            ("a", "state_timeout", "kept"),
        ]
        # A state change cancels it; a later generic timeout is the fence.
        await ref.cast(
            Do(
                "arm again",
                otp.KeepState(
                    otp.StateTimeout(0.02, "cancelled"),
                    otp.GenericTimeout("fence", 0.2),
                    otp.NextEvent(Do("move", otp.NextState("b"))),
                ),
            )
        )
        assert (await _logged(log, 8))[5:] == [
            ("a", "cast", "arm again"),
            ("a", "internal", "move"),
            ("b", "generic_timeout", None),
        ]


async def test_a_cancelled_timer_task_ends_at_once() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, [])
        await ref.call(
            Do("arm", lambda m, e: otp.KeepState(otp.StateTimeout(1000), otp.Reply(e.caller, None)))
        )
        assert _timer_tasks() == 1
        await ref.cast(Do("move", otp.NextState("b")))
        await wait_until(lambda: _timer_tasks() == 0)


async def test_state_timeout_none_cancels_and_a_new_one_replaces() -> None:
    log: list[Any] = []
    cancel_x = Do(
        "cancel x",
        otp.KeepState(otp.GenericTimeout("x", None), otp.GenericTimeout("fence", 0.2)),
    )
    replace = Do(
        "replace",
        otp.KeepState(
            otp.StateTimeout(0.03, "new"),
            otp.GenericTimeout("x", 0.01, "x"),
            otp.NextEvent(cancel_x),
        ),
    )
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(
            Do("arm", otp.KeepState(otp.StateTimeout(0.02, "old"), otp.NextEvent(replace)))
        )
        assert await _logged(log, 5) == [
            ("a", "cast", "arm"),
            ("a", "internal", "replace"),
            ("a", "internal", "cancel x"),
            ("a", "state_timeout", "new"),
            ("a", "generic_timeout", None),
        ]


async def test_event_timeout_fires_when_no_event_comes() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(Do("arm", otp.KeepState(otp.EventTimeout(0.01, "idle"))))
        assert await _logged(log, 2) == [("a", "cast", "arm"), ("a", "event_timeout", "idle")]


@pytest.mark.parametrize("via", ["cast", "send", "call"])
async def test_event_timeout_is_cancelled_by_any_event(via: str) -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        armed = otp.KeepState(otp.EventTimeout(0.01, "idle"), otp.GenericTimeout("fence", 0.2))
        # The event is queued before the timer starts: it comes first, deterministically.
        await ref.cast(Do("arm", lambda m, e: _when_queued(m, armed)))
        if via == "cast":
            await ref.cast("event")
        elif via == "send":
            await ref.send("event")
        else:
            await ref.call(Do("event", lambda m, e: otp.KeepState(otp.Reply(e.caller, "ok"))))
        entries = await _logged(log, 3)
        assert entries == [
            ("a", "cast", "arm"),
            ("a", {"cast": "cast", "send": "info", "call": "call"}[via], "event"),
            ("a", "generic_timeout", None),
        ]


async def test_event_timeout_is_cancelled_by_an_inserted_event() -> None:
    # gen_statem: "a retried or inserted event counts as arrived".
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(
            Do(
                "arm",
                otp.KeepState(
                    otp.EventTimeout(0.01, "idle"),
                    otp.NextEvent(Do("inserted")),
                    otp.GenericTimeout("fence", 0.2),
                ),
            )
        )
        assert await _logged(log, 3) == [
            ("a", "cast", "arm"),
            ("a", "internal", "inserted"),
            ("a", "generic_timeout", None),
        ]


async def test_a_zero_state_timeout_event_cancels_an_event_timeout() -> None:
    # gen_statem: "so does a state time-out zero event, if it was generated before the
    # event time-out timer was started". OTP 25: [{a,cast,both}, {a,state_timeout,st0},
    # {a,{timeout,fence},fence}].
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(
            Do(
                "both",
                otp.KeepState(
                    otp.EventTimeout(0.02, "evt"),
                    otp.StateTimeout(0, "st0"),
                    otp.GenericTimeout("fence", 0.2, "fence"),
                ),
            )
        )
        assert await _logged(log, 3) == [
            ("a", "cast", "both"),
            ("a", "state_timeout", "st0"),
            ("a", "generic_timeout", "fence"),
        ]


async def test_zero_event_timeout_comes_before_queued_messages() -> None:
    # OTP 25: cast {ev0}, cast other -> [{cast,1}, {timeout,zero}, {cast,other}].
    log: list[Any] = []
    gate = anyio.Event()

    async def hold(machine: Scripted, event: otp.StateEvent) -> otp.Transition:
        await gate.wait()
        return otp.KeepState(otp.EventTimeout(0, "zero"))

    class Holding(Scripted):
        async def handle_event(self, event: otp.StateEvent, state: Any) -> otp.Transition:
            if isinstance(event.content, Do) and event.content.tag == "hold":
                self.log.append((state, "cast", "hold"))
                return await hold(self, event)
            return await super().handle_event(event, state)

    async with otp.Node() as node:
        ref = await node.spawn(Holding, log)
        await ref.cast(Do("hold"))
        await ref.cast("other")  # queued while the machine holds
        await wait_until(lambda: ref.statistics().mailbox.depth == 1)
        gate.set()
        assert await _logged(log, 3) == [
            ("a", "cast", "hold"),
            ("a", "event_timeout", "zero"),
            ("a", "cast", "other"),
        ]


async def test_generic_timeouts_are_named_and_survive_state_changes() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(
            Do(
                "arm",
                otp.NextState(
                    "b",
                    otp.GenericTimeout("slow", 0.06, "s"),
                    otp.GenericTimeout(("fast", 1), 0.02, "f"),
                    otp.NextEvent(Do("move", otp.NextState("c"))),
                ),
            )
        )
        entries = await _logged(log, 4)
        assert entries == [
            ("a", "cast", "arm"),
            ("b", "internal", "move"),
            ("c", "generic_timeout", "f"),
            ("c", "generic_timeout", "s"),
        ]


async def test_a_generic_timeout_event_carries_its_name() -> None:
    seen: list[otp.StateEvent] = []

    class Named(otp.StateMachine):
        async def init(self) -> otp.NextState:
            return otp.NextState("idle", otp.GenericTimeout("retry", 0, "payload"))

        async def idle(self, event: otp.StateEvent) -> otp.Transition:
            seen.append(event)
            return None

    async with otp.Node() as node:
        await node.spawn(Named)
        await wait_until(lambda: seen)
        assert seen[0].type is E.GENERIC_TIMEOUT
        assert seen[0].name == "retry"
        assert seen[0].content == "payload"
        assert "name='retry'" in repr(seen[0])


async def test_absolute_timeouts_use_the_node_clock() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        at = anyio.current_time() + 0.02
        await ref.cast(Do("arm", otp.KeepState(otp.StateTimeout(at, "at", absolute=True))))
        await _logged(log, 2)
        assert anyio.current_time() >= at
        assert log[1] == ("a", "state_timeout", "at")


async def test_only_the_last_timeout_of_a_kind_counts() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(
            Do(
                "arm",
                otp.KeepState(
                    otp.StateTimeout(0, "first"),
                    otp.GenericTimeout("g", 0, "g"),
                    otp.StateTimeout(0, "second"),
                ),
            )
        )
        await ref.cast("after")
        assert await _logged(log, 4) == [
            ("a", "cast", "arm"),
            ("a", "generic_timeout", "g"),
            ("a", "state_timeout", "second"),
            ("a", "cast", "after"),
        ]


async def test_a_timer_cancelled_after_it_fired_is_never_seen() -> None:
    # The state timeout fires while the machine is busy; the event being handled changes
    # the state, so the queued timeout message must be dropped (gen_statem flushes it).
    log: list[Any] = []

    async def slow_move(machine: Scripted, event: otp.StateEvent) -> otp.Transition:
        ref = machine.ref
        await wait_until(lambda: ref.statistics().mailbox.depth >= 1)  # the timer's message
        return otp.NextState("b", otp.GenericTimeout("fence", 0.05))

    class Slow(Scripted):
        async def handle_event(self, event: otp.StateEvent, state: Any) -> otp.Transition:
            if isinstance(event.content, Do) and event.content.tag == "slow":
                self.log.append((state, "cast", "slow"))
                return await slow_move(self, event)
            return await super().handle_event(event, state)

    async with otp.Node() as node:
        ref = await node.spawn(Slow, log)
        await ref.cast(Do("arm", otp.KeepState(otp.StateTimeout(0.01, "stale"))))
        await ref.cast(Do("slow"))
        assert await _logged(log, 3) == [
            ("a", "cast", "arm"),
            ("a", "cast", "slow"),
            ("b", "generic_timeout", None),
        ]


class Clocked(otp.StateMachine):
    """Records ``(what, content, anyio.current_time())``; casts carry the actions to take."""

    callback_mode = otp.CallbackMode.HANDLE_EVENT_FUNCTION

    async def init(self, log: list[Any]) -> otp.NextState:
        self.log = log
        return otp.NextState("a")

    async def handle_event(self, event: otp.StateEvent, state: Any) -> otp.Transition:
        now = anyio.current_time()
        if event.type is E.CAST:
            tag, hold, actions = event.content
            if hold:  # wait until a message (a fired alarm) is queued behind this event
                ref = self.ref
                await wait_until(lambda: ref.statistics().mailbox.depth >= 1)
            self.log.append((tag, None, anyio.current_time()))
            return otp.KeepState(*actions)
        self.log.append((event.type.value, event.content, now))
        return None


@pytest.mark.parametrize("kind", ["state", "event", "generic"])
async def test_a_timeout_restarted_for_later_fires_once_at_the_new_time(kind: str) -> None:
    def make(seconds: float, content: str) -> Any:
        if kind == "state":
            return otp.StateTimeout(seconds, content)
        if kind == "event":
            return otp.EventTimeout(seconds, content)
        return otp.GenericTimeout("g", seconds, content)

    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Clocked, log)
        restart = ("restart", False, (make(0.1, "second"), otp.GenericTimeout("fence", 0.3)))
        # Inserted, so it runs before the first timeout can fire.
        await ref.cast(("arm", False, (make(0.02, "first"), otp.NextEvent(restart, E.CAST))))
        entries = await _logged(log, 4)
        assert [(what, content) for what, content, _ in entries] == [
            ("arm", None),
            ("restart", None),
            (f"{kind}_timeout", "second"),
            ("generic_timeout", None),
        ]
        assert entries[2][2] - entries[1][2] >= 0.1  # never before its new deadline


async def test_a_restart_after_the_old_alarm_was_queued_waits_for_the_new_time() -> None:
    # The first alarm fires while the machine is busy with the restart: its queued message
    # must neither deliver the old timeout nor the new one early.
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Clocked, log)
        restart = ("restart", True, (otp.StateTimeout(0.1, "second"),))
        await ref.cast(
            ("arm", False, (otp.StateTimeout(0.01, "first"), otp.NextEvent(restart, E.CAST)))
        )
        entries = await _logged(log, 3)
        assert [(what, content) for what, content, _ in entries] == [
            ("arm", None),
            ("restart", None),
            ("state_timeout", "second"),
        ]
        assert entries[2][2] - entries[1][2] >= 0.1
        await ref.cast(("fence", False, (otp.GenericTimeout("fence", 0.1),)))
        assert [what for what, _, _ in await _logged(log, 5)][3:] == ["fence", "generic_timeout"]


async def test_a_timeout_restarted_for_sooner_fires_at_the_sooner_time() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Clocked, log)
        await ref.cast(("arm", False, (otp.StateTimeout(5.0, "late"),)))
        await ref.cast(("restart", False, (otp.StateTimeout(0.02, "soon"),)))
        with anyio.fail_after(4):  # long before the first deadline
            entries = await _logged(log, 3)
        assert entries[2][:2] == ("state_timeout", "soon")
        await wait_until(lambda: _timer_tasks() == 0)  # the 5 s alarm was cancelled


@pytest.mark.parametrize(
    "timeout",
    [
        otp.StateTimeout(-1),
        otp.EventTimeout(float("nan")),
        otp.GenericTimeout("g", True),  # type: ignore[arg-type]
        otp.GenericTimeout(["unhashable"], 1),  # type: ignore[arg-type]
    ],
)
async def test_bad_timeouts_crash_the_machine(timeout: Any) -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, [])
        with pytest.raises(otp.ActorExited) as info:
            await ref.call(Do("bad", otp.KeepState(timeout)))
        assert isinstance(info.value.__cause__, otp.BadTransition)


async def test_timers_end_with_the_machine() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(
            Scripted,
            [],
            "a",
            (
                otp.StateTimeout(1000, "s"),
                otp.EventTimeout(1000, "e"),
                otp.GenericTimeout("g", 1000, "g"),
            ),
        )
        machine = (await ref.get_state())["_otp_machine"]
        assert machine["timeouts"] == {"state_timeout": "s", "event_timeout": "e", "g": "g"}
        assert _timer_tasks() == 3
        await ref.stop()
        await wait_until(lambda: _timer_tasks() == 0)


# ---------------------------------------------------------------------------- postpone


async def test_postponed_events_are_retried_after_a_state_change_in_order() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        for tag in ("p1", "p2", "p3"):
            await ref.cast(
                Do(tag, lambda m, e: otp.KeepState(otp.Postpone()) if m.state == "a" else None)
            )
        await ref.cast(Do("keep", otp.KeepState()))  # no state change: nothing retried
        await ref.cast(Do("move", otp.NextState("b")))
        await ref.cast("queued")
        assert await _logged(log, 9) == [
            ("a", "cast", "p1"),
            ("a", "cast", "p2"),
            ("a", "cast", "p3"),
            ("a", "cast", "keep"),
            ("a", "cast", "move"),
            ("b", "cast", "p1"),
            ("b", "cast", "p2"),
            ("b", "cast", "p3"),
            ("b", "cast", "queued"),
        ]


async def test_postponing_with_a_state_change_retries_the_event_at_once() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(
            Do("go", lambda m, e: otp.NextState("b", otp.Postpone()) if m.state == "a" else None)
        )
        assert await _logged(log, 2) == [("a", "cast", "go"), ("b", "cast", "go")]


async def test_a_postponed_call_is_answered_after_the_state_change() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, [])

        def answer(m: Scripted, e: otp.StateEvent) -> otp.Transition:
            if m.state == "a":
                return otp.KeepState(otp.Postpone())
            return otp.KeepState(otp.Reply(e.caller, f"answered in {m.state}"))

        async with anyio.create_task_group() as tg:
            result: list[Any] = []

            async def ask() -> None:
                result.append(await ref.call(Do("ask", answer)))

            tg.start_soon(ask)
            await wait_until(lambda: ref.statistics().messages_handled >= 1)
            await ref.cast(Do("move", otp.NextState("b")))
        assert result == ["answered in b"]


# ---------------------------------------------------------------------------- next_event


async def test_inserted_events_come_first_in_order_then_retried_then_queued() -> None:
    # gen_statem's queue after an event: its next_events, the postponed ones retried,
    # then what was already queued, then zero timeouts, then the mailbox.
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(
            Do("p", lambda m, e: otp.KeepState(otp.Postpone()) if m.state == "a" else None)
        )
        await ref.cast(
            Do(
                "move",
                otp.NextState(
                    "b",
                    otp.StateTimeout(0, "zero"),
                    otp.NextEvent(
                        Do(
                            "n1",
                            otp.KeepState(otp.NextEvent(Do("n1.1")), otp.NextEvent(Do("n1.2"))),
                        )
                    ),
                    otp.NextEvent(Do("n2"), E.CAST),
                    otp.NextEvent(Do("n3"), E.INFO),
                ),
            )
        )
        await ref.cast("queued")
        assert await _logged(log, 10) == [
            ("a", "cast", "p"),
            ("a", "cast", "move"),
            ("b", "internal", "n1"),
            ("b", "internal", "n1.1"),  # inserted by n1: before what n1 found queued
            ("b", "internal", "n1.2"),
            ("b", "cast", "n2"),
            ("b", "info", "n3"),
            ("b", "cast", "p"),  # retried after the inserted ones
            ("b", "state_timeout", "zero"),
            ("b", "cast", "queued"),
        ]


async def test_next_event_may_be_a_call_with_its_caller() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, [])

        def forward(m: Scripted, e: otp.StateEvent) -> otp.Transition:
            return otp.KeepState(
                otp.NextEvent(
                    Do("inner", lambda m2, e2: otp.KeepState(otp.Reply(e2.caller, "inner"))),
                    E.CALL,
                    caller=e.caller,
                )
            )

        assert await ref.call(Do("outer", forward)) == "inner"
        with pytest.raises(otp.ActorExited) as info:
            await ref.call(Do("bad", otp.KeepState(otp.NextEvent("x", E.CALL))))
        assert isinstance(info.value.__cause__, otp.BadTransition)


async def test_next_event_takes_an_event_type_or_its_string() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(Do("go", otp.KeepState(otp.NextEvent("as info", "info"))))
        assert await _logged(log, 2) == [("a", "cast", "go"), ("a", "info", "as info")]
        with pytest.raises(otp.ActorExited) as info:
            await ref.call(Do("bad", otp.KeepState(otp.NextEvent("x", "bogus"))))
        assert isinstance(info.value.__cause__, otp.BadTransition)


async def test_a_subclass_init_method_need_not_call_super() -> None:
    class Own(otp.StateMachine):
        def __init__(self) -> None:  # no super().__init__()
            self.ready = True

        async def init(self) -> otp.NextState:
            return otp.NextState("idle", otp.StateTimeout(0, "t"))

        async def idle(self, event: otp.StateEvent) -> otp.Transition:
            if event.type is E.CALL:
                return otp.KeepState(otp.Reply(event.caller, (self.state, self.ready)))
            return None

    async with otp.Node() as node:
        ref = await node.spawn(Own)
        assert await ref.call("?") == ("idle", True)


async def test_next_event_cannot_be_an_enter_event() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, [])
        with pytest.raises(otp.ActorExited) as info:
            await ref.call(Do("bad", otp.KeepState(otp.NextEvent("x", E.ENTER))))
        assert isinstance(info.value.__cause__, otp.BadTransition)


# ---------------------------------------------------------------------------- replies


async def test_replies_as_actions_and_later_through_the_caller() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, [])

        def keep(m: Scripted, e: otp.StateEvent) -> otp.Transition:
            m.parked = e.caller  # type: ignore[attr-defined]
            return otp.NextState("waiting")

        def release(m: Scripted, e: otp.StateEvent) -> otp.Transition:
            m.reply(m.parked, "later")  # type: ignore[attr-defined]
            return otp.NextState("a", otp.Reply(e.caller, "released"))

        async with anyio.create_task_group() as tg:
            got: list[Any] = []

            async def park() -> None:
                got.append(await ref.call(Do("park", keep)))

            tg.start_soon(park)
            await wait_until(lambda: ref.statistics().messages_handled >= 1)
            assert await ref.call(Do("release", release)) == "released"
        assert got == ["later"]


async def test_several_replies_in_one_action_list() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, [])
        callers: list[Any] = []

        def hold(m: Scripted, e: otp.StateEvent) -> otp.Transition:
            callers.append(e.caller)
            if len(callers) < 2:
                return None
            return otp.KeepState(*(otp.Reply(c, i) for i, c in enumerate(callers)))

        got: dict[int, Any] = {}
        async with anyio.create_task_group() as tg:
            for i in range(2):

                async def ask(i: int = i) -> None:
                    got[i] = await ref.call(Do("hold", hold))

                tg.start_soon(ask)
                await wait_until(lambda i=i: len(callers) > i)
        assert got == {0: 0, 1: 1}


async def test_an_unanswered_caller_gets_actor_exited_when_the_machine_stops() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, [])
        async with anyio.create_task_group() as tg:
            errors: list[BaseException] = []

            async def ask() -> None:
                try:
                    await ref.call(Do("ignored"))
                except otp.ActorExited as exc:
                    errors.append(exc)

            tg.start_soon(ask)
            await wait_until(lambda: ref.statistics().messages_handled >= 1)
            await ref.cast(Do("stop", otp.Stop("normal")))
        assert len(errors) == 1


# ---------------------------------------------------------------------------- stop


async def test_stop_replies_first_then_terminates_with_the_reason() -> None:
    # gen_statem's stop_and_reply sends the replies, then runs terminate.
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(Do("p", otp.KeepState(otp.Postpone())))
        reply = await ref.call(
            Do(
                "bye",
                lambda m, e: otp.Stop(
                    ("shutdown", "done"), otp.Reply(e.caller, "bye"), otp.Reply(e.caller, "twice")
                ),
            )
        )
        assert reply == "bye"
        assert await ref.join(5) == ("shutdown", "done")
        assert log[-1] == ("terminate", ("shutdown", "done"), "a")
        assert ("a", "cast", "p") in log and ("b", "cast", "p") not in log


async def test_stop_drops_the_events_it_inserted() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(
            Do("go", otp.KeepState(otp.NextEvent(Do("stop", otp.Stop())), otp.NextEvent("never")))
        )
        assert await ref.join(5) == "normal"
        assert ("a", "internal", "never") not in log
        assert log[-1] == ("terminate", "normal", "a")


async def test_self_stop_ends_the_machine_after_the_current_event() -> None:
    log: list[Any] = []

    def stop_now(m: Scripted, e: otp.StateEvent) -> otp.Transition:
        m.stop("normal")
        return otp.KeepState(otp.NextEvent("never"))

    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(Do("stop", stop_now))
        assert await ref.join(5) == "normal"
        assert ("a", "internal", "never") not in log


async def test_an_abnormal_stop_reason_reaches_monitors() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, [])
        watcher = await otp.testing.start_probe(node)
        await watcher.monitor(ref)
        await ref.cast(Do("stop", otp.Stop("broken")))
        assert await watcher.expect_down(ref) == "broken"


async def test_terminate_sees_the_state_and_runs_on_external_stop() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(Do("move", otp.NextState("b")))
        await _logged(log, 1)
        await ref.stop("normal")
        assert log[-1] == ("terminate", "normal", "b")


# ---------------------------------------------------------------------------- crashes


async def test_a_crash_in_a_state_function_is_a_genserver_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(m: Scripted, e: otp.StateEvent) -> otp.Transition:
        raise ValueError("broken lock")

    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(Do("move", otp.NextState("b")))
        with caplog.at_level(logging.ERROR, logger="otp"), pytest.raises(otp.ActorExited) as info:
            await ref.call(Do("boom", boom))
        error = info.value.__cause__
        assert isinstance(error, ValueError)
        assert any("state 'b'" in note and "boom" in note for note in error.__notes__)
        assert ref.exit_reason is error
        assert log[-1] == ("terminate", error, "b")
        assert any("crash report" in r.getMessage() for r in caplog.records)


async def test_bad_returns_crash_with_bad_transition() -> None:
    async with otp.Node() as node:
        for bad in (
            "oops",
            otp.KeepState("not an action"),  # type: ignore[arg-type]
            otp.Stop("x", "not a reply"),  # type: ignore[arg-type]
            otp.KeepState(otp.Reply(None, "a cast has no caller")),
        ):
            ref = await node.spawn(Scripted, [])
            with pytest.raises(otp.ActorExited) as info:
                await ref.call(Do("bad", bad))
            assert isinstance(info.value.__cause__, otp.BadTransition), bad


class Crashy(otp.StateMachine):
    """Counts its incarnations in a shared list; crashes on request."""

    async def init(self, starts: list[int]) -> otp.NextState:
        starts.append(len(starts) + 1)
        return otp.NextState("idle")

    async def idle(self, event: otp.StateEvent) -> otp.Transition:
        match event:
            case otp.StateEvent(E.CAST, "crash"):
                raise RuntimeError("crash in idle")
            case otp.StateEvent(E.CALL, "ping", caller):
                return otp.NextState("busy", otp.Reply(caller, "pong"))
        return None

    async def busy(self, event: otp.StateEvent) -> otp.Transition:
        match event:
            case otp.StateEvent(E.CALL, "ping", caller):
                return otp.KeepState(otp.Reply(caller, "busy"))
            case otp.StateEvent(E.CAST, "crash"):
                raise RuntimeError("crash in busy")
        return None


async def test_a_supervisor_restarts_a_crashed_machine_in_its_initial_state() -> None:
    starts: list[int] = []
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("sup", [otp.worker(Crashy, starts, name="machine")]))
        ref = node.whereis("machine")
        assert ref is not None
        assert await ref.call("ping") == "pong"
        assert await ref.call("ping") == "busy"
        await ref.cast("crash")
        new = await wait_for_restart(sup, "machine", ref)
        assert starts == [1, 2]
        assert await new.call("ping") == "pong"  # a fresh machine, back in "idle"


# ---------------------------------------------------------------------------- GenServer features


class Secretive(otp.StateMachine):
    async def init(self) -> otp.NextState:
        self.pin = "4711"
        return otp.NextState("idle")

    def format_status(self, state: dict[str, Any]) -> Any:
        return {**state, "pin": "***"}

    async def idle(self, event: otp.StateEvent) -> otp.Transition:
        if event.content == "crash":
            raise RuntimeError("crash with a secret")
        return None


async def test_format_status_redacts_a_machine_in_get_state_and_crash_reports(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Secretive)
        state = await ref.get_state()
        assert state["pin"] == "***" and state["state"] == "idle"
        assert "_otp_machine" not in state  # the override did not call super()
        with caplog.at_level(logging.ERROR, logger="otp"):
            await ref.cast("crash")
            await ref.join(5)
        report = "\n".join(r.getMessage() for r in caplog.records)
        assert "crash report" in report
        assert "***" in report and "4711" not in report


class Guard(otp.StateMachine):
    """Traps exits: a linked actor's exit arrives as an INFO event."""

    trap_exit = True

    async def init(self) -> otp.NextState:
        self.exits: list[Any] = []
        return otp.NextState("watching")

    async def watching(self, event: otp.StateEvent) -> otp.Transition:
        match event:
            case otp.StateEvent(E.CALL, ("link", other), caller):
                self.link(other)
                return otp.KeepState(otp.Reply(caller, "linked"))
            case otp.StateEvent(E.INFO, otp.Exit(_, reason)):
                self.exits.append(reason)
                return otp.NextState("alone")
        return None

    async def alone(self, event: otp.StateEvent) -> otp.Transition:
        if event.type is E.CALL:
            return otp.KeepState(otp.Reply(event.caller, ("alone", self.exits)))
        return None


async def test_a_machine_that_traps_exits_gets_them_as_info_events() -> None:
    async with otp.Node() as node:
        guard = await node.spawn(Guard)
        other = await node.spawn(Scripted, [])
        assert await guard.call(("link", other)) == "linked"
        await other.cast(Do("die", otp.Stop("gone")))
        await wait_until(lambda: not other.alive)
        assert await guard.call("state?") == ("alone", ["gone"])


async def test_a_plain_def_state_function_is_refused_at_the_transition() -> None:
    class Sync(otp.StateMachine):
        async def init(self) -> otp.NextState:
            return otp.NextState("idle")

        def idle(self, event: otp.StateEvent) -> otp.Transition:  # not async
            return None

    async with otp.Node() as node:
        with pytest.raises(otp.StartFailed) as info:
            await node.spawn(Sync)
        assert "must be an async def" in str(info.value.__cause__)


def test_a_plain_def_handle_event_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="handle_event must be a coroutine function"):

        class Sync(otp.StateMachine):
            callback_mode = otp.CallbackMode.HANDLE_EVENT_FUNCTION

            def handle_event(self, event: otp.StateEvent, state: Any) -> otp.Transition:  # type: ignore[override]
                return None


# ---------------------------------------------------------------------------- callbacks: typing


async def test_returning_none_is_keep_state() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        ref = await node.spawn(Scripted, log)
        await ref.cast(Do("nothing"))
        await ref.cast("x")
        assert await _logged(log, 2) == [("a", "cast", "nothing"), ("a", "cast", "x")]


def test_transitions_and_actions_read_well() -> None:
    assert otp.NextState("open", otp.StateTimeout(10, "lock")).actions == (
        otp.StateTimeout(10, "lock"),
    )
    assert otp.KeepState().actions == ()
    assert otp.Stop().reason == "normal"
    assert otp.NextEvent("x").type is E.INTERNAL
    assert E.CAST == "cast"
    assert repr(otp.StateEvent(E.CAST, 1)) == "StateEvent(cast, 1)"
    _: Callable[..., Any] = otp.Reply


# ---------------------------------------------------------------------------- the model


@attrs.frozen
class Shape:
    """What an event does when handled: postpone in some states, go to a state, start a
    zero state timeout, insert events. ``id`` names it in the logs."""

    postpone_in: frozenset[int]
    move_to: int | None
    zero: bool
    inserts: tuple[Shape, ...]
    id: str = ""


_leaf = st.builds(
    Shape,
    postpone_in=st.frozensets(st.integers(0, 2), max_size=2),
    move_to=st.none() | st.integers(0, 2),
    zero=st.booleans(),
    inserts=st.just(()),
)
_shapes = st.recursive(
    _leaf,
    lambda children: st.builds(
        Shape,
        postpone_in=st.frozensets(st.integers(0, 2), max_size=2),
        move_to=st.none() | st.integers(0, 2),
        zero=st.booleans(),
        inserts=st.lists(children, max_size=2).map(tuple),
    ),
    max_leaves=4,
)


def _behaviour(shape: Shape) -> Callable[[Scripted, otp.StateEvent], otp.Transition]:
    def then(machine: Scripted, event: otp.StateEvent) -> otp.Transition:
        actions: list[Any] = []
        if machine.state in shape.postpone_in:
            actions.append(otp.Postpone())
        if shape.zero:
            actions.append(otp.StateTimeout(0, f"t{shape.id}"))
        actions += [otp.NextEvent(Do(i.id, _behaviour(i))) for i in shape.inserts]
        target = machine.state if shape.move_to is None else shape.move_to
        return otp.NextState(target, *actions)

    return then


@attrs.define
class Reference:
    """gen_statem's queue rules, written down plainly (OTP 25's loop_state_transition,
    loop_state_change and loop_done)."""

    state: int = 0
    postponed: list[tuple[str, Shape]] = attrs.Factory(list)
    queue: list[tuple[str, Shape]] = attrs.Factory(list)
    zero: str | None = None  # the content of a due zero-time state timeout
    log: list[tuple[Any, str, str]] = attrs.Factory(list)

    def handle(self, shape: Shape, limit: int = 200) -> bool:
        """Handle a cast; ``False`` if it would loop (more than ``limit`` events)."""
        event: tuple[str, Shape | None] = ("cast", shape)
        for _ in range(limit):
            self._step(*event)
            if self.queue:
                event = self.queue.pop(0)
            elif self.zero is not None:
                event, self.zero = (
                    ("state_timeout", Shape(frozenset(), None, False, (), self.zero)),
                    None,
                )
            else:
                return True
        return False

    def _step(self, kind: str, shape: Shape | None) -> None:
        assert shape is not None
        self.log.append((self.state, kind, shape.id))
        if kind == "state_timeout":
            return  # the scripted machine keeps its state on timeouts
        if self.state in shape.postpone_in:
            self.postponed.append((kind, shape))
        target = self.state if shape.move_to is None else shape.move_to
        if target != self.state:
            self.zero = None  # a state change cancels the state timeout
            self.queue[:0] = self.postponed
            self.postponed = []
        self.state = target
        if shape.zero:
            self.zero = f"t{shape.id}"
        self.queue[:0] = [("internal", i) for i in shape.inserts]


def _numbered(shape: Shape, counter: itertools.count[int]) -> Shape:
    inserts = tuple(_numbered(i, counter) for i in shape.inserts)
    return attrs.evolve(shape, inserts=inserts, id=f"e{next(counter)}")


class PostponeAndNextEventOrder(RuleBasedStateMachine):
    """Random postpones, state changes, inserted events and zero state timeouts: the
    machine handles them in exactly the order of :class:`Reference`."""

    backend = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.counter = itertools.count()
        self.model = Reference()
        self.log: list[Any] = []
        self.portal_cm = anyio.from_thread.start_blocking_portal(self.backend)
        self.portal = self.portal_cm.__enter__()
        self.node_cm = self.portal.wrap_async_context_manager(otp.Node())
        node = self.node_cm.__enter__()
        self.ref = self.portal.call(lambda: node.spawn(Scripted, self.log, 0))

    @rule(shape=_shapes)
    def cast(self, shape: Shape) -> None:
        shape = _numbered(shape, self.counter)
        trial = copy.deepcopy(self.model)
        assume(trial.handle(shape))  # a postpone/move cycle would loop, in OTP too
        self.model = trial
        self.portal.call(self.ref.cast, Do(shape.id, _behaviour(shape)))
        # get_state is no event: it is answered once the cast and every event it led to
        # (inserted, retried, zero timeouts) are handled.
        self.portal.call(self.ref.get_state)
        assert self.log == self.model.log

    def teardown(self) -> None:
        self.node_cm.__exit__(None, None, None)
        self.portal_cm.__exit__(None, None, None)


def test_postpone_and_next_event_order_match_the_reference(anyio_backend: str) -> None:
    class OnBackend(PostponeAndNextEventOrder):
        backend = anyio_backend

    run_state_machine_as_test(
        OnBackend,
        settings=settings(max_examples=25, stateful_step_count=12, deadline=None),
    )
