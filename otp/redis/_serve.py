"""Serving local actors to other nodes: calls, casts, sends, stops, exit signals and
monitors that arrive on the node's control channel.

* **Pools.** A frame for a worker pool (:func:`otp.worker_pool`) is dispatched as the
  local :class:`otp.PoolRef` dispatches it: a call, cast or send goes to one worker
  (round robin, least busy or by key), a supervisor operation to the pool's supervisor.
* **Signals.** An exit signal acts at once, as locally; only one that the target traps
  while frames wait for room in its mailbox waits behind them (it becomes a message).
* **Exits.** A stop is answered once the actor has exited *and* what its exit freed in
  the cluster (its global name, its group memberships) is freed in Redis; a ``down``
  notice and a call's ``exit`` reply wait for that too, so the node that learns of the
  exit can claim the name at once.

* **No head-of-line blocking.** A frame goes straight into its actor's mailbox when there
  is room. Only when that mailbox is full and ``BLOCK`` does the frame wait, in a queue of
  that actor alone (with a task that waits for room): traffic to the other actors goes
  on. What one node sends one actor stays in order.
* **Bounded.** Frames waiting for room count against ``inbound_limit``; past it, a cast
  or send is a dead letter (reason ``"inbound_full"``) and a call is answered with
  :class:`otp.MailboxFull`.
* **Credits.** Each cast or send that reaches its mailbox (or is dropped by its policy)
  is counted per flow and credited back to the sender (see ``_remote``); the sender is
  also told when frames of its flow start and stop waiting for room (``blocked``).
* **Deadlines.** A call whose deadline has passed (on the cluster clock) when it would be
  put in the mailbox is dropped: a dead letter with reason ``"expired"``.
* **Lease.** While the node's lease has run out (it was paused, or cannot reach Redis)
  frames are held, not served; once renewed they are served (expired calls dropped), and
  if the node was fenced they are dropped (dead letters, reason ``"fenced"``).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from .._actor import ActorRef, Down
from .._backends import Expired
from .._broker import DeadLetter
from .._exceptions import ActorExited, CodecError, MailboxFull, NotFound
from .._mailbox import CALL, CAST, GONE, INFO, REFUSED, WAIT, Overflow, Wrapped, wrap
from .._supervisor_ops import SupervisorOp, TerminateChild, _Call
from .._supervisor_refs import PoolRef
from ._frames import (
    Call,
    Cast,
    Credit,
    DownNotice,
    ExitSignal,
    Frame,
    Monitor,
    Reply,
    Stop,
    Sync,
    Where,
    Whereis,
    encode,
    reason_from_wire,
    reason_to_wire,
    ref_tree,
)

if TYPE_CHECKING:
    from .._backends import Promise
    from ._broker import RedisBroker

__all__ = ["Server"]

logger = logging.getLogger("otp.redis")

#: Frames held while the lease has run out, at most (older ones are dropped first).
_HELD_LIMIT: Final = 100_000


class _InFlow:
    """What this node consumed of one sender's flow; ``queued``: its frames waiting for
    room; ``blocked``: what the sender was last told of that (see ``Credit``)."""

    __slots__ = ("blocked", "done", "granted", "queued")

    def __init__(self) -> None:
        self.done = 0
        self.granted = 0
        self.queued = 0
        self.blocked = False


class Server:
    """Serves the local actors to remote callers (see the module docs)."""

    def __init__(self, broker: RedisBroker, *, window: int, inbound_limit: int) -> None:
        self.broker = broker
        self.window = window
        self.inbound_limit = inbound_limit
        # monitors other nodes hold on local actors: (node, id) -> (actor, local monitor)
        self.mon_in: dict[tuple[str, int], tuple[ActorRef, Any]] = {}
        # actors with frames waiting for room -> those frames, in order
        self.backlogs: dict[ActorRef, deque[tuple[Frame, Any, ActorRef]]] = {}
        self.backlogged = 0
        self.inflows: dict[tuple[str, int], _InFlow] = {}
        self.held: deque[Frame] = deque()
        self.expired = 0
        self.overflowed = 0

    # ------------------------------------------------------------------ entry

    def serve(self, frame: Frame) -> None:
        """A frame for a local actor (or a lookup), served now or held (the lease)."""
        session = self.broker.session
        if session.fenced:
            self._drop(frame, "fenced")
            return
        if not session.serving:
            if len(self.held) >= _HELD_LIMIT:
                self._drop(self.held.popleft(), "inbound_full")
            self.held.append(frame)
            session.hurry_renewal()
            return
        self._serve(frame)

    def lease_ok(self) -> None:
        """The lease was renewed: serve what was held."""
        held = self.held
        while held and self.broker.session.serving:
            self._serve(held.popleft())
        self.grant()

    def fenced(self) -> None:
        while self.held:
            self._drop(self.held.popleft(), "fenced")
        for backlog in self.backlogs.values():
            while backlog:
                frame, message, _ = backlog.popleft()
                self._dead(frame, message, "fenced")
        self.backlogs.clear()
        self.backlogged = 0

    def _drop(self, frame: Frame, why: str) -> None:
        self._dead(frame, getattr(frame, "message", frame), why)

    def _dead(self, frame: Frame, message: Any, why: str) -> None:
        to = getattr(frame, "to", None)
        recipient = None if to is None else (to.name or to.id)
        self.broker._dead_letter(DeadLetter(message, recipient, why))

    def _serve(self, frame: Frame) -> None:
        broker = self.broker
        try:
            if isinstance(frame, Call):
                self._on_call(frame)
            elif isinstance(frame, Cast):
                self._on_post(frame)
            elif isinstance(frame, Monitor):
                self._on_monitor(frame)
            elif isinstance(frame, Whereis):
                self._on_whereis(frame)
            elif isinstance(frame, Stop):
                self._on_stop(frame)
            elif isinstance(frame, ExitSignal):
                self._on_exit(frame)
            elif isinstance(frame, Sync):
                self._on_sync(frame)
        except CodecError as error:
            broker._wire_error(error, b"", None)

    # ------------------------------------------------------------------ answers

    def _answer(self, peer: str, frame: Frame) -> None:
        self.broker.session.post(peer, encode(frame), retry=True)

    def _reply(self, peer: str, cid: int, status: str, value: Any) -> None:
        self._answer(peer, Reply(cid=cid, status=status, value=value, **self.broker._me))

    def _exit_reply(self, peer: str, cid: int, reason: Any) -> None:
        broker = self.broker
        why = reason_to_wire(broker.codec, reason, broker.node_name, broker.remote_actors)
        self._reply(peer, cid, "exit", why)

    # ------------------------------------------------------------------ calls

    def _expired(self, frame: Call) -> bool:
        if frame.deadline is None:
            return False
        broker = self.broker
        if broker._cluster_time() <= frame.deadline + broker._clock_tolerance():
            return False
        self.expired += 1
        return True

    def _on_call(self, frame: Call) -> None:
        broker = self.broker
        if self._expired(frame):
            self._dead(frame, frame.message, "expired")
            return
        target = broker.remote_actors.resolve_local(frame.to)
        if target is None:
            self._exit_reply(frame.node, frame.cid, "noproc")
            return
        try:
            request = broker.codec.from_wire(frame.message, refs=broker.remote_actors)
        except CodecError as error:
            # The caller learns why at once (e.g. a class unknown here), not by timeout.
            text = f"node {broker.node_name!r} cannot decode the request: {error}"
            self._reply(frame.node, frame.cid, "err", text)
            raise
        if isinstance(target, PoolRef) and not isinstance(request, (SupervisorOp, _Call)):
            try:
                target = target._pick(request)
            except NotFound as refusal:  # every worker is restarting: as PoolRef.call
                tree = broker.codec.to_wire(refusal, refs=broker.remote_actors)
                self._reply(frame.node, frame.cid, "raise", tree)
                return
        backlog = self.backlogs.get(target)
        if backlog is not None:
            self._queue(target, frame, request)
            return
        self._call_now(target, frame, request, waiting=False)

    def _call_now(self, target: ActorRef, frame: Call, request: Any, *, waiting: bool) -> bool:
        """Offer the call to the actor (``ActorRef._offer``); ``False`` if it must wait for
        room."""
        caller = self.broker._backend().promise()
        status = target._offer(Wrapped(CALL, request, caller))
        if status == WAIT:
            if not waiting:
                self._queue(target, frame, request)
            return False
        if status == REFUSED:  # a full FAIL mailbox: the caller raises MailboxFull
            mailbox = target.statistics().mailbox
            self._reply(frame.node, frame.cid, "full", [mailbox.capacity, mailbox.overflow.value])
            return True
        if status == GONE:  # pragma: no cover  # resolve_local gave a live actor, no await since
            self._exit_reply(frame.node, frame.cid, target.exit_reason or "noproc")
            return True
        # ACCEPTED, or DROPPED (DROP_*): the actor failed the caller with MailboxFull and
        # _reply_for answers "full".
        self._spawn(self._reply_for, frame.node, frame.cid, caller, frame.deadline, _stops(request))
        return True

    async def _reply_for(
        self, peer: str, cid: int, caller: Promise, deadline: float | None, stops: bool
    ) -> None:
        broker = self.broker
        timeout = None
        if deadline is not None:
            timeout = max(0.0, deadline - broker._cluster_time()) + 1.0
        try:
            value = await caller.wait(timeout)
        except Expired:
            return  # the caller has given up too
        except ActorExited as exc:
            # As for a Down: the caller that learns of the exit finds its global name free.
            await self._settle(deadline)
            self._exit_reply(peer, cid, exc.reason)
            return
        except MailboxFull as exc:
            policy = exc.policy.value if isinstance(exc.policy, Overflow) else None
            self._reply(peer, cid, "full", [exc.capacity, policy])
            return
        try:
            tree = broker.codec.to_wire(value, refs=broker.remote_actors)
        except CodecError as error:
            logger.error("the reply to a call from node %r cannot be encoded: %s", peer, error)
            self._reply(peer, cid, "err", str(error))
            return
        if stops:  # a terminate_child: answered once the child's names are free
            await self._settle(deadline)
        try:
            self._reply(peer, cid, "ok", tree)
        except CodecError as error:  # oversized
            self._reply(peer, cid, "err", str(error))

    async def _settle(self, deadline: float | None) -> None:
        """Wait until the releases of the exits so far are done in Redis (within what is
        left of the call's time): what an answer that tells of an exit waits for."""
        broker = self.broker
        if broker._exits_pending():
            left = None if deadline is None else deadline - broker._cluster_time()
            await broker._exits_settled(None if left is None else max(0.0, left))

    # ------------------------------------------------------------------ casts and sends

    def _on_post(self, frame: Cast) -> None:
        broker = self.broker
        target = broker.remote_actors.resolve_local(frame.to)
        message = broker.codec.from_wire(frame.message, refs=broker.remote_actors)
        if isinstance(target, PoolRef):
            try:
                target = target._pick(message)
            except NotFound:
                target = None  # every worker is restarting: nobody takes it
        if target is None:
            self._dead(frame, message, "noproc")
            self._consumed(frame)
            return
        if target in self.backlogs:
            self._queue(target, frame, message)
            return
        self._post_now(target, frame, message, waiting=False)

    def _post_now(self, target: ActorRef, frame: Cast, message: Any, *, waiting: bool) -> bool:
        kind = CAST if frame.kind == "cast" else INFO
        status = target._offer(wrap(kind, message))  # DROPPED: the actor recorded the letter
        if status == WAIT:
            if not waiting:
                self._queue(target, frame, message)
            return False
        if status == REFUSED:
            self.broker._dead_letter(DeadLetter(message, target, "mailbox_full"))
        elif status == GONE:  # pragma: no cover  # as above: answered as a dead actor
            self._dead(frame, message, "noproc")
        self._consumed(frame)
        return True

    def _consumed(self, frame: Cast) -> None:
        if frame.flow is None or frame.seq is None:
            return
        key = (frame.node, frame.flow)
        inflow = self.inflows.get(key)
        if inflow is None:
            inflow = self.inflows[key] = _InFlow()
        if frame.seq > inflow.done:
            inflow.done = frame.seq
        if inflow.done - inflow.granted >= max(1, self.window // 4):
            self._grant(frame.node, frame.flow, inflow)

    def _grant(self, peer: str, flow: int, inflow: _InFlow) -> None:
        inflow.granted = inflow.done
        inflow.blocked = blocked = inflow.queued > 0
        self._answer(peer, Credit(flow=flow, n=inflow.done, blocked=blocked, **self.broker._me))

    def grant(self) -> None:
        """Send the credit not yet granted (after a burst of frames), and tell senders
        whose frames no longer wait for room."""
        for (peer, flow), inflow in self.inflows.items():
            if inflow.done > inflow.granted or inflow.blocked != (inflow.queued > 0):
                self._grant(peer, flow, inflow)

    def _on_sync(self, frame: Sync) -> None:
        # The sender waits for credit: whatever it sent that is not queued here was lost.
        inflow = self.inflows.get((frame.node, frame.flow))
        if inflow is None:
            inflow = self.inflows[(frame.node, frame.flow)] = _InFlow()
        if not inflow.queued and frame.n > inflow.done:
            inflow.done = frame.n
        self._grant(frame.node, frame.flow, inflow)

    # ------------------------------------------------------------------ backlogs

    def _queue(self, target: ActorRef, frame: Frame, message: Any) -> None:
        if self.backlogged >= self.inbound_limit:
            self.overflowed += 1
            if isinstance(frame, Call):
                self._reply(frame.node, frame.cid, "full", [None, Overflow.BLOCK.value])
            else:
                self._dead(frame, message, "inbound_full")
                if isinstance(frame, Cast):
                    self._consumed(frame)
            return
        backlog = self.backlogs.get(target)
        if backlog is None:
            backlog = self.backlogs[target] = deque()
            self._spawn(self._drain, target)
        backlog.append((frame, message, target))
        self.backlogged += 1
        if isinstance(frame, Cast) and frame.flow is not None:
            inflow = self.inflows.setdefault((frame.node, frame.flow), _InFlow())
            inflow.queued += 1
            if not inflow.blocked:
                # The sender's cast_nowait raises MailboxFull from now on, as a local
                # one at this full BLOCK mailbox would (await cast waits for credit).
                self._grant(frame.node, frame.flow, inflow)

    async def _drain(self, target: ActorRef) -> None:
        # Waits for room in one actor's mailbox; nothing else waits on it.
        backlog = self.backlogs.get(target)
        broker = self.broker
        try:
            while backlog:
                frame, message, _ = backlog[0]
                if not target.alive:
                    break
                if isinstance(frame, Call):
                    if self._expired(frame):
                        self._dead(frame, message, "expired")
                    else:
                        caller = broker._backend().promise()
                        timeout = None
                        if frame.deadline is not None:
                            remaining = frame.deadline - broker._cluster_time()
                            timeout = max(0.0, remaining + broker._clock_tolerance())
                        try:
                            admitted = await self._put_waiting(
                                target, Wrapped(CALL, message, caller), timeout
                            )
                        except Expired:
                            self.expired += 1
                            self._dead(frame, message, "expired")
                        else:
                            if not admitted:
                                break
                            self._spawn(
                                self._reply_for,
                                frame.node,
                                frame.cid,
                                caller,
                                frame.deadline,
                                _stops(message),
                            )
                elif isinstance(frame, Cast):
                    kind = CAST if frame.kind == "cast" else INFO
                    if not await self._put_waiting(target, wrap(kind, message), None):
                        break
                    self._unqueue(frame)
                    self._consumed(frame)
                elif isinstance(frame, ExitSignal):
                    sender, reason = message
                    target._signal(sender, reason, linked=False)
                backlog.popleft()
                self.backlogged -= 1
            self.grant()
        finally:
            left = self.backlogs.pop(target, None) or deque()
            for frame, message, _ in left:
                self.backlogged -= 1
                if isinstance(frame, Call):
                    self._exit_reply(frame.node, frame.cid, target.exit_reason or "noproc")
                elif isinstance(frame, ExitSignal):
                    continue  # a dead actor ignores a signal
                else:
                    self._dead(frame, message, "noproc")
                    if isinstance(frame, Cast):
                        self._unqueue(frame)
                        self._consumed(frame)
            self.grant()  # the senders learn their frames no longer wait here

    @staticmethod
    async def _put_waiting(target: ActorRef, item: Any, timeout: float | None) -> bool:
        """Queue ``item``, waiting for room; ``False`` if the actor exited first (raises
        ``Expired`` once ``timeout`` has passed). Only a ``BLOCK`` mailbox has a backlog,
        so the offer is accepted, waits or finds the actor gone."""
        status = target._offer(item)
        if status == WAIT:
            return await target._offer_blocking(item, 0, timeout)
        return status != GONE

    def _unqueue(self, frame: Cast) -> None:
        if frame.flow is not None:
            inflow = self.inflows.get((frame.node, frame.flow))
            if inflow is not None and inflow.queued:
                inflow.queued -= 1

    # ------------------------------------------------------------------ stop, monitors

    def _on_stop(self, frame: Stop) -> None:
        broker = self.broker
        reason = reason_from_wire(broker.codec, frame.why, broker.remote_actors)
        target = broker.remote_actors.resolve_local(frame.to)
        if target is None:
            if broker._exits_pending():  # it may have just exited: its name goes first
                self._spawn(self._stopped_already, frame.node, frame.cid)
            else:
                self._reply(frame.node, frame.cid, "ok", None)
            return
        self._spawn(self._stop_for, frame.node, frame.cid, target, reason)

    async def _stopped_already(self, peer: str, cid: int) -> None:
        await self.broker._exits_settled(None)
        self._reply(peer, cid, "ok", None)

    async def _stop_for(self, peer: str, cid: int, target: ActorRef, reason: Any) -> None:
        # ActorRef.stop returns once the exit's releases are done in Redis too (a global
        # name is free when the caller's stop returns).
        try:
            await target.stop(reason)
        except ActorExited as exc:  # it exited with another reason (terminate raised)
            self._exit_reply(peer, cid, exc.reason)
            return
        self._reply(peer, cid, "ok", None)

    def _on_exit(self, frame: ExitSignal) -> None:
        """An exit signal from another node (``erlang:exit/2``): the local rules apply
        (``ActorRef._signal``); the sender is a remote ref, never the target's parent."""
        broker = self.broker
        refs = broker.remote_actors
        target = refs.resolve_local(frame.to)
        if target is None:
            return  # a dead actor ignores a signal
        reason = reason_from_wire(broker.codec, frame.why, refs)
        sender: Any = None if frame.sender is None else refs._ref_from_wire(ref_tree(frame.sender))
        if (
            target in self.backlogs
            and self.backlogged < self.inbound_limit
            and not (isinstance(reason, str) and reason == "kill")
            and target.statistics().trap_exit
        ):
            # Trapped, the signal becomes a message: after the casts waiting here for room
            # in its mailbox, as Erlang orders the signals between two processes. (Any
            # other signal acts at once: what waits here would be discarded anyway.)
            self._queue(target, frame, (sender, reason))
            return
        target._signal(sender, reason, linked=False)

    def _on_monitor(self, frame: Monitor) -> None:
        broker = self.broker
        peer, mid = frame.node, frame.mid
        target = broker.remote_actors.resolve_local(frame.to)
        if target is None:
            self._answer(peer, self._down_frame(mid, "noproc"))
            return
        if (peer, mid) in self.mon_in:
            return

        def deliver(down: Down) -> None:
            if self.mon_in.pop((peer, mid), None) is not None:
                if broker._exits_pending():
                    # Told once the exit's releases are done: a watcher that claims the
                    # name on its Down finds it free.
                    self._spawn(self._down_later, peer, mid, down.reason)
                else:
                    self._answer(peer, self._down_frame(mid, down.reason))

        self.mon_in[(peer, mid)] = (target, None)
        local = target._add_monitor(deliver)
        if (peer, mid) in self.mon_in:
            self.mon_in[(peer, mid)] = (target, local)

    async def _down_later(self, peer: str, mid: int, reason: Any) -> None:
        await self.broker._exits_settled(None)
        self._answer(peer, self._down_frame(mid, reason))

    def on_demonitor(self, peer: str, mid: int) -> None:
        entry = self.mon_in.pop((peer, mid), None)
        if entry is not None and entry[1] is not None:
            entry[0]._remove_monitor(entry[1])

    def _down_frame(self, mid: int, reason: Any) -> DownNotice:
        broker = self.broker
        why = reason_to_wire(broker.codec, reason, broker.node_name, broker.remote_actors)
        return DownNotice(mid=mid, why=why, **broker._me)

    def peer_down(self, peer: str) -> None:
        for key in [k for k in self.mon_in if k[0] == peer]:
            actor, monitor = self.mon_in.pop(key)
            if monitor is not None:
                actor._remove_monitor(monitor)
        for key in [k for k in self.inflows if k[0] == peer]:
            del self.inflows[key]

    def _on_whereis(self, frame: Whereis) -> None:
        broker = self.broker
        node = broker._node
        ref = node.whereis(frame.name) if node is not None else None
        if ref is not None:
            broker.remote_actors.exported[ref.id] = ref
        self._answer(
            frame.node,
            Where(
                cid=frame.cid,
                name=frame.name,
                actor=ref.id if ref is not None else None,
                **broker._me,
            ),
        )

    # ------------------------------------------------------------------ tasks

    def _spawn(self, function: Any, *args: Any) -> None:
        task_group = self.broker.session.task_group
        if task_group is not None:
            task_group.start_soon(function, *args)


def _stops(request: Any) -> bool:
    """Whether answering ``request`` tells the caller an actor has stopped (a supervisor's
    ``terminate_child``): its answer waits for the exit's releases, as a stop's does."""
    return isinstance(request, _Call) and request.op == TerminateChild.wire_name
