"""Rendering of snapshots with rich: the only module of the core that imports rich.

:meth:`otp.Node.tree` returns plain attrs data (:class:`otp.TreeSnapshot`); its
``__rich__`` hook calls :func:`render_snapshot` here, so ``rich.print(node.tree())`` draws
the supervision tree. Rendering depends only on the snapshot (no clocks, no actor ids), so
the same snapshot renders to the same text at the same width, which tests rely on.

Colours: green for a healthy (alive) actor, yellow for one its supervisor is restarting,
red for a dead one. Restart counts above zero are yellow too.
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from ._snapshots import ActorSnapshot, SupervisorSnapshot, TreeSnapshot

__all__ = ["TreeCounts", "count_tree", "render_snapshot", "render_text"]

_GUIDE_STYLE = "bright_black"


def _status(snapshot: ActorSnapshot | SupervisorSnapshot) -> tuple[str, str]:
    """The status word and its colour."""
    if snapshot.alive:
        return "alive", "green"
    # ``restarting`` is read defensively: older snapshots do not carry it.
    if getattr(snapshot, "restarting", False):
        return "restarting", "yellow"
    return "dead", "red"


def _restarts(count: int) -> Text:
    return Text(f"restarts {count}", style="yellow" if count else "")


def _supervisor_label(snapshot: SupervisorSnapshot) -> Text:
    status, colour = _status(snapshot)
    label = Text()
    label.append(snapshot.name, style=f"bold {colour}")
    if snapshot.id != snapshot.name:
        label.append(f" [{snapshot.id}]", style="dim")
    label.append("  supervisor ", style="dim")
    label.append(snapshot.strategy.value, style="cyan")
    if snapshot.restart is not None:
        label.append(f"  {snapshot.restart.value}", style="dim")
    label.append("  ")
    label.append(status, style=colour)
    label.append("  ")
    label.append_text(_restarts(snapshot.restarts))
    return label


def _actor_label(snapshot: ActorSnapshot) -> Text:
    status, colour = _status(snapshot)
    label = Text()
    label.append(snapshot.id, style=f"bold {colour}")
    if snapshot.name is not None and snapshot.name != snapshot.id:
        label.append(f" ({snapshot.name})", style="dim")
    label.append("  ")
    label.append(snapshot.behaviour, style="magenta")
    if snapshot.restart is not None:
        label.append(f"  {snapshot.restart.value}", style="dim")
    label.append("  ")
    label.append(status, style=colour)
    label.append("  ")
    label.append_text(_restarts(snapshot.restarts))
    label.append(f"  mailbox {snapshot.mailbox_depth}")
    label.append(f"  handled {snapshot.messages_handled}")
    return label


def _add(tree: Tree, snapshot: ActorSnapshot | SupervisorSnapshot) -> None:
    if isinstance(snapshot, SupervisorSnapshot):
        branch = tree.add(_supervisor_label(snapshot), guide_style=_GUIDE_STYLE)
        for child in snapshot.children:
            _add(branch, child)
    else:
        tree.add(_actor_label(snapshot), guide_style=_GUIDE_STYLE)


class TreeCounts:
    """Totals over a snapshot: how many actors are alive, dead, and restarts so far."""

    __slots__ = ("alive", "restarts", "supervisors", "total", "workers")

    def __init__(self) -> None:
        self.total = 0
        self.alive = 0
        self.supervisors = 0
        self.workers = 0
        self.restarts = 0

    def __repr__(self) -> str:
        return (
            f"TreeCounts(total={self.total}, alive={self.alive}, supervisors="
            f"{self.supervisors}, workers={self.workers}, restarts={self.restarts})"
        )


def count_tree(snapshot: TreeSnapshot | SupervisorSnapshot | ActorSnapshot) -> TreeCounts:
    """Count actors, live actors and restarts in a snapshot (every level)."""
    counts = TreeCounts()

    def visit(node: ActorSnapshot | SupervisorSnapshot) -> None:
        counts.total += 1
        counts.alive += node.alive
        counts.restarts += node.restarts
        if isinstance(node, SupervisorSnapshot):
            counts.supervisors += 1
            for child in node.children:
                visit(child)
        else:
            counts.workers += 1

    if isinstance(snapshot, TreeSnapshot):
        for child in snapshot.children:
            visit(child)
    else:
        visit(snapshot)
    return counts


def render_snapshot(snapshot: TreeSnapshot | SupervisorSnapshot | ActorSnapshot) -> Any:
    """Return a rich renderable (a :class:`rich.tree.Tree`) for an ``ActorSnapshot``,
    ``SupervisorSnapshot`` or ``TreeSnapshot``.

    A tree shows the node, then each supervisor (name, strategy, restart type, status,
    restarts) and worker (id, name, behaviour, restart type, status, restarts, mailbox
    depth, messages handled), in start order.
    """
    if isinstance(snapshot, TreeSnapshot):
        counts = count_tree(snapshot)
        label = Text()
        label.append(f"node {snapshot.node}", style="bold")
        label.append(f"  {counts.alive}/{counts.total} alive", style="dim")
        label.append("  ")
        label.append_text(_restarts(counts.restarts))
        root = Tree(label, guide_style=_GUIDE_STYLE)
        if not snapshot.children:
            root.add(Text("(no actors)", style="dim"))
        for child in snapshot.children:
            _add(root, child)
        return root
    if isinstance(snapshot, SupervisorSnapshot):
        root = Tree(_supervisor_label(snapshot), guide_style=_GUIDE_STYLE)
        for child in snapshot.children:
            _add(root, child)
        return root
    if isinstance(snapshot, ActorSnapshot):
        return _actor_label(snapshot)
    raise TypeError(
        f"render_snapshot needs an otp.TreeSnapshot, SupervisorSnapshot or ActorSnapshot, "
        f"not {snapshot!r}"
    )


def render_text(
    snapshot: TreeSnapshot | SupervisorSnapshot | ActorSnapshot, width: int = 100
) -> str:
    """Render ``snapshot`` to plain text (no colour, no terminal codes) at ``width``."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        color_system=None,
        force_terminal=False,
        no_color=True,
        highlight=False,
        emoji=False,
        legacy_windows=False,
    )
    console.print(render_snapshot(snapshot))
    return buffer.getvalue()
