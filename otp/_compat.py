"""The one module that touches asyncio and trio directly.

anyio's memory streams and events always yield and cost several scheduler passes per
round-trip; the mailbox wait and the call reply are the hot path, so they are built here on
each backend's cheapest primitive (an :class:`asyncio.Future`, or trio's
``wait_task_rescheduled``). Both primitives honour anyio cancel scopes: anyio delivers
cancellation through the backend's own mechanism, which these waits obey.

Everything here is single-threaded: callers must run in the event loop thread.
"""

from __future__ import annotations

from typing import Any, Protocol

import sniffio

__all__ = ["Backend", "Expired", "Parker", "Promise", "backend"]


class Expired(Exception):
    """Raised by :meth:`Promise.wait` when its timeout passes; callers translate it."""


class Promise(Protocol):
    """A one-shot reply slot with a single waiter (the ``From`` of an OTP call)."""

    @property
    def done(self) -> bool: ...

    def resolve(self, value: object) -> bool:
        """Deliver ``value``; return ``False`` if the waiter already left or got a value."""
        ...

    def fail(self, exc: BaseException) -> bool:
        """Deliver ``exc`` to be raised in the waiter; ``False`` if too late."""
        ...

    async def wait(self, timeout: float | None) -> Any:
        """Wait for the value; after ``timeout`` seconds raise :class:`Expired`."""
        ...


class Parker(Protocol):
    """Lets one task sleep until another wakes it (the mailbox's consumer wait)."""

    def wake(self) -> None: ...

    async def park(self, timeout: float | None) -> bool:
        """Sleep until :meth:`wake`; return ``False`` if ``timeout`` passed first."""
        ...


class Backend(Protocol):
    name: str

    def promise(self) -> Promise: ...

    def parker(self) -> Parker: ...

    def current_task(self) -> object: ...

    async def checkpoint(self) -> None: ...


# --------------------------------------------------------------------------- asyncio


def _asyncio_backend() -> Backend:
    import asyncio

    get_loop = asyncio.get_running_loop
    current = asyncio.current_task

    def _expire(fut: asyncio.Future[Any]) -> None:
        if not fut.done():
            fut.set_exception(Expired())

    class AsyncioPromise:
        __slots__ = ("_fut",)

        def __init__(self) -> None:
            self._fut: asyncio.Future[Any] = get_loop().create_future()

        @property
        def done(self) -> bool:
            return self._fut.done()

        def resolve(self, value: object) -> bool:
            fut = self._fut
            if fut.done():
                return False
            fut.set_result(value)
            return True

        def fail(self, exc: BaseException) -> bool:
            fut = self._fut
            if fut.done():
                return False
            fut.set_exception(exc)
            return True

        async def wait(self, timeout: float | None) -> Any:
            fut = self._fut
            if timeout is None:
                return await fut
            handle = fut.get_loop().call_later(timeout, _expire, fut)
            try:
                return await fut
            finally:
                handle.cancel()

    def _wake_parked(fut: asyncio.Future[bool], value: bool) -> None:
        if not fut.done():
            fut.set_result(value)

    class AsyncioParker:
        __slots__ = ("_fut",)

        def __init__(self) -> None:
            self._fut: asyncio.Future[bool] | None = None

        def wake(self) -> None:
            fut = self._fut
            if fut is not None:
                self._fut = None
                if not fut.done():
                    fut.set_result(True)

        async def park(self, timeout: float | None) -> bool:
            loop = get_loop()
            fut = self._fut = loop.create_future()
            if timeout is None:
                try:
                    return bool(await fut)
                finally:
                    self._fut = None
            handle = loop.call_later(timeout, _wake_parked, fut, False)
            try:
                return bool(await fut)
            finally:
                self._fut = None
                handle.cancel()

    async def checkpoint() -> None:
        await asyncio.sleep(0)

    class AsyncioBackend:
        name = "asyncio"
        promise = AsyncioPromise
        parker = AsyncioParker

        @staticmethod
        def current_task() -> object:
            return current()

    AsyncioBackend.checkpoint = staticmethod(checkpoint)  # type: ignore[attr-defined]
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

    class TrioPromise:
        # Invariant: once ``_done`` is set nothing else is delivered; ``_task`` is the
        # waiting task while it sleeps, ``_outcome`` a value delivered before it slept.
        __slots__ = ("_done", "_outcome", "_task")

        def __init__(self) -> None:
            self._done = False
            self._task: Any = None
            self._outcome: Any = None

        @property
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

        async def wait(self, timeout: float | None) -> Any:
            if self._outcome is not None:
                await trio.lowlevel.checkpoint()
                return self._outcome.unwrap()
            self._task = current_task()
            if timeout is None:
                return await wait_task_rescheduled(self._abort)
            with CancelScope(deadline=current_time() + timeout):
                return await wait_task_rescheduled(self._abort)
            raise Expired

    class TrioParker:
        __slots__ = ("_task",)

        def __init__(self) -> None:
            self._task: Any = None

        def wake(self) -> None:
            task = self._task
            if task is not None:
                self._task = None
                reschedule(task)

        def _abort(self, raise_cancel: Any) -> Abort:
            self._task = None
            return SUCCEEDED

        async def park(self, timeout: float | None) -> bool:
            self._task = current_task()
            if timeout is None:
                await wait_task_rescheduled(self._abort)
                return True
            with CancelScope(deadline=current_time() + timeout):
                await wait_task_rescheduled(self._abort)
                return True
            return False

    _current_task = current_task

    class TrioBackend:
        name = "trio"
        promise = TrioPromise
        parker = TrioParker
        current_task = staticmethod(_current_task)
        checkpoint = staticmethod(trio.lowlevel.checkpoint)

    return TrioBackend()


_backends: dict[str, Backend] = {}


def backend() -> Backend:
    """Return the fast primitives for the async library running in this thread."""
    name = sniffio.current_async_library()
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
