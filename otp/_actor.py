"""The actor process: :class:`ActorRef`, its loop and the exit protocol.

One actor incarnation is one task and one :class:`ActorRef`. The loop takes one message at
a time from the mailbox and awaits the matching GenServer callback; nothing else is spawned
per message. Everything that must happen when an actor exits (callers failed, monitors told,
name freed, subscriptions and timers ended) happens synchronously in :meth:`ActorRef._exit`,
so it cannot be interrupted by cancellation.

Links and exit signals live in :mod:`otp._exit_signals`, monitors and timers in
:mod:`otp._monitors` (each a mixin of :class:`ActorRef`), what an actor shows of its state
in :mod:`otp._actor_status`, and :func:`otp._start.start_actor` starts one.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from threading import get_ident
from typing import TYPE_CHECKING, Any, Final, final, overload

import anyio
import attrs

from ._actor_status import brief, describe_item, status_of
from ._backends import BUDGET_OPS, Backend, Expired, Promise
from ._call import Call, R
from ._exceptions import (
    ActorExited,
    CalledSelf,
    CallTimeout,
    MailboxFull,
    SupervisorGaveUp,
    WrongThread,
)
from ._exit_signals import RUNNING as _RUNNING
from ._exit_signals import Exit, Linking, SelfExit, is_normal_exit, traps
from ._gen_server import IGNORE, NOREPLY, GenServer, IdleTimeout
from ._mailbox import (
    ACCEPTED,
    CALL,
    CAST,
    CONTROL,
    DROPPED,
    GONE,
    INFO,
    REFUSED,
    SYSTEM,
    WAIT,
    Full,
    Item,
    Kind,
    Mailbox,
    MailboxQueue,
    MailboxStatistics,
    Overflow,
    Wrapped,
    unwrap,
)
from ._monitors import Down, Monitoring, MonitorRef, TimerRef
from ._monitors import ids as _ids
from ._requests import RequestId

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


@final
class _BrutalKill:
    __slots__ = ()

    def __repr__(self) -> str:
        return "otp.BRUTAL_KILL"

    def __reduce__(self) -> str:
        return "BRUTAL_KILL"


#: ``shutdown=BRUTAL_KILL``: cancel the actor at once, without running ``terminate``.
BRUTAL_KILL: Final = _BrutalKill()

#: A shutdown timeout: seconds, ``None`` (wait forever) or :data:`BRUTAL_KILL`.
Shutdown = float | int | None | _BrutalKill


def check_shutdown(value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a valid shutdown setting."""
    if value is None or value is BRUTAL_KILL:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or math.isnan(value)
    ):
        raise ValueError(
            f"shutdown must be seconds >= 0, None (wait forever) or otp.BRUTAL_KILL, not {value!r}"
        )


def check_start_timeout(value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is seconds > 0 or ``None`` (wait forever)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"start_timeout must be seconds > 0 or None, not {value!r}")


def _check_timeout(timeout: object) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be seconds (an int or float >= 0) or None (wait forever), not "
            f"{timeout!r} ({type(timeout).__name__})"
        )
    if timeout < 0 or math.isnan(timeout):
        raise ValueError(f"timeout must be seconds >= 0 or None (wait forever), not {timeout!r}")


class _NotStarted:
    """``ActorRef._coro`` until the actor's task runs."""

    __slots__ = ()
    cr_running = False


_NOT_STARTED: Final = _NotStarted()


class _InHand:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<a cast>"


#: ``ActorRef._current`` while the loop handles a run of casts (their messages are not
#: recorded one by one; the one whose callback raises is), and after the exit of an
#: actor whose last message never finished.
_IN_HAND: Final = _InHand()


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
class ActorRef(Linking, Monitoring):
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

    @overload
    async def call(self, request: Call[R], timeout: float | None = 5.0) -> R: ...
    @overload
    async def call(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object], timeout: float | None = 5.0
    ) -> object: ...
    @overload
    async def call(self, request: Any, timeout: float | None = 5.0) -> Any: ...

    async def call(self, request: Any, timeout: float | None = 5.0) -> Any:
        """Send ``request`` to ``handle_call`` and wait for the reply (``gen_server:call/3``).

        Raises :class:`otp.CallTimeout` after ``timeout`` seconds (``None`` waits forever;
        the server keeps running and a late reply is dropped), :class:`otp.ActorExited` at
        once if the actor is dead or dies before replying (a crash is the ``__cause__``),
        :class:`otp.MailboxFull` if its overflow policy refuses or drops the request, and
        :class:`otp.CalledSelf` if an actor calls itself, :class:`otp.WrongThread` outside
        the node's event loop thread (use ``node.from_thread`` there).
        """
        if get_ident() != self._thread:
            raise WrongThread(self, "call")
        if not self._alive:
            raise self._exited_error()
        if self._coro.cr_running:
            raise CalledSelf(self)
        if timeout is not None and (timeout.__class__ is not float or not timeout > 0):
            _check_timeout(timeout)  # the common float timeout skips this
        backend = self._backend
        caller = backend.promise()
        item = Wrapped(CALL, request, caller)
        mailbox = self._mailbox
        try:
            mailbox.put(item)
        except Full:
            if mailbox.overflow is not Overflow.BLOCK:
                raise MailboxFull(self, mailbox.capacity, mailbox.overflow) from None
            # Waiting for room counts toward the timeout, as the whole call does in OTP.
            started = time.monotonic()
            try:
                admitted = await mailbox.put_blocking(item, backend, 0, timeout)
            except Expired:
                raise CallTimeout(self, timeout or 0.0, request) from None
            if not admitted:
                error = self._exited_error()
                raise error from error.__cause__
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - started))
        if timeout is not None:
            if timeout == 0:
                # Nothing can have replied yet: OTP's call with timeout 0, deterministically.
                caller.fail(Expired())
                raise CallTimeout(self, 0.0, request)
            self._node._deadlines.add(timeout, caller)  # fails it with Expired when due
        try:
            return await caller  # promise.wait() without its coroutine
        except Expired:
            raise CallTimeout(self, timeout or 0.0, request) from None

    @overload
    def send_request(self, request: Call[R]) -> RequestId[R]: ...
    @overload
    def send_request(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object]
    ) -> RequestId[object]: ...
    @overload
    def send_request(self, request: Any) -> RequestId[Any]: ...

    def send_request(self, request: Any) -> RequestId[Any]:
        """Send ``request`` to ``handle_call`` without waiting; collect the reply later with
        ``await handle.wait(timeout)`` (``gen_server:send_request/2``).

        Never yields. A dead actor gives a handle that already holds its
        :class:`otp.ActorExited`; a full mailbox that would make :meth:`call` wait or fail
        raises :class:`otp.MailboxFull` at once (as :meth:`cast_nowait` does); a dropped
        request fails the handle with it. See :class:`otp.RequestId`.
        """
        handle: RequestId[Any] = RequestId(self, request, self._backend, self._node._deadlines)
        slot = handle._slot
        if not self._alive:
            slot.fail(self._exited_error())
            return handle
        mailbox = self._mailbox
        try:
            mailbox.put(Wrapped(CALL, request, slot))
        except Full:
            raise MailboxFull(self, mailbox.capacity, mailbox.overflow) from None
        return handle

    async def cast(self, message: Any, *, priority: int = 0) -> None:
        """Send ``message`` to ``handle_cast`` without waiting for it to be handled.

        A checkpoint, as every anyio operation is; :meth:`cast_nowait` is the non-yielding
        fast path. A dead actor's message becomes a dead letter and ``cast`` returns
        quietly; with ``Overflow.BLOCK`` it waits for room, with ``Overflow.FAIL`` a full
        mailbox raises :class:`otp.MailboxFull`. Messages of a higher ``priority`` are
        handled first; order is kept within one priority (Erlang has no priorities).
        Outside the node's event loop thread it raises :class:`otp.WrongThread`.
        """
        if get_ident() != self._thread:
            raise WrongThread(self, "cast")
        if self._backend.budget_spent():  # an amortised checkpoint (docs/core.md, "Yielding")
            await self._backend.checkpoint()
        if self._alive and not priority:
            mailbox = self._mailbox
            if mailbox._capacity is None:
                # MailboxQueue.put's hot path (unbounded, priority 0) inlined: the message
                # itself is the item (benchmarks: "await cast", 3x the deque floor without).
                mailbox._items.append(message)
                parker = self._parker
                if parker.waiter is not None:
                    parker.wake()
                return
        await self._put(CAST, message, priority)

    def cast_nowait(self, message: Any, *, priority: int = 0) -> None:
        """:meth:`cast` without yielding; a full ``BLOCK`` mailbox raises ``MailboxFull``.

        Outside the node's event loop thread it raises :class:`otp.WrongThread` whenever
        it would wake the actor or find it dead (the thread check stays out of a tight
        producer loop feeding a busy actor); use ``node.from_thread.cast`` there.
        """
        if self._alive:  # _put_nowait, inlined
            mailbox = self._mailbox
            parker = self._parker
            if not priority and mailbox._capacity is None:
                # MailboxQueue.put's hot path (unbounded, priority 0) inlined, the message
                # itself the item (benchmarks: cast_nowait, 3.3x the deque floor without).
                if parker.waiter is not None:
                    if get_ident() != self._thread:
                        raise WrongThread(self, "cast")  # waking from another thread
                    mailbox._items.append(message)
                    parker.wake()
                else:
                    mailbox._items.append(message)
                return
            if parker.waiter is not None and get_ident() != self._thread:
                raise WrongThread(self, "cast")  # waking from another thread breaks the loop
            try:
                mailbox.put(message, priority)
            except Full:
                raise MailboxFull(self, mailbox.capacity, mailbox.overflow) from None
        else:
            if get_ident() != self._thread:
                raise WrongThread(self, "cast")
            self._node._dead_letter(self, message, "noproc")

    async def send(self, message: Any, *, priority: int = 0) -> None:
        """Send ``message`` to ``handle_info`` (Erlang's ``!``); otherwise as :meth:`cast`."""
        if get_ident() != self._thread:
            raise WrongThread(self, "send")
        backend = self._backend
        if backend.budget_spent():
            await backend.checkpoint()
        await self._put(INFO, message, priority)

    def send_nowait(self, message: Any, *, priority: int = 0) -> None:
        """:meth:`send` without yielding; a full ``BLOCK`` mailbox raises ``MailboxFull``
        (the thread check as for :meth:`cast_nowait`)."""
        if (self._parker.waiter is not None or not self._alive) and get_ident() != self._thread:
            raise WrongThread(self, "send")
        self._put_nowait(INFO, message, priority)

    async def stop(self, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the actor once its current callback returns and wait until it has exited
        (``gen_server:stop/3``): ``terminate(reason)`` runs, monitors get ``Down``.

        Queued messages are not handled: waiting callers get ``ActorExited``, the rest
        become dead letters. Stopping a dead actor returns at once. Called from inside the
        actor itself it only requests the stop (it cannot wait for itself). Raises
        :class:`otp.CallTimeout` if ``timeout`` passes first (the stop still goes on), and
        :class:`otp.ActorExited` carrying the reason the actor really exited with when that
        is not ``reason``: ``terminate`` raised (the exception is also ``__cause__``), it
        was killed, or it was already stopping for another reason (as ``gen_server:stop``
        exits with the other reason). ``reason=None`` means ``"normal"`` (``None`` is what
        :attr:`exit_reason` says of a running actor). With a cluster broker it returns once
        the exit's releases are done there too: its :class:`otp.Global` name is free for a
        claim from any node and ``node.locate`` no longer finds it (within ``timeout``, and
        at most the broker's ``node_ttl``).
        """
        if get_ident() != self._thread:
            raise WrongThread(self, "stop")
        if timeout is not None:
            _check_timeout(timeout)
        if reason is None:
            reason = "normal"
        if not self._alive:
            await self._backend.checkpoint()
            await self._node._exits_settled(timeout)
            return
        self._request_stop(reason)
        if self._coro.cr_running:
            return
        started = time.monotonic()
        actual = await self.join(timeout)
        # What the exit freed in the cluster (a global name, group memberships) is freed
        # there too before stop returns: another node may claim the name at once.
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        await self._node._exits_settled(left)
        if not _same_reason(actual, reason):
            # gen_server:stop/3 exits with the reason the server really exited with (a
            # crash in terminate, a kill, or a stop already under way for another reason).
            error = self._exited_error(actual)
            raise error from error.__cause__

    def kill(self) -> None:
        """Cancel the actor at once without running ``terminate``; its exit reason is
        ``"killed"`` (``exit(Pid, kill)``)."""
        if get_ident() != self._thread:
            raise WrongThread(self, "kill")
        if self._alive:
            scope = self._scope
            if scope is None:
                # Killed before start_actor gave it its scope: it passes the kill on.
                scope = self._scope = anyio.CancelScope(shield=True)
            scope.cancel()

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

    async def join(self, timeout: float | None = None) -> Any:
        """Wait until the actor has exited and return its exit reason.

        Raises :class:`otp.CallTimeout` if ``timeout`` passes first.
        """
        if get_ident() != self._thread:
            raise WrongThread(self, "join")
        if timeout is not None:
            _check_timeout(timeout)
        if not self._alive:
            await self._backend.checkpoint()
            return self._exit_reason
        waiter = self._exit_waiter()
        try:
            return await waiter.wait(timeout)
        except Expired:
            raise CallTimeout(self, timeout or 0.0, "join") from None

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

    # ------------------------------------------------------------------ sending

    def _put_nowait(self, kind: Kind, message: Any, priority: int = 0) -> None:
        if not self._alive:
            self._node._dead_letter(self, message, "noproc")
            return
        mailbox = self._mailbox
        try:
            mailbox.put(message if kind is CAST else Wrapped(kind, message), priority)
        except Full:
            raise MailboxFull(self, mailbox.capacity, mailbox.overflow) from None

    async def _put(self, kind: Kind, message: Any, priority: int = 0) -> None:
        if not self._alive:
            self._node._dead_letter(self, message, "noproc")
            return
        mailbox = self._mailbox
        item = message if kind is CAST else Wrapped(kind, message)
        try:
            mailbox.put(item, priority)
        except Full:
            if mailbox.overflow is not Overflow.BLOCK:
                raise MailboxFull(self, mailbox.capacity, mailbox.overflow) from None
            if not await mailbox.put_blocking(item, self._backend, priority):
                self._node._dead_letter(self, message, "noproc")

    # ------------------------------------------------------------------ as a receiver
    # Internal: how a broker (otp/_broker.py, otp/redis) hands a published message to this
    # actor's handle_info: the counterpart of a Subscription's _offer/_offer_blocking/
    # _offer_system. ``item`` is a ``Wrapped(INFO, message)``, built once per publish
    # (items are never modified); otp/redis/_serve.py offers remote calls and casts the
    # same way (any mailbox item). Each returns one of otp._mailbox's offer codes; the
    # broker writes the dead letters of REFUSED and GONE (they carry the topic). A fan-out
    # loop may inline _offer's common case, and only that: ``ref._alive`` and then
    # ``ref._mailbox.put(item, priority)`` (True: queued; False: DROPPED; Full: ask
    # _offer_full). Besides these the broker uses only _add_monitor and _remove_monitor
    # (it learns of a subscriber's exit as any watcher does).

    def _offer(self, item: Item, priority: int = 0) -> int:
        """Queue ``item`` without waiting, as the overflow policy says: ``WAIT`` for a full
        ``BLOCK`` mailbox (then :meth:`_offer_blocking`), ``REFUSED`` for a full ``FAIL``
        one, ``DROPPED`` if ``DROP_NEWEST``/``DROP_OLDEST`` dropped it (the dead letter is
        recorded), ``GONE`` once the actor has exited."""
        if not self._alive:
            return GONE
        try:
            return ACCEPTED if self._mailbox.put(item, priority) else DROPPED
        except Full:
            return self._offer_full()

    def _offer_full(self) -> int:
        """What a full mailbox does with an offer (``put`` raised ``Full``): ``WAIT`` under
        ``BLOCK`` (then :meth:`_offer_blocking`), ``REFUSED`` under ``FAIL``."""
        return WAIT if self._mailbox.overflow is Overflow.BLOCK else REFUSED

    async def _offer_blocking(
        self, item: Item, priority: int = 0, timeout: float | None = None
    ) -> bool:
        """Wait for room in a full ``BLOCK`` mailbox (after :meth:`_offer` said ``WAIT``)
        and queue ``item``; ``False`` if the actor exited first. Raises ``Expired`` if
        ``timeout`` passes first (the item is not queued then)."""
        return await self._mailbox.put_blocking(item, self._backend, priority, timeout)

    def _offer_system(self, item: Wrapped) -> int:
        """Queue a runtime message (a dead letter) that is never waited for: a full
        ``BLOCK`` mailbox takes it past its capacity, the other policies apply as usual
        (``ACCEPTED``, ``DROPPED`` or ``REFUSED``; ``GONE`` once the actor has exited)."""
        if not self._alive:
            return GONE
        mailbox = self._mailbox
        try:
            return ACCEPTED if mailbox.put(item) else DROPPED
        except Full:
            if mailbox.overflow is Overflow.BLOCK:
                mailbox.put_control(item)
                return ACCEPTED
            return REFUSED

    def _deliver_control(self, message: Any) -> None:
        # Down notices and timer messages: never refused, never dropped.
        if self._alive:
            self._mailbox.put_control(Wrapped(CONTROL, message))

    def _on_drop(self, item: Item, why: str) -> None:
        kind, message, caller = unwrap(item)
        self._node._emit("overflow", actor=self, reason=why, detail=message)
        if kind is CALL:
            mailbox = self._mailbox
            caller.fail(MailboxFull(self, mailbox.capacity, mailbox.overflow))
        self._node._dead_letter(self, message, why)

    # ------------------------------------------------------------------ inside the actor

    def _request_stop(self, reason: Any) -> None:
        if reason is None:
            reason = "normal"  # None would read as "not exited" (exit_reason); see stop()
        if self._alive and self._stop_reason is _RUNNING:
            self._stop_reason = reason
            self._stopped_inside = self._coro.cr_running
            self._mailbox._look = True  # a run of casts ends after this callback
            self._parker.wake()

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
    # The methods: _behaviour, _load, _continue, _shutdown_own, _remove_monitor,
    # _monitor_count (below); _reply, _request_stop, _monitor, _demonitor, _link, _unlink,
    # _send_after and _deliver_control (the callbacks' helpers, above); _add_monitor (a
    # monitor without a watching actor: groups, remote peers); _shutdown, _join_killed (a
    # supervisor stopping a child), _parent_exited (a killed supervisor ending its
    # children), _status (snapshots); and the receiver group above (_offer, _offer_full,
    # _offer_blocking, _offer_system). tests/test_architecture.py holds the same list.

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

    async def _shutdown_own(self) -> Any:
        """:meth:`_shutdown` with the shutdown the actor was spawned with (the node
        stopping its top-level actors); the exit reason."""
        return await self._shutdown(self._shutdown_timeout)

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

    def _exit(self, reason: Any, started: Promise | None) -> None:
        """Everything an exit implies, in OTP's order; synchronous, so never interrupted.

        ``started`` is the start promise, ``None`` once init returned and it resolved."""
        self._alive = False
        self._exit_reason = reason
        node = self._node
        if self.name is not None:
            node._unregister(self.name, self)
        for timer in list(self._timers or ()):
            timer.cancel()
        # A start that failed is reported to the spawner by the exception alone.
        failed_start = self._init_failed or (started is not None and not started.done())
        if started is not None and not started.done():
            started.fail(self._exited_error(reason))
        # Callers waiting on this actor are woken at once; other messages are dead letters.
        current = self._current
        if current is not None:
            self._current = _IN_HAND  # it never finished: messages_handled leaves it out
            if type(current) is Wrapped and current.kind is CALL:
                current.caller.fail(self._exited_error(reason))
        for item in self._mailbox.close():
            if type(item) is Wrapped:
                if item.kind is CALL or item.kind is SYSTEM:
                    item.caller.fail(self._exited_error(reason))
                else:
                    node._dead_letter(self, item.message, "actor_exited")
            else:
                node._dead_letter(self, item, "actor_exited")
        for caller in self._pending or ():
            caller.fail(self._exited_error(reason))
        self._pending = None
        self._signal_links(reason, failed_start)
        node._actor_exited(self)  # out of the node's indexes (live actors, top-level ones)
        self._notify_monitors(reason)
        waiters, self._exit_waiters = self._exit_waiters, None
        for waiter in waiters or ():
            waiter.resolve(reason)
        if node._listeners:
            node._emit("exited", actor=self, reason=reason)
        if (
            isinstance(reason, Exception)
            and not self._init_failed
            and not isinstance(reason, SupervisorGaveUp)
            and reason is not self._kill_reason  # an exit signal, not its own crash
        ):
            status = status_of(self._server)
            logger.error(
                "crash report: actor %r (%s, %s) crashed while handling %r; state: %s",
                self,
                type(self._server).__qualname__,
                f"under supervisor {self._parent!r}" if self._parent else "unsupervised",
                describe_item(current),
                brief(status),
                exc_info=reason,
                extra={
                    "otp_event": "crash",
                    "otp_actor": self,
                    "otp_reason": reason,
                    "otp_state": status,
                },
            )

    async def _shutdown(self, shutdown: Shutdown, reason: Any = "shutdown") -> Any:
        """Stop the actor as a supervisor does: ``terminate`` gets ``shutdown`` seconds, then
        the actor is killed; :data:`BRUTAL_KILL` kills at once; ``None`` waits forever."""
        if not self._alive:
            return self._exit_reason
        waiter = self._exit_waiter()
        if shutdown is BRUTAL_KILL:
            self.kill()
            return await self._wait_killed(waiter)
        self._request_stop(reason)
        try:
            return await waiter.wait(shutdown)  # type: ignore[arg-type]
        except Expired:
            self._node._emit("shutdown_timeout", actor=self, detail=shutdown)
            logger.warning(
                "actor %r did not stop within %ss of being asked; killing it",
                self,
                shutdown,
                extra={"otp_event": "shutdown_timeout", "otp_actor": self},
            )
        waiter = self._exit_waiter()
        self.kill()
        return await self._wait_killed(waiter)

    async def _join_killed(self) -> Any:
        """Wait for this actor, just killed, to exit (see :meth:`_wait_killed`)."""
        if not self._alive:
            return self._exit_reason
        return await self._wait_killed(self._exit_waiter())

    def _exit_waiter(self) -> Promise:
        """A promise resolved with the exit reason when this live actor exits."""
        waiter = self._backend.promise()
        waiters = self._exit_waiters
        if waiters is None:
            waiters = self._exit_waiters = []
        waiters.append(waiter)
        return waiter

    async def _wait_killed(self, waiter: Promise) -> Any:
        """Wait for a killed actor's exit at most the node's ``kill_timeout`` seconds.

        A killed actor exits at its next ``await``; one that swallows the cancellation
        (an ``except BaseException`` that carries on, a long shielded scope) is reported
        with a WARNING and an ``"actor_stuck"`` event, and the caller goes on without it.
        """
        timeout = self._node.kill_timeout
        try:
            return await waiter.wait(timeout)
        except Expired:
            self._node._emit("actor_stuck", actor=self, detail=timeout)
            logger.warning(
                "actor %r did not exit within %gs of being killed: it swallows "
                "cancellation (an except clause that catches it and carries on, or a "
                "shielded scope); going on without it, though its task keeps the node "
                "(and its supervisor) from finishing until it ends",
                self,
                timeout,
                extra={"otp_event": "actor_stuck", "otp_actor": self},
            )
            return self._kill_reason


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


def _same_reason(a: Any, b: Any) -> bool:
    # Exit reasons are arbitrary values: compare without trusting their __eq__.
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


#: Whether anyio runs each task of a task group inside a cancel scope of its own that the
#: actor can take over (``TaskHandle._cancel_scope``, anyio >= 4.14); otherwise each actor
#: enters a scope of its own (:meth:`ActorRef._run_scoped`).
_OUTER_SCOPE: Final = "_cancel_scope" in getattr(
    getattr(anyio, "TaskHandle", None), "__slots__", ()
)
_RUN_CODE: Final = ActorRef._run.__code__
