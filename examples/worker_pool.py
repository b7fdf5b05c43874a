"""worker_pool: a round-robin pool of identical workers.

What it shows:

* ``otp.worker_pool(name, cls, size=...)``: a one-for-one supervisor of ``size`` workers
  whose ref (an ``otp.PoolRef``) sends each ``call``/``cast`` to the next live worker,
  round-robin (``dispatch="least_busy"`` picks the shortest mailbox instead);
* jobs run concurrently: one task per job, each a ``call`` through the pool;
* a job that hits a fault crashes its worker: the caller gets ``otp.ActorExited`` at once
  and retries (the pool skips the dead worker), jobs queued behind the crash fail at once
  too (never a hang), and the supervisor starts a fresh worker in its place.

Run it with ``python examples/worker_pool.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import attrs

import otp

POOL_SIZE = 4


@attrs.frozen
class Work:
    n: int
    attempt: int = 1


class Worker(otp.GenServer):
    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case Work(13, 1):
                # A transient fault (say, a dropped connection): let it crash.
                raise RuntimeError("unlucky job 13")
            case Work(n):
                await anyio.sleep(0.02)  # pretend to work
                return (self.ref, n * n)
            case _:
                return await super().handle_call(request, caller)  # crashes, as OTP does


async def run_job(pool: otp.ActorRef, n: int, results: dict[int, tuple[otp.ActorRef, int]]) -> None:
    for attempt in (1, 2, 3):
        try:
            results[n] = await pool.call(Work(n, attempt), timeout=5.0)
            return
        except otp.ActorExited as exc:
            print(f"  job {n}: its worker crashed ({exc.reason}); retrying")
    raise RuntimeError(f"job {n} failed three times")


async def main() -> None:
    async with otp.Node() as node:
        pool = await node.start(otp.worker_pool("pool", Worker, size=POOL_SIZE))
        before = {c.ref: c.id for c in await pool.which_children()}
        results: dict[int, tuple[otp.ActorRef, int]] = {}
        jobs = list(range(1, 17))
        print(f"running {len(jobs)} jobs on {POOL_SIZE} workers: {sorted(before.values())}")
        started = anyio.current_time()
        async with anyio.create_task_group() as tasks:
            for n in jobs:
                tasks.start_soon(run_job, pool, n, results)
        elapsed = anyio.current_time() - started

        after = {c.ref: c.id for c in await pool.which_children()}
        names = {**before, **after}
        for n in sorted(results):
            ref, value = results[n]
            fresh = "" if ref in before else "  (a restarted worker)"
            print(f"  job {n:2} -> {value:3} by {names[ref]}{fresh}")
        per_worker: dict[str, int] = {}
        for ref, _ in results.values():
            per_worker[names[ref]] = per_worker.get(names[ref], 0) + 1
        print(f"jobs per worker: {dict(sorted(per_worker.items()))}")
        print(f"all {len(results)} jobs done in {elapsed:.2f}s (concurrently)")
        replaced = sorted(after[ref] for ref in after if ref not in before)
        print(f"workers replaced by the supervisor: {replaced}")


if __name__ == "__main__":
    # Crash reports go to the "otp" logger; keep this example's output short.
    logging.getLogger("otp").setLevel(logging.CRITICAL)
    otp.run(main)
