"""The typing tests (tests/typing/check.py) as part of the suite, when the checkers are
installed (the ``typecheck`` extra; .ci/run runs the script itself after mypy)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _have_checkers() -> bool:
    beside = Path(sys.executable).parent / "basedpyright"
    has_pyright = beside.exists() or shutil.which("basedpyright") is not None
    return has_pyright and importlib.util.find_spec("mypy") is not None


@pytest.mark.timeout(300)
@pytest.mark.skipif(
    not _have_checkers(), reason="needs mypy and basedpyright (pip install -e '.[typecheck]')"
)
def test_user_programs_type_check_as_documented() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "typing" / "check.py")],
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "typing ok" in done.stdout
