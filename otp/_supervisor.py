"""Supervisors: child specs, restart strategies, restart intensity and dynamic children.

A supervisor is itself an actor (OTP's supervisor is a gen_server). It owns the task group
its children run in, so a supervisor that dies takes its subtree with it. Children start in
order and stop in reverse order; each exit is handled by the strategy:

* ``ONE_FOR_ONE``: restart the child that exited;
* ``ONE_FOR_ALL``: stop the others (reverse order), restart all (start order);
* ``REST_FOR_ONE``: stop the children started after it (reverse), restart it and them.

Restarts are counted per supervisor: more than ``max_restarts`` within ``within`` seconds
and the supervisor stops every child and exits with :class:`otp.SupervisorGaveUp`.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, NewType, TypedDict, Unpack, overload

import anyio
import attrs
from anyio.abc import TaskStatus

from ._actor import (
    BRUTAL_KILL,
    ActorRef,
    Down,
    Exit,
    MonitorRef,
    Shutdown,
    check_shutdown,
    check_start_timeout,
    is_normal_exit,
    start_actor,
)
from ._broker import message
from ._exceptions import (
    AlreadyPresent,
    AlreadyStarted,
    ChildRunning,
    Ignored,
    MaxChildren,
    NameTaken,
    NotFound,
    OTPError,
    Restarting,
    StartFailed,
    SupervisorGaveUp,
)
from ._gen_server import NOREPLY, GenServer
from ._hashring import pick
from ._mailbox import Mailbox, MailboxStatistics
from ._ref import Ref

if TYPE_CHECKING:
    from ._backends import Caller
    from ._call import Call, R
    from ._init_args import A1, A2, A3, A4, Init0, Init1, Init2, Init3, Init4, InitN, Ts
    from ._node import Node
    from ._requests import RequestId

__all__ = [
    "ALL_SIGNIFICANT",
    "ANY_SIGNIFICANT",
    "NEVER",
    "AutoShutdown",
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "PERMANENT",
    "REST_FOR_ONE",
    "TEMPORARY",
    "TRANSIENT",
    "CONSISTENT_HASH",
    "LEAST_BUSY",
    "ROUND_ROBIN",
    "ActorSnapshot",
    "Backoff",
    "ChildCount",
    "ChildInfo",
    "Restart",
    "Strategy",
    "PoolRef",
    "PoolSpec",
    "SupervisorRef",
    "SupervisorSnapshot",
    "SupervisorSpec",
    "TreeSnapshot",
    "WorkerSpec",
    "dynamic_supervisor",
    "supervisor",
    "worker",
    "worker_pool",
]

logger = logging.getLogger("otp")

#: The clock restart intensity and backoff are measured with (tests substitute it).
_clock = time.monotonic

#: How long which_children/count_children wait for a child start in progress before they
#: answer from the supervisor's state instead (a restart whose init hangs, say).
BUSY_GRACE: float = 1.0


class Restart(enum.Enum):
    """When a supervisor restarts a child that exited (OTP's ``restart`` child spec key)."""

    #: Always restarted.
    PERMANENT = "permanent"
    #: Restarted only after an abnormal exit (not ``"normal"``, not ``"shutdown"``).
    TRANSIENT = "transient"
    #: Never restarted, and removed from the children once it exits.
    TEMPORARY = "temporary"

    def __repr__(self) -> str:
        return f"otp.{self.name}"

    __str__ = __repr__


class Strategy(enum.Enum):
    """How a supervisor reacts to a child's exit."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"

    def __repr__(self) -> str:
        return f"otp.{self.name}"

    __str__ = __repr__


class AutoShutdown(enum.Enum):
    """When a supervisor shuts itself down after significant children exit (OTP 24's
    ``auto_shutdown`` supervisor flag)."""

    #: Never (the default); a significant child is then an error.
    NEVER = "never"
    #: As soon as any significant child exits by itself.
    ANY_SIGNIFICANT = "any_significant"
    #: Once every significant child has exited (or is not running).
    ALL_SIGNIFICANT = "all_significant"

    def __repr__(self) -> str:
        return f"otp.{self.name}"

    __str__ = __repr__


NEVER: Final = AutoShutdown.NEVER
ANY_SIGNIFICANT: Final = AutoShutdown.ANY_SIGNIFICANT
ALL_SIGNIFICANT: Final = AutoShutdown.ALL_SIGNIFICANT
PERMANENT: Final = Restart.PERMANENT
TRANSIENT: Final = Restart.TRANSIENT
TEMPORARY: Final = Restart.TEMPORARY
ONE_FOR_ONE: Final = Strategy.ONE_FOR_ONE
ONE_FOR_ALL: Final = Strategy.ONE_FOR_ALL
REST_FOR_ONE: Final = Strategy.REST_FOR_ONE


# ---------------------------------------------------------------------------- specs


def _shutdown_validator(instance: object, attribute: object, value: Any) -> None:
    check_shutdown(value)


@attrs.frozen
class Backoff:
    """Delay restarts exponentially (Akka's ``restartWithBackoff``; not in OTP).

    The n-th consecutive restart of a child waits ``min * 2**(n-1)`` seconds, capped at
    ``max``, randomised by ``±jitter`` (a fraction). A child that ran for ``reset_after``
    seconds before exiting starts again from ``min``. Restart intensity still applies,
    counted when the child exits.
    """

    min: float = 0.1
    max: float = 10.0
    jitter: float = 0.1
    reset_after: float = 30.0

    def __attrs_post_init__(self) -> None:
        if not (0 <= self.min <= self.max):
            raise ValueError(f"Backoff needs 0 <= min <= max, got min={self.min} max={self.max}")
        if not (0 <= self.jitter < 1):
            raise ValueError(f"Backoff jitter is a fraction in [0, 1), not {self.jitter!r}")
        if self.reset_after < 0:
            raise ValueError(f"Backoff reset_after must be >= 0, not {self.reset_after!r}")

    def delay(self, attempt: int) -> float:
        """The delay before restart number ``attempt`` (1-based)."""
        base = min(self.max, self.min * float(2 ** max(0, attempt - 1)))
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, base)


@message("$otp.worker_spec")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class WorkerSpec:
    """How to start one worker actor; build it with :func:`worker`."""

    cls: type[GenServer]
    args: tuple[Any, ...]
    id: str
    name: str | None = None
    restart: Restart = Restart.PERMANENT
    shutdown: Shutdown = attrs.field(default=5.0, validator=_shutdown_validator)
    mailbox: Mailbox | None = None
    backoff: Backoff | None = None
    #: Seconds ``init`` may take (``None``: forever); past it the start fails.
    start_timeout: float | None = None
    #: Its own exit may shut its supervisor down (see :class:`AutoShutdown`).
    significant: bool = False

    kind: Literal["worker"] = "worker"


@message("$otp.supervisor_spec")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class SupervisorSpec:
    """How to start a supervisor and its children; build it with :func:`supervisor`,
    :func:`dynamic_supervisor` or :func:`worker_pool`."""

    name: str
    children: tuple[WorkerSpec | SupervisorSpec, ...]
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    within: float = 5.0
    id: str = ""
    restart: Restart = Restart.PERMANENT
    shutdown: Shutdown = attrs.field(default=None, validator=_shutdown_validator)
    backoff: Backoff | None = None
    #: Dynamic supervisors start children at run time, stop them concurrently.
    dynamic: bool = False
    max_children: int | None = None
    #: Worker pools: how calls and casts are dispatched ("round_robin" or "least_busy").
    dispatch: str | None = None
    #: Worker pools with consistent hashing: the routing key of a message.
    key: Callable[[Any], object] | None = None
    #: Seconds its ``init`` (every child's start) may take; ``None``: forever.
    start_timeout: float | None = None
    #: Its own exit may shut its parent down (see :class:`AutoShutdown`).
    significant: bool = False
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER

    kind: Literal["supervisor"] = "supervisor"


ChildSpec = WorkerSpec | SupervisorSpec


def _check_restart(restart: object) -> None:
    if not isinstance(restart, Restart):
        raise TypeError(f"restart must be otp.PERMANENT, TRANSIENT or TEMPORARY, not {restart!r}")


def _check_intensity(max_restarts: object, within: object) -> None:
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an int >= 0, not {max_restarts!r}")
    if isinstance(within, bool) or not isinstance(within, (int, float)) or not within > 0:
        raise ValueError(f"within must be seconds > 0, not {within!r}")


def _check_backoff(backoff: object) -> None:
    if backoff is not None and not isinstance(backoff, Backoff):
        raise TypeError(f"backoff must be an otp.Backoff or None, not {backoff!r}")


def _check_significant(significant: object, restart: Restart, what: str) -> None:
    if not isinstance(significant, bool):
        raise TypeError(f"significant must be True or False, not {significant!r}")
    if significant and restart is Restart.PERMANENT:
        raise ValueError(
            f"{what} cannot be significant and PERMANENT (OTP's bad_combination): only a "
            "TRANSIENT or TEMPORARY child may be significant; pass restart=otp.TRANSIENT"
        )


def _check_auto_shutdown(auto_shutdown: object, name: str, specs: Sequence[ChildSpec]) -> None:
    if not isinstance(auto_shutdown, AutoShutdown):
        raise TypeError(
            "auto_shutdown must be otp.NEVER, otp.ANY_SIGNIFICANT or otp.ALL_SIGNIFICANT, "
            f"not {auto_shutdown!r}"
        )
    if auto_shutdown is AutoShutdown.NEVER:
        for spec in specs:
            if spec.significant:
                raise ValueError(
                    f"child {spec.id!r} of supervisor {name!r} is significant but the "
                    "supervisor has auto_shutdown=otp.NEVER (OTP's bad_combination); pass "
                    "auto_shutdown=otp.ANY_SIGNIFICANT or otp.ALL_SIGNIFICANT"
                )


class WorkerOptions(TypedDict, total=False):
    """The keyword options of :func:`worker` (typing: ``**options: Unpack[WorkerOptions]``)."""

    name: str | None
    id: str | None
    restart: Restart
    shutdown: Shutdown
    mailbox: Mailbox | None
    backoff: Backoff | None
    start_timeout: float | None
    significant: bool


# The overloads check the start arguments against ``cls.init`` (see otp/_init_args.py).
@overload
def worker(cls: type[Init0], /, **options: Unpack[WorkerOptions]) -> WorkerSpec: ...
@overload
def worker(cls: type[Init1[A1]], a1: A1, /, **options: Unpack[WorkerOptions]) -> WorkerSpec: ...
@overload
def worker(
    cls: type[Init2[A1, A2]], a1: A1, a2: A2, /, **options: Unpack[WorkerOptions]
) -> WorkerSpec: ...
@overload
def worker(
    cls: type[Init3[A1, A2, A3]], a1: A1, a2: A2, a3: A3, /, **options: Unpack[WorkerOptions]
) -> WorkerSpec: ...
@overload
def worker(
    cls: type[Init4[A1, A2, A3, A4]],
    a1: A1,
    a2: A2,
    a3: A3,
    a4: A4,
    /,
    **options: Unpack[WorkerOptions],
) -> WorkerSpec: ...
@overload
def worker(
    cls: type[InitN[*Ts]], /, *args: *Ts, **options: Unpack[WorkerOptions]
) -> WorkerSpec: ...


def worker(  # type: ignore[misc]  # mypy cannot match an impl to the TypeVarTuple overload
    cls: type[Any],
    *args: Any,
    name: str | None = None,
    id: str | None = None,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown = 5.0,
    mailbox: Mailbox | None = None,
    backoff: Backoff | None = None,
    start_timeout: float | None = None,
    significant: bool = False,
) -> WorkerSpec:
    """A child spec for a worker: ``cls`` started with ``init(*args)``.

    ``id`` (unique within the supervisor) defaults to ``name``, else the class name.
    ``restart`` is ``PERMANENT``, ``TRANSIENT`` or ``TEMPORARY``; ``shutdown`` is the
    seconds ``terminate`` may take before the child is killed, :data:`otp.BRUTAL_KILL` or
    ``None`` (wait forever). ``start_timeout`` bounds ``init`` on every start and restart
    (a start past it fails with :class:`otp.StartFailed`, as OTP's start_link Timeout).
    ``significant=True`` (OTP 24; ``TRANSIENT`` or ``TEMPORARY`` only) lets its own exit
    shut the supervisor down under its ``auto_shutdown``. Raises ``TypeError``/
    ``ValueError`` on bad input.
    """
    if not (isinstance(cls, type) and issubclass(cls, GenServer)):
        raise TypeError(f"worker() needs a GenServer subclass, got {cls!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a non-empty str or None, not {name!r}")
    _check_restart(restart)
    _check_backoff(backoff)
    check_start_timeout(start_timeout)
    if mailbox is not None and not isinstance(mailbox, Mailbox):
        raise TypeError(f"mailbox must be an otp.Mailbox, not {mailbox!r}")
    child_id = id if id is not None else (name if name is not None else cls.__name__)
    _check_significant(significant, restart, f"worker {child_id!r}")
    return WorkerSpec(
        cls=cls,
        args=args,
        id=child_id,
        name=name,
        restart=restart,
        shutdown=shutdown,
        mailbox=mailbox,
        backoff=backoff,
        start_timeout=start_timeout,
        significant=significant,
    )


def supervisor(
    name: str,
    children: Sequence[ChildSpec] = (),
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = 3,
    within: float = 5.0,
    id: str | None = None,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown = None,
    backoff: Backoff | None = None,
    start_timeout: float | None = None,
    significant: bool = False,
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
) -> SupervisorSpec:
    """A supervisor spec; supervisors nest. The supervisor registers under ``name``.

    More than ``max_restarts`` restarts within ``within`` seconds (Erlang's MaxR/MaxT,
    counted across all children) makes it give up. Child ids must be unique: a duplicate
    raises ``ValueError`` here. ``backoff`` delays restarts (see :class:`Backoff`).
    ``start_timeout`` bounds its ``init`` (all its children's starts). ``auto_shutdown``
    (OTP 24) shuts it down with reason ``"shutdown"`` when any (``ANY_SIGNIFICANT``) or
    every (``ALL_SIGNIFICANT``) significant child has exited by itself; a significant child
    under ``NEVER``, or a significant ``PERMANENT`` supervisor, is a ``ValueError`` here.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"a supervisor needs a non-empty str name, not {name!r}")
    if not isinstance(strategy, Strategy):
        raise TypeError(
            f"strategy must be otp.ONE_FOR_ONE, ONE_FOR_ALL or REST_FOR_ONE, not {strategy!r}"
        )
    _check_intensity(max_restarts, within)
    _check_restart(restart)
    _check_backoff(backoff)
    check_start_timeout(start_timeout)
    _check_significant(significant, restart, f"supervisor {name!r}")
    specs = tuple(children)
    seen: set[str] = set()
    for spec in specs:
        if not isinstance(spec, (WorkerSpec, SupervisorSpec)):
            raise TypeError(
                f"children of supervisor {name!r} must be otp.worker(...) or "
                f"otp.supervisor(...) specs, not {spec!r}"
            )
        if spec.id in seen:
            raise ValueError(
                f"supervisor {name!r} has two children with id {spec.id!r}; "
                "give each a unique id= (or name=)"
            )
        seen.add(spec.id)
    _check_auto_shutdown(auto_shutdown, name, specs)
    return SupervisorSpec(
        name=name,
        children=specs,
        strategy=strategy,
        max_restarts=max_restarts,
        within=float(within),
        id=id if id is not None else name,
        restart=restart,
        shutdown=shutdown,
        backoff=backoff,
        start_timeout=start_timeout,
        significant=significant,
        auto_shutdown=auto_shutdown,
    )


def dynamic_supervisor(
    name: str,
    *,
    max_children: int | None = None,
    max_restarts: int = 3,
    within: float = 5.0,
    id: str | None = None,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown = None,
    backoff: Backoff | None = None,
) -> SupervisorSpec:
    """A supervisor for many similar children started at run time with
    :meth:`SupervisorRef.start_child` (Elixir's ``DynamicSupervisor``).

    Always one-for-one; children get unique ids automatically (``"<spec id>#<n>"``);
    at most ``max_children`` run at once (:class:`otp.MailboxFull`-like refusal:
    ``start_child`` raises ``OverflowError``); on shutdown all children are asked to stop
    at once (unordered) and each gets its own shutdown time.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"a supervisor needs a non-empty str name, not {name!r}")
    if max_children is not None and (
        isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 1
    ):
        raise ValueError(f"max_children must be None or an int >= 1, not {max_children!r}")
    _check_intensity(max_restarts, within)
    _check_restart(restart)
    _check_backoff(backoff)
    return SupervisorSpec(
        name=name,
        children=(),
        strategy=Strategy.ONE_FOR_ONE,
        max_restarts=max_restarts,
        within=float(within),
        id=id if id is not None else name,
        restart=restart,
        shutdown=shutdown,
        backoff=backoff,
        dynamic=True,
        max_children=max_children,
    )


ROUND_ROBIN: Final = "round_robin"
LEAST_BUSY: Final = "least_busy"
#: ``worker_pool(dispatch=CONSISTENT_HASH, key=...)``: the same key, the same worker.
CONSISTENT_HASH: Final = "consistent_hash"


class PoolOptions(TypedDict, total=False):
    """The keyword options of :func:`worker_pool`."""

    size: int
    dispatch: str
    mailbox: Mailbox | None
    shutdown: Shutdown
    max_restarts: int
    within: float
    id: str | None
    restart: Restart
    backoff: Backoff | None
    key: Callable[[Any], object] | None
    start_timeout: float | None


#: A :class:`SupervisorSpec` made by :func:`worker_pool` (typing only: ``node.start`` and
#: ``start_child`` return a :class:`PoolRef` for it); at run time it is the SupervisorSpec.
PoolSpec = NewType("PoolSpec", SupervisorSpec)


@overload
def worker_pool(name: str, cls: type[Init0], /, **options: Unpack[PoolOptions]) -> PoolSpec: ...
@overload
def worker_pool(
    name: str, cls: type[Init1[A1]], a1: A1, /, **options: Unpack[PoolOptions]
) -> PoolSpec: ...
@overload
def worker_pool(
    name: str, cls: type[Init2[A1, A2]], a1: A1, a2: A2, /, **options: Unpack[PoolOptions]
) -> PoolSpec: ...
@overload
def worker_pool(
    name: str,
    cls: type[Init3[A1, A2, A3]],
    a1: A1,
    a2: A2,
    a3: A3,
    /,
    **options: Unpack[PoolOptions],
) -> PoolSpec: ...
@overload
def worker_pool(
    name: str,
    cls: type[Init4[A1, A2, A3, A4]],
    a1: A1,
    a2: A2,
    a3: A3,
    a4: A4,
    /,
    **options: Unpack[PoolOptions],
) -> PoolSpec: ...
@overload
def worker_pool(
    name: str,
    cls: type[InitN[*Ts]],
    /,
    *args: *Ts,
    **options: Unpack[PoolOptions],
) -> PoolSpec: ...


def worker_pool(  # type: ignore[misc]  # mypy cannot match an impl to the TypeVarTuple overload
    name: str,
    cls: type[Any],
    *args: Any,
    size: int = 4,
    dispatch: str = ROUND_ROBIN,
    mailbox: Mailbox | None = None,
    shutdown: Shutdown = 5.0,
    max_restarts: int = 3,
    within: float = 5.0,
    id: str | None = None,
    restart: Restart = Restart.PERMANENT,
    backoff: Backoff | None = None,
    key: Callable[[Any], object] | None = None,
    start_timeout: float | None = None,
) -> PoolSpec:
    """A supervised pool of ``size`` identical workers; ``node.start`` (or
    ``start_child``) returns a :class:`PoolRef` whose ``call``/``cast`` go to one worker,
    chosen round-robin (``"round_robin"``), by the shortest mailbox (``"least_busy"``) or
    by consistent hashing of ``key(message)`` (``CONSISTENT_HASH``: a str, bytes or int;
    the same key reaches the same worker, and while a worker is being restarted only its
    keys go elsewhere). Workers are ``PERMANENT`` children ``"<name>.<i>"`` under a
    one-for-one supervisor.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"a pool needs size >= 1, not {size!r}")
    if dispatch not in (ROUND_ROBIN, LEAST_BUSY, CONSISTENT_HASH):
        raise ValueError(
            "dispatch must be otp.ROUND_ROBIN, otp.LEAST_BUSY or otp.CONSISTENT_HASH, "
            f"not {dispatch!r}"
        )
    hashed = dispatch == CONSISTENT_HASH
    if hashed != (key is not None) or (key is not None and not callable(key)):
        raise ValueError(
            "dispatch=otp.CONSISTENT_HASH needs key=, a function from a message to its routing "
            "key (and key= is only for that dispatch)"
        )
    spec = supervisor(
        name,
        [
            worker(
                cls,
                *args,
                id=f"{name}.{i}",
                mailbox=mailbox,
                shutdown=shutdown,
                start_timeout=start_timeout,
            )
            for i in range(size)
        ],
        max_restarts=max_restarts,
        within=within,
        id=id,
        restart=restart,
        backoff=backoff,
    )
    return PoolSpec(attrs.evolve(spec, dispatch=dispatch, key=key))


@message("$otp.child_info")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class ChildInfo:
    """One row of :meth:`SupervisorRef.which_children` (OTP's ``{Id, Child, Type, Modules}``).

    ``ref`` is ``None`` when the child is not running; ``restarting`` is ``True`` while a
    restart waits (a failed start being retried, or a backoff delay).
    """

    id: str
    ref: ActorRef | None
    kind: Literal["worker", "supervisor"]
    restart: Restart
    restarting: bool = False


@message("$otp.child_count")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class ChildCount:
    """:meth:`SupervisorRef.count_children` (OTP's ``count_children/1``)."""

    specs: int
    active: int
    supervisors: int
    workers: int


# ---------------------------------------------------------------------------- the server


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec
    id: str
    ref: ActorRef | None = None
    monitor: MonitorRef | None = None
    restarting: bool = False
    restarts: int = 0
    started_at: float = 0.0
    attempt: int = 0


@attrs.frozen
class _TryAgain:
    """Retry the restart of ``child`` (OTP's ``try_again_restart``): its strategy's group
    is stopped and started again, as after the exit that began it."""

    child: _Child


class _Aborted(Exception):
    """A child start given up because this supervisor was asked to stop meanwhile."""


@message("$otp.supervisor.failed")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class _Failed:
    error: BaseException


@message("$otp.supervisor.call")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class _Call:
    op: str
    arg: Any = None


class _Supervisor(GenServer):
    _otp_owns_task_group = True
    # Supervisors trap exits, as in OTP: a linked actor's exit or an exit signal from
    # anyone but the parent does not end one (children are watched by monitors).
    trap_exit = True

    #: The scope of the child start being awaited, if any: a stop request cancels it (the
    #: half-started child is killed), and which_children answers without waiting for it.
    start_scope: anyio.CancelScope | None = None
    start_since = 0.0  # when that start began (anyio.current_time())
    initialising = True

    async def init(self, spec: SupervisorSpec) -> None:
        self.spec = spec
        # Children in start order (dicts keep insertion order and delete in O(1)).
        self.children: dict[_Child, None] = {}
        self.by_id: dict[str, _Child] = {}
        self.by_ref: dict[Ref, _Child] = {}
        # Children asked to stop and not yet gone (no longer in by_ref).
        self.stopping: set[ActorRef] = set()
        self.restart_times: deque[float] = deque()
        self.total_restarts = 0
        self.serial = 0
        self.next_worker = 0  # round-robin position of a worker pool
        self.guard = anyio.CancelScope()
        await self._otp_task_group.start(self._guard)
        try:
            for child_spec in spec.children:
                child = self._add(child_spec)
                ref = await self._start(child)
                if ref is None and child_spec.restart is Restart.TEMPORARY:
                    self._remove(child)  # an ignored temporary child is not kept (OTP)
        except BaseException:
            try:
                await self._stop_all()
            finally:
                self.guard.cancel()
            raise
        self.initialising = False

    async def _guard(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Take the children down when the supervisor itself is killed.

        Invariant: children run in shielded scopes inside this supervisor's task group, so
        cancelling the supervisor does not reach them; this task, in the same group but not
        shielded, is cancelled with it and ends them as OTP's links would: a child that
        traps exits runs ``terminate("killed")``, any other dies at once. After an orderly
        stop (``terminate`` cancels ``self.guard``) no child is left and it does nothing.
        """
        with self.guard:
            try:
                task_status.started()
                await anyio.sleep_forever()
            finally:
                running = [c.ref for c in reversed(self.children) if c.ref is not None]
                for ref in running + list(self.stopping):
                    if ref.alive:
                        ref._parent_exited("killed")

    # -------------------------------------------------------------- bookkeeping

    def _add(self, spec: ChildSpec) -> _Child:
        child_id = spec.id
        if self.spec.dynamic:
            self.serial += 1
            child_id = f"{spec.id}#{self.serial}"
        child = _Child(spec, child_id)
        self.children[child] = None
        self.by_id[child_id] = child
        return child

    def _remove(self, child: _Child) -> None:
        self.children.pop(child, None)
        if self.by_id.get(child.id) is child:
            del self.by_id[child.id]

    # -------------------------------------------------------------- starting and stopping

    async def _start(self, child: _Child) -> ActorRef | None:
        """Start ``child``; ``None`` if its ``init`` returned :data:`otp.IGNORE` (the spec
        stays, nothing runs). Raises :class:`StartFailed`, or :class:`_Aborted` when a
        stop request to this supervisor cancelled the start (the child was killed)."""
        spec = child.spec
        with anyio.CancelScope() as scope:
            self.start_scope = scope
            self.start_since = anyio.current_time()
            try:
                ref = await self._start_spec(spec, child.id)
            except NameTaken as exc:
                raise StartFailed(child.id, exc, self.spec.name) from exc
            except Ignored:
                child.ref = None
                child.restarting = False
                logger.info(
                    "supervisor %r: child %r returned otp.IGNORE from init; not running",
                    self.spec.name,
                    child.id,
                    extra={"otp_event": "child_ignored", "otp_supervisor": self.ref},
                )
                return None
            finally:
                self.start_scope = None
        if scope.cancelled_caught:
            raise _Aborted
        child.ref = ref
        child.restarting = False
        child.started_at = _clock()
        child.monitor = self.monitor(ref)
        self.by_ref[ref] = child
        logger.debug(
            "supervisor %r started child %r as %r",
            self.spec.name,
            child.id,
            ref,
            extra={"otp_event": "child_started", "otp_supervisor": self.ref, "otp_actor": ref},
        )
        return ref

    async def _start_spec(self, spec: ChildSpec, child_id: str) -> ActorRef:
        if isinstance(spec, WorkerSpec):
            return await start_actor(
                self.node,
                self._otp_task_group,
                spec.cls,
                spec.args,
                name=spec.name,
                mailbox=spec.mailbox,
                shutdown=spec.shutdown,
                child_id=child_id,
                where=self.spec.name,
                start_timeout=spec.start_timeout,
            )
        return await start_actor(
            self.node,
            self._otp_task_group,
            _Supervisor,
            (spec,),
            name=spec.name,
            shutdown=spec.shutdown,
            ref_class=PoolRef if spec.dispatch else SupervisorRef,
            child_id=child_id,
            where=self.spec.name,
            start_timeout=spec.start_timeout,
        )

    def _abort_start(self) -> None:
        # A stop request while a child start is awaited: give that start up (OTP's
        # supervisor would wait for it; a child whose init hangs would hang the shutdown).
        if self.start_scope is not None and not self.initialising:
            self.start_scope.cancel()

    def _which_children(self) -> list[ChildInfo]:
        return [
            ChildInfo(c.id, c.ref, c.spec.kind, c.spec.restart, c.restarting) for c in self.children
        ]

    def _count_children(self) -> ChildCount:
        sups = sum(1 for c in self.children if c.spec.kind == "supervisor")
        return ChildCount(
            specs=len(self.children),
            active=len(self.by_ref),
            supervisors=sups,
            workers=len(self.children) - sups,
        )

    def _forget(self, child: _Child) -> ActorRef | None:
        """Mark ``child`` stopped by us (its Down is then ignored); return its old ref."""
        ref = child.ref
        if ref is None:
            return None
        if child.monitor is not None:
            self.demonitor(child.monitor)
        self.by_ref.pop(ref, None)
        child.ref = None
        child.monitor = None
        return ref

    async def _stop(self, child: _Child) -> None:
        ref = self._forget(child)
        if ref is not None:
            # Left in `stopping` if this is interrupted (a kill): the guard then ends it.
            self.stopping.add(ref)
            await ref._shutdown(child.spec.shutdown)
            self.stopping.discard(ref)

    async def _stop_all(self) -> None:
        if self.spec.dynamic:
            await self._stop_concurrently(list(self.children))
            return
        for child in reversed(self.children):
            await self._stop(child)

    async def _stop_concurrently(self, children: list[_Child]) -> None:
        # Ask every child to stop at once, then collect them: no task per child, so this
        # scales to a hundred thousand children.
        pending: list[tuple[ActorRef, Shutdown]] = []
        for child in children:
            ref = self._forget(child)
            if ref is None or not ref.alive:
                continue
            if child.spec.shutdown is BRUTAL_KILL:
                ref.kill()
            else:
                ref._request_stop("shutdown")
            pending.append((ref, child.spec.shutdown))
            self.stopping.add(ref)
        started = time.monotonic()
        for ref, shutdown in pending:
            if not ref.alive:
                continue  # gone already (its exit runs synchronously, all at once)
            if shutdown is BRUTAL_KILL:
                await ref._join_killed()
                continue
            if shutdown is None:
                await ref.join()
                continue
            assert isinstance(shutdown, (int, float))
            remaining = shutdown - (time.monotonic() - started)
            if remaining > 0:
                with anyio.move_on_after(remaining):
                    await ref.join()
            if ref.alive:
                ref.kill()
                await ref._join_killed()
        self.stopping.difference_update(ref for ref, _ in pending)

    async def terminate(self, reason: Any) -> None:
        try:
            await self._stop_all()
        finally:
            self.guard.cancel()

    # -------------------------------------------------------------- exits and restarts

    async def handle_info(self, message: Any) -> None:
        try:
            await self._handle_info(message)
        except _Aborted:
            pass  # this supervisor is stopping: the restart was given up

    async def _handle_info(self, message: Any) -> None:
        if isinstance(message, Down):
            child = self.by_ref.pop(message.ref, None)
            if child is not None and child.ref is message.ref:
                child.ref = None
                child.monitor = None
                await self._child_exited(child, message.reason)
            return  # otherwise: a child we had already stopped ourselves
        if isinstance(message, Exit):
            return  # not from a child (OTP's supervisor ignores those EXITs too)
        if isinstance(message, _TryAgain):
            child = message.child
            # terminate_child ends the retries (restarting is reset); a stale retry after a
            # later successful restart finds the child running and is dropped, as in OTP.
            if child in self.children and child.restarting and child.ref is None:
                await self._restart(child, await self._stop_group(child))
            return
        await super().handle_info(message)

    async def _child_exited(self, child: _Child, reason: Any) -> None:
        spec = child.spec
        gave_up = isinstance(reason, SupervisorGaveUp)
        # As in OTP, a child supervisor that gave up exits with reason "shutdown".
        effective = "shutdown" if gave_up else reason
        abnormal = gave_up or not is_normal_exit(effective)
        restart = spec.restart
        if restart is Restart.TEMPORARY or (
            restart is Restart.TRANSIENT and is_normal_exit(effective)
        ):
            logger.log(
                logging.ERROR if abnormal else logging.DEBUG,
                "supervisor %r: child %r exited (%s); %s child, not restarted",
                self.spec.name,
                child.id,
                _reason_text(reason),
                restart.value,
                extra={
                    "otp_event": "child_exited",
                    "otp_supervisor": self.ref,
                    "otp_reason": reason,
                },
            )
            if restart is Restart.TEMPORARY:
                self._remove(child)
            if spec.significant:
                self._auto_shutdown(child)
            return
        logger.log(
            logging.ERROR if abnormal else logging.INFO,
            "supervisor %r: child %r exited (%s); restarting it (%s)",
            self.spec.name,
            child.id,
            _reason_text(reason),
            self.spec.strategy.value,
            extra={"otp_event": "child_exited", "otp_supervisor": self.ref, "otp_reason": reason},
        )
        self._count_restart(reason)
        group = await self._stop_group(child)
        backoff = spec.backoff or self.spec.backoff
        if backoff is not None:
            if _clock() - child.started_at >= backoff.reset_after:
                child.attempt = 0
            child.attempt += 1
            delay = backoff.delay(child.attempt)
            if delay > 0:
                child.restarting = True
                self.send_after(delay, _TryAgain(child))
                return
        await self._restart(child, group)

    def _auto_shutdown(self, child: _Child) -> None:
        """A significant child exited by itself and is not restarted: shut down if the
        ``auto_shutdown`` flag says so (OTP 24's ``do_auto_shutdown``). Children this
        supervisor stopped itself never get here (their exit is not a Down it handles)."""
        mode = self.spec.auto_shutdown
        if mode is AutoShutdown.NEVER:
            return
        if mode is AutoShutdown.ALL_SIGNIFICANT and any(
            c.ref is not None and c.spec.significant for c in self.children
        ):
            return
        logger.info(
            "supervisor %r: significant child %r exited; auto_shutdown=%s, shutting down",
            self.spec.name,
            child.id,
            mode,
            extra={"otp_event": "auto_shutdown", "otp_supervisor": self.ref},
        )
        self.stop("shutdown")

    async def _stop_group(self, child: _Child) -> list[_Child]:
        """Stop the children ``child``'s strategy restarts with it (reverse start order);
        return that group in start order, temporary bystanders removed (OTP's
        ``restart/2``: one_for_all is every child, rest_for_one ``child`` and later)."""
        strategy = self.spec.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return [child]
        ordered = list(self.children)
        group = ordered if strategy is Strategy.ONE_FOR_ALL else ordered[ordered.index(child) :]
        for other in reversed(group):
            if other is not child:
                await self._stop(other)
        for other in group:
            if other is not child and other.spec.restart is Restart.TEMPORARY:
                # A temporary bystander is not restarted, and leaves the list.
                self._remove(other)
        return [c for c in group if c in self.children]

    def _count_restart(self, reason: Any) -> None:
        now = _clock()
        times = self.restart_times
        times.append(now)
        horizon = now - self.spec.within
        while times and times[0] < horizon:
            times.popleft()
        if len(times) > self.spec.max_restarts:
            logger.error(
                "supervisor %r reached its restart intensity (more than %d restart(s) in %gs) "
                "and gives up: stopping its children (last exit: %s)",
                self.spec.name,
                self.spec.max_restarts,
                self.spec.within,
                _reason_text(reason),
                extra={"otp_event": "gave_up", "otp_supervisor": self.ref, "otp_reason": reason},
            )
            self.node._emit("gave_up", actor=self.ref, supervisor=self.ref, reason=reason)
            raise SupervisorGaveUp(self.spec.name, self.spec.max_restarts, self.spec.within, reason)
        self.total_restarts += 1

    async def _restart(self, trigger: _Child, group: list[_Child]) -> None:
        """Start ``group`` (already stopped) in order. If one fails, it alone is marked
        restarting (OTP's ``{restarting, Pid}``; the later ones stay stopped) and its retry
        is queued: a retry restarts its strategy's group again from scratch."""
        for child in group:
            if child.ref is not None or child not in self.children:
                continue
            child.restarting = True  # while its start is awaited; _start clears it
            try:
                ref = await self._start(child)
            except StartFailed as exc:
                child.restarting = True
                cause = exc.__cause__ or exc
                logger.error(
                    "supervisor %r: restarting child %r failed (%s); will try again",
                    self.spec.name,
                    child.id,
                    _reason_text(cause),
                    extra={"otp_event": "restart_failed", "otp_supervisor": self.ref},
                )
                # A failed restart counts toward the intensity; other requests (a shutdown,
                # say) are served before the retry, as OTP's try_again_restart does.
                self.node._emit("restart_failed", supervisor=self.ref, reason=cause)
                self._count_restart(cause)
                self.ref._deliver_control(_TryAgain(child))
                return
            if ref is None:
                continue  # it ignored the restart: kept as a spec, not running (OTP)
            child.restarts += 1
            self.node._emit("restarted", actor=child.ref, supervisor=self.ref, detail=child.id)
            logger.info(
                "supervisor %r restarted child %r as %r",
                self.spec.name,
                child.id,
                child.ref,
                extra={
                    "otp_event": "child_restarted",
                    "otp_supervisor": self.ref,
                    "otp_actor": child.ref,
                },
            )

    # -------------------------------------------------------------- the dynamic API

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if not isinstance(request, _Call):
            raise NotImplementedError(
                f"supervisor {self.spec.name!r} got an unknown call {request!r}"
            )
        try:
            return await getattr(self, f"_op_{request.op}")(request.arg)
        except (OTPError, OverflowError, ValueError) as exc:
            return _Failed(exc)
        except _Aborted:
            return NOREPLY  # stopping: the caller gets ActorExited when this exits

    async def _op_which_children(self, arg: None) -> list[ChildInfo]:
        return self._which_children()

    async def _op_count_children(self, arg: None) -> ChildCount:
        return self._count_children()

    async def _op_start_child(self, spec: ChildSpec) -> ActorRef | None:
        _check_auto_shutdown(self.spec.auto_shutdown, self.spec.name, [spec])
        if self.spec.dynamic:
            limit = self.spec.max_children
            if limit is not None and len(self.children) >= limit:
                raise MaxChildren(self.spec.name, limit)
        else:
            existing = self.by_id.get(spec.id)
            if existing is not None:
                if existing.ref is not None:
                    raise AlreadyStarted(spec.id, self.spec.name, existing.ref)
                raise AlreadyPresent(spec.id, self.spec.name)
        child = self._add(spec)
        try:
            ref = await self._start(child)
        except BaseException:
            self._remove(child)
            raise
        if ref is None and (spec.restart is Restart.TEMPORARY or self.spec.dynamic):
            self._remove(child)  # OTP keeps no spec of an ignored temporary child
        return ref

    async def _op_terminate_child(self, target: str | ActorRef) -> None:
        child = self._lookup(target)
        await self._stop(child)
        child.restarting = False
        if child.spec.restart is Restart.TEMPORARY or self.spec.dynamic:
            self._remove(child)

    async def _op_restart_child(self, child_id: str) -> ActorRef | None:
        child = self._lookup(child_id)
        if child.ref is not None:
            raise ChildRunning(child.id, self.spec.name)
        if child.restarting:
            # OTP answers {error, restarting}; the pending retry goes on as planned.
            raise Restarting(child.id, self.spec.name)
        return await self._start(child)

    async def _op_delete_child(self, child_id: str) -> None:
        child = self._lookup(child_id)
        if child.ref is not None:
            raise ChildRunning(child.id, self.spec.name)
        if child.restarting:
            # Deleting would drop the retry, and with it the give-up and escalation.
            raise Restarting(child.id, self.spec.name)
        self._remove(child)

    def _lookup(self, target: str | ActorRef) -> _Child:
        found = self.by_ref.get(target) if isinstance(target, ActorRef) else self.by_id.get(target)
        if found is None:
            raise NotFound(f"child {target!r}", f"supervisor {self.spec.name!r}")
        return found


async def supervisor_op(ref: Any, op: str, arg: Any = None, timeout: float | None = None) -> Any:
    """Run a supervisor operation through ``ref.call`` (a local or a remote ref) and raise
    the supervisor's refusal (:class:`otp.NotFound`, ...) as the caller's error."""
    result = await ref.call(_Call(op, arg), timeout=timeout)
    if isinstance(result, _Failed):
        raise result.error
    return result


def _reason_text(reason: Any) -> str:
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return repr(reason)


@attrs.define(eq=False, init=False, repr=False)
class SupervisorRef(ActorRef):
    """A handle on a running supervisor (an :class:`ActorRef` with OTP's supervisor API).

    The methods wait as long as the supervisor needs (``timeout=None``), as OTP's do.
    """

    # Killing a supervisor (kill(), exit(ref, "kill"), a shutdown past its time) ends its
    # subtree from inside the supervisor process: see _Supervisor._guard.

    def _request_stop(self, reason: Any) -> None:
        super()._request_stop(reason)
        server = self._behaviour()
        if isinstance(server, _Supervisor):
            server._abort_start()

    async def _read(self, op: str) -> Any:
        """A read-only operation (which_children/count_children): in mailbox order, unless
        the supervisor has been awaiting one child's start for :data:`BUSY_GRACE` seconds
        (a restart whose init hangs, say); then it is answered from the supervisor's state
        instead of waiting for that start (the queued request's late answer is dropped)."""
        outcome: tuple[bool, Any] | None = None
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._give_up_when_stuck, scope)
                try:
                    outcome = (True, await self._op(op))
                except Exception as exc:
                    outcome = (False, exc)
                task_group.cancel_scope.cancel()
        if outcome is not None:
            ok, value = outcome
            if not ok:
                raise value
            return value
        server = self._behaviour()
        assert isinstance(server, _Supervisor)
        return server._which_children() if op == "which_children" else server._count_children()

    async def _give_up_when_stuck(self, scope: anyio.CancelScope) -> None:
        while True:
            busy = self._busy_starting()
            wait = BUSY_GRACE
            if busy is not None:
                wait = busy.start_since + BUSY_GRACE - anyio.current_time()
                if wait <= 0:
                    scope.cancel()
                    return
            await anyio.sleep(wait)

    def _busy_starting(self) -> _Supervisor | None:
        server = self._behaviour()
        if (
            self.alive
            and isinstance(server, _Supervisor)
            and server.start_scope is not None
            and not server.initialising
        ):
            return server
        return None

    async def _op(self, op: str, arg: Any = None, timeout: float | None = None) -> Any:
        return await supervisor_op(self, op, arg, timeout)

    async def which_children(self) -> list[ChildInfo]:
        """Every child in start order (``supervisor:which_children/1``).

        If the supervisor has been awaiting a child's start for :data:`BUSY_GRACE` (1 s),
        it answers from its state (that child shows ``ref=None, restarting=True``) instead
        of waiting for the start, as OTP's would."""
        return await self._read("which_children")  # type: ignore[no-any-return]

    async def count_children(self) -> ChildCount:
        """Counts of specs, running children, supervisors and workers."""
        return await self._read("count_children")  # type: ignore[no-any-return]

    @overload
    async def start_child(self, spec: PoolSpec) -> PoolRef | None: ...
    @overload
    async def start_child(self, spec: SupervisorSpec) -> SupervisorRef | None: ...
    @overload
    async def start_child(self, spec: WorkerSpec) -> ActorRef | None: ...

    async def start_child(self, spec: ChildSpec) -> ActorRef | None:
        """Add ``spec`` at the end and start it; returns its ref once ``init`` is done, or
        ``None`` if ``init`` returned :data:`otp.IGNORE` (OTP's ``{ok, undefined}``: the
        spec is kept, unless the child is ``TEMPORARY`` or the supervisor dynamic).

        Raises :class:`otp.AlreadyStarted` / :class:`otp.AlreadyPresent` if the id exists,
        :class:`otp.StartFailed` if its ``init`` raises or outlasts its ``start_timeout``
        (nothing is added then), :class:`otp.MaxChildren` when a dynamic supervisor is
        full, and ``ValueError`` for a significant child under ``auto_shutdown=NEVER``.
        """
        if not isinstance(spec, (WorkerSpec, SupervisorSpec)):
            raise TypeError(
                f"start_child needs an otp.worker(...) or otp.supervisor(...) spec, not {spec!r}"
            )
        return await self._op("start_child", spec)  # type: ignore[no-any-return]

    async def terminate_child(self, child: str | ActorRef) -> None:
        """Stop a child (by id or ref) with its shutdown; its spec stays unless it is
        ``TEMPORARY`` or the supervisor is dynamic. Raises :class:`otp.NotFound`."""
        await self._op("terminate_child", child)

    async def restart_child(self, child_id: str) -> ActorRef | None:
        """Start a stopped child again from its spec; ``None`` if its ``init`` returned
        :data:`otp.IGNORE`. Raises :class:`otp.ChildRunning` if it runs,
        :class:`otp.Restarting` while its supervisor retries a failed restart of it,
        :class:`otp.NotFound` if there is no such id."""
        return await self._op("restart_child", child_id)  # type: ignore[no-any-return]

    async def delete_child(self, child_id: str) -> None:
        """Remove a stopped child's spec. Raises :class:`otp.ChildRunning` if it runs,
        :class:`otp.Restarting` while its supervisor retries a failed restart of it,
        :class:`otp.NotFound` if there is no such id."""
        await self._op("delete_child", child_id)


@attrs.define(eq=False, init=False, repr=False)
class PoolRef(SupervisorRef):
    """A worker pool (:func:`worker_pool`): ``call``/``cast``/``send`` go to one worker.

    Dispatch is round-robin or least-busy (shortest mailbox, then fewest handled) over the
    workers alive right now; a crashed worker is skipped until its supervisor restarts it.
    Supervisor operations are under :meth:`which_children` and friends, as usual.
    """

    def workers(self) -> list[ActorRef]:
        """The workers alive now, in pool order."""
        server = self._behaviour()
        if not isinstance(server, _Supervisor) or not hasattr(server, "children"):
            return []
        return [c.ref for c in server.children if c.ref is not None and c.ref.alive]

    def _pick(self, message: Any = None) -> ActorRef:
        server = self._behaviour()
        assert isinstance(server, _Supervisor)
        spec = server.spec
        if spec.dispatch == CONSISTENT_HASH and spec.key is not None:
            # The ring is over child ids, which survive restarts: a worker keeps its keys.
            live = {c.id: c.ref for c in server.children if c.ref is not None and c.ref.alive}
            found = pick(tuple(c.id for c in server.children), spec.key(message), live.get)
            if found is None:
                raise NotFound("a live worker", f"pool {self.name!r} (all workers are restarting)")
            return found  # type: ignore[no-any-return]
        workers = self.workers()
        if not workers:
            raise NotFound("a live worker", f"pool {self.name!r} (all workers are restarting)")
        if server.spec.dispatch == LEAST_BUSY:
            return min(workers, key=ActorRef._load)
        index = server.next_worker % len(workers)
        server.next_worker = index + 1
        return workers[index]

    @overload
    async def call(self, request: Call[R], timeout: float | None = 5.0) -> R: ...
    @overload
    async def call(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object], timeout: float | None = 5.0
    ) -> object: ...
    @overload
    async def call(self, request: Any, timeout: float | None = 5.0) -> Any: ...

    async def call(self, request: Any, timeout: float | None = 5.0) -> Any:
        """Call one worker of the pool (see :meth:`ActorRef.call`)."""
        if isinstance(request, _Call):  # supervisor operations go to the supervisor
            return await super().call(request, timeout)
        return await self._pick(request).call(request, timeout)

    @overload
    def send_request(self, request: Call[R]) -> RequestId[R]: ...
    @overload
    def send_request(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object]
    ) -> RequestId[object]: ...
    @overload
    def send_request(self, request: Any) -> RequestId[Any]: ...

    def send_request(self, request: Any) -> RequestId[Any]:
        """Send a request to one worker of the pool (see :meth:`ActorRef.send_request`)."""
        if isinstance(request, _Call):  # supervisor operations go to the supervisor
            return super().send_request(request)
        return self._pick().send_request(request)

    async def cast(self, message: Any, *, priority: int = 0) -> None:
        """Cast to one worker of the pool (see :meth:`ActorRef.cast`)."""
        await self._pick(message).cast(message, priority=priority)

    def cast_nowait(self, message: Any, *, priority: int = 0) -> None:
        self._pick(message).cast_nowait(message, priority=priority)

    async def send(self, message: Any, *, priority: int = 0) -> None:
        await self._pick(message).send(message, priority=priority)

    def send_nowait(self, message: Any, *, priority: int = 0) -> None:
        self._pick(message).send_nowait(message, priority=priority)


# ---------------------------------------------------------------------------- top level


async def start_top(node: Node, spec: ChildSpec) -> ActorRef:
    """Start ``spec`` at the top of ``node`` (``node.start``)."""
    if isinstance(spec, WorkerSpec):
        return await node._start_top(
            spec.cls,
            spec.args,
            spec.name,
            spec.mailbox,
            spec.shutdown,
            start_timeout=spec.start_timeout,
        )
    if isinstance(spec, SupervisorSpec):
        return await node._start_top(
            _Supervisor,
            (spec,),
            spec.name,
            None,
            spec.shutdown,
            escalate=True,
            ref_class=PoolRef if spec.dispatch else SupervisorRef,
            start_timeout=spec.start_timeout,
        )
    raise TypeError(
        f"node.start needs an otp.worker(...) or otp.supervisor(...) spec, not {spec!r}"
    )


# ---------------------------------------------------------------------------- snapshots


class _Renders:
    """Snapshots render with rich through ``__rich__`` (rich is imported only then)."""

    __slots__ = ()

    def __rich__(self) -> Any:
        from ._observer import render_snapshot

        return render_snapshot(self)  # type: ignore[arg-type]


@attrs.frozen
class ActorSnapshot(_Renders):
    """One actor in :meth:`Node.tree`."""

    id: str
    name: str | None
    behaviour: str
    alive: bool
    restart: Restart | None
    restarts: int
    mailbox_depth: int
    messages_handled: int
    ref: ActorRef | None = attrs.field(eq=False, repr=False)
    #: ``True`` while its supervisor is restarting it (a backoff delay or a retry).
    restarting: bool = False
    #: Seconds since this incarnation started (0 when it is not running).
    uptime: float = attrs.field(default=0.0, eq=False)
    #: The mailbox counters, when the actor runs.
    mailbox: MailboxStatistics | None = attrs.field(default=None, eq=False, repr=False)
    #: The actors it is linked to, and those it monitors (see ``ActorStatistics``).
    links: tuple[ActorRef, ...] = attrs.field(default=(), eq=False, repr=False)
    monitors: tuple[ActorRef, ...] = attrs.field(default=(), eq=False, repr=False)
    #: Its state as ``format_status`` shows it, with ``node.tree(state=True)``; else None.
    state: Any = attrs.field(default=None, eq=False, repr=False)

    kind: Literal["worker"] = "worker"


@attrs.frozen
class SupervisorSnapshot(_Renders):
    """One supervisor and its children in :meth:`Node.tree`."""

    id: str
    name: str
    strategy: Strategy
    alive: bool
    restart: Restart | None
    restarts: int
    children: tuple[ActorSnapshot | SupervisorSnapshot, ...]
    ref: ActorRef | None = attrs.field(eq=False, repr=False)
    #: ``True`` while its parent is restarting it (a backoff delay or a retry).
    restarting: bool = False

    kind: Literal["supervisor"] = "supervisor"


@attrs.frozen
class TreeSnapshot(_Renders):
    """Every top-level actor and supervisor of a node, in start order."""

    node: str
    children: tuple[ActorSnapshot | SupervisorSnapshot, ...]


def _snapshot(
    ref: ActorRef | None,
    spec: ChildSpec | None,
    restarts: int,
    child_id: str | None = None,
    restarting: bool = False,
) -> ActorSnapshot | SupervisorSnapshot:
    server = ref._behaviour() if ref is not None else None
    if isinstance(server, _Supervisor) or isinstance(spec, SupervisorSpec):
        sup_spec = server.spec if isinstance(server, _Supervisor) else spec
        assert isinstance(sup_spec, SupervisorSpec)
        children: tuple[ActorSnapshot | SupervisorSnapshot, ...] = ()
        if isinstance(server, _Supervisor) and ref is not None and ref.alive:
            children = tuple(
                _snapshot(c.ref, c.spec, c.restarts, c.id, c.restarting) for c in server.children
            )
        return SupervisorSnapshot(
            id=child_id or sup_spec.id,
            name=sup_spec.name,
            strategy=sup_spec.strategy,
            alive=ref is not None and ref.alive,
            restart=spec.restart if spec is not None else None,
            restarts=restarts,
            children=children,
            ref=ref,
            restarting=restarting,
        )
    stats = ref.statistics() if ref is not None else None
    if spec is not None:
        assert isinstance(spec, WorkerSpec)
        identity, name, behaviour = child_id or spec.id, spec.name, spec.cls.__qualname__
    else:
        assert ref is not None
        identity = ref.name or f"#{ref.id}"
        name, behaviour = ref.name, type(ref._behaviour()).__qualname__
    return ActorSnapshot(
        id=identity,
        name=name,
        behaviour=behaviour,
        alive=ref is not None and ref.alive,
        restart=spec.restart if spec is not None else None,
        restarts=restarts,
        mailbox_depth=stats.mailbox.depth if stats is not None else 0,
        messages_handled=stats.messages_handled if stats is not None else 0,
        ref=ref,
        restarting=restarting,
        uptime=stats.uptime if stats is not None and stats.alive else 0.0,
        mailbox=stats.mailbox if stats is not None else None,
        links=stats.links if stats is not None else (),
        monitors=stats.monitors if stats is not None else (),
    )


def snapshot_node(node: Node) -> TreeSnapshot:
    return TreeSnapshot(
        node=node.name,
        children=tuple(_snapshot(ref, None, 0) for ref in node._top),
    )
