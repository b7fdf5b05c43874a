"""``python -m benchmarks``: every scenario on asyncio and trio, floors, anyotp and peers.

Examples::

    python -m benchmarks                      # full run, a few minutes on 2 cores
    python -m benchmarks --quick              # smoke run (CI), a few seconds
    python -m benchmarks --only call,cast --backend trio --json out.json
    python -m benchmarks --peer-python /tmp/vtriotp/bin/python   # triotp from its own venv
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import time
from pathlib import Path
from typing import Any

from ._core import BACKENDS, RowResult


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="anyotp against the raw floor of each backend and against Python peers.",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 3 repetitions")
    p.add_argument("--json", type=Path, metavar="FILE", help="also save the results as JSON")
    p.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="run on this backend only (repeatable; default: both)",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="SCENARIO",
        help="run these scenarios only (comma-separated or repeated; prefixes match)",
    )
    p.add_argument("--reps", type=int, help="repetitions per variant (default 5, quick 3)")
    p.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    p.add_argument(
        "--no-erlang",
        action="store_true",
        help="skip the Erlang/OTP anchor (run by default when erl is on PATH)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="memory samples (each in a fresh interpreter) run this many at a time (default 2)",
    )
    p.add_argument(
        "--heavy-reps",
        type=int,
        metavar="N",
        help="repetitions of the 100k-actor scenario (default 3: each takes ~30 s)",
    )
    p.add_argument(
        "--peer-python",
        action="append",
        default=[],
        metavar="PYTHON",
        help="also run the peers installed in this interpreter's venv and merge them "
        "(e.g. triotp, which pins an old trio)",
    )
    p.add_argument(
        "--merge",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="merge the peers from a JSON file written by --peers-only --json",
    )
    p.add_argument("--render", type=Path, metavar="FILE", help="print the table of a saved JSON")
    p.add_argument(
        "--markdown",
        type=Path,
        metavar="FILE",
        help="print a saved JSON's tables as Markdown (as in docs/performance.md)",
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--width", type=int, help="table width (default: the terminal's, or 200)")
    p.add_argument("--peers-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_sample", metavar="SPEC", help=argparse.SUPPRESS)
    return p


def _console(width: int | None) -> Any:
    from rich.console import Console

    if width is None and not sys.stdout.isatty():
        width = 200
    return Console(width=width, highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    if args._sample:
        from ._harness import sample_main

        sample_main(args._sample)
        return 0

    if args.list:
        from ._scenarios import SCENARIOS

        for s in SCENARIOS:
            print(f"{s.key:<15} {s.summary}")
        return 0

    if args.markdown:
        from ._report import markdown, read_json

        saved_rows, saved_meta = read_json(args.markdown)
        print(markdown(saved_rows, saved_meta), end="")
        return 0

    if args.render:
        from ._report import print_report, read_json

        saved_rows, saved_meta = read_json(args.render)
        print_report(_console(args.width), saved_rows, saved_meta)
        return 0

    from ._harness import Options, merge_peers, metadata, run, run_peer_python

    backends = tuple(args.backend) if args.backend else BACKENDS
    if "trio" in backends and importlib.util.find_spec("trio") is None:
        if args.backend:
            raise SystemExit("--backend trio needs trio: pip install trio")
        print("trio is not installed: running on asyncio only", file=sys.stderr)
        backends = tuple(b for b in backends if b != "trio")
    opts = Options(
        backends=backends,
        only=tuple(args.only or ()),
        quick=args.quick,
        reps=args.reps or (3 if args.quick else 5),
        peers=not args.no_peers,
        peers_only=args.peers_only,
        peer_pythons=tuple(args.peer_python),
        jobs=args.jobs,
        heavy_reps=args.heavy_reps,
    )
    if opts.reps < 1:
        raise SystemExit("--reps must be at least 1")

    if opts.peers_only:
        # In a peer's own virtualenv: rich and anyotp may be missing; keep to the stdlib.
        def plain_log(message: str) -> None:
            print(re.sub(r"\[/?[a-z ]*\]", "", message), file=sys.stderr)

        return _peers_only(opts, args.json, plain_log)

    console = _console(args.width)
    err = _console(args.width)
    err.file = sys.stderr

    def log(message: str) -> None:
        err.print(message)

    t0 = time.perf_counter()
    meta = metadata(opts)
    rows: list[RowResult] = run(opts, log)
    if opts.peers:
        for python in opts.peer_pythons:
            try:
                merge_peers(rows, meta, run_peer_python(python, opts, log))
            except Exception as exc:  # a peer venv must never sink the run
                log(f"[yellow]peers from {python} skipped: {exc}[/]")
        for path in args.merge:
            from ._report import read_json

            other_rows, other_meta = read_json(path)
            merge_peers(rows, meta, {"meta": other_meta, "rows": [r.to_json() for r in other_rows]})
    if not args.no_erlang and not args.only:
        _erlang_anchor(meta, opts.quick, log)
    meta["duration"] = time.perf_counter() - t0

    from ._report import legend, print_report, write_json

    print_report(console, rows, meta)
    if not opts.quick:
        console.print(legend(rows))
    if args.json:
        write_json(args.json, rows, meta)
        console.print(f"saved {args.json}")
    return 0


def _erlang_anchor(meta: dict[str, Any], quick: bool, log: Any) -> None:
    """Run benchmarks/erlang/anchor.erl when erl exists; its figures go into ``meta``."""
    from ._erlang import available, run_anchor

    if not available():
        meta["erlang"] = "erl/erlc not on PATH"
        return
    log("Erlang/OTP anchor (benchmarks/erlang/anchor.erl)...")
    try:
        meta["erlang"] = run_anchor(quick)
    except Exception as exc:  # the anchor must never sink the run
        meta["erlang"] = f"{type(exc).__name__}: {exc}"


def _peers_only(opts: Any, json_path: Path | None, log: Any) -> int:
    import json

    from ._harness import metadata, run

    t0 = time.perf_counter()
    meta = metadata(opts)
    rows = run(opts, log)
    meta["duration"] = time.perf_counter() - t0
    data = {"meta": meta, "rows": [r.to_json() for r in rows]}
    if json_path is not None:
        json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
