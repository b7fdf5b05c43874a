"""Handing inbound publishes to this node's subscribers (subscriptions and actors) without
head-of-line blocking.

* **A full receiver delays only itself.** A publish goes at once to every local receiver
  with room. A receiver whose buffer is full and ``BLOCK`` gets the publish in a queue of
  its own, drained by a task of its own that waits for room; the node's topic lane never
  waits, so publishes to every other receiver (on any topic) go on.
* **In order.** Once a receiver has a queue, every later publish for it joins that queue,
  so one receiver sees one node's publishes in the order they arrived; the queue goes
  when it is empty.
* **Bounded.** Publishes waiting in these queues count, with the remote calls and casts
  waiting for room (``_serve``), against the broker's ``inbound_limit``; past it, a
  publish for a full receiver is a dead letter (reason ``"inbound_full"``) and counts in
  ``statistics().inbound_full``.

The in-memory broker's own ``_deliver_now`` (those with room) and ``_deliver`` (with room
or waiting, dead letters on refusal) do the delivering; this module only decides who waits
where. (A local publisher, by contrast, waits for a full ``BLOCK`` subscriber: across
nodes the publisher has long gone on, so the wait falls on that subscriber's queue.)
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from .._broker import DeadLetter, Envelope

if TYPE_CHECKING:
    from ._broker import RedisBroker

__all__ = ["Inbound"]


class Inbound:
    """The per-receiver queues of inbound publishes (see the module docs)."""

    def __init__(self, broker: RedisBroker, *, limit: int) -> None:
        self.broker = broker
        self.limit = limit
        # receivers (a Subscription or an ActorRef) with publishes waiting -> those, in order
        self.backlogs: dict[Any, deque[Envelope]] = {}
        #: Publishes waiting in the queues now.
        self.queued = 0
        #: Publishes refused because the inbound buffer was full.
        self.overflowed = 0

    def deliver(self, envelope: Envelope, targets: tuple[Any, ...]) -> None:
        """Hand ``envelope`` to its local ``targets`` (never waits)."""
        broker = self.broker
        backlogs = self.backlogs
        behind: tuple[Any, ...] = ()
        if backlogs:
            behind = tuple(t for t in targets if t in backlogs)
            if behind:
                targets = tuple(t for t in targets if t not in backlogs)
        if targets:
            delivered, waiting = broker._deliver_now(
                envelope.topic, envelope.message, envelope.sender, envelope, targets
            )
            broker._delivered += delivered
            for target, _item, _priority, _dead in waiting:
                self._queue(target, envelope)
        for target in behind:
            self._queue(target, envelope)

    def _queue(self, target: Any, envelope: Envelope) -> None:
        broker = self.broker
        if self.queued + broker.server.backlogged >= self.limit:
            self.overflowed += 1
            broker._dead_letter(
                DeadLetter(envelope.message, target, "inbound_full", topic=envelope.topic)
            )
            return
        backlog = self.backlogs.get(target)
        if backlog is None:
            task_group = broker.session.task_group
            if task_group is None:  # the node is leaving
                broker._dead_letter(
                    DeadLetter(envelope.message, target, "noconnection", topic=envelope.topic)
                )
                return
            backlog = self.backlogs[target] = deque()
            task_group.start_soon(self._drain, target, backlog)
        backlog.append(envelope)
        self.queued += 1

    async def _drain(self, target: Any, backlog: deque[Envelope]) -> None:
        # The only task that waits on this receiver; it ends when the queue is empty (no
        # await between the last check and dropping the queue: nothing can slip in).
        deliver = self.broker._deliver
        try:
            while backlog:
                envelope = backlog[0]
                await deliver(
                    envelope.topic, envelope.message, envelope.sender, envelope, (target,)
                )
                backlog.popleft()
                self.queued -= 1
        finally:
            if self.backlogs.get(target) is backlog:
                del self.backlogs[target]
            self.queued -= len(backlog)
            backlog.clear()
