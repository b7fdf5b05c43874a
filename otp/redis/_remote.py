"""Remote actors, the caller's side: the transport of :class:`otp.RemoteRef`.

It sends call, cast, send, stop, exit and monitor frames to the target's node and matches
the replies and ``down`` notices to the waiting callers and monitors. A ``send_request``
is a call nobody awaits here: its reply settles the :class:`otp.RequestId`'s slot, and the
pending entry goes with the answer (or with the target's node, or this node's connection).
It also writes and reads actor refs on the wire (the codec's ref lender), and answers
``whereis``.

* **Deadlines.** A call carries its deadline on the cluster clock (Redis' ``TIME``, which
  every node tracks), so the receiver can drop it once it is worthless whatever the hosts'
  clocks say. The caller's timeout covers the whole call: sending is queued, never awaited
  before the timeout starts.
* **Credits.** Casts and sends to one actor form a *flow*: at most ``window`` of them may
  be unconsumed at the receiver (not yet in the actor's mailbox). The receiver grants
  credit back as it delivers (``credit`` frames with the count consumed so far), so a full
  ``BLOCK`` mailbox on another node makes ``await ref.cast(...)`` wait, as a local one
  does. The receiver also says when frames of the flow start and stop waiting for room
  there (``blocked``): meanwhile ``cast_nowait``/``send_nowait`` raise
  :class:`otp.MailboxFull`, as a local one does at a full ``BLOCK`` mailbox. A flow that
  hears nothing for a while asks (``sync``); lost frames are forgiven.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from .._actor import ActorRef, Down, MonitorRef, _calling_actor
from .._backends import Expired
from .._broker import DeadLetter
from .._exceptions import ActorExited, CallTimeout, CodecError, MailboxFull
from .._mailbox import Overflow
from .._remote import RemoteRef
from .._requests import RequestId
from ._frames import (
    Call,
    Credit,
    Demonitor,
    DownNotice,
    ExitSignal,
    Monitor,
    Reply,
    Stop,
    Sync,
    Target,
    Where,
    Whereis,
    decode_ref,
    encode,
    malformed,
    post_tree,
    reason_from_wire,
    reason_to_wire,
    target_tree,
)
from ._naming import check_node_name

if TYPE_CHECKING:
    from .._backends import Promise
    from ._broker import RedisBroker

__all__ = ["RemoteActors", "exited"]

logger = logging.getLogger("otp.redis")


class _Gather:
    """Collects ``whereis`` answers: the first hit wins, all misses give ``None``."""

    __slots__ = ("asked", "misses", "promise")

    def __init__(self, promise: Promise, asked: set[str]) -> None:
        self.promise = promise
        self.asked = asked
        self.misses = 0

    def miss(self) -> None:
        self.misses += 1
        if self.misses >= len(self.asked):
            self.promise.resolve(None)


class _Answer(Protocol):
    """Where a reply goes: a call's promise, or a request's slot (``send_request``)."""

    def resolve(self, value: object) -> bool: ...

    def fail(self, exc: BaseException) -> bool: ...


class _Pending:
    """A call waiting for its reply. ``detached`` (a ``send_request``): nobody awaits it
    here, so the entry is removed when the answer (or the failure) arrives."""

    __slots__ = ("detached", "promise", "ref", "request")

    def __init__(
        self, promise: _Answer, ref: RemoteRef, request: Any, *, detached: bool = False
    ) -> None:
        self.promise = promise
        self.ref = ref
        self.request = request
        self.detached = detached


class _Flow:
    """The casts and sends of this node to one remote actor."""

    __slots__ = ("acked", "blocked", "id", "node", "sent", "to", "wake")

    def __init__(self, flow_id: int, node: str, to: dict[str, Any]) -> None:
        self.id = flow_id
        self.node = node
        self.to = to  # the target's tree, written once
        self.sent = 0  # sequence number of the last frame sent
        self.acked = 0  # frames the receiver consumed (or lost)
        self.blocked = False  # the receiver said: the actor's BLOCK mailbox is full
        self.wake = anyio.Event()

    def grant(self, upto: int) -> None:
        if upto > self.acked:
            self.acked = min(upto, self.sent)
            self.wake.set()

    def forgive(self) -> None:
        """The receiver is gone or reconnected: nothing is outstanding any more."""
        self.acked = self.sent
        self.blocked = False
        self.wake.set()


def exited(ref: RemoteRef, reason: Any) -> ActorExited:
    error = ActorExited(ref, reason)
    if isinstance(reason, BaseException):
        error.__cause__ = reason
    return error


class RemoteActors:
    """The caller's side of remote actor traffic for one node (see the module docs)."""

    def __init__(self, broker: RedisBroker, *, window: int) -> None:
        self.broker = broker
        self.window = window
        self.calls: dict[int, _Pending] = {}
        self.gathers: dict[int, _Gather] = {}
        # monitors this node holds on remote actors: id -> (deliver, ref, watcher, monitor)
        self.mon_out: dict[
            int, tuple[Callable[[Down], None], RemoteRef, ActorRef | None, MonitorRef]
        ] = {}
        self.exported: weakref.WeakValueDictionary[int, ActorRef] = weakref.WeakValueDictionary()
        # (node, name, id, incarnation) -> its flow; flow id -> flow
        self.flows: dict[tuple[Any, ...], _Flow] = {}
        self.flow_ids: dict[int, _Flow] = {}
        self.credit_waits = 0

    # ------------------------------------------------------------------ failures

    def connection_lost(self) -> None:
        for cid, pending in list(self.calls.items()):
            self._settled(cid, pending)
            pending.promise.fail(exited(pending.ref, "noconnection"))
        for gather in list(self.gathers.values()):
            gather.promise.resolve(None)
        for mid in list(self.mon_out):
            self.fire_monitor(mid, "noconnection", tell=True)
        for flow in self.flows.values():
            flow.forgive()

    def peer_down(self, peer: str) -> None:
        for cid, pending in list(self.calls.items()):
            if pending.ref.node == peer:
                self._settled(cid, pending)
                pending.promise.fail(exited(pending.ref, "nodedown"))
        for gather in list(self.gathers.values()):
            if peer in gather.asked:
                gather.miss()
        for mid, (_, ref, _, _) in list(self.mon_out.items()):
            if ref.node == peer:
                self.fire_monitor(mid, "nodedown", tell=False)
        for key in [k for k, flow in self.flows.items() if flow.node == peer]:
            flow = self.flows.pop(key)
            self.flow_ids.pop(flow.id, None)
            flow.forgive()

    # ------------------------------------------------------------------ refs on the wire

    def _ref_to_wire(self, ref: Any) -> dict[str, Any]:
        broker = self.broker
        if isinstance(ref, RemoteRef):
            # A ref another broker made keeps its coordinates.
            tree = {"n": ref.node, "i": ref.incarnation, "a": ref.id, "nm": ref.name}
        elif isinstance(ref, ActorRef):
            if broker._node is None or ref._node is not broker._node:
                raise CodecError(
                    "unencodable", f"{ref!r} belongs to another node than this broker's"
                )
            self.exported[ref.id] = ref
            tree = {"n": broker.node_name, "i": broker.incarnation, "a": ref.id, "nm": ref.name}
        else:
            raise CodecError("unencodable", f"{ref!r} is not an actor ref")
        return {k: v for k, v in tree.items() if v is not None}

    def _ref_from_wire(self, tree: dict[str, Any]) -> Any:
        broker = self.broker
        wire = decode_ref(tree)
        if wire.node == broker.node_name and wire.incarnation in (None, broker.incarnation):
            local = self.resolve_local(Target(name=wire.name, id=wire.id))
            if local is not None:
                return local
            ref = RemoteRef(self, wire.node, wire.name, wire.id, wire.incarnation)
            ref._mark_exited("noproc")
            return ref
        return RemoteRef(self, wire.node, wire.name, wire.id, wire.incarnation)

    @staticmethod
    def target_of(ref: RemoteRef) -> Target:
        return Target(name=ref.name, id=ref.id, incarnation=ref.incarnation)

    def resolve_local(self, to: Target) -> ActorRef | None:
        """The live local actor a target names, or ``None``."""
        broker = self.broker
        node = broker._node
        if node is None:
            return None
        if to.incarnation is not None and to.incarnation != broker.incarnation:
            return None
        ref: Any = None
        if to.id is not None:
            ref = self.exported.get(to.id)
            if ref is None and to.name is not None:
                held = node.whereis(to.name)
                if held is not None and held.id == to.id:
                    ref = held
        elif to.name is not None:
            ref = node.whereis(to.name)
        if ref is None or not ref.alive:
            return None
        return ref  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ lookups

    def remote(self, name: str, node: str) -> RemoteRef:
        if not isinstance(name, str) or not name:
            raise TypeError(f"an actor name must be a non-empty str, not {name!r}")
        check_node_name(node)
        return RemoteRef(self, node, name)

    async def whereis(
        self, name: str, node: str | None, timeout: float
    ) -> ActorRef | RemoteRef | None:
        broker = self.broker
        local_node = broker._require_node()
        if node is None or node == broker.node_name:
            local = local_node.whereis(name)
            if local is not None:
                self.exported[local.id] = local
                return local
            if node is not None:
                return None
            asked = set(await broker.nodes()) - {broker.node_name}
        else:
            asked = {check_node_name(node)}
        session = broker.session
        if not asked or not session.connected:
            return None
        cid = next(broker._counter)
        gather = _Gather(broker._backend().promise(), asked)
        self.gathers[cid] = gather
        data = broker._dumps(encode(Whereis(cid=cid, name=name, **broker._me)))

        def sent(received: int) -> None:
            if received <= 0:
                gather.miss()

        try:
            for peer in sorted(asked):
                session.send(broker.names.control(peer), data, sent)
            try:
                found: RemoteRef | None = await gather.promise.wait(timeout)
            except Expired:
                return None
        finally:
            self.gathers.pop(cid, None)
        return found

    def on_where(self, frame: Where) -> None:
        gather = self.gathers.get(frame.cid)
        if gather is None:
            return
        if frame.actor is None:
            gather.miss()
            return
        gather.promise.resolve(
            RemoteRef(self, frame.node, frame.name, frame.actor, frame.incarnation)
        )

    # ------------------------------------------------------------------ the transport

    def _remote_node_alive(self, ref: RemoteRef) -> bool:
        return self.broker.membership.alive(ref)

    def _unreachable(self, ref: RemoteRef) -> str | None:
        if ref._exit_reason is not None:
            return None
        why = self.broker.membership.why_unreachable(ref)
        if why is not None:
            return why
        if not self.broker.session.connected:
            return "noconnection"
        return None

    def _sent_to(self, ref: RemoteRef, fail: Callable[[str], None]) -> Callable[[int], None]:
        def sent(received: int) -> None:
            if received < 0:
                fail("noconnection")
            elif received == 0:
                # Nobody listens on that node's channel: it is not running.
                fail("nodedown")

        return sent

    async def _remote_call(self, ref: RemoteRef, request: Any, timeout: float | None) -> Any:
        broker = self.broker
        backend = broker._backend()
        # The wait for the reply is this call's checkpoint; a call refused at once
        # checkpoints before it raises.
        if ref._exit_reason is not None:
            await backend.checkpoint()
            raise exited(ref, ref._exit_reason)
        why = self._unreachable(ref)
        if why is not None:
            await backend.checkpoint()
            raise exited(ref, why)
        if timeout is not None and not timeout > 0:
            await backend.checkpoint()
            raise CallTimeout(ref, 0.0 if timeout != timeout else timeout, request)
        tree = broker.codec.to_wire(request, refs=self)
        cid = next(broker._counter)
        promise = broker._backend().promise()
        self.calls[cid] = pending = _Pending(promise, ref, request)
        deadline = None if timeout is None else broker._cluster_time() + timeout
        frame = Call(cid=cid, to=self.target_of(ref), message=tree, deadline=deadline, **broker._me)
        try:
            data = broker._dumps(encode(frame))
            channel = broker.names.control(ref.node)
            sent = self._sent_to(ref, lambda why: _fail(pending.promise, exited(ref, why)))
            session = broker.session
            left = timeout
            if session.writing or session.outbox:
                session.send(channel, data, sent)  # behind what is queued, in order
            else:
                # Nothing queued: publish from this task (send_now), within the timeout,
                # which covers the whole call (a stalled Redis cannot hold it longer).
                start = anyio.current_time()
                with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
                    await session.send_now(channel, data, sent)
                if scope.cancelled_caught:
                    raise CallTimeout(ref, timeout or 0.0, request)
                if timeout is not None:
                    left = max(0.0, timeout - (anyio.current_time() - start))
            try:
                return await promise.wait(left)
            except Expired:
                raise CallTimeout(ref, timeout or 0.0, request) from None
        finally:
            self.calls.pop(cid, None)

    def _settled(self, cid: int, pending: _Pending) -> None:
        """A detached call's answer arrived: forget it (an awaited call forgets its own)."""
        if pending.detached:
            self.calls.pop(cid, None)

    def _remote_send_request(self, ref: RemoteRef, request: Any) -> RequestId[Any]:
        broker = self.broker
        node = broker._require_node()
        handle: RequestId[Any] = RequestId(ref, request, broker._backend(), node._deadlines)
        slot = handle._slot
        why = ref._exit_reason if ref._exit_reason is not None else self._unreachable(ref)
        if why is not None:
            slot.fail(exited(ref, why))
            return handle
        # No deadline: as locally, a request waits for its answer as long as the actor
        # lives (the handle's wait/receive timeouts are the caller's own).
        cid = next(broker._counter)
        tree = broker.codec.to_wire(request, refs=self)
        frame = Call(cid=cid, to=self.target_of(ref), message=tree, deadline=None, **broker._me)
        data = broker._dumps(encode(frame))  # CodecError (oversized) before anything is kept
        pending = self.calls[cid] = _Pending(slot, ref, request, detached=True)

        def fail(why: str) -> None:
            self._settled(cid, pending)
            slot.fail(exited(ref, why))

        broker.session.send(broker.names.control(ref.node), data, self._sent_to(ref, fail))
        return handle

    def _remote_exit(self, ref: RemoteRef, reason: Any) -> None:
        if ref._exit_reason is not None or self._unreachable(ref) is not None:
            return  # a dead actor ignores a signal; one out of reach cannot get it
        broker = self.broker
        sender = _calling_actor()
        frame = ExitSignal(
            to=self.target_of(ref),
            why=reason_to_wire(broker.codec, reason, broker.node_name, self),
            sender=None if sender is None else decode_ref(self._ref_to_wire(sender)),
            **broker._me,
        )
        broker.session.post(ref.node, encode(frame))

    def _flow(self, ref: RemoteRef) -> _Flow:
        key = (ref.node, ref.name, ref.id, ref.incarnation)
        flow = self.flows.get(key)
        if flow is None:
            to = target_tree(self.target_of(ref))
            flow = self.flows[key] = _Flow(next(self.broker._counter), ref.node, to)
            self.flow_ids[flow.id] = flow
        return flow

    def _post_frame(self, ref: RemoteRef, kind: str, message: Any, flow: _Flow) -> bytes:
        broker = self.broker
        me = broker._me
        tree = broker.codec.to_wire(message, refs=self)
        flow.sent += 1
        frame = post_tree(kind, me["node"], me["incarnation"], flow.to, tree, flow.id, flow.sent)
        return broker._dumps(frame)

    async def _remote_post(self, ref: RemoteRef, kind: str, message: Any) -> None:
        broker = self.broker
        backend = broker._backend()
        if backend.budget_spent():  # an amortised checkpoint, as a local cast's
            await backend.checkpoint()
        why = "noproc" if ref._exit_reason is not None else self._unreachable(ref)
        if why is None:
            flow = self._flow(ref)
            if flow.sent - flow.acked >= self.window:
                await self._wait_for_credit(ref, flow)
            session = broker.session
            if len(session.outbox) > session.outbox_limit:
                await session.wait_for_room()
            why = self._unreachable(ref)
            if why is None:
                self._send_post(ref, kind, message, flow)
                return
        broker._dead_letter(DeadLetter(message, ref, why))

    def _send_post(self, ref: RemoteRef, kind: str, message: Any, flow: _Flow) -> None:
        broker = self.broker
        data = self._post_frame(ref, kind, message, flow)

        def sent(received: int) -> None:
            if received <= 0:
                flow.grant(flow.sent)
                why = "noconnection" if received < 0 else "nodedown"
                broker._dead_letter(DeadLetter(message, ref, why))

        broker.session.send(broker.names.control(ref.node), data, sent)

    async def _wait_for_credit(self, ref: RemoteRef, flow: _Flow) -> None:
        # A full BLOCK mailbox over there: wait as a local sender would. Ask now and then
        # in case a credit frame was lost.
        broker = self.broker
        self.credit_waits += 1
        stall = max(broker.heartbeat, 0.1)
        while flow.sent - flow.acked >= self.window:
            if self._unreachable(ref) is not None:
                return
            flow.wake = anyio.Event()
            with anyio.move_on_after(stall) as scope:
                await flow.wake.wait()
            if scope.cancelled_caught:
                data = broker._dumps(encode(Sync(flow=flow.id, n=flow.sent, **broker._me)))
                broker.session.send(broker.names.control(ref.node), data)

    def on_credit(self, frame: Credit) -> None:
        flow = self.flow_ids.get(frame.flow)
        if flow is not None and flow.node == frame.node:
            flow.grant(frame.n)
            flow.blocked = frame.blocked

    def _remote_post_nowait(self, ref: RemoteRef, kind: str, message: Any) -> None:
        why = "noproc" if ref._exit_reason is not None else self._unreachable(ref)
        if why is not None:
            self.broker._dead_letter(DeadLetter(message, ref, why))
            return
        flow = self._flow(ref)
        if flow.blocked:
            # As a local cast_nowait at a full BLOCK mailbox: the receiver said that
            # actor's mailbox is full and this flow's frames wait for room there (a
            # burst to an actor with room never raises). ``await cast`` waits instead.
            raise MailboxFull(ref, None, Overflow.BLOCK)
        self._send_post(ref, kind, message, flow)

    async def _remote_stop(self, ref: RemoteRef, reason: Any, timeout: float | None) -> None:
        broker = self.broker
        await broker._backend().checkpoint()
        if ref._exit_reason is not None or not self._remote_node_alive(ref):
            return
        if not broker.session.connected:
            raise CallTimeout(ref, timeout or 0.0, "stop")
        cid = next(broker._counter)
        promise = broker._backend().promise()
        self.calls[cid] = _Pending(promise, ref, "stop")
        frame = Stop(
            cid=cid,
            to=self.target_of(ref),
            why=reason_to_wire(broker.codec, reason, broker.node_name, self),
            **broker._me,
        )

        def sent(received: int) -> None:
            if received == 0:
                promise.resolve(None)  # nobody there: it is not running
            elif received < 0:
                promise.fail(Expired())

        try:
            broker.session.send(broker.names.control(ref.node), broker._dumps(encode(frame)), sent)
            try:
                await promise.wait(timeout)
            except Expired:
                raise CallTimeout(ref, timeout or 0.0, "stop") from None
            except ActorExited:
                return
        finally:
            self.calls.pop(cid, None)

    def _remote_monitor(
        self, ref: RemoteRef, deliver: Callable[[Down], None], watcher: ActorRef | None
    ) -> MonitorRef:
        broker = self.broker
        monitor = MonitorRef(next(broker._counter), ref)
        reason: Any = ref._exit_reason
        if reason is None:
            reason = self._unreachable(ref)
        if reason is not None:
            deliver(Down(ref, reason, monitor))
            return monitor
        self.mon_out[monitor.id] = (deliver, ref, watcher, monitor)
        broker.session.post(
            ref.node, encode(Monitor(mid=monitor.id, to=self.target_of(ref), **broker._me))
        )
        return monitor

    def _remote_demonitor(self, monitor: MonitorRef) -> bool:
        entry = self.mon_out.pop(monitor.id, None)
        if entry is None:
            return False
        broker = self.broker
        broker.session.post(entry[1].node, encode(Demonitor(mid=monitor.id, **broker._me)))
        return True

    def fire_monitor(self, mid: int, reason: Any, *, tell: bool) -> None:
        entry = self.mon_out.pop(mid, None)
        if entry is None:
            return
        deliver, ref, watcher, monitor = entry
        if reason not in ("nodedown", "noconnection"):
            ref._mark_exited(reason)
        if watcher is not None:
            watcher._watching.pop(monitor, None)
        if tell:  # the remote side may still hold it
            broker = self.broker
            broker.session.post(ref.node, encode(Demonitor(mid=mid, **broker._me)))
        deliver(Down(ref, reason, monitor))

    def on_down(self, frame: DownNotice) -> None:
        entry = self.mon_out.get(frame.mid)
        if entry is None or entry[1].node != frame.node:
            return
        reason = reason_from_wire(self.broker.codec, frame.why, self)
        self.fire_monitor(frame.mid, reason, tell=False)

    def on_reply(self, frame: Reply) -> None:
        pending = self.calls.get(frame.cid)
        if pending is None or pending.ref.node != frame.node:
            return  # the caller gave up: a late reply is dropped, as locally
        self._settled(frame.cid, pending)
        codec = self.broker.codec
        ref = pending.ref
        status = frame.status
        if status == "ok":
            pending.promise.resolve(codec.from_wire(frame.value, refs=self))
        elif status == "exit":
            reason = reason_from_wire(codec, frame.value, self)
            if reason == "noproc" or ref.id is not None:
                ref._mark_exited(reason)
            pending.promise.fail(exited(ref, reason))
        elif status == "full":
            info = frame.value
            if type(info) is not list or len(info) != 2:
                raise malformed("a 'full' reply holds [capacity, overflow]")
            capacity = info[0] if type(info[0]) is int and info[0] >= 0 else None
            try:
                overflow: Any = Overflow(info[1])
            except (ValueError, TypeError):
                overflow = None
            pending.promise.fail(MailboxFull(ref, capacity, overflow))
        elif status == "raise":
            try:
                error = codec.from_wire(frame.value, refs=self)
                if not isinstance(error, BaseException):
                    raise malformed("a 'raise' reply holds an exception")
            except CodecError as bad:
                pending.promise.fail(bad)  # the caller learns why now, not by its timeout
                raise
            pending.promise.fail(error)
        else:
            text = frame.value if type(frame.value) is str else "the reply could not be encoded"
            pending.promise.fail(CodecError("unencodable", text[:1000]))

    # ------------------------------------------------------------------ statistics

    def waiting_for_credit(self) -> int:
        return sum(1 for flow in self.flows.values() if flow.sent - flow.acked >= self.window)


def _fail(promise: _Answer, error: BaseException) -> None:
    promise.fail(error)
