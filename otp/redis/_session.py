"""The session: one node's connection to Redis and its claim on its name.

* **Claim.** A node starts by claiming its name: ``SET P:node:<name> <incarnation> NX PX
  <node_ttl>``. If the key is held and someone listens on the name's control channel
  (``PUBSUB NUMSUB``), a live node has the name: :class:`NodeNameTaken` at once. If the
  key is held but nobody listens, the holder crashed: the claim waits for the key to
  expire (at most ``node_ttl``).
* **Lease.** Every ``heartbeat`` one script renews the key *only if it still holds this
  incarnation* (or sets it again if it is gone: Redis restarted or the node was paused
  past ``node_ttl``), and returns every live node with its incarnation (membership). The
  node serves remote traffic only while its lease runs (``node_ttl`` from the last renewal
  it sent): a node paused past its lease holds what arrives until a renewal answers.
* **Fencing.** If the renewal finds the key holding *another* incarnation, the name was
  taken over: this incarnation is fenced. It stops serving at once, drops what it held,
  emits ``"fenced"`` and ends its Node with :class:`NodeFenced`.
* **Listening.** One pub/sub connection carries the node's control channel, the cluster
  channel, its request inboxes and its topics; it reconnects with backoff and
  resubscribes everything (the :class:`Listener` mixin, ``_listener.py``).
* **Sending.** Every frame goes through one outbox, sent in order by one task; when
  several are queued they go in one round trip (one ``EVALSHA`` publishing them all). A
  call published while nothing is queued or being written goes from the caller's own task
  (``send_now``); one task writes at a time, so the order per destination holds (the
  :class:`Sender` mixin, ``_sender.py``).

Connecting, claiming the name and the lease are here, in :class:`Session`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final

import anyio
import coredis  # type: ignore[import-not-found, unused-ignore]
from anyio.abc import TaskStatus

from .._exceptions import NodeFenced, NodeNameTaken, RedisUnavailable
from ._describe import describe, redact
from ._listener import Listener
from ._sender import _PUBLISH_MANY, Sender, _Out

if TYPE_CHECKING:
    from ._broker import RedisBroker

__all__ = ["Session", "describe", "redact"]

logger = logging.getLogger("otp.redis")

#: Renew the node's key if it still holds this incarnation (1), set it again if it is
#: gone (2), or report a takeover (0); then list the live nodes as name, incarnation.
#: KEYS: the node's key, the nodes set. ARGV: incarnation, ttl ms, name, now, key prefix,
#: cutoff for forgetting dead names, "1" to renew or "0" to only read.
_RENEW: Final = """
local status = -1
if ARGV[7] == '1' then
  local held = redis.call('GET', KEYS[1])
  if held == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    status = 1
  elseif not held then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    status = 2
  else
    status = 0
  end
  if status > 0 then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  end
end
local now = redis.call('TIME')
local out = {status, now[1], now[2]}
for _, name in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local incarnation = redis.call('GET', ARGV[5] .. name)
  if incarnation then
    table.insert(out, name)
    table.insert(out, incarnation)
  else
    local seen = tonumber(redis.call('ZSCORE', KEYS[2], name))
    if seen and seen < tonumber(ARGV[6]) then
      redis.call('ZREM', KEYS[2], name)
    end
  end
end
return out
"""


class Session(Listener, Sender):
    """The connection of one :class:`RedisBroker` to Redis (see the module docs): its
    sending side is :class:`Sender`, its pub/sub side :class:`Listener`."""

    def __init__(
        self,
        broker: RedisBroker,
        *,
        url: str,
        client_factory: Callable[[str], AbstractAsyncContextManager[coredis.Redis[bytes]]],
        connect_timeout: float,
        heartbeat: float,
        node_ttl: float,
        backoff: tuple[float, float],
        outbox_limit: int,
    ) -> None:
        self.broker = broker
        self.names = broker.names
        self.url = url
        self.client_factory = client_factory
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self.backoff = backoff
        self.outbox_limit = outbox_limit
        self.client: coredis.Redis[bytes] | None = None
        self.pubsub: Any = None
        self.connected = False
        self.connected_event = anyio.Event()
        self.reconnects = 0
        self.stopping = anyio.Event()
        self.stopped = anyio.Event()
        self.scope: anyio.CancelScope | None = None
        self.task_group: Any = None
        self.start_error: BaseException | None = None
        # The lease: serve remote traffic only before this (monotonic) time.
        self.lease_until = 0.0
        self.fenced = False
        self.claim_lost = False
        self.renew_now = anyio.Event()
        self.renewed = anyio.Event()
        # (is a glob, redis name) -> how many local subscribers need it
        self.want: dict[tuple[bool, bytes], int] = {}
        self.ready: dict[tuple[bool, bytes], anyio.Event] = {}
        self.outbox: deque[_Out] = deque()
        self.outbox_wake = anyio.Event()
        self.outbox_room = anyio.Event()
        # A task is writing to Redis now (the sender, or a caller in send_now).
        self.writing = False
        self.sent = 0
        self.pipelines = 0
        self.last_push: tuple[bytes, bytes] | None = None
        self._script: Any = None
        self._publish_many: Any = None

    # ------------------------------------------------------------------ state

    @property
    def serving(self) -> bool:
        """Whether this node may act on remote traffic now (its lease runs)."""
        return not self.fenced and time.monotonic() < self.lease_until

    async def wait_connected(self, timeout: float | None = None) -> bool:
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            while not self.connected:
                await self.connected_event.wait()
            return True
        return False

    def set_connected(self, up: bool) -> None:
        self.connected = up
        if up:
            self.connected_event.set()
        else:
            self.connected_event = anyio.Event()

    def kick(self) -> None:
        """Drop the current pub/sub session so the listener reconnects."""
        if self.scope is not None:
            self.scope.cancel()

    def hurry_renewal(self) -> None:
        """Renew the lease now (traffic arrived after it ran out)."""
        self.renew_now.set()

    # ------------------------------------------------------------------ running

    async def run(
        self,
        loops: Sequence[Callable[[], Coroutine[Any, Any, None]]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect, claim the name, then listen and run ``loops`` until :attr:`stopping`.

        A start-up failure is kept in :attr:`start_error` (the broker raises it in the
        node's task) and ``task_status.started()`` is called either way. A failure after
        start-up propagates as itself (the node's task group ends the Node with it).
        """
        broker = self.broker
        # The factory gives a context that yields the client: a coredis client is its own;
        # a Sentinel's also holds the sentinels' connections while the client is in use.
        connection = self.client_factory(f"otp:{self.names.prefix}:{broker.node_name}")
        started = False
        try:
            async with connection as client:
                self.client = client
                self._script = client.register_script(_RENEW)
                self._publish_many = client.register_script(_PUBLISH_MANY)
                try:
                    with anyio.fail_after(self.connect_timeout + self.node_ttl + 1.0):
                        await self.claim_name()
                except (NodeNameTaken, RedisUnavailable) as exc:
                    self.start_error = exc
                except Exception as exc:
                    self.start_error = RedisUnavailable(redact(self.url), describe(exc))
                    self.start_error.__cause__ = exc
                if self.start_error is not None:
                    task_status.started()
                    started = True
                    return
                async with anyio.create_task_group() as task_group:
                    self.task_group = task_group
                    try:
                        await task_group.start(self.listen)
                    except Exception as exc:
                        self.start_error = RedisUnavailable(redact(self.url), describe(exc))
                        self.start_error.__cause__ = exc
                        task_group.cancel_scope.cancel()
                        task_status.started()
                        started = True
                        return
                    task_group.start_soon(self.heartbeat_loop)
                    task_group.start_soon(self.sender_loop)
                    for loop in loops:
                        task_group.start_soon(loop)
                    task_status.started()
                    started = True
                    await self.stopping.wait()
                    task_group.cancel_scope.cancel()
        except Exception as exc:
            if started:
                # After start-up the Node ends with this error, as itself (not wrapped in
                # the groups of the task groups it crossed).
                raise _leaf(exc) from exc.__cause__
            self.start_error = RedisUnavailable(redact(self.url), describe(exc))
            self.start_error.__cause__ = exc
            task_status.started()
        finally:
            self.client = None
            self.task_group = None
            self.connected = False
            self.stopped.set()

    async def claim_name(self) -> None:
        client = self.client
        assert client is not None
        broker = self.broker
        name = broker.node_name
        key = self.names.node_key(name)
        ttl = max(1, int(self.node_ttl * 1000))
        deadline = time.monotonic() + self.node_ttl + self.heartbeat
        while True:
            sent_at = time.monotonic()
            if await client.set(key, broker.incarnation, condition=coredis.PureToken.NX, px=ttl):
                break
            listeners = await client.pubsub_numsub(self.names.control(name))
            if any(count for count in listeners.values()):
                # Someone listens on the name's channel: a live (or paused) node.
                raise NodeNameTaken(name, self.names.prefix)
            if time.monotonic() > deadline:
                raise NodeNameTaken(name, self.names.prefix)
            # The holder crashed (nobody listens): wait for its key to expire.
            logger.info(
                "node name %r is still held on Redis by a node that is gone; waiting up to "
                "%.1fs for its key to expire",
                name,
                self.node_ttl,
            )
            await anyio.sleep(min(self.heartbeat, 0.1))
        self.lease_until = sent_at + self.node_ttl
        await client.zadd(self.names.nodes, {name: time.time()})

    # ------------------------------------------------------------------ the lease

    async def renew(self, *, read_only: bool = False) -> tuple[int, dict[str, str]]:
        """Run the renewal script: ``(status, {node: incarnation})`` (see ``_RENEW``); it
        also samples the cluster clock (Redis' ``TIME``)."""
        client = self.client
        assert client is not None
        assert self._script is not None
        broker = self.broker
        names = self.names
        now = sent = time.time()
        reply = await self._script(
            keys=[names.node_key(broker.node_name), names.nodes],
            args=[
                broker.incarnation,
                max(1, int(self.node_ttl * 1000)),
                broker.node_name,
                now,
                names.node_key(""),
                now - 60 * self.node_ttl,
                "0" if read_only else "1",
            ],
        )
        status = int(reply[0])
        broker._clock_sample(int(reply[1]) + int(reply[2]) / 1e6, sent, time.time())
        members: dict[str, str] = {}
        items = reply[3:]
        for i in range(0, len(items) - 1, 2):
            name, incarnation = items[i], items[i + 1]
            members[name.decode() if isinstance(name, bytes) else str(name)] = (
                incarnation.decode() if isinstance(incarnation, bytes) else str(incarnation)
            )
        return status, members

    async def heartbeat_loop(self) -> None:
        broker = self.broker
        while True:
            with anyio.move_on_after(self.heartbeat):
                await self.renew_now.wait()
            self.renew_now = anyio.Event()
            sent_at = time.monotonic()
            try:
                with anyio.fail_after(max(self.heartbeat, self.node_ttl / 2)):
                    status, members = await self.renew()
            except Exception as exc:
                logger.info("heartbeat failed: %s", describe(exc))
                self.kick()
                if not self.serving and not self.claim_lost:
                    self._lose_claim()
                continue
            if status == 0:
                self._fence()
                raise NodeFenced(broker.node_name, self.names.prefix)
            if status == 2:
                logger.warning(
                    "node %r found its claim gone (Redis restarted, or this node was paused "
                    "past node_ttl=%gs) and claimed its name again",
                    broker.node_name,
                    self.node_ttl,
                    extra={"otp_event": "claim_restored"},
                )
            self.lease_until = sent_at + self.node_ttl
            if self.claim_lost:
                self.claim_lost = False
                broker._emit("claim_restored", detail=broker.node_name)
            self.renewed.set()
            self.renewed = anyio.Event()
            # Missing peers are conclusive only if this node's own key was still there:
            # a lost key of its own means Redis lost or expired keys (a restart, a stall).
            broker.membership.update(members, conclusive=status == 1)
            broker._lease_ok()

    def _lose_claim(self) -> None:
        self.claim_lost = True
        logger.warning(
            "node %r cannot renew its claim on Redis; it holds remote traffic until it can",
            self.broker.node_name,
            extra={"otp_event": "claim_lost"},
        )
        self.broker._emit("claim_lost", detail=self.broker.node_name)

    def _fence(self) -> None:
        broker = self.broker
        self.fenced = True
        self.lease_until = 0.0
        logger.error(
            "node %r was taken over: another process now holds its name on Redis; this "
            "incarnation (%s) stops serving and its Node ends with NodeFenced",
            broker.node_name,
            broker.incarnation,
            extra={"otp_event": "fenced"},
        )
        broker._emit("fenced", reason="taken_over", detail=broker.node_name)
        broker._fenced()


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
