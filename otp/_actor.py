"""The actor process: :class:`ActorRef`, its loop and its callbacks' helpers.

One actor incarnation is one task and one :class:`ActorRef`. The loop takes one message at
a time from the mailbox and awaits the matching GenServer callback; nothing else is spawned
per message. Everything that must happen when an actor exits (callers failed, monitors told,
name freed, subscriptions and timers ended) happens synchronously in ``ActorRef._exit``
(:mod:`otp._stopping`), so it cannot be interrupted by cancellation.

``ActorRef`` is assembled from mixins: sending to it and its receiver interface in
:mod:`otp._delivery`, stopping, killing, joining and the exit in :mod:`otp._stopping`,
links and exit signals in :mod:`otp._exit_signals`, monitors and timers in
:mod:`otp._monitors`; what an actor shows of its state is in :mod:`otp._actor_status`, and
:func:`otp._start.start_actor` starts one.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from ._actor_status import status_of
from ._backends import BUDGET_OPS, Backend, Expired, Promise
from ._delivery import Delivery
from ._exceptions import (
    ActorExited,
    CallTimeout,
    SupervisorGaveUp,
)
from ._exit_signals import RUNNING as _RUNNING
from ._exit_signals import Exit, Linking, SelfExit, is_normal_exit, traps
from ._gen_server import IGNORE, NOREPLY, GenServer, IdleTimeout
from ._mailbox import (
    CALL,
    CAST,
    SYSTEM,
    Mailbox,
    MailboxQueue,
    MailboxStatistics,
    Wrapped,
)
from ._monitors import Down, Monitoring, MonitorRef, TimerRef
from ._monitors import ids as _ids
from ._stopping import _IN_HAND, BRUTAL_KILL, Stopping, _check_timeout
from ._stopping import Shutdown as Shutdown
from ._stopping import check_shutdown as check_shutdown
from ._stopping import check_start_timeout as check_start_timeout

if TYPE_CHECKING:
    from ._node import Node

__all__ = [
    "BRUTAL_KILL",
    "ActorRef",
    "ActorStatistics",
    "Down",
    "Exit",
    "MonitorRef",
    "TimerRef",
    "is_normal_exit",
]

logger = logging.getLogger("otp")

#: How many messages an actor handles back to back before it asks whether to yield: it
#: does once the scheduler budget's time slice has passed (``Backend.slice_spent``), so a
#: busy actor holds the event loop for at most about one slice (1 ms) or 64 messages.
_BUDGET: Final = BUDGET_OPS


class _NotStarted:
    """``ActorRef._coro`` until the actor's task runs."""

    __slots__ = ()
    cr_running = False


_NOT_STARTED: Final = _NotStarted()


@attrs.frozen
class ActorStatistics:
    """A snapshot of one actor's counters (``ref.statistics()``; OTP's ``sys:statistics``
    and ``erlang:process_info``)."""

    name: str | None
    id: int
    behaviour: str
    alive: bool
    messages_handled: int
    uptime: float
    mailbox: MailboxStatistics
    #: The actors it is linked to (``process_info(Pid, links)``).
    links: tuple[ActorRef, ...] = ()
    #: The actors it monitors (``process_info(Pid, monitors)``).
    monitors: tuple[ActorRef, ...] = ()
    #: The actors that monitor it (``process_info(Pid, monitored_by)``).
    monitored_by: tuple[ActorRef, ...] = ()
    #: Whether it traps exits (``process_flag(trap_exit, true)``).
    trap_exit: bool = False


@attrs.define(eq=False, init=False, repr=False)
class ActorRef(Delivery, Stopping, Linking, Monitoring):
    """A handle on one actor incarnation (Erlang's pid).

    Refs are hashable and equal only to themselves: a restarted actor has a new ref.
    Every method may be called from any task of the node's event loop; from another thread
    they raise :class:`otp.WrongThread` (use ``node.from_thread`` there).
    """

    #: The registered name, or ``None``.
    name: str | None
    id: int
    _node: Node
    _server: GenServer
    _backend: Backend
    _mailbox: MailboxQueue
    _parker: Any
    _scope: anyio.CancelScope | None  # None until start_actor hands it anyio's (see there)
    # The top coroutine of the actor's task: ``_coro.cr_running`` is true exactly while the
    # actor's own task runs (the CalledSelf test and "stopped from inside": one C attribute
    # read; asyncio.current_task is Python code before 3.12).
    _coro: Any
    _alive: bool
    _stop_reason: Any
    _exit_reason: Any
    _exit_waiters: list[Promise] | None  # created on first use
    # monitor -> the watching actor (its _deliver_control gets the Down), or the callback
    # for a watcher that is not a local actor (no tuple or bound method per monitor: a
    # supervisor monitors each of its children). Both sides are cleaned up whichever
    # exits first, so neither keeps the other alive.
    _monitors: dict[MonitorRef, ActorRef | Callable[[Down], None]]
    _watching: dict[MonitorRef, ActorRef]
    _pending: set[Promise] | None  # created on first use: most actors never need it
    _prune_at: int
    # What the loop is handling: None between messages (wherever the loop itself waits),
    # the Wrapped of a call/info/system item, _IN_HAND during a run of casts. The loop
    # records the message of a cast only if its callback raises, for the crash report.
    # messages_handled is mailbox.taken minus the one in hand.
    _current: Any
    # A list (56 B) rather than a deque (624 B): it holds 0-2 items; created on first use.
    _continues: list[Any] | None
    _timers: set[TimerRef] | None
    _started_at: float
    _shutdown_timeout: Shutdown
    _escalate: bool
    _init_failed: bool
    _parent: str
    _thread: int  # the ident of the node's event loop thread: refs are used only there
    _stopped_inside: bool  # the pending stop was requested by the actor itself
    # Links are symmetric: a is in b._links exactly when b is in a._links (both sides are
    # updated together, and an exit clears them before it signals).
    _links: set[ActorRef] | None  # created on first use
    _link_parent: ActorRef | None  # the actor it was spawned linked to (start_link's caller)
    _kill_reason: Any  # the exit reason when its scope is cancelled

    def __init__(
        self,
        node: Node,
        server: GenServer,
        name: str | None,
        mailbox: Mailbox,
        shutdown: Shutdown,
    ) -> None:
        backend = node._backend
        self.name = name
        self.id = next(_ids)
        self._node = node
        self._server = server
        self._backend = backend
        self._parker = parker = backend.parker()
        self._mailbox = MailboxQueue(mailbox, parker, self)
        # Shielded: an actor dies only by its own exit or an explicit kill, never because
        # some enclosing scope was cancelled (Erlang processes are independent). The node
        # and supervisors stop actors explicitly, in order. start_actor replaces it with
        # the scope anyio already puts around the task, where there is one (one scope,
        # and its two sets, fewer per actor).
        self._scope = None if _OUTER_SCOPE else anyio.CancelScope(shield=True)
        self._coro = _NOT_STARTED
        self._alive = True
        self._stop_reason = _RUNNING
        self._exit_reason = None
        self._exit_waiters = None
        self._monitors = {}
        self._watching = {}
        self._pending = None
        self._prune_at = 64
        self._current = None
        self._continues = None
        self._timers = None
        self._started_at = time.monotonic()
        self._shutdown_timeout = shutdown
        self._escalate = False
        self._init_failed = False
        self._parent = ""  # the supervisor's name, if any (for crash reports)
        self._thread = node._thread  # type: ignore[assignment]  # set: the node runs
        self._stopped_inside = False
        self._links = None
        self._link_parent = None
        self._kill_reason = "killed"

    def __repr__(self) -> str:
        state = "alive" if self._alive else f"exited {self._exit_reason!r}"
        name = f" {self.name!r}" if self.name is not None else ""
        return f"<ActorRef{name} {type(self._server).__name__}#{self.id} {state}>"

    # ------------------------------------------------------------------ public API

    @property
    def alive(self) -> bool:
        """``True`` until the actor has exited (it is still alive while ``terminate`` runs)."""
        return self._alive

    @property
    def exit_reason(self) -> Any:
        """The exit reason once the actor has exited, else ``None``."""
        return self._exit_reason

    def exit(self, reason: Any) -> None:
        """Send this actor an exit signal (``erlang:exit/2``); it does not wait.

        ``"kill"`` cannot be trapped: the actor dies at once with reason ``"killed"``, as
        :meth:`kill`. Otherwise an actor that traps exits gets ``otp.Exit(sender, reason)``
        in ``handle_info`` (``sender`` is the calling actor, ``None`` outside any actor),
        except that a signal from the actor it was spawned linked to stops it with that
        reason, ``terminate`` included (as a gen_server obeys its parent). An actor that
        does not trap exits ignores ``"normal"`` (unless it sends the signal to itself)
        and dies at once with any other reason, without ``terminate``. A dead actor
        ignores the signal. ``reason=None`` means ``"normal"``, as in :meth:`stop` (``None``
        would read as "not exited" in ``exit_reason``).
        """
        self._signal(_calling_actor(), "normal" if reason is None else reason, linked=False)

    @property
    def links(self) -> frozenset[ActorRef]:
        """The actors linked to this one now (``process_info(Pid, links)``); a copy."""
        return frozenset(self._links) if self._links else frozenset()

    async def get_state(self, timeout: float | None = 5.0) -> Any:
        """A shallow copy of the server's attributes, taken between two callbacks
        (``sys:get_state/1``); ``ref`` and ``node`` are left out. A server that defines
        ``format_status`` shows what that returns instead (OTP's ``format_status/1``).

        Raises :class:`otp.ActorExited` if the actor is dead or dies first,
        :class:`otp.CallTimeout` after ``timeout``. Debugging aid: do not drive logic with it.
        """
        if timeout is not None:
            _check_timeout(timeout)
        if not self._alive:
            raise self._exited_error()
        if self._coro.cr_running:
            return status_of(self._server)
        caller = self._backend.promise()
        self._mailbox.put_control(Wrapped(SYSTEM, status_of, caller))
        try:
            return await caller.wait(timeout)
        except Expired:
            raise CallTimeout(self, timeout or 0.0, "get_state") from None

    def statistics(self) -> ActorStatistics:
        """A frozen snapshot of this actor's counters and mailbox (OTP's ``sys:statistics``)."""
        return ActorStatistics(
            name=self.name,
            id=self.id,
            behaviour=type(self._server).__qualname__,
            alive=self._alive,
            messages_handled=self._mailbox.taken - (self._current is not None),
            uptime=time.monotonic() - self._started_at,
            mailbox=self._mailbox.statistics(),
            links=tuple(self._links) if self._links else (),
            monitors=tuple(dict.fromkeys(self._watching.values())),
            monitored_by=tuple(
                dict.fromkeys(w for w in self._monitors.values() if isinstance(w, ActorRef))
            ),
            trap_exit=traps(self._server),
        )

    # ------------------------------------------------------------------ inside the actor

    def _status(self) -> Any:
        """The state as ``format_status`` shows it, read now (for snapshots)."""
        return status_of(self._server)

    def _reply(self, caller: Any, value: Any) -> None:  # caller: a Promise behind otp.Caller
        if self._pending:
            self._pending.discard(caller)
        caller.resolve(value)

    def _add_pending(self, caller: Promise) -> None:
        # A reply may come from another actor (gen_server:reply/2 from a worker); it never
        # passes through this actor's _reply, so answered callers are pruned now and then.
        pending = self._pending
        if pending is None:
            pending = self._pending = set()
        if len(pending) >= self._prune_at:
            self._pending = pending = {c for c in pending if not c.done()}
            self._prune_at = max(64, 2 * len(pending))
        pending.add(caller)

    # ------------------------------------------------------------------ internal interface
    # What otp's own behaviours and supervisors (otp/_gen_server.py, _statem.py,
    # _supervisor*.py, _snapshots.py) use of an actor besides the public API, so that no
    # module reads ActorRef's attributes. Not for users; names and semantics may change.
    # The methods: _behaviour, _load, _continue, _monitor_count (below), _shutdown_own,
    # _remove_monitor; _reply, _request_stop, _monitor, _demonitor, _link, _unlink,
    # _send_after and _deliver_control (the callbacks' helpers); _add_monitor (a
    # monitor without a watching actor: groups, remote peers); _shutdown, _join_killed (a
    # supervisor stopping a child), _parent_exited (a killed supervisor ending its
    # children), _status (snapshots); and the receiver group (_offer, _offer_full,
    # _offer_blocking, _offer_system). Those not in this class body come from its mixins
    # (otp/_delivery.py, otp/_stopping.py, otp/_exit_signals.py, otp/_monitors.py).
    # tests/test_architecture.py holds the same list.

    def _behaviour(self) -> GenServer:
        """The callback instance this actor runs (the GenServer subclass's instance; OTP's
        callback module and its state in one)."""
        return self._server

    def _load(self) -> int:
        """How busy the actor is now: the messages in its mailbox plus the one being
        handled (a pool's least-busy dispatch)."""
        return len(self._mailbox) + (self._current is not None)

    def _continue(self, arg: Any) -> None:
        """Run ``handle_continue(arg)`` before the next message (``{continue, Arg}``)."""
        continues = self._continues
        if continues is None:
            self._continues = [arg]
        else:
            continues.append(arg)
        self._mailbox._look = True  # a run of casts ends after this callback

    def _monitor_count(self) -> int:
        """How many monitors watch this actor now (``otp.testing.monitor_count``)."""
        return len(self._monitors)

    # ------------------------------------------------------------------ the process

    async def _run(self, args: tuple[Any, ...], started: Promise | None) -> None:
        # Invariant: whatever happens, _exit runs exactly once, synchronously. The task
        # runs inside the actor's shielded scope (anyio's own around the task, see
        # start_actor), so a kill's cancellation passes through here to that scope.
        reason: Any = _RUNNING
        exited = False
        try:
            try:
                self._coro = self._backend.current_coroutine()
                server = self._server
                if server._otp_owns_task_group:
                    # Supervisors own the task group their children run in. Children
                    # are shielded, so cancelling this scope does not reach them: a
                    # killed supervisor ends them itself (otp._supervisor's guard).
                    async with anyio.create_task_group() as task_group:
                        server._otp_task_group = task_group
                        reason = await self._lifecycle(args, started)  # type: ignore[arg-type]
                        # Its children are stopped (or reported stuck): it has exited,
                        # though a child that swallows cancellation may hold this group.
                        self._exit(reason, started)
                        exited = True
                else:
                    # _lifecycle inlined: one coroutine fewer in every idle worker's chain.
                    try:
                        result = await server._otp_init(args)
                    except Exception as exc:
                        self._init_failed = True
                        started.fail(exc)  # type: ignore[union-attr]
                        reason = exc
                    else:
                        if result is IGNORE:
                            self._init_failed = True
                            started.resolve(IGNORE)  # type: ignore[union-attr]
                            reason = "normal"
                        else:
                            started.resolve(self)  # type: ignore[union-attr]
                            # Started: neither the promise nor the init arguments are
                            # needed again (None tells _exit the start is over).
                            started = None
                            args = ()
                            reason = await self._loop()
            except SelfExit:
                pass  # reason: the _kill_reason it sent itself
            except BaseExceptionGroup as group:  # ... from inside a callback's task group
                matched, rest = group.split(SelfExit)
                if matched is None:
                    raise
                if rest is not None:
                    _, others = rest.split(anyio.get_cancelled_exc_class())
                    if others is not None:
                        # Its exit signal to itself decides the reason; say what else broke.
                        logger.warning(
                            "actor %r exited by its own exit signal while its task group "
                            "also failed",
                            self,
                            exc_info=others,
                        )
        finally:
            if reason is _RUNNING:  # cancelled: killed, or an untrapped exit signal
                reason = self._kill_reason
            if not exited:
                self._exit(reason, started)
        if self._escalate and isinstance(reason, SupervisorGaveUp):
            # A top-level supervisor gave up: take the node's body down with it.
            raise reason

    async def _run_scoped(self, args: tuple[Any, ...], started: Promise) -> None:
        """:meth:`_run` in a shielded scope of its own, where anyio does not put one
        around each task (anyio < 4.14): the same semantics, one coroutine more."""
        with self._scope:  # type: ignore[union-attr]  # created in __init__ then
            await self._run(args, started)

    async def _lifecycle(self, args: tuple[Any, ...], started: Promise) -> Any:
        # A supervisor's init and loop, inside the task group it owns (see _run).
        try:
            result = await self._server._otp_init(args)
        except Exception as exc:
            self._init_failed = True
            started.fail(exc)
            return exc
        if result is IGNORE:
            # OTP's ignore: the starter hears "ignore", the process exits normal at once.
            self._init_failed = True
            started.resolve(IGNORE)
            return "normal"
        started.resolve(self)
        return await self._loop()

    async def _loop(self) -> Any:
        server = self._server
        mailbox = self._mailbox
        # No bound methods or containers cached in this frame: an idle actor sleeps here,
        # and every object it holds is one more for the cyclic GC to walk.
        items = mailbox._items
        # An unbounded mailbox (almost all) is taken from inline, as MailboxQueue.get does
        # (taken, _high); a bounded one through get(), which also keeps the control count
        # and admits blocked senders.
        inline = mailbox._capacity is None
        parker = self._parker
        checkpoint = self._backend.checkpoint
        slice_spent = self._backend.slice_spent
        budget = _BUDGET
        reason: Any
        item: Any = None
        handle_cast: Any = None
        caller: Any = None
        result: Any = None
        deferred: tuple[Promise, Any] | None = None
        try:
            while (continues := self._continues) and self._stop_reason is _RUNNING:
                await server.handle_continue(continues.pop(0))
            while self._stop_reason is _RUNNING:
                if items and inline and not mailbox._extra:  # get(), inlined
                    depth = len(items)
                    if depth > mailbox._high:
                        mailbox._high = depth
                    item = items.popleft()
                    mailbox.taken += 1
                elif items or mailbox._extra:
                    item = mailbox.get()
                else:
                    self._current = None
                    item = caller = result = None  # an idle actor holds on to no message
                    timeout = server.idle_timeout
                    if timeout is None:
                        await parker.sleep()  # no coroutine of its own: see Parker.sleep
                    elif (
                        not await parker.park(timeout)
                        and not mailbox
                        and self._stop_reason is _RUNNING
                    ):
                        await server.handle_info(IdleTimeout(timeout or 0.0))
                        while (continues := self._continues) and self._stop_reason is _RUNNING:
                            await server.handle_continue(continues.pop(0))
                    continue
                if type(item) is not Wrapped:
                    # A cast, the message itself, and the casts right behind it: a run,
                    # handled back to back while nothing else asks for the loop's
                    # attention (mailbox._look: a priority message, a stop, a continue).
                    # _current stays _IN_HAND through it (the message is recorded only
                    # if a callback raises), and each cast is taken as get() takes.
                    self._current = _IN_HAND
                    # Stop and continues were just checked; a message in a lane (get()
                    # took this one by priority) ends the run at once.
                    mailbox._look = mailbox._extra != 0
                    handle_cast = server.handle_cast
                    await handle_cast(item)
                    budget -= 1
                    while budget and items and inline and not mailbox._look:
                        item = items[0]
                        if type(item) is Wrapped:
                            break
                        depth = len(items)
                        if depth > mailbox._high:
                            mailbox._high = depth
                        items.popleft()
                        mailbox.taken += 1
                        await handle_cast(item)
                        budget -= 1
                    handle_cast = None  # an idle actor holds no bound method
                else:
                    self._current = item
                    kind = item.kind
                    if kind is CALL:
                        caller = item.caller
                        result = await server.handle_call(item.message, caller)
                        if result is not NOREPLY:
                            if self._stop_reason is _RUNNING or not self._stopped_inside:
                                caller.resolve(result)
                            else:
                                # handle_call stopped its own server: as OTP's {stop, Reason,
                                # Reply, State}, the reply goes once terminate has finished
                                # (or the caller hears of the exit if it never does).
                                deferred = (caller, result)
                                self._add_pending(caller)
                        elif not caller.done():
                            self._add_pending(caller)
                    elif kind is SYSTEM:  # runs in the actor, between callbacks (OTP's sys)
                        item.caller.resolve(item.message(server))
                    else:  # INFO, or CONTROL (Down, timers: outside the capacity)
                        await server.handle_info(item.message)
                    self._current = None
                    budget -= 1
                if self._continues:
                    self._current = None
                    while (continues := self._continues) and self._stop_reason is _RUNNING:
                        await server.handle_continue(continues.pop(0))
                if not budget:
                    budget = _BUDGET
                    if slice_spent():
                        self._current = None
                        await checkpoint()
            self._current = None
        except Exception as exc:
            if self._current is _IN_HAND:  # a cast's callback raised: say which
                self._current = Wrapped(CAST, item)
            reason = exc
        else:
            reason = self._stop_reason
        try:
            await server.terminate(reason)
        except Exception as exc:
            # As in OTP, a crash in terminate becomes the exit reason.
            exc.__context__ = reason if isinstance(reason, BaseException) else None
            reason = exc
        if deferred is not None:
            # Sent even when terminate raised (gen_server replies in an `after`).
            self._reply(*deferred)
        return reason

    def _exited_error(self, reason: Any = None) -> ActorExited:
        if reason is None:
            reason = self._exit_reason
        error = ActorExited(
            self, reason, supervised=bool(self._parent), node_exited=self._node._closing
        )
        if isinstance(reason, BaseException):
            error.__cause__ = reason
        return error


def _calling_actor() -> ActorRef | None:
    """The actor whose callback is running (the sender of ``ref.exit``), else ``None``.

    Found by walking the stack to that actor's ``_run`` frame: no per-actor bookkeeping
    (a context variable per actor task would cost ~140 bytes each), and exit signals are
    rare. Code in a task the callback started is not the actor: it gets ``None``.
    """
    frame = sys._getframe(2)
    code = _RUN_CODE
    while frame is not None:
        if frame.f_code is code:
            actor = frame.f_locals.get("self")
            return actor if isinstance(actor, ActorRef) else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


#: Whether anyio runs each task of a task group inside a cancel scope of its own that the
#: actor can take over (``TaskHandle._cancel_scope``, anyio >= 4.14); otherwise each actor
#: enters a scope of its own (:meth:`ActorRef._run_scoped`).
_OUTER_SCOPE: Final = "_cancel_scope" in getattr(
    getattr(anyio, "TaskHandle", None), "__slots__", ()
)
_RUN_CODE: Final = ActorRef._run.__code__
