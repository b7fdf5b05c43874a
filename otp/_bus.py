"""The broker as a bus: request/reply (a publish with a ``reply_to`` inbox and a wait for
the first answer) and broadcast (to every live worker of the node(s)); a mixin of
:class:`otp.InMemoryBroker`."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, overload

import anyio

from ._envelopes import DeadLetter, Envelope
from ._exceptions import NoSubscriber, RequestTimeout
from ._middleware import MiddlewareChain
from ._subscriptions import _Waiter
from ._topics import BROADCAST, RouteTable, _check_topic

if TYPE_CHECKING:
    from ._actor import ActorRef
    from ._backends import Backend
    from ._call import Call, R
    from ._node import Node

__all__ = ["Bus"]


class Bus(MiddlewareChain, RouteTable):
    """:meth:`request`, :meth:`reply` and :meth:`broadcast` of :class:`otp.InMemoryBroker`
    (its base; the broker provides what is declared here). A request's inbox is a topic
    (:meth:`_new_inbox`, an extension point) whose one subscriber takes the first reply;
    a broadcast is a publish on :data:`otp.BROADCAST` whose route is the node's live
    workers (``Node._live_workers``: the node indexes its actors, so the broker needs to
    know nothing of supervisors)."""

    # Provided by the broker.
    _nodes: list[Node]
    _published: int
    publish: Callable[..., Awaitable[int]]
    _deliver: Callable[..., Awaitable[int]]
    _envelope: Callable[..., Envelope]
    _backend: Callable[[], Backend]
    _new_inbox: Callable[[], str]
    _receiver_dropped: Callable[[Any, Envelope, str], None]

    @overload
    async def request(
        self,
        topic: str,
        message: Call[R],
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> R: ...
    @overload
    async def request(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self,
        topic: str,
        message: Call[object],
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> object: ...
    @overload
    async def request(
        self,
        topic: str,
        message: Any,
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any: ...

    async def request(
        self,
        topic: str,
        message: Any,
        *,
        timeout: float | None = 5.0,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Publish ``message`` on ``topic`` with a fresh ``reply_to`` inbox and return the
        first reply (NATS request/reply, Akka's ``ask``).

        Actor subscribers receive it as a :class:`Request` and answer with
        ``await request.reply(value)``; subscriptions answer with :meth:`reply`. Raises
        :class:`NoSubscriber` at once if no subscriber accepted the request, and
        :class:`RequestTimeout` if no reply came within ``timeout`` seconds (``None``
        waits forever; publishing to a full ``BLOCK`` subscriber counts against it).
        """
        _check_topic(topic)
        inbox = self._new_inbox()
        waiter = _Waiter(self._backend().promise(), self._receiver_dropped)
        self._add(inbox, waiter)
        try:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                if not await self.publish(
                    topic, message, sender=sender, headers=headers, reply_to=inbox
                ):
                    raise NoSubscriber(topic)
                return await waiter.promise.wait(None)
            raise RequestTimeout(topic, timeout or 0.0)
        finally:
            self._remove(inbox, waiter)

    async def reply(
        self,
        envelope: Envelope,
        value: Any,
        *,
        sender: ActorRef | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Answer the request ``envelope`` with ``value`` by publishing it on its
        ``reply_to`` topic; returns 1 if the requester got it, 0 if it had given up (the
        reply is then a dead letter). Raises ``ValueError`` if the envelope carries no
        ``reply_to``."""
        if not isinstance(envelope, Envelope):
            raise TypeError(f"reply() needs the request's otp.Envelope, not {envelope!r}")
        if envelope.reply_to is None:
            raise ValueError(
                f"envelope {envelope.id} on topic {envelope.topic!r} has no reply_to: it was "
                "published, not requested; only answer envelopes that broker.request sent"
            )
        return await self.publish(envelope.reply_to, value, sender=sender, headers=headers)

    async def broadcast(
        self,
        message: Any,
        *,
        where: Callable[[ActorRef], bool] | None = None,
        sender: ActorRef | None = None,
    ) -> int:
        """Send ``message`` to ``handle_info`` of every live worker actor on the node(s)
        this broker serves, or of those for which ``where(ref)`` is true; return how many
        accepted it. Supervisors are not sent to.

        Delivery is as for :meth:`publish` (each mailbox's overflow policy applies; a full
        ``BLOCK`` mailbox makes this wait); middleware sees the topic :data:`BROADCAST`;
        reaching nobody records a dead letter. Erlang's counterpart is sending to every
        process in ``erlang:processes()``. Raises ``RuntimeError`` outside a node, and
        whatever ``where`` raises (before anything is sent).
        """
        if not self._nodes:
            raise RuntimeError(
                f"{self!r} serves no node; broadcast reaches the actors of a node, so call it "
                "inside `async with otp.Node() as node:` (node.broker.broadcast(...))"
            )
        passed = await self._broadcast_stages(message, sender)
        if passed is None:
            return 0
        (message,) = passed
        targets = [ref for ref in self._live_workers() if where is None or where(ref)]
        if not targets:
            self._dead_letter(DeadLetter(message, None, "no_subscriber", topic=BROADCAST))
            return 0
        return await self._broadcast_to(message, targets)

    async def _broadcast_stages(self, message: Any, sender: ActorRef | None) -> tuple[Any] | None:
        """The start every broadcast shares (a networked broker's own ``broadcast`` too): a
        checkpoint, the count, the middleware with the topic :data:`BROADCAST`. Returns the
        message as the stages left it, in a 1-tuple, or ``None`` if a stage dropped it."""
        await self._backend().checkpoint()
        self._published += 1
        if self._stages:
            envelope = await self._run_stages(self._envelope(BROADCAST, message, sender))
            if envelope is None:
                return None
            message = envelope.message
        return (message,)

    async def _broadcast_to(self, message: Any, targets: Iterable[ActorRef]) -> int:
        # Middleware has run: hand ``message`` to each target's handle_info, as a publish
        # on BROADCAST whose route is ``targets`` (those with room first, then the full
        # BLOCK ones are waited on).
        return await self._deliver(BROADCAST, message, None, None, tuple(targets))

    def _live_workers(self) -> list[ActorRef]:
        # The nodes index their live actors; a broker knows nothing of supervisors.
        return [ref for node in self._nodes for ref in node._live_workers()]
