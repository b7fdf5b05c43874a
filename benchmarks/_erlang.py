"""The Erlang/OTP anchor: the same scenarios on the BEAM, run when ``erl`` is on PATH.

``benchmarks/erlang/anchor.erl`` is compiled into a temporary folder and run once; it prints
one JSON object (seconds per call, cast and spawn+stop, bytes per idle process, the start and
stop of N gen_servers under one ``simple_one_for_one`` supervisor). The report then shows
anyotp's figures from the same run beside it, as multiples of the BEAM's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ._core import RowResult, Unit, format_value

_SOURCE = Path(__file__).with_name("erlang") / "anchor.erl"

#: (anchor key, anyotp row, what is compared, unit)
PAIRS: tuple[tuple[str, str, str, Unit], ...] = (
    ("call", "call", "local call round trip (gen_server:call)", "s/op"),
    ("cast", "cast_nowait", "cast, per message (gen_server:cast vs cast_nowait)", "s/op"),
    ("cast", "cast", "cast, per message (gen_server:cast vs await cast)", "s/op"),
    ("spawn_stop", "spawn_stop", "spawn + stop, per process", "s/op"),
    ("idle_bytes", "idle_10k", "memory per idle process", "B"),
    ("sup_start_100k", "sup_start", "100k under one supervisor: start", "s"),
    ("sup_stop_100k", "sup_stop", "100k under one supervisor: stop", "s"),
)


def available() -> bool:
    return shutil.which("erl") is not None and shutil.which("erlc") is not None


def run_anchor(quick: bool, timeout: float = 300.0) -> dict[str, Any]:
    """Compile and run the anchor; its JSON result (raises on any failure)."""
    with tempfile.TemporaryDirectory(prefix="otp-erl-") as tmp:
        subprocess.run(
            ["erlc", "-o", tmp, str(_SOURCE)], check=True, capture_output=True, timeout=60
        )
        argv = ["erl", "+P", "2000000", "-noshell", "-pa", tmp, "-run", "anchor", "main"]
        if quick:
            argv.append("quick")
        out = subprocess.run(
            [*argv, "-s", "init", "stop"],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp,  # a crash dump, if any, stays in the temporary folder
        )
    line = next(ln for ln in reversed(out.stdout.splitlines()) if ln.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    return result


def rows_against(
    anchor: dict[str, Any], rows: list[RowResult], backends: list[str]
) -> list[list[str]]:
    """Table rows: what, the BEAM's figure, then anyotp's per backend with the multiple."""
    by_key = {(r.row, r.backend): r for r in rows if r.anyotp is not None}
    table: list[list[str]] = []
    for key, row, what, unit in PAIRS:
        beam = anchor.get(key)
        if not isinstance(beam, (int, float)) or beam <= 0:
            continue
        if int(anchor.get("scale", 1)) != 1 and unit != "s/op":
            continue  # totals and memory of a quick run are for a tiny N: not comparable
        cells = [what, format_value(float(beam), unit)]
        found = False
        for backend in backends:
            result = by_key.get((row, backend))
            if result is None or result.anyotp is None:
                cells.append("-")
                continue
            found = True
            value = result.anyotp.median
            cells.append(f"{format_value(value, result.unit)} ({value / beam:.1f}x)")
        if found:
            table.append(cells)
    return table
