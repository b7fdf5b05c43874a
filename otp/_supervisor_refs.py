"""Handles on running supervisors: :class:`SupervisorRef` (OTP's supervisor API) and
:class:`PoolRef` (a worker pool that dispatches calls and casts to one worker).

The operations go to the supervisor process as calls (otp/_supervisor_ops.py); reads of
its state that must not wait behind a hanging child start (``which_children`` after
:data:`BUSY_GRACE`) and a pool's choice of worker read the server directly (same node,
same event loop, between two awaits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast, overload

import anyio
import attrs

from ._actor import ActorRef
from ._exceptions import NotFound
from ._hashring import pick
from ._specs import CONSISTENT_HASH, LEAST_BUSY, ChildSpec, PoolSpec, SupervisorSpec, WorkerSpec
from ._supervisor_ops import (
    ChildCount,
    ChildInfo,
    CountChildren,
    DeleteChild,
    Operation,
    RestartChild,
    StartChild,
    SupervisorOp,
    TerminateChild,
    WhichChildren,
    _Call,
    supervisor_op,
)

if TYPE_CHECKING:
    from ._call import Call, R
    from ._requests import RequestId
    from ._supervisor import _Supervisor

__all__ = ["BUSY_GRACE", "PoolRef", "SupervisorRef"]

#: How long which_children/count_children wait for a child start in progress before they
#: answer from the supervisor's state instead (a restart whose init hangs, say).
BUSY_GRACE: float = 1.0


@attrs.define(eq=False, init=False, repr=False)
class SupervisorRef(ActorRef):
    """A handle on a running supervisor (an :class:`ActorRef` with OTP's supervisor API).

    The methods wait as long as the supervisor needs (``timeout=None``), as OTP's do.
    """

    # Killing a supervisor (kill(), exit(ref, "kill"), a shutdown past its time) ends its
    # subtree from inside the supervisor process: see _Supervisor._guard.

    def _supervisor(self) -> _Supervisor:
        # Invariant: a SupervisorRef (or PoolRef) is only ever made for a _Supervisor
        # (the ref_class of otp/_supervisor.py's starts), so no isinstance check is needed.
        return cast("_Supervisor", self._behaviour())

    def _request_stop(self, reason: Any) -> None:
        super()._request_stop(reason)
        self._supervisor().abort_start()

    async def _read(self, operation: WhichChildren | CountChildren) -> Any:
        """A read-only operation (which_children/count_children): in mailbox order, unless
        the supervisor has been awaiting one child's start for :data:`BUSY_GRACE` seconds
        (a restart whose init hangs, say); then it is answered from the supervisor's state
        instead of waiting for that start (the queued request's late answer is dropped)."""
        outcome: tuple[bool, Any] | None = None
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._give_up_when_stuck, scope)
                try:
                    outcome = (True, await self._op(operation))
                except Exception as exc:
                    outcome = (False, exc)
                task_group.cancel_scope.cancel()
        if outcome is not None:
            ok, value = outcome
            if not ok:
                raise value
            return value
        server = self._supervisor()
        match operation:
            case WhichChildren():
                return server.children.info()
            case CountChildren():
                return server.children.count()

    async def _give_up_when_stuck(self, scope: anyio.CancelScope) -> None:
        while True:
            busy = self._busy_starting()
            wait = BUSY_GRACE
            if busy is not None:
                wait = busy.start_since + BUSY_GRACE - anyio.current_time()
                if wait <= 0:
                    scope.cancel()
                    return
            await anyio.sleep(wait)

    def _busy_starting(self) -> _Supervisor | None:
        server = self._supervisor()
        if self.alive and server.start_scope is not None and not server.initialising:
            return server
        return None

    async def _op(self, operation: Operation) -> Any:
        return await supervisor_op(self, operation)

    async def which_children(self) -> list[ChildInfo]:
        """Every child in start order (``supervisor:which_children/1``).

        If the supervisor has been awaiting a child's start for :data:`BUSY_GRACE` (1 s),
        it answers from its state (that child shows ``ref=None, restarting=True``) instead
        of waiting for the start, as OTP's would."""
        return await self._read(WhichChildren())  # type: ignore[no-any-return]

    async def count_children(self) -> ChildCount:
        """Counts of specs, running children, supervisors and workers."""
        return await self._read(CountChildren())  # type: ignore[no-any-return]

    @overload
    async def start_child(self, spec: PoolSpec) -> PoolRef | None: ...
    @overload
    async def start_child(self, spec: SupervisorSpec) -> SupervisorRef | None: ...
    @overload
    async def start_child(self, spec: WorkerSpec) -> ActorRef | None: ...

    async def start_child(self, spec: ChildSpec) -> ActorRef | None:
        """Add ``spec`` at the end and start it; returns its ref once ``init`` is done, or
        ``None`` if ``init`` returned :data:`otp.IGNORE` (OTP's ``{ok, undefined}``: the
        spec is kept, unless the child is ``TEMPORARY`` or the supervisor dynamic).

        Raises :class:`otp.AlreadyStarted` / :class:`otp.AlreadyPresent` if the id exists,
        :class:`otp.StartFailed` if its ``init`` raises or outlasts its ``start_timeout``
        (nothing is added then), :class:`otp.MaxChildren` when a dynamic supervisor is
        full, and ``ValueError`` for a significant child under ``auto_shutdown=NEVER``.
        """
        if not isinstance(spec, (WorkerSpec, SupervisorSpec)):
            raise TypeError(
                f"start_child needs an otp.worker(...) or otp.supervisor(...) spec, not {spec!r}"
            )
        return await self._op(StartChild(spec))  # type: ignore[no-any-return]

    async def terminate_child(self, child: str | ActorRef) -> None:
        """Stop a child (by id or ref) with its shutdown; its spec stays unless it is
        ``TEMPORARY`` or the supervisor is dynamic. Raises :class:`otp.NotFound`. As
        :meth:`stop`, it returns once the child's :class:`otp.Global` name is free in the
        cluster too."""
        await self._op(TerminateChild(child))
        await self._node._exits_settled(None)

    async def restart_child(self, child_id: str) -> ActorRef | None:
        """Start a stopped child again from its spec; ``None`` if its ``init`` returned
        :data:`otp.IGNORE`. Raises :class:`otp.ChildRunning` if it runs,
        :class:`otp.Restarting` while its supervisor retries a failed restart of it,
        :class:`otp.NotFound` if there is no such id."""
        return await self._op(RestartChild(child_id))  # type: ignore[no-any-return]

    async def delete_child(self, child_id: str) -> None:
        """Remove a stopped child's spec. Raises :class:`otp.ChildRunning` if it runs,
        :class:`otp.Restarting` while its supervisor retries a failed restart of it,
        :class:`otp.NotFound` if there is no such id."""
        await self._op(DeleteChild(child_id))


@attrs.define(eq=False, init=False, repr=False)
class PoolRef(SupervisorRef):
    """A worker pool (:func:`worker_pool`): ``call``/``cast``/``send`` go to one worker.

    Dispatch is round-robin, least-busy (the shortest mailbox, counting the message a
    worker is handling; among equals the first in pool order) or by consistent hash, over
    the workers alive right now; a crashed worker is skipped until its supervisor restarts
    it. Supervisor operations are under :meth:`which_children` and friends, as usual.
    """

    def workers(self) -> list[ActorRef]:
        """The workers alive now, in pool order."""
        server = self._supervisor()
        if not hasattr(server, "children"):
            return []  # its init has not begun
        return [c.ref for c in server.children if c.ref is not None and c.ref.alive]

    # The internal interface (not for users): _pick, the worker a message goes to now
    # (otp/redis serving a remote call or cast to a pool).

    def _pick(self, message: Any = None) -> ActorRef:
        server = self._supervisor()
        spec = server.spec
        if spec.dispatch == CONSISTENT_HASH and spec.key is not None:
            # The ring is over child ids, which survive restarts: a worker keeps its keys.
            live = {c.id: c.ref for c in server.children if c.ref is not None and c.ref.alive}
            found = pick(tuple(c.id for c in server.children), spec.key(message), live.get)
            if found is None:
                raise NotFound("a live worker", f"pool {self.name!r} (all workers are restarting)")
            return found  # type: ignore[no-any-return]
        workers = self.workers()
        if not workers:
            raise NotFound("a live worker", f"pool {self.name!r} (all workers are restarting)")
        if server.spec.dispatch == LEAST_BUSY:
            # min keeps the first of equals: pool order breaks ties (docs/supervision.md).
            return min(workers, key=ActorRef._load)
        index = server.next_worker % len(workers)
        server.next_worker = index + 1
        return workers[index]

    @overload
    async def call(self, request: Call[R], timeout: float | None = 5.0) -> R: ...
    @overload
    async def call(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object], timeout: float | None = 5.0
    ) -> object: ...
    @overload
    async def call(self, request: Any, timeout: float | None = 5.0) -> Any: ...

    async def call(self, request: Any, timeout: float | None = 5.0) -> Any:
        """Call one worker of the pool (see :meth:`ActorRef.call`)."""
        if isinstance(request, (SupervisorOp, _Call)):  # supervisor operations: to itself
            return await super().call(request, timeout)
        return await self._pick(request).call(request, timeout)

    @overload
    def send_request(self, request: Call[R]) -> RequestId[R]: ...
    @overload
    def send_request(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object]
    ) -> RequestId[object]: ...
    @overload
    def send_request(self, request: Any) -> RequestId[Any]: ...

    def send_request(self, request: Any) -> RequestId[Any]:
        """Send a request to one worker of the pool (see :meth:`ActorRef.send_request`)."""
        if isinstance(request, (SupervisorOp, _Call)):  # supervisor operations: to itself
            return super().send_request(request)
        return self._pick(request).send_request(request)

    async def cast(self, message: Any, *, priority: int = 0) -> None:
        """Cast to one worker of the pool (see :meth:`ActorRef.cast`)."""
        await self._pick(message).cast(message, priority=priority)

    def cast_nowait(self, message: Any, *, priority: int = 0) -> None:
        self._pick(message).cast_nowait(message, priority=priority)

    async def send(self, message: Any, *, priority: int = 0) -> None:
        await self._pick(message).send(message, priority=priority)

    def send_nowait(self, message: Any, *, priority: int = 0) -> None:
        self._pick(message).send_nowait(message, priority=priority)
