"""Fast peer processes for the cross-process tests: a zygote that imports anyotp, coredis,
anyio's backends and the peer modules once, then forks a peer per request.

Starting a peer with ``python -m ...`` costs an interpreter and every import (about
1.5 s of CPU, several seconds on a loaded machine), and the Redis tests start dozens. A
forked peer is a real, separate OS process (its own pid, signals, pipes, sockets) that
begins with those imports done. The zygote never runs an event loop or a thread, so
forking it is safe.

``spawn(module, *args, stderr=file)`` returns a :class:`Forked` with the part of the
``subprocess.Popen`` API the tests use (``pid``, ``stdin``, ``stdout``, ``poll``,
``wait``, ``send_signal``, ``kill``, ``returncode``). Without ``fork`` or Unix sockets
it falls back to ``subprocess.Popen`` (same API).

Protocol (a Unix socket, one connection per request, one JSON line each way): ``spawn``
passes the child's stdin, stdout and stderr as file descriptors (SCM_RIGHTS) with
``{"op": "spawn", "argv": [module, *args]}`` and gets ``{"pid": n}``; ``poll`` sends
``{"op": "poll", "pid": n}`` and gets ``{"status": exit code or null}``.
"""

from __future__ import annotations

import array
import atexit
import importlib
import json
import os
import pathlib
import random
import runpy
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: Imported once in the zygote, before any fork.
PRELOAD = (
    "anyio",
    "anyio._backends._asyncio",
    "anyio._backends._trio",
    "trio",
    "coredis",
    "otp",
    "otp.redis",
    "otp._backends._asyncio",
    "otp._backends._trio",
    "tests._redis_messages",
    "tests._cluster_messages",
)


# ---------------------------------------------------------------------------- the zygote


def _child(argv: list[str], fds: list[int]) -> None:
    # In the forked child: become the peer (its own process group), with the given stdio,
    # and run the module as ``python -m`` would; never return into the zygote's loop.
    code = 1
    try:
        os.setpgid(0, 0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.argv = list(argv)
        random.seed()  # not the zygote's sequence, shared by every peer
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def serve(path: str) -> None:
    """Run the zygote on the Unix socket ``path`` (until killed)."""
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    print("READY", flush=True)
    statuses: dict[int, int] = {}
    parent = os.getppid()
    server.settimeout(1.0)
    while True:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the test process is gone: so is the zygote
                return
            continue
        conn.settimeout(None)
        with conn:
            message, ancillary, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(3 * 4))
            fds = array.array("i")
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            request = json.loads(message)
            if request["op"] == "spawn":
                pid = os.fork()
                if pid == 0:
                    server.close()
                    conn.close()
                    _child(request["argv"], list(fds))
                for fd in fds:
                    os.close(fd)
                reply: dict[str, Any] = {"pid": pid}
            else:
                pid = request["pid"]
                status = statuses.get(pid)
                if status is None:
                    try:
                        done, raw = os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        done, raw = pid, 0
                    if done:
                        status = statuses[pid] = os.waitstatus_to_exitcode(raw)
                reply = {"status": status}
            conn.sendall(json.dumps(reply).encode() + b"\n")


# ---------------------------------------------------------------------------- the client


class Forked:
    """A peer forked by the zygote: the ``subprocess.Popen`` API the tests use."""

    def __init__(self, zygote: _Zygote, pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self._zygote = zygote
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.request({"op": "poll", "pid": self.pid})["status"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.005)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class _Zygote:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="otp-zygote-")
        self.path = os.path.join(self.dir, "sock")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests._zygote", self.path],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60.0)
        if not ready or self.proc.stdout.readline().strip() != b"READY":
            self.close()
            raise RuntimeError("the zygote did not start")
        self.lock = threading.Lock()

    def request(self, message: dict[str, Any], fds: list[int] | None = None) -> Any:
        with self.lock, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.path)
            data = json.dumps(message).encode()
            if fds:
                conn.sendmsg(
                    [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                )
            else:
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    raise RuntimeError("the zygote went away")
                reply += chunk
        return json.loads(reply)

    def spawn(self, argv: list[str], stderr: IO[Any]) -> Forked:
        in_read, in_write = os.pipe()
        out_read, out_write = os.pipe()
        try:
            pid = self.request(
                {"op": "spawn", "argv": argv}, [in_read, out_write, stderr.fileno()]
            )["pid"]
        finally:
            os.close(in_read)
            os.close(out_write)
        return Forked(self, pid, os.fdopen(in_write, "wb"), os.fdopen(out_read, "rb"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.rmdir(self.dir)


_zygote: _Zygote | None = None
_unavailable = not hasattr(os, "fork") or not hasattr(socket, "AF_UNIX")


def spawn(module: str, *args: str, stderr: IO[Any]) -> Forked | subprocess.Popen[bytes]:
    """Start ``python -m module *args`` as a peer, forked from the zygote when possible
    (its stdin and stdout are pipes, its stderr ``stderr``)."""
    global _zygote, _unavailable
    if _zygote is None and not _unavailable:
        try:
            _zygote = _Zygote()
        except (OSError, RuntimeError):
            _unavailable = True
        else:
            atexit.register(_zygote.close)
    if _zygote is not None:
        return _zygote.spawn([module, *args], stderr)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


if __name__ == "__main__":
    serve(sys.argv[1])
