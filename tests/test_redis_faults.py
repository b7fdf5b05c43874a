"""Faults, against a redis-server of these tests alone (started on a free port, stopped by
its PID) and peer nodes in real subprocesses (tests/_redis_fault_peer.py), on both
backends: CLIENT KILL, a server SIGKILL and restart, DEBUG SLEEP past the node TTL, a node
process SIGKILLed, SIGSTOPped and resumed, and a takeover while frozen.

Each test keeps a tally while a caller loads the peer with calls: messages lost (calls
that failed), duplicated (run twice), stale (run after their caller's deadline) and
overran (calls that returned later than their timeout plus a margin), and asserts what
issue 10 promises. Set ``OTP_FAULT_TABLE=path`` to append each tally as a JSON line.
"""

from __future__ import annotations

import gc
import json
import os
import pathlib
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import attrs
import pytest

pytest.importorskip("coredis", reason="the Redis broker needs coredis (pip install anyotp[redis])")

import coredis

import otp
from otp.redis import RedisBroker
from otp.testing import wait_until
from tests._redis_messages import Stats, Work
from tests._redis_support import _free_port, prefix, start_redis_server  # noqa: F401
from tests._zygote import Forked, spawn

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.skipif(
        shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
        reason="the fault tests start their own redis-server (and use redis-cli), not on PATH",
    ),
]

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 0.3  # each call's timeout in the load
MARGIN = 0.25  # what a call may take past its timeout before it counts as overran


@pytest.fixture(autouse=True)
def _collect_coredis_garbage() -> Iterator[None]:
    yield  # coredis leaves streams of failed connections unclosed
    gc.collect()


class PrivateRedis:
    """A redis-server of one test, on a free port; killed and restarted by its PID."""

    OPTIONS = ("--enable-debug-command", "yes")

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc, self.url, self.dir = start_redis_server(self.port, *self.OPTIONS)

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        self.proc, _, self.dir = start_redis_server(self.port, *self.OPTIONS)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    try:
        redis = PrivateRedis()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"cannot start redis-server: {exc}")
    yield redis
    redis.close()


class Peer:
    def __init__(self, proc: Forked | subprocess.Popen[bytes], incarnation: str) -> None:
        self.proc = proc
        self.incarnation = incarnation

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def close(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def start_peer(
    server: PrivateRedis,
    prefix: str,  # noqa: F811
    anyio_backend: str,
    tmp_path: pathlib.Path,
) -> Iterator[Callable[[str], Peer]]:
    peers: list[Peer] = []

    def start(name: str) -> Peer:
        log = tmp_path / f"{name}-{len(peers)}.log"
        with log.open("wb") as stderr:
            proc = spawn(
                "tests._redis_fault_peer", server.url, prefix, name, anyio_backend, stderr=stderr
            )
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        line = proc.stdout.readline() if ready else b""
        if not line.startswith(b"READY"):
            proc.kill()
            pytest.fail(f"peer {name} did not start: {line!r}\n{log.read_text()}")
        peer = Peer(proc, line.split()[1].decode())
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()


def main_broker(server: PrivateRedis, prefix: str) -> RedisBroker:  # noqa: F811
    return RedisBroker(server.url, prefix=prefix, heartbeat=0.1, node_ttl=0.6, backoff=(0.02, 0.2))


@attrs.define
class Tally:
    fault: str
    backend: str
    calls: int = 0
    ok: int = 0
    lost: int = 0
    duplicated: int = 0
    stale: int = 0
    overran: int = 0
    worst: float = 0.0

    def record(self) -> None:
        path = os.environ.get("OTP_FAULT_TABLE")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(attrs.asdict(self)) + "\n")


async def load(ref: Any, tally: Tally, stop: anyio.Event, answered_by: set[str]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        tally.calls += 1
        started = time.monotonic()
        try:
            _, incarnation = await ref.call(Work(n, time.time() + TIMEOUT), timeout=TIMEOUT)
        except (otp.CallTimeout, otp.ActorExited):
            tally.lost += 1
            await anyio.sleep(0.01)
        else:
            tally.ok += 1
            answered_by.add(incarnation)
        elapsed = time.monotonic() - started
        tally.worst = max(tally.worst, elapsed)
        if elapsed > TIMEOUT + MARGIN:
            tally.overran += 1


async def works(ref: Any) -> bool:
    try:
        await ref.call(Work(0, time.time() + 1.0), timeout=1.0)
    except (otp.CallTimeout, otp.ActorExited):
        return False
    return True


async def finish(ref: Any, tally: Tally) -> None:
    """Wait for the peer to serve again, then add its own counts to the tally."""
    await wait_until(lambda: works(ref), timeout=10, message=f"{tally.fault}: no recovery")
    stats = await ref.call(Stats(), timeout=2)
    tally.stale += stats["stale"]
    tally.duplicated += stats["duplicates"]
    tally.record()


async def under_load(ref: Any, tally: Tally, fault: Callable[[], Any], seconds: float) -> set[str]:
    answered_by: set[str] = set()
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(load, ref, tally, stop, answered_by)
        await anyio.sleep(0.3)
        result = fault()
        if hasattr(result, "__await__"):
            await result
        await anyio.sleep(seconds)
        stop.set()
    return answered_by


def assert_promise(tally: Tally) -> None:
    assert tally.overran == 0, tally
    assert tally.stale == 0, tally
    assert tally.duplicated == 0, tally
    assert tally.ok > 0, tally


async def test_client_kill(
    server: PrivateRedis,
    start_peer: Any,
    prefix: str,  # noqa: F811
    anyio_backend: str,
) -> None:
    start_peer("peer")
    async with otp.Node(name="main", broker=main_broker(server, prefix)) as node:
        ref = await node.broker.whereis("svc", node="peer")
        assert ref is not None

        async def kill() -> None:
            async with coredis.Redis.from_url(server.url) as raw:
                for client in await raw.client_list():
                    if client.get("name") == f"otp:{prefix}:peer":
                        await raw.client_kill(identifier=int(client["id"]))

        tally = Tally("CLIENT KILL", anyio_backend)
        await under_load(ref, tally, kill, 1.0)
        await finish(ref, tally)
    assert_promise(tally)


async def test_server_sigkill_and_restart(
    server: PrivateRedis,
    start_peer: Any,
    prefix: str,  # noqa: F811
    anyio_backend: str,
) -> None:
    start_peer("peer")
    async with otp.Node(name="main", broker=main_broker(server, prefix)) as node:
        events: list[otp.Event] = []
        node.add_event_listener(events.append)
        ref = await node.broker.whereis("svc", node="peer")
        assert ref is not None

        async def restart() -> None:
            server.sigkill()
            await anyio.sleep(0.5)
            server.restart()

        tally = Tally("server SIGKILL + restart", anyio_backend)
        await under_load(ref, tally, restart, 1.5)
        # The ref from before the outage works again: the peer's incarnation never ended.
        await finish(ref, tally)
        assert await node.broker.nodes() == ["main", "peer"]
        assert node.broker.up_nodes()["peer"] == ref.incarnation
    assert_promise(tally)


async def test_debug_sleep_past_the_node_ttl(
    server: PrivateRedis,
    start_peer: Any,
    prefix: str,  # noqa: F811
    anyio_backend: str,
) -> None:
    start_peer("peer")
    async with otp.Node(name="main", broker=main_broker(server, prefix)) as node:
        ref = await node.broker.whereis("svc", node="peer")
        assert ref is not None

        async def stall() -> None:
            async def sleep() -> None:
                cli = shutil.which("redis-cli") or "redis-cli"
                done = await anyio.run_process(
                    [cli, "-p", str(server.port), "DEBUG", "SLEEP", "1.5"]
                )
                assert done.stdout.strip() == b"OK", done.stdout

            tg.start_soon(sleep)

        tally = Tally("DEBUG SLEEP 1.5 (ttl 0.6)", anyio_backend)
        async with anyio.create_task_group() as tg:
            await under_load(ref, tally, stall, 2.0)
        await finish(ref, tally)
    assert_promise(tally)
    # Calls during the stall timed out at their timeout, not when Redis woke up.
    assert tally.worst < TIMEOUT + MARGIN


async def test_node_sigkilled(
    server: PrivateRedis,
    start_peer: Any,
    prefix: str,  # noqa: F811
    anyio_backend: str,
) -> None:
    peer = start_peer("peer")
    async with otp.Node(name="main", broker=main_broker(server, prefix)) as node:
        downs: list[float] = []
        node.add_event_listener(
            lambda e: downs.append(time.monotonic()) if e.kind == "nodedown" else None
        )
        ref = await node.broker.whereis("svc", node="peer")
        assert ref is not None
        tally = Tally("node SIGKILL", anyio_backend)
        killed_at = 0.0

        def kill() -> None:
            nonlocal killed_at
            killed_at = time.monotonic()
            peer.signal(signal.SIGKILL)

        answered = await under_load(ref, tally, kill, 1.2)
        await wait_until(lambda: downs, timeout=5)
        detection = downs[0] - killed_at
        # Within node_ttl + heartbeat, plus scheduling slack on a busy machine.
        assert detection < 0.6 + 0.1 + 0.5, detection
        assert len(downs) == 1  # exactly once per transition
        with pytest.raises(otp.ActorExited) as caught:
            await ref.call(Work(0, time.time() + 1), timeout=1)
        assert caught.value.reason == "nodedown"
        tally.record()
    assert answered == {peer.incarnation}
    assert tally.overran == 0 and tally.ok > 0


async def test_node_sigstopped_and_resumed(
    server: PrivateRedis,
    start_peer: Any,
    prefix: str,  # noqa: F811
    anyio_backend: str,
) -> None:
    peer = start_peer("peer")
    async with otp.Node(name="main", broker=main_broker(server, prefix)) as node:
        kinds: list[str] = []
        node.add_event_listener(
            lambda e: kinds.append(e.kind) if e.kind in ("nodeup", "nodedown") else None
        )
        ref = await node.broker.whereis("svc", node="peer")
        assert ref is not None

        async def freeze() -> None:
            peer.signal(signal.SIGSTOP)
            await anyio.sleep(1.2)  # twice the node TTL: declared down meanwhile
            peer.signal(signal.SIGCONT)

        tally = Tally("node SIGSTOP 1.2 s + SIGCONT", anyio_backend)
        await under_load(ref, tally, freeze, 1.0)
        # Alive again for its peers (the same incarnation: the ref works again) and it
        # ran none of the calls that expired while it was frozen.
        await finish(ref, tally)
        assert kinds[-2:] == ["nodedown", "nodeup"], kinds
    assert_promise(tally)


async def test_takeover_while_frozen(
    server: PrivateRedis,
    start_peer: Any,
    prefix: str,  # noqa: F811
    anyio_backend: str,
) -> None:
    old = start_peer("peer")
    async with otp.Node(name="main", broker=main_broker(server, prefix)) as node:
        downs: list[str] = []
        node.add_event_listener(lambda e: downs.append(e.detail) if e.kind == "nodedown" else None)
        by_name = node.broker.remote("svc", "peer")
        assert await works(by_name)
        old.signal(signal.SIGSTOP)
        await wait_until(lambda: "peer" in downs, timeout=5)
        new = start_peer("peer")  # the name's key expired: a new incarnation takes it
        assert new.incarnation != old.incarnation
        tally = Tally("takeover while frozen", anyio_backend)

        def resume() -> None:
            old.signal(signal.SIGCONT)

        answered = await under_load(by_name, tally, resume, 1.5)
        # The old incarnation found its name taken, stopped serving and ended fenced.
        assert old.proc.wait(10) == 3
        assert old.proc.stdout is not None
        assert b"FENCED" in old.proc.stdout.read()
        await finish(by_name, tally)
    assert answered == {new.incarnation}  # exactly one incarnation answered
    assert_promise(tally)


def least_privilege_acl(prefix: str) -> list[str]:  # noqa: F811
    """The ACL of docs/distributed.md for ``prefix``: its keys and exact channels only."""
    return [
        "ACL", "SETUSER", "otp", "on", ">otp-secret", "resetkeys", f"~{prefix}:*",
        # Channels by glob for SUBSCRIBE and PUBLISH; a PSUBSCRIBE pattern (a wildcard
        # subscription, here the Counter's orders.*) must be listed literally.
        "resetchannels", f"&{prefix}:*", f"&{prefix}:t:orders.*", "-@all",
        "+ping", "+hello", "+client|setname", "+info",
        "+subscribe", "+unsubscribe", "+psubscribe", "+punsubscribe", "+publish",
        "+pubsub|numsub", "+get", "+set", "+del", "+zadd", "+zrange", "+zrem",
        "+evalsha", "+eval", "+script|load", "+pexpire", "+time", "+zscore",
        "+xadd", "+xreadgroup", "+xack", "+xautoclaim", "+xgroup|create",
    ]  # fmt: skip


async def test_least_privilege_acl(server: PrivateRedis, prefix: str) -> None:  # noqa: F811
    cli = shutil.which("redis-cli") or "redis-cli"
    done = await anyio.run_process([cli, "-p", str(server.port), *least_privilege_acl(prefix)])
    assert done.stdout.strip() == b"OK", done.stdout

    def broker() -> RedisBroker:
        return RedisBroker(
            server.url,
            prefix=prefix,
            username="otp",
            password="otp-secret",
            heartbeat=0.1,
            node_ttl=0.6,
            durable=["jobs.*"],
        )

    async with (
        otp.Node(name="a", broker=broker()) as a,
        otp.Node(name="b", broker=broker()) as b,
    ):
        from tests._redis_messages import Counter, Get, Quote

        await b.spawn(Counter, 3, name="counter")
        ref = await a.broker.whereis("counter")
        assert ref is not None and await ref.call(Get()) == 3
        assert await a.broker.request("prices.quote", Quote("X"), timeout=5) is not None
        async with b.broker.subscribe("orders.x") as sub:
            await a.broker.publish("orders.x", 1)
            with anyio.fail_after(5):
                assert (await sub.receive()).message == 1
        async with b.broker.consume("jobs.x", "g") as jobs:
            await a.broker.publish("jobs.x", 2)
            with anyio.fail_after(5):
                entry = await jobs.receive()
            await jobs.ack(entry)
        assert await a.broker.nodes() == ["a", "b"]
        assert a.broker.statistics().wire_errors == 0
    # Someone else's prefix is out of reach for this user.
    with pytest.raises(BaseException) as caught:
        async with otp.Node(
            name="c",
            broker=RedisBroker(
                server.url,
                prefix="other",
                username="otp",
                password="otp-secret",
                connect_timeout=1.0,
            ),
        ):
            pass
    assert "otp-secret" not in str(caught.value)
