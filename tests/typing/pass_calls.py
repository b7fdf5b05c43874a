"""User code that must type-check under mypy --strict and pyright strict, with the
inferred types pinned by ``assert_type``. Checked by tests/typing/check.py."""

from __future__ import annotations

from typing import Any, assert_type

import attrs

import otp


@attrs.frozen
class Get(otp.Call[int]): ...  # no fields


@attrs.frozen
class Put(otp.Call[None]):
    key: str
    value: int


@attrs.define
class Lookup(otp.Call[str | None]):  # a mutable attrs class works as well
    key: str


class Keys(otp.Call[list[str]]):  # and a plain class
    pass


@attrs.frozen
class Add:  # an untyped message: call() returns Any for it
    n: int


class Store(otp.GenServer):
    async def init(self, start: int = 0) -> None:
        self.total = start
        self.data: dict[str, int] = {}

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case Get():
                return self.total
            case Put(key, value):
                self.data[key] = value
                return None
            case Lookup(key):
                return str(self.data.get(key))
            case Keys():
                # a reply given later: NOREPLY now, self.reply(caller, ...) afterwards
                self.reply(caller, list(self.data))
                return otp.NOREPLY
            case _:
                return await super().handle_call(request, caller)

    async def handle_info(self, message: Any) -> None:
        match message:
            case otp.Down(ref, reason):
                assert_type(ref, otp.Ref)
                assert_type(reason, Any)
            case _:
                await super().handle_info(message)


async def calls(ref: otp.ActorRef) -> None:
    assert_type(await ref.call(Get()), int)
    assert_type(await ref.call(Get(), timeout=1.0), int)
    assert_type(await ref.call(Put("a", 1)), None)
    assert_type(await ref.call(Lookup("a")), str | None)
    assert_type(await ref.call(Keys()), list[str])
    assert_type(await ref.call(Add(1)), Any)  # plain requests stay Any
    total: int = await ref.call(Get())
    maybe: int | None = await ref.call(Get())  # a wider context is fine
    ratio: float = await ref.call(Get())
    anything: object = await ref.call(Get())
    del total, maybe, ratio, anything


async def refs(node: otp.Node) -> None:
    ref = await node.spawn(Store, 5, name="store")
    assert_type(ref, otp.ActorRef)
    found = node.whereis("store")
    assert_type(found, otp.ActorRef | None)
    if found is not None:
        assert_type(await found.call(Get()), int)
    located = await node.locate("store")
    assert_type(located, otp.Ref | None)
    if located is not None:
        assert_type(await located.call(Get()), int)

    sup = await node.start(otp.supervisor("sup", [otp.worker(Store, 1, name="a")]))
    assert_type(sup, otp.SupervisorRef)
    assert_type(await sup.call(Get()), int)  # a SupervisorRef is an ActorRef
    pool = await node.start(otp.worker_pool("pool", Store, 0, size=2))
    assert_type(pool, otp.PoolRef)
    assert_type(await pool.call(Get()), int)
    worker = await node.start(otp.worker(Store))
    assert_type(worker, otp.ActorRef)

    # None when the child's init returns otp.IGNORE (OTP's {ok, undefined}).
    child = await sup.start_child(otp.worker(Store, name="b"))
    assert_type(child, otp.ActorRef | None)
    sub = await sup.start_child(otp.supervisor("sub", []))
    assert_type(sub, otp.SupervisorRef | None)
    subpool = await sup.start_child(otp.worker_pool("subpool", Store))
    assert_type(subpool, otp.PoolRef | None)


async def by_name(node: otp.Node) -> None:
    assert_type(await node.call("store", Get()), int)
    assert_type(await node.call("store", Get(), timeout=None), int)
    assert_type(await node.call("store", Add(1)), Any)
    await node.cast("store", Add(1))
    await node.send("store", Add(1))


async def any_ref(ref: otp.Ref) -> int:
    """One function for local and remote refs alike."""
    await ref.cast(Add(1))
    return await ref.call(Get())


async def remote(ref: otp.RemoteRef, local: otp.ActorRef) -> None:
    assert_type(await ref.call(Get()), int)
    assert_type(await any_ref(ref), int)
    assert_type(await any_ref(local), int)
    pinned: otp.Ref = local
    assert isinstance(pinned, otp.Ref)  # runtime_checkable


async def requests(ref: otp.ActorRef, pool: otp.PoolRef) -> None:
    handle = ref.send_request(Get())
    assert_type(handle, otp.RequestId[int])
    assert_type(await handle.wait(1.0), int)
    assert_type(await handle.receive(None), int)
    assert_type(handle.result(), int)
    assert_type(pool.send_request(Lookup("k")), otp.RequestId[str | None])
    assert_type(ref.send_request(Add(1)), otp.RequestId[Any])
    ids: otp.RequestIds[str] = otp.RequestIds()
    ids.add(handle, "get")
    done, label = await ids.wait_any(1.0)
    assert_type(label, str)
    assert_type(done, otp.RequestId[Any])
    for finished, name in await ids.wait_all(None):
        assert_type(finished, otp.RequestId[Any])
        assert_type(name, str)


async def broker_requests(node: otp.Node, server: otp.GenServer) -> None:
    assert_type(await node.broker.request("store.get", Get()), int)
    assert_type(await node.broker.request("store.get", Get(), timeout=None), int)
    assert_type(await node.broker.request("store.any", Add(1)), Any)
    assert_type(await server.request("store.get", Get()), int)


def monitors(server: otp.GenServer, ref: otp.Ref) -> None:
    monitor = server.monitor(ref)
    assert_type(monitor.target, otp.Ref)


def main() -> None:
    async def run() -> int:
        async with otp.Node() as node:
            ref = await node.spawn(Store, 2)
            await ref.call(Put("x", 1))
            return await ref.call(Get())

    assert otp.run(run) == 2


if __name__ == "__main__":
    main()
