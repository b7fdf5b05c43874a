"""Redis Sentinel: a primary, a replica and a sentinel of these tests alone (``redis-server``
on free ports, ``--save ''``, stopped by their PIDs); nodes reach Redis through the
sentinel, from a ``redis+sentinel://`` URL and from ``sentinels=``/``service=``, and keep
working after the primary dies and the sentinel promotes the replica."""

from __future__ import annotations

import gc
import pathlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("coredis", reason="the Redis broker needs coredis (pip install anyotp[redis])")

import coredis

import otp
from otp.redis import RedisBroker
from otp.testing import wait_until
from tests._redis_messages import Counter, Get
from tests._redis_support import _free_port, answers, prefix, start_redis_server  # noqa: F401

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="the Sentinel tests start their own redis-server (primary, replica and "
        "redis-server --sentinel), and redis-server is not on PATH",
    ),
]

SERVICE = "otpmaster"


@pytest.fixture(autouse=True)
def _collect_coredis_garbage() -> Iterator[None]:
    yield  # coredis leaves streams of failed connections unclosed
    gc.collect()


def _info(port: int, section: str) -> dict[str, str]:
    """``INFO section`` of the server on ``port`` (a RESP bulk string), read by hand."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(f"INFO {section}\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            header, sep, body = data.partition(b"\r\n")
            if sep and header.startswith(b"$") and len(body) >= int(header[1:]):
                break
    text = data.partition(b"\r\n")[2].decode(errors="replace")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class Replicated:
    """A primary, a replica and one sentinel monitoring them as ``SERVICE``."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dirs: list[str] = []
        self.primary_port = _free_port()
        proc, _, d = start_redis_server(self.primary_port, "--repl-diskless-sync-delay", "0")
        self.procs.append(proc)
        self.dirs.append(d)
        self.replica_port = _free_port()
        proc, _, d = start_redis_server(
            self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port)
        )
        self.procs.append(proc)
        self.dirs.append(d)
        deadline = time.monotonic() + 10
        while _info(self.replica_port, "replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not sync with the primary")
            time.sleep(0.05)
        self.sentinel_port = _free_port()
        conf = workdir / "sentinel.conf"  # the sentinel rewrites its config: a file of its own
        conf.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 500\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        exe = shutil.which("redis-server")
        assert exe is not None
        self.procs.append(
            subprocess.Popen(
                [exe, str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", self.sentinel_port, 0.2):
            if self.procs[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server --sentinel did not start")
            time.sleep(0.02)

    @property
    def sentinel_url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}"

    def kill_primary(self) -> None:
        self.procs[0].kill()
        self.procs[0].wait()

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def replicated(tmp_path: pathlib.Path) -> Iterator[Replicated]:
    try:
        cluster = Replicated(tmp_path)
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        pytest.skip(f"cannot start a primary, a replica and a sentinel: {exc}")
    try:
        yield cluster
    finally:
        cluster.close()


async def _sentinel_knows_the_replica(cluster: Replicated) -> bool:
    async with coredis.Redis(port=cluster.sentinel_port) as sentinel:
        replicas = await sentinel.sentinel_replicas(SERVICE)
    port = cluster.replica_port
    return any(
        r.get("port") in (port, str(port), str(port).encode()) and not r.get("is_sdown")
        for r in replicas
    )


async def _primary_port(cluster: Replicated) -> int:
    async with coredis.Redis(port=cluster.sentinel_port) as sentinel:
        address = await sentinel.sentinel_get_master_addr_by_name(SERVICE)
    assert address is not None
    return int(address[1])


async def test_nodes_through_sentinel_survive_a_failover(
    replicated: Replicated,
    prefix: str,  # noqa: F811
) -> None:
    def broker(url: str = "redis://unused", **where: Any) -> RedisBroker:
        return RedisBroker(
            url, prefix=prefix, heartbeat=0.1, node_ttl=1.0, connect_timeout=2.0, **where
        )

    a_broker = broker(replicated.sentinel_url)
    b_broker = broker(sentinels=[("127.0.0.1", replicated.sentinel_port)], service=SERVICE)
    async with otp.Node(name="a", broker=a_broker), otp.Node(name="b", broker=b_broker) as b:
        counter = await b.spawn(Counter, 7, name="counter")
        ref = await a_broker.whereis("counter")
        assert ref is not None
        assert await ref.call(Get(), timeout=5) == 7
        assert await a_broker.nodes() == ["a", "b"]
        async with a_broker.subscribe("sentinel.x") as sub:
            await b_broker.publish("sentinel.x", 1)
            with anyio.fail_after(5):
                assert (await sub.receive()).message == 1
        # The nodes' keys live on the primary the sentinel named.
        async with coredis.Redis(port=replicated.primary_port) as primary:
            assert await primary.get(f"{prefix}:node:a") == a_broker.incarnation.encode()

        # The primary dies; the sentinel sees it down and promotes the replica; the nodes
        # reconnect (the sentinel now names the new primary) and claim their names again.
        await wait_until(lambda: _sentinel_knows_the_replica(replicated), timeout=15)
        replicated.kill_primary()
        await wait_until(lambda: _primary_port_is(replicated, replicated.replica_port), timeout=20)

        async def answers_again() -> bool:
            try:
                value: int = await ref.call(Get(), timeout=1)
            except (otp.ActorExited, otp.CallTimeout):
                return False
            return value == 7

        # The same refs work again: the nodes' incarnations never ended.
        await wait_until(answers_again, timeout=20)
        assert counter.alive
        await wait_until(lambda: _both_listed(a_broker), timeout=10)
        async with coredis.Redis(port=replicated.replica_port) as promoted:
            assert await promoted.get(f"{prefix}:node:b") == b_broker.incarnation.encode()
        async with a_broker.subscribe("sentinel.y") as sub:
            await b_broker.publish("sentinel.y", 2)
            with anyio.fail_after(5):
                assert (await sub.receive()).message == 2
        assert a_broker.reconnects >= 1 and b_broker.reconnects >= 1
        assert not a_broker.fenced and not b_broker.fenced
        await wait_until(lambda: "b" in a_broker.up_nodes() and "a" in b_broker.up_nodes())


async def _primary_port_is(cluster: Replicated, port: int) -> bool:
    primary: int = await _primary_port(cluster)
    return primary == port


async def _both_listed(broker: RedisBroker, names: tuple[str, ...] = ("a", "b")) -> bool:
    try:
        listed: list[str] = await broker.nodes()
    except Exception:
        return False
    return listed == list(names)


async def test_nodes_follow_a_forced_failover_at_once(
    replicated: Replicated,
    prefix: str,  # noqa: F811
) -> None:
    # SENTINEL FAILOVER leaves the old primary up until the sentinel demotes it (about
    # 10 s later); the nodes follow the sentinels' +switch-master announcement instead.
    broker = RedisBroker(
        replicated.sentinel_url, prefix=prefix, heartbeat=0.1, node_ttl=1.0, connect_timeout=2.0
    )
    async with otp.Node(name="a", broker=broker) as a:
        await a.spawn(Counter, 3, name="counter")
        await wait_until(lambda: _sentinel_knows_the_replica(replicated), timeout=15)
        # Until the sentinel has fresh INFO of the replica it answers NOGOODSLAVE.
        await wait_until(lambda: _fail_over(replicated), timeout=15)
        await wait_until(lambda: _primary_port_is(replicated, replicated.replica_port), timeout=20)
        promoted_at = time.monotonic()

        async def on_the_new_primary() -> bool:
            # Its pub/sub connection and its command connection, both moved.
            async with coredis.Redis(port=replicated.replica_port) as promoted:
                names = [c.get("name") for c in await promoted.client_list()]
                held = await promoted.get(f"{prefix}:node:a")
            return names.count(f"otp:{prefix}:a") >= 2 and held == broker.incarnation.encode()

        await wait_until(on_the_new_primary, timeout=8)
        moved_after = time.monotonic() - promoted_at
        # Long before the old primary is demoted (its role is still "master").
        assert _info(replicated.primary_port, "replication").get("role") == "master"
        assert moved_after < 8
        await wait_until(lambda: _both_listed(broker, ("a",)))
        assert not broker.fenced


async def _fail_over(cluster: Replicated) -> bool:
    """``SENTINEL FAILOVER``; ``False`` while the sentinel finds no replica to promote."""
    async with coredis.Redis(port=cluster.sentinel_port) as sentinel:
        try:
            accepted: bool = await sentinel.sentinel_failover(SERVICE)
        except coredis.exceptions.ResponseError as exc:
            if "NOGOODSLAVE" in str(exc):
                return False
            raise
    return accepted
