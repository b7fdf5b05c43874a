"""Every example runs on its own and prints what it promises; so does `python -m otp demo`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Lines (or fragments) each example must print: the story it tells.
EXPECTED: dict[str, list[str]] = {
    "actor_basic.py": [
        "balance = 175",
        "caller got ActorExited, caused by ValueError(",
        "alice alive? False; whereis('alice') -> None",
        "[auditor] Down: the account exited with ValueError(",
        "dead letters so far: 1",
        "[account] terminate('normal')",
        "node closed: every actor has stopped",
    ],
    "cluster_shards.py": [
        "a second coordinator was refused: NameTaken",
        "the coordinator answers: pong",
        "6 shards in the group",
        "after one shard left, only its keys moved: True",
        "multi_call: 1 replies, bad nodes []",
        "alice's worker remembers her: True",
    ],
    "worker_pool.py": [
        "running 16 jobs on 4 workers: ['pool.0', 'pool.1', 'pool.2', 'pool.3']",
        "job 13: its worker crashed (unlucky job 13); retrying",
        "job 13 -> 169 by pool.",
        "all 16 jobs done in",
        "workers replaced by the supervisor: ['pool.",
    ],
    "event_pipeline.py": [
        "#1 pipeline.enriched.kitchen     20.5 C  (average so far 20.50)",
        "#3 pipeline.enriched.kitchen     21.5 C  (average so far 21.00)",
        "'this line is garbage' is garbage: parse crashes on it",
        "restarted: parse True, enrich True, ingest False",
        # enrich restarted too, so its running averages started over:
        "#6 pipeline.enriched.kitchen     22.0 C  (average so far 22.00)",
        "5 of 6 lines came through the pipeline",
    ],
    "log_aggregator.py": [
        "[errors]  ALERT auth: bad password for bob",
        "[errors]  ALERT billing: card declined for invoice 17",
        "auth trail: ['alice logged in', 'bad password for bob', 'bob logged in']",
        "counts: {'auth.error': 1, 'auth.info': 2, 'billing.error': 1, 'billing.info': 1, "
        "'search.debug': 1}",
        "[dead]    nobody listens on metrics.cpu: 0.93",
        "dead letters: 1",
    ],
    "message_bus.py": [
        "[filter]    dropped eve: 'cheap spam here'",
        "[room lobby] ann: hello everyone",
        "[room games] bob: anyone for chess?",
        "[feed]      chat.lobby.said Said(user='bob', text='hi ann') {'via': 'message_bus'}",
        "request chat.lobby.who -> ['ann', 'bob']",
        "the moderator saw 3 messages",
        "1 filtered by middleware",
    ],
    "supervision_tree.py": [
        "one_for_one   crash b -> restarted ['b']",
        "one_for_all   crash b -> restarted ['a', 'b', 'c']",
        "rest_for_one  crash b -> restarted ['b', 'c']",
        "fragile       crash x again -> the supervisor gave up: supervisor 'fragile' gave up",
        "root restarted fragile: True",
        "node example  15/15 alive  restarts 7",
        "every actor alive: True",
    ],
    "door_lock.py": [
        "[front] locked",
        "buttons 1, 2, then a pause:",
        "[front] forgot 2 button(s)",
        "[front] open: unlocked for 0.2 s",
        "[front] open: button 9 ignored",
        "status: open",
        "...and answered once it locked again: locked",
        "the supervisor restarted it: status locked",
    ],
    "backends.py": [
        "asyncio  -> {'total': 5050, 'restarted': True, 'total after restart': 0}",
        "trio     -> {'total': 5050, 'restarted': True, 'total after restart': 0}",
        "same result on asyncio and trio: True",
    ],
}


def _env() -> dict[str, str]:
    """The environment of a plain pipe: no forced colours or terminal, a fixed width."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "PYTHONWARNINGS")
    }
    env.update(NO_COLOR="1", COLUMNS="100", PYTHONIOENCODING="utf-8")
    return env


def _run(*args: str, timeout: float = 45.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


# Examples that need a Redis server: tests/test_redis_processes.py runs them.
NEEDS_REDIS = {"distributed_counter.py"}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(set(EXPECTED) | NEEDS_REDIS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_and_tells_its_story(name: str) -> None:
    result = _run(str(EXAMPLES / name))
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    missing = [line for line in EXPECTED[name] if line not in result.stdout]
    assert not missing, f"{name} did not print {missing!r}; it printed:\n{result.stdout}"


# Runs an example with every otp.run forced onto trio: the examples must not depend on asyncio.
_ON_TRIO = """
import runpy, sys, otp
real_run = otp.run
otp.run = lambda main, *args, backend="asyncio", **kw: real_run(main, *args, backend="trio", **kw)
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - {"backends.py"}))
def test_example_runs_on_trio_too(name: str) -> None:
    result = _run("-c", _ON_TRIO, str(EXAMPLES / name))
    assert result.returncode == 0, f"{name} failed on trio:\n{result.stdout}\n{result.stderr}"
    assert EXPECTED[name][-1] in result.stdout, result.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_is_a_teaching_file(name: str) -> None:
    source = (EXAMPLES / name).read_text(encoding="utf-8")
    assert source.startswith('"""'), f"{name} needs a module docstring"
    assert f"python examples/{name}" in source, f"{name} should say how to run it"
    assert "import asyncio" not in source and "import trio" not in source
    assert "otp._" not in source, f"{name} must use only the public otp API"


def test_help_lists_the_commands() -> None:
    result = _run("-m", "otp", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: python -m otp" in result.stdout
    assert "demo" in result.stdout
    demo = _run("-m", "otp", "demo", "--help")
    assert demo.returncode == 0, demo.stderr
    for option in ("--backend {asyncio,trio}", "--duration SECONDS", "--crash-rate R"):
        assert option in demo.stdout


def test_demo_rejects_bad_options() -> None:
    result = _run("-m", "otp", "demo", "--duration", "0")
    assert result.returncode == 2
    assert "--duration" in result.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_without_a_terminal_prints_snapshots_and_exits(backend: str) -> None:
    result = _run(
        "-m",
        "otp",
        "demo",
        "--backend",
        backend,
        "--duration",
        "2",
        "--crash-rate",
        "10",
        "--seed",
        "7",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "\x1b[" not in out, "no terminal codes without a terminal"
    assert "--- t=1.0s  handled=" in out
    assert "node demo  " in out
    assert "├── pipeline  supervisor rest_for_one  permanent" in out
    assert "├── pool  supervisor one_for_one  permanent" in out
    assert "└── metrics  supervisor one_for_all  permanent" in out
    summary = [line for line in out.splitlines() if line.startswith("demo finished after ")]
    assert len(summary) == 1, out
    assert summary[0].endswith("13/13 actors alive"), summary[0]
    crashes = int(summary[0].split(" crashes injected")[0].rsplit(" ", 1)[1])
    restarts = int(summary[0].split(" restarts;")[0].rsplit(" ", 1)[1])
    assert crashes >= 1, summary[0]
    assert restarts >= crashes, summary[0]
