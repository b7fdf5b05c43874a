"""One node, a million idle actors: does it start, answer calls and stop cleanly?

    python -m benchmarks.million                     # 1,000,000 on asyncio, then trio
    python -m benchmarks.million --n 100000 --backend trio

N actors start under one ``otp.dynamic_supervisor``; then a call to a sample of them (first,
middle, last and 1,000 at random) must answer; then the supervisor stops them all. The
script prints, per backend: start time, calls answered and their time, stop time, resident
memory per actor, and the interpreter's tracked objects per actor (``gc.get_objects()``:
what the cyclic collector walks during the start). Needs about 9 KB of RAM per actor.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from typing import Any

import anyio

import otp

from ._core import rss_bytes


class Idle(otp.GenServer):
    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return request


async def _run(n: int, freeze: bool) -> dict[str, float]:
    async with otp.Node() as node:
        sup = await node.start(otp.dynamic_supervisor("million"))
        spec = otp.worker(Idle, restart=otp.TEMPORARY)
        gc.collect()
        rss0, objects0 = rss_bytes(), len(gc.get_objects())
        t0 = time.perf_counter()
        refs = []
        if freeze:
            gc.freeze()  # see docs/performance.md: only for a bulk start of long-lived actors
        for _ in range(n):
            ref = await sup.start_child(spec)
            assert ref is not None
            refs.append(ref)
        start = time.perf_counter() - t0
        gc.collect()
        rss = (rss_bytes() - rss0) / n
        objects = (len(gc.get_objects()) - objects0) / n
        sample = [refs[0], refs[n // 2], refs[-1], *random.sample(refs, min(1000, n))]
        t0 = time.perf_counter()
        answered = 0
        for i, ref in enumerate(sample):
            answered += await ref.call(i) == i
        calls = time.perf_counter() - t0
        del refs, sample, ref
        t0 = time.perf_counter()
        await sup.stop()
        stop = time.perf_counter() - t0
        if freeze:
            gc.unfreeze()
    return {
        "start": start,
        "answered": answered,
        "calls": calls,
        "stop": stop,
        "rss_per_actor": rss,
        "objects_per_actor": objects,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.million", description=__doc__)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--backend", action="append", choices=("asyncio", "trio"))
    p.add_argument("--gc-freeze", action="store_true", help="gc.freeze() around the start")
    args = p.parse_args(argv)
    for backend in args.backend or ("asyncio", "trio"):
        t0 = time.perf_counter()
        r = anyio.run(_run, args.n, args.gc_freeze, backend=backend)
        total = time.perf_counter() - t0
        print(
            f"{backend:8} n={args.n:,}: start {r['start']:.1f} s, "
            f"{int(r['answered'])} calls answered in {r['calls'] * 1e3:.0f} ms, "
            f"stop {r['stop']:.1f} s, {r['rss_per_actor'] / 1024:.2f} KiB RSS/actor, "
            f"{r['objects_per_actor']:.1f} tracked objects/actor, whole run {total:.1f} s"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
