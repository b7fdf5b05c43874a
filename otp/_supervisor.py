"""The supervisor process: starts its children, watches them, restarts them.

A supervisor is itself an actor (OTP's supervisor is a gen_server). Its children run in
its task group, each in a shielded scope; a supervisor that is killed ends them itself
(see ``_Supervisor._guard``). Children start in order and stop in reverse order; each exit
is handled by the strategy:

* ``ONE_FOR_ONE``: restart the child that exited;
* ``ONE_FOR_ALL``: stop the others (reverse order), restart all (start order);
* ``REST_FOR_ONE``: stop the children started after it (reverse), restart it and them.

Restarts are counted per supervisor: more than ``max_restarts`` within ``within`` seconds
and the supervisor stops every child and exits with :class:`otp.SupervisorGaveUp`.
The specs are in otp/_specs.py, the operations it serves in otp/_supervisor_ops.py, its
bookkeeping (children, intensity) in otp/_supervisor_state.py, the refs in
otp/_supervisor_refs.py.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import attrs
from anyio.abc import TaskStatus

from ._actor import (
    ActorRef,
    Down,
    Exit,
    Shutdown,
    is_normal_exit,
)
from ._exceptions import (
    AlreadyPresent,
    AlreadyStarted,
    ChildRunning,
    Ignored,
    MaxChildren,
    NameTaken,
    OTPError,
    Restarting,
    StartFailed,
    SupervisorGaveUp,
)
from ._gen_server import NOREPLY, GenServer
from ._ref import Ref
from ._specs import (
    AutoShutdown,
    ChildSpec,
    Restart,
    Strategy,
    SupervisorSpec,
    WorkerSpec,
    check_auto_shutdown,
)
from ._start import start_actor
from ._supervisor_ops import (
    CountChildren,
    DeleteChild,
    RestartChild,
    StartChild,
    TerminateChild,
    WhichChildren,
    _Call,
    _Failed,
)
from ._supervisor_refs import PoolRef, SupervisorRef
from ._supervisor_state import Child, Children, Intensity, stop_at_once

if TYPE_CHECKING:
    from ._backends import Caller
    from ._node import Node

__all__ = ["start_top"]

logger = logging.getLogger("otp")

#: The clock restart intensity and backoff are measured with (tests substitute it).
_clock = time.monotonic

#: How an exit past the restart intensity is reported (the give-up report follows).
_NOT_RESTARTED = "not restarted: the restart intensity is reached"


@attrs.frozen
class _TryAgain:
    """Retry the restart of ``child`` (OTP's ``try_again_restart``): its strategy's group
    is stopped and started again, as after the exit that began it."""

    child: Child


class _Aborted(Exception):
    """A child start given up because this supervisor was asked to stop meanwhile."""


class _Supervisor(GenServer):
    _otp_owns_task_group = True
    # Supervisors trap exits, as in OTP: a linked actor's exit or an exit signal from
    # anyone but the parent does not end one (children are watched by monitors).
    trap_exit = True

    #: The scope of the child start being awaited, if any: a stop request cancels it (the
    #: half-started child is killed), and which_children answers without waiting for it.
    start_scope: anyio.CancelScope | None = None
    start_since = 0.0  # when that start began (anyio.current_time())
    initialising = True

    async def init(self, spec: SupervisorSpec) -> None:
        self.spec = spec
        self.children = Children(spec.dynamic)
        self.intensity = Intensity(spec.max_restarts, spec.within)
        self.next_worker = 0  # round-robin position of a worker pool
        self.guard = anyio.CancelScope()
        await self._otp_task_group.start(self._guard)
        try:
            for child_spec in spec.children:
                child = self.children.add(child_spec)
                ref = await self._start(child)
                if ref is None and child_spec.restart is Restart.TEMPORARY:
                    self.children.remove(child)  # an ignored temporary child is not kept (OTP)
        except BaseException:
            try:
                await self._stop_all()
            finally:
                self.guard.cancel()
            raise
        self.initialising = False

    async def _guard(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Take the children down when the supervisor itself is killed.

        Invariant: children run in shielded scopes inside this supervisor's task group, so
        cancelling the supervisor does not reach them; this task, in the same group but not
        shielded, is cancelled with it and ends them as OTP's links would: a child that
        traps exits runs ``terminate("killed")``, any other dies at once. After an orderly
        stop (``terminate`` cancels ``self.guard``) no child is left and it does nothing.
        """
        with self.guard:
            try:
                task_status.started()
                await anyio.sleep_forever()
            finally:
                for ref in self.children.alive_refs():
                    ref._parent_exited("killed")

    # -------------------------------------------------------------- starting and stopping

    async def _start(self, child: Child) -> ActorRef | None:
        """Start ``child``; ``None`` if its ``init`` returned :data:`otp.IGNORE` (the spec
        stays, nothing runs). Raises :class:`StartFailed`, or :class:`_Aborted` when a
        stop request to this supervisor cancelled the start (the child was killed)."""
        spec = child.spec
        with anyio.CancelScope() as scope:
            self.start_scope = scope
            self.start_since = anyio.current_time()
            try:
                ref = await self._start_spec(spec, child.id)
            except NameTaken as exc:
                raise StartFailed(child.id, exc, self.spec.name) from exc
            except Ignored:
                child.ref = None
                child.restarting = False
                logger.info(
                    "supervisor %r: child %r returned otp.IGNORE from init; not running",
                    self.spec.name,
                    child.id,
                    extra={"otp_event": "child_ignored", "otp_supervisor": self.ref},
                )
                return None
            finally:
                self.start_scope = None
        if scope.cancelled_caught:
            raise _Aborted
        child.ref = ref
        child.restarting = False
        child.started_at = _clock()
        child.monitor = self.monitor(ref)
        self.children.by_ref[ref] = child
        logger.debug(
            "supervisor %r started child %r as %r",
            self.spec.name,
            child.id,
            ref,
            extra={"otp_event": "child_started", "otp_supervisor": self.ref, "otp_actor": ref},
        )
        return ref

    async def _start_spec(self, spec: ChildSpec, child_id: str) -> ActorRef:
        if isinstance(spec, WorkerSpec):
            return await start_actor(
                self.node,
                self._otp_task_group,
                spec.cls,
                spec.args,
                name=spec.name,
                mailbox=spec.mailbox,
                shutdown=spec.shutdown,
                child_id=child_id,
                where=self.spec.name,
                start_timeout=spec.start_timeout,
            )
        return await start_actor(
            self.node,
            self._otp_task_group,
            _Supervisor,
            (spec,),
            name=spec.name,
            shutdown=spec.shutdown,
            ref_class=PoolRef if spec.dispatch else SupervisorRef,
            child_id=child_id,
            where=self.spec.name,
            start_timeout=spec.start_timeout,
        )

    def abort_start(self) -> None:
        # A stop request while a child start is awaited: give that start up (OTP's
        # supervisor would wait for it; a child whose init hangs would hang the shutdown).
        if self.start_scope is not None and not self.initialising:
            self.start_scope.cancel()

    def _forget(self, child: Child) -> ActorRef | None:
        """Mark ``child`` stopped by us (its Down is then ignored); return its old ref."""
        ref = child.ref
        if ref is None:
            return None
        if child.monitor is not None:
            self.demonitor(child.monitor)
        self.children.by_ref.pop(ref, None)
        child.ref = None
        child.monitor = None
        return ref

    async def _stop(self, child: Child) -> None:
        ref = self._forget(child)
        if ref is not None:
            # Left in `stopping` if this is interrupted (a kill): the guard then ends it.
            self.children.stopping.add(ref)
            await ref._shutdown(child.spec.shutdown)
            self.children.stopping.discard(ref)

    async def _stop_all(self) -> None:
        """Stop every child: in reverse start order, or all at once if dynamic."""
        if not self.spec.dynamic:
            for child in reversed(self.children):
                await self._stop(child)
            return
        pending: list[tuple[ActorRef, Shutdown]] = []
        for child in list(self.children):
            ref = self._forget(child)
            if ref is not None and ref.alive:
                pending.append((ref, child.spec.shutdown))
        stopping = self.children.stopping
        stopping.update(ref for ref, _ in pending)  # the guard ends them if this is killed
        await stop_at_once(pending)
        stopping.difference_update(ref for ref, _ in pending)

    async def terminate(self, reason: Any) -> None:
        try:
            await self._stop_all()
        finally:
            self.guard.cancel()

    # -------------------------------------------------------------- exits and restarts

    async def handle_info(self, message: Any) -> None:
        try:
            await self._handle_info(message)
        except _Aborted:
            pass  # this supervisor is stopping: the restart was given up

    async def _handle_info(self, message: Any) -> None:
        if isinstance(message, Down):
            child = self.children.by_ref.pop(message.ref, None)
            if child is not None and child.ref is message.ref:
                child.ref = None
                child.monitor = None
                await self._child_exited(child, message.reason)
            return  # otherwise: a child we had already stopped ourselves
        if isinstance(message, Exit):
            return  # not from a child (OTP's supervisor ignores those EXITs too)
        if isinstance(message, _TryAgain):
            child = message.child
            # terminate_child ends the retries (restarting is reset); a stale retry after a
            # later successful restart finds the child running and is dropped, as in OTP.
            if child in self.children and child.restarting and child.ref is None:
                await self._restart(child, await self._stop_group(child))
            return
        await super().handle_info(message)

    async def _child_exited(self, child: Child, reason: Any) -> None:
        spec = child.spec
        gave_up = isinstance(reason, SupervisorGaveUp)
        # As in OTP, a child supervisor that gave up exits with reason "shutdown".
        effective = "shutdown" if gave_up else reason
        abnormal = gave_up or not is_normal_exit(effective)
        restart = spec.restart
        if restart is Restart.TEMPORARY or (
            restart is Restart.TRANSIENT and is_normal_exit(effective)
        ):
            logger.log(
                logging.ERROR if abnormal else logging.DEBUG,
                "supervisor %r: child %r exited (%s); %s child, not restarted",
                self.spec.name,
                child.id,
                _reason_text(reason),
                restart.value,
                extra={
                    "otp_event": "child_exited",
                    "otp_supervisor": self.ref,
                    "otp_reason": reason,
                },
            )
            if restart is Restart.TEMPORARY:
                self.children.remove(child)
            if spec.significant:
                self._auto_shutdown(child)
            return
        # Counted before it is reported: a restart past the intensity never happens, and
        # the report says so (OTP reports child_terminated, then reached_max_restart_intensity).
        restarting = self.intensity.add(_clock())
        logger.log(
            logging.ERROR if abnormal else logging.INFO,
            "supervisor %r: child %r exited (%s); %s",
            self.spec.name,
            child.id,
            _reason_text(reason),
            f"restarting it ({self.spec.strategy.value})" if restarting else _NOT_RESTARTED,
            extra={"otp_event": "child_exited", "otp_supervisor": self.ref, "otp_reason": reason},
        )
        if not restarting:
            self._give_up(reason)
        group = await self._stop_group(child)
        backoff = spec.backoff or self.spec.backoff
        if backoff is not None:
            delay = child.backoff_delay(backoff, _clock())
            if delay > 0:
                child.restarting = True
                self.send_after(delay, _TryAgain(child))
                return
        await self._restart(child, group)

    def _auto_shutdown(self, child: Child) -> None:
        """A significant child exited by itself and is not restarted: shut down if the
        ``auto_shutdown`` flag says so (OTP 24's ``do_auto_shutdown``). Children this
        supervisor stopped itself never get here (their exit is not a Down it handles)."""
        mode = self.spec.auto_shutdown
        if mode is AutoShutdown.NEVER:
            return
        if mode is AutoShutdown.ALL_SIGNIFICANT and any(
            c.ref is not None and c.spec.significant for c in self.children
        ):
            return
        logger.info(
            "supervisor %r: significant child %r exited; auto_shutdown=%s, shutting down",
            self.spec.name,
            child.id,
            mode,
            extra={"otp_event": "auto_shutdown", "otp_supervisor": self.ref},
        )
        self.stop("shutdown")

    async def _stop_group(self, child: Child) -> list[Child]:
        """Stop the children ``child``'s strategy restarts with it (reverse start order);
        return that group in start order, temporary bystanders removed (OTP's
        ``restart/2``: one_for_all is every child, rest_for_one ``child`` and later)."""
        strategy = self.spec.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return [child]
        ordered = list(self.children)
        group = ordered if strategy is Strategy.ONE_FOR_ALL else ordered[ordered.index(child) :]
        for other in reversed(group):
            if other is not child:
                await self._stop(other)
        for other in group:
            if other is not child and other.spec.restart is Restart.TEMPORARY:
                # A temporary bystander is not restarted, and leaves the list.
                self.children.remove(other)
        return [c for c in group if c in self.children]

    def _give_up(self, reason: Any) -> NoReturn:
        """The restart intensity is reached: raise :class:`otp.SupervisorGaveUp` (the
        supervisor then stops its children and exits; OTP's ``shutdown`` report with
        ``reached_max_restart_intensity``)."""
        logger.error(
            "supervisor %r reached its restart intensity (more than %d restart(s) in %gs) "
            "and gives up: stopping its children (last exit: %s)",
            self.spec.name,
            self.spec.max_restarts,
            self.spec.within,
            _reason_text(reason),
            extra={"otp_event": "gave_up", "otp_supervisor": self.ref, "otp_reason": reason},
        )
        self.node._emit("gave_up", actor=self.ref, supervisor=self.ref, reason=reason)
        raise SupervisorGaveUp(self.spec.name, self.spec.max_restarts, self.spec.within, reason)

    async def _restart(self, trigger: Child, group: list[Child]) -> None:
        """Start ``group`` (already stopped) in order. If one fails, it alone is marked
        restarting (OTP's ``{restarting, Pid}``; the later ones stay stopped) and its retry
        is queued: a retry restarts its strategy's group again from scratch."""
        for child in group:
            if child.ref is not None or child not in self.children:
                continue
            child.restarting = True  # while its start is awaited; _start clears it
            try:
                ref = await self._start(child)
            except StartFailed as exc:
                child.restarting = True
                cause = exc.__cause__ or exc
                # A failed restart counts toward the intensity (before it is reported, as
                # above); other requests (a shutdown, say) are served before the retry, as
                # OTP's try_again_restart does.
                retrying = self.intensity.add(_clock())
                logger.error(
                    "supervisor %r: restarting child %r failed (%s); %s",
                    self.spec.name,
                    child.id,
                    _reason_text(cause),
                    "will try again" if retrying else _NOT_RESTARTED,
                    extra={"otp_event": "restart_failed", "otp_supervisor": self.ref},
                )
                self.node._emit("restart_failed", supervisor=self.ref, reason=cause)
                if not retrying:
                    self._give_up(cause)
                self.ref._deliver_control(_TryAgain(child))
                return
            if ref is None:
                continue  # it ignored the restart: kept as a spec, not running (OTP)
            child.restarts += 1
            self.node._emit("restarted", actor=child.ref, supervisor=self.ref, detail=child.id)
            logger.info(
                "supervisor %r restarted child %r as %r",
                self.spec.name,
                child.id,
                child.ref,
                extra={
                    "otp_event": "child_restarted",
                    "otp_supervisor": self.ref,
                    "otp_actor": child.ref,
                },
            )

    # -------------------------------------------------------------- the dynamic API

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if isinstance(request, _Call):  # the wire form, from a remote node
            request = request.operation() or request
        try:
            match request:
                case WhichChildren():
                    return self.children.info()
                case CountChildren():
                    return self.children.count()
                case StartChild(spec):
                    return await self._start_child(spec)
                case TerminateChild(target):
                    return await self._terminate_child(target)
                case RestartChild(child_id):
                    return await self._restart_child(child_id)
                case DeleteChild(child_id):
                    return self._delete_child(child_id)
                case _:
                    raise NotImplementedError(
                        f"supervisor {self.spec.name!r} got an unknown call {request!r}"
                    )
        except (OTPError, OverflowError, ValueError) as exc:
            return _Failed(exc)
        except _Aborted:
            return NOREPLY  # stopping: the caller gets ActorExited when this exits

    async def _start_child(self, spec: ChildSpec) -> ActorRef | None:
        check_auto_shutdown(self.spec.auto_shutdown, self.spec.name, [spec])
        if self.spec.dynamic:
            limit = self.spec.max_children
            if limit is not None and len(self.children) >= limit:
                raise MaxChildren(self.spec.name, limit)
        else:
            existing = self.children.by_id.get(spec.id)
            if existing is not None:
                if existing.ref is not None:
                    raise AlreadyStarted(spec.id, self.spec.name, existing.ref)
                raise AlreadyPresent(spec.id, self.spec.name)
        child = self.children.add(spec)
        try:
            ref = await self._start(child)
        except BaseException:
            self.children.remove(child)
            raise
        if ref is None and (spec.restart is Restart.TEMPORARY or self.spec.dynamic):
            self.children.remove(child)  # OTP keeps no spec of an ignored temporary child
        return ref

    async def _terminate_child(self, target: str | Ref) -> None:
        child = self._lookup(target)
        await self._stop(child)
        child.restarting = False
        if child.spec.restart is Restart.TEMPORARY or self.spec.dynamic:
            self.children.remove(child)

    async def _restart_child(self, child_id: str) -> ActorRef | None:
        child = self._lookup(child_id)
        if child.ref is not None:
            raise ChildRunning(child.id, self.spec.name)
        if child.restarting:
            # OTP answers {error, restarting}; the pending retry goes on as planned.
            raise Restarting(child.id, self.spec.name)
        return await self._start(child)

    def _delete_child(self, child_id: str) -> None:
        child = self._lookup(child_id)
        if child.ref is not None:
            raise ChildRunning(child.id, self.spec.name)
        if child.restarting:
            # Deleting would drop the retry, and with it the give-up and escalation.
            raise Restarting(child.id, self.spec.name)
        self.children.remove(child)

    def _lookup(self, target: str | Ref) -> Child:
        return self.children.lookup(target, self.spec.name)


def _reason_text(reason: Any) -> str:
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return repr(reason)


async def start_top(node: Node, spec: ChildSpec) -> ActorRef:
    """Start ``spec`` at the top of ``node`` (``node.start``)."""
    if isinstance(spec, WorkerSpec):
        return await node._start_top(
            spec.cls,
            spec.args,
            spec.name,
            spec.mailbox,
            spec.shutdown,
            start_timeout=spec.start_timeout,
        )
    if isinstance(spec, SupervisorSpec):
        return await node._start_top(
            _Supervisor,
            (spec,),
            spec.name,
            None,
            spec.shutdown,
            escalate=True,
            ref_class=PoolRef if spec.dispatch else SupervisorRef,
            start_timeout=spec.start_timeout,
        )
    raise TypeError(
        f"node.start needs an otp.worker(...) or otp.supervisor(...) spec, not {spec!r}"
    )
