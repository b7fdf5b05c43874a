"""Cluster primitives on Redis: what :class:`RedisBroker` adds for ``otp.Global`` names,
``node.groups`` and a ``broadcast`` that reaches every node.

The broker inherits :class:`ClusterPrimitives`, which composes :class:`GlobalNames`
(``_globals``) and :class:`GroupTable` (``_groups``) and runs one background loop per node
that

* renews, on every heartbeat and in one Lua call, the keys this node holds (its global
  names and its group memberships; a key that vanished with a Redis restart is written
  again, a global name another node took meanwhile is given up and its actor stopped);
* performs the releases queued from actors' exits (synchronous code), in order;
* serves the node's side of cluster-wide requests on its topic
  ``$otp.inbox.<node>.cluster`` (under its request inbox, so Redis carries it there): a
  ``broadcast`` (deliver to this node's workers and answer how many accepted) and the
  listing of this node's workers (for a ``broadcast`` with a ``where`` filter, applied on
  the broadcasting node to local and remote refs alike).

Cluster requests are published like any message (at most once), one to each live node,
with a ``reply_to`` inbox of the asking node; the asker waits for as many answers as Redis
says received the request, up to a timeout. Middleware runs once, on the broadcasting node.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from .._broker import BROADCAST, DeadLetter, Envelope, InMemoryBroker, message
from .._exceptions import CodecError, OTPError, RedisUnavailable
from ._describe import describe
from ._globals import GlobalNames
from ._groups import GroupTable
from ._naming import INBOX
from ._scripts import run

if TYPE_CHECKING:
    import coredis  # type: ignore[import-not-found, unused-ignore]

    from .._actor import ActorRef
    from .._codec import Codec
    from .._node import Node
    from ._membership import Membership
    from ._naming import Names
    from ._remote import RemoteActors
    from ._session import Session

__all__ = ["ClusterPrimitives"]

logger = logging.getLogger("otp.redis")


def _service(node: str) -> str:
    # A topic under the node's request inbox: Redis already carries it to that node alone.
    return f"{INBOX}{node}.cluster"


# KEYS: the global-name keys, then the member hashes; ARGV[1] the TTL in ms, ARGV[2] how
# many keys are global names, then their values. Returns per key: 1 renewed, 2 written
# again (it had vanished), 0 lost (another holder) or, for a hash, 0 when it vanished.
_RENEW: Final = """
local ttl = ARGV[1]
local globals = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  if i <= globals then
    local held = redis.call('GET', key)
    if held == ARGV[i + 2] then
      redis.call('PEXPIRE', key, ttl)
      out[i] = 1
    elseif not held then
      redis.call('SET', key, ARGV[i + 2], 'PX', ttl)
      out[i] = 2
    else
      out[i] = 0
    end
  else
    out[i] = redis.call('PEXPIRE', key, ttl)
  end
end
return out
"""


@message("$otp.cluster.broadcast")
@attrs.frozen
class ClusterBroadcast:
    """Deliver ``message`` to this node's workers (all, or those among ``targets``)."""

    message: Any
    targets: list[Any] | None = None


@message("$otp.cluster.workers")
@attrs.frozen
class ClusterWorkers:
    """List this node's live workers."""


class ClusterPrimitives(InMemoryBroker):
    """The base of :class:`RedisBroker` that adds the cluster primitives (see the module
    docs); what it needs of the broker is declared here and defined there."""

    # Provided by RedisBroker.
    session: Session
    names: Names
    membership: Membership
    remote_actors: RemoteActors
    codec: Codec
    prefix: str
    url: str
    node_name: str
    incarnation: str
    heartbeat: float
    node_ttl: float
    _counter: Iterator[int]
    _node: Node | None
    _require_node: Callable[[], Node]
    _emit: Callable[..., None]
    _frame_of: Callable[[Envelope], bytes]
    _send_envelope: Callable[[Envelope], Awaitable[int]]
    nodes: Callable[[], Awaitable[list[str]]]

    def __init__(self) -> None:
        super().__init__()
        self.global_names = GlobalNames(self)
        self.group_table = GroupTable(self)
        self._later: deque[tuple[Any, ...]] = deque()
        self._later_wake = anyio.Event()
        self._later_idle = anyio.Event()
        self._later_idle.set()
        # Releases queued and performed so far: a stop waits until those queued before it
        # are done (see _exits_settled); the queue is FIFO, so one count says it.
        self._later_queued = 0
        self._later_done = 0
        self._later_progress = anyio.Event()
        self._later_running = False
        self._cluster_ready = anyio.Event()

    # ------------------------------------------------------------------ the node's hooks

    @contextmanager
    def _redis_errors(self, doing: str) -> Iterator[None]:
        # Redis out of reach: a clear error (the URL without its password), not coredis'.
        try:
            yield
        except (OTPError, anyio.get_cancelled_exc_class()):
            raise
        except Exception as exc:
            raise RedisUnavailable(self.url, f"{doing}: {describe(exc)}") from exc

    async def _claim_global(self, name: str, ref: ActorRef) -> None:
        with self._redis_errors(f"claiming the global name {name!r}"):
            await self.global_names.claim(name, ref)

    def _release_global(self, name: str, ref: ActorRef) -> None:
        self.global_names.release(name, ref)

    async def _locate_global(self, name: str, timeout: float) -> Any:
        with anyio.move_on_after(timeout), self._redis_errors(f"locating {name!r}"):
            return await self.global_names.locate(name)
        return None

    async def _group_join(self, group: str, ref: ActorRef) -> None:
        with self._redis_errors(f"joining group {group!r}"):
            await self.group_table.join(group, ref)

    async def _group_leave(self, group: str, ref: ActorRef) -> None:
        with self._redis_errors(f"leaving group {group!r}"):
            await self.group_table.leave(group, ref)

    def _group_exited(self, group: str, ref: ActorRef) -> None:
        self.group_table.exited(group, ref)

    async def _group_members(self, group: str) -> list[Any]:
        with self._redis_errors(f"reading group {group!r}"):
            return await self.group_table.members(group)

    async def _which_groups(self) -> list[str]:
        with self._redis_errors("listing the groups"):
            return await self.group_table.which_groups()

    def _group_watch(
        self, group: str, hint: Callable[[], None]
    ) -> AbstractAsyncContextManager[None]:
        return self.group_table.watch(group, hint)

    # ------------------------------------------------------------------ broadcast

    async def broadcast(
        self,
        message: Any,
        *,
        where: Callable[[Any], bool] | None = None,
        sender: ActorRef | None = None,
        timeout: float = 5.0,
    ) -> int:
        """Send ``message`` to ``handle_info`` of every live worker actor on **every
        node** (or of those for which ``where(ref)`` is true: it sees this node's
        :class:`otp.ActorRef` and other nodes' :class:`otp.RemoteRef`); return how many
        accepted it, as far as the nodes answered within ``timeout`` seconds.

        Middleware runs once, here, with the topic :data:`otp.BROADCAST`. Delivery on each
        node is as for a local broadcast (overflow policies apply there). Reaching nobody
        records a dead letter. At most once, like every publish: a node that is
        disconnected at that moment misses it. Raises ``RuntimeError`` outside a node,
        :class:`otp.CodecError` if ``message`` cannot cross, and whatever ``where`` raises.
        """
        self._require_node()
        passed = await self._broadcast_stages(message, sender)  # the in-memory broker's
        if passed is None:
            return 0
        (message,) = passed
        self.codec.to_wire(message, refs=self.remote_actors)  # fail here, not on each node
        targets: list[Any] | None = None
        if where is not None:
            listed = await self._cluster_request(ClusterWorkers(), timeout)
            targets = [ref for refs in listed if type(refs) is list for ref in refs if where(ref)]
            if not targets:
                self._dead_letter(DeadLetter(message, None, "no_subscriber", topic=BROADCAST))
                return 0
        answers = await self._cluster_request(ClusterBroadcast(message, targets), timeout)
        delivered = sum(a for a in answers if type(a) is int)
        if not delivered:
            self._dead_letter(DeadLetter(message, None, "no_subscriber", topic=BROADCAST))
        return delivered

    async def _cluster_request(self, request: Any, timeout: float) -> list[Any]:
        """Ask every live node (this one too) and gather the answers that come in time."""
        inbox = f"{INBOX}{self.node_name}.{next(self._counter)}"
        answers: list[Any] = []
        async with self.subscribe(inbox) as replies:
            received = 0
            for node in await self.nodes():
                envelope = self._envelope(_service(node), request, None, inbox)
                received += await self._send_envelope(envelope)
            with anyio.move_on_after(timeout):
                while len(answers) < received:
                    answers.append((await replies.receive()).message)
        return answers

    async def _cluster_publish(self, topic: str, value: Any) -> int:
        """Publish an internal message (no middleware, no dead letter for no listener)."""
        client = self.session.client
        if client is None or not self.session.connected:
            return 0
        data = self._frame_of(self._envelope(topic, value, None))
        received: int = await client.publish(self.names.topic(topic), data)
        return received

    async def _serve_cluster(self, task_group: Any) -> None:
        async with self.subscribe(_service(self.node_name)) as requests:
            self._cluster_ready.set()
            async for envelope in requests:
                if envelope.reply_to is not None:
                    task_group.start_soon(self._answer_cluster, envelope)

    async def _answer_cluster(self, envelope: Any) -> None:
        try:
            await self._answer(envelope)
        except Exception as exc:  # one bad request must not take the node's loop down
            logger.warning("a cluster request failed here: %s", describe(exc))

    async def _answer(self, envelope: Any) -> None:
        request = envelope.message
        answer: Any
        if isinstance(request, ClusterWorkers):
            answer = self._live_workers()
        elif isinstance(request, ClusterBroadcast):
            if request.targets is None:
                targets = self._live_workers()
            else:
                node = self._node
                targets = [
                    ref
                    for ref in request.targets
                    if getattr(ref, "_node", None) is node and node is not None
                ]
            answer = await self._broadcast_to(request.message, targets) if targets else 0
        else:
            return
        try:
            reply = self._envelope(envelope.reply_to, answer, None)
            await self._send_envelope(reply)
        except CodecError as error:
            logger.error("answering a cluster request failed: %s", error)

    async def _cluster_started(self) -> None:
        """Wait (briefly) until this node serves cluster requests."""
        with anyio.move_on_after(self.session.connect_timeout):
            await self._cluster_ready.wait()

    # ------------------------------------------------------------------ background

    def _cluster_later(self, item: tuple[Any, ...]) -> None:
        """Queue a release (from synchronous code); the cluster loop performs it."""
        self._later.append(item)
        self._later_queued += 1
        self._later_idle = anyio.Event()
        self._later_wake.set()

    def _exits_pending(self) -> bool:
        """Whether releases queued by exits are still to be done in Redis."""
        return self._later_running and self._later_done < self._later_queued

    async def _exits_settled(self, timeout: float | None) -> None:
        """Wait until the releases queued so far (the global names and group memberships
        of actors that exited) are done in Redis, so every node sees them free: what
        ``await ref.stop()`` does after the exit. At most ``timeout`` and at most
        ``node_ttl`` seconds (by then an unrenewed key has expired anyway); at once when
        nothing is pending or the node is leaving (it flushes them itself)."""
        mark = self._later_queued
        if not self._later_running or self._later_done >= mark:
            return
        limit = self.node_ttl if timeout is None else min(timeout, self.node_ttl)
        with anyio.move_on_after(limit):
            while self._later_running and self._later_done < mark:
                await self._later_progress.wait()

    async def _cluster_flush(self, timeout: float) -> None:
        """Wait until the queued releases are done (the node is leaving)."""
        with anyio.move_on_after(timeout):
            await self._later_idle.wait()

    async def _cluster_loop(self) -> None:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._serve_cluster, task_group)
            task_group.start_soon(self._renew_loop)
            await self._later_loop()

    async def _later_loop(self) -> None:
        self._later_running = True
        try:
            await self._perform_later()
        finally:
            self._later_running = False
            self._later_progress.set()  # waiters look again and find the loop gone

    async def _perform_later(self) -> None:
        later = self._later
        while True:
            while later:
                items = list(later)
                later.clear()
                client = self.session.client
                if client is None:
                    return
                names = [(item[1], item[2]) for item in items if item[0] == "global"]
                members = [(item[1], item[2]) for item in items if item[0] == "group"]
                try:
                    await GlobalNames.release_now(client, names)
                    await self.group_table.leave_now(client, members)
                except Exception as exc:
                    # Not renewed any more, the keys expire within node_ttl anyway.
                    logger.info("releasing names or group members failed: %s", describe(exc))
                self._later_done += len(items)
                progress, self._later_progress = self._later_progress, anyio.Event()
                progress.set()
                await self.group_table.hint_all({group for group, _ in members})  # best effort
            self._later_idle.set()
            self._later_wake = anyio.Event()
            if not later:
                await self._later_wake.wait()

    async def _renew_loop(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat)
            client = self.session.client
            if client is None:
                return
            try:
                with anyio.fail_after(max(self.heartbeat, self.node_ttl / 2)):
                    await self._renew(client)
            except Exception as exc:
                logger.info("renewing global names and groups failed: %s", describe(exc))

    async def _renew(self, client: coredis.Redis[bytes]) -> None:
        names = self.global_names.renewals()
        groups = list(self.group_table.mine)
        hashes = [self.group_table.hash_key(group) for group in groups]
        if not names and not hashes:
            return
        keys = [key for key, _ in names] + hashes
        result = await run(
            client,
            _RENEW,
            keys=keys,
            args=[int(self.node_ttl * 1000), len(names), *(value for _, value in names)],
        )
        for key, status in zip(keys[: len(names)], result):
            if status == 0:
                ref = self.global_names.lost(key)
                if ref is not None and self.session.task_group is not None:
                    self.session.task_group.start_soon(_stop, ref, key)
        for group, status in zip(groups, result[len(names) :]):
            if status == 0:  # Redis lost the hash (a restart): write it again
                await self.group_table.rewrite_now(client, group)


async def _stop(ref: ActorRef, key: bytes) -> None:
    name = key.decode(errors="replace").split(":g:", 1)[-1]
    try:
        await ref.stop(("global_name_conflict", name))
    except Exception as exc:  # it exited otherwise meanwhile: nothing left to stop
        logger.debug("stopping %r after losing %r: %s", ref, name, exc)
