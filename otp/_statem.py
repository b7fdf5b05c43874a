"""The StateMachine behaviour: Erlang's ``gen_statem`` on top of the actor loop.

A :class:`StateMachine` is a GenServer whose calls, casts and sends arrive as
:class:`StateEvent` objects in the function of the current state (or in one
``handle_event``); the callbacks answer with a transition (:class:`NextState`,
:class:`KeepState`, :class:`RepeatState`, :class:`Stop`) carrying actions (:class:`Reply`,
:class:`Postpone`, :class:`NextEvent` and the three timeouts).

Invariants (those of gen_statem's loop, OTP 25):

- Events are handled one at a time. After a mailbox message come, before the next one, the
  events it inserted (``NextEvent``, in order), then the postponed events retried after a
  state change (in the order they were postponed), then whatever was queued before, then
  the zero-time timeouts: gen_statem's internal queue. All of it runs inside the one
  GenServer callback that took the message, so no other message can slip in between.
- At most one timer of each kind runs: the event timeout, the state timeout and one per
  generic timeout name. Handling any event cancels the event timeout; a state change
  cancels the state timeout; starting one cancels the running one of the same kind. A
  timer's message carries the timer itself, and a message from a timer that is no longer
  the running one is dropped unseen (gen_statem cancels the timer and flushes its message).
- Timers are the actor's own ``send_after`` timers, on the node's anyio clock; they end
  when they fire, are cancelled, or the actor exits, so none outlives its machine.
"""

from __future__ import annotations

import enum
import inspect
import math
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias, final

import anyio
import anyio.lowlevel
import attrs

from ._exceptions import BadTransition
from ._gen_server import IGNORE, NOREPLY, GenServer

if TYPE_CHECKING:
    from ._actor import TimerRef
    from ._backends import Caller

__all__ = [
    "CallbackMode",
    "EventTimeout",
    "EventType",
    "GenericTimeout",
    "KeepState",
    "NextEvent",
    "NextState",
    "Postpone",
    "RepeatState",
    "Reply",
    "StateEvent",
    "StateMachine",
    "StateTimeout",
    "Stop",
    "Transition",
]

#: Events handled back to back inside one callback before the machine yields to others.
_BUDGET: Final = 64


class CallbackMode(enum.Enum):
    """How a :class:`StateMachine` finds the code for an event (``Module:callback_mode/0``)."""

    #: One async method per state, named after the state (the state must be a str).
    STATE_FUNCTIONS = "state_functions"
    #: One ``handle_event(event, state)`` for every state; a state may be any value.
    HANDLE_EVENT_FUNCTION = "handle_event_function"


class EventType(enum.StrEnum):
    """Where a :class:`StateEvent` came from (gen_statem's ``event_type()``).

    Members are strings, so ``StateEvent("cast", ...)`` matches ``EventType.CAST``.
    """

    #: ``ref.call(request)``; ``StateEvent.caller`` is the handle to :class:`Reply` to.
    CALL = "call"
    #: ``ref.cast(message)``.
    CAST = "cast"
    #: ``ref.send(message)``, broker deliveries, ``otp.Down``, ``send_after`` timers.
    INFO = "info"
    #: Inserted by the machine itself with :class:`NextEvent` (the default type).
    INTERNAL = "internal"
    #: A state enter call (``state_enter = True``): ``content`` is the previous state.
    ENTER = "enter"
    #: A :class:`StateTimeout` expired (gen_statem's ``state_timeout``).
    STATE_TIMEOUT = "state_timeout"
    #: An :class:`EventTimeout` expired (gen_statem's ``timeout``).
    EVENT_TIMEOUT = "event_timeout"
    #: A :class:`GenericTimeout` expired (gen_statem's ``{timeout, Name}``); see ``name``.
    GENERIC_TIMEOUT = "generic_timeout"

    def __repr__(self) -> str:
        return f"EventType.{self.name}"


@attrs.frozen(repr=False)
class StateEvent:
    """One event as a state callback sees it: gen_statem's ``(EventType, EventContent)``.

    ``content`` is the request, message, timeout content or (for ``ENTER``) the previous
    state. ``caller`` is set for ``CALL`` events (answer with :class:`Reply`), ``name``
    for ``GENERIC_TIMEOUT`` events. Match on it::

        match event:
            case otp.StateEvent(EventType.CALL, GetCode(), caller): ...
            case otp.StateEvent("cast", Button(digit)): ...
    """

    type: EventType
    content: Any = None
    caller: Caller | None = None
    name: Any = None

    def __repr__(self) -> str:
        extra = f", name={self.name!r}" if self.type is EventType.GENERIC_TIMEOUT else ""
        return f"StateEvent({self.type.value}, {self.content!r}{extra})"


# ---------------------------------------------------------------------------- actions


@attrs.frozen
class Reply:
    """Answer the call of ``caller`` with ``value`` (gen_statem's ``{reply, From, Reply}``).

    Sent at once while the actions are carried out, in order, even from another state than
    the one that got the call; ``self.reply(caller, value)`` answers later still."""

    caller: Caller | None  # typed as StateEvent.caller is; None crashes (not a call)
    value: Any = None


@attrs.frozen
class Postpone:
    """Keep the current event and retry it after the next state change, in the order
    events were postponed (gen_statem's ``postpone``). Not allowed in a state enter call."""


@attrs.frozen
class NextEvent:
    """Insert an event to be handled next, before any queued message (gen_statem's
    ``{next_event, Type, Content}``). Several are handled in the order given.

    ``type`` is :attr:`EventType.INTERNAL` unless said otherwise (a member or its string,
    ``"cast"``); a ``CALL`` needs the
    ``caller``, a ``GENERIC_TIMEOUT`` may carry a ``name``; ``ENTER`` is not allowed. Not
    allowed in a state enter call."""

    content: Any = None
    type: EventType | str = EventType.INTERNAL
    caller: Caller | None = attrs.field(default=None, kw_only=True)
    name: Any = attrs.field(default=None, kw_only=True)


@attrs.frozen
class StateTimeout:
    """Deliver a ``STATE_TIMEOUT`` event with ``content`` after ``time`` seconds unless the
    state changes first (gen_statem's ``{state_timeout, Time, Content}``).

    ``time=None`` (or ``math.inf``) cancels a running one. ``absolute=True`` takes ``time``
    as a moment on the node's clock (``anyio.current_time()``). A time of ``0`` delivers it
    before any queued message. Starting one replaces the running one; it survives
    :class:`KeepState` and :class:`RepeatState`."""

    time: float | None
    content: Any = None
    absolute: bool = attrs.field(default=False, kw_only=True)


@attrs.frozen
class EventTimeout:
    """Deliver an ``EVENT_TIMEOUT`` event with ``content`` after ``time`` seconds unless an
    event comes first (gen_statem's ``{timeout, Time, Content}``): any event cancels it,
    including inserted, retried and zero-time timeout events. ``None`` cancels; see
    :class:`StateTimeout` for ``absolute`` and ``0``."""

    time: float | None
    content: Any = None
    absolute: bool = attrs.field(default=False, kw_only=True)


@attrs.frozen
class GenericTimeout:
    """Deliver a ``GENERIC_TIMEOUT`` event (``event.name == name``) with ``content`` after
    ``time`` seconds (gen_statem's ``{{timeout, Name}, Time, Content}``).

    Neither events nor state changes cancel it; starting one with the same ``name`` replaces
    it and ``time=None`` cancels it. ``name`` must be hashable."""

    name: Hashable
    time: float | None
    content: Any = None
    absolute: bool = attrs.field(default=False, kw_only=True)


#: What a state callback may ask for besides the transition.
Action: TypeAlias = Reply | Postpone | NextEvent | StateTimeout | EventTimeout | GenericTimeout
_AnyTimeout: TypeAlias = StateTimeout | EventTimeout | GenericTimeout


# ---------------------------------------------------------------------------- transitions


@attrs.frozen(init=False)
class NextState:
    """Go to ``state``, then carry out ``actions`` (gen_statem's ``{next_state, ...}``).

    A different state retries the postponed events, cancels the state and event timeouts
    and, with ``state_enter``, runs the enter call. The same state is :class:`KeepState`.
    ``init`` returns one to set the initial state."""

    state: Any
    actions: tuple[Action, ...]

    def __init__(self, state: Any, *actions: Action) -> None:
        self.__attrs_init__(state, actions)


@attrs.frozen(init=False)
class KeepState:
    """Stay in the current state and carry out ``actions`` (gen_statem's ``keep_state`` and
    ``keep_state_and_data``); returning ``None`` means ``KeepState()``."""

    actions: tuple[Action, ...]

    def __init__(self, *actions: Action) -> None:
        self.__attrs_init__(actions)


@attrs.frozen(init=False)
class RepeatState:
    """As :class:`KeepState`, but with ``state_enter`` the enter call runs again, with the
    current state as the previous one (gen_statem's ``repeat_state``)."""

    actions: tuple[Action, ...]

    def __init__(self, *actions: Action) -> None:
        self.__attrs_init__(actions)


@attrs.frozen(init=False)
class Stop:
    """Stop the machine with ``reason`` once the ``replies`` are sent (gen_statem's ``stop``
    and ``stop_and_reply``): ``terminate(reason)`` runs, monitors see the reason. Queued and
    postponed events are not handled; their callers get ``otp.ActorExited``."""

    reason: Any
    replies: tuple[Reply, ...]

    def __init__(self, reason: Any = "normal", *replies: Reply) -> None:
        self.__attrs_init__(reason, replies)


#: What a state callback returns (``None`` is ``KeepState()``).
Transition: TypeAlias = NextState | KeepState | RepeatState | Stop | None


# ---------------------------------------------------------------------------- internals


@attrs.define(eq=False)
class _Timer:
    content: Any
    when: float = 0.0  # the deadline, on the node's clock
    # The pending send_after and when it fires (armed_for <= when: a timeout restarted
    # later keeps its alarm, which re-arms on arrival instead of spawning a timer task per
    # event). None: a zero-time timeout waiting in _Machine.zero.
    handle: TimerRef | None = None
    armed_for: float = 0.0


@attrs.frozen(eq=False)
class _Fired:
    # The message a running timer sends to its own machine.
    key: Hashable
    timer: _Timer


@attrs.frozen
class _Begin:
    # Scheduled by _otp_init: the initial transition runs before the first message.
    transition: NextState


@attrs.define(eq=False)
class _Effects:
    # What the actions of one event (and its enter calls) asked for, in order.
    next_events: list[StateEvent] = attrs.Factory(list)
    timeouts: list[_AnyTimeout] = attrs.Factory(list)
    postpone: bool = False


class _Machine:
    """The engine's bookkeeping (in a slot of the machine: never among its attributes)."""

    __slots__ = ("postponed", "queue", "stopping", "timers", "zero")

    def __init__(self) -> None:
        self.queue: deque[StateEvent] = deque()  # inserted and retried events
        self.postponed: list[StateEvent] = []  # oldest first
        self.timers: dict[Hashable, _Timer] = {}  # running timeouts by kind
        self.zero: list[Hashable] = []  # zero-time timeouts due, in order (gen_statem's t0q)
        self.stopping = False

    def status(self) -> dict[str, Any]:
        """A copy for ``get_state`` and crash reports (gen_statem's ``postponed`` and
        ``timeouts`` in ``sys:get_status``); timeouts by kind, generic ones by name."""
        return {
            "postponed": list(self.postponed),
            "timeouts": {
                (key[1] if isinstance(key, tuple) else str(key)): timer.content
                for key, timer in self.timers.items()
            },
        }


_STOPPED: Final = object()


def _timer_key(timeout: _AnyTimeout) -> Hashable:
    if isinstance(timeout, StateTimeout):
        return EventType.STATE_TIMEOUT
    if isinstance(timeout, EventTimeout):
        return EventType.EVENT_TIMEOUT
    return (EventType.GENERIC_TIMEOUT, timeout.name)


def _timeout_event(key: Hashable, content: Any) -> StateEvent:
    if isinstance(key, tuple):
        return StateEvent(EventType.GENERIC_TIMEOUT, content, name=key[1])
    return StateEvent(key, content)  # type: ignore[arg-type]


_OWN_CALLBACKS: Final = ("handle_call", "handle_cast", "handle_info", "handle_continue")


class StateMachine(GenServer):
    """Base class of a state machine (Erlang's ``gen_statem`` behaviour).

    ``init(*args)`` sets up the data (attributes of ``self``, as in a GenServer) and returns
    ``otp.NextState(initial_state, *actions)``. Calls, casts and sends to its
    :class:`otp.ActorRef` then arrive as :class:`StateEvent` objects:

    - with ``callback_mode = CallbackMode.STATE_FUNCTIONS`` (the default) in the async
      method named after the current state, ``async def locked(self, event)``;
    - with ``CallbackMode.HANDLE_EVENT_FUNCTION`` in ``handle_event(event, state)``.

    A callback returns a transition (:data:`Transition`). ``state_enter = True`` adds an
    ``ENTER`` event on every state change (and on the initial state, and on
    :class:`RepeatState`). ``self.state`` is the current state: read it, never assign it.

    It is supervised, spawned, monitored and stopped like any GenServer, and keeps
    ``terminate(reason)`` (``self.state`` says in which state). A crash in a callback
    crashes the machine as it would a GenServer; the exception gets a note naming the state
    and the event. Do not override ``handle_call``/``handle_cast``/``handle_info`` or set
    ``idle_timeout`` (use :class:`EventTimeout`).
    """

    #: How events find their callback.
    callback_mode: ClassVar[CallbackMode] = CallbackMode.STATE_FUNCTIONS
    #: Run an ``ENTER`` event in the new state on every state change.
    state_enter: ClassVar[bool] = False
    __slots__ = ("_otp_machine",)  # kept out of vars(): get_state shows only the data

    #: The current state (set by the machine).
    state: Any
    _otp_machine: _Machine

    _otp_async_callbacks: ClassVar[tuple[str, ...]] = (
        *GenServer._otp_async_callbacks,
        "handle_event",
    )

    def __init__(self) -> None:
        self.state = None
        self._otp_machine = _Machine()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _OWN_CALLBACKS:
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__qualname__} overrides {name}: a StateMachine gets its calls, "
                    "casts and messages as StateEvent objects in its state functions (or "
                    "handle_event); handle them there"
                )
        if cls.idle_timeout is not None:
            raise TypeError(
                f"{cls.__qualname__} sets idle_timeout: a StateMachine uses "
                "otp.EventTimeout(seconds) actions instead"
            )
        if not isinstance(cls.callback_mode, CallbackMode):
            raise TypeError(
                f"{cls.__qualname__}.callback_mode must be an otp.CallbackMode, "
                f"not {cls.callback_mode!r}"
            )
        if not isinstance(cls.state_enter, bool):
            raise TypeError(
                f"{cls.__qualname__}.state_enter must be True or False, not {cls.state_enter!r}"
            )
        if (
            cls.callback_mode is CallbackMode.STATE_FUNCTIONS
            and cls.handle_event is not StateMachine.handle_event
        ):
            raise TypeError(
                f"{cls.__qualname__} defines handle_event but its callback_mode is "
                "STATE_FUNCTIONS; set callback_mode = otp.CallbackMode.HANDLE_EVENT_FUNCTION"
            )

    # ------------------------------------------------------------------ callbacks

    async def init(self, *args: Any, **kwargs: Any) -> NextState:  # kwargs: for overrides
        """Set up the data and return ``otp.NextState(initial_state, *actions)``
        (``Module:init/1``). Runs before the machine counts as started; the initial enter
        call and the actions run after, before any message. Raising makes the start fail
        with :class:`otp.StartFailed`."""
        raise TypeError(
            f"{type(self).__name__} does not define init(); a StateMachine's "
            "async def init(self, ...) returns otp.NextState(initial_state, *actions)"
        )

    async def handle_event(self, event: StateEvent, state: Any) -> Transition:
        """Handle ``event`` in ``state`` (``Module:handle_event/4``); used with
        ``callback_mode = CallbackMode.HANDLE_EVENT_FUNCTION``. The default crashes."""
        raise NotImplementedError(
            f"{type(self).__name__} uses HANDLE_EVENT_FUNCTION but does not define "
            f"handle_event; it got {event!r} in state {state!r}"
        )

    def format_status(self, state: dict[str, Any]) -> Any:
        """What ``get_state``, crash reports and snapshots show (see
        :meth:`GenServer.format_status`). The default adds ``"_otp_machine"``: the postponed
        events and the running timeouts; an override that redacts may call
        ``super().format_status(state)`` to keep them."""
        return {**state, "_otp_machine": self._otp_machine.status()}

    def stop(self, reason: Any = "normal") -> None:
        """End the machine once the current event is handled (events it inserted are not);
        returning :class:`Stop` is the usual way."""
        self._otp_machine.stopping = True
        super().stop(reason)

    # ------------------------------------------------------------------ GenServer plumbing

    async def _otp_init(self, args: tuple[Any, ...]) -> object:
        # Set here too: a subclass's own __init__ may not call super().__init__().
        self.state = None
        self._otp_machine = _Machine()
        result: object = await self.init(*args)
        if result is IGNORE:
            return IGNORE  # gen_statem's ignore: nothing starts
        if not isinstance(result, NextState):
            raise BadTransition(
                self.ref,
                f"init returned {result!r}; it must return otp.NextState(initial_state, *actions)",
            )
        if any(isinstance(action, Postpone) for action in result.actions):
            raise BadTransition(self.ref, "init cannot postpone: there is no event to keep")
        self._otp_check_state(result.state)
        self.state = result.state
        self.continue_with(_Begin(result))
        return None

    @final
    async def handle_continue(self, arg: Any) -> None:
        if isinstance(arg, _Begin):
            await self._otp_run(None, arg.transition)
            return
        raise TypeError(
            f"{type(self).__name__} called continue_with({arg!r}); a StateMachine inserts "
            "events with otp.NextEvent(...) instead"
        )

    @final
    async def handle_call(self, request: Any, caller: Caller) -> Any:
        await self._otp_run(StateEvent(EventType.CALL, request, caller))
        return NOREPLY

    @final
    async def handle_cast(self, message: Any) -> None:
        await self._otp_run(StateEvent(EventType.CAST, message))

    @final
    async def handle_info(self, message: Any) -> None:
        if type(message) is _Fired:
            timers = self._otp_machine.timers
            timer = message.timer
            if timers.get(message.key) is not timer:
                return  # cancelled or replaced after it fired: never seen, as in gen_statem
            now = anyio.current_time()
            if timer.when > now:  # restarted for later since this alarm was set
                timer.handle = self.send_after(timer.when - now, message)
                timer.armed_for = timer.when
                return
            del timers[message.key]
            await self._otp_run(_timeout_event(message.key, message.timer.content))
            return
        await self._otp_run(StateEvent(EventType.INFO, message))

    # ------------------------------------------------------------------ the engine

    async def _otp_run(self, event: StateEvent | None, initial: NextState | None = None) -> None:
        # Handle one event, then the internal queue and the zero-time timeouts it left.
        machine = self._otp_machine
        queue = machine.queue
        budget = _BUDGET
        while await self._otp_step(event, initial):
            initial = None
            if queue:
                event = queue.popleft()
            elif machine.zero:
                key = machine.zero.pop(0)
                event = _timeout_event(key, machine.timers.pop(key).content)
            else:
                return
            budget -= 1
            if not budget:
                budget = _BUDGET
                await anyio.lowlevel.checkpoint()

    async def _otp_step(self, event: StateEvent | None, initial: NextState | None) -> bool:
        """Handle one event (``None``: the initial transition); ``False`` once stopping."""
        state = self.state
        if initial is None:
            assert event is not None
            result = await self._otp_callback(event, state)
            if result is None or (type(result) is KeepState and not result.actions):
                # The common case, short: no state change, nothing to carry out.
                machine = self._otp_machine
                if EventType.EVENT_TIMEOUT in machine.timers:
                    retired: dict[Hashable, _Timer] = {}
                    self._otp_retire(EventType.EVENT_TIMEOUT, retired)
                    for timer in retired.values():
                        timer.handle.cancel()  # type: ignore[union-attr]
                return not machine.stopping
            effects = _Effects()
            target, enter = self._otp_transition(result, state, effects, "event")
        else:
            effects = _Effects()
            target, enter = self._otp_transition(initial, state, effects, "init")
            enter = True
        if target is _STOPPED:
            return False
        while enter and self.state_enter:
            self.state = target
            result = await self._otp_callback(StateEvent(EventType.ENTER, state), target)
            target, enter = self._otp_transition(result, target, effects, "enter")
            if target is _STOPPED:
                return False
        machine = self._otp_machine
        if effects.postpone and event is not None:
            machine.postponed.append(event)
        retired = {}  # cancelled now; their alarms may be reused
        self._otp_retire(EventType.EVENT_TIMEOUT, retired)  # any handled event cancels it
        if target != state:
            self._otp_retire(EventType.STATE_TIMEOUT, retired)
            if machine.postponed:
                machine.queue.extendleft(reversed(machine.postponed))
                machine.postponed = []
        self.state = target
        if effects.timeouts:
            self._otp_start_timeouts(effects.timeouts, retired)
        for timer in retired.values():
            timer.handle.cancel()  # type: ignore[union-attr]  # retired ones have one
        if effects.next_events:
            machine.queue.extendleft(reversed(effects.next_events))
        return not machine.stopping

    async def _otp_callback(self, event: StateEvent, state: Any) -> Any:
        try:
            if self.callback_mode is CallbackMode.STATE_FUNCTIONS:
                return await getattr(self, state)(event)
            return await self.handle_event(event, state)
        except Exception as exc:
            exc.add_note(f"in state machine {self.ref!r}, state {state!r}, handling {event!r}")
            raise

    def _otp_transition(
        self, result: Any, state: Any, effects: _Effects, where: str
    ) -> tuple[Any, bool]:
        """Check ``result`` and carry out its actions; return (target state, run enter?)."""
        if result is None:
            return state, False
        if isinstance(result, KeepState):
            target, enter = state, False
        elif isinstance(result, NextState):
            target = result.state
            enter = target != state
            if enter and where == "enter":
                raise BadTransition(
                    self.ref,
                    f"the enter call of state {state!r} returned NextState({target!r}); an "
                    "enter call cannot change the state (start a StateTimeout(0) and move on "
                    "when it fires)",
                )
            if enter:
                self._otp_check_state(target)
        elif isinstance(result, RepeatState):
            target, enter = state, True
        elif isinstance(result, Stop):
            for reply in result.replies:
                self._otp_reply(reply)
            self.stop(result.reason)
            return _STOPPED, False
        else:
            raise BadTransition(
                self.ref,
                f"in state {state!r} a callback returned {result!r}; return otp.NextState, "
                "otp.KeepState, otp.RepeatState, otp.Stop or None",
            )
        for action in result.actions:
            self._otp_action(action, effects, where, state)
        return target, enter

    def _otp_action(self, action: Any, effects: _Effects, where: str, state: Any) -> None:
        if isinstance(action, Reply):
            self._otp_reply(action)
        elif isinstance(action, (StateTimeout, EventTimeout, GenericTimeout)):
            self._otp_check_timeout(action)
            effects.timeouts.append(action)
        elif isinstance(action, Postpone):
            if where != "event":
                what = "an enter call" if where == "enter" else "init"
                raise BadTransition(
                    self.ref,
                    f"{what} cannot postpone (state {state!r}): there is no event to keep",
                )
            effects.postpone = True
        elif isinstance(action, NextEvent):
            if where == "enter":
                raise BadTransition(
                    self.ref,
                    f"an enter call cannot insert events (state {state!r}, {action!r}); "
                    "start a StateTimeout(0, ...) and act when it fires",
                )
            effects.next_events.append(self._otp_next_event(action))
        else:
            raise BadTransition(
                self.ref,
                f"unknown action {action!r} in state {state!r}; actions are otp.Reply, "
                "otp.Postpone, otp.NextEvent, otp.StateTimeout, otp.EventTimeout and "
                "otp.GenericTimeout",
            )

    def _otp_reply(self, reply: Any) -> None:
        caller = reply.caller if isinstance(reply, Reply) else None
        if caller is None or not callable(getattr(caller, "resolve", None)):
            raise BadTransition(
                self.ref,
                f"{reply!r} is not otp.Reply(caller, value) with the caller of a CALL event "
                "(event.caller; other events have none)",
            )
        self.reply(caller, reply.value)

    def _otp_next_event(self, action: NextEvent) -> StateEvent:
        kind: Any = action.type
        if isinstance(kind, str) and not isinstance(kind, EventType):
            kind = next((member for member in EventType if member.value == kind), kind)
        if not isinstance(kind, EventType) or kind is EventType.ENTER:
            raise BadTransition(
                self.ref, f"{action!r}: the type must be an otp.EventType other than ENTER"
            )
        if kind is EventType.CALL and not callable(getattr(action.caller, "resolve", None)):
            raise BadTransition(self.ref, f"{action!r}: a CALL event needs the caller=")
        return StateEvent(kind, action.content, action.caller, action.name)

    def _otp_check_timeout(self, timeout: _AnyTimeout) -> None:
        time = timeout.time
        if time is not None and (
            isinstance(time, bool)
            or not isinstance(time, (int, float))
            or math.isnan(time)
            or (time < 0 and not timeout.absolute)
        ):
            raise BadTransition(
                self.ref,
                f"{timeout!r}: the time must be seconds >= 0, or None to cancel",
            )
        if isinstance(timeout, GenericTimeout):
            try:
                hash(timeout.name)
            except TypeError:
                raise BadTransition(
                    self.ref, f"{timeout!r}: a generic timeout's name must be hashable"
                ) from None

    def _otp_start_timeouts(
        self, timeouts: list[_AnyTimeout], retired: dict[Hashable, _Timer]
    ) -> None:
        # The last action of each kind wins; due zero-time timeouts keep the action order.
        chosen: dict[Hashable, _AnyTimeout] = {}
        for timeout in reversed(timeouts):
            chosen.setdefault(_timer_key(timeout), timeout)
        machine = self._otp_machine
        for key, timeout in reversed(chosen.items()):
            self._otp_retire(key, retired)  # a new one replaces the running one
            time = timeout.time
            if time is None or time == math.inf:
                continue
            if time == 0 and not timeout.absolute:
                machine.timers[key] = _Timer(timeout.content)
                machine.zero.append(key)
                continue
            now = anyio.current_time()
            when = float(time) if timeout.absolute else now + time
            timer = retired.pop(key, None)
            if timer is not None and timer.armed_for <= when:
                # Restarted later than its alarm: keep the alarm, it re-arms on arrival.
                timer.content = timeout.content
                timer.when = when
            else:
                if timer is not None:
                    timer.handle.cancel()  # type: ignore[union-attr]
                timer = _Timer(timeout.content, when)
                timer.handle = self.send_after(max(0.0, when - now), _Fired(key, timer))
                timer.armed_for = when
            machine.timers[key] = timer

    def _otp_retire(self, key: Hashable, retired: dict[Hashable, _Timer]) -> None:
        # Cancel the running timeout of this kind: it is never delivered from now on (its
        # message, if already queued, no longer matches). Its alarm goes to ``retired``,
        # to be reused by a restart in the same step or cancelled at its end.
        machine = self._otp_machine
        timer = machine.timers.pop(key, None)
        if timer is not None:
            if timer.handle is None:
                machine.zero.remove(key)
            else:
                retired[key] = timer

    def _otp_check_state(self, state: Any) -> None:
        if self.callback_mode is not CallbackMode.STATE_FUNCTIONS:
            return
        function = (
            getattr(self, state, None)
            if isinstance(state, str)
            and state.isidentifier()
            and not state.startswith("_")
            and not hasattr(StateMachine, state)
            else None
        )
        if callable(function) and not inspect.iscoroutinefunction(function):
            raise BadTransition(
                self.ref,
                f"the state function {type(self).__qualname__}.{state} must be an async def "
                f"(async def {state}(self, event)): the machine awaits it",
            )
        if function is None or not inspect.iscoroutinefunction(function):
            raise BadTransition(
                self.ref,
                f"state {state!r} has no state function: with STATE_FUNCTIONS a state is "
                f"the name of an async method of {type(self).__qualname__} (define async def "
                f"{state}(self, event) if it is a str, or use HANDLE_EVENT_FUNCTION)",
            )
