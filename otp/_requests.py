"""Asynchronous requests: :class:`RequestId` and :class:`RequestIds` (OTP's
``gen_server:send_request/2``, ``wait_response``, ``receive_response``, ``check_response``
and request id collections).

``ref.send_request(request)`` queues a call without waiting and returns a
:class:`RequestId`; its reply is collected later, alone or with others in a
:class:`RequestIds`. The server sees an ordinary call (``handle_call``, ``NOREPLY`` and
``self.reply`` work as usual). The reply slot the server answers is a :class:`_Slot`, an
:class:`otp.Caller`; the handle the sender keeps is separate, so the server never sees the
sender's methods.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._backends import Caller, Expired
from ._call import R_co
from ._exceptions import CallTimeout

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._backends import Backend, Promise
    from ._ref import Ref

__all__ = ["RequestId", "RequestIds"]

L = TypeVar("L")

_PENDING = 0
_OK = 1
_FAILED = 2
_ABANDONED = 3


class _Slot(Caller):
    """The reply slot of one asynchronous request: what ``handle_call`` gets as its caller.

    Invariant: the first ``resolve``/``fail`` wins (or ``abandon``); it wakes every task
    waiting on the handle and tells the collection the handle is in, if any.
    """

    __slots__ = ("_collection", "_handle", "_state", "_value", "_waiters")

    def __init__(self) -> None:
        self._state = _PENDING
        self._value: Any = None
        self._waiters: list[Promise] = []
        self._collection: RequestIds[Any] | None = None
        self._handle: RequestId[Any] | None = None

    def done(self) -> bool:
        return self._state != _PENDING

    def resolve(self, value: object) -> bool:
        return self._settle(_OK, value)

    def fail(self, exc: BaseException) -> bool:
        return self._settle(_FAILED, exc)

    def _settle(self, state: int, value: Any) -> bool:
        if self._state != _PENDING:
            return False
        self._state = state
        self._value = value
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.resolve(None)
        collection = self._collection
        if collection is not None and self._handle is not None and state != _ABANDONED:
            collection._completed(self._handle)
        return True


class RequestId(Generic[R_co]):
    """A request sent with ``ref.send_request(request)`` whose reply is still to be
    collected (OTP's request id from ``gen_server:send_request/2``).

    ``await handle.wait(timeout)`` returns the reply (typed ``R`` for an ``otp.Call[R]``
    request) or raises what :meth:`otp.ActorRef.call` raises: :class:`otp.ActorExited` if
    the server is dead or dies first (a crash is the ``__cause__``),
    :class:`otp.MailboxFull` if its mailbox dropped the request, and
    :class:`otp.CallTimeout` after ``timeout`` seconds. :meth:`wait` keeps the request
    pending on a timeout (``wait_response``); :meth:`receive` abandons it
    (``receive_response``: a late reply is dropped). A reply can be collected any number
    of times; ``done()`` and ``result()`` look without waiting (``check_response``).
    """

    # The internal interface (otp's senders, not users): _slot, the promise the sender puts
    # into the mailbox with the request (ActorRef.send_request, RemoteRef's over Redis).
    __slots__ = ("_backend", "_deadlines", "_slot", "request", "target")

    def __init__(self, target: Ref, request: Any, backend: Backend, deadlines: Any) -> None:
        #: The actor the request was sent to.
        self.target = target
        #: The request itself.
        self.request = request
        self._backend = backend
        self._deadlines = deadlines
        self._slot = _Slot()
        self._slot._handle = self

    def __repr__(self) -> str:
        state = ("pending", "replied", "failed", "abandoned")[self._slot._state]
        return f"<otp.RequestId {self.request!r} to {self.target!r} {state}>"

    # ------------------------------------------------------------------ looking

    def done(self) -> bool:
        """``True`` once the reply or the error has arrived, or the request was abandoned."""
        return self._slot._state != _PENDING

    def result(self) -> R_co:
        """The reply, without waiting (``gen_server:check_response/2``): raises the call's
        error if it failed, ``RuntimeError`` if it is still pending or was abandoned."""
        slot = self._slot
        if slot._state == _OK:
            return slot._value  # type: ignore[no-any-return]
        if slot._state == _FAILED:
            raise slot._value
        if slot._state == _ABANDONED:
            raise RuntimeError(f"{self!r} was abandoned; its reply is dropped")
        raise RuntimeError(f"{self!r} has no reply yet; await handle.wait() for it")

    # ------------------------------------------------------------------ waiting

    async def wait(self, timeout: float | None = 5.0) -> R_co:
        """Wait up to ``timeout`` seconds (``None``: forever) for the reply and return it
        (``gen_server:wait_response/2``). On :class:`otp.CallTimeout` the request stays
        pending: wait again, or :meth:`abandon` it. Raises ``RuntimeError`` for an
        abandoned request."""
        await self._wait(timeout)
        return self.result()

    async def receive(self, timeout: float | None = 5.0) -> R_co:
        """As :meth:`wait`, but on a timeout (or if the waiting task is cancelled) the
        request is abandoned and a late reply dropped (``gen_server:receive_response/2``)."""
        try:
            await self._wait(timeout)
        except BaseException:
            self.abandon()
            raise
        return self.result()

    def abandon(self) -> None:
        """Give the request up: its reply, when it comes, is dropped. The server still
        handles it (OTP cannot take a message back either)."""
        slot = self._slot
        if slot._state == _PENDING:
            collection = slot._collection
            if collection is not None:
                collection.remove(self)
            slot._settle(_ABANDONED, None)

    async def _wait(self, timeout: float | None) -> None:
        if timeout is not None:
            _check_timeout(timeout)
        slot = self._slot
        if slot._state != _PENDING:
            await self._backend.checkpoint()
            return
        waiter = self._backend.promise()
        slot._waiters.append(waiter)
        try:
            if timeout == 0:
                waiter.fail(Expired())  # nothing to wait for: OTP's timeout 0
            await waiter.wait(timeout, self._deadlines)
        except Expired:
            raise CallTimeout(self.target, timeout or 0.0, self.request) from None
        finally:
            if waiter in slot._waiters:
                slot._waiters.remove(waiter)


class RequestIds(Generic[L]):
    """A collection of pending requests, each with a label (OTP's request id collection:
    ``reqids_new/0``, ``reqids_add/3``, ``reqids_size/1``, ``reqids_to_list/1`` and the
    collection forms of ``wait_response``, ``receive_response`` and ``check_response``).

    ``ids.add(ref.send_request(request), label)`` puts a request in;
    ``await ids.wait_any()`` returns ``(handle, label)`` of a request that completed
    (replied or failed: ``handle.result()`` gives the reply or raises) and takes it out,
    in completion order; ``await ids.wait_all()`` waits for every one. ``len(ids)`` is how
    many are in it; iterating gives ``(handle, label)`` pairs in the order they were added.
    """

    __slots__ = ("_backend", "_deadlines", "_labels", "_ready", "_waiters")

    def __init__(self) -> None:
        self._labels: dict[RequestId[Any], L] = {}
        self._ready: deque[RequestId[Any]] = deque()
        self._waiters: list[Promise] = []  # tasks in wait_any/receive_any
        self._backend: Backend | None = None
        self._deadlines: Any = None

    def __repr__(self) -> str:
        done = sum(1 for handle in self._labels if handle.done())
        return f"<otp.RequestIds {len(self._labels)} requests, {done} done>"

    def __len__(self) -> int:
        return len(self._labels)

    def __iter__(self) -> Iterator[tuple[RequestId[Any], L]]:
        return iter(list(self._labels.items()))

    def add(self, handle: RequestId[Any], label: L) -> None:
        """Put ``handle`` in the collection under ``label`` (``reqids_add/3``). Raises
        ``ValueError`` if it already is in a collection."""
        slot = handle._slot
        if slot._collection is not None:
            raise ValueError(f"{handle!r} is already in a request id collection")
        slot._collection = self
        self._labels[handle] = label
        if self._backend is None:
            self._backend = handle._backend
            self._deadlines = handle._deadlines
        if slot._state != _PENDING:
            self._completed(handle)

    def remove(self, handle: RequestId[Any]) -> L:
        """Take ``handle`` out and return its label; the request itself stays as it is.
        Raises ``KeyError`` if it is not in the collection."""
        label = self._labels.pop(handle)
        handle._slot._collection = None
        return label

    def check(self) -> tuple[RequestId[Any], L] | None:
        """A completed request and its label, taken out of the collection, or ``None`` if
        none has completed yet (``check_response/3`` on a collection); never waits."""
        ready = self._ready
        while ready:
            handle = ready.popleft()
            if handle in self._labels and handle._slot._state in (_OK, _FAILED):
                return handle, self.remove(handle)
        return None

    async def wait_any(self, timeout: float | None = 5.0) -> tuple[RequestId[Any], L]:
        """Wait up to ``timeout`` seconds for any request to complete; return it with its
        label and take it out (``wait_response/3`` with ``Delete = true``). On
        :class:`otp.CallTimeout` every request stays pending. Raises ``ValueError`` if the
        collection is empty (OTP's ``no_request``)."""
        return await self._wait_any(timeout, abandon=False)

    async def receive_any(self, timeout: float | None = 5.0) -> tuple[RequestId[Any], L]:
        """As :meth:`wait_any`, but on a timeout every request in the collection is
        abandoned and the collection emptied (``receive_response/3``)."""
        return await self._wait_any(timeout, abandon=True)

    async def wait_all(self, timeout: float | None = 5.0) -> list[tuple[RequestId[Any], L]]:
        """Wait up to ``timeout`` seconds in all for every request; return them with their
        labels in the order they were added, and empty the collection. On
        :class:`otp.CallTimeout` they all stay in it (the completed ones too)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pending = [handle for handle in self._labels if not handle.done()]
            if not pending:
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await pending[0]._wait(left)
            except CallTimeout:
                raise CallTimeout(
                    pending[0].target, timeout or 0.0, [h.request for h in pending]
                ) from None
        if self._backend is not None:
            await self._backend.checkpoint()
        done = list(self._labels.items())
        for handle, _ in done:
            handle._slot._collection = None
        self._labels.clear()
        self._ready.clear()
        return done

    def abandon(self) -> None:
        """Abandon every request in the collection and empty it."""
        for handle in list(self._labels):
            self.remove(handle)
            handle.abandon()
        self._ready.clear()

    # ------------------------------------------------------------------ internals

    def _completed(self, handle: RequestId[Any]) -> None:
        self._ready.append(handle)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:  # each looks again; those that find nothing wait on
            waiter.resolve(None)

    async def _wait_any(self, timeout: float | None, *, abandon: bool) -> tuple[Any, L]:
        if timeout is not None:
            _check_timeout(timeout)
        if not self._labels:
            raise ValueError("the request id collection is empty (no_request)")
        backend = self._backend
        assert backend is not None
        found = self.check()
        if found is not None:
            await backend.checkpoint()
            return found
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            waiter = backend.promise()
            self._waiters.append(waiter)
            try:
                if left == 0:
                    waiter.fail(Expired())
                await waiter.wait(left, self._deadlines)
            except BaseException as exc:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                if isinstance(exc, Expired) or abandon:
                    requests = [handle.request for handle in self._labels]
                    first = next(iter(self._labels), None)
                    if abandon:
                        self.abandon()
                    if isinstance(exc, Expired):
                        target = first.target if first is not None else None
                        raise CallTimeout(target, timeout or 0.0, requests) from None
                raise
            found = self.check()
            if found is not None:
                return found
            if not self._labels:
                raise ValueError("the request id collection was emptied while waiting")


def _check_timeout(timeout: object) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ValueError(f"timeout must be seconds >= 0 or None (wait forever), not {timeout!r}")
