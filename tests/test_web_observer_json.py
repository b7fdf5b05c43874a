"""The JSON form of snapshots, statistics and events (otp.to_json, otp.json_converter)."""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otp
from otp.testing import wait_for_name, wait_until
from tests._helpers import Counter, Crash

pytestmark = pytest.mark.anyio


def dumps(value: Any) -> str:
    # allow_nan=False: browsers' JSON.parse refuses NaN, so the form must never need it.
    return json.dumps(value, allow_nan=False)


def roundtrip(value: Any) -> Any:
    form = otp.to_json(value)
    assert json.loads(dumps(form)) == form
    return form


class Weird:
    """A user object whose repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class Stateful(otp.GenServer):
    async def init(self) -> None:
        self.loop: dict[str, Any] = {"n": 1}
        self.loop["self"] = self.loop
        self.nan = float("nan")
        self.weird = Weird()
        self.blob = b"\x00\xff"

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        raise ValueError(request)


# ---------------------------------------------------------------------------- values


def test_value_rules() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    error = KeyError("k")
    error.add_note("a note")
    try:
        raise RuntimeError("outer") from error
    except RuntimeError as caught:
        chained = caught
    form = roundtrip(
        {
            "cyclic": cyclic,
            "nan": float("nan"),
            "inf": -math.inf,
            "weird": Weird(),
            "keys": {1: "one", (2, 3): "pair"},
            "enum": otp.Overflow.DROP_OLDEST,
            "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            "error": chained,
            "group": ExceptionGroup("two", [ValueError("a"), TypeError("b")]),
            "long": "x" * 10_000,
            "many": list(range(1000)),
        }
    )
    assert form["cyclic"] == [1, "<cycle>"]
    assert form["nan"] == "NaN"
    assert form["inf"] == "-Infinity"
    assert form["weird"] == "<unrepresentable Weird>"
    assert form["keys"] == {"1": "one", "(2, 3)": "pair"}
    assert form["enum"] == "drop_oldest"
    assert form["when"] == "2026-01-02T03:04:05+00:00"
    assert form["error"]["class"] == "RuntimeError"
    assert form["error"]["cause"]["class"] == "KeyError"
    assert form["error"]["cause"]["notes"] == ["a note"]
    assert [e["class"] for e in form["group"]["exceptions"]] == ["ValueError", "TypeError"]
    assert len(form["long"]) == otp._json.MAX_STRING
    assert form["long"].endswith("…")
    assert len(form["many"]) == otp._json.MAX_ITEMS + 1
    assert form["many"][-1] == "… 800 more"


def test_a_self_caused_exception_and_deep_nesting_terminate() -> None:
    error = ValueError("me")
    error.__cause__ = error
    form = roundtrip(error)
    assert form["cause"] == "<cycle>"
    deep: list[Any] = []
    for _ in range(100):
        deep = [deep]
    form = roundtrip(deep)
    depth = 0
    while isinstance(form, list):
        form, depth = form[0], depth + 1
    assert isinstance(form, str)
    assert depth == otp._json.MAX_DEPTH


def test_user_hooks_take_precedence() -> None:
    @attrs.frozen
    class Money:
        cents: int

    assert roundtrip([Money(150)]) == ["Money(cents=150)"]
    otp.json_converter.register_unstructure_hook(Money, lambda m: f"${m.cents / 100:.2f}")
    assert roundtrip({"price": Money(150)}) == {"price": "$1.50"}


# ---------------------------------------------------------------------------- a live node


async def test_tree_statistics_and_events_of_a_live_node() -> None:
    events: list[otp.Event] = []
    async with otp.Node(name="json") as node:
        node.add_event_listener(events.append)
        root = await node.start(
            otp.supervisor(
                "root",
                [
                    otp.worker(Counter, name="a"),
                    otp.supervisor("inner", [otp.worker(Stateful, name="s")]),
                ],
                max_restarts=10,
            )
        )
        stateful = node.whereis("s")
        with pytest.raises(otp.ActorExited):
            await stateful.call(Crash())
        await wait_for_name(node, "s", not_ref=stateful)
        # The supervisor counts the restart once the new incarnation has started.
        await wait_until(lambda: node.tree().children[0].children[1].children[0].restarts)
        lone = await node.spawn(Stateful, name="lone")

        tree = roundtrip(node.tree())
        assert tree["version"] == otp.JSON_FORM_VERSION
        assert tree["type"] == "tree"
        assert tree["node"] == "json"
        sup, spawned = tree["children"]
        assert sup["type"] == "supervisor"
        assert sup["strategy"] == "one_for_one"
        assert sup["ref"] == {"type": "ref", "id": root.id, "name": "root", "alive": True}
        a, inner = sup["children"]
        assert a["type"] == "worker"
        assert (a["id"], a["behaviour"], a["restart"], a["alive"]) == (
            "a",
            "Counter",
            "permanent",
            True,
        )
        assert a["mailbox"]["type"] == "mailbox_statistics"
        assert a["mailbox"]["overflow"] == "block"
        assert "version" not in a
        assert inner["children"][0]["restarts"] == 1
        assert spawned["id"] == "lone"
        assert spawned["restart"] is None

        stats = roundtrip(lone.statistics())
        assert stats["type"] == "actor_statistics"
        assert stats["behaviour"] == "Stateful"
        mailbox = roundtrip(lone.statistics().mailbox)
        assert mailbox["version"] == otp.JSON_FORM_VERSION
        assert mailbox["high_water"] >= 0

        state = roundtrip(await lone.get_state())
        assert state["loop"] == {"n": 1, "self": "<cycle>"}
        assert state["nan"] == "NaN"
        assert state["weird"] == "<unrepresentable Weird>"
        assert state["blob"] == repr(b"\x00\xff")

        await node.broker.publish("nobody.listens", {"x": 1})
        broker = roundtrip(node.broker.statistics())
        assert broker["type"] == "broker_statistics"
        assert broker["dead_letters"] >= 1
        assert isinstance(broker["subscribers"], dict)
        await lone.stop()

    kinds = {e.kind for e in events}
    assert {"started", "exited", "restarted"} <= kinds
    crash = next(e for e in events if e.kind == "exited" and isinstance(e.reason, Exception))
    form = roundtrip(crash)
    assert form["type"] == "event"
    assert form["kind"] == "exited"
    assert form["reason"]["type"] == "exception"
    assert form["reason"]["class"] == "ValueError"
    assert form["actor"]["name"] == "s"
    assert form["actor"]["alive"] is False
    datetime.datetime.fromisoformat(form["timestamp"])
    restarted = roundtrip(next(e for e in events if e.kind == "restarted"))
    assert restarted["supervisor"]["name"] == "inner"
    assert restarted["detail"] == "s"


async def test_dead_letters_have_a_form() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        await ref.stop()
        letters: list[otp.DeadLetter] = []
        async with node.broker.subscribe(otp.DEAD_LETTERS) as sub:
            await ref.cast(Crash("late"))
            letters.append((await sub.receive()).message)
        await wait_until(lambda: bool(letters))
    form = roundtrip(letters[0])
    assert form["type"] == "dead_letter"
    assert form["reason"] == "noproc"
    assert form["message"] == "Crash(error='late')"
    assert form["recipient"]["type"] == "ref"


# ---------------------------------------------------------------------------- any snapshot

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities included
    | st.text(max_size=20)
    | st.binary(max_size=8)
    | st.builds(Weird)
    | st.builds(ValueError, st.text(max_size=10))
    | st.sampled_from(list(otp.Overflow))
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def _cyclic(draw: st.DrawFn) -> Any:
    value = draw(_values)
    box: list[Any] = [value]
    box.append(box)
    return draw(st.sampled_from([value, box, {"box": box}]))


_reasons = _values | _cyclic()
_mailboxes = st.builds(
    otp.MailboxStatistics,
    depth=st.integers(0, 10**6),
    high_water=st.integers(0, 10**6),
    enqueued=st.integers(0),
    dropped=st.integers(0),
    blocked_senders=st.integers(0, 100),
    capacity=st.none() | st.integers(1, 100),
    overflow=st.sampled_from(list(otp.Overflow)),
)
_workers = st.builds(
    otp.ActorSnapshot,
    id=st.text(min_size=1, max_size=10),
    name=st.none() | st.text(max_size=10),
    behaviour=st.text(max_size=10),
    alive=st.booleans(),
    restart=st.none() | st.sampled_from(list(otp.Restart)),
    restarts=st.integers(0),
    mailbox_depth=st.integers(0),
    messages_handled=st.integers(0),
    ref=st.none(),
    restarting=st.booleans(),
    uptime=st.floats(),
    mailbox=st.none() | _mailboxes,
)


def _supervisors(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        otp.SupervisorSnapshot,
        id=st.text(min_size=1, max_size=10),
        name=st.text(max_size=10),
        strategy=st.sampled_from(list(otp.Strategy)),
        alive=st.booleans(),
        restart=st.none() | st.sampled_from(list(otp.Restart)),
        restarts=st.integers(0),
        children=st.lists(children, max_size=4).map(tuple),
        ref=st.none(),
        restarting=st.booleans(),
    )


_subtrees = st.recursive(_workers, _supervisors, max_leaves=12)
_trees = st.builds(
    otp.TreeSnapshot, node=st.text(max_size=10), children=st.lists(_subtrees, max_size=4).map(tuple)
)
_events = st.builds(
    otp.Event,
    kind=st.sampled_from(["started", "exited", "restarted", "gave_up", "dead_letter", "nodeup"]),
    actor=st.none(),
    supervisor=st.none(),
    reason=_reasons,
    detail=_reasons,
)


def _count(form: dict[str, Any]) -> int:
    return 1 + sum(_count(child) for child in form.get("children", ()))


def _count_snapshot(snapshot: Any) -> int:
    return 1 + sum(_count_snapshot(child) for child in getattr(snapshot, "children", ()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees)
def test_any_tree_round_trips_through_json(tree: otp.TreeSnapshot) -> None:
    form = roundtrip(tree)
    assert form["version"] == otp.JSON_FORM_VERSION
    assert _count(form) == _count_snapshot(tree)


@settings(max_examples=150, deadline=None)
@given(event=_events)
def test_any_event_round_trips_through_json(event: otp.Event) -> None:
    form = roundtrip(event)
    assert form["kind"] == event.kind


@settings(max_examples=100, deadline=None)
@given(value=_reasons)
def test_any_value_round_trips_through_json(value: Any) -> None:
    roundtrip(value)
