"""The GenServer behaviour: the callbacks a user overrides and the helpers they call.

The loop that drives these callbacks lives in :mod:`otp._actor`; a message's way is
``ref.call`` → mailbox → actor loop → ``handle_call`` → reply → caller.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Final, Unpack, final, overload

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._actor import ActorRef, MonitorRef, TimerRef
    from ._backends import Caller
    from ._call import Call, R
    from ._init_args import A1, A2, A3, A4, Init0, Init1, Init2, Init3, Init4, InitN, Ts
    from ._node import Node, SpawnLinkOptions
    from ._ref import Ref

__all__ = ["IGNORE", "NOREPLY", "GenServer", "IdleTimeout"]

logger = logging.getLogger("otp")


@final
class _NoReply:
    __slots__ = ()

    def __repr__(self) -> str:
        return "otp.NOREPLY"

    def __reduce__(self) -> str:
        return "NOREPLY"


#: Return this from ``handle_call`` to answer later with :meth:`GenServer.reply`
#: (OTP's ``{noreply, State}``).
NOREPLY: Final = _NoReply()


@final
class _Ignore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "otp.IGNORE"

    def __reduce__(self) -> str:
        return "IGNORE"


#: Return this from ``init`` to start nothing (OTP's ``ignore``): under a supervisor the
#: child spec is kept without a running child; ``node.spawn`` raises :class:`otp.Ignored`.
IGNORE: Final = _Ignore()


@attrs.frozen
class IdleTimeout:
    """Delivered to ``handle_info`` when no message arrived for ``GenServer.idle_timeout``
    seconds (OTP's ``timeout`` message after ``{noreply, State, Timeout}``)."""

    after: float


def check_async_callbacks(cls: type, names: tuple[str, ...]) -> None:
    """Raise ``TypeError`` naming ``cls`` and the method if one of the callbacks ``names``
    that ``cls`` itself defines is not an ``async def`` (a coroutine function)."""
    for name in names:
        value = cls.__dict__.get(name)
        if value is None or not callable(value):
            continue  # not defined here, or not a plain function (left to the runtime)
        function = inspect.unwrap(value)
        if inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(function):
            continue
        if not inspect.isfunction(function):
            continue  # a callable object: it may return an awaitable; not ours to judge
        kind = (
            "an async generator"
            if inspect.isasyncgenfunction(function)
            else "a generator"
            if inspect.isgeneratorfunction(function)
            else "a plain def"
        )
        raise TypeError(
            f"{cls.__qualname__}.{name} must be a coroutine function (async def {name}"
            f"(self, ...)), but it is {kind}: the runtime awaits every callback"
        )


class GenServer:
    """Base class of a generic server (Erlang's ``gen_server`` behaviour).

    Subclass it and override the callbacks you need. The runtime creates the instance with
    no arguments, sets :attr:`ref` and :attr:`node`, then awaits ``init(*args)``; the actor
    counts as started when ``init`` returns. Callbacks run one at a time, in mailbox order.

    An exception escaping any callback crashes the actor: ``terminate`` runs with the
    exception as the reason, pending callers get :class:`otp.ActorExited`, monitors get
    :class:`otp.Down` and the name is freed.

    Every callback is an ``async def``: a subclass that defines one with a plain ``def``
    is refused with ``TypeError`` when the class is defined.
    """

    #: Seconds without a message after which ``handle_info(IdleTimeout(...))`` runs; ``None``
    #: disables it. Unlike OTP's per-return timeout it stays in force until changed.
    idle_timeout: float | None = None

    #: ``True`` turns exit signals (a linked actor exiting, ``ref.exit(reason)``) into
    #: :class:`otp.Exit` messages for ``handle_info`` instead of ending this actor
    #: (``process_flag(trap_exit, true)``). Set it in ``init`` or on the class; read when
    #: each signal arrives. ``"kill"`` is never trapped.
    trap_exit: bool = False

    ref: ActorRef
    node: Node

    # The internal interface, the hooks a behaviour built on GenServer uses (not for users;
    # the actor loop reads them): _otp_init (the one way the loop starts a behaviour),
    # _otp_async_callbacks (the callbacks it awaits), _otp_owns_task_group and
    # _otp_task_group (behaviours that run children, supervisors, get a task group).
    _otp_owns_task_group: bool = False
    _otp_task_group: Any = None

    #: The callbacks the runtime awaits; a behaviour built on GenServer adds its own.
    _otp_async_callbacks: ClassVar[tuple[str, ...]] = (
        "init",
        "handle_call",
        "handle_cast",
        "handle_info",
        "handle_continue",
        "terminate",
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a callback defined with plain ``def`` when the class is defined, not at
        its first message (the runtime awaits every callback)."""
        super().__init_subclass__(**kwargs)
        check_async_callbacks(cls, cls._otp_async_callbacks)
        status = cls.__dict__.get("format_status")
        if inspect.iscoroutinefunction(status):
            raise TypeError(
                f"{cls.__qualname__}.format_status must be a plain def (def format_status("
                "self, state)), not async def: it runs synchronously, even in crash reports"
            )

    # ------------------------------------------------------------------ callbacks

    # ``**kwargs`` only so that overrides with any signature type-check (start arguments
    # are positional; see otp/_init_args.py for how they are checked against ``init``).
    async def init(self, *args: Any, **kwargs: Any) -> object:
        """Prepare the state; runs before the actor is started (``gen_server:init/1``).

        Raising makes the start fail with :class:`otp.StartFailed`; returning
        :data:`otp.IGNORE` starts nothing (OTP's ``ignore``).
        """
        if args:
            raise TypeError(
                f"{type(self).__name__} got start arguments {args!r} but does not "
                "override init(); define async def init(self, ...) to take them"
            )
        return None

    async def _otp_init(self, args: tuple[Any, ...]) -> object:
        # Internal: the actor loop starts every behaviour through this one method, so a
        # behaviour (otp.StateMachine) may read what its init returned.
        return await self.init(*args)

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        """Answer a :meth:`ActorRef.call`; the return value is the reply.

        Return :data:`otp.NOREPLY` to reply later with :meth:`reply`. The default crashes
        the actor, as an unhandled call does in OTP.
        """
        raise NotImplementedError(
            f"{type(self).__name__} got call {request!r} but does not define handle_call"
        )

    async def handle_cast(self, message: Any) -> None:
        """Handle a :meth:`ActorRef.cast` (``gen_server:handle_cast/2``). The default crashes."""
        raise NotImplementedError(
            f"{type(self).__name__} got cast {message!r} but does not define handle_cast"
        )

    async def handle_info(self, message: Any) -> None:
        """Handle anything else: sends, broker messages, :class:`otp.Down`, timers.

        The default logs the message and ignores it, as OTP's default does.
        """
        logger.warning(
            "actor %s received an unexpected message %r (define handle_info to use it)",
            self.ref,
            message,
        )

    async def handle_continue(self, arg: Any) -> None:
        """Continue work scheduled with :meth:`continue_with`, before any queued message
        (OTP's ``handle_continue/2``). The default crashes."""
        raise NotImplementedError(
            f"{type(self).__name__} scheduled continue_with({arg!r}) but does not define "
            "handle_continue"
        )

    async def terminate(self, reason: Any) -> None:
        """Clean up; runs on stop, shutdown or crash with the exit reason (``"normal"``,
        ``"shutdown"``, or the exception). Not run when the actor is killed."""

    # ------------------------------------------------------------------ helpers

    def format_status(self, state: dict[str, Any]) -> Any:
        """What to show of this server's state in crash reports, ``ref.get_state()`` and
        ``node.tree(state=True)`` (OTP's ``format_status/1``); the default shows it all.

        ``state`` is a shallow copy of the instance's attributes (``ref`` and ``node`` left
        out): return what should be shown instead, e.g. ``{**state, "token": "***"}``. It is
        a plain ``def`` (refused at class definition if ``async``), called synchronously,
        sometimes outside the actor (a snapshot or the exit): keep it quick and free of side
        effects. If it raises, the state is shown as ``"<format_status raised ...>"``,
        never raw, and a warning is logged.
        """
        return state

    def reply(self, caller: Caller, value: Any) -> None:
        """Answer a call for which ``handle_call`` returned :data:`NOREPLY`
        (``gen_server:reply/2``). A reply to a caller that gave up is dropped."""
        self.ref._reply(caller, value)

    def stop(self, reason: Any = "normal") -> None:
        """End this actor once the current callback returns (OTP's ``{stop, Reason, ...}``).

        ``reason=None`` means ``"normal"``."""
        self.ref._request_stop(reason)

    def continue_with(self, arg: Any) -> None:
        """Run ``handle_continue(arg)`` once the current callback returns, before any
        queued message (OTP's ``{continue, Arg}``)."""
        self.ref._continue(arg)

    def monitor(self, ref: Ref) -> MonitorRef:
        """Watch ``ref``: when it exits, ``handle_info`` gets ``otp.Down(ref, reason)``.

        An actor that is already dead gives ``Down`` with reason ``"noproc"`` at once
        (``erlang:monitor/2``).
        """
        return self.ref._monitor(ref)

    def link(self, ref: ActorRef) -> None:
        """Link this actor and ``ref``, both ways (``erlang:link/1``): when either exits
        with an abnormal reason, the other gets an exit signal with that reason.

        Without :attr:`trap_exit` the signal ends the actor at once with the same reason,
        without ``terminate`` (as a gen_server that does not trap exits is killed); with it,
        ``handle_info`` gets ``otp.Exit(ref, reason)`` for every exit, ``"normal"``
        included. Linking twice is one link; linking to itself does nothing. Linking to a
        dead actor raises :class:`otp.ActorExited` with reason ``"noproc"``, or delivers
        ``Exit(ref, "noproc")`` when trapping exits. Raises ``TypeError`` for a ref of
        another node (monitor it instead).
        """
        self.ref._link(ref)

    def unlink(self, ref: ActorRef) -> None:
        """Remove the link to ``ref``, if any (``erlang:unlink/1``). An ``otp.Exit`` that
        already arrived stays in the mailbox."""
        self.ref._unlink(ref)

    # The overloads check the start arguments against ``cls.init`` (see otp/_init_args.py).
    @overload
    async def spawn_link(
        self, cls: type[Init0], /, **options: Unpack[SpawnLinkOptions]
    ) -> ActorRef: ...
    @overload
    async def spawn_link(
        self, cls: type[Init1[A1]], a1: A1, /, **options: Unpack[SpawnLinkOptions]
    ) -> ActorRef: ...
    @overload
    async def spawn_link(
        self, cls: type[Init2[A1, A2]], a1: A1, a2: A2, /, **options: Unpack[SpawnLinkOptions]
    ) -> ActorRef: ...
    @overload
    async def spawn_link(
        self,
        cls: type[Init3[A1, A2, A3]],
        a1: A1,
        a2: A2,
        a3: A3,
        /,
        **options: Unpack[SpawnLinkOptions],
    ) -> ActorRef: ...
    @overload
    async def spawn_link(
        self,
        cls: type[Init4[A1, A2, A3, A4]],
        a1: A1,
        a2: A2,
        a3: A3,
        a4: A4,
        /,
        **options: Unpack[SpawnLinkOptions],
    ) -> ActorRef: ...
    @overload
    async def spawn_link(
        self, cls: type[InitN[*Ts]], /, *args: *Ts, **options: Unpack[SpawnLinkOptions]
    ) -> ActorRef: ...

    async def spawn_link(  # type: ignore[misc]  # mypy cannot match an impl to the TypeVarTuple overload
        self, cls: type[Any], *args: Any, **options: Any
    ) -> ActorRef:
        """Start an actor under the node, linked to this one (``gen_server:start_link``
        from this process): ``node.spawn(cls, *args, link=self.ref, **options)``.

        The new actor treats this one as its parent: if it traps exits, this actor's exit
        stops it with the same reason (``terminate`` runs). If its ``init`` fails, this
        raises :class:`otp.StartFailed` and no exit signal follows.
        """
        node: Any = self.node  # the arguments were checked by the overloads above
        ref: ActorRef = await node.spawn(cls, *args, link=self.ref, **options)
        return ref

    def demonitor(self, monitor: MonitorRef) -> bool:
        """Stop watching; returns ``False`` if the monitor had already fired or ended."""
        return self.ref._demonitor(monitor)

    def send_after(self, delay: float, message: Any) -> TimerRef:
        """Deliver ``message`` to this actor's ``handle_info`` after ``delay`` seconds
        (``erlang:send_after/3``). Cancelled with the returned handle or when the actor exits."""
        return self.ref._send_after(delay, message)

    async def subscribe(self, topic: str) -> None:
        """Receive messages published on ``topic`` (wildcards allowed) in ``handle_info``.

        The subscription ends when the actor exits."""
        await self.node.broker._subscribe_actor(self.ref, topic)

    async def unsubscribe(self, topic: str) -> None:
        """End a subscription made with :meth:`subscribe`."""
        await self.node.broker._unsubscribe_actor(self.ref, topic)

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        headers: Mapping[str, str] | None = None,
        priority: int = 0,
    ) -> int:
        """Publish ``message`` on ``topic`` with this actor as the sender; returns how many
        subscribers accepted it (see ``Broker.publish``)."""
        return await self.node.broker.publish(
            topic, message, sender=self.ref, headers=headers, priority=priority
        )

    @overload
    async def request(self, topic: str, message: Call[R], timeout: float | None = 5.0) -> R: ...
    @overload
    async def request(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, topic: str, message: Call[object], timeout: float | None = 5.0
    ) -> object: ...
    @overload
    async def request(self, topic: str, message: Any, timeout: float | None = 5.0) -> Any: ...

    async def request(self, topic: str, message: Any, timeout: float | None = 5.0) -> Any:
        """Publish a request on ``topic`` with this actor as the sender and return the first
        reply (``Broker.request``). Like a call, it holds this actor until the reply comes:
        raises ``otp.NoSubscriber`` at once if nobody subscribes, ``otp.RequestTimeout``
        after ``timeout`` seconds."""
        return await self.node.broker.request(topic, message, timeout=timeout, sender=self.ref)
