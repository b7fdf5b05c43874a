"""Finding a Redis server for the Redis tests, or a clear reason to skip them.

In order: ``REDIS_URL`` if set (skip if it does not answer), else 127.0.0.1:6379 if something
answers there, else a ``redis-server`` from PATH started on a free port for the session,
else skip. Nothing here needs coredis, so the skip reason is right on a bare machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """``True`` if a Redis server (anything speaking RESP) answers PING there."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply[:1] in (b"+", b"-")


def _host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis_server(
    port: int | None = None, *extra: str
) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start ``redis-server`` on a free port without persistence; (process, url, dir)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server")
    port = port or _free_port()
    workdir = tempfile.mkdtemp(prefix="otp-redis-")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5.0
    while not answers("127.0.0.1", port, 0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0", workdir


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis the tests may use, or a skip with the reason."""
    url = os.environ.get("REDIS_URL")
    if url:
        if not answers(*_host_port(url)):
            pytest.skip(f"REDIS_URL={url} is set but nothing answers there")
        yield url
        return
    if answers("127.0.0.1", 6379):
        yield DEFAULT_URL
        return
    try:
        proc, url, workdir = start_redis_server()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.skip(
            "no Redis: REDIS_URL is unset, nothing answers on 127.0.0.1:6379 and "
            f"redis-server could not be started ({exc})"
        )
    try:
        yield url
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def prefix() -> str:
    """A key/channel prefix of this test alone, so parallel runs never collide."""
    return f"otptest-{uuid.uuid4().hex[:12]}"


def redis_nodes(url: str, prefix: str) -> Any:
    """``async with make("a", "b", **options) as (a, b):`` Nodes with a RedisBroker each, on
    ``url`` under ``prefix``, with short heartbeats."""
    import otp
    from otp.redis import RedisBroker

    @contextlib.asynccontextmanager
    async def make(*names: str, **options: Any) -> AsyncIterator[list[otp.Node]]:
        options = {"heartbeat": 0.1, "node_ttl": 0.6, **options}
        async with contextlib.AsyncExitStack() as stack:
            started = []
            for name in names:
                broker = RedisBroker(url, prefix=prefix, **options)
                started.append(await stack.enter_async_context(otp.Node(name=name, broker=broker)))
            yield started

    return make
