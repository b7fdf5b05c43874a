"""The one module that touches asyncio and trio directly.

anyio's memory streams and events always yield and cost several scheduler passes per
round-trip; the mailbox wait and the call reply are the hot path, so they are built here on
each backend's cheapest primitive (an :class:`asyncio.Future`, or trio's
``wait_task_rescheduled``). Both primitives honour anyio cancel scopes: anyio delivers
cancellation through the backend's own mechanism, which these waits obey.

Everything here is single-threaded: callers must run in the event loop thread.
"""

from __future__ import annotations

import math
import time
import weakref
from collections import deque
from typing import Any, Protocol

try:  # trio depends on sniffio; without it only asyncio can be running
    import sniffio
except ImportError:  # pragma: no cover - depends on the environment
    sniffio = None  # type: ignore[assignment]

__all__ = ["Backend", "Expired", "Parker", "Promise", "backend"]


class Expired(Exception):
    """Raised by :meth:`Promise.wait` when its timeout passes; callers translate it."""


class Promise(Protocol):
    """A one-shot reply slot with a single waiter (the ``From`` of an OTP call)."""

    def done(self) -> bool:
        """``True`` once a value or error was delivered, or the waiter left."""
        ...

    def resolve(self, value: object) -> bool:
        """Deliver ``value``; return ``False`` if the waiter already left or got a value."""
        ...

    def fail(self, exc: BaseException) -> bool:
        """Deliver ``exc`` to be raised in the waiter; ``False`` if too late."""
        ...

    async def wait(self, timeout: float | None, deadlines: Any = None) -> Any:
        """Wait for the value; after ``timeout`` seconds raise :class:`Expired`.

        ``deadlines`` (the node's, from :meth:`Backend.deadlines`) lets the timeout ride on
        one shared timer instead of a cancel scope per call."""
        ...


class Parker(Protocol):
    """Lets one task sleep until another wakes it (the mailbox's consumer wait).

    ``waiter`` is not ``None`` exactly while a task sleeps in :meth:`park`, so a producer
    can skip :meth:`wake` (a call) while the consumer is busy.
    """

    waiter: Any

    def wake(self) -> None: ...

    async def park(self, timeout: float | None) -> bool:
        """Sleep until :meth:`wake`; return ``False`` if ``timeout`` passed first."""
        ...


class Backend(Protocol):
    name: str

    def promise(self) -> Promise: ...

    def parker(self) -> Parker: ...

    def deadlines(self, task_group: Any) -> Any:
        """A node's shared call-timeout keeper (trio), or ``None`` where none is needed."""
        ...

    def current_task(self) -> object: ...

    async def checkpoint(self) -> None:
        """A full checkpoint: a schedule point and a cancel point; it renews the budget."""
        ...

    def budget_spent(self) -> bool:
        """Whether an amortised checkpoint must be a real one now (see :class:`Budget`)."""
        ...


#: A one-way send (``await cast``/``send``/``publish``) that finds room yields to the
#: scheduler only once this many of them ran since the last checkpoint, or once the slice
#: below has passed, as the BEAM does with reductions. Other tasks therefore wait at most
#: about one slice behind a producer in a tight loop (tests/test_fairness.py measures it).
BUDGET_OPS = 64
BUDGET_SLICE = 0.001  # seconds


class Budget:
    """The scheduler budget of one event loop's thread: operations and time since the last
    full checkpoint. Shared by every task of the loop (a tight loop in any task spends it),
    so no producer can hold the loop for more than about one slice."""

    __slots__ = ("ops", "since")

    def __init__(self) -> None:
        self.ops = 0
        self.since = time.perf_counter()

    def renew(self) -> None:
        self.ops = 0
        self.since = time.perf_counter()

    def spend(self) -> bool:
        """Count one operation; ``True`` when the budget is used up (the caller yields)."""
        ops = self.ops + 1
        if ops >= BUDGET_OPS or time.perf_counter() - self.since >= BUDGET_SLICE:
            return True
        self.ops = ops
        return False


# --------------------------------------------------------------------------- asyncio


def _asyncio_backend() -> Backend:
    import asyncio

    get_loop = asyncio.get_running_loop
    current = asyncio.current_task

    future_done = asyncio.Future.done

    class Deadlines:
        """Call timeouts for one event loop, without a timer per call.

        Calls with the same timeout expire in the order they started, so each timeout
        value gets a FIFO of ``(deadline, future)``; one loop timer serves them all, set
        for the earliest deadline that is still pending. Finished calls are dropped from
        the front lazily, so a FIFO holds roughly the calls in flight.
        """

        __slots__ = ("handle", "handle_when", "loop", "queues")

        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            self.loop = loop
            self.queues: dict[float, deque[tuple[float, asyncio.Future[Any]]]] = {}
            self.handle: asyncio.TimerHandle | None = None
            self.handle_when = math.inf

        def add(self, timeout: float, fut: asyncio.Future[Any]) -> None:
            when = self.loop.time() + timeout
            queue = self.queues.get(timeout)
            if queue is None:
                queue = self.queues[timeout] = deque()
            else:
                while queue and future_done(queue[0][1]):
                    queue.popleft()
            queue.append((when, fut))
            if when < self.handle_when:
                if self.handle is not None:
                    self.handle.cancel()
                self.handle = self.loop.call_at(when, self.fire)
                self.handle_when = when

        def fire(self) -> None:
            self.handle = None
            self.handle_when = math.inf
            now = self.loop.time()
            earliest = math.inf
            for timeout, queue in list(self.queues.items()):
                while queue:
                    when, fut = queue[0]
                    if future_done(fut):
                        queue.popleft()
                    elif when <= now:
                        queue.popleft()
                        fut.set_exception(Expired())
                        fut._log_traceback = False
                    else:
                        earliest = min(earliest, when)
                        break
                if not queue:
                    del self.queues[timeout]
            if earliest < math.inf:
                self.handle = self.loop.call_at(earliest, self.fire)
                self.handle_when = earliest

    deadlines_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
        weakref.WeakKeyDictionary()
    )
    last: list[Any] = [None, None]  # the most recent (loop, Deadlines): one lookup saved

    def deadlines(loop: asyncio.AbstractEventLoop) -> Deadlines:
        if last[0] is loop:
            return last[1]  # type: ignore[no-any-return]
        found = deadlines_by_loop.get(loop)
        if found is None:
            found = deadlines_by_loop[loop] = Deadlines(loop)
        last[0], last[1] = loop, found
        return found

    class AsyncioPromise(asyncio.Future):  # type: ignore[type-arg]
        # The promise is the future itself: one object per call. Invariant: whoever
        # completes it first wins; later resolve/fail calls report False.
        __slots__ = ()

        def __init__(self) -> None:
            super().__init__(loop=get_loop())

        def resolve(self, value: object) -> bool:
            if future_done(self):
                return False
            self.set_result(value)
            return True

        def fail(self, exc: BaseException) -> bool:
            if future_done(self):
                return False
            self.set_exception(exc)
            # A waiter that already left is not an error worth asyncio's
            # "exception was never retrieved" report.
            self._log_traceback = False
            return True

        async def wait(self, timeout: float | None, node_deadlines: Any = None) -> Any:
            if timeout is not None:
                deadlines(self.get_loop()).add(timeout, self)
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

        async def park(self, timeout: float | None) -> bool:
            loop = get_loop()
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

    budget = Budget()
    sleep = asyncio.sleep

    async def checkpoint() -> None:
        budget.renew()
        await sleep(0)

    def budget_spent() -> bool:
        # No cancel check is needed between real yields: anyio delivers a cancellation to
        # an asyncio task only while it is suspended (so it is raised on resumption) or
        # from a loop callback (which runs at the next real yield, within one slice).
        return budget.spend()

    class AsyncioBackend:
        name = "asyncio"
        promise = AsyncioPromise
        parker = AsyncioParker

        @staticmethod
        def deadlines(task_group: Any) -> None:
            return None  # asyncio's per-loop Deadlines need no task

        current_task = staticmethod(current)

    AsyncioBackend.checkpoint = staticmethod(checkpoint)  # type: ignore[attr-defined]
    AsyncioBackend.budget_spent = staticmethod(budget_spent)  # type: ignore[attr-defined]
    return AsyncioBackend()  # type: ignore[return-value]


# --------------------------------------------------------------------------- trio


def _trio_backend() -> Backend:
    import outcome
    import trio
    from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled

    Value = outcome.Value
    Error = outcome.Error
    SUCCEEDED = Abort.SUCCEEDED
    current_time = trio.current_time
    CancelScope = trio.CancelScope

    class TrioDeadlines:
        """Call timeouts for one node, without a cancel scope per call (entering and
        leaving a deadline scope is about a third of a timed call on trio).

        As on asyncio: a FIFO of ``(deadline, promise)`` per timeout value, drained lazily
        from the front; one task in the node's task group sleeps until the earliest
        pending deadline and fails the promises that are due with :class:`Expired`.
        """

        __slots__ = ("queues", "scope", "started", "task_group", "when")

        def __init__(self, task_group: Any) -> None:
            self.task_group = task_group
            self.queues: dict[float, deque[tuple[float, TrioPromise]]] = {}
            self.when = math.inf
            self.scope: Any = None
            self.started = False

        def add(self, timeout: float, promise: TrioPromise) -> None:
            when = current_time() + timeout
            queue = self.queues.get(timeout)
            if queue is None:
                queue = self.queues[timeout] = deque()
            else:
                while queue and queue[0][1]._done:
                    queue.popleft()
            queue.append((when, promise))
            if when < self.when:
                self.when = when
                if not self.started:
                    self.started = True
                    self.task_group.start_soon(self.keep, name="otp call deadlines")
                elif self.scope is not None:
                    self.scope.deadline = when

        async def keep(self) -> None:
            while True:
                with CancelScope(deadline=self.when) as scope:
                    self.scope = scope
                    await trio.sleep_forever()
                self.scope = None
                self.fire()

        def fire(self) -> None:
            now = current_time()
            earliest = math.inf
            for timeout, queue in list(self.queues.items()):
                while queue:
                    when, promise = queue[0]
                    if promise._done:
                        queue.popleft()
                    elif when <= now:
                        queue.popleft()
                        promise.fail(Expired())
                    else:
                        earliest = min(earliest, when)
                        break
                if not queue:
                    del self.queues[timeout]
            self.when = earliest

    class TrioPromise:
        # Invariant: once ``_done`` is set nothing else is delivered; ``_task`` is the
        # waiting task while it sleeps, ``_outcome`` a value delivered before it slept.
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
            return self._deliver(Value(value))

        def fail(self, exc: BaseException) -> bool:
            return self._deliver(Error(exc))

        def _abort(self, raise_cancel: Any) -> Abort:
            self._task = None
            self._done = True
            return SUCCEEDED

        async def wait(self, timeout: float | None, deadlines: Any = None) -> Any:
            if self._outcome is not None:
                await trio.lowlevel.checkpoint()
                return self._outcome.unwrap()
            self._task = current_task()
            if timeout is None:
                return await wait_task_rescheduled(self._abort)
            if deadlines is not None:
                deadlines.add(timeout, self)  # fails us with Expired when due
                return await wait_task_rescheduled(self._abort)
            with CancelScope(deadline=current_time() + timeout):
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
            return SUCCEEDED

        async def park(self, timeout: float | None) -> bool:
            self.waiter = current_task()
            if timeout is None:
                await wait_task_rescheduled(self._abort)
                return True
            with CancelScope(deadline=current_time() + timeout):
                await wait_task_rescheduled(self._abort)
                return True
            return False

    _current_task = current_task
    budget = Budget()
    _checkpoint = trio.lowlevel.checkpoint

    async def trio_checkpoint() -> None:
        budget.renew()
        await _checkpoint()

    def trio_budget_spent() -> bool:
        # trio raises Cancelled only at checkpoints, so look on every call, exactly as
        # trio.lowlevel.checkpoint_if_cancelled does (the same private attribute; the
        # public current_effective_deadline() walks every enclosing scope: 10x dearer).
        # A deadline is noticed when the run loop next runs, within one slice.
        if current_task()._cancel_status.effectively_cancelled:
            return True
        return budget.spend()

    class TrioBackend:
        name = "trio"
        promise = TrioPromise
        parker = TrioParker
        deadlines = TrioDeadlines
        current_task = staticmethod(_current_task)
        checkpoint = staticmethod(trio_checkpoint)
        budget_spent = staticmethod(trio_budget_spent)

    return TrioBackend()


_backends: dict[str, Backend] = {}


def backend() -> Backend:
    """Return the fast primitives for the async library running in this thread."""
    name = sniffio.current_async_library() if sniffio is not None else "asyncio"
    try:
        return _backends[name]
    except KeyError:
        pass
    if name == "asyncio":
        impl = _asyncio_backend()
    elif name == "trio":
        impl = _trio_backend()
    else:  # pragma: no cover - anyio supports only these two
        raise RuntimeError(f"anyotp runs on asyncio or trio, not {name!r}")
    _backends[name] = impl
    return impl
