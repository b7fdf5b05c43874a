"""Property-based supervision: random crash/stop/start sequences against a reference model,
and a chaos soak of about a thousand workers."""

from __future__ import annotations

import gc
import logging
import random
import weakref

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otp
from otp import _supervisor
from otp.testing import wait_until
from tests._helpers import Counter, Crash

pytestmark = pytest.mark.anyio


@attrs.define
class ModelChild:
    id: str
    restart: otp.Restart
    running: bool = True


@attrs.define
class Model:
    """What OTP's supervisor documentation says must be true."""

    strategy: otp.Strategy
    max_restarts: int
    children: list[ModelChild]
    restarts: int = 0
    gave_up: bool = False

    def find(self, child_id: str) -> ModelChild | None:
        return next((c for c in self.children if c.id == child_id), None)

    def exited(self, child: ModelChild, normal: bool) -> None:
        child.running = False
        if child.restart is otp.TEMPORARY or (child.restart is otp.TRANSIENT and normal):
            if child.restart is otp.TEMPORARY:
                self.children.remove(child)
            return
        self.restarts += 1
        if self.restarts > self.max_restarts:
            self.gave_up = True
            return
        if self.strategy is otp.ONE_FOR_ONE:
            affected = [child]
        elif self.strategy is otp.ONE_FOR_ALL:
            affected = list(self.children)
        else:
            affected = self.children[self.children.index(child) :]
        for other in affected:
            if other is not child and other.restart is otp.TEMPORARY:
                self.children.remove(other)
            else:
                other.running = True


ops = st.lists(
    st.tuples(
        st.sampled_from(["crash", "stop", "terminate", "restart", "delete", "start"]),
        st.integers(0, 3),
    ),
    max_size=12,
)


@given(
    strategy=st.sampled_from(list(otp.Strategy)),
    restarts=st.lists(st.sampled_from(list(otp.Restart)), min_size=1, max_size=4),
    max_restarts=st.integers(0, 4),
    operations=ops,
)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_supervisor_matches_reference_model(
    anyio_backend: str,
    monkeypatch: pytest.MonkeyPatch,
    strategy: otp.Strategy,
    restarts: list[otp.Restart],
    max_restarts: int,
    operations: list[tuple[str, int]],
) -> None:
    monkeypatch.setattr(_supervisor, "_clock", lambda: 0.0)  # every restart is in the window
    specs = {f"c{i}": otp.worker(Counter, id=f"c{i}", restart=r) for i, r in enumerate(restarts)}
    model = Model(strategy, max_restarts, [ModelChild(i, s.restart) for i, s in specs.items()])

    async def check(sup: otp.SupervisorRef) -> None:
        infos = await sup.which_children()
        assert [(i.id, i.ref is not None) for i in infos] == [
            (c.id, c.running) for c in model.children
        ]
        assert all(i.ref is None or i.ref.alive for i in infos)

    async def scenario() -> None:
        async with otp.Node() as node:
            sup = await node.start(
                otp.supervisor(
                    "sup", list(specs.values()), strategy=strategy, max_restarts=max_restarts
                )
            )
            for op, index in operations:
                child_id = f"c{index}"
                child = model.find(child_id)
                infos = {i.id: i for i in await sup.which_children()}
                ref = infos[child_id].ref if child_id in infos else None
                if op in ("crash", "stop"):
                    if ref is None or child is None:
                        continue
                    # Update the model first: a give-up cancels this body mid-await.
                    model.exited(child, normal=op == "stop")
                    if op == "crash":
                        await ref.cast(Crash())
                    else:
                        await ref.stop("normal")
                    await ref.join()
                    if model.gave_up:
                        await anyio.sleep_forever()  # the node's body is cancelled
                elif op == "terminate":
                    if child is None:
                        with pytest.raises(otp.NotFound):
                            await sup.terminate_child(child_id)
                        continue
                    await sup.terminate_child(child_id)
                    child.running = False
                    if child.restart is otp.TEMPORARY:
                        model.children.remove(child)
                elif op == "restart":
                    if child is None:
                        with pytest.raises(otp.NotFound):
                            await sup.restart_child(child_id)
                    elif child.running:
                        with pytest.raises(otp.ChildRunning):
                            await sup.restart_child(child_id)
                    else:
                        await sup.restart_child(child_id)
                        child.running = True
                elif op == "delete":
                    if child is None:
                        with pytest.raises(otp.NotFound):
                            await sup.delete_child(child_id)
                    elif child.running:
                        with pytest.raises(otp.ChildRunning):
                            await sup.delete_child(child_id)
                    else:
                        await sup.delete_child(child_id)
                        model.children.remove(child)
                elif op == "start" and child_id in specs:
                    if child is None:
                        await sup.start_child(specs[child_id])
                        model.children.append(ModelChild(child_id, specs[child_id].restart))
                    elif child.running:
                        with pytest.raises(otp.AlreadyStarted):
                            await sup.start_child(specs[child_id])
                    else:
                        with pytest.raises(otp.AlreadyPresent):
                            await sup.start_child(specs[child_id])
                await check(sup)

    try:
        anyio.run(scenario, backend=anyio_backend)
    except otp.SupervisorGaveUp:
        assert model.gave_up
    else:
        assert not model.gave_up


async def test_chaos_soak_thousand_workers(caplog: pytest.LogCaptureFixture) -> None:
    # 300 crash reports would keep every dead actor alive in the captured log records.
    caplog.set_level(logging.CRITICAL, logger="otp")
    rng = random.Random(1234)
    strategies = [otp.ONE_FOR_ONE, otp.ONE_FOR_ALL, otp.REST_FOR_ONE]
    before = {t.id for t in anyio.get_running_tasks()}
    dead: list[weakref.ref[otp.ActorRef]] = []
    async with otp.Node() as node:
        groups = [
            otp.supervisor(
                f"group{g}",
                [otp.worker(Counter, id=f"w{g}.{i}") for i in range(100)],
                strategy=strategies[g % 3],
                max_restarts=10_000,
                within=60,
            )
            for g in range(10)
        ]
        root = await node.start(otp.supervisor("root", groups, max_restarts=100, within=60))
        subs = [node.whereis(f"group{g}") for g in range(10)]
        for _ in range(300):
            sup = rng.choice(subs)
            children = [i.ref for i in await sup.which_children() if i.ref is not None]
            victim = rng.choice(children)
            dead.append(weakref.ref(victim))
            victim.cast_nowait(Crash("chaos"))
            if rng.random() < 0.3:
                await anyio.sleep(0)  # not synchronisation: let some crashes interleave

        async def whole() -> bool:
            counts = [await s.count_children() for s in subs]
            return all(c.active == 100 for c in counts)

        await wait_until(whole, timeout=30)
        assert root.alive
        assert all(s.alive for s in subs)  # no group gave up
        del children, victim
        gc.collect()
        # Dead incarnations are kept only by the bounded log of recent dead letters.
        assert sum(1 for r in dead if r() is not None) <= 100
    after = {t.id for t in anyio.get_running_tasks()}
    assert after == before
    del node, root, sup
    subs.clear()
    gc.collect()
    assert sum(1 for r in dead if r() is not None) == 0
