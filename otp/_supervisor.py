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
The specs are in otp/_specs.py, the operations it serves in otp/_supervisor_ops.py, the
refs in otp/_supervisor_refs.py.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import attrs
from anyio.abc import TaskStatus

from ._actor import (
    BRUTAL_KILL,
    ActorRef,
    Down,
    Exit,
    MonitorRef,
    Shutdown,
    is_normal_exit,
    start_actor,
)
from ._exceptions import (
    AlreadyPresent,
    AlreadyStarted,
    ChildRunning,
    Ignored,
    MaxChildren,
    NameTaken,
    NotFound,
    OTPError,
    Restarting,
    StartFailed,
    SupervisorGaveUp,
)
from ._gen_server import NOREPLY, GenServer
from ._ref import Ref
from ._specs import (
    AutoShutdown,
    Backoff,
    ChildSpec,
    Restart,
    Strategy,
    SupervisorSpec,
    WorkerSpec,
    check_auto_shutdown,
)
from ._supervisor_ops import (
    ChildCount,
    ChildInfo,
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

if TYPE_CHECKING:
    from ._backends import Caller
    from ._node import Node

__all__ = ["start_top"]

logger = logging.getLogger("otp")

#: The clock restart intensity and backoff are measured with (tests substitute it).
_clock = time.monotonic

#: How an exit past the restart intensity is reported (the give-up report follows).
_NOT_RESTARTED = "not restarted: the restart intensity is reached"


@attrs.define(eq=False)
class _Child:
    """One child of a supervisor: its spec and, while it runs, its ref and monitor."""

    spec: ChildSpec
    id: str
    ref: ActorRef | None = None
    monitor: MonitorRef | None = None
    #: A restart is pending: a failed start being retried, or a backoff delay.
    restarting: bool = False
    restarts: int = 0
    started_at: float = 0.0
    #: Consecutive restarts under a backoff (see :meth:`backoff_delay`).
    attempt: int = 0

    def backoff_delay(self, backoff: Backoff) -> float:
        """The delay before restarting this child, which has just exited: the next step of
        ``backoff``, or its first step again if the child ran ``reset_after`` seconds."""
        if _clock() - self.started_at >= backoff.reset_after:
            self.attempt = 0
        self.attempt += 1
        return backoff.delay(self.attempt)


class _Children:
    """A supervisor's children (OTP's ``#state.children``): in start order, by id, and the
    running ones by ref.

    Invariant: ``by_ref[r].ref is r`` for every running child this supervisor watches; a
    child it stopped itself has left ``by_ref`` first, so that child's ``Down`` is ignored.
    """

    __slots__ = ("_order", "by_id", "by_ref", "dynamic", "serial", "stopping")

    def __init__(self, dynamic: bool) -> None:
        # Start order: dicts keep insertion order and delete in O(1).
        self._order: dict[_Child, None] = {}
        self.by_id: dict[str, _Child] = {}
        self.by_ref: dict[Ref, _Child] = {}
        # Children asked to stop and not yet gone (no longer in by_ref).
        self.stopping: set[ActorRef] = set()
        # Dynamic supervisors name their children "<spec id>#<serial>".
        self.dynamic = dynamic
        self.serial = 0

    def __iter__(self) -> Iterator[_Child]:
        return iter(self._order)

    def __reversed__(self) -> Iterator[_Child]:
        return reversed(self._order)

    def __contains__(self, child: object) -> bool:
        return child in self._order

    def __len__(self) -> int:
        return len(self._order)

    def add(self, spec: ChildSpec) -> _Child:
        """A new child for ``spec``, last in start order (not started)."""
        child_id = spec.id
        if self.dynamic:
            self.serial += 1
            child_id = f"{spec.id}#{self.serial}"
        child = _Child(spec, child_id)
        self._order[child] = None
        self.by_id[child_id] = child
        return child

    def remove(self, child: _Child) -> None:
        self._order.pop(child, None)
        if self.by_id.get(child.id) is child:
            del self.by_id[child.id]

    def lookup(self, target: str | Ref, where: str) -> _Child:
        """The child with id ``target``, or running as ref ``target``; raises
        :class:`otp.NotFound` naming ``where``."""
        found = self.by_id.get(target) if isinstance(target, str) else self.by_ref.get(target)
        if found is None:
            raise NotFound(f"child {target!r}", f"supervisor {where!r}")
        return found

    def info(self) -> list[ChildInfo]:
        """``which_children``: one row a child, in start order."""
        return [ChildInfo(c.id, c.ref, c.spec.kind, c.spec.restart, c.restarting) for c in self]

    def count(self) -> ChildCount:
        """``count_children``."""
        sups = sum(1 for c in self if c.spec.kind == "supervisor")
        return ChildCount(
            specs=len(self), active=len(self.by_ref), supervisors=sups, workers=len(self) - sups
        )

    def alive_refs(self) -> list[ActorRef]:
        """Every child still alive, running ones in reverse start order, then those being
        stopped (what a killed supervisor must end)."""
        running = [c.ref for c in reversed(self) if c.ref is not None]
        return [ref for ref in running + list(self.stopping) if ref.alive]


class _Intensity:
    """Restart intensity (OTP's ``MaxR`` restarts in ``MaxT`` seconds): the times of the
    restarts of the last ``within`` seconds, measured on ``_clock``."""

    __slots__ = ("_times", "max_restarts", "within")

    def __init__(self, max_restarts: int, within: float) -> None:
        self.max_restarts = max_restarts
        self.within = within
        self._times: deque[float] = deque()

    def add(self) -> bool:
        """Count a restart now; ``False`` when that makes more than ``max_restarts`` within
        ``within`` seconds (the supervisor gives up)."""
        now = _clock()
        times = self._times
        times.append(now)
        horizon = now - self.within
        while times and times[0] < horizon:
            times.popleft()
        return len(times) <= self.max_restarts


@attrs.frozen
class _TryAgain:
    """Retry the restart of ``child`` (OTP's ``try_again_restart``): its strategy's group
    is stopped and started again, as after the exit that began it."""

    child: _Child


class _Aborted(Exception):
    """A child start given up because this supervisor was asked to stop meanwhile."""


async def _stop_at_once(pending: list[tuple[ActorRef, Shutdown]]) -> None:
    """Stop the actors of ``pending``, each with its shutdown, all at the same time (a
    dynamic supervisor's shutdown). Each is asked first (killed for :data:`BRUTAL_KILL`),
    then they are collected: no task per child, so this scales to a hundred thousand."""
    for ref, shutdown in pending:
        if shutdown is BRUTAL_KILL:
            ref.kill()
        else:
            ref._request_stop("shutdown")
    started = time.monotonic()
    for ref, shutdown in pending:
        if not ref.alive:
            continue  # gone already (its exit runs synchronously, all at once)
        if shutdown is BRUTAL_KILL:
            await ref._join_killed()
            continue
        if shutdown is None:
            await ref.join()
            continue
        assert isinstance(shutdown, (int, float))
        remaining = shutdown - (time.monotonic() - started)
        if remaining > 0:
            with anyio.move_on_after(remaining):
                await ref.join()
        if ref.alive:
            ref.kill()
            await ref._join_killed()


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
        self.children = _Children(spec.dynamic)
        self.intensity = _Intensity(spec.max_restarts, spec.within)
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

    async def _start(self, child: _Child) -> ActorRef | None:
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

    def _forget(self, child: _Child) -> ActorRef | None:
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

    async def _stop(self, child: _Child) -> None:
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
        await _stop_at_once(pending)
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

    async def _child_exited(self, child: _Child, reason: Any) -> None:
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
        restarting = self.intensity.add()
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
            delay = child.backoff_delay(backoff)
            if delay > 0:
                child.restarting = True
                self.send_after(delay, _TryAgain(child))
                return
        await self._restart(child, group)

    def _auto_shutdown(self, child: _Child) -> None:
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

    async def _stop_group(self, child: _Child) -> list[_Child]:
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

    async def _restart(self, trigger: _Child, group: list[_Child]) -> None:
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
                retrying = self.intensity.add()
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

    def _lookup(self, target: str | Ref) -> _Child:
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
