"""Casts per second into a StateMachine, against a GenServer doing the same work.

    python -m benchmarks.statem                  # asyncio, then trio
    python -m benchmarks.statem --n 20000 --backend trio

Each case queues ``n`` casts with ``cast_nowait``, then one call waits until all are
handled; the best of three runs is printed. ``StateMachine+EventTimeout`` restarts an
event timeout on every event (the inactivity-timer idiom of gen_statem).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import otp
from otp import EventType


class Counter(otp.GenServer):
    async def init(self) -> None:
        self.n = 0

    async def handle_cast(self, message: Any) -> None:
        self.n += 1

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return self.n


class Machine(otp.StateMachine):
    async def init(self, idle_after: float | None = None) -> otp.NextState:
        self.n = 0
        self.idle_after = idle_after
        return otp.NextState("counting")

    async def counting(self, event: otp.StateEvent) -> otp.Transition:
        if event.type is EventType.CAST:
            self.n += 1
            if self.idle_after is not None:
                return otp.KeepState(otp.EventTimeout(self.idle_after, "idle"))
            return None
        if event.type is EventType.CALL:
            return otp.KeepState(otp.Reply(event.caller, self.n))
        return None


async def _rate(n: int, cls: type[otp.GenServer], *args: Any) -> float:
    async with otp.Node() as node:
        ref = await node.spawn(cls, *args)
        started = time.perf_counter()
        for _ in range(n):
            ref.cast_nowait(1)
        assert await ref.call("count", timeout=120) == n
        return n / (time.perf_counter() - started)


async def _main(backend: str, n: int) -> None:
    cases: list[tuple[str, type[otp.GenServer], tuple[Any, ...]]] = [
        ("GenServer", Counter, ()),
        ("StateMachine", Machine, ()),
        ("StateMachine+EventTimeout", Machine, (10.0,)),
    ]
    for label, cls, args in cases:
        best = max([await _rate(n, cls, *args) for _ in range(3)])
        print(f"{backend:8} {label:28} {best:>10,.0f} casts/s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.statem")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--backend", choices=["asyncio", "trio"], action="append")
    options = parser.parse_args()
    for backend in options.backend or ["asyncio", "trio"]:
        otp.run(_main, backend, options.n, backend=backend)


if __name__ == "__main__":
    main()
