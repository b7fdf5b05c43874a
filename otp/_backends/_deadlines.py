"""Call timeouts without a timer per call: one queue algorithm for both backends."""

from __future__ import annotations

import math
from collections import deque
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
    backend for :attr:`when`) serves every call. Finished calls are dropped from the front
    lazily, so a FIFO holds roughly the calls in flight.

    Invariant: :attr:`when` is at most the earliest pending deadline (it may be earlier
    when that call has finished since; the timer then fires early and re-arms).
    """

    __slots__ = ("queues", "when")

    def __init__(self) -> None:
        self.queues: dict[float, deque[tuple[float, Any]]] = {}
        self.when = math.inf

    def add(self, now: float, timeout: float, promise: _Expirable) -> bool:
        """Queue ``promise`` to expire ``timeout`` seconds after ``now``; ``True`` when its
        deadline is the new earliest (the backend then re-arms its timer for :attr:`when`)."""
        when = now + timeout
        queue = self.queues.get(timeout)
        if queue is None:
            queue = self.queues[timeout] = deque()
        else:
            while queue and queue[0][1].done():
                queue.popleft()
        queue.append((when, promise))
        if when < self.when:
            self.when = when
            return True
        return False

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
