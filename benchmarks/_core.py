"""Shared types of the benchmark suite: scenarios, variants, statistics and units.

Pure standard library on purpose: the peer runner imports this module in other virtualenvs
(triotp pins an old trio) where neither anyotp nor anyio is installed.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import importlib.util
import json
import os
import statistics
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

Backend = Literal["asyncio", "trio"]
BACKENDS: tuple[Backend, ...] = ("asyncio", "trio")

#: What one sample of one variant measured, keyed by row (``RowSpec.key``).
Metrics = dict[str, float]

#: ``s/op``: seconds per operation; ``s``: seconds in total; ``B``: bytes per actor.
Unit = Literal["s/op", "s", "B"]


@dataclass(frozen=True)
class Ctx:
    """What a variant is told: the backend to run on and how big to make the run."""

    backend: Backend
    scale: float
    #: This sample runs in a fresh interpreter of its own (``--_sample``).
    fresh: bool = False

    def n(self, full: int, minimum: int = 10) -> int:
        """The operation count for a run whose full size is ``full``."""
        return max(minimum, int(full * self.scale))


#: One variant of a scenario (raw floor, anyotp, a peer): runs its own event loop and
#: returns one sample of every row it measures.
Variant = Callable[[Ctx], Metrics]


@dataclass(frozen=True)
class RowSpec:
    """One line of the results table."""

    key: str
    title: str
    unit: Unit
    #: The largest acceptable ``anyotp / floor`` ratio, if the issue sets one.
    target: float | None = None
    target_text: str = ""
    #: Substituted for ``{n}`` in the title: the full-size count, scaled like the run (and
    #: never below ``n_min``, as the variants do).
    n_full: int = 0
    n_min: int = 10

    def render_title(self, ctx: Ctx) -> str:
        if self.n_full:
            return self.title.format(n=f"{ctx.n(self.n_full, self.n_min):,}")
        return self.title


@dataclass(frozen=True)
class Peer:
    """Another actor library measured in its idiomatic form, when it is installed."""

    name: str
    module: str
    dist: str
    variant: Variant
    backends: tuple[Backend, ...] = BACKENDS
    #: Thread-based peers ignore the event loop: measure once, show on every backend.
    backend_independent: bool = False

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"


@dataclass(frozen=True)
class Scenario:
    key: str
    summary: str
    rows: tuple[RowSpec, ...]
    floor: Variant
    anyotp: Variant
    anyio: Variant | None = None
    peers: tuple[Peer, ...] = ()
    #: Run every sample in a fresh interpreter (memory and 100k-actor scenarios).
    isolate: bool = False
    #: Fresh-interpreter samples may run two at a time (memory only: no timing).
    parallel: bool = False
    #: At most this many repetitions unless ``--heavy-reps`` says otherwise.
    max_reps: int | None = None
    floor_text: str = ""
    anyio_text: str = ""
    anyotp_text: str = ""


@dataclass
class Stat:
    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Stat:
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    def to_json(self) -> dict[str, float]:
        return {"median": self.median, "min": self.lo, "max": self.hi, "n": self.n}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stat:
        return cls(data["median"], data["min"], data["max"], int(data["n"]))


@dataclass
class RowResult:
    scenario: str
    row: str
    title: str
    backend: str
    unit: Unit
    floor: Stat | None = None
    anyio: Stat | None = None
    anyotp: Stat | None = None
    target: float | None = None
    target_text: str = ""
    peers: dict[str, Stat] = field(default_factory=dict)
    #: A peer run in another interpreter: the floor measured there, for normalising.
    peer_floors: dict[str, Stat] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.anyotp is None or not self.floor.median:
            return None
        return self.anyotp.median / self.floor.median

    def to_json(self) -> dict[str, Any]:
        def stat(s: Stat | None) -> dict[str, float] | None:
            return None if s is None else s.to_json()

        return {
            "scenario": self.scenario,
            "row": self.row,
            "title": self.title,
            "backend": self.backend,
            "unit": self.unit,
            "floor": stat(self.floor),
            "anyio": stat(self.anyio),
            "anyotp": stat(self.anyotp),
            "ratio": self.ratio,
            "target": self.target,
            "target_text": self.target_text,
            "peers": {k: v.to_json() for k, v in self.peers.items()},
            "peer_floors": {k: v.to_json() for k, v in self.peer_floors.items()},
            "errors": self.errors,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RowResult:
        def stat(s: dict[str, Any] | None) -> Stat | None:
            return None if s is None else Stat.from_json(s)

        return cls(
            scenario=data["scenario"],
            row=data["row"],
            title=data["title"],
            backend=data["backend"],
            unit=data["unit"],
            floor=stat(data.get("floor")),
            anyio=stat(data.get("anyio")),
            anyotp=stat(data.get("anyotp")),
            target=data.get("target"),
            target_text=data.get("target_text", ""),
            peers={k: Stat.from_json(v) for k, v in data.get("peers", {}).items()},
            peer_floors={k: Stat.from_json(v) for k, v in data.get("peer_floors", {}).items()},
            errors=dict(data.get("errors", {})),
        )


# --------------------------------------------------------------------------- units


def _scale(value: float, unit: Unit) -> tuple[float, str, int]:
    """The divisor, suffix and decimals that suit ``value``."""
    if unit == "B":
        if value >= 1024 * 1024:
            return 1024.0 * 1024.0, "MiB", 1
        if value >= 1024:
            return 1024.0, "KiB", 2
        return 1.0, "B", 0
    if value >= 1.0:
        return 1.0, "s", 2
    if value >= 1e-3:
        return 1e-3, "ms", 2
    if value >= 1e-6:
        return 1e-6, "µs", 2
    return 1e-9, "ns", 0


def format_range(lo: float, hi: float, unit: Unit, like: float) -> str:
    """``lo-hi`` in the unit chosen for ``like`` (the median), without the suffix."""
    div, _, digits = _scale(like, unit)
    return f"{lo / div:.{digits}f}-{hi / div:.{digits}f}"


def format_value(value: float, unit: Unit) -> str:
    div, suffix, digits = _scale(value, unit)
    return f"{value / div:.{digits}f} {suffix}"


# --------------------------------------------------------------------------- running


def run_backend(backend: Backend, main: Callable[[], Coroutine[Any, Any, Metrics]]) -> Metrics:
    """Run ``main`` on the backend's own event loop (not through anyio)."""
    if backend == "asyncio":
        return asyncio.run(main())
    import trio

    result: Metrics = trio.run(main)
    return result


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux), else ru_maxrss."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def settle_memory() -> int:
    """Collect garbage twice and return the RSS afterwards."""
    gc.collect()
    gc.collect()
    return rss_bytes()


def memory_sample(ctx: Ctx | None, key: str, rss: float) -> Metrics:
    """Report a memory sample. In a fresh interpreter, print it and exit at once: tearing
    10,000 idle actors down would cost more than starting them and measures nothing."""
    metrics = {key: rss}
    if ctx is not None and ctx.fresh:
        sys.stdout.write(json.dumps(metrics) + "\n")
        sys.stdout.flush()
        os._exit(0)
    return metrics
