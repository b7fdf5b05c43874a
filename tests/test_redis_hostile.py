"""Hostile input never crashes a node: the payloads of issue 10, published by a raw Redis
client on a live node's channels. Each is one wire error (counted, a dead letter, one
WARNING); the node stays connected and its calls keep working."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("coredis", reason="the Redis broker needs coredis (pip install anyotp[redis])")

import coredis

import otp
from otp.testing import wait_until
from tests._redis_messages import Counter, Get
from tests._redis_support import prefix, redis_nodes, redis_url  # noqa: F401
from tests.test_redis_frames import HOSTILE

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::ResourceWarning")]


@pytest.fixture(autouse=True)
def _collect_coredis_garbage() -> Iterator[None]:
    yield  # coredis leaves streams of failed connections unclosed
    gc.collect()


class Recorder(otp.GenServer):
    async def init(self, topic: str) -> None:
        self.got: list[Any] = []
        await self.subscribe(topic)

    async def handle_info(self, message: Any) -> None:
        self.got.append(message)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return list(self.got)


def _payloads(prefix: str, me: str) -> list[tuple[str, bytes]]:  # noqa: F811
    import json

    control = f"{prefix}:n:{me}"
    out: list[tuple[str, bytes]] = []
    for name, tree in HOSTILE.items():
        data = json.dumps(tree).encode()  # NaN and Infinity as JSON's own literals
        if "inbox" in name:
            out.append((f"{prefix}:i:{me}", data))
        elif "wild" in name:
            out.append((f"{prefix}:t:wild..x", data))
        elif "pub" in name:  # on a channel the node listens to
            out.append((f"{prefix}:t:wild.z", data))
        else:
            out.append((control, data))
    # The raw forms: a topic channel no topic can have, and a NaN call by hand.
    out.append((f"{prefix}:i:{me}", b'{"k":"pub","t":"$otp.inbox.x y"}'))
    out.append(
        (f"{prefix}:i:{me}", b'{"k":"pub","f":"x","fi":"ab","i":"1","t":"a.b","m":1,"ts":0}')
    )
    out.append((f"{prefix}:t:wild..x", b"{}"))
    out.append(
        (control, b'{"k":"call","f":"x","fi":"ab","c":1,"to":{"nm":"counter"},"m":1,"dl":NaN}')
    )
    out.append((control, b"\xff\xfe not json"))
    out.append((control, b"[" * 50_000))
    return out


async def test_hostile_frames_never_crash_a_node(
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with redis_nodes(redis_url, prefix)("a", "b") as (a, b):
        await b.spawn(Counter, 7, name="counter")
        wild = await b.spawn(Recorder, "wild.#")
        ref = await a.broker.whereis("counter")
        assert ref is not None
        assert await ref.call(Get()) == 7
        payloads = _payloads(prefix, "b")
        # 20 monitors with list ids in a burst, as in the issue.
        mon = b'{"k":"mon","f":"x","fi":"ab","mid":[1],"to":{"a":[1]}}'
        payloads += [(f"{prefix}:n:b", mon)] * 20
        before = b.broker.statistics()
        with caplog.at_level(logging.WARNING, logger="otp.redis"):
            async with coredis.Redis.from_url(redis_url) as raw:
                for channel, data in payloads:
                    await raw.publish(channel, data)
                # Calls keep working meanwhile.
                for _ in range(5):
                    assert await ref.call(Get(), timeout=5) == 7
            await wait_until(
                lambda: b.broker.statistics().wire_errors - before.wire_errors >= len(payloads),
                timeout=10,
            )
        after = b.broker.statistics()
        assert after.wire_errors - before.wire_errors == len(payloads)
        assert after.reconnects == 0 and b.broker.connected
        warnings = [r for r in caplog.records if getattr(r, "otp_event", None) == "wire_error"]
        assert len(warnings) == len(payloads)  # one WARNING each
        letters = [
            d for d in b.broker.recent_dead_letters if isinstance(d.message, otp.Undecodable)
        ]
        assert len(letters) >= min(len(payloads), 100) - 1
        assert await wild.call(None) == []
        assert await ref.call(Get(), timeout=5) == 7
        # The node is still served normally by the other node.
        await a.broker.publish("wild.y", 1)
        await wait_until(lambda: wild._server.got == [1])
        assert await wild.call(None) == [1]


async def test_forged_announcements_change_no_membership(
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Anyone who may PUBLISH on the prefix can announce a node: a hello for a node that
    # does not exist, a hello claiming a live node restarted, a bye for a live node, a
    # call from a node nobody knows. Redis does not confirm them: no nodeup, no nodedown.
    import json

    async with redis_nodes(redis_url, prefix)("a", "b") as (a, b):
        await wait_until(lambda: "a" in b.broker.up_nodes())
        events: list[otp.NodeEvent] = []
        b.add_event_listener(
            lambda e: events.append(e) if e.kind in ("nodeup", "nodedown") else None
        )
        await b.spawn(Counter, 7, name="counter")
        real = a.broker.incarnation
        forged = [
            (f"{prefix}:c", {"k": "hello", "f": "ghost", "fi": "abc123"}),
            (f"{prefix}:c", {"k": "hello", "f": "a", "fi": "fake00"}),  # "a restarted"
            (f"{prefix}:c", {"k": "bye", "f": "a", "fi": real}),  # "a left"
            (f"{prefix}:n:b", {"k": "hello", "f": "ghost2", "fi": "abc124"}),
        ]
        before = b.broker.statistics()
        with caplog.at_level(logging.WARNING, logger="otp.redis"):
            async with coredis.Redis.from_url(redis_url) as raw:
                for channel, tree in forged:
                    await raw.publish(channel, json.dumps(tree).encode())
                # Not an announcement: ignored quietly, but no nodeup either.
                call = {"k": "call", "f": "ghost3", "fi": "abc125", "c": 1}
                call |= {"to": {"nm": "nobody"}, "m": 1}
                await raw.publish(f"{prefix}:n:b", json.dumps(call).encode())
            await wait_until(
                lambda: b.broker.statistics().wire_errors - before.wire_errors >= len(forged),
                timeout=10,
            )
            # Two heartbeats later nothing has changed either.
            with anyio.fail_after(5):
                for _ in range(2):
                    await b.broker.session.renewed.wait()
            assert await b.broker.nodes() == ["a", "b"]
        assert b.broker.statistics().wire_errors - before.wire_errors == len(forged)
        assert b.broker.membership.unconfirmed == len(forged)
        assert events == []
        assert b.broker.up_nodes() == {"a": real}
        unconfirmed = [
            d
            for d in b.broker.recent_dead_letters
            if isinstance(d.message, otp.Undecodable) and d.reason == "unconfirmed"
        ]
        assert len(unconfirmed) == len(forged)
        warnings = [
            r
            for r in caplog.records
            if getattr(r, "otp_reason", None) == "unconfirmed"
            and r.getMessage().startswith("node 'b'")
        ]
        assert len(warnings) == len(forged)  # one WARNING each (node a saw the first too)
        # The real announcements still count: a node that starts is up for b.
        async with redis_nodes(redis_url, prefix)("c"):
            await wait_until(lambda: "c" in b.broker.up_nodes())
        await wait_until(lambda: "c" not in b.broker.up_nodes())
        assert [(e.kind, e.detail) for e in events] == [("nodeup", "c"), ("nodedown", "c")]
        assert events[-1].reason == "left"
