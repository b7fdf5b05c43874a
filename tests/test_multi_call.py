"""node.multi_call on one node; across nodes: tests/test_redis_cluster.py."""

from __future__ import annotations

import pytest

import otp
from tests._helpers import Counter, Crash, Get

pytestmark = pytest.mark.anyio


async def test_multi_call_on_the_in_memory_broker_is_this_node() -> None:
    async with otp.Node(name="here") as node:
        await node.spawn(Counter, 7, name="counter")
        result = await node.multi_call("counter", Get(), timeout=1.0)
        assert result.replies == {"here": 7} and result.failures == {}
        replies, bad = result
        assert replies == {"here": 7} and bad == []
        missing = await node.multi_call("nobody", Get(), timeout=1.0)
        assert missing.bad_nodes == ["here"]
        assert isinstance(missing.failures["here"], otp.ActorExited)
        assert missing.failures["here"].reason == "noproc"
        elsewhere = await node.multi_call("counter", Get(), nodes=["here", "there"])
        assert elsewhere.replies == {"here": 7}
        assert elsewhere.failures["there"].reason == "nodedown"  # type: ignore[attr-defined]
        crashed = await node.multi_call("counter", Crash(), timeout=1.0)
        assert isinstance(crashed.failures["here"], otp.ActorExited)
        with pytest.raises(TypeError):
            await node.multi_call("", Get())
