"""The observer's cluster view on otp.redis.RedisBroker: every node, its tree, nodeup/nodedown."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import otp
from otp.testing import wait_until
from tests._helpers import Counter
from tests._redis_support import prefix, redis_url  # noqa: F401

pytest.importorskip("coredis", reason="the cluster view needs coredis (the redis extra)")
httpx = pytest.importorskip("httpx", reason="the web observer tests need httpx (test extra)")
observer = pytest.importorskip("otp.observer", reason="the web observer needs anyotp[web]")

pytestmark = [
    pytest.mark.anyio,
    # coredis leaves memory streams of closed connections to the collector (see test_redis).
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture(autouse=True)
def _collect_coredis_garbage() -> Iterator[None]:
    yield
    gc.collect()


def broker(url: str, prefix: str) -> Any:  # noqa: F811
    from otp.redis import RedisBroker

    return RedisBroker(url, prefix=prefix, heartbeat=0.1, node_ttl=0.6)


async def test_every_node_its_tree_and_membership(redis_url: str, prefix: str) -> None:  # noqa: F811
    leave = anyio.Event()

    async def run_b(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with otp.Node(name="b", broker=broker(redis_url, prefix)) as b:
            await b.start(otp.supervisor("b_root", [otp.worker(Counter, name="b1")]))
            async with observer.agent(b):
                task_status.started()
                await leave.wait()

    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(otp.Node(name="a", broker=broker(redis_url, prefix)))
        await a.start(otp.supervisor("a_root", [otp.worker(Counter, name="a1")]))
        tasks = await stack.enter_async_context(anyio.create_task_group())
        await tasks.start(run_b)
        server = await stack.enter_async_context(observer.serve(a, port=0))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=server.url))

        info = (await client.get("/api/info")).json()
        assert info["cluster"] is True
        assert info["broker"] == "RedisBroker"

        async def both() -> Any:
            nodes = (await client.get("/api/nodes")).json()
            rows = {n["name"]: n for n in nodes["nodes"]}
            return rows if rows.get("b", {}).get("tree") else None

        rows = await wait_until(both)
        assert rows["a"]["self"] is True
        assert rows["b"]["self"] is False
        assert rows["b"]["tree"]["node"] == "b"
        assert rows["b"]["tree"]["children"][0]["children"][0]["id"] == "b1"

        # A node without an observer or agent is listed with the reason it has no tree.
        c = await stack.enter_async_context(otp.Node(name="c", broker=broker(redis_url, prefix)))

        async def joined(kind: str, name: str) -> Any:
            log = (await client.get("/api/log")).json()
            return [e for e in log["events"] if e["kind"] == kind and e["detail"] == name]

        await wait_until(lambda: joined("nodeup", "c"))

        async def c_row() -> Any:
            nodes = (await client.get("/api/nodes")).json()
            row = next((n for n in nodes["nodes"] if n["name"] == "c"), None)
            return row if row and row["error"] and "agent" in row["error"] else None

        row = await wait_until(c_row)
        assert row["tree"] is None
        assert c.name == "c"

        leave.set()  # b leaves
        await wait_until(lambda: joined("nodedown", "b"))
        nodes = (await client.get("/api/nodes")).json()
        assert "b" not in [n["name"] for n in nodes["nodes"]]
