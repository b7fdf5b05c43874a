"""otp.Global names with the in-memory broker (node-unique) and the Global value itself.
Cluster-wide behaviour is in tests/test_redis_cluster.py."""

from __future__ import annotations

import pickle

import pytest

import otp
from otp.testing import wait_until
from tests._helpers import Counter, Get

pytestmark = pytest.mark.anyio


def test_global_is_a_name() -> None:
    name = otp.Global("svc")
    assert name == "svc" and isinstance(name, str) and hash(name) == hash("svc")
    assert repr(name) == "otp.Global('svc')"
    assert pickle.loads(pickle.dumps(name)) == name
    assert type(pickle.loads(pickle.dumps(name))) is otp.Global
    with pytest.raises(TypeError):
        otp.Global("")
    with pytest.raises(TypeError):
        otp.Global(3)  # type: ignore[arg-type]


async def test_a_global_name_is_node_unique_on_the_in_memory_broker() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter, 1, name=otp.Global("svc"))
        assert node.whereis("svc") is ref
        assert await node.locate("svc") is ref
        with pytest.raises(otp.NameTaken):
            await node.spawn(Counter, name=otp.Global("svc"))
        with pytest.raises(otp.NameTaken):
            await node.spawn(Counter, name="svc")  # the plain name is held too
        await ref.stop()
        assert node.whereis("svc") is None
        again = await node.spawn(Counter, 2, name=otp.Global("svc"))
        assert await again.call(Get()) == 2


async def test_global_names_in_worker_and_supervisor_specs() -> None:
    async with otp.Node() as node:
        root = await node.start(
            otp.supervisor(
                otp.Global("root"),
                [otp.worker(Counter, 5, name=otp.Global("counter"))],
            )
        )
        assert node.whereis("root") is root
        counter = node.whereis("counter")
        assert counter is not None and await counter.call(Get()) == 5
        counter.kill()
        await wait_until(lambda: node.whereis("counter") not in (None, counter))
        assert await node.whereis("counter").call(Get()) == 5  # re-registered on restart
