"""Type-check user programs with mypy --strict and pyright strict (basedpyright).

* ``tests/typing/pass_*.py`` and ``examples/*.py`` must be clean under both checkers; the
  ``pass_`` files pin what must be inferred with ``assert_type``.
* ``tests/typing/fail_*.py`` must fail: every line marked
  ``# expect: mypy=CODE pyright=RULE`` (at its end, or on a comment line of its own just
  above it) must get an error with that mypy error code and that pyright rule, and no
  unmarked line may get one. The files carry no ``# type: ignore``.

Run ``python tests/typing/check.py`` from any directory (CI: ``.ci/run``; the test suite:
tests/test_typing.py). Needs the ``typecheck`` extra (mypy and basedpyright). Exit status 0
when everything holds, 1 otherwise (each mismatch is printed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "typing"
CONFIG = HERE / "pyrightconfig.json"

EXPECT = re.compile(r"#\s*expect:(?P<spec>(?:\s+(?:mypy|pyright)=\S+)+)\s*$")
MYPY_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z0-9-]+)\]$")

Found = dict[tuple[str, int], set[str]]


def clean_files() -> list[Path]:
    return sorted(HERE.glob("pass_*.py")) + sorted((ROOT / "examples").glob("*.py"))


def failing_files() -> list[Path]:
    return sorted(HERE.glob("fail_*.py"))


def expectations(files: list[Path]) -> dict[str, Found]:
    """``{"mypy": {(file, line): codes}, "pyright": {...}}`` from the ``# expect:`` marks."""
    wanted: dict[str, Found] = {"mypy": {}, "pyright": {}}
    for path in files:
        text = path.read_text()
        if "type: ignore" in text:
            raise SystemExit(f"{path}: must-fail files carry no `type: ignore`")
        for number, line in enumerate(text.splitlines(), 1):
            match = EXPECT.search(line)
            if match is None:
                continue
            # A comment line of its own is about the next line.
            target = number + 1 if line.lstrip().startswith("#") else number
            for item in match["spec"].split():
                checker, _, code = item.partition("=")
                if checker not in wanted or not code:
                    raise SystemExit(f"{path}:{number}: bad expectation {item!r}")
                wanted[checker].setdefault((rel(path), target), set()).add(code)
    return wanted


def rel(path: Path | str) -> str:
    return Path(path).resolve().relative_to(ROOT).as_posix()


def env() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [environment.get("PYTHONPATH")])]
    )
    return environment


def run_mypy(files: list[Path]) -> Found:
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--no-error-summary",
        "--show-error-codes",
        "--no-color-output",
        "--no-pretty",
        *map(str, files),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"mypy failed to run:\n{done.stdout}{done.stderr}")
    found: Found = defaultdict(set)
    for line in done.stdout.splitlines():
        match = MYPY_LINE.match(line)
        if match is not None:
            found[(rel(ROOT / match["file"]), int(match["line"]))].add(match["code"])
        elif ": error:" in line:
            found[(line.split(":", 1)[0], 0)].add(line)
    return found


def pyright_command() -> list[str]:
    beside = Path(sys.executable).parent / "basedpyright"
    found = str(beside) if beside.exists() else shutil.which("basedpyright")
    if found is None:
        raise SystemExit("basedpyright is missing: pip install -e '.[typecheck]'")
    return [found]


def run_pyright(files: list[Path]) -> Found:
    command = [
        *pyright_command(),
        "--project",
        str(CONFIG),
        "--pythonpath",
        sys.executable,
        "--outputjson",
        *map(str, files),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"pyright failed to run:\n{done.stdout}{done.stderr}") from None
    found: Found = defaultdict(set)
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] != "error":
            continue
        where = (rel(diagnostic["file"]), diagnostic["range"]["start"]["line"] + 1)
        found[where].add(diagnostic.get("rule") or diagnostic["message"])
    return found


def compare(checker: str, found: Found, wanted: Found, clean: set[str]) -> list[str]:
    problems = []
    for (file, line), codes in sorted(found.items()):
        if file in clean or (file, line) not in wanted:
            problems.append(f"{checker}: {file}:{line}: unexpected error {sorted(codes)}")
    for (file, line), codes in sorted(wanted.items()):
        missing = codes - found.get((file, line), set())
        if missing:
            got = sorted(found.get((file, line), set()))
            problems.append(f"{checker}: {file}:{line}: expected {sorted(missing)}, got {got}")
    return problems


def main() -> int:
    clean, failing = clean_files(), failing_files()
    wanted = expectations(failing)
    clean_names = {rel(path) for path in clean}
    files = clean + failing
    problems = compare("mypy", run_mypy(files), wanted["mypy"], clean_names)
    problems += compare("pyright", run_pyright(files), wanted["pyright"], clean_names)
    for problem in problems:
        print(problem)
    marks = sum(len(found) for found in wanted.values())
    status = "FAILED" if problems else "ok"
    print(
        f"typing {status}: {len(clean)} files clean and {marks} expected errors in "
        f"{len(failing)} files, under mypy --strict and pyright strict"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
