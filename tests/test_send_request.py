"""Asynchronous requests (gen_server:send_request, wait_response, receive_response,
check_response and request id collections) on both backends."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest
from anyio import wait_all_tasks_blocked

import otp
from otp.testing import wait_until

pytestmark = pytest.mark.anyio


@attrs.frozen
class Echo(otp.Call[int]):
    n: int


@attrs.frozen
class Later(otp.Call[str]):
    """Answered only when a Release(key) cast arrives."""

    key: str


@attrs.frozen
class Release:
    key: str
    value: str = ""


@attrs.frozen
class Boom: ...


class Server(otp.GenServer):
    async def init(self) -> None:
        self.waiting: dict[str, otp.Caller] = {}
        self.handled = 0

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        self.handled += 1
        match request:
            case Echo(n):
                return n
            case Later(key):
                self.waiting[key] = caller
                return otp.NOREPLY
            case Boom():
                raise RuntimeError("boom")
            case "handled":
                return self.handled
            case _:
                return await super().handle_call(request, caller)

    async def handle_cast(self, message: Any) -> None:
        match message:
            case Release(key, value):
                self.reply(self.waiting.pop(key), value or key.upper())
            case Boom():
                raise RuntimeError("boom")
            case _:
                await super().handle_cast(message)


async def test_send_request_does_not_wait_and_wait_returns_the_reply() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        handle = ref.send_request(Echo(7))  # no await: it is only queued
        assert not handle.done()
        assert handle.target is ref
        assert handle.request == Echo(7)
        assert await handle.wait(1.0) == 7
        assert handle.done()
        assert handle.result() == 7
        assert await handle.wait() == 7  # a reply can be collected again
        assert "replied" in repr(handle)


async def test_wait_timeout_keeps_the_request_pending() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        handle = ref.send_request(Later("a"))
        with pytest.raises(otp.CallTimeout):
            await handle.wait(0.05)
        with pytest.raises(otp.CallTimeout):
            await handle.wait(0)
        assert not handle.done()
        with pytest.raises(RuntimeError, match="no reply yet"):
            handle.result()
        await ref.cast(Release("a"))
        assert await handle.wait(1.0) == "A"  # wait_response: still valid after a timeout


async def test_receive_timeout_abandons_the_request_and_drops_the_late_reply() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        handle = ref.send_request(Later("a"))
        with pytest.raises(otp.CallTimeout):
            await handle.receive(0.05)
        assert handle.done()
        await ref.cast(Release("a"))  # the server replies to an abandoned request
        assert await ref.call("handled") == 2  # ... and keeps running
        with pytest.raises(RuntimeError, match="abandoned"):
            handle.result()
        with pytest.raises(RuntimeError, match="abandoned"):
            await handle.wait(1.0)


async def test_a_cancelled_wait_keeps_the_request_and_a_cancelled_receive_abandons_it() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        kept = ref.send_request(Later("kept"))
        dropped = ref.send_request(Later("dropped"))
        with anyio.move_on_after(0.05):
            await kept.wait(None)
        with anyio.move_on_after(0.05):
            await dropped.receive(None)
        assert not kept.done()
        assert dropped.done()
        await ref.cast(Release("kept"))
        assert await kept.wait(1.0) == "KEPT"


async def test_requests_pending_when_the_server_crashes_all_get_actor_exited() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        parked = [ref.send_request(Later(str(i))) for i in range(3)]  # NOREPLY: parked
        answered = [ref.send_request(Echo(i)) for i in range(3)]
        crash = ref.send_request(Boom())  # crashes the server while the parked ones wait
        queued = [ref.send_request(Echo(i)) for i in range(3)]  # never handled
        for handle in [*parked, crash, *queued]:
            with pytest.raises(otp.ActorExited) as exited:
                await handle.wait(2.0)
            assert isinstance(exited.value.reason, RuntimeError)
            assert isinstance(exited.value.__cause__, RuntimeError)
        # The requests queued before Boom were answered first.
        assert [await h.wait(1.0) for h in answered] == [0, 1, 2]


async def test_requests_queued_when_the_server_crashes_get_actor_exited() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        await ref.cast(Boom())  # crashes at the next turn, before the requests
        handles = [ref.send_request(Echo(i)) for i in range(5)]
        for handle in handles:
            with pytest.raises(otp.ActorExited):
                await handle.wait(2.0)


async def test_send_request_to_a_dead_actor_fails_at_once() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        await ref.stop()
        handle = ref.send_request(Echo(1))
        assert handle.done()
        with pytest.raises(otp.ActorExited) as exited:
            await handle.wait(0)
        assert exited.value.reason == "normal"


async def test_a_full_mailbox_refuses_or_drops_the_request() -> None:
    async with otp.Node() as node:
        gate = anyio.Event()

        class Slow(otp.GenServer):
            async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
                await gate.wait()
                return request

        full = await node.spawn(Slow, mailbox=otp.Mailbox(1, otp.Overflow.FAIL))
        first = full.send_request(1)
        await wait_until(lambda: full.statistics().mailbox.depth == 0)  # 1 is being handled
        second = full.send_request(2)  # fills the mailbox
        with pytest.raises(otp.MailboxFull):
            full.send_request(3)  # never waits: refused at once, as cast_nowait is
        blocking = await node.spawn(Slow, mailbox=otp.Mailbox(1))
        blocking.send_request(1)
        await wait_until(lambda: blocking.statistics().mailbox.depth == 0)
        blocking.send_request(2)
        with pytest.raises(otp.MailboxFull):
            blocking.send_request(3)  # BLOCK cannot block a call that does not await
        dropping = await node.spawn(Slow, mailbox=otp.Mailbox(1, otp.Overflow.DROP_NEWEST))
        dropping.send_request(1)
        await wait_until(lambda: dropping.statistics().mailbox.depth == 0)
        dropping.send_request(2)
        dropped = dropping.send_request(3)
        with pytest.raises(otp.MailboxFull):
            await dropped.wait(1.0)
        gate.set()
        assert [await first.wait(1.0), await second.wait(1.0)] == [1, 2]


async def test_many_concurrent_requests_get_their_own_replies() -> None:
    async with otp.Node() as node:
        servers = [await node.spawn(Server) for _ in range(4)]
        ids: otp.RequestIds[tuple[int, int]] = otp.RequestIds()
        for i in range(500):
            ids.add(servers[i % 4].send_request(Echo(i)), (i % 4, i))
        assert len(ids) == 500
        replies = await ids.wait_all(5.0)
        assert len(ids) == 0
        assert [(label, handle.result()) for handle, label in replies] == [
            ((i % 4, i), i) for i in range(500)
        ]
        # and from many tasks at once, each waiting on its own handles
        results: list[int] = []

        async def client(k: int) -> None:
            handles = [servers[k % 4].send_request(Echo(k * 100 + j)) for j in range(20)]
            results.extend([await h.wait(5.0) for h in handles])

        async with anyio.create_task_group() as tg:
            for k in range(20):
                tg.start_soon(client, k)
        assert sorted(results) == sorted(k * 100 + j for k in range(20) for j in range(20))


async def test_wait_any_returns_requests_in_completion_order_with_their_labels() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        ids: otp.RequestIds[str] = otp.RequestIds()
        for key in ("a", "b", "c"):
            ids.add(ref.send_request(Later(key)), f"label-{key}")
        assert ids.check() is None
        with pytest.raises(otp.CallTimeout):
            await ids.wait_any(0.05)
        assert len(ids) == 3  # wait_any keeps them on a timeout
        for key in ("c", "a", "b"):
            await ref.cast(Release(key))
        order = []
        while ids:
            handle, label = await ids.wait_any(1.0)
            order.append((label, handle.result()))
        assert order == [("label-c", "C"), ("label-a", "A"), ("label-b", "B")]
        with pytest.raises(ValueError, match="empty"):
            await ids.wait_any(1.0)


async def test_wait_any_reports_failures_as_completed_requests() -> None:
    async with otp.Node() as node:
        alive = await node.spawn(Server)
        doomed = await node.spawn(Server)
        ids: otp.RequestIds[str] = otp.RequestIds()
        ids.add(alive.send_request(Later("x")), "alive")
        ids.add(doomed.send_request(Later("y")), "doomed")
        await doomed.stop("shutdown")
        handle, label = await ids.wait_any(1.0)
        assert label == "doomed"
        with pytest.raises(otp.ActorExited):
            handle.result()
        found = ids.check()
        assert found is None
        await alive.cast(Release("x"))
        handle, label = await ids.wait_any(1.0)
        assert (label, handle.result()) == ("alive", "X")


async def test_receive_any_timeout_abandons_the_whole_collection() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        ids: otp.RequestIds[int] = otp.RequestIds()
        handles = [ref.send_request(Later(str(i))) for i in range(3)]
        for i, handle in enumerate(handles):
            ids.add(handle, i)
        with pytest.raises(otp.CallTimeout):
            await ids.receive_any(0.05)
        assert len(ids) == 0
        assert all(handle.done() for handle in handles)
        for i in range(3):
            await ref.cast(Release(str(i)))
        assert await ref.call("handled") == 4  # late replies dropped, the server is fine


async def test_wait_all_timeout_keeps_everything_in_the_collection() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        ids: otp.RequestIds[str] = otp.RequestIds()
        ids.add(ref.send_request(Echo(1)), "quick")
        ids.add(ref.send_request(Later("slow")), "slow")
        with pytest.raises(otp.CallTimeout):
            await ids.wait_all(0.1)
        assert [label for _, label in ids] == ["quick", "slow"]
        await ref.cast(Release("slow"))
        done = await ids.wait_all(1.0)
        assert [(label, handle.result()) for handle, label in done] == [
            ("quick", 1),
            ("slow", "SLOW"),
        ]


async def test_a_handle_belongs_to_one_collection_and_can_leave_it() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        handle = ref.send_request(Later("k"))
        first: otp.RequestIds[str] = otp.RequestIds()
        first.add(handle, "one")
        with pytest.raises(ValueError, match="already"):
            otp.RequestIds[str]().add(handle, "two")
        assert first.remove(handle) == "one"
        handle.abandon()  # abandoning a handle in no collection is fine
        other = ref.send_request(Later("m"))
        first.add(other, "m")
        other.abandon()  # an abandoned handle leaves its collection
        assert len(first) == 0


async def test_a_pool_sends_requests_to_its_workers() -> None:
    async with otp.Node() as node:
        pool = await node.start(otp.worker_pool("pool", Server, size=3))
        handles = [pool.send_request(Echo(i)) for i in range(6)]
        assert [await h.wait(1.0) for h in handles] == list(range(6))
        assert {h.target for h in handles} == set(pool.workers())


async def test_send_request_by_name_is_not_needed_but_call_by_name_is_there() -> None:
    async with otp.Node() as node:
        await node.spawn(Server, name="srv")
        ref = node.whereis("srv")
        assert ref is not None
        assert await ref.send_request(Echo(3)).wait(1.0) == 3


async def test_several_tasks_can_wait_on_one_collection() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Server)
        ids: otp.RequestIds[str] = otp.RequestIds()
        for key in ("a", "b"):
            ids.add(ref.send_request(Later(key)), key)
        got: list[str] = []

        async def waiter() -> None:
            handle, label = await ids.wait_any(2.0)
            got.append(f"{label}={handle.result()}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await wait_all_tasks_blocked()  # both are waiting on the collection
            await ref.cast(Release("b"))
            await ref.cast(Release("a"))
        assert sorted(got) == ["a=A", "b=B"]
        assert len(ids) == 0
