"""trio's fast waits: ``wait_task_rescheduled`` and one deadline keeper task per node."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import outcome
import trio
from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled

from . import Backend, Budget, Caller
from ._deadlines import DeadlineQueue, Expired

__all__ = ["BACKEND"]

_Value = outcome.Value
_Error = outcome.Error
_SUCCEEDED = Abort.SUCCEEDED
_current_time = trio.current_time
_CancelScope = trio.CancelScope
_checkpoint = trio.lowlevel.checkpoint


class TrioDeadlines(DeadlineQueue):
    """The call timeouts of one node, without a cancel scope per call (entering and leaving
    a deadline scope is about a third of a timed call on trio): a :class:`DeadlineQueue`
    and one task in the node's task group that sleeps until its earliest deadline."""

    __slots__ = ("scope", "started", "task_group")

    def __init__(self, task_group: Any) -> None:
        super().__init__(_current_time)
        self.task_group = task_group
        self.scope: Any = None
        self.started = False

    def rearm(self) -> None:
        if not self.started:
            self.started = True
            self.task_group.start_soon(self.keep, name="otp call deadlines")
        elif self.scope is not None:
            self.scope.deadline = self.when

    async def keep(self) -> None:
        while True:
            with _CancelScope(deadline=self.when) as scope:
                self.scope = scope
                await trio.sleep_forever()
            self.scope = None
            self.expire(_current_time())


class TrioPromise(Caller):
    # Invariant: once ``_done`` is set nothing else is delivered; ``_task`` is the waiting
    # task while it sleeps, ``_outcome`` a value delivered before it slept.
    __slots__ = ("_done", "_outcome", "_task")

    def __init__(self) -> None:
        self._done = False
        self._task: Any = None
        self._outcome: Any = None

    def done(self) -> bool:
        return self._done

    def _deliver(self, result: Any) -> bool:
        if self._done:
            return False
        self._done = True
        task = self._task
        if task is not None:
            self._task = None
            reschedule(task, result)
        else:
            self._outcome = result
        return True

    def resolve(self, value: object) -> bool:
        return self._deliver(_Value(value))

    def fail(self, exc: BaseException) -> bool:
        return self._deliver(_Error(exc))

    def _abort(self, raise_cancel: Any) -> Abort:
        self._task = None
        self._done = True
        return _SUCCEEDED

    def __await__(self) -> Generator[Any, Any, Any]:
        return self.wait(None).__await__()

    async def wait(self, timeout: float | None, deadlines: Any = None) -> Any:
        if self._outcome is not None:
            await _checkpoint()
            return self._outcome.unwrap()
        self._task = current_task()
        if timeout is None:
            return await wait_task_rescheduled(self._abort)
        if deadlines is not None:
            deadlines.add(timeout, self)  # fails us with Expired when due
            return await wait_task_rescheduled(self._abort)
        with _CancelScope(deadline=_current_time() + timeout):
            return await wait_task_rescheduled(self._abort)
        raise Expired


class TrioParker:
    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: Any = None

    def wake(self) -> None:
        task = self.waiter
        if task is not None:
            self.waiter = None
            reschedule(task)

    def _abort(self, raise_cancel: Any) -> Abort:
        self.waiter = None
        return _SUCCEEDED

    def sleep(self) -> Any:
        self.waiter = current_task()
        # Awaited by the caller; _abort clears waiter if it is cancelled.
        return wait_task_rescheduled(self._abort)  # noqa: ASYNC105

    async def park(self, timeout: float | None) -> bool:
        self.waiter = current_task()
        if timeout is None:
            await wait_task_rescheduled(self._abort)
            return True
        with _CancelScope(deadline=_current_time() + timeout):
            await wait_task_rescheduled(self._abort)
            return True
        return False


_budget = Budget()


class TrioBackend:
    name = "trio"
    promise = TrioPromise
    parker = TrioParker
    deadlines = TrioDeadlines
    current_task = staticmethod(current_task)

    @staticmethod
    def current_coroutine() -> Any:
        return current_task().coro

    @staticmethod
    async def checkpoint() -> None:
        _budget.renew()
        await _checkpoint()

    @staticmethod
    def budget_spent() -> bool:
        # trio raises Cancelled only at checkpoints, so look on every call, exactly as
        # trio.lowlevel.checkpoint_if_cancelled does (the same private attribute; the
        # public current_effective_deadline() walks every enclosing scope: 10x dearer).
        # A deadline is noticed when the run loop next runs, within one slice.
        if current_task()._cancel_status.effectively_cancelled:
            return True
        return _budget.spend()

    @staticmethod
    def slice_spent() -> bool:
        # A kill is a cancellation: noticed here as in budget_spent, not a slice later.
        if current_task()._cancel_status.effectively_cancelled:
            return True
        return _budget.slice_spent()


BACKEND: Backend = TrioBackend()
