"""The fast waits of each async library, behind one small interface.

anyio's memory streams and events always yield and cost several scheduler passes per
round-trip; the mailbox wait and the call reply are the hot path, so they are built on each
backend's cheapest primitive: an :class:`asyncio.Future` (:mod:`otp._backends._asyncio`)
or trio's ``wait_task_rescheduled`` (:mod:`otp._backends._trio`). Both honour anyio cancel
scopes: anyio delivers cancellation through the backend's own mechanism, which these waits
obey. As anyio loads its own backends, a backend module is imported only when a node first
runs on it, so ``import otp`` never imports trio.

These two modules are the only ones in ``otp`` that use asyncio or trio directly
(tests/test_public_api.py keeps that true). Everything here is single-threaded: callers run
in the event loop's thread.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Awaitable, Generator
from typing import Any, Protocol

from ._deadlines import DeadlineQueue, Expired

try:  # trio depends on sniffio; without it only asyncio can be running
    import sniffio
except ImportError:  # pragma: no cover - depends on the environment
    sniffio = None  # type: ignore[assignment]

__all__ = [
    "BUDGET_OPS",
    "BUDGET_SLICE",
    "Backend",
    "Budget",
    "Caller",
    "DeadlineQueue",
    "Expired",
    "Parker",
    "Promise",
    "backend",
]


class Caller:
    """The opaque handle of a waiting caller (the ``From`` of ``gen_server:handle_call/3``).

    ``handle_call(request, caller)`` receives one; keep it to answer later with
    ``self.reply(caller, value)`` after returning :data:`otp.NOREPLY`. It has no public
    methods: a reply goes through :meth:`GenServer.reply`, nowhere else. (Each backend's
    promise derives from it.)
    """

    __slots__ = ()


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

    def __await__(self) -> Generator[Any, Any, Any]:
        """``await promise``: wait for the value without a timeout of its own (the call
        path registers its timeout with the node's deadlines first: ``deadlines.add(timeout,
        promise)``, which fails it with :class:`Expired` when due)."""
        ...

    async def wait(self, timeout: float | None, deadlines: Any = None) -> Any:
        """Wait for the value; after ``timeout`` seconds raise :class:`Expired`.

        ``deadlines`` (the node's, from :meth:`Backend.deadlines`) lets the timeout ride on
        one shared timer instead of a timer or cancel scope per call; without it the
        backend finds its own (asyncio: the loop's) or uses a cancel scope (trio)."""
        ...


class Parker(Protocol):
    """Lets one task sleep until another wakes it (the mailbox's consumer wait).

    ``waiter`` is not ``None`` exactly while a task sleeps in :meth:`park`, so a producer
    can skip :meth:`wake` (a call) while the consumer is busy.
    """

    waiter: Any

    def wake(self) -> None: ...

    def sleep(self) -> Awaitable[Any]:
        """What to await to sleep until :meth:`wake`, with no timeout: :meth:`park`
        without a coroutine of its own (an idle actor sleeps here, and each coroutine
        in its await chain is one more object for the cyclic GC). A sleeper that is
        cancelled may leave ``waiter`` set; it is then never woken again."""
        ...

    async def park(self, timeout: float | None) -> bool:
        """Sleep until :meth:`wake`; return ``False`` if ``timeout`` passed first."""
        ...


class Backend(Protocol):
    """What the core needs of an async library: one instance per library, per process."""

    name: str

    def promise(self) -> Promise: ...

    def parker(self) -> Parker: ...

    def deadlines(self, task_group: Any) -> Any:
        """A node's shared call-timeout keeper, to pass to :meth:`Promise.wait`."""
        ...

    def current_task(self) -> object: ...

    def current_coroutine(self) -> Any:
        """The top coroutine of the running task: its ``cr_running`` is true exactly while
        that task runs, which answers "is this code running in that task" with one C
        attribute read (``asyncio.current_task`` is Python code before 3.12)."""
        ...

    async def checkpoint(self) -> None:
        """A full checkpoint: a schedule point and a cancel point; it renews the budget."""
        ...

    def budget_spent(self) -> bool:
        """Whether an amortised checkpoint must be a real one now (see :class:`Budget`)."""
        ...

    def slice_spent(self) -> bool:
        """Whether the budget's time slice has passed (or, on trio, the task's scope is
        cancelled): an actor draining its mailbox asks once every ``BUDGET_OPS`` messages
        and yields only then."""
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

    __slots__ = ("ops", "until")

    def __init__(self) -> None:
        self.ops = 0
        self.until = _perf_counter() + BUDGET_SLICE  # when the slice ends

    def renew(self) -> None:
        self.ops = 0
        self.until = _perf_counter() + BUDGET_SLICE

    def slice_spent(self) -> bool:
        """``True`` once :data:`BUDGET_SLICE` has passed since the last full checkpoint."""
        return _perf_counter() >= self.until

    def spend(self) -> bool:
        """Count one operation; ``True`` when the budget is used up (the caller yields).
        On every ``await cast``: the asyncio backend's ``budget_spent`` *is* this method."""
        ops = self.ops = self.ops + 1
        return ops >= BUDGET_OPS or _perf_counter() >= self.until


_perf_counter = time.perf_counter


_backends: dict[str, Backend] = {}


def backend() -> Backend:
    """The fast primitives for the async library running in this thread (loaded on first
    use). Raises ``RuntimeError`` for a library other than asyncio or trio."""
    name = sniffio.current_async_library() if sniffio is not None else "asyncio"
    try:
        return _backends[name]
    except KeyError:
        pass
    if name not in ("asyncio", "trio"):  # pragma: no cover - anyio supports only these two
        raise RuntimeError(f"anyotp runs on asyncio or trio, not {name!r}")
    module: Any = importlib.import_module(f"{__name__}._{name}")
    impl: Backend = module.BACKEND
    _backends[name] = impl
    return impl
