"""supervision_tree: the three restart strategies and restart intensity, crash and heal.

What it shows:

* one supervisor per strategy, each with children ``a``, ``b``, ``c`` (started in that
  order); crashing ``b`` restarts

  - ``ONE_FOR_ONE``:  only ``b``;
  - ``ONE_FOR_ALL``:  ``a``, ``b`` and ``c`` (the others are stopped first, in reverse);
  - ``REST_FOR_ONE``: ``b`` and ``c`` (the children started after it);

* restart intensity: a supervisor allowed 1 restart in 5 s gives up on the second crash,
  and its own supervisor (``root``) restarts it, with fresh children, as OTP does;
* ``node.tree()`` printed with rich before and after.

No sleeps: ``await ref.join()`` waits for the crashed actor to exit, and the next call to
its supervisor is answered only after the supervisor has handled that exit.

Run it with ``python examples/supervision_tree.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import rich

import otp


@attrs.frozen
class Crash: ...


class Child(otp.GenServer):
    async def handle_cast(self, message: Any) -> None:
        if isinstance(message, Crash):
            raise RuntimeError("crashed on purpose")


def trio_of(name: str, strategy: otp.Strategy) -> otp.SupervisorSpec:
    return otp.supervisor(
        name, strategy=strategy, children=[otp.worker(Child, id=x) for x in ("a", "b", "c")]
    )


async def refs(sup: otp.SupervisorRef) -> dict[str, otp.ActorRef | None]:
    return {child.id: child.ref for child in await sup.which_children()}


async def crash(sup: otp.SupervisorRef, child_id: str) -> dict[str, otp.ActorRef | None]:
    """Crash one child, wait until its supervisor has dealt with it, return the new refs."""
    victim = (await refs(sup))[child_id]
    assert victim is not None
    await victim.cast(Crash())
    await victim.join()  # it has exited...
    return await refs(sup)  # ...and this call is answered after the supervisor reacted


async def main() -> None:
    tree = otp.supervisor(
        "root",
        strategy=otp.ONE_FOR_ONE,
        children=[
            trio_of("one_for_one", otp.ONE_FOR_ONE),
            trio_of("one_for_all", otp.ONE_FOR_ALL),
            trio_of("rest_for_one", otp.REST_FOR_ONE),
            otp.supervisor(
                "fragile",
                max_restarts=1,
                within=5.0,
                children=[otp.worker(Child, id="x")],
            ),
        ],
    )
    async with otp.Node(name="example") as node:
        root = await node.start(tree)
        rich.print(node.tree())

        for name in ("one_for_one", "one_for_all", "rest_for_one"):
            sup = node.whereis(name)
            assert isinstance(sup, otp.SupervisorRef)
            before = await refs(sup)
            after = await crash(sup, "b")
            restarted = [cid for cid in before if after[cid] is not before[cid]]
            print(f"{name:13} crash b -> restarted {restarted}")

        fragile = node.whereis("fragile")
        assert isinstance(fragile, otp.SupervisorRef)
        await crash(fragile, "x")
        print("fragile       crash x -> restarted (1 restart allowed in 5 s)")
        victim = (await refs(fragile))["x"]
        assert victim is not None
        await victim.cast(Crash())
        reason = await fragile.join()
        print(f"fragile       crash x again -> the supervisor gave up: {reason}")
        after_root = await refs(root)  # root has handled fragile's exit by now
        new_fragile = after_root["fragile"]
        assert new_fragile is not None
        print(f"root restarted fragile: {new_fragile is not fragile and new_fragile.alive}")

        rich.print(node.tree())
        print("every actor alive:", all(r is not None and r.alive for r in after_root.values()))


if __name__ == "__main__":
    # Crash reports go to the "otp" logger; keep this example's output short.
    logging.getLogger("otp").setLevel(logging.CRITICAL)
    otp.run(main)
