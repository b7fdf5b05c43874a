"""Stopping an actor and its exit: the :class:`Stopping` mixin of :class:`otp.ActorRef`.

``stop`` and ``kill`` (``gen_server:stop/3``, ``exit(Pid, kill)``), ``join``, a
supervisor's ``_shutdown`` (``terminate`` gets the shutdown seconds, then a kill) and
:meth:`Stopping._exit`, everything an exit implies, in OTP's order: synchronous, so it
cannot be interrupted by cancellation. Also the shutdown and timeout settings
(:data:`BRUTAL_KILL`, ``Shutdown``) and their checks.
"""

from __future__ import annotations

import logging
import math
import time
from threading import get_ident
from typing import TYPE_CHECKING, Any, Final, final

import anyio

from ._actor_status import brief, describe_item, status_of
from ._backends import Backend, Expired, Promise
from ._exceptions import ActorExited, CallTimeout, SupervisorGaveUp, WrongThread
from ._exit_signals import RUNNING as _RUNNING
from ._mailbox import CALL, SYSTEM, MailboxQueue, Wrapped

if TYPE_CHECKING:
    from ._gen_server import GenServer
    from ._node import Node

__all__ = [
    "BRUTAL_KILL",
    "Shutdown",
    "Stopping",
    "check_shutdown",
    "check_start_timeout",
]

logger = logging.getLogger("otp")


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


class _InHand:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<a cast>"


#: ``ActorRef._current`` while the loop handles a run of casts (their messages are not
#: recorded one by one; the one whose callback raises is), and after the exit of an
#: actor whose last message never finished.
_IN_HAND: Final = _InHand()


def _same_reason(a: Any, b: Any) -> bool:
    # Exit reasons are arbitrary values: compare without trusting their __eq__.
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


class Stopping:
    """Stopping, killing and joining an :class:`otp.ActorRef`, and its exit (a mixin of
    it: the attributes below are its slots)."""

    if not TYPE_CHECKING:  # slotted at run time; mypy sees the attributes below
        __slots__ = ()

    name: str | None
    _node: Node
    _server: GenServer
    _backend: Backend
    _mailbox: MailboxQueue
    _parker: Any
    _scope: anyio.CancelScope | None
    _coro: Any
    _alive: bool
    _stop_reason: Any
    _exit_reason: Any
    _exit_waiters: list[Promise] | None
    _pending: set[Promise] | None
    _current: Any
    _timers: set[Any] | None  # of TimerRef
    _shutdown_timeout: Shutdown
    _init_failed: bool
    _parent: str
    _thread: int
    _stopped_inside: bool
    _kill_reason: Any

    if TYPE_CHECKING:

        def _exited_error(self, reason: Any = None) -> ActorExited: ...
        def _signal_links(self, reason: Any, failed_start: bool) -> None: ...
        def _notify_monitors(self, reason: Any) -> None: ...

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

    def _request_stop(self, reason: Any) -> None:
        if reason is None:
            reason = "normal"  # None would read as "not exited" (exit_reason); see stop()
        if self._alive and self._stop_reason is _RUNNING:
            self._stop_reason = reason
            self._stopped_inside = self._coro.cr_running
            self._mailbox._look = True  # a run of casts ends after this callback
            self._parker.wake()

    async def _shutdown_own(self) -> Any:
        """:meth:`_shutdown` with the shutdown the actor was spawned with (the node
        stopping its top-level actors); the exit reason."""
        return await self._shutdown(self._shutdown_timeout)

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
        # Out of the node's indexes (live actors, top-level ones).
        node._actor_exited(self)  # type: ignore[arg-type]  # self: an ActorRef
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
