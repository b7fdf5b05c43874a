"""Runs the scenarios: repetitions, interleaving, fresh interpreters, peers from other venvs."""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._core import BACKENDS, Backend, Ctx, Metrics, Peer, RowResult, Scenario, Stat
from ._scenarios import BY_KEY, find_variant, select, variants

ROOT = Path(__file__).resolve().parent.parent

#: Full runs use the sizes written in the scenarios; ``--quick`` shrinks them to this.
QUICK_SCALE = 0.01


@dataclass
class Options:
    backends: tuple[Backend, ...] = BACKENDS
    only: tuple[str, ...] = ()
    quick: bool = False
    reps: int = 5
    peers: bool = True
    peers_only: bool = False
    peer_pythons: tuple[str, ...] = ()
    #: Fresh-interpreter memory samples run this many at a time.
    jobs: int = 2
    #: Repetitions of the heavy scenarios (``Scenario.max_reps``); ``None``: their cap.
    heavy_reps: int | None = None

    @property
    def scale(self) -> float:
        return QUICK_SCALE if self.quick else 1.0

    @property
    def isolate(self) -> bool:
        # A smoke run keeps everything in-process (fast); its memory figures are rough.
        return not self.quick


Log = Callable[[str], None]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    return env


def run_sample_in_child(scenario: str, label: str, ctx: Ctx, python: str | None = None) -> Metrics:
    """One sample in a fresh interpreter (``python -m benchmarks --_sample ...``)."""
    spec = f"{scenario}|{label}|{ctx.backend}|{ctx.scale!r}"
    proc = subprocess.run(
        [python or sys.executable, "-m", "benchmarks", "--_sample", spec],
        env=_child_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        raise RuntimeError(f"sample {spec} failed:\n" + "\n".join(tail))
    lines = proc.stdout.strip().splitlines()
    result: Metrics = json.loads(lines[-1])
    return result


def sample_main(spec: str) -> None:
    """Entry point of ``--_sample``: run one sample and print its metrics as JSON."""
    scenario, label, backend, scale = spec.split("|")
    if backend not in BACKENDS:
        raise SystemExit(f"unknown backend {backend!r}")
    ctx = Ctx(backend, float(scale), fresh=True)
    gc.collect()
    metrics = find_variant(scenario, label)(ctx)
    sys.stdout.write(json.dumps(metrics) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown (100k objects): the parent only needs the line above.
    os._exit(0)


def _measure_scenario(
    scenario: Scenario,
    backend: Backend,
    opts: Options,
    shared: dict[tuple[str, str], dict[str, list[float]]],
    log: Log,
) -> list[RowResult]:
    ctx = Ctx(backend, opts.scale)
    todo = variants(scenario, peers=opts.peers, peers_only=opts.peers_only, backend=backend)
    if opts.peers_only and all(peer is None for _, _, peer in todo):
        return []  # nothing of interest here for the interpreter that merges us
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    errors: dict[str, str] = {}
    reused: set[str] = set()
    for label, _, peer in todo:
        if peer is not None and peer.backend_independent and (scenario.key, label) in shared:
            samples[label] = shared[(scenario.key, label)]
            reused.add(label)
    # Rotate the order every repetition so that drift hits every variant alike.
    reps = opts.reps
    if scenario.max_reps is not None:
        reps = opts.heavy_reps or min(reps, scenario.max_reps)
    plan = [
        (label, variant, peer)
        for rep in range(reps)
        for label, variant, peer in todo[rep % len(todo) :] + todo[: rep % len(todo)]
        if label not in reused
    ]

    spent: dict[str, float] = defaultdict(float)

    def timed_child(label: str) -> Metrics:
        t0 = time.perf_counter()
        try:
            return run_sample_in_child(scenario.key, label, ctx)
        finally:
            spent[label] += time.perf_counter() - t0

    def record(label: str, peer: Peer | None, outcome: Metrics | BaseException) -> None:
        if isinstance(outcome, BaseException):
            if peer is None:
                raise outcome
            if label not in errors:
                errors[label] = f"{type(outcome).__name__}: {outcome}"
                log(f"  [yellow]{label} failed on {backend}: {errors[label]}[/]")
            return
        for key, value in outcome.items():
            samples[label][key].append(value)

    if opts.isolate and scenario.isolate:
        # Each sample in its own interpreter; memory-only samples ``jobs`` at a time (timed
        # ones alone: two 100k-actor heaps side by side slow each other down twofold).
        jobs = max(1, opts.jobs) if scenario.parallel else 1
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [(label, peer, pool.submit(timed_child, label)) for label, _, peer in plan]
            for label, peer, future in futures:
                try:
                    record(label, peer, future.result())
                except Exception as exc:
                    record(label, peer, exc)
    else:
        for label, variant, peer in plan:
            if label in errors:
                continue
            gc.collect()
            t0 = time.perf_counter()
            try:
                outcome: Metrics | BaseException = variant(ctx)
            except Exception as exc:
                outcome = exc
            spent[label] += time.perf_counter() - t0
            record(label, peer, outcome)
    if spent:
        detail = ", ".join(f"{k.removeprefix('peer:')} {v:.1f}" for k, v in spent.items())
        log(f"[dim]  {backend} {scenario.key}: {detail} s[/]")
    for label, _, peer in todo:
        if peer is not None and peer.backend_independent and label not in errors:
            shared[(scenario.key, label)] = samples[label]

    rows = []
    for spec in scenario.rows:
        row = RowResult(
            scenario=scenario.key,
            row=spec.key,
            title=spec.render_title(ctx),
            backend=backend,
            unit=spec.unit,
            target=spec.target,
            target_text=spec.target_text,
        )
        for label in samples:
            values = samples[label].get(spec.key)
            if not values:
                continue
            stat = Stat.of(values)
            if label == "floor":
                row.floor = stat
            elif label == "anyio":
                row.anyio = stat
            elif label == "anyotp":
                row.anyotp = stat
            else:
                row.peers[label.removeprefix("peer:")] = stat
        row.errors = {k.removeprefix("peer:"): v for k, v in errors.items()}
        rows.append(row)
    return rows


def run(opts: Options, log: Log) -> list[RowResult]:
    """Every selected scenario on every selected backend, in this interpreter."""
    scenarios = select(list(opts.only))
    shared: dict[tuple[str, str], dict[str, list[float]]] = {}
    results: list[RowResult] = []
    for backend in opts.backends:
        for scenario in scenarios:
            t0 = time.perf_counter()
            rows = _measure_scenario(scenario, backend, opts, shared, log)
            results.extend(rows)
            log(f"[dim]{backend:<8} {scenario.key:<15} {time.perf_counter() - t0:6.1f} s[/]")
    return results


# --------------------------------------------------------------------------- peer venvs


def run_peer_python(python: str, opts: Options, log: Log) -> dict[str, Any]:
    """Run the installed peers in another interpreter (``--peers-only``) and load its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peers.json"
        cmd = [python, "-m", "benchmarks", "--peers-only", "--json", str(out)]
        cmd += ["--reps", str(opts.reps), "--jobs", str(opts.jobs)]
        if opts.heavy_reps:
            cmd += ["--heavy-reps", str(opts.heavy_reps)]
        if opts.quick:
            cmd.append("--quick")
        for backend in opts.backends:
            cmd += ["--backend", backend]
        for only in opts.only:
            cmd += ["--only", only]
        log(f"[dim]peers in {python} ...[/]")
        proc = subprocess.run(cmd, env=_child_env(), cwd=ROOT, check=False, timeout=3600)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{python} --peers-only failed (exit {proc.returncode})")
        data: dict[str, Any] = json.loads(out.read_text())
        return data


def merge_peers(rows: list[RowResult], meta: dict[str, Any], other: dict[str, Any]) -> None:
    """Add the peers measured by another interpreter to ``rows`` (``--merge`` / venvs).

    A peer already measured here is kept; a peer from a different Python is labelled with
    that Python's version. The other run's own floor is kept beside it for normalising.
    """
    other_meta = other.get("meta", {})
    other_python = str(other_meta.get("python", ""))
    same_python = other_python == meta.get("python")
    by_key = {(r.scenario, r.row, r.backend): r for r in rows}
    renamed: dict[str, str] = {}
    for data in other.get("rows", []):
        theirs = RowResult.from_json(data)
        mine = by_key.get((theirs.scenario, theirs.row, theirs.backend))
        if mine is None:
            continue
        for name, stat in theirs.peers.items():
            label = name if same_python else f"{name} (py{'.'.join(other_python.split('.')[:2])})"
            if label in mine.peers:
                continue
            renamed[name] = label
            mine.peers[label] = stat
            if theirs.floor is not None:
                mine.peer_floors[label] = theirs.floor
        for name, error in theirs.errors.items():
            mine.errors.setdefault(renamed.get(name, name), error)
    versions = meta.setdefault("peers", {})
    for name, version in other_meta.get("peers", {}).items():
        renamed_to = renamed.get(name)
        if renamed_to is None or renamed_to in versions:
            continue
        versions[renamed_to] = (
            f"{version} (Python {other_python}, trio {other_meta.get('trio', '?')}, "
            "separate virtualenv)"
        )


# --------------------------------------------------------------------------- metadata


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    """The commit measured (``+dirty`` when the work tree differs), or ``"?"``;
    ``$BENCH_REVISION`` overrides it (a run from an exported copy)."""
    if os.environ.get("BENCH_REVISION"):
        return os.environ["BENCH_REVISION"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "otp"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "?"
    if head.returncode != 0:
        return "?"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def metadata(opts: Options) -> dict[str, Any]:
    peers: dict[str, str] = {}
    seen: set[str] = set()
    for scenario in select(list(opts.only)):
        for peer in scenario.peers:
            if peer.name in seen or not (opts.peers or opts.peers_only):
                continue
            seen.add(peer.name)
            if peer.installed() and set(peer.backends) & set(opts.backends):
                peers[peer.name] = peer.version()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "anyotp": _version("anyotp"),
        "revision": _git_revision(),
        "anyio": _version("anyio"),
        "trio": _version("trio"),
        "peers": peers,
        "reps": opts.reps,
        "quick": opts.quick,
        "scale": opts.scale,
        "backends": list(opts.backends),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


__all__ = ["BY_KEY", "Options", "merge_peers", "metadata", "run", "run_peer_python", "sample_main"]
