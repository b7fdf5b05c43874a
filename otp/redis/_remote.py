"""Remote actors: call, cast, send, stop and monitor across nodes, both ways.

Outgoing, it is the transport of :class:`otp.RemoteRef`: it sends frames to the target's
node and matches the replies and ``down`` notices to the waiting callers and monitors.
Incoming, it hands calls, casts, sends and stops to local actors, in arrival order, and
answers. It also writes and reads actor refs on the wire (the codec's ref lender).
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .._actor import ActorRef, Down, MonitorRef
from .._backends import Expired
from .._broker import DeadLetter
from .._exceptions import ActorExited, CallTimeout, CodecError, MailboxFull
from .._mailbox import CALL, Full, Overflow
from .._remote import RemoteRef
from ._frames import get, malformed, opt, reason_from_wire, reason_to_wire
from ._naming import check_node_name

if TYPE_CHECKING:
    from .._backends import Backend, Promise
    from ._broker import RedisBroker

__all__ = ["RemoteActors"]

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


class _Pending:
    __slots__ = ("promise", "ref", "request")

    def __init__(self, promise: Promise, ref: RemoteRef, request: Any) -> None:
        self.promise = promise
        self.ref = ref
        self.request = request


def exited(ref: RemoteRef, reason: Any) -> ActorExited:
    error = ActorExited(ref, reason)
    if isinstance(reason, BaseException):
        error.__cause__ = reason
    return error


class RemoteActors:
    """Remote actor traffic of one node (see the module docs)."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.calls: dict[int, _Pending] = {}
        self.gathers: dict[int, _Gather] = {}
        # monitors this node holds on remote actors: id -> (deliver, ref, watcher, monitor)
        self.mon_out: dict[
            int, tuple[Callable[[Down], None], RemoteRef, ActorRef | None, MonitorRef]
        ] = {}
        # monitors other nodes hold on local actors: (node, id) -> (actor, local monitor)
        self.mon_in: dict[tuple[str, int], tuple[ActorRef, MonitorRef]] = {}
        self.exported: weakref.WeakValueDictionary[int, ActorRef] = weakref.WeakValueDictionary()
        self.lane: deque[dict[str, Any]] = deque()
        self.lane_wake = anyio.Event()

    def _me(self) -> dict[str, Any]:
        return {"f": self.broker.node_name, "fi": self.broker.incarnation}

    # ------------------------------------------------------------------ failures

    def connection_lost(self) -> None:
        for pending in list(self.calls.values()):
            pending.promise.fail(exited(pending.ref, "noconnection"))
        for gather in list(self.gathers.values()):
            gather.promise.resolve(None)
        for mid in list(self.mon_out):
            self.fire_monitor(mid, "noconnection", tell=True)

    def peer_down(self, peer: str) -> None:
        for pending in list(self.calls.values()):
            if pending.ref.node == peer:
                pending.promise.fail(exited(pending.ref, "nodedown"))
        for gather in list(self.gathers.values()):
            if peer in gather.asked:
                gather.miss()
        for mid, (_, ref, _, _) in list(self.mon_out.items()):
            if ref.node == peer:
                self.fire_monitor(mid, "nodedown", tell=False)
        for key in [k for k in self.mon_in if k[0] == peer]:
            actor, monitor = self.mon_in.pop(key)
            actor._monitors.pop(monitor, None)

    # ------------------------------------------------------------------ refs on the wire

    def _ref_to_wire(self, ref: Any) -> dict[str, Any]:
        broker = self.broker
        if isinstance(ref, RemoteRef):
            # A ref another broker made keeps its coordinates.
            return {"n": ref.node, "i": ref.incarnation, "a": ref.id, "nm": ref.name}
        if isinstance(ref, ActorRef):
            if broker._node is None or ref._node is not broker._node:
                raise CodecError(
                    "unencodable", f"{ref!r} belongs to another node than this broker's"
                )
            self.exported[ref.id] = ref
            return {"n": broker.node_name, "i": broker.incarnation, "a": ref.id, "nm": ref.name}
        raise CodecError("unencodable", f"{ref!r} is not an actor ref")

    def _ref_from_wire(self, tree: dict[str, Any]) -> Any:
        broker = self.broker
        node = get(tree, "n", str)
        incarnation = opt(tree, "i", str)
        actor_id = opt(tree, "a", int)
        name = opt(tree, "nm", str)
        if actor_id is None and name is None:
            raise malformed("an actor ref needs a name or an id")
        if node == broker.node_name and incarnation in (None, broker.incarnation):
            local = self.resolve_local({"nm": name, "a": actor_id, "i": incarnation})
            if local is not None:
                return local
            ref = RemoteRef(self, node, name, actor_id, incarnation)
            ref._mark_exited("noproc")
            return ref
        return RemoteRef(self, node, name, actor_id, incarnation)

    @staticmethod
    def target_of(ref: RemoteRef) -> dict[str, Any]:
        return {"nm": ref.name, "a": ref.id, "i": ref.incarnation}

    def resolve_local(self, to: Mapping[str, Any]) -> ActorRef | None:
        broker = self.broker
        node = broker._node
        if node is None:
            return None
        incarnation = to.get("i")
        if incarnation is not None and incarnation != broker.incarnation:
            return None
        actor_id = to.get("a")
        name = to.get("nm")
        ref: Any = None
        if actor_id is not None:
            ref = self.exported.get(actor_id)
            if ref is None and isinstance(name, str):
                held = node.whereis(name)
                if held is not None and held.id == actor_id:
                    ref = held
        elif isinstance(name, str):
            ref = node.whereis(name)
        if ref is None or not ref._alive:
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
                return local  # type: ignore[no-any-return]
            if node is not None:
                return None
            asked = set(await broker.nodes()) - {broker.node_name}
        else:
            asked = {check_node_name(node)}
        session = broker.session
        if not asked or not session.connected:
            return None
        client = session.client
        assert client is not None
        cid = next(broker._counter)
        gather = _Gather(broker._backend().promise(), asked)
        self.gathers[cid] = gather
        data = broker._dumps({"k": "whereis", "c": cid, "nm": name, **self._me()})
        try:
            for peer in sorted(asked):
                try:
                    received = await client.publish(broker.names.control(peer), data)
                except Exception:
                    received = 0
                if not received:
                    gather.miss()
            try:
                found: RemoteRef | None = await gather.promise.wait(timeout)
            except Expired:
                return None
        finally:
            self.gathers.pop(cid, None)
        if found is not None:
            broker.membership.watch(found.node, found.incarnation)
        return found

    # ------------------------------------------------------------------ the transport

    def _remote_node_alive(self, ref: RemoteRef) -> bool:
        return self.broker.membership.alive(ref)

    def _unreachable(self, ref: RemoteRef) -> str | None:
        if ref._exit_reason is not None:
            return None
        if not self._remote_node_alive(ref):
            return "nodedown"
        if not self.broker.session.connected:
            return "noconnection"
        return None

    async def _remote_call(self, ref: RemoteRef, request: Any, timeout: float | None) -> Any:
        broker = self.broker
        await broker._backend().checkpoint()
        if ref._exit_reason is not None:
            raise exited(ref, ref._exit_reason)
        why = self._unreachable(ref)
        if why is not None:
            raise exited(ref, why)
        tree = broker.codec.to_wire(request, refs=self)
        cid = next(broker._counter)
        promise = broker._backend().promise()
        self.calls[cid] = _Pending(promise, ref, request)
        broker.membership.watch(ref.node, ref.incarnation)
        try:
            received = await broker.session.publish_control(
                ref.node,
                {
                    "k": "call",
                    "c": cid,
                    "to": self.target_of(ref),
                    "m": tree,
                    "tm": timeout,
                    **self._me(),
                },
            )
            if received <= 0:
                raise exited(ref, "noconnection" if received < 0 else "nodedown")
            try:
                return await promise.wait(timeout)
            except Expired:
                raise CallTimeout(ref, timeout or 0.0, request) from None
        finally:
            self.calls.pop(cid, None)

    def _post_frame(self, ref: RemoteRef, kind: str, message: Any) -> dict[str, Any]:
        return {
            "k": kind,
            "to": self.target_of(ref),
            "m": self.broker.codec.to_wire(message, refs=self),
            **self._me(),
        }

    async def _remote_post(self, ref: RemoteRef, kind: str, message: Any) -> None:
        broker = self.broker
        await broker._backend().checkpoint()
        frame = self._post_frame(ref, kind, message)
        why = "noproc" if ref._exit_reason is not None else self._unreachable(ref)
        if why is None:
            received = await broker.session.publish_control(ref.node, frame)
            if received > 0:
                return
            why = "noconnection" if received < 0 else "nodedown"
        broker._dead_letter(DeadLetter(message, ref, why))

    def _remote_post_nowait(self, ref: RemoteRef, kind: str, message: Any) -> None:
        frame = self._post_frame(ref, kind, message)
        if ref._exit_reason is not None or not self._remote_node_alive(ref):
            self.broker._dead_letter(DeadLetter(message, ref, "noproc"))
            return
        self.broker.session.post(ref.node, frame)

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
        broker.membership.watch(ref.node, ref.incarnation)
        try:
            received = await broker.session.publish_control(
                ref.node,
                {
                    "k": "stop",
                    "c": cid,
                    "to": self.target_of(ref),
                    "why": reason_to_wire(broker.codec, reason, broker.node_name, self),
                    **self._me(),
                },
            )
            if received == 0:
                return  # nobody there: it is not running
            if received < 0:
                raise CallTimeout(ref, timeout or 0.0, "stop")
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
        monitor = MonitorRef(next(broker._counter), ref)  # type: ignore[arg-type]
        reason: Any = None
        if ref._exit_reason is not None:
            reason = ref._exit_reason
        elif not self._remote_node_alive(ref):
            reason = "nodedown"
        elif not broker.session.connected:
            reason = "noconnection"
        if reason is not None:
            deliver(Down(ref, reason, monitor))  # type: ignore[arg-type]
            return monitor
        self.mon_out[monitor.id] = (deliver, ref, watcher, monitor)
        broker.membership.watch(ref.node, ref.incarnation)
        broker.session.post(
            ref.node, {"k": "mon", "mid": monitor.id, "to": self.target_of(ref), **self._me()}
        )
        return monitor

    def _remote_demonitor(self, monitor: MonitorRef) -> bool:
        entry = self.mon_out.pop(monitor.id, None)
        if entry is None:
            return False
        ref = entry[1]
        self.broker.session.post(ref.node, {"k": "demon", "mid": monitor.id, **self._me()})
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
            self.broker.session.post(ref.node, {"k": "demon", "mid": mid, **self._me()})
        deliver(Down(ref, reason, monitor))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ control frames in

    def on_control(self, data: bytes) -> None:
        broker = self.broker
        try:
            frame = broker.codec.loads(data)
            if type(frame) is not dict:
                raise malformed("a control frame is a map")
            kind = get(frame, "k", str)
            broker.membership.saw(frame)
            if kind in ("call", "cast", "send", "stop"):
                get(frame, "to", dict)
                get(frame, "f", str)
                self.lane.append(frame)
                self.lane_wake.set()
            elif kind == "reply":
                self._on_reply(frame)
            elif kind == "mon":
                self._on_monitor(frame)
            elif kind == "demon":
                entry = self.mon_in.pop((get(frame, "f", str), get(frame, "mid", int)), None)
                if entry is not None:
                    entry[0]._monitors.pop(entry[1], None)
            elif kind == "down":
                mid = get(frame, "mid", int)
                reason = reason_from_wire(broker.codec, frame.get("why"), self)
                self.fire_monitor(mid, reason, tell=False)
            elif kind == "whereis":
                self._on_whereis(frame)
            elif kind == "where":
                self._on_where(frame)
            elif kind == "bye":
                peer = get(frame, "f", str)
                if peer in broker.membership.peers:
                    broker.membership.nodedown(peer, opt(frame, "fi", str), left=True)
            else:
                raise malformed(f"unknown frame kind {kind!r}")
        except CodecError as error:
            broker._wire_error(error, data, None)

    def _on_reply(self, frame: Mapping[str, Any]) -> None:
        codec = self.broker.codec
        pending = self.calls.get(get(frame, "c", int))
        if pending is None:
            return  # the caller gave up: a late reply is dropped, as locally
        ref = pending.ref
        if "ok" in frame:
            value = codec.from_wire(frame["ok"], refs=self)
            pending.promise.resolve(value)
        elif "exit" in frame:
            reason = reason_from_wire(codec, frame["exit"], self)
            if reason == "noproc":
                ref._mark_exited("noproc")
            elif ref.id is not None:
                ref._mark_exited(reason)
            pending.promise.fail(exited(ref, reason))
        elif "full" in frame:
            info = get(frame, "full", list)
            capacity = info[0] if info and type(info[0]) is int else None
            try:
                overflow: Any = Overflow(info[1])
            except (IndexError, ValueError):
                overflow = None
            pending.promise.fail(MailboxFull(ref, capacity, overflow))
        elif "err" in frame:
            pending.promise.fail(CodecError("unencodable", str(frame["err"])))
        else:
            raise malformed("a reply without a result")

    def _on_monitor(self, frame: Mapping[str, Any]) -> None:
        session = self.broker.session
        peer = get(frame, "f", str)
        mid = get(frame, "mid", int)
        target = self.resolve_local(get(frame, "to", dict))
        self.broker.membership.watch(peer, opt(frame, "fi", str))
        if target is None:
            session.post(peer, self._down_frame(mid, "noproc"))
            return

        def deliver(down: Down) -> None:
            if self.mon_in.pop((peer, mid), None) is not None:
                session.post(peer, self._down_frame(mid, down.reason))

        self.mon_in[(peer, mid)] = (target, None)  # type: ignore[assignment]
        local = target._add_monitor(deliver)
        if (peer, mid) in self.mon_in:
            self.mon_in[(peer, mid)] = (target, local)

    def _down_frame(self, mid: int, reason: Any) -> dict[str, Any]:
        broker = self.broker
        return {
            "k": "down",
            "mid": mid,
            "why": reason_to_wire(broker.codec, reason, broker.node_name, self),
            **self._me(),
        }

    def _on_whereis(self, frame: Mapping[str, Any]) -> None:
        broker = self.broker
        peer = get(frame, "f", str)
        name = get(frame, "nm", str)
        node = broker._node
        ref = node.whereis(name) if node is not None else None
        if ref is not None:
            self.exported[ref.id] = ref
        broker.session.post(
            peer,
            {
                "k": "where",
                "c": get(frame, "c", int),
                "nm": name,
                "a": ref.id if ref is not None else None,
                **self._me(),
            },
        )

    def _on_where(self, frame: Mapping[str, Any]) -> None:
        gather = self.gathers.get(get(frame, "c", int))
        if gather is None:
            return
        actor_id = opt(frame, "a", int)
        if actor_id is None:
            gather.miss()
            return
        gather.promise.resolve(
            RemoteRef(
                self,
                get(frame, "f", str),
                get(frame, "nm", str),
                actor_id,
                opt(frame, "fi", str),
            )
        )

    # ------------------------------------------------------------------ actors in

    async def lane_loop(self) -> None:
        lane = self.lane
        while True:
            while lane:
                frame = lane.popleft()
                try:
                    await self._on_actor_frame(frame)
                except CodecError as error:
                    self.broker._wire_error(error, b"", None)
            self.lane_wake = anyio.Event()
            if not lane:
                await self.lane_wake.wait()

    async def _on_actor_frame(self, frame: dict[str, Any]) -> None:
        broker = self.broker
        kind = frame["k"]
        peer: str = frame["f"]
        target = self.resolve_local(frame["to"])
        if kind == "stop":
            cid = get(frame, "c", int)
            reason = reason_from_wire(broker.codec, frame.get("why"), self)
            if target is None:
                await self._answer_frame(peer, {"k": "reply", "c": cid, "ok": None})
            else:
                task_group = broker.session.task_group
                assert task_group is not None
                task_group.start_soon(self._stop_for, peer, cid, target, reason)
            return
        try:
            message = broker.codec.from_wire(frame.get("m"), refs=self)
        except CodecError as error:
            if kind == "call" and type(frame.get("c")) is int:
                # The caller learns why at once (e.g. a class unknown here), not by timeout.
                text = f"node {broker.node_name!r} cannot decode the request: {error}"
                await self._answer_frame(peer, {"k": "reply", "c": frame["c"], "err": text})
            raise
        if kind == "call":
            await self._call_for(peer, frame, target, message)
            return
        if target is None:
            broker._dead_letter(
                DeadLetter(message, frame["to"].get("nm") or frame["to"].get("a"), "noproc")
            )
            return
        try:
            if kind == "cast":
                await target.cast(message)
            else:
                await target.send(message)
        except MailboxFull:
            broker._dead_letter(DeadLetter(message, target, "mailbox_full"))

    async def _call_for(
        self, peer: str, frame: dict[str, Any], target: ActorRef | None, request: Any
    ) -> None:
        cid = get(frame, "c", int)
        timeout = opt(frame, "tm", (int, float))
        if target is None:
            await self._answer_frame(peer, self._exit_reply(cid, "noproc"))
            return
        # Enqueue in arrival order (a cast then a call from one sender stay in order);
        # the reply is awaited in a task of its own.
        backend: Backend = target._backend
        caller = backend.promise()
        item = (CALL, request, caller)
        mailbox = target._mailbox
        try:
            mailbox.put(item)
        except Full:
            if mailbox._overflow is not Overflow.BLOCK:
                await self._answer_frame(
                    peer,
                    {"k": "reply", "c": cid, "full": [mailbox._capacity, mailbox._overflow.value]},
                )
                return
            if not await mailbox.put_blocking(item, backend):
                await self._answer_frame(peer, self._exit_reply(cid, target.exit_reason))
                return
        task_group = self.broker.session.task_group
        assert task_group is not None
        task_group.start_soon(self._reply_for, peer, cid, caller, timeout)

    def _exit_reply(self, cid: int, reason: Any) -> dict[str, Any]:
        broker = self.broker
        return {
            "k": "reply",
            "c": cid,
            "exit": reason_to_wire(broker.codec, reason, broker.node_name, self),
        }

    async def _reply_for(self, peer: str, cid: int, caller: Promise, timeout: float | None) -> None:
        try:
            value = await caller.wait(None if timeout is None else timeout + 1.0)
        except Expired:
            return  # the caller has given up too
        except ActorExited as exc:
            await self._answer_frame(peer, self._exit_reply(cid, exc.reason))
            return
        except MailboxFull as exc:
            policy = exc.policy.value if isinstance(exc.policy, Overflow) else None
            await self._answer_frame(peer, {"k": "reply", "c": cid, "full": [exc.capacity, policy]})
            return
        try:
            tree = self.broker.codec.to_wire(value, refs=self)
        except CodecError as error:
            logger.error("the reply to a call from node %r cannot be encoded: %s", peer, error)
            await self._answer_frame(peer, {"k": "reply", "c": cid, "err": str(error)})
            return
        await self._answer_frame(peer, {"k": "reply", "c": cid, "ok": tree})

    async def _stop_for(self, peer: str, cid: int, target: ActorRef, reason: Any) -> None:
        try:
            await target.stop(reason)
        except ActorExited as exc:  # it exited with another reason (terminate raised)
            await self._answer_frame(peer, self._exit_reply(cid, exc.reason))
            return
        await self._answer_frame(peer, {"k": "reply", "c": cid, "ok": None})

    async def _answer_frame(self, peer: str, frame: dict[str, Any]) -> None:
        frame.update(self._me())
        session = self.broker.session
        if await session.publish_control(peer, frame) < 0:
            session.post(peer, frame)  # retried once connected again
