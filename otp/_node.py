"""The Node: root task group, name registry, broker slot, and :func:`run`."""

from __future__ import annotations

import datetime
import importlib.util
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack, overload

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup

from ._actor import ActorRef, Shutdown
from ._backends import backend as _current_backend
from ._broker import Broker, InMemoryBroker
from ._envelopes import DeadLetter
from ._exceptions import ActorExited, NameTaken, NodeFenced, SupervisorGaveUp
from ._gen_server import GenServer
from ._global import Global, GlobalRegistry
from ._groups import Groups
from ._mailbox import Mailbox
from ._multicall import MultiCallResult, multi_call
from ._start import start_actor
from ._threads import FromThread

if TYPE_CHECKING:
    from ._call import Call, R
    from ._init_args import A1, A2, A3, A4, Init0, Init1, Init2, Init3, Init4, InitN, Ts
    from ._ref import Ref
    from ._snapshots import TreeSnapshot
    from ._specs import PoolSpec, SupervisorSpec, WorkerSpec
    from ._supervisor_refs import PoolRef, SupervisorRef

__all__ = ["Event", "Node", "NodeEvent", "run"]

logger = logging.getLogger("otp")

T = TypeVar("T")

_UTC = datetime.UTC


@attrs.frozen
class NodeEvent:
    """A structured runtime event, delivered to :meth:`Node.add_event_listener` listeners
    (also importable as ``otp.Event``, its first name, which clashes with ``anyio.Event``).

    ``kind`` is one of ``"started"``, ``"exited"`` (``reason`` says how; a crash is an
    exception), ``"restarted"``, ``"restart_failed"``, ``"gave_up"``, ``"dead_letter"``,
    ``"overflow"``, ``"shutdown_timeout"`` and ``"actor_stuck"`` (a killed actor that did
    not exit within the node's ``kill_timeout``); a networked broker adds ``"nodedown"``,
    ``"broker_disconnected"`` and ``"broker_reconnected"``. The same happenings are logged on the
    ``otp`` logger with ``extra={"otp_event": kind, ...}``.
    """

    kind: str
    actor: Any = None
    supervisor: Any = None
    reason: Any = None
    detail: Any = None
    timestamp: datetime.datetime = attrs.field(factory=lambda: datetime.datetime.now(_UTC))


#: The first name of :class:`NodeEvent`; kept working (the same class).
Event = NodeEvent


class SpawnLinkOptions(TypedDict, total=False):
    """The keyword options of ``GenServer.spawn_link``."""

    name: str | None
    mailbox: Mailbox | None
    shutdown: Shutdown
    start_timeout: float | None


class SpawnOptions(SpawnLinkOptions, total=False):
    """The keyword options of :meth:`Node.spawn`."""

    link: ActorRef | None


class Node:
    """The root of an anyotp program: owns the root task group, the name registry and the
    broker (``otp.Node(broker=...)``; in-memory by default).

    Use it as an async context manager. Leaving it stops every actor and supervisor it
    started, in reverse start order (each gets its ``shutdown`` time for ``terminate``),
    and no task outlives it. If a top-level supervisor gives up, the body is cancelled at
    once and leaving raises :class:`otp.SupervisorGaveUp`.
    """

    def __init__(
        self, *, broker: Broker | None = None, name: str = "nonode", kill_timeout: float = 5.0
    ) -> None:
        if isinstance(kill_timeout, bool) or not isinstance(kill_timeout, (int, float)):
            raise TypeError(f"kill_timeout must be seconds > 0, not {kill_timeout!r}")
        if not kill_timeout > 0:
            raise ValueError(f"kill_timeout must be seconds > 0, not {kill_timeout!r}")
        self.name = name
        #: Seconds a killed actor may take to exit before a shutdown (the node's, a
        #: supervisor's, a timed-out start) logs it as stuck and goes on without it.
        self.kill_timeout = float(kill_timeout)
        self.broker: Broker = broker if broker is not None else InMemoryBroker()
        self._registry: dict[str, ActorRef] = {}
        # Top-level actors and supervisors, in start order (dict keeps insertion order).
        self._top: dict[ActorRef, None] = {}
        # Every live actor of this node whose start has finished, in start order, mapped to
        # whether it is a worker (runs no children). start_actor adds it, the exit routine
        # takes it out (_actor_exited); broadcast reads it, so no one walks supervisors.
        self._actors: dict[ActorRef, bool] = {}
        self._task_group_cm: TaskGroup | None = None
        self._entered = False
        self._closing = False
        self._listeners: list[Callable[[NodeEvent], None]] = []
        # The event loop thread and anyio token, set on entry: refs are used only there,
        # other threads come in through from_thread.
        self._thread: int | None = None
        self._token: Any = None
        self._from_thread: FromThread | None = None
        #: Process groups (OTP's ``pg``): ``await node.groups.join("workers", ref)``.
        self.groups = Groups(self)

    def __repr__(self) -> str:
        return f"<otp.Node {self.name!r} actors={len(self._top)}>"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Node:
        if self._entered:
            raise RuntimeError(f"{self!r} was already entered; create a new Node")
        self._entered = True
        self._backend = _current_backend()
        self._thread = threading.get_ident()
        self._token = anyio.lowlevel.current_token()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group_cm = task_group
        # Call timeouts without a timer or cancel scope per call (see otp._backends).
        self._deadlines = self._backend.deadlines(task_group)
        try:
            await self.broker._attach(self)
        except BaseException:
            # The broker could not start (e.g. Redis is unreachable): raise its error bare.
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group_cm
        assert task_group is not None
        self._closing = True
        with anyio.CancelScope(shield=True):
            await self._stop_all()
            try:
                await self.broker._detach(self)
            finally:
                # Anything still running (timers of exited actors, stragglers) ends here.
                task_group.cancel_scope.cancel()
        group: BaseExceptionGroup[BaseException]
        try:
            return await task_group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as caught:
            group = caught
        # A lone error is raised bare (the body's own exception, or a top-level give-up),
        # so both `except` and `except*` catch it; several stay grouped.
        leaves = group.exceptions
        if len(leaves) == 1 and (
            leaves[0] is exc or isinstance(leaves[0], (SupervisorGaveUp, NodeFenced))
        ):
            raise leaves[0]
        raise group

    async def _stop_all(self) -> None:
        for ref in reversed(list(self._top)):
            await ref._shutdown_own()

    # ------------------------------------------------------------------ the actor index

    def _actor_started(self, ref: ActorRef, *, worker: bool) -> None:
        """Internal (``start_actor``): ``ref`` has finished its start and runs."""
        self._actors[ref] = worker

    def _actor_exited(self, ref: ActorRef) -> None:
        """Internal (the exit routine, synchronous): ``ref`` has exited."""
        self._actors.pop(ref, None)
        self._top.pop(ref, None)

    def _live_workers(self) -> list[ActorRef]:
        """The live worker actors of this node (every started actor that is not a
        supervisor), in start order: what ``broadcast`` reaches (``erlang:processes()``
        without the supervisors)."""
        return [ref for ref, worker in self._actors.items() if worker]

    @property
    def _task_group(self) -> TaskGroup:
        if self._task_group_cm is None:
            raise RuntimeError("use the Node as `async with otp.Node() as node:` first")
        return self._task_group_cm

    # ------------------------------------------------------------------ actors

    # The overloads check the start arguments against ``cls.init`` (see otp/_init_args.py).
    @overload
    async def spawn(self, cls: type[Init0], /, **options: Unpack[SpawnOptions]) -> ActorRef: ...
    @overload
    async def spawn(
        self, cls: type[Init1[A1]], a1: A1, /, **options: Unpack[SpawnOptions]
    ) -> ActorRef: ...
    @overload
    async def spawn(
        self, cls: type[Init2[A1, A2]], a1: A1, a2: A2, /, **options: Unpack[SpawnOptions]
    ) -> ActorRef: ...
    @overload
    async def spawn(
        self,
        cls: type[Init3[A1, A2, A3]],
        a1: A1,
        a2: A2,
        a3: A3,
        /,
        **options: Unpack[SpawnOptions],
    ) -> ActorRef: ...
    @overload
    async def spawn(
        self,
        cls: type[Init4[A1, A2, A3, A4]],
        a1: A1,
        a2: A2,
        a3: A3,
        a4: A4,
        /,
        **options: Unpack[SpawnOptions],
    ) -> ActorRef: ...
    @overload
    async def spawn(
        self, cls: type[InitN[*Ts]], /, *args: *Ts, **options: Unpack[SpawnOptions]
    ) -> ActorRef: ...

    async def spawn(  # type: ignore[misc]  # mypy cannot match an impl to the TypeVarTuple overload
        self,
        cls: type[Any],
        *args: Any,
        name: str | None = None,
        mailbox: Mailbox | None = None,
        shutdown: Shutdown = 5.0,
        link: ActorRef | None = None,
        start_timeout: float | None = None,
    ) -> ActorRef:
        """Start an actor that no supervisor watches and return its ref once ``init`` has
        finished.

        Its crash is logged and reported to its monitors and links; it never takes the
        node down. ``link=ref`` links it to that actor before ``init`` runs, as
        ``gen_server:start_link`` called by ``ref`` does (see ``GenServer.spawn_link``).
        Raises :class:`otp.NameTaken` if ``name`` is registered, :class:`otp.StartFailed`
        (cause: the exception) if ``init`` raises, :class:`otp.ActorExited` (reason
        ``"noproc"``) if ``link`` is dead. ``start_timeout`` bounds ``init`` (OTP's
        start Timeout): past it the actor is killed and the start raises
        :class:`otp.StartFailed` (cause: a ``TimeoutError``). If ``init`` returns
        :data:`otp.IGNORE` nothing runs and it raises :class:`otp.Ignored`
        (``gen_server:start`` returns ``ignore``). Pass keyword arguments for ``init``
        with :func:`functools.partial`-style wrappers or as positional arguments.
        """
        return await self._start_top(
            cls, args, name, mailbox, shutdown, link=link, start_timeout=start_timeout
        )

    async def _start_top(
        self,
        cls: type[GenServer],
        args: tuple[Any, ...],
        name: str | None,
        mailbox: Mailbox | None,
        shutdown: Shutdown,
        *,
        escalate: bool = False,
        ref_class: type[ActorRef] | None = None,
        link: ActorRef | None = None,
        start_timeout: float | None = None,
    ) -> ActorRef:
        if self._closing:
            raise RuntimeError(f"{self!r} is shutting down; it starts no new actors")
        ref = await start_actor(
            self,
            self._task_group,
            cls,
            args,
            name=name,
            mailbox=mailbox,
            shutdown=shutdown,
            escalate=escalate,
            ref_class=ref_class,
            link=link,
            start_timeout=start_timeout,
        )
        if ref.alive:  # its exit takes it out again (ActorRef._exit): no monitor, no closure
            self._top[ref] = None
        return ref

    @overload
    async def start(self, spec: PoolSpec) -> PoolRef: ...

    @overload
    async def start(self, spec: SupervisorSpec) -> SupervisorRef: ...

    @overload
    async def start(self, spec: WorkerSpec) -> ActorRef: ...

    async def start(self, spec: SupervisorSpec | WorkerSpec) -> ActorRef:
        """Start a ``worker(...)`` or ``supervisor(...)`` spec at the top of this node.

        Returns its ref once every ``init`` in the subtree has finished. If a child fails
        to start, the ones already started are stopped and :class:`otp.StartFailed` names
        it. A top-level supervisor that gives up cancels the body of ``async with Node()``
        and leaving the node raises :class:`otp.SupervisorGaveUp`.
        """
        from ._supervisor import start_top

        return await start_top(self, spec)

    @property
    def from_thread(self) -> FromThread:
        """Thread-safe, blocking calls into this node from other threads:
        ``node.from_thread.call(ref_or_name, request)``, ``.cast``, ``.send``, ``.run``
        and ``.run_sync`` (see :class:`otp.FromThread`)."""
        portal = self._from_thread
        if portal is None:
            portal = self._from_thread = FromThread(self)
        return portal

    def whereis(self, name: str) -> ActorRef | None:
        """The live ref registered under ``name``, or ``None`` (``erlang:whereis/1``)."""
        return self._registry.get(name)

    async def locate(
        self, name: str, *, node: str | None = None, timeout: float = 2.0
    ) -> Ref | None:
        """Like :meth:`whereis`, but across nodes when the broker reaches other nodes
        (``otp.redis.RedisBroker``): the local ref, else the holder of the
        :class:`otp.Global` name ``name`` (one Redis read), else a ref to an actor
        registered as ``name`` on another node (every node is asked), else ``None``.

        With the in-memory broker it is :meth:`whereis` (``node`` must be ``None`` or
        this node's name). Erlang's counterpart is ``global:whereis_name/1``.
        """
        broker = self.broker
        finder = getattr(broker, "whereis", None)
        if finder is None:
            return self._registry.get(name) if node in (None, self.name) else None
        if node is None and isinstance(broker, GlobalRegistry):
            local = self._registry.get(name)
            if local is not None:
                return local
            # A global name is one Redis read away; otherwise ask every node.
            found: Ref | None = await broker._locate_global(name, timeout)
            if found is not None:
                return found
        found_anywhere: Ref | None = await finder(name, node=node, timeout=timeout)
        return found_anywhere

    # ------------------------------------------------------------------ by name

    async def _resolve_name(self, name: str, timeout: float | None = None) -> Ref | None:
        """The ref ``name`` stands for right now, or ``None``: the one place where
        :meth:`call`, :meth:`cast` and :meth:`send` resolve a name. A plain name is this
        node's registry; an :class:`otp.Global` name not held here is asked of the
        cluster (``timeout`` bounds that, 2 s by default)."""
        local = self._registry.get(name)
        if local is not None or type(name) is not Global:
            return local
        broker = self.broker
        if not isinstance(broker, GlobalRegistry):
            return None
        found: Ref | None = await broker._locate_global(
            name, 2.0 if timeout is None else min(timeout, 2.0)
        )
        return found

    @overload
    async def call(self, name: str, request: Call[R], timeout: float | None = 5.0) -> R: ...
    @overload
    async def call(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, name: str, request: Call[object], timeout: float | None = 5.0
    ) -> object: ...
    @overload
    async def call(self, name: str, request: Any, timeout: float | None = 5.0) -> Any: ...

    async def call(self, name: str, request: Any, timeout: float | None = 5.0) -> Any:
        """Call the actor registered as ``name`` (``gen_server:call({Name, Node}, ...)``).

        The name is resolved at this call, as Erlang resolves a registered name at each
        send, so a restarted actor is reached under its name; an :class:`otp.Global`
        name held on another node is found in the cluster (``{global, Name}``). Raises
        :class:`otp.ActorExited` with reason ``"noproc"`` if nobody holds ``name``, and
        otherwise what :meth:`ActorRef.call` raises.
        """
        ref = await self._resolve_name(name, timeout)
        if ref is None:
            raise ActorExited(name, "noproc")
        return await ref.call(request, timeout)

    async def cast(self, name: str, message: Any) -> None:
        """Cast to the actor registered as ``name`` now (``gen_server:cast/2``).

        As in OTP a cast never fails: if nobody holds ``name`` the message becomes a dead
        letter (reason ``"noproc"``) and ``cast`` returns quietly.
        """
        ref = await self._resolve_name(name)
        if ref is None:
            await self._backend.checkpoint()
            self._dead_letter(name, message, "noproc")
            return
        await ref.cast(message)

    async def send(self, name: str, message: Any) -> None:
        """Send ``message`` to ``handle_info`` of the actor registered as ``name`` now
        (Erlang's ``Name ! Message``).

        Raises :class:`otp.ActorExited` with reason ``"noproc"`` if nobody holds ``name``
        (Erlang raises ``badarg``); a holder that dies before handling it gets a dead
        letter, as with :meth:`ActorRef.send`.
        """
        ref = await self._resolve_name(name)
        if ref is None:
            raise ActorExited(name, "noproc")
        await ref.send(message)

    async def multi_call(
        self,
        name: str,
        request: Any,
        *,
        timeout: float | None = 5.0,
        nodes: Iterable[str] | None = None,
    ) -> MultiCallResult:
        """Call the actor registered as ``name`` on every live node (or on ``nodes``) at
        once and wait up to ``timeout`` for each (OTP's ``gen_server:multi_call/4``).

        Returns a :class:`otp.MultiCallResult`: ``replies`` per node and ``failures`` per
        node (``ActorExited("noproc")`` where nothing has the name, ``"nodedown"``,
        :class:`otp.CallTimeout`, ...); unpack it as ``replies, bad_nodes = ...``. With
        the in-memory broker the only node is this one. Never raises for a node's failure.
        """
        return await multi_call(self, name, request, timeout=timeout, nodes=nodes)

    def registered(self) -> list[str]:
        """The names registered now (``erlang:registered/0``)."""
        return list(self._registry)

    def tree(self, *, state: bool = False) -> TreeSnapshot:
        """An immutable snapshot of every supervisor and actor on this node; renders with
        rich.

        With ``state=True`` every running worker's ``ActorSnapshot.state`` holds its state
        as its ``format_status`` shows it (read at that moment, between two of its awaits;
        a shallow copy).
        """
        from ._snapshots import snapshot_node

        snapshot = snapshot_node(self)
        return _with_states(snapshot) if state else snapshot

    # ------------------------------------------------------------------ events

    def add_event_listener(self, listener: Callable[[NodeEvent], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every runtime :class:`NodeEvent` on this node (actor
        started/exited, restarts, give-ups, dead letters, overflows); returns a function
        that removes it. Listeners run synchronously in the event loop: keep them quick
        (append to a list, ``send_nowait`` to an actor). An exception in a listener is
        logged and ignored."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    # ------------------------------------------------------------------ internal interface
    # What otp's own modules (the actor, supervisors, snapshots, from_thread, otp.redis) use
    # of a node besides the public API, so that no module reads other Node attributes. Not
    # for users; names and semantics may change. tests/test_architecture.py holds the list.
    # Read-only state: _backend (the anyio backend's fast waits), _deadlines (the shared
    # call-deadline queue), _task_group (where actors and timers run), _thread (the event
    # loop thread's ident), _closing (the node is stopping its actors), _top (the
    # top-level actors in start order; an exiting actor removes itself), _listeners
    # (checked before _emit where building the event's arguments would cost: spawn, exit).
    # Methods: _emit (a NodeEvent to the listeners), _dead_letter, _register, _unregister,
    # _claim_global (the name registry), _exits_settled (after a stop), _start_top
    # (start an actor or supervisor under the node; start_top's way in), _actor_started
    # and _actor_exited (the actor index, above).

    def _emit(
        self,
        kind: str,
        actor: Any = None,
        supervisor: Any = None,
        reason: Any = None,
        detail: Any = None,
    ) -> None:
        if not self._listeners:
            return
        event = NodeEvent(kind, actor, supervisor, reason, detail)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("event listener %r failed on %r; ignored", listener, event)

    # ------------------------------------------------------------------ registry

    def _register(self, name: str, ref: Any) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"an actor name must be a non-empty str, not {name!r}")
        holder = self._registry.get(name)
        if holder is not None:
            raise NameTaken(name, holder)
        self._registry[name] = ref

    def _unregister(self, name: str, ref: Any) -> None:
        actor: ActorRef = ref
        if self._registry.get(name) is actor:
            del self._registry[name]
            if type(name) is Global and isinstance(self.broker, GlobalRegistry):
                self.broker._release_global(name, actor)

    async def _exits_settled(self, timeout: float | None) -> None:
        """After an actor stopped: wait until the broker has done in the cluster what the
        exits so far released (global names, group memberships), at most ``timeout``;
        at once with a broker that has no cluster, and while the node closes (it flushes
        them itself)."""
        settle = getattr(self.broker, "_exits_settled", None)
        if settle is not None and not self._closing:
            await settle(timeout)

    async def _claim_global(self, name: str, ref: Any) -> None:
        """Claim a :class:`otp.Global` name in the cluster (already held on this node by
        ``ref``); on failure the local name is freed and :class:`otp.NameTaken` raised."""
        broker = self.broker
        if not isinstance(broker, GlobalRegistry):
            return  # no cluster: the node-unique registration is all there is
        try:
            await broker._claim_global(name, ref)
        except BaseException:
            if self._registry.get(name) is ref:
                del self._registry[name]
            raise

    def _dead_letter(self, recipient: Any, message: Any, reason: str) -> None:
        self.broker._dead_letter(DeadLetter(message=message, recipient=recipient, reason=reason))
        if self._listeners:
            self._emit("dead_letter", actor=recipient, reason=reason, detail=message)


def _with_states(snapshot: Any) -> Any:
    from ._snapshots import ActorSnapshot

    if isinstance(snapshot, ActorSnapshot):
        ref = snapshot.ref
        if ref is None or not ref.alive:
            return snapshot
        return attrs.evolve(snapshot, state=ref._status())
    children = getattr(snapshot, "children", None)
    if not children:
        return snapshot
    return attrs.evolve(snapshot, children=tuple(_with_states(c) for c in children))


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
    handle_signals: bool = True,
) -> T:
    """Run ``main(*args)`` on ``backend`` (``"asyncio"`` or ``"trio"``) and return its result.

    A thin wrapper over :func:`anyio.run`; the same program runs unchanged on both.

    With ``handle_signals`` (the default, in the main thread of a POSIX process), SIGINT
    (Ctrl-C) and SIGTERM cancel ``main``, so its ``async with otp.Node()`` block shuts every
    actor down in order (``terminate`` runs, in reverse start order, each within its
    ``shutdown`` time), as an OTP node's ``init:stop()`` does. Then SIGINT raises
    ``KeyboardInterrupt`` (as :func:`asyncio.run` does; uncaught, the process exits with
    status 130) and SIGTERM raises ``SystemExit(0)``: the orderly stop a service manager
    asked for is a success (systemd and Kubernetes send SIGTERM). A second signal during the
    shutdown is not intercepted: a second Ctrl-C interrupts it, a second SIGTERM kills.
    ``handle_signals=False`` leaves signals to the backend and to you.

    Raises ``ValueError`` for any other backend name, and ``ModuleNotFoundError`` naming
    the ``anyotp[trio]`` extra when ``backend="trio"`` but trio is not installed.
    """
    if backend not in ("asyncio", "trio"):
        raise ValueError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
    if backend == "trio" and not _trio_installed():
        raise ModuleNotFoundError(
            "otp.run(backend='trio') needs trio, which is not installed: "
            "pip install 'anyotp[trio]' (or run on the default asyncio backend)",
            name="trio",
        )
    if not handle_signals or not _can_handle_signals():
        return anyio.run(main, *args, backend=backend, backend_options=backend_options)
    caught: list[int] = []
    value = anyio.run(
        _run_until_signalled, main, args, caught, backend=backend, backend_options=backend_options
    )
    if caught:
        if caught[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(0)
    return value  # type: ignore[no-any-return]


def _trio_installed() -> bool:
    try:
        return importlib.util.find_spec("trio") is not None
    except (ImportError, ValueError):  # sys.modules["trio"] = None, or a broken install
        return False


def _can_handle_signals() -> bool:
    # Signal handlers can only be installed in the main thread; Windows has no SIGTERM
    # handling on asyncio's loop.
    return sys.platform != "win32" and threading.current_thread() is threading.main_thread()


async def _run_until_signalled(
    main: Callable[..., Awaitable[Any]], args: tuple[Any, ...], caught: list[int]
) -> Any:
    """Await ``main(*args)``; the first SIGINT or SIGTERM cancels it and lands in ``caught``."""
    value: Any = None
    error: Exception | None = None
    async with anyio.create_task_group() as task_group:

        async def watch(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for signum in signals:
                    caught.append(signum)
                    task_group.cancel_scope.cancel()
                    return
            # Leaving the receiver restores the previous handlers: a second signal during
            # the shutdown is not ours (Ctrl-C interrupts, SIGTERM kills).

        await task_group.start(watch, name="otp.run signal watcher")
        try:
            value = await main(*args)
        except Exception as exc:
            error = exc  # raised bare below, not wrapped in the task group's group
        task_group.cancel_scope.cancel()
    if error is not None:
        raise error
    return value
