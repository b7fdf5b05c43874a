"""Process groups (node.groups, OTP's pg) on one node; across nodes: tests/test_redis_cluster.py."""

from __future__ import annotations

import pytest

import otp
from otp.testing import wait_until
from tests._helpers import Counter

pytestmark = pytest.mark.anyio


async def test_join_members_leave() -> None:
    async with otp.Node() as node:
        a, b = await node.spawn(Counter), await node.spawn(Counter)
        assert await node.groups.members("workers") == []
        await node.groups.join("workers", a)
        await node.groups.join("workers", [b, a])  # a second join is a no-op
        assert await node.groups.members("workers") == [a, b]
        assert node.groups.local_members("workers") == [a, b]
        await node.groups.join("other", b)
        assert await node.groups.which_groups() == ["other", "workers"]
        assert await node.groups.leave("workers", a) is True
        assert await node.groups.leave("workers", a) is False
        assert await node.groups.members("workers") == [b]
        await node.groups.leave("workers", b)
        assert await node.groups.which_groups() == ["other"]


async def test_members_leave_their_groups_when_they_exit() -> None:
    async with otp.Node() as node:
        a, b = await node.spawn(Counter), await node.spawn(Counter)
        await node.groups.join("g", [a, b])
        await node.groups.join("h", a)
        a.kill()
        await wait_until(lambda: node.groups.local_members("g") == [b])
        assert await node.groups.which_groups() == ["g"]
        await b.stop()
        assert await node.groups.members("g") == []
        dead = await node.spawn(Counter)
        await dead.stop()
        await node.groups.join("g", dead)  # an exited actor is not added
        assert await node.groups.members("g") == []


async def test_group_errors() -> None:
    async with otp.Node() as node, otp.Node() as other:
        ref = await node.spawn(Counter)
        theirs = await other.spawn(Counter)
        with pytest.raises(ValueError, match="another node"):
            await node.groups.join("g", theirs)
        with pytest.raises(TypeError, match="actor ref"):
            await node.groups.join("g", "counter")  # type: ignore[arg-type]
        for bad in ("", "a b", "x.*", "$x", "a..b"):
            with pytest.raises(ValueError, match="group name"):
                await node.groups.join(bad, ref)
        with pytest.raises(TypeError):
            await node.groups.members(3)  # type: ignore[arg-type]
        with pytest.raises(otp.NotFound):
            await node.groups.route("empty", "key")


async def test_route_by_key_is_consistent_over_the_members() -> None:
    async with otp.Node() as node:
        refs = [await node.spawn(Counter) for _ in range(4)]
        await node.groups.join("shards", refs)
        keys = [f"k{i}" for i in range(30)]
        before = {k: await node.groups.route("shards", k) for k in keys}
        assert len(set(before.values())) > 1
        gone = before["k0"]
        await node.groups.leave("shards", gone)
        after = {k: await node.groups.route("shards", k) for k in keys}
        for k in keys:
            assert (after[k] == before[k]) is (before[k] != gone)


async def test_monitor_reports_joins_and_leaves() -> None:
    async with otp.Node() as node:
        a, b = await node.spawn(Counter), await node.spawn(Counter)
        await node.groups.join("g", a)
        async with node.groups.monitor("g") as watch:
            assert watch.members == [a]
            await node.groups.join("g", b)
            change = await watch.receive()
            assert change == otp.GroupChange("g", joined=(b,), left=())
            a.kill()
            change = await watch.receive()
            assert change.left == (a,) and change.joined == ()
            assert watch.members == [b]
            await node.groups.leave("g", b)
            async for change in watch:
                assert change.left == (b,)
                break
