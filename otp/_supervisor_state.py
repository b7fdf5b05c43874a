"""A supervisor's bookkeeping, apart from the process that uses it (otp/_supervisor.py):
its children (:class:`Children`, OTP's ``#state.children``), restart intensity
(:class:`Intensity`, OTP's ``MaxR``/``MaxT``) and stopping many children at once
(:func:`stop_at_once`, a dynamic supervisor's shutdown). Times are passed in (the
supervisor's clock), so this has no clock of its own.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator

import anyio
import attrs

from ._actor import BRUTAL_KILL, ActorRef, MonitorRef, Shutdown
from ._exceptions import NotFound
from ._ref import Ref
from ._specs import Backoff, ChildSpec
from ._supervisor_ops import ChildCount, ChildInfo

__all__ = ["Child", "Children", "Intensity", "stop_at_once"]


@attrs.define(eq=False)
class Child:
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

    def backoff_delay(self, backoff: Backoff, now: float) -> float:
        """The delay before restarting this child, which exited at ``now``: the next step
        of ``backoff``, or its first step again if the child ran ``reset_after`` seconds."""
        if now - self.started_at >= backoff.reset_after:
            self.attempt = 0
        self.attempt += 1
        return backoff.delay(self.attempt)


class Children:
    """A supervisor's children (OTP's ``#state.children``): in start order, by id, and the
    running ones by ref.

    Invariant: ``by_ref[r].ref is r`` for every running child this supervisor watches; a
    child it stopped itself has left ``by_ref`` first, so that child's ``Down`` is ignored.
    """

    __slots__ = ("_order", "by_id", "by_ref", "dynamic", "serial", "stopping")

    def __init__(self, dynamic: bool) -> None:
        # Start order: dicts keep insertion order and delete in O(1).
        self._order: dict[Child, None] = {}
        self.by_id: dict[str, Child] = {}
        self.by_ref: dict[Ref, Child] = {}
        # Children asked to stop and not yet gone (no longer in by_ref).
        self.stopping: set[ActorRef] = set()
        # Dynamic supervisors name their children "<spec id>#<serial>".
        self.dynamic = dynamic
        self.serial = 0

    def __iter__(self) -> Iterator[Child]:
        return iter(self._order)

    def __reversed__(self) -> Iterator[Child]:
        return reversed(self._order)

    def __contains__(self, child: object) -> bool:
        return child in self._order

    def __len__(self) -> int:
        return len(self._order)

    def add(self, spec: ChildSpec) -> Child:
        """A new child for ``spec``, last in start order (not started)."""
        child_id = spec.id
        if self.dynamic:
            self.serial += 1
            child_id = f"{spec.id}#{self.serial}"
        child = Child(spec, child_id)
        self._order[child] = None
        self.by_id[child_id] = child
        return child

    def remove(self, child: Child) -> None:
        self._order.pop(child, None)
        if self.by_id.get(child.id) is child:
            del self.by_id[child.id]

    def lookup(self, target: str | Ref, where: str) -> Child:
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


class Intensity:
    """Restart intensity (OTP's ``MaxR`` restarts in ``MaxT`` seconds): the times of the
    restarts of the last ``within`` seconds."""

    __slots__ = ("_times", "max_restarts", "within")

    def __init__(self, max_restarts: int, within: float) -> None:
        self.max_restarts = max_restarts
        self.within = within
        self._times: deque[float] = deque()

    def add(self, now: float) -> bool:
        """Count a restart at ``now``; ``False`` when that makes more than ``max_restarts``
        within ``within`` seconds (the supervisor gives up)."""
        times = self._times
        times.append(now)
        horizon = now - self.within
        while times and times[0] < horizon:
            times.popleft()
        return len(times) <= self.max_restarts


async def stop_at_once(pending: list[tuple[ActorRef, Shutdown]]) -> None:
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
