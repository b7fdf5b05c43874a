"""Call timeouts without a timer per call: one queue algorithm for both backends."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["DeadlineQueue", "Expired"]


class Expired(Exception):
    """Raised by ``Promise.wait`` when its timeout passes; callers translate it."""


class _Expirable(Protocol):
    def done(self) -> bool: ...

    def fail(self, exc: BaseException) -> bool: ...


class DeadlineQueue:
    """Pending call deadlines, failed with :class:`Expired` when due.

    Calls with the same timeout expire in the order they started, so each timeout value
    gets a FIFO of ``(deadline, promise)``: adding is an append, and one timer (armed by the
    backend for :attr:`when`, in :meth:`rearm`) serves every call. Finished calls are
    dropped from the front lazily, so a FIFO holds roughly the calls in flight.

    A backend subclasses it with its ``clock`` (the one its timer runs on) and its
    :meth:`rearm`; :meth:`add` is on every timed call, so it is the only frame there.

    Invariant: :attr:`when` is at most the earliest pending deadline (it may be earlier
    when that call has finished since; the timer then fires early and re-arms).
    """

    __slots__ = ("clock", "queues", "when")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.queues: dict[float, deque[tuple[float, Any]]] = {}
        self.when = math.inf

    def add(self, timeout: float, promise: _Expirable) -> None:
        """Fail ``promise`` with :class:`Expired` ``timeout`` seconds from now, unless it
        is done by then; re-arm the timer when this is the new earliest deadline."""
        when = self.clock() + timeout
        queue = self.queues.get(timeout)
        if queue is None:
            queue = self.queues[timeout] = deque()
        else:
            while queue and queue[0][1].done():
                queue.popleft()
        queue.append((when, promise))
        if when < self.when:
            self.when = when
            self.rearm()

    def rearm(self) -> None:
        """The backend's hook: :attr:`when` moved earlier; arm the timer for it."""

    def expire(self, now: float) -> float:
        """Fail every promise due at ``now``; return the earliest deadline still pending
        (``inf`` when none), which is also the new :attr:`when`."""
        earliest = math.inf
        for timeout, queue in list(self.queues.items()):
            while queue:
                when, promise = queue[0]
                if promise.done():
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
        return earliest
