"""The results table (rich) and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._core import BACKENDS, Ctx, RowResult, Stat, Unit, format_range, format_value
from ._scenarios import BY_KEY

PEER_ORDER = ("pykka", "fauxtp", "otpylib", "triotp")


def _cell(stat: Stat | None, unit: Unit) -> Text:
    if stat is None:
        return Text("-", style="dim")
    text = Text(format_value(stat.median, unit))
    text.append(f"\n{format_range(stat.lo, stat.hi, unit, stat.median)}", style="dim")
    return text


def _ratio(row: RowResult) -> Text:
    ratio = row.ratio
    if ratio is None:
        return Text("-", style="dim")
    style = ""
    if row.target is not None:
        style = "green" if ratio <= row.target else "red"
    return Text(f"{ratio:.2f}x", style=style)


def _target(row: RowResult) -> Text:
    if row.target is None or row.ratio is None:
        return Text("")
    ok = row.ratio <= row.target
    text = row.target_text
    scenario = BY_KEY.get(row.scenario)
    for spec in scenario.rows if scenario is not None else ():
        if spec.key == row.row:
            text = spec.target_text
    return Text(f"{text} {'✓' if ok else '✗'}", style="green" if ok else "red")


def _title(row: RowResult, meta: dict[str, Any]) -> str:
    """The scenario's current title (a saved run keeps working after titles change)."""
    scenario = BY_KEY.get(row.scenario)
    if scenario is None or row.backend not in BACKENDS:
        return row.title
    for spec in scenario.rows:
        if spec.key == row.row:
            ctx = Ctx(row.backend, float(meta.get("scale", 1.0)))
            return spec.render_title(ctx)
    return row.title


def _peer_columns(rows: list[RowResult]) -> list[str]:
    present = {name for row in rows for name in row.peers}
    ordered = [p for p in PEER_ORDER if p in present]
    return ordered + sorted(present - set(ordered))


def table(rows: list[RowResult], meta: dict[str, Any]) -> Table:
    peers = _peer_columns(rows)
    mode = "quick smoke run" if meta.get("quick") else "full run"
    title = (
        f"anyotp {meta.get('anyotp', '?')} ({meta.get('revision', '?')}) benchmarks ({mode}): "
        f"median of {meta.get('reps')} "
        f"(min-max); Python {meta.get('python')}, anyio {meta.get('anyio')}, "
        f"trio {meta.get('trio')}, {meta.get('cpus')} CPUs"
    )
    t = Table(title=title, show_lines=True, title_justify="left")
    t.add_column("scenario", no_wrap=True)
    t.add_column("backend")
    t.add_column("raw floor", justify="right")
    t.add_column("anyio", justify="right")
    t.add_column("anyotp", justify="right")
    t.add_column("ratio", justify="right")
    t.add_column("target", no_wrap=True)
    for name in peers:
        version = meta.get("peers", {}).get(name, "")
        header = name if not version else f"{name}\n{version.split(' ')[0]}"
        t.add_column(header, justify="right")
    reps = meta.get("reps")
    for row in rows:
        n = row.anyotp.n if row.anyotp is not None else reps
        cells: list[Text | str] = [
            _title(row, meta) if n == reps else f"{_title(row, meta)} (n={n})",
            row.backend,
            _cell(row.floor, row.unit),
            _cell(row.anyio, row.unit),
            _cell(row.anyotp, row.unit),
            _ratio(row),
            _target(row),
        ]
        for name in peers:
            if name in row.peers:
                cells.append(_cell(row.peers[name], row.unit))
            elif name in row.errors:
                cells.append(Text("error", style="yellow"))
            else:
                cells.append(Text("-", style="dim"))
        t.add_row(*cells)
    return t


def legend(rows: list[RowResult]) -> Table:
    """What the floor, anyio and anyotp columns measure, scenario by scenario."""
    t = Table(title="what each column measures", show_lines=False, title_justify="left")
    t.add_column("scenario")
    t.add_column("raw floor")
    t.add_column("anyio")
    t.add_column("anyotp")
    seen: set[str] = set()
    for row in rows:
        if row.scenario in seen or row.scenario not in BY_KEY:
            continue
        seen.add(row.scenario)
        s = BY_KEY[row.scenario]
        t.add_row(s.key, s.floor_text, s.anyio_text or "-", s.anyotp_text)
    return t


def print_report(console: Console, rows: list[RowResult], meta: dict[str, Any]) -> None:
    console.print(table(rows, meta))
    reps = meta.get("reps")
    if any(r.anyotp is not None and r.anyotp.n != reps for r in rows):
        console.print(
            "(n=3): median of 3 repetitions (the 100k-actor scenario, about 30 s each; "
            "--heavy-reps 5 for five)",
            markup=False,
        )
    console.print(
        "ratio = anyotp / raw floor (lower is better; for the casts ≤2x means throughput "
        "≥0.5x the floor); peers in their idiomatic form, pykka measured once (threads)",
        markup=False,
    )
    peers = meta.get("peers", {})
    if peers:
        console.print("peers: " + ", ".join(f"{name} {version}" for name, version in peers.items()))
    errors = {(row.backend, name): e for row in rows for name, e in row.errors.items()}
    for (backend, name), error in errors.items():
        console.print(f"[yellow]{name} on {backend} failed: {error}[/]")
    anchor = meta.get("erlang")
    if isinstance(anchor, dict):
        console.print(erlang_table(rows, anchor))
    elif isinstance(anchor, str):
        console.print(f"Erlang/OTP anchor skipped: {anchor}", markup=False)
    duration = meta.get("duration")
    if duration is not None:
        console.print(f"total time: {duration:.1f} s")


def erlang_table(rows: list[RowResult], anchor: dict[str, Any]) -> Table:
    """anyotp beside Erlang/OTP on the same machine (benchmarks/erlang/anchor.erl)."""
    from ._erlang import rows_against

    backends = sorted({r.backend for r in rows})
    t = Table(
        title=f"Erlang/OTP {anchor.get('otp_release', '?')} on the same machine "
        "(anyotp, multiple of the BEAM)",
        title_justify="left",
    )
    t.add_column("scenario")
    t.add_column("Erlang/OTP", justify="right")
    for backend in backends:
        t.add_column(f"anyotp {backend}", justify="right")
    for cells in rows_against(anchor, rows, backends):
        t.add_row(*cells)
    return t


def _md_cell(stat: Stat | None, unit: Unit) -> str:
    if stat is None:
        return "-"
    spread = format_range(stat.lo, stat.hi, unit, stat.median)
    return f"{format_value(stat.median, unit)} <small>({spread})</small>"


def markdown(rows: list[RowResult], meta: dict[str, Any]) -> str:
    """The run as Markdown tables (docs/performance.md): anyotp against the floors, then
    the peers, then the Erlang/OTP anchor when the run has one."""
    out = [
        "| scenario | backend | raw floor | anyio | anyotp | ratio | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        out.append(
            f"| {_title(row, meta)} | {row.backend} | {_md_cell(row.floor, row.unit)} | "
            f"{_md_cell(row.anyio, row.unit)} | {_md_cell(row.anyotp, row.unit)} | {ratio} | "
            f"{_target(row).plain} |"
        )
    peers = _peer_columns(rows)
    if peers:
        out += ["", "| scenario | backend | anyotp | " + " | ".join(peers) + " |"]
        out.append("| --- | --- | ---: | " + " | ".join("---:" for _ in peers) + " |")
        for row in rows:
            if not row.peers:
                continue
            cells = [_md_cell(row.peers.get(p), row.unit) for p in peers]
            out.append(
                f"| {_title(row, meta)} | {row.backend} | {_md_cell(row.anyotp, row.unit)} | "
                + " | ".join(cells)
                + " |"
            )
    anchor = meta.get("erlang")
    if isinstance(anchor, dict):
        from ._erlang import rows_against

        backends = sorted({r.backend for r in rows})
        heads = " | ".join(f"anyotp {b}" for b in backends)
        out += ["", f"| scenario | Erlang/OTP | {heads} |"]
        out.append("| --- | ---: | " + " | ".join("---:" for _ in backends) + " |")
        out += ["| " + " | ".join(cells) + " |" for cells in rows_against(anchor, rows, backends)]
    return "\n".join(out) + "\n"


def write_json(path: Path, rows: list[RowResult], meta: dict[str, Any]) -> None:
    data = {"meta": meta, "rows": [row.to_json() for row in rows]}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> tuple[list[RowResult], dict[str, Any]]:
    data = json.loads(path.read_text())
    return [RowResult.from_json(r) for r in data["rows"]], dict(data.get("meta", {}))
