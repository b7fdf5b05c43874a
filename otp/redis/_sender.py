"""Sending to Redis: the :class:`Sender` mixin of :class:`Session` (its outbox).

Every frame goes through one outbox, sent in order by one task (``sender_loop``); when
several are queued they go in one round trip (one ``EVALSHA`` of ``_PUBLISH_MANY``
publishing them all, or one pipeline when a durable frame appends to a stream). A call
published while nothing is queued or being written goes from the caller's own task
(``send_now``); one task writes at a time, so the order per destination holds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import coredis  # type: ignore[import-not-found, unused-ignore]

from .._exceptions import CodecError
from ._describe import describe

if TYPE_CHECKING:
    from ._broker import RedisBroker
    from ._naming import Names

__all__ = ["Sender"]

logger = logging.getLogger("otp.redis")

#: Frames sent in one pipeline at most.
_BATCH: Final = 512

#: Scheduling rounds the sender waits under load while the outbox still grows.
_LINGER: Final = 16

#: Publish several frames in one command: ARGV holds channel, data pairs; returns the
#: receivers of each (as PUBLISH would), -1 for one Redis refused (an ACL, say).
_PUBLISH_MANY: Final = """
local out = {}
for i = 1, #ARGV, 2 do
  local received = redis.pcall('PUBLISH', ARGV[i], ARGV[i + 1])
  if type(received) ~= 'number' then
    received = -1
  end
  out[#out + 1] = received
end
return out
"""


class _Out:
    """One queued frame: where to, the bytes, and what to tell when sent."""

    __slots__ = ("channel", "data", "done", "queued_at", "retry", "stream")

    def __init__(
        self,
        channel: bytes | None,
        data: bytes,
        done: Callable[[int], None] | None,
        retry: bool,
        stream: tuple[bytes, int | None] | None = None,
    ) -> None:
        self.channel = channel
        self.data = data
        self.done = done
        self.retry = retry
        self.stream = stream
        self.queued_at = time.monotonic()


class Sender:
    """The sending side of a :class:`Session` (a mixin of it: the attributes below are
    set in ``Session.__init__``)."""

    broker: RedisBroker
    names: Names
    client: coredis.Redis[bytes] | None
    connected: bool
    connected_event: anyio.Event
    heartbeat: float
    node_ttl: float
    backoff: tuple[float, float]
    outbox_limit: int
    outbox: deque[_Out]
    outbox_wake: anyio.Event
    outbox_room: anyio.Event
    writing: bool
    sent: int
    pipelines: int
    task_group: Any
    _publish_many: Any

    # ------------------------------------------------------------------ the outbox

    def send(
        self,
        channel: bytes,
        data: bytes,
        done: Callable[[int], None] | None = None,
        *,
        retry: bool = False,
        stream: tuple[bytes, int | None] | None = None,
    ) -> None:
        """Queue ``data`` for ``channel``; ``done(receivers)`` is called once it is sent
        (``-1``: it could not be). A ``retry`` frame (an answer, a durable publish) waits
        out a disconnection (for at most ``node_ttl``); the others fail at once when the
        connection is down. ``stream`` (key, cap) also appends ``data`` to that stream,
        in the same pipeline, before publishing."""
        if not self.connected and not retry:
            if done is not None:
                done(-1)
            return
        self.outbox.append(_Out(channel, data, done, retry, stream))
        self.outbox_wake.set()

    async def send_now(
        self, channel: bytes, data: bytes, done: Callable[[int], None] | None = None
    ) -> None:
        """:meth:`send`, but when nothing is queued or being written, publish from the
        calling task at once: no hop to the sender task, so a lone call reaches Redis a
        scheduling round sooner. Order per destination holds as with :meth:`send`: only
        one task writes at a time (``writing``), and frames queued meanwhile go after.
        A cancelled caller leaves ``done`` uncalled (it has gone: whether the frame was
        sent is unknown, which an at-most-once frame allows)."""
        client = self.client
        if self.writing or self.outbox or not self.connected or client is None:
            self.send(channel, data, done)
            return
        self.writing = True
        try:
            received = await client.publish(channel, data)
        except Exception as exc:
            logger.info("sending a frame failed (%s)", describe(exc))
            received = -1
        finally:
            self.writing = False
            if self.outbox:
                self.outbox_wake.set()
        if received >= 0:
            self.sent += 1
        if done is not None:
            done(int(received))

    def send_frame(self, node: str, data: bytes, *, retry: bool = False) -> None:
        """Queue a control frame for ``node``; sent in order."""
        self.send(self.names.control(node), data, retry=retry)

    def post(self, node: str, frame: dict[str, Any], *, retry: bool = True) -> None:
        """Encode and queue a control frame for ``node`` (from synchronous code)."""
        try:
            data = self.broker._dumps(frame)
        except CodecError as error:
            logger.error("cannot encode a %r frame for node %r: %s", frame.get("k"), node, error)
            return
        self.send_frame(node, data, retry=retry)

    async def wait_for_room(self) -> None:
        """Wait while the outbox holds more than its limit (backpressure on senders)."""
        while len(self.outbox) > self.outbox_limit and self.connected:
            self.outbox_room = anyio.Event()
            await self.outbox_room.wait()

    async def sender_loop(self) -> None:
        outbox = self.outbox
        low = self.backoff[0]
        busy = False
        checkpoint = anyio.lowlevel.checkpoint
        while True:
            if not outbox:
                busy = False
                self.outbox_room.set()
                self.outbox_wake = anyio.Event()
                await self.outbox_wake.wait()
                continue
            if not self.connected:
                self._drop_unsendable()
                if outbox:
                    with anyio.move_on_after(self.heartbeat):
                        await self.connected_event.wait()
                continue
            if busy and len(outbox) < _BATCH:
                # Under load (the last batch had several frames), let the producers queue
                # a few more before sending: bigger batches, fewer round trips. An idle
                # node sends a lone frame at once (no latency added to a single call).
                for _ in range(_LINGER):
                    before = len(outbox)
                    await checkpoint()
                    if len(outbox) == before or len(outbox) >= _BATCH:
                        break
            if self.writing:  # a caller publishes a lone frame itself (send_now)
                self.outbox_wake = anyio.Event()
                await self.outbox_wake.wait()
                continue
            batch = self._take_batch()
            if not batch:
                continue
            self.writing = True
            try:
                results = await self._write(batch)
            except Exception as exc:
                self.writing = False
                logger.info("sending %d frame(s) failed (%s); retrying", len(batch), describe(exc))
                for out in reversed(batch):
                    if out.retry:
                        outbox.appendleft(out)
                    elif out.done is not None:
                        out.done(-1)
                await anyio.sleep(low)
                continue
            self.writing = False
            self.sent += len(batch)
            busy = len(batch) > 1
            for out, received in zip(batch, results):
                if out.done is not None:
                    out.done(int(received))
            if len(outbox) <= self.outbox_limit:
                self.outbox_room.set()

    def _take_batch(self) -> list[_Out]:
        """The frames to send next, in order: up to ``_BATCH``, stopping at a flush marker
        (whose ``done`` runs at once when nothing is before it)."""
        outbox = self.outbox
        batch: list[_Out] = []
        while outbox and len(batch) < _BATCH:
            out = outbox.popleft()
            if out.channel is None:  # a flush marker: all before it is sent
                if not batch:
                    assert out.done is not None
                    out.done(0)
                    continue
                outbox.appendleft(out)
                break
            batch.append(out)
        return batch

    async def _write(self, batch: list[_Out]) -> list[Any]:
        """Send ``batch`` to Redis in one round trip; the receivers of each frame.

        A lone frame is one PUBLISH. Several are one ``EVALSHA`` of ``_PUBLISH_MANY`` (its
        arguments are packed by coredis' C packer: a few microseconds a frame instead of
        the ~20 of a pipelined command object); a batch with a durable frame (an XADD
        before its PUBLISH) goes as one pipeline. Either way the frames reach Redis in
        queue order, so the order per destination holds."""
        client = self.client
        assert client is not None
        if len(batch) == 1 and batch[0].stream is None:
            only = batch[0]
            assert only.channel is not None
            return [await client.publish(only.channel, only.data)]
        if any(out.stream is not None for out in batch):
            async with client.pipeline(transaction=False) as pipe:
                requests = []
                for out in batch:
                    if out.stream is not None:
                        _append(pipe, out.stream, out.data)
                    requests.append(pipe.publish(out.channel or b"", out.data))
            self.pipelines += 1
            return [await request for request in requests]
        assert self._publish_many is not None
        args: list[bytes] = []
        for out in batch:
            assert out.channel is not None
            args.append(out.channel)
            args.append(out.data)
        received = await self._publish_many(keys=[], args=args)
        self.pipelines += 1
        if type(received) is not list or len(received) != len(batch):
            raise ConnectionError(f"PUBLISH of a batch answered {str(received)[:100]!r}")
        return received

    def pending_answers(self) -> int:
        return sum(1 for out in self.outbox if out.retry)

    def _drop_unsendable(self) -> None:
        # While disconnected: user frames fail, answers wait up to node_ttl (by then the
        # peers count this node as down).
        now = time.monotonic()
        kept: deque[_Out] = deque()
        for out in self.outbox:
            if out.channel is None:
                assert out.done is not None
                out.done(0)
            elif out.retry and now - out.queued_at <= self.node_ttl:
                kept.append(out)
            elif out.done is not None:
                out.done(-1)
        self.outbox.clear()
        self.outbox.extend(kept)
        self.outbox_room.set()

    async def flush(self, timeout: float) -> None:
        """Wait until what is queued now has been sent (at most ``timeout`` seconds)."""
        if self.task_group is None or not self.outbox:
            return
        done = anyio.Event()
        self.outbox.append(_Out(None, b"", lambda _: done.set(), True))
        self.outbox_wake.set()
        with anyio.move_on_after(timeout):
            await done.wait()


def _append(pipe: Any, stream: tuple[bytes, int | None], data: bytes) -> None:
    key, maxlen = stream
    if maxlen is None:
        pipe.xadd(key, {b"d": data})
    else:
        pipe.xadd(
            key,
            {b"d": data},
            trim_strategy=coredis.PureToken.MAXLEN,
            threshold=maxlen,
            trim_operator=coredis.PureToken.APPROXIMATELY,
        )
