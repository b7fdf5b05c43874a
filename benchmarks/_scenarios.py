"""Every scenario of the suite, with its floor, its anyio version, anyotp and the peers.

Variants are referenced lazily (module path + attribute) so that listing the scenarios, or
running only the peers in another virtualenv, imports neither anyotp nor anyio.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ._core import Ctx, Metrics, Peer, RowSpec, Scenario, Variant


def lazy(module: str, name: str, *args: Any) -> Variant:
    """``module.name`` (or ``module.name(*args)``, a variant factory), imported on first use."""
    resolved: list[Variant] = []

    def variant(ctx: Ctx) -> Metrics:
        if not resolved:
            target: Any = getattr(importlib.import_module(f"benchmarks.{module}"), name)
            resolved.append(target(*args) if args else target)
        return resolved[0](ctx)

    variant.__qualname__ = f"{module}.{name}{args or ''}"
    return variant


def _peer(name: str, module: str, attr: str, *args: Any, **kw: Any) -> Peer:
    """A peer whose import name and distribution name are both ``name``."""
    return Peer(
        name=name, module=name, dist=name, variant=lazy(f"peers.{module}", attr, *args), **kw
    )


def _peers(attr: str, *args: Any) -> tuple[Peer, ...]:
    """The four peers for one scenario (each module names its variants alike)."""
    return (
        _peer("pykka", "pykka_peer", attr, *args, backend_independent=True),
        _peer("fauxtp", "fauxtp_peer", attr, *args),
        _peer("otpylib", "otpylib_peer", attr, *args, backends=("asyncio",)),
        _peer("triotp", "triotp_peer", attr, *args, backends=("trio",)),
        _peer("casty", "casty_peer", attr, *args, backends=("asyncio",)),
    )


CALL_TARGET = 1.5
CAST_TARGET = 2.0  # time per message <= 2x the floor, i.e. throughput >= 0.5x
FANOUT_TARGET = 1.5
MEMORY_TARGET = 2.0

_call_rows = (
    RowSpec("call", "call (default timeout=5 s)", "s/op", CALL_TARGET, "≤1.5x"),
    RowSpec("call_nt", "call (timeout=None)", "s/op", CALL_TARGET, "≤1.5x"),
)

_CAST_TEXT = "≤2x"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        key="call",
        summary="request/reply round-trip to one actor",
        rows=_call_rows,
        floor=lazy("_floors", "call"),
        anyio=lazy("_anyio_floors", "call"),
        anyotp=lazy("_anyotp", "call"),
        peers=(
            _peer("pykka", "pykka_peer", "call", backend_independent=True),
            _peer("fauxtp", "fauxtp_peer", "call"),
            _peer("otpylib", "otpylib_peer", "call", backends=("asyncio",)),
            _peer("triotp", "triotp_peer", "call", backends=("trio",)),
            _peer("casty", "casty_peer", "call", backends=("asyncio",)),
        ),
        floor_text="asyncio.Queue + Future / trio memory channel + Event",
        anyio_text="one anyio memory-object stream each way",
        anyotp_text="await ref.call(request)",
    ),
    Scenario(
        key="cast_nowait",
        summary="one producer, ref.cast_nowait (never yields)",
        rows=(
            RowSpec(
                "cast_nowait",
                "cast_nowait, 1 → 1 actor",
                "s/op",
                CAST_TARGET,
                _CAST_TEXT,
            ),
        ),
        floor=lazy("_floors", "one_way", 1, False, "cast_nowait"),
        anyio=lazy("_anyio_floors", "one_way", 1, False, "cast_nowait"),
        anyotp=lazy("_anyotp", "one_way", 1, False, "cast_nowait"),
        floor_text="deque drained without yielding + Future/Event wake-up",
        anyio_text="send_nowait into a stream, consumer `async for`",
        anyotp_text="ref.cast_nowait(message)",
    ),
    Scenario(
        key="cast",
        summary="one producer, await ref.cast (an amortised checkpoint)",
        rows=(RowSpec("cast", "await cast, 1 → 1 actor", "s/op", CAST_TARGET, _CAST_TEXT),),
        floor=lazy("_floors", "one_way", 1, True, "cast"),
        anyio=lazy("_anyio_floors", "one_way", 1, True, "cast"),
        anyotp=lazy("_anyotp", "one_way", 1, True, "cast"),
        peers=_peers("one_way", 1, "cast"),
        floor_text="deque mailbox; the producer yields every 64 messages",
        anyio_text="await stream.send(message), consumer `async for`",
        anyotp_text="await ref.cast(message)",
    ),
    Scenario(
        key="cast8",
        summary="eight producers, await ref.cast, one actor",
        rows=(RowSpec("cast_8", "await cast, 8 → 1 actor", "s/op", CAST_TARGET, _CAST_TEXT),),
        floor=lazy("_floors", "one_way", 8, True, "cast_8"),
        anyio=lazy("_anyio_floors", "one_way", 8, True, "cast_8"),
        anyotp=lazy("_anyotp", "one_way", 8, True, "cast_8"),
        peers=_peers("one_way", 8, "cast_8"),
        floor_text="deque mailbox; each producer yields every 64 messages",
        anyio_text="8 tasks await send on one stream",
        anyotp_text="8 tasks await ref.cast(message)",
    ),
    Scenario(
        key="fanout10",
        summary="broker publish to 10 subscribed actors, per delivered message",
        rows=(
            RowSpec(
                "fanout_10",
                "fan-out to 10, per delivery",
                "s/op",
                FANOUT_TARGET,
                "≤1.5x",
            ),
        ),
        floor=lazy("_floors", "fan_out", 10),
        anyio=lazy("_anyio_floors", "fan_out", 10),
        anyotp=lazy("_anyotp", "fan_out", 10),
        peers=(_peer("pykka", "pykka_peer", "fan_out", 10, backend_independent=True),),
        floor_text="put_nowait / send_nowait to each subscriber's own queue or channel",
        anyio_text="send_nowait to each subscriber's stream",
        anyotp_text="await node.broker.publish(topic, message)",
    ),
    Scenario(
        key="fanout100",
        summary="broker publish to 100 subscribed actors, per delivered message",
        rows=(
            RowSpec(
                "fanout_100",
                "fan-out to 100, per delivery",
                "s/op",
                FANOUT_TARGET,
                "≤1.5x",
            ),
        ),
        floor=lazy("_floors", "fan_out", 100),
        anyio=lazy("_anyio_floors", "fan_out", 100),
        anyotp=lazy("_anyotp", "fan_out", 100),
        peers=(_peer("pykka", "pykka_peer", "fan_out", 100, backend_independent=True),),
        floor_text="put_nowait / send_nowait to each subscriber's own queue or channel",
        anyio_text="send_nowait to each subscriber's stream",
        anyotp_text="await node.broker.publish(topic, message)",
    ),
    Scenario(
        key="fanout10_nowait",
        summary="broker publish_nowait to 10 subscribed actors, per delivered message",
        rows=(
            RowSpec(
                "fanout_nowait_10",
                "fan-out to 10, publish_nowait",
                "s/op",
                FANOUT_TARGET,
                "≤1.5x",
            ),
        ),
        floor=lazy("_floors", "fan_out", 10, "fanout_nowait_10"),
        anyio=lazy("_anyio_floors", "fan_out", 10, "fanout_nowait_10"),
        anyotp=lazy("_anyotp", "fan_out", 10, True),
        floor_text="put_nowait / send_nowait to each subscriber's own queue or channel",
        anyio_text="send_nowait to each subscriber's stream",
        anyotp_text="node.broker.publish_nowait(topic, message)",
    ),
    Scenario(
        key="fanout100_nowait",
        summary="broker publish_nowait to 100 subscribed actors, per delivered message",
        rows=(
            RowSpec(
                "fanout_nowait_100",
                "fan-out to 100, publish_nowait",
                "s/op",
                FANOUT_TARGET,
                "≤1.5x",
            ),
        ),
        floor=lazy("_floors", "fan_out", 100, "fanout_nowait_100"),
        anyio=lazy("_anyio_floors", "fan_out", 100, "fanout_nowait_100"),
        anyotp=lazy("_anyotp", "fan_out", 100, True),
        floor_text="put_nowait / send_nowait to each subscriber's own queue or channel",
        anyio_text="send_nowait to each subscriber's stream",
        anyotp_text="node.broker.publish_nowait(topic, message)",
    ),
    Scenario(
        key="publish_nobody",
        summary="publish on a topic nobody subscribes to",
        rows=(RowSpec("publish_nobody", "publish, no subscriber", "s/op"),),
        floor=lazy("_floors", "publish_nobody"),
        anyotp=lazy("_anyotp", "publish_nobody"),
        floor_text="an awaited function doing one failed dict lookup",
        anyotp_text="await node.broker.publish(...) → a dead letter",
    ),
    Scenario(
        key="spawn_stop",
        summary="start N actors one by one, then stop them one by one",
        rows=(
            RowSpec(
                "spawn_stop",
                "spawn+stop {n}, per actor",
                "s/op",
                n_full=10_000,
                n_min=100,
            ),
        ),
        floor=lazy("_floors", "spawn_stop"),
        anyotp=lazy("_anyotp", "spawn_stop"),
        peers=_peers("spawn_stop"),
        floor_text="create a task, await its start ack; sentinel, await its end",
        anyotp_text="await node.spawn(cls); await ref.stop()",
    ),
    Scenario(
        key="restart",
        summary="crash-to-serving-again latency under a one_for_one supervisor",
        rows=(RowSpec("restart", "restart: crash → serving", "s/op"),),
        floor=lazy("_floors", "restart"),
        anyio=lazy("_anyio_floors", "restart"),
        anyotp=lazy("_anyotp", "restart"),
        floor_text="a loop that runs each incarnation in a new task and catches its crash",
        anyio_text="a task group per incarnation, except*",
        anyotp_text="cast a crash; poll whereis(name); await new.call(...)",
    ),
    Scenario(
        key="idle_10k",
        summary="resident memory per idle actor, N actors (fresh interpreter per sample)",
        rows=(
            RowSpec(
                "idle_10k",
                "idle memory/actor, {n}",
                "B",
                MEMORY_TARGET,
                "≤2x",
                n_full=10_000,
                n_min=200,
            ),
        ),
        floor=lazy("_floors", "idle_memory"),
        anyio=lazy("_anyio_floors", "idle_memory"),
        anyotp=lazy("_anyotp", "idle_memory"),
        peers=_peers("idle_memory"),
        isolate=True,
        parallel=True,
        floor_text="a bare task waiting on its own asyncio.Queue / trio channel",
        anyio_text="a bare task waiting on its own anyio stream",
        anyotp_text="await node.spawn(Idle)",
    ),
    Scenario(
        key="sup_100k",
        summary="N actors under one dynamic supervisor: start, memory, shutdown",
        rows=(
            RowSpec(
                "sup_start",
                "{n} under dyn. sup: start",
                "s",
                n_full=100_000,
                n_min=500,
            ),
            RowSpec(
                "idle_100k",
                "idle memory/actor, {n} sup.",
                "B",
                MEMORY_TARGET,
                "≤2x",
                n_full=100_000,
                n_min=500,
            ),
            RowSpec(
                "sup_stop",
                "{n} under dyn. sup: stop",
                "s",
                n_full=100_000,
                n_min=500,
            ),
        ),
        floor=lazy("_floors", "many_under_one"),
        anyotp=lazy("_anyotp", "many_under_one"),
        isolate=True,
        max_reps=3,
        floor_text="N bare tasks in one task group; a sentinel to each, then join",
        anyotp_text="N x await sup.start_child(worker) on a dynamic_supervisor; sup.stop()",
    ),
    Scenario(
        key="start_child",
        summary="N start_child calls on one dynamic supervisor, per child",
        rows=(
            RowSpec(
                "start_child",
                "start_child x{n}, per child",
                "s/op",
                n_full=1_000,
                n_min=100,
            ),
        ),
        floor=lazy("_anyotp", "spawn_many"),
        anyotp=lazy("_anyotp", "start_child"),
        floor_text="anyotp's own node.spawn, N times (no supervisor)",
        anyotp_text="await sup.start_child(otp.worker(cls)) on a dynamic_supervisor",
    ),
)

BY_KEY: dict[str, Scenario] = {s.key: s for s in SCENARIOS}


def select(only: list[str] | None) -> list[Scenario]:
    """The scenarios whose key starts with one of ``only`` (all if it is empty)."""
    if not only:
        return list(SCENARIOS)
    wanted = [w.strip() for item in only for w in item.split(",") if w.strip()]
    chosen = [s for s in SCENARIOS if any(s.key == w or s.key.startswith(w) for w in wanted)]
    if not chosen:
        keys = ", ".join(BY_KEY)
        raise SystemExit(f"--only {','.join(wanted)} matches no scenario; choose from: {keys}")
    return chosen


def variants(
    scenario: Scenario, *, peers: bool, peers_only: bool, backend: str
) -> list[tuple[str, Variant, Peer | None]]:
    """The variants to run: ``floor``, ``anyio``, ``anyotp`` and ``peer:NAME`` labels."""
    out: list[tuple[str, Variant, Peer | None]] = [("floor", scenario.floor, None)]
    if not peers_only:
        if scenario.anyio is not None:
            out.append(("anyio", scenario.anyio, None))
        out.append(("anyotp", scenario.anyotp, None))
    if peers or peers_only:
        for peer in scenario.peers:
            if backend in peer.backends and peer.installed():
                out.append((f"peer:{peer.name}", peer.variant, peer))
    return out


def find_variant(scenario_key: str, label: str) -> Callable[[Ctx], Metrics]:
    scenario = BY_KEY[scenario_key]
    if label == "floor":
        return scenario.floor
    if label == "anyio" and scenario.anyio is not None:
        return scenario.anyio
    if label == "anyotp":
        return scenario.anyotp
    for peer in scenario.peers:
        if label == f"peer:{peer.name}":
            return peer.variant
    raise KeyError(f"{scenario_key}:{label}")
