"""Child specs: what a supervisor starts and how it restarts it.

:func:`worker`, :func:`supervisor`, :func:`dynamic_supervisor` and :func:`worker_pool`
check their arguments and build frozen :class:`WorkerSpec` / :class:`SupervisorSpec`
values (OTP's child specification maps and supervisor flags), with the enums they use
(:class:`Restart`, :class:`Strategy`, :class:`AutoShutdown`) and :class:`Backoff`. Specs
cross the wire for remote supervisor operations (``@message`` names, otp/_spec_wire.py).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, NewType, TypedDict, Unpack, overload

import attrs

from ._actor import Shutdown, check_shutdown, check_start_timeout
from ._broker import message
from ._gen_server import GenServer
from ._mailbox import Mailbox

if TYPE_CHECKING:
    from ._init_args import A1, A2, A3, A4, Init0, Init1, Init2, Init3, Init4, InitN, Ts

__all__ = [
    "ALL_SIGNIFICANT",
    "ANY_SIGNIFICANT",
    "CONSISTENT_HASH",
    "LEAST_BUSY",
    "NEVER",
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "PERMANENT",
    "REST_FOR_ONE",
    "ROUND_ROBIN",
    "TEMPORARY",
    "TRANSIENT",
    "AutoShutdown",
    "Backoff",
    "ChildSpec",
    "PoolOptions",
    "PoolSpec",
    "Restart",
    "Strategy",
    "SupervisorSpec",
    "WorkerOptions",
    "WorkerSpec",
    "check_auto_shutdown",
    "dynamic_supervisor",
    "supervisor",
    "worker",
    "worker_pool",
]


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


def check_auto_shutdown(auto_shutdown: object, name: str, specs: Sequence[ChildSpec]) -> None:
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
    check_auto_shutdown(auto_shutdown, name, specs)
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
    chosen round-robin (``"round_robin"``), by the shortest mailbox (``"least_busy"``: the
    message a worker is handling counts; among equals the first in pool order) or
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
