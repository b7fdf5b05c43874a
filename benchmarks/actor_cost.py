"""What one idle actor costs: gc-tracked objects (by type) and traced bytes per actor.

    python -m benchmarks.actor_cost                       # both backends, 2,000 actors
    python -m benchmarks.actor_cost --n 5000 --backend trio --types

N idle actors start under one ``otp.dynamic_supervisor`` (as the 100,000-actor row does);
the script prints, per backend, the growth of ``gc.get_objects()`` per actor (what the
cyclic collector walks during a bulk start) and of ``tracemalloc``'s traced memory per actor.
``--types`` lists the tracked objects per actor by type. Counts are exact and repeatable,
unlike wall-clock figures on a shared machine.
"""

from __future__ import annotations

import argparse
import collections
import gc
import sys
import tracemalloc
from typing import Any

import otp


class Idle(otp.GenServer):
    pass


def _types() -> collections.Counter[str]:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


async def _measure(n: int, types: bool) -> dict[str, Any]:
    async with otp.Node() as node:
        sup = await node.start(otp.dynamic_supervisor("cost"))
        spec = otp.worker(Idle, restart=otp.TEMPORARY)
        for _ in range(10):  # warm the caches (code objects, interned strings, ...)
            await sup.start_child(spec)
        gc.collect()
        before = _types() if types else None
        objects0 = len(gc.get_objects())
        tracemalloc.start()
        bytes0 = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            await sup.start_child(spec)
        gc.collect()
        traced = (tracemalloc.get_traced_memory()[0] - bytes0) / n
        tracemalloc.stop()
        objects = (len(gc.get_objects()) - objects0) / n
        by_type: dict[str, float] = {}
        if before is not None:
            after = _types()
            by_type = {
                k: (after[k] - before[k]) / n for k in after if abs(after[k] - before[k]) >= n // 2
            }
        await sup.stop()
    return {"objects": objects, "bytes": traced, "types": by_type}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.actor_cost", description=__doc__)
    p.add_argument("--n", type=int, default=2_000)
    p.add_argument("--backend", action="append", choices=("asyncio", "trio"))
    p.add_argument("--types", action="store_true", help="tracked objects per actor by type")
    args = p.parse_args(argv)
    for backend in args.backend or ("asyncio", "trio"):
        r = otp.run(lambda: _measure(args.n, args.types), backend=backend)
        print(
            f"{backend:8} {args.n} idle actors: {r['objects']:.1f} gc-tracked objects and "
            f"{r['bytes']:,.0f} traced bytes per actor"
        )
        for name, count in sorted(r["types"].items(), key=lambda kv: -kv[1]):
            print(f"    {count:5.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
