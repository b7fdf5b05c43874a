"""The rich rendering of node.tree(): exact text at a fixed width, colours, and the demo's
building blocks."""

from __future__ import annotations

import io
from typing import Any

import anyio
import pytest
from rich.console import Console

import otp
from otp._observer import count_tree, render_snapshot, render_text
from otp.testing import render_tree_text, wait_for_restart
from tests._helpers import Add, Block, Counter, Crash, Get

pytestmark = pytest.mark.anyio


def plain(renderable: Any, width: int = 80) -> str:
    """Render anything with rich at ``width`` columns, colour off."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(renderable)
    return buffer.getvalue()


def coloured(renderable: Any, width: int = 80) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system="standard", force_terminal=True).print(
        renderable
    )
    return buffer.getvalue()


async def test_tree_renders_exactly_at_a_fixed_width() -> None:
    async with otp.Node(name="test") as node:
        root = await node.start(
            otp.supervisor(
                "root",
                strategy=otp.ONE_FOR_ONE,
                children=[
                    otp.worker(Counter, 0, name="a"),
                    otp.worker(Counter, 0, id="b", restart=otp.TRANSIENT),
                    otp.supervisor(
                        "pool",
                        strategy=otp.ONE_FOR_ALL,
                        restart=otp.TEMPORARY,
                        children=[otp.worker(Counter, name="p1"), otp.worker(Counter, id="p2")],
                    ),
                ],
            )
        )
        solo = await node.spawn(Counter, 0, name="solo")
        for n in (1, 2, 3):
            await solo.cast(Add(n))
        assert await solo.call(Get()) == 6  # 3 casts + this call handled

        # Crash "a" once and wait for the new incarnation: restarts 1.
        old_a = node.whereis("a")
        await old_a.cast(Crash())
        await wait_for_restart(root, "a", old_a)

        # Park "p1" in a handler and queue two casts behind it: mailbox 2.
        release = anyio.Event()
        p1 = node.whereis("p1")
        await p1.cast(Block(release))
        await p1.cast(Add(1))
        await p1.cast(Add(1))

        # Stop "b" for good: its spec stays, dead.
        await root.terminate_child("b")

        text = plain(node.tree())
        assert text == (
            "node test  6/7 alive  restarts 1\n"
            "├── root  supervisor one_for_one  alive  restarts 0\n"
            "│   ├── a  Counter  permanent  alive  restarts 1  mailbox 0  handled 0\n"
            "│   ├── b  Counter  transient  dead  restarts 0  mailbox 0  handled 0\n"
            "│   └── pool  supervisor one_for_all  temporary  alive  restarts 0\n"
            "│       ├── p1  Counter  permanent  alive  restarts 0  mailbox 2  handled 0\n"
            "│       └── p2  Counter  permanent  alive  restarts 0  mailbox 0  handled 0\n"
            "└── solo  Counter  alive  restarts 0  mailbox 0  handled 4\n"
        )
        # The same text through the helpers, and stable across renders.
        assert render_text(node.tree(), width=80) == text
        assert render_tree_text(node.tree(), width=80) == text
        release.set()


async def test_narrow_width_wraps_deterministically() -> None:
    async with otp.Node(name="n") as node:
        await node.start(otp.supervisor("sup", [otp.worker(Counter, id="worker-with-long-id")]))
        first = render_text(node.tree(), width=40)
        second = render_text(node.tree(), width=40)
    assert first == second
    assert all(len(line) <= 40 for line in first.splitlines())
    assert first.splitlines()[0] == "node n  2/2 alive  restarts 0"


async def test_supervisor_and_actor_snapshots_render_on_their_own() -> None:
    async with otp.Node() as node:
        await node.start(otp.supervisor("sup", [otp.worker(Counter, name="w")]))
        tree = node.tree()
    sup = tree.children[0]
    assert isinstance(sup, otp.SupervisorSnapshot)
    actor = sup.children[0]
    assert isinstance(actor, otp.ActorSnapshot)
    assert plain(sup) == (
        "sup  supervisor one_for_one  alive  restarts 0\n"
        "└── w  Counter  permanent  alive  restarts 0  mailbox 0  handled 0\n"
    )
    assert plain(actor) == "w  Counter  permanent  alive  restarts 0  mailbox 0  handled 0\n"


async def test_empty_node() -> None:
    async with otp.Node(name="empty") as node:
        assert plain(node.tree()) == "node empty  0/0 alive  restarts 0\n└── (no actors)\n"


def _actor(**changes: Any) -> otp.ActorSnapshot:
    fields: dict[str, Any] = {
        "id": "w",
        "name": None,
        "behaviour": "Worker",
        "alive": True,
        "restart": otp.PERMANENT,
        "restarts": 0,
        "mailbox_depth": 0,
        "messages_handled": 0,
        "ref": None,
    }
    fields.update(changes)
    return otp.ActorSnapshot(**fields)


def test_hand_built_snapshots_render_without_a_node() -> None:
    tree = otp.TreeSnapshot(
        node="n",
        children=(
            otp.SupervisorSnapshot(
                id="top",
                name="sup",
                strategy=otp.REST_FOR_ONE,
                alive=True,
                restart=None,
                restarts=2,
                children=(
                    _actor(id="a", name="alpha", restarts=3, mailbox_depth=7, messages_handled=9),
                    _actor(id="b", alive=False, restart=otp.TRANSIENT),
                ),
                ref=None,
            ),
        ),
    )
    assert plain(tree) == (
        "node n  2/3 alive  restarts 5\n"
        "└── sup [top]  supervisor rest_for_one  alive  restarts 2\n"
        "    ├── a (alpha)  Worker  permanent  alive  restarts 3  mailbox 7  handled 9\n"
        "    └── b  Worker  transient  dead  restarts 0  mailbox 0  handled 0\n"
    )
    counts = count_tree(tree)
    assert (counts.total, counts.alive, counts.supervisors, counts.workers, counts.restarts) == (
        3,
        2,
        1,
        2,
        5,
    )


def test_colours_mark_healthy_and_dead() -> None:
    green, red = "\x1b[32m", "\x1b[31m"
    alive = coloured(_actor(id="ok"))
    dead = coloured(_actor(id="gone", alive=False))
    assert green in alive
    assert "alive" in alive
    assert red in dead
    assert "dead" in dead
    assert red not in alive


def test_restarting_children_are_yellow() -> None:
    yellow = "\x1b[33m"
    snapshot = _actor(id="w", alive=False, restarting=True)
    assert "restarting" in plain(snapshot)
    assert yellow in coloured(snapshot)


def test_render_snapshot_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="TreeSnapshot"):
        render_snapshot("not a snapshot")  # type: ignore[arg-type]
