"""Hot-path cost in instructions, repeatable on a loaded machine (valgrind's callgrind).

Wall-clock times on a shared machine move by ±30 %; instruction counts move by well under
1 %. Each scenario runs in a fresh interpreter under ``valgrind --tool=callgrind`` twice,
with ``n`` and ``2n`` operations; the difference divided by the extra operations is the
cost of one operation, with start-up, imports and warm-up cancelled out::

    python -m benchmarks.callgrind                      # every scenario, asyncio
    python -m benchmarks.callgrind --backend trio --only cast_nowait,call -n 1000

It prints instructions per operation for anyotp and its floor (the same variants as
``python -m benchmarks``: the deque mailbox, the backend's own request/reply) and their
ratio. Needs ``valgrind`` on the PATH; a run of everything takes a few minutes.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from ._core import Ctx

#: scenario -> (the floor's variant, anyotp's variant): module, function, arguments, and the
#: full-size count the variant scales (``Ctx.n``). Each does ``n`` operations plus a tenth
#: of them as warm-up.
_ONE_WAY = 40_000
_CHECKPOINTED = 20_000


def _variant(kind: str, scenario: str) -> tuple[Callable[[Ctx], Any], int]:
    from . import _anyotp, _floors

    module: Any = _floors if kind == "floor" else _anyotp
    if scenario == "cast_nowait":
        return module.one_way(1, False, "x"), _ONE_WAY
    if scenario == "cast":
        return module.one_way(1, True, "x"), _CHECKPOINTED
    if scenario in ("call", "call_nt"):
        if kind == "floor":
            return module.call, 10_000
        return _anyotp_call(None if scenario == "call_nt" else 5.0), 10_000
    raise SystemExit(f"unknown scenario {scenario!r}")


def _anyotp_call(timeout: float | None) -> Callable[[Ctx], Any]:
    # benchmarks._anyotp.call measures both timeouts in one run; here one at a time.
    def variant(ctx: Ctx) -> Any:
        import otp

        from ._anyotp import Echo

        n = ctx.n(10_000)
        warm = max(10, n // 10)

        async def main() -> None:
            async with otp.Node() as node:
                ref = await node.spawn(Echo)
                call = ref.call
                for i in range(warm + n):
                    await call(i, timeout)

        otp.run(main, backend=ctx.backend)

    return variant


SCENARIOS = ("cast_nowait", "cast", "call", "call_nt")


def _inner(kind: str, scenario: str, n: int, backend: str) -> None:
    import math

    import otp._backends

    # Under valgrind everything runs ~50x slower, so the 1 ms slice of the scheduler budget
    # would make `await cast` yield every few messages instead of every 64 (the floor's
    # rate): count with the operations budget alone.
    otp._backends.BUDGET_SLICE = math.inf  # type: ignore[misc]
    variant, full = _variant(kind, scenario)
    # Everything imported so far (tens of thousands of objects) out of the collector's
    # sight: otherwise whether a full collection falls into the run of n or of 2n moves the
    # count by thousands of instructions per operation. The young collections of what the
    # run itself allocates are still counted, for the floor and anyotp alike.
    gc.collect()
    gc.freeze()
    variant(Ctx(backend, n / full))  # type: ignore[arg-type]


def _instructions(kind: str, scenario: str, n: int, backend: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.callgrind",
            "--_inner",
            kind,
            scenario,
            str(n),
            backend,
        ]
        # A fixed hash seed: set and dict orders (imports included) then do not move the
        # counts from one run to the next.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        with open(out) as f:
            text = f.read()
    found = re.search(r"^summary:\s*(\d+)", text, re.M) or re.search(
        r"^totals:\s*(\d+)", text, re.M
    )
    if found is None:  # pragma: no cover - valgrind always writes one
        raise RuntimeError("no totals in the callgrind output")
    return int(found.group(1))


def per_op(kind: str, scenario: str, n: int, backend: str) -> float:
    """Instructions of one operation: the difference between runs of ``n`` and ``2n``."""
    low = _instructions(kind, scenario, n, backend)
    high = _instructions(kind, scenario, 2 * n, backend)
    ops = (2 * n + max(10, 2 * n // 10)) - (n + max(10, n // 10))
    return (high - low) / ops


def _compile() -> None:
    # Every run must find the same bytecode caches: a run that compiles the modules it
    # imports costs millions of instructions more than one that loads them.
    import compileall

    import otp

    for package in (os.path.dirname(otp.__file__), os.path.dirname(__file__)):
        compileall.compile_dir(package, quiet=2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.callgrind", description=__doc__)
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument(
        "-n", type=int, default=0, help="operations in the smaller run (default 5000, call 1000)"
    )
    parser.add_argument("--_inner", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._inner:
        kind, scenario, n, backend = args._inner
        _inner(kind, scenario, int(n), backend)
        return
    _compile()
    _inner("floor", "cast_nowait", 10, args.backend)  # anything imported at run time, too
    print(f"{'scenario':<12} {'floor':>10} {'anyotp':>10} {'ratio':>7}  ({args.backend}, instr/op)")
    for scenario in args.only.split(","):
        n = args.n or (1000 if scenario.startswith("call") else 5000)
        floor = per_op("floor", scenario, n, args.backend)
        ours = per_op("anyotp", scenario, n, args.backend)
        print(f"{scenario:<12} {floor:>10,.0f} {ours:>10,.0f} {ours / floor:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
