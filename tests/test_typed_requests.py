"""Typed requests at run time (otp.Call, otp.Ref, otp.Caller, otp.PoolSpec) and calls,
casts and sends by name (node.call / node.cast / node.send), on both backends.

What the type checkers infer is pinned by tests/typing/ (tests/test_typing.py)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import otp
from otp.testing import wait_for_name
from tests._helpers import Add, Counter, Crash, Get

pytestmark = pytest.mark.anyio


@otp.message("tests.typed.lookup")
@attrs.frozen
class Lookup(otp.Call[int]):
    key: str


@attrs.frozen
class Total(otp.Call[int]): ...


@attrs.define
class Mutable(otp.Call[list[int]]):
    items: list[int] = attrs.Factory(list)


class Plain(otp.Call[str]):
    def __init__(self, text: str) -> None:
        self.text = text


class Typed(otp.GenServer):
    async def init(self) -> None:
        self.callers: list[otp.Caller] = []

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        self.callers.append(caller)
        match request:
            case Lookup(key):
                return len(key)
            case Total():
                return 42
            case Mutable(items):
                return [*items, 1]
            case Plain(text=text):
                return text.upper()
            case _:
                return await super().handle_call(request, caller)


def test_call_subclasses_are_ordinary_messages() -> None:
    # attrs (frozen, slotted, no fields; mutable) and plain classes: equality, hashing,
    # matching and repr see only the subclass; the base adds no attribute.
    assert Total() == Total()
    assert hash(Lookup("a")) == hash(Lookup("a"))
    assert Lookup("a") != Lookup("b")
    assert repr(Lookup("a")) == "Lookup(key='a')"
    assert attrs.fields(Lookup) == attrs.fields(Lookup)  # still an attrs class
    assert [f.name for f in attrs.fields(Mutable)] == ["items"]
    assert not hasattr(Total(), "__dict__")  # slotted: Call keeps __slots__ = ()
    assert isinstance(Lookup("a"), otp.Call)
    assert Plain("x").text == "x"


def test_call_messages_cross_the_wire_unchanged() -> None:
    codec = otp.JsonCodec()
    assert codec.decode(codec.encode(Lookup("abc"))) == Lookup("abc")


async def test_typed_requests_get_their_replies_on_every_kind_of_ref() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Typed, name="typed")
        assert await ref.call(Lookup("abcd")) == 4
        assert await ref.call(Total()) == 42
        assert await ref.call(Mutable([0])) == [0, 1]
        assert await ref.call(Plain("hi")) == "HI"
        pool = await node.start(otp.worker_pool("typed-pool", Typed, size=2))
        assert isinstance(pool, otp.PoolRef)
        assert [await pool.call(Total()) for _ in range(3)] == [42, 42, 42]
        sup = await node.start(otp.supervisor("typed-sup", [otp.worker(Typed, name="t2")]))
        assert isinstance(sup, otp.SupervisorRef)
        assert not isinstance(sup, otp.PoolRef)
        subpool = await sup.start_child(otp.worker_pool("typed-subpool", Typed))
        assert isinstance(subpool, otp.PoolRef)
        assert await subpool.call(Total()) == 42


async def test_refs_satisfy_the_ref_protocol_and_callers_are_opaque() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Typed)
        sup = await node.start(otp.supervisor("s", []))
        assert isinstance(ref, otp.Ref)
        assert isinstance(sup, otp.Ref)
        assert not isinstance(object(), otp.Ref)
        await ref.call(Total())
        (caller,) = (await ref.get_state())["callers"]
        assert isinstance(caller, otp.Caller)
        # The public type has nothing to call on it: answers go through self.reply.
        assert [name for name in vars(otp.Caller) if not name.startswith("_")] == []


def test_worker_pool_returns_a_pool_spec_that_is_a_supervisor_spec() -> None:
    spec = otp.worker_pool("p", Counter, 1, size=2)
    assert isinstance(spec, otp.SupervisorSpec)
    assert spec.dispatch == otp.ROUND_ROBIN
    assert otp.PoolSpec(spec) is spec  # typing only


# ---------------------------------------------------------------------------- by name


async def test_node_call_resolves_the_name_at_each_call() -> None:
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("by-name", [otp.worker(Counter, 5, name="counter")]))
        assert await node.call("counter", Get()) == 5
        assert await node.call("counter", Add(2), timeout=1.0) == 7
        old = node.whereis("counter")
        await node.cast("counter", Crash())
        new = await wait_for_name(node, "counter", not_ref=old)
        # The name now stands for the restarted incarnation: no stale ref anywhere.
        assert await node.call("counter", Get()) == 5
        assert node.whereis("counter") is new
        await node.send("counter", "hello")
        assert await node.call("counter", "infos") == ["hello"]
        await sup.stop()


async def test_node_cast_reaches_handle_cast_and_send_reaches_handle_info() -> None:
    async with otp.Node() as node:
        await node.spawn(Counter, 0, name="c")
        await node.cast("c", Add(3))
        await node.send("c", "info")
        assert await node.call("c", Get()) == 3
        assert await node.call("c", "infos") == ["info"]


async def test_call_and_send_to_a_name_nobody_holds_raise_noproc() -> None:
    async with otp.Node() as node:
        with pytest.raises(otp.ActorExited) as called:
            await node.call("nobody", Get())
        assert called.value.reason == "noproc"
        assert "'nobody'" in str(called.value)
        with pytest.raises(otp.ActorExited) as sent:
            await node.send("nobody", "hi")
        assert sent.value.reason == "noproc"


async def test_cast_to_a_name_nobody_holds_is_a_dead_letter() -> None:
    async with otp.Node() as node:
        events: list[otp.Event] = []
        node.add_event_listener(events.append)
        await node.cast("nobody", Add(1))  # gen_server:cast never fails
        letters = [e for e in events if e.kind == "dead_letter"]
        assert [(e.actor, e.reason, e.detail) for e in letters] == [("nobody", "noproc", Add(1))]
        assert node.broker.statistics().dead_letters == 1


async def test_a_name_freed_by_an_exit_is_noproc_again() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter, 0, name="short")
        assert await node.call("short", Get()) == 0
        await ref.stop()
        with pytest.raises(otp.ActorExited) as exited:
            await node.call("short", Get())
        assert exited.value.reason == "noproc"


async def test_node_call_keeps_call_semantics() -> None:
    async with otp.Node() as node:
        await node.spawn(Counter, 0, name="c")
        with pytest.raises(otp.ActorExited) as crashed:
            await node.call("c", Crash("bad"))
        assert isinstance(crashed.value.__cause__, RuntimeError)
        await node.spawn(Counter, 0, name="slow")
        with pytest.raises(otp.CallTimeout):
            await node.call("slow", Get(), timeout=0)


async def test_global_names_are_called_by_name_too() -> None:
    async with otp.Node() as node:
        await node.spawn(Counter, 4, name=otp.Global("g"))
        assert await node.call(otp.Global("g"), Get()) == 4
        assert await node.call("g", Get()) == 4
        with pytest.raises(otp.ActorExited) as exited:
            await node.call(otp.Global("nobody"), Get())
        assert exited.value.reason == "noproc"


@pytest.mark.parametrize(
    ("function", "options"),
    [
        (otp.worker, "WorkerOptions"),
        (otp.worker_pool, "PoolOptions"),
        (otp.Node.spawn, "SpawnOptions"),
    ],
    ids=["worker", "worker_pool", "spawn"],
)
def test_typed_options_match_the_keyword_parameters(function: Any, options: str) -> None:
    # The overloads type the runtime options through a TypedDict: a keyword added to the
    # implementation must be added there too, or type checkers reject it.
    import inspect

    import otp._node
    import otp._specs

    module = otp._specs if hasattr(otp._specs, options) else otp._node
    typed = set(getattr(module, options).__annotations__)
    parameters = inspect.signature(function).parameters.values()
    keywords = {
        p.name
        for p in parameters
        if p.default is not inspect.Parameter.empty and p.kind is not p.VAR_POSITIONAL
    }
    if function is otp.worker_pool:
        keywords -= {"name", "cls"}
    assert typed == keywords


def test_spawn_link_options_are_spawn_options_without_link() -> None:
    from otp._node import SpawnLinkOptions, SpawnOptions

    assert set(SpawnOptions.__annotations__) - set(SpawnLinkOptions.__annotations__) == {"link"}
