"""Refs to actors on other nodes: :class:`RemoteRef` and what a networked broker provides.

A ``RemoteRef`` names an actor on another node (``node``, the registered ``name`` and, when
it was looked up, the incarnation's ``id``) and forwards ``call``, ``send_request``,
``cast``, ``send``, ``stop`` and ``exit`` to the broker that knows how to reach that node
(``otp.redis.RedisBroker``). Monitoring a remote ref from a GenServer
(``self.monitor(ref)``) works as locally; the ``Down`` reason is the actor's exit reason,
``"noproc"``, ``"nodedown"`` (its node stopped heartbeating) or ``"noconnection"`` (this
node lost its broker connection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, final, overload

if TYPE_CHECKING:
    from ._actor import ActorRef, Down, MonitorRef
    from ._call import Call, R
    from ._requests import RequestId
    from ._specs import ChildSpec
    from ._supervisor_ops import ChildCount, ChildInfo, Operation

__all__ = ["RemoteRef", "RemoteTransport"]


class RemoteTransport(Protocol):
    """What a networked broker offers :class:`RemoteRef` (private hooks)."""

    async def _remote_call(self, ref: RemoteRef, request: Any, timeout: float | None) -> Any: ...

    async def _remote_post(self, ref: RemoteRef, kind: str, message: Any) -> None: ...

    def _remote_post_nowait(self, ref: RemoteRef, kind: str, message: Any) -> None: ...

    async def _remote_stop(self, ref: RemoteRef, reason: Any, timeout: float | None) -> None: ...

    def _remote_send_request(self, ref: RemoteRef, request: Any) -> RequestId[Any]: ...

    def _remote_exit(self, ref: RemoteRef, reason: Any) -> None: ...

    def _remote_monitor(
        self, ref: RemoteRef, deliver: Callable[[Down], None], watcher: ActorRef | None
    ) -> MonitorRef: ...

    def _remote_demonitor(self, monitor: MonitorRef) -> bool: ...

    def _remote_node_alive(self, ref: RemoteRef) -> bool: ...


class _Monitors:
    """``ref._monitors`` of a remote ref: what the local actor code pops when a watcher
    demonitors or exits; popping tells the remote node."""

    __slots__ = ("_transport",)

    def __init__(self, transport: RemoteTransport) -> None:
        self._transport = transport

    def pop(self, monitor: MonitorRef, default: Any = None) -> Any:
        return True if self._transport._remote_demonitor(monitor) else default


@final
class RemoteRef:
    """A handle on an actor of another node, usable where an :class:`otp.ActorRef` is:
    ``name``, ``await call(request, timeout=5.0)``, ``send_request(request)``,
    ``await cast(message)``, ``await send(message)``, ``await stop(reason="normal")``,
    ``exit(reason)``, ``alive``, and ``self.monitor(ref)`` in a GenServer. A ref to a
    supervisor also has the supervisor API (``start_child``, ``terminate_child``,
    ``restart_child``, ``delete_child``, ``which_children``, ``count_children``), with the
    supervisor's errors; a ref to a worker pool dispatches calls, casts and sends to one
    of its workers, as :class:`otp.PoolRef` does.

    Semantics follow the local ones: ``call`` raises :class:`otp.CallTimeout` after
    ``timeout`` and :class:`otp.ActorExited` at once when the actor is dead (``"noproc"``),
    dies during the call, or its node is unreachable (``"nodedown"``, ``"noconnection"``);
    ``cast``/``send`` never raise for a dead actor (the message becomes a dead letter,
    on the node that found it dead).

    A ref with an ``id`` is one incarnation (a restarted actor has a new ref); a ref
    without one (``broker.remote(name, node)``) reaches whoever holds ``name`` on ``node``
    when a message arrives, as Erlang's ``{Name, Node}`` does. Refs compare equal when
    they name the same node incarnation, name and id.
    """

    _otp_remote_ref = True

    __slots__ = ("__weakref__", "_exit_reason", "_transport", "id", "incarnation", "name", "node")

    def __init__(
        self,
        transport: RemoteTransport,
        node: str,
        name: str | None,
        id: int | None = None,
        incarnation: str | None = None,
    ) -> None:
        if name is None and id is None:
            raise ValueError("a RemoteRef needs a name or an id")
        self._transport = transport
        #: The node the actor runs on.
        self.node = node
        #: The registered name, or ``None``.
        self.name = name
        #: The incarnation's id on its node, or ``None`` for a by-name ref.
        self.id = id
        #: The node's incarnation (it changes when the node restarts), if known.
        self.incarnation = incarnation
        self._exit_reason: Any = None

    def _key(self) -> tuple[Any, ...]:
        return (self.node, self.incarnation if self.id is not None else None, self.name, self.id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteRef):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        who = repr(self.name) if self.name is not None else "(unnamed)"
        number = f"#{self.id}" if self.id is not None else ""
        state = "" if self.alive else f" exited {self._exit_reason!r}"
        return f"<RemoteRef {who}{number} on {self.node!r}{state}>"

    # ------------------------------------------------------------------ state
    # The internal interface (the networked broker that made the ref: otp/redis; not for
    # users): _exit_reason (None while not known to have exited), _mark_exited.
    # tests/test_architecture.py holds the same list.

    @property
    def alive(self) -> bool:
        """``False`` once this node learnt that the actor exited or its node went down;
        ``True`` otherwise (a best guess: nothing is asked over the network)."""
        return self._exit_reason is None and self._transport._remote_node_alive(self)

    @property
    def _alive(self) -> bool:
        return self.alive

    @property
    def exit_reason(self) -> Any:
        """The exit reason this node learnt, else ``None``."""
        return self._exit_reason

    def _mark_exited(self, reason: Any) -> None:
        if self.id is not None and self._exit_reason is None:
            self._exit_reason = reason

    # ------------------------------------------------------------------ messages

    @overload
    async def call(self, request: Call[R], timeout: float | None = 5.0) -> R: ...
    @overload
    async def call(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object], timeout: float | None = 5.0
    ) -> object: ...
    @overload
    async def call(self, request: Any, timeout: float | None = 5.0) -> Any: ...

    async def call(self, request: Any, timeout: float | None = 5.0) -> Any:
        """Send ``request`` to the actor's ``handle_call`` and wait for the reply.

        Raises :class:`otp.CallTimeout`, :class:`otp.ActorExited` (``reason`` is the remote
        exit reason, a :class:`RemoteError` for a crash, or ``"noproc"``, ``"nodedown"``,
        ``"noconnection"``), :class:`otp.MailboxFull`, :class:`otp.CodecError`.
        """
        return await self._transport._remote_call(self, request, timeout)

    @overload
    def send_request(self, request: Call[R]) -> RequestId[R]: ...
    @overload
    def send_request(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object]
    ) -> RequestId[object]: ...
    @overload
    def send_request(self, request: Any) -> RequestId[Any]: ...

    def send_request(self, request: Any) -> RequestId[Any]:
        """Send ``request`` to the remote actor's ``handle_call`` without waiting; collect
        the reply later with ``await handle.wait(timeout)`` (``gen_server:send_request/2``
        to a pid on another node). See :class:`otp.RequestId` and :class:`otp.RequestIds`.

        Never yields. As with :meth:`otp.ActorRef.send_request`, a handle to an actor
        known to be dead (or whose node is unreachable) already holds its
        :class:`otp.ActorExited` (``"noproc"``, ``"nodedown"``, ``"noconnection"``), and
        the handle fails with it if the actor dies or its node goes down before it
        replies. A full mailbox over there is learnt only with the answer: the handle
        fails with :class:`otp.MailboxFull` (locally ``send_request`` raises it at once).
        Raises :class:`otp.CodecError` at once if ``request`` cannot cross.
        """
        return self._transport._remote_send_request(self, request)

    def exit(self, reason: Any) -> None:
        """Send the remote actor an exit signal (``erlang:exit/2`` to a pid on another
        node); it does not wait, as locally.

        The signal has the local semantics on the actor's node (:meth:`otp.ActorRef.exit`):
        ``"kill"`` cannot be trapped (the actor dies with reason ``"killed"``); an actor
        that traps exits gets ``otp.Exit(sender, reason)`` in ``handle_info``, ``sender``
        being a :class:`RemoteRef` to the calling actor (``None`` outside any actor); one
        that does not trap exits ignores ``"normal"`` and dies at once with any other
        reason. A dead actor, or one whose node is down, ignores it (at most once, as
        every signal between nodes: a signal lost with the connection is not resent).
        ``reason=None`` means ``"normal"``; a reason the codec cannot carry arrives as an
        :class:`otp.RemoteError` (its type and text).
        """
        self._transport._remote_exit(self, "normal" if reason is None else reason)

    async def cast(self, message: Any) -> None:
        """Send ``message`` to ``handle_cast``; never waits for it to be handled."""
        await self._transport._remote_post(self, "cast", message)

    async def send(self, message: Any) -> None:
        """Send ``message`` to ``handle_info`` (Erlang's ``!``)."""
        await self._transport._remote_post(self, "send", message)

    def cast_nowait(self, message: Any) -> None:
        """:meth:`cast` from synchronous code: queued and sent in order by the broker.

        Raises :class:`otp.MailboxFull` while the actor's node reports its ``BLOCK``
        mailbox full with this node's casts waiting for room there, as a local
        ``cast_nowait`` raises at a full ``BLOCK`` mailbox (:meth:`cast` waits).
        """
        self._transport._remote_post_nowait(self, "cast", message)

    def send_nowait(self, message: Any) -> None:
        """:meth:`send` from synchronous code: queued and sent in order by the broker;
        :class:`otp.MailboxFull` as for :meth:`cast_nowait`."""
        self._transport._remote_post_nowait(self, "send", message)

    async def stop(self, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the actor (``terminate(reason)`` runs there) and wait until it has exited.

        Returns at once for an actor that is already dead; raises
        :class:`otp.CallTimeout` if ``timeout`` passes first or the node is unreachable
        for that long.
        """
        await self._transport._remote_stop(self, reason, timeout)

    # ------------------------------------------------------------------ supervisors

    async def which_children(self, *, timeout: float | None = None) -> list[ChildInfo]:
        """A remote supervisor's children (as :meth:`otp.SupervisorRef.which_children`;
        their refs are remote refs). ``timeout=None`` waits as long as the supervisor
        needs, or until its node is known to be down."""
        from ._supervisor_ops import WhichChildren

        return await self._supervisor(WhichChildren(), timeout)  # type: ignore[no-any-return]

    async def count_children(self, *, timeout: float | None = None) -> ChildCount:
        """:meth:`otp.SupervisorRef.count_children` of a remote supervisor."""
        from ._supervisor_ops import CountChildren

        return await self._supervisor(CountChildren(), timeout)  # type: ignore[no-any-return]

    async def start_child(self, spec: ChildSpec, *, timeout: float | None = None) -> RemoteRef:
        """Start ``spec`` under a remote supervisor (:meth:`otp.SupervisorRef.start_child`)
        and return the child's ref. The spec's class crosses as its wire name
        (``@otp.message`` on the GenServer class), so the remote node must import it;
        otherwise :class:`otp.CodecError` (``"unknown_type"``). The supervisor's errors
        arrive as themselves: :class:`otp.AlreadyStarted`, :class:`otp.StartFailed`, ...
        """
        from ._specs import SupervisorSpec, WorkerSpec
        from ._supervisor_ops import StartChild

        if not isinstance(spec, (WorkerSpec, SupervisorSpec)):
            raise TypeError(
                f"start_child needs an otp.worker(...) or otp.supervisor(...) spec, not {spec!r}"
            )
        return await self._supervisor(StartChild(spec), timeout)  # type: ignore[no-any-return]

    async def terminate_child(self, child: Any, *, timeout: float | None = None) -> None:
        """Stop a child of a remote supervisor by id or ref (raises :class:`otp.NotFound`)."""
        from ._supervisor_ops import TerminateChild

        await self._supervisor(TerminateChild(child), timeout)

    async def restart_child(self, child_id: str, *, timeout: float | None = None) -> RemoteRef:
        """Restart a stopped child of a remote supervisor (raises :class:`otp.NotFound`,
        :class:`otp.ChildRunning`)."""
        from ._supervisor_ops import RestartChild

        return await self._supervisor(RestartChild(child_id), timeout)  # type: ignore[no-any-return]

    async def delete_child(self, child_id: str, *, timeout: float | None = None) -> None:
        """Remove a stopped child's spec on a remote supervisor (raises
        :class:`otp.NotFound`, :class:`otp.ChildRunning`)."""
        from ._supervisor_ops import DeleteChild

        await self._supervisor(DeleteChild(child_id), timeout)

    async def _supervisor(self, operation: Operation, timeout: float | None) -> Any:
        from ._supervisor_ops import supervisor_op

        return await supervisor_op(self, operation, timeout)

    # ------------------------------------------------------------------ monitors

    def _add_monitor(
        self, deliver: Callable[[Down], None], watcher: ActorRef | None = None
    ) -> MonitorRef:
        return self._transport._remote_monitor(self, deliver, watcher)

    @property
    def _monitors(self) -> _Monitors:
        return _Monitors(self._transport)
