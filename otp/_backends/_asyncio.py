"""asyncio's fast waits: the reply promise is the :class:`asyncio.Future` itself."""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from typing import Any

from . import Backend, Budget, Caller
from ._deadlines import DeadlineQueue

__all__ = ["BACKEND"]

_get_loop = asyncio.get_running_loop
_future_done = asyncio.Future.done
_sleep = asyncio.sleep


class LoopDeadlines(DeadlineQueue):
    """The call timeouts of one event loop: a :class:`DeadlineQueue` on the loop's clock and
    one loop timer, armed for its earliest deadline."""

    __slots__ = ("handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # The loop's own clock; asyncio's default loops read time.monotonic, which is C
        # (loop.time() would add a Python frame to every timed call).
        base = type(loop).time is asyncio.BaseEventLoop.time
        super().__init__(time.monotonic if base else loop.time)
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = None

    def rearm(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle = self.loop.call_at(self.when, self.fire)

    def fire(self) -> None:
        self.handle = None
        earliest = self.expire(self.clock())
        if earliest < math.inf:
            self.handle = self.loop.call_at(earliest, self.fire)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopDeadlines] = (
    weakref.WeakKeyDictionary()
)
_last: list[Any] = [None, None]  # the most recent (loop, LoopDeadlines): one lookup saved


def loop_deadlines(loop: asyncio.AbstractEventLoop) -> LoopDeadlines:
    if _last[0] is loop:
        return _last[1]  # type: ignore[no-any-return]
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = LoopDeadlines(loop)
    _last[0], _last[1] = loop, found
    return found


class AsyncioPromise(asyncio.Future[Any], Caller):
    """The promise is the future itself: one object per call.

    Invariant: whoever completes it first wins; later resolve/fail calls report False."""

    # No __init__: asyncio.Future's own (C) takes the running loop when given none; a
    # Python one would cost 3,000 instructions a call.
    __slots__ = ()

    def resolve(self, value: object) -> bool:
        if _future_done(self):
            return False
        self.set_result(value)
        return True

    def fail(self, exc: BaseException) -> bool:
        if _future_done(self):
            return False
        self.set_exception(exc)
        # A waiter that already left is not an error worth asyncio's
        # "exception was never retrieved" report.
        self._log_traceback = False
        return True

    async def wait(self, timeout: float | None, deadlines: Any = None) -> Any:
        if timeout is not None:
            (deadlines or loop_deadlines(self.get_loop())).add(timeout, self)
        return await self


def _wake_parked(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class AsyncioParker:
    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: asyncio.Future[bool] | None = None

    def wake(self) -> None:
        fut = self.waiter
        if fut is not None:
            self.waiter = None
            if not fut.done():
                fut.set_result(True)

    def sleep(self) -> asyncio.Future[bool]:
        # A killed sleeper leaves its cancelled future here: wake() skips a done one.
        fut = self.waiter = _get_loop().create_future()
        return fut

    async def park(self, timeout: float | None) -> bool:
        loop = _get_loop()
        fut = self.waiter = loop.create_future()
        if timeout is None:
            try:
                return bool(await fut)
            finally:
                self.waiter = None
        handle = loop.call_later(timeout, _wake_parked, fut, False)
        try:
            return bool(await fut)
        finally:
            self.waiter = None
            handle.cancel()


_budget = Budget()


class AsyncioBackend:
    name = "asyncio"
    promise = AsyncioPromise
    parker = AsyncioParker
    current_task = staticmethod(asyncio.current_task)

    @staticmethod
    def current_coroutine() -> Any:
        task = asyncio.current_task()
        assert task is not None
        return task.get_coro()

    @staticmethod
    def deadlines(task_group: Any) -> LoopDeadlines:
        return loop_deadlines(_get_loop())  # per loop: several nodes of a loop share it

    @staticmethod
    async def checkpoint() -> None:
        _budget.renew()
        await _sleep(0)

    # No cancel check is needed between real yields: anyio delivers a cancellation to an
    # asyncio task only while it is suspended (so it is raised on resumption) or from a
    # loop callback (which runs at the next real yield, within one slice). So the check is
    # the budget's own method, without a call around it (one on every `await cast`).
    budget_spent = _budget.spend
    slice_spent = _budget.slice_spent


BACKEND: Backend = AsyncioBackend()
