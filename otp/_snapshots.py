"""Frozen snapshots of a node's supervision tree (:meth:`Node.tree`): ``ActorSnapshot``,
``SupervisorSnapshot`` and ``TreeSnapshot``, taken synchronously (between two awaits, so
one snapshot is consistent), rendered with rich and written as JSON (otp/_json.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._actor import ActorRef
from ._mailbox import MailboxStatistics
from ._specs import ChildSpec, Restart, Strategy, SupervisorSpec, WorkerSpec
from ._supervisor import _Supervisor

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["ActorSnapshot", "SupervisorSnapshot", "TreeSnapshot", "snapshot_node"]


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
