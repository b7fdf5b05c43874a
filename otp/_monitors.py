"""Monitors and timers: :class:`MonitorRef`, :class:`Down` and :class:`TimerRef`
(OTP's ``erlang:monitor/2``, ``'DOWN'`` and ``erlang:send_after/3``).

A monitor is one-way and never changes the watched actor: when it exits, the watcher gets
a :class:`Down` (through its mailbox, past the capacity), or a callback for watchers that
are not local actors (the Redis broker's remote monitors, process groups).
:class:`Monitoring` holds both sides for :class:`otp.ActorRef`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ._ref import Ref

if TYPE_CHECKING:
    from ._actor import ActorRef
    from ._node import Node

__all__ = ["Down", "MonitorRef", "Monitoring", "TimerRef", "ids"]

#: Actor and monitor ids: one counter, so no two are alike.
ids = itertools.count(1)


@attrs.frozen
class MonitorRef:
    """The handle of one monitor (OTP's monitor reference)."""

    id: int
    target: Ref = attrs.field(repr=lambda r: repr(r))


@attrs.frozen
class Down:
    """Delivered to ``handle_info`` when a monitored actor exits (OTP's ``'DOWN'`` message).

    ``reason`` is ``"normal"``, ``"shutdown"``, ``"killed"``, ``"noproc"`` (it was already
    dead when monitored) or the exception that crashed it.
    """

    ref: Ref
    reason: Any
    monitor: MonitorRef | None = attrs.field(default=None, eq=False, repr=False)


@attrs.define(eq=False)
class TimerRef:
    """A pending :meth:`GenServer.send_after`; :meth:`cancel` it to stop the delivery."""

    message: Any
    _owner: Monitoring = attrs.field(repr=False, alias="owner")  # the ActorRef
    _scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope, repr=False, alias="scope")

    def cancel(self) -> None:
        """Cancel the timer; harmless if it already fired (``erlang:cancel_timer/1``)."""
        self._scope.cancel()
        timers = self._owner._timers
        if timers:
            timers.discard(self)


async def _run_timer(owner: Monitoring, timer: TimerRef, delay: float) -> None:
    with timer._scope:
        await anyio.sleep(delay)
        if owner._timers:
            owner._timers.discard(timer)
        owner._deliver_control(timer.message)


class Monitoring:
    """The monitors and timers of an :class:`otp.ActorRef` (a mixin of it: the attributes
    below are its slots)."""

    if not TYPE_CHECKING:  # slotted at run time; mypy sees the attributes below
        __slots__ = ()

    _node: Node
    _alive: bool
    # monitor -> the watching actor (its _deliver_control gets the Down), or the callback
    # for a watcher that is not a local actor (no tuple or bound method per monitor: a
    # supervisor monitors each of its children). Both sides are cleaned up whichever
    # exits first, so neither keeps the other alive.
    _monitors: dict[MonitorRef, Any]  # ActorRef | Callable[[Down], None]
    _watching: dict[MonitorRef, Any]  # of ActorRef
    _timers: set[TimerRef] | None

    if TYPE_CHECKING:

        def _deliver_control(self, message: Any) -> None: ...

    def _monitor(self, ref: Ref) -> MonitorRef:
        target: Any = ref  # an ActorRef or a RemoteRef: both have the private monitor hooks
        monitor: MonitorRef = target._add_monitor(self._deliver_control, self)
        if target._alive:
            self._watching[monitor] = target
        return monitor

    def _demonitor(self, monitor: MonitorRef) -> bool:
        self._watching.pop(monitor, None)
        target: Any = monitor.target  # an ActorRef or a RemoteRef: both keep _monitors
        return target._monitors.pop(monitor, None) is not None

    def _add_monitor(
        self, deliver: Callable[[Down], None], watcher: ActorRef | None = None
    ) -> MonitorRef:
        """Call ``deliver(Down(...))`` once this actor exits (at once if it is dead).

        A ``watcher`` (the local actor that monitors) must pass its own
        ``_deliver_control`` as ``deliver``: only the watcher is kept."""
        monitor = MonitorRef(next(ids), self)  # type: ignore[arg-type]
        if self._alive:
            self._monitors[monitor] = deliver if watcher is None else watcher
        else:
            deliver(Down(self, "noproc", monitor))  # type: ignore[arg-type]
        return monitor

    def _remove_monitor(self, monitor: MonitorRef) -> bool:
        """Cancel a monitor made with :meth:`_add_monitor` (``erlang:demonitor/1`` for the
        runtime's own watchers); ``False`` if it had fired or was cancelled already."""
        watcher = self._monitors.pop(monitor, None)
        if isinstance(watcher, Monitoring):  # a local actor (ActorRef is the only one)
            watcher._watching.pop(monitor, None)
        return watcher is not None

    def _send_after(self, delay: float, message: Any) -> TimerRef:
        if delay < 0 or math.isnan(delay):
            raise ValueError(f"send_after delay must be seconds >= 0, not {delay!r}")
        timer = TimerRef(message, owner=self)
        if self._alive:
            if self._timers is None:
                self._timers = set()
            self._timers.add(timer)
            self._node._task_group.start_soon(_run_timer, self, timer, delay)
        return timer

    def _notify_monitors(self, reason: Any) -> None:
        """At its exit (once, from ``ActorRef._exit``): drop the monitors it holds on
        others and send every watcher its :class:`Down`."""
        for monitor, target in self._watching.items():
            target._monitors.pop(monitor, None)
        self._watching.clear()
        monitors, self._monitors = self._monitors, {}
        for monitor, watcher in monitors.items():
            down = Down(self, reason, monitor)  # type: ignore[arg-type]  # self: an ActorRef
            if isinstance(watcher, Monitoring):  # a local actor (ActorRef is the only one)
                watcher._watching.pop(monitor, None)
                watcher._deliver_control(down)
            else:
                watcher(down)
