"""The Redis broker across OS processes: each peer is a separate Python process with its
own Node (``tests/_redis_peer.py``), talking to this process's Node through Redis only."""

from __future__ import annotations

import gc
import pathlib
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("coredis", reason="the Redis broker needs coredis (pip install anyotp[redis])")

import otp
from otp.redis import RedisBroker
from otp.testing import wait_until
from tests._redis_messages import (
    Add,
    Crash,
    Get,
    OrderCreated,
    Price,
    Quote,
    Seen,
    Slow,
    Watcher,
    WireReport,
)
from tests._redis_support import prefix, redis_url  # noqa: F401
from tests._zygote import Forked, spawn

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::ResourceWarning")]


@pytest.fixture(autouse=True)
def _collect_coredis_garbage() -> Iterator[None]:
    yield  # see test_redis.py: coredis leaves streams of failed connections unclosed
    gc.collect()


ROOT = pathlib.Path(__file__).resolve().parent.parent


class Peer:
    def __init__(
        self, proc: Forked | subprocess.Popen[bytes], name: str, log: pathlib.Path
    ) -> None:
        self.proc = proc
        self.name = name
        self.log = log

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def close(self) -> None:
        """Close its stdin (it leaves cleanly), or kill it if it does not."""
        proc = self.proc
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def start_peer(
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
    anyio_backend: str,
    tmp_path: pathlib.Path,
) -> Iterator[Callable[[str], Peer]]:
    peers: list[Peer] = []

    def start(name: str) -> Peer:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as stderr:
            proc = spawn("tests._redis_peer", redis_url, prefix, name, anyio_backend, stderr=stderr)
        peer = Peer(proc, name, log)
        peers.append(peer)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        line = proc.stdout.readline() if ready else b""
        if line.strip() != b"READY":
            peer.kill()
            peer.close()
            pytest.fail(f"peer {name} did not start: {line!r}\n{log.read_text()}")
        return peer

    yield start
    for peer in peers:
        peer.close()


def broker(redis_url: str, prefix: str) -> RedisBroker:  # noqa: F811
    return RedisBroker(redis_url, prefix=prefix, heartbeat=0.1, node_ttl=0.6)


async def test_pubsub_and_request_reply_across_processes(
    start_peer: Callable[[str], Peer],
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    start_peer("peer")
    async with otp.Node(name="main", broker=broker(redis_url, prefix)) as node:
        async with node.broker.subscribe("audit.*") as seen:
            # The peer's counter subscribes to orders.* and answers with Seen on audit.seen.
            assert await node.broker.publish("orders.created", OrderCreated(7, ["a"])) == 1
            with anyio.fail_after(5):
                envelope = await seen.receive()
        assert envelope.message == Seen(7, "peer")
        assert envelope.topic == "audit.seen"
        assert isinstance(envelope.sender, otp.RemoteRef)
        assert (envelope.sender.node, envelope.sender.name) == ("peer", "counter")
        assert await node.broker.request("prices.quote", Quote("ACME"), timeout=5) == Price(
            "ACME", 42.0
        )
        with pytest.raises(otp.NoSubscriber):
            await node.broker.request("nobody.listens", Quote("X"), timeout=5)


async def test_call_cast_send_by_name_across_processes(
    start_peer: Callable[[str], Peer],
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    start_peer("peer")
    async with otp.Node(name="main", broker=broker(redis_url, prefix)) as node:
        ref = await node.broker.whereis("counter")
        assert isinstance(ref, otp.RemoteRef)
        assert (ref.node, ref.name, ref.alive) == ("peer", "counter", True)
        assert await node.broker.whereis("nobody") is None
        await ref.cast(Add(2))
        await ref.send(Add(3))
        assert await ref.call(Get(), timeout=5) == 5
        assert await ref.call(("echo", (1, "x", b"\x00")), timeout=5) == (1, "x", b"\x00")
        by_name = node.broker.remote("counter", "peer")
        assert await by_name.call(Get()) == 5
        with pytest.raises(otp.CallTimeout):
            await ref.call(Slow(1.0), timeout=0.1)
        # A crash during the call: ActorExited at once, the remote exception as the cause.
        with pytest.raises(otp.ActorExited) as caught:
            await ref.call(Crash("kaboom"), timeout=5)
        assert isinstance(caught.value.reason, otp.RemoteError)
        assert caught.value.reason.type_name == "RuntimeError"
        assert "kaboom" in str(caught.value.__cause__)
        assert not ref.alive
        with pytest.raises(otp.ActorExited):
            await ref.call(Get(), timeout=5)
        await ref.cast(Add(1))  # to a dead actor: returns quietly
        with pytest.raises(otp.ActorExited) as caught:
            await by_name.call(Get(), timeout=5)
        assert caught.value.reason == "noproc"


async def test_killed_node_is_seen_down(
    start_peer: Callable[[str], Peer],
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    peer = start_peer("doomed")
    events: list[otp.Event] = []
    async with otp.Node(name="main", broker=broker(redis_url, prefix)) as node:
        node.add_event_listener(events.append)
        ref = await node.broker.whereis("counter", node="doomed")
        assert isinstance(ref, otp.RemoteRef)
        watcher = await node.spawn(Watcher, ref)
        await ref.call(Get())  # the monitor is in place once this returns (ordered sends)
        outcome: list[Any] = []

        async def pending_call() -> None:
            try:
                await ref.call(Slow(30), timeout=30)
            except otp.ActorExited as exc:
                outcome.append(exc.reason)

        async with anyio.create_task_group() as tg:
            sent = node.broker.statistics().sent
            tg.start_soon(pending_call)
            # The call has left this node (its reply is what the kill must cut off).
            await wait_until(lambda: node.broker.statistics().sent > sent)
            peer.kill()
            await wait_until(lambda: watcher.call("downs"))
        downs = await watcher.call("downs")
        assert [(d.ref, d.reason) for d in downs] == [(ref, "nodedown")]
        assert outcome == ["nodedown"]
        assert not ref.alive
        assert any(e.kind == "nodedown" and e.detail == "doomed" for e in events)
        with pytest.raises(otp.ActorExited):
            await ref.call(Get())
        assert "doomed" not in await node.broker.nodes()


async def test_malformed_payloads_end_as_dead_letters(
    start_peer: Callable[[str], Peer],
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    import coredis

    start_peer("peer")
    async with otp.Node(name="main", broker=broker(redis_url, prefix)) as node:
        async with node.broker.subscribe("report.dead") as reports:
            raw = coredis.Redis.from_url(redis_url)
            async with raw:
                channel = f"{prefix}:t:orders.created"
                await raw.publish(channel, b"\x00not json{")
                await raw.publish(
                    channel,
                    b'{"k":"pub","f":"evil","fi":"e1","i":"x","t":"orders.created","ts":0,'
                    b'"m":{"$msg":"os.system","$v":{"command":"rm -rf /"}}}',
                )
                await raw.publish(channel, b"[" * 2_000_000)
                await raw.publish(f"{prefix}:n:peer", b'{"k":"call"}')
            got = set()
            with anyio.fail_after(5):
                while len(got) < 4:
                    got.add((await reports.receive()).message)
        assert got == {
            WireReport("malformed", "orders.created"),
            WireReport("unknown_type", "orders.created"),
            WireReport("oversized", "orders.created"),
            WireReport("malformed", ""),
        }
        # The peer's node is unharmed.
        ref = await node.broker.whereis("counter")
        assert ref is not None
        assert await ref.call(Get()) == 0


async def test_distributed_counter_example(
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
    anyio_backend: str,
) -> None:
    script = ROOT / "examples" / "distributed_counter.py"
    source = script.read_text(encoding="utf-8")
    assert source.startswith('"""') and "python examples/distributed_counter.py" in source
    assert "otp._" not in source and "import asyncio" not in source
    args = ["--url", redis_url, "--prefix", prefix, "--backend", anyio_backend]
    result = await anyio.run_process([sys.executable, str(script), *args], cwd=ROOT, check=False)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    for line in (
        "client found 'counter' on node 'counter-server'",
        "total = 6",
        "[changed] total=6 (+3)",
        "[watcher] Down: 'counter' on node 'counter-server' -> 'shutdown'",
        "calling it now: ActorExited ('shutdown')",
        "both nodes closed",
    ):
        assert line in out, out
