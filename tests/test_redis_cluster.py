"""Cluster primitives on the Redis broker: nodes in this process (each with its own
RedisBroker and connections) and, at the end, real peer processes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

pytest.importorskip("coredis", reason="the Redis broker needs coredis (pip install anyotp[redis])")

import otp
from otp.redis import RedisBroker
from tests._cluster_messages import Echo, InitFails
from tests._helpers import Counter
from tests._redis_support import prefix, redis_url  # noqa: F401

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::ResourceWarning")]


@pytest.fixture(autouse=True)
def _collect_coredis_garbage() -> Iterator[None]:
    yield  # see test_redis.py: coredis leaves streams of failed connections unclosed
    gc.collect()


NodeFactory = Callable[..., Any]


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> NodeFactory:  # noqa: F811
    @asynccontextmanager
    async def make(*names: str, **options: Any) -> AsyncIterator[list[otp.Node]]:
        options = {"heartbeat": 0.1, "node_ttl": 0.6, **options}
        async with AsyncExitStack() as stack:
            started = []
            for name in names:
                broker = RedisBroker(redis_url, prefix=prefix, **options)
                started.append(await stack.enter_async_context(otp.Node(name=name, broker=broker)))
            yield started

    return make


# ---------------------------------------------------------------------------- multi_call


async def test_multi_call_gives_replies_and_failures_per_node(nodes: NodeFactory) -> None:
    async with nodes("a", "b", "c") as (a, b, c):
        await a.spawn(Echo, name="svc")
        await b.spawn(Echo, name="svc")  # c has no "svc"
        result = await a.multi_call("svc", "hi", timeout=2.0)
        assert result.replies == {"a": ["a", "hi", None], "b": ["b", "hi", None]}
        assert result.bad_nodes == ["c"]
        assert result.failures["c"].reason == "noproc"  # type: ignore[attr-defined]
        replies, bad = await c.multi_call("svc", "x", nodes=["a", "gone"], timeout=2.0)
        assert replies == {"a": ["a", "x", None]} and bad == ["gone"]
        crashed = await b.multi_call("svc", "crash", nodes=["a"], timeout=2.0)
        assert isinstance(crashed.failures["a"], otp.ActorExited)


# ---------------------------------------------------------------------------- supervisors


async def test_remote_supervisor_operations_and_their_errors(nodes: NodeFactory) -> None:
    async with nodes("a", "b") as (a, b):
        await a.start(otp.supervisor("sup", [otp.worker(Echo, "first", id="first")]))
        sup = await b.broker.whereis("sup")
        assert isinstance(sup, otp.RemoteRef)
        [info] = await sup.which_children()
        assert info.id == "first" and isinstance(info.ref, otp.RemoteRef)
        assert await info.ref.call("hey") == ["a", "hey", "first"]
        child = await sup.start_child(otp.worker(Echo, "second", id="second"))
        assert isinstance(child, otp.RemoteRef) and child.node == "a"
        assert await child.call("x") == ["a", "x", "second"]
        assert (await sup.count_children()).active == 2
        with pytest.raises(otp.AlreadyStarted):
            await sup.start_child(otp.worker(Echo, id="second"))
        with pytest.raises(otp.ChildRunning):
            await sup.delete_child("second")
        await sup.terminate_child("second")
        assert not await _running(sup, "second")
        again = await sup.restart_child("second")
        assert await again.call("y") == ["a", "y", "second"]
        await sup.terminate_child(again)  # by ref, as locally
        await sup.delete_child("second")
        with pytest.raises(otp.NotFound):
            await sup.restart_child("second")
        with pytest.raises(otp.NotFound):
            await sup.terminate_child("nope")
        with pytest.raises(otp.StartFailed) as failed:
            await sup.start_child(otp.worker(InitFails))
        assert isinstance(failed.value.__cause__, otp.RemoteError)
        assert "no init today" in str(failed.value)
        with pytest.raises(otp.CodecError, match="has no wire name"):
            await sup.start_child(otp.worker(Counter))  # not registered: refused here
        assert [i.id for i in await sup.which_children()] == ["first"]


async def _running(sup: Any, child_id: str) -> bool:
    return any(i.id == child_id and i.ref is not None for i in await sup.which_children())
