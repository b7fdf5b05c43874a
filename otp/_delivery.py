"""Sending to an actor: the :class:`Delivery` mixin of :class:`otp.ActorRef`.

``call``, ``send_request``, ``cast`` and ``send`` (their ``_nowait`` forms included; the
common unbounded cast is ``MailboxQueue.put`` inlined), and the receiver interface
(``_offer`` and its kin) through which a broker or ``otp/redis/_serve.py`` hands an actor
a message, plus the control messages (``Down``, timers) and the dead letters of drops.
"""

from __future__ import annotations

import time
from threading import get_ident
from typing import TYPE_CHECKING, Any, overload

from ._backends import Backend, Expired
from ._call import Call, R
from ._exceptions import ActorExited, CalledSelf, CallTimeout, MailboxFull, WrongThread
from ._mailbox import (
    ACCEPTED,
    CALL,
    CAST,
    CONTROL,
    DROPPED,
    GONE,
    INFO,
    REFUSED,
    WAIT,
    Full,
    Item,
    Kind,
    MailboxQueue,
    Overflow,
    Wrapped,
    unwrap,
)
from ._requests import RequestId
from ._stopping import _check_timeout

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["Delivery"]


class Delivery:
    """Sending to an :class:`otp.ActorRef` and its receiver interface (a mixin of it: the
    attributes below are its slots)."""

    if not TYPE_CHECKING:  # slotted at run time; mypy sees the attributes below
        __slots__ = ()

    _node: Node
    _backend: Backend
    _mailbox: MailboxQueue
    _parker: Any
    _coro: Any
    _alive: bool
    _thread: int

    if TYPE_CHECKING:

        def _exited_error(self, reason: Any = None) -> ActorExited: ...

    @overload
    async def call(self, request: Call[R], timeout: float | None = 5.0) -> R: ...
    @overload
    async def call(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object], timeout: float | None = 5.0
    ) -> object: ...
    @overload
    async def call(self, request: Any, timeout: float | None = 5.0) -> Any: ...

    async def call(self, request: Any, timeout: float | None = 5.0) -> Any:
        """Send ``request`` to ``handle_call`` and wait for the reply (``gen_server:call/3``).

        Raises :class:`otp.CallTimeout` after ``timeout`` seconds (``None`` waits forever;
        the server keeps running and a late reply is dropped), :class:`otp.ActorExited` at
        once if the actor is dead or dies before replying (a crash is the ``__cause__``),
        :class:`otp.MailboxFull` if its overflow policy refuses or drops the request, and
        :class:`otp.CalledSelf` if an actor calls itself, :class:`otp.WrongThread` outside
        the node's event loop thread (use ``node.from_thread`` there).
        """
        if get_ident() != self._thread:
            raise WrongThread(self, "call")
        if not self._alive:
            raise self._exited_error()
        if self._coro.cr_running:
            raise CalledSelf(self)
        if timeout is not None and (timeout.__class__ is not float or not timeout > 0):
            _check_timeout(timeout)  # the common float timeout skips this
        backend = self._backend
        caller = backend.promise()
        item = Wrapped(CALL, request, caller)
        mailbox = self._mailbox
        try:
            mailbox.put(item)
        except Full:
            if mailbox.overflow is not Overflow.BLOCK:
                raise MailboxFull(self, mailbox.capacity, mailbox.overflow) from None
            # Waiting for room counts toward the timeout, as the whole call does in OTP.
            started = time.monotonic()
            try:
                admitted = await mailbox.put_blocking(item, backend, 0, timeout)
            except Expired:
                raise CallTimeout(self, timeout or 0.0, request) from None
            if not admitted:
                error = self._exited_error()
                raise error from error.__cause__
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - started))
        if timeout is not None:
            if timeout == 0:
                # Nothing can have replied yet: OTP's call with timeout 0, deterministically.
                caller.fail(Expired())
                raise CallTimeout(self, 0.0, request)
            self._node._deadlines.add(timeout, caller)  # fails it with Expired when due
        try:
            return await caller  # promise.wait() without its coroutine
        except Expired:
            raise CallTimeout(self, timeout or 0.0, request) from None

    @overload
    def send_request(self, request: Call[R]) -> RequestId[R]: ...
    @overload
    def send_request(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object]
    ) -> RequestId[object]: ...
    @overload
    def send_request(self, request: Any) -> RequestId[Any]: ...

    def send_request(self, request: Any) -> RequestId[Any]:
        """Send ``request`` to ``handle_call`` without waiting; collect the reply later with
        ``await handle.wait(timeout)`` (``gen_server:send_request/2``).

        Never yields. A dead actor gives a handle that already holds its
        :class:`otp.ActorExited`; a full mailbox that would make :meth:`call` wait or fail
        raises :class:`otp.MailboxFull` at once (as :meth:`cast_nowait` does); a dropped
        request fails the handle with it. See :class:`otp.RequestId`.
        """
        handle: RequestId[Any] = RequestId(self, request, self._backend, self._node._deadlines)  # type: ignore[arg-type]  # self: an ActorRef
        slot = handle._slot
        if not self._alive:
            slot.fail(self._exited_error())
            return handle
        mailbox = self._mailbox
        try:
            mailbox.put(Wrapped(CALL, request, slot))
        except Full:
            raise MailboxFull(self, mailbox.capacity, mailbox.overflow) from None
        return handle

    async def cast(self, message: Any, *, priority: int = 0) -> None:
        """Send ``message`` to ``handle_cast`` without waiting for it to be handled.

        A checkpoint, as every anyio operation is; :meth:`cast_nowait` is the non-yielding
        fast path. A dead actor's message becomes a dead letter and ``cast`` returns
        quietly; with ``Overflow.BLOCK`` it waits for room, with ``Overflow.FAIL`` a full
        mailbox raises :class:`otp.MailboxFull`. Messages of a higher ``priority`` are
        handled first; order is kept within one priority (Erlang has no priorities).
        Outside the node's event loop thread it raises :class:`otp.WrongThread`.
        """
        if get_ident() != self._thread:
            raise WrongThread(self, "cast")
        if self._backend.budget_spent():  # an amortised checkpoint (docs/core.md, "Yielding")
            await self._backend.checkpoint()
        if self._alive and not priority:
            mailbox = self._mailbox
            if mailbox._capacity is None:
                # MailboxQueue.put's hot path (unbounded, priority 0) inlined: the message
                # itself is the item (benchmarks: "await cast", 3x the deque floor without).
                mailbox._items.append(message)
                parker = self._parker
                if parker.waiter is not None:
                    parker.wake()
                return
        await self._put(CAST, message, priority)

    def cast_nowait(self, message: Any, *, priority: int = 0) -> None:
        """:meth:`cast` without yielding; a full ``BLOCK`` mailbox raises ``MailboxFull``.

        Outside the node's event loop thread it raises :class:`otp.WrongThread` whenever
        it would wake the actor or find it dead (the thread check stays out of a tight
        producer loop feeding a busy actor); use ``node.from_thread.cast`` there.
        """
        if self._alive:  # _put_nowait, inlined
            mailbox = self._mailbox
            parker = self._parker
            if not priority and mailbox._capacity is None:
                # MailboxQueue.put's hot path (unbounded, priority 0) inlined, the message
                # itself the item (benchmarks: cast_nowait, 3.3x the deque floor without).
                if parker.waiter is not None:
                    if get_ident() != self._thread:
                        raise WrongThread(self, "cast")  # waking from another thread
                    mailbox._items.append(message)
                    parker.wake()
                else:
                    mailbox._items.append(message)
                return
            if parker.waiter is not None and get_ident() != self._thread:
                raise WrongThread(self, "cast")  # waking from another thread breaks the loop
            try:
                mailbox.put(message, priority)
            except Full:
                raise MailboxFull(self, mailbox.capacity, mailbox.overflow) from None
        else:
            if get_ident() != self._thread:
                raise WrongThread(self, "cast")
            self._node._dead_letter(self, message, "noproc")

    async def send(self, message: Any, *, priority: int = 0) -> None:
        """Send ``message`` to ``handle_info`` (Erlang's ``!``); otherwise as :meth:`cast`."""
        if get_ident() != self._thread:
            raise WrongThread(self, "send")
        backend = self._backend
        if backend.budget_spent():
            await backend.checkpoint()
        await self._put(INFO, message, priority)

    def send_nowait(self, message: Any, *, priority: int = 0) -> None:
        """:meth:`send` without yielding; a full ``BLOCK`` mailbox raises ``MailboxFull``
        (the thread check as for :meth:`cast_nowait`)."""
        if (self._parker.waiter is not None or not self._alive) and get_ident() != self._thread:
            raise WrongThread(self, "send")
        self._put_nowait(INFO, message, priority)

    # ------------------------------------------------------------------ sending

    def _put_nowait(self, kind: Kind, message: Any, priority: int = 0) -> None:
        if not self._alive:
            self._node._dead_letter(self, message, "noproc")
            return
        mailbox = self._mailbox
        try:
            mailbox.put(message if kind is CAST else Wrapped(kind, message), priority)
        except Full:
            raise MailboxFull(self, mailbox.capacity, mailbox.overflow) from None

    async def _put(self, kind: Kind, message: Any, priority: int = 0) -> None:
        if not self._alive:
            self._node._dead_letter(self, message, "noproc")
            return
        mailbox = self._mailbox
        item = message if kind is CAST else Wrapped(kind, message)
        try:
            mailbox.put(item, priority)
        except Full:
            if mailbox.overflow is not Overflow.BLOCK:
                raise MailboxFull(self, mailbox.capacity, mailbox.overflow) from None
            if not await mailbox.put_blocking(item, self._backend, priority):
                self._node._dead_letter(self, message, "noproc")

    # ------------------------------------------------------------------ as a receiver
    # Internal: how a broker (otp/_broker.py, otp/redis) hands a published message to this
    # actor's handle_info: the counterpart of a Subscription's _offer/_offer_blocking/
    # _offer_system. ``item`` is a ``Wrapped(INFO, message)``, built once per publish
    # (items are never modified); otp/redis/_serve.py offers remote calls and casts the
    # same way (any mailbox item). Each returns one of otp._mailbox's offer codes; the
    # broker writes the dead letters of REFUSED and GONE (they carry the topic). A fan-out
    # loop may inline _offer's common case, and only that: ``ref._alive`` and then
    # ``ref._mailbox.put(item, priority)`` (True: queued; False: DROPPED; Full: ask
    # _offer_full). Besides these the broker uses only _add_monitor and _remove_monitor
    # (it learns of a subscriber's exit as any watcher does).

    def _offer(self, item: Item, priority: int = 0) -> int:
        """Queue ``item`` without waiting, as the overflow policy says: ``WAIT`` for a full
        ``BLOCK`` mailbox (then :meth:`_offer_blocking`), ``REFUSED`` for a full ``FAIL``
        one, ``DROPPED`` if ``DROP_NEWEST``/``DROP_OLDEST`` dropped it (the dead letter is
        recorded), ``GONE`` once the actor has exited."""
        if not self._alive:
            return GONE
        try:
            return ACCEPTED if self._mailbox.put(item, priority) else DROPPED
        except Full:
            return self._offer_full()

    def _offer_full(self) -> int:
        """What a full mailbox does with an offer (``put`` raised ``Full``): ``WAIT`` under
        ``BLOCK`` (then :meth:`_offer_blocking`), ``REFUSED`` under ``FAIL``."""
        return WAIT if self._mailbox.overflow is Overflow.BLOCK else REFUSED

    async def _offer_blocking(
        self, item: Item, priority: int = 0, timeout: float | None = None
    ) -> bool:
        """Wait for room in a full ``BLOCK`` mailbox (after :meth:`_offer` said ``WAIT``)
        and queue ``item``; ``False`` if the actor exited first. Raises ``Expired`` if
        ``timeout`` passes first (the item is not queued then)."""
        return await self._mailbox.put_blocking(item, self._backend, priority, timeout)

    def _offer_system(self, item: Wrapped) -> int:
        """Queue a runtime message (a dead letter) that is never waited for: a full
        ``BLOCK`` mailbox takes it past its capacity, the other policies apply as usual
        (``ACCEPTED``, ``DROPPED`` or ``REFUSED``; ``GONE`` once the actor has exited)."""
        if not self._alive:
            return GONE
        mailbox = self._mailbox
        try:
            return ACCEPTED if mailbox.put(item) else DROPPED
        except Full:
            if mailbox.overflow is Overflow.BLOCK:
                mailbox.put_control(item)
                return ACCEPTED
            return REFUSED

    def _deliver_control(self, message: Any) -> None:
        # Down notices and timer messages: never refused, never dropped.
        if self._alive:
            self._mailbox.put_control(Wrapped(CONTROL, message))

    def _on_drop(self, item: Item, why: str) -> None:
        kind, message, caller = unwrap(item)
        self._node._emit("overflow", actor=self, reason=why, detail=message)
        if kind is CALL:
            mailbox = self._mailbox
            caller.fail(MailboxFull(self, mailbox.capacity, mailbox.overflow))
        self._node._dead_letter(self, message, why)
