"""Ctrl-C (SIGINT) and SIGTERM: otp.run shuts the node down in order, on both backends.

Real subprocesses: a program started with otp.run prints "ready" once its tree is up, gets
the signal, and must run every ``terminate`` (in reverse start order) before it exits with
the status the docs promise (docs/core.md, "Signals").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

BACKENDS = ["asyncio", "trio"]
ROOT = Path(__file__).resolve().parent.parent

PROGRAM = textwrap.dedent(
    """
    import sys

    import anyio

    import otp


    class Part(otp.GenServer):
        async def init(self, label: str) -> None:
            self.label = label

        async def terminate(self, reason) -> None:
            await anyio.sleep(0.01)  # an async terminate: it really runs, not just starts
            print(f"terminate {self.label} {reason}", flush=True)


    async def main() -> None:
        async with otp.Node() as node:
            parts = [otp.worker(Part, "a", id="a"), otp.worker(Part, "b", id="b")]
            await node.start(otp.supervisor("app", parts))
            await node.spawn(Part, "c")
            print("ready", flush=True)
            await anyio.sleep_forever()


    try:
        otp.run(main, backend=sys.argv[1], handle_signals=sys.argv[2] == "on")
    finally:
        print("run returned", flush=True)
    """
)


def _start(tmp_path: Path, backend: str, handle: str = "on") -> subprocess.Popen[str]:
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(script), backend, handle],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the tree is up (or the program died)
    assert line == "ready\n", line + process.communicate(timeout=30)[1]
    return process


def _finish(process: subprocess.Popen[str]) -> tuple[int, list[str], str]:
    out, err = process.communicate(timeout=30)
    return process.returncode, out.splitlines(), err


ORDERLY = ["terminate c shutdown", "terminate b shutdown", "terminate a shutdown", "run returned"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_shuts_the_node_down_in_order(tmp_path: Path, backend: str) -> None:
    process = _start(tmp_path, backend)
    process.send_signal(signal.SIGINT)
    status, lines, err = _finish(process)
    assert lines == ORDERLY, err
    # KeyboardInterrupt, uncaught: Python ends the process by SIGINT (a shell shows 130).
    assert status in (-signal.SIGINT, 130), err
    assert err.strip().endswith("KeyboardInterrupt"), err
    assert "ExceptionGroup" not in err, err


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_shuts_the_node_down_in_order_and_exits_0(tmp_path: Path, backend: str) -> None:
    process = _start(tmp_path, backend)
    process.send_signal(signal.SIGTERM)
    status, lines, err = _finish(process)
    assert lines == ORDERLY, err
    assert status == 0, err
    assert err == "", err


def test_sigterm_handling_can_be_turned_off(tmp_path: Path) -> None:
    process = _start(tmp_path, "asyncio", handle="off")
    process.send_signal(signal.SIGTERM)
    status, lines, _ = _finish(process)
    assert status == -signal.SIGTERM  # the default disposition: no terminate ran
    assert lines == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_exits_130_without_a_traceback_on_ctrl_c(backend: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "otp", "demo", "--plain", "--backend", backend, "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the first snapshot: the tree is running
    assert line.startswith("---"), line + process.communicate(timeout=30)[1]
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err, err
    assert "interrupted" in out + err
