"""Child specs, supervisor requests/replies and anyotp's errors through the codec (what a
remote supervisor operation sends); the operations across nodes: tests/test_redis_cluster.py."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import otp
from otp._supervisor_ops import (
    CountChildren,
    DeleteChild,
    RestartChild,
    StartChild,
    TerminateChild,
    WhichChildren,
    _Call,
    _Failed,
)


@otp.message("tests.spec_wire.worker")
class Registered(otp.GenServer):
    pass


class Unregistered(otp.GenServer):
    pass


@otp.message("tests.spec_wire.not_a_server")
class NotAServer:
    pass


CODECS = [otp.JsonCodec()]
try:
    CODECS.append(otp.MsgpackCodec())
except ImportError:  # pragma: no cover - msgpack is optional
    pass


@pytest.fixture(params=CODECS, ids=lambda c: c.name)
def codec(request: pytest.FixtureRequest) -> otp.Codec:
    return request.param  # type: ignore[no-any-return]


def roundtrip(codec: otp.Codec, value: Any) -> Any:
    return codec.decode(codec.encode(value))


def test_worker_and_supervisor_specs_cross_by_class_name(codec: otp.Codec) -> None:
    spec = otp.worker(
        Registered,
        1,
        ("a", b"b"),
        name=otp.Global("svc"),
        id="w",
        restart=otp.TRANSIENT,
        shutdown=otp.BRUTAL_KILL,
        mailbox=otp.Mailbox(3, otp.Overflow.DROP_OLDEST),
        backoff=otp.Backoff(min=0.5),
    )
    back = roundtrip(codec, _Call("start_child", spec))
    assert back == _Call("start_child", spec)
    assert type(back.arg.name) is otp.Global
    tree = otp.supervisor("s", [spec, otp.worker(Registered, id="x")], strategy=otp.REST_FOR_ONE)
    assert roundtrip(codec, tree) == tree
    dynamic = otp.dynamic_supervisor("d", max_children=2)
    assert roundtrip(codec, dynamic) == dynamic


def test_a_class_without_wire_name_or_unknown_there_is_a_clear_error(codec: otp.Codec) -> None:
    with pytest.raises(otp.CodecError, match="has no wire name"):
        codec.encode(otp.worker(Unregistered))
    with pytest.raises(otp.CodecError, match=r"no GenServer class is registered as 'tests\.nope'"):
        codec.decode(_renamed(codec))
    bad = codec.to_wire(otp.worker(Registered))
    bad["$v"]["cls"] = "tests.spec_wire.not_a_server"
    with pytest.raises(otp.CodecError, match="not a GenServer"):
        codec.from_wire(bad)
    bad["$v"]["cls"] = "tests.spec_wire.worker"
    bad["$v"]["surprise"] = 1
    with pytest.raises(otp.CodecError, match="unknown here"):
        codec.from_wire(bad)
    pool = otp.worker_pool("p", Registered, dispatch=otp.CONSISTENT_HASH, key=str)
    with pytest.raises(otp.CodecError, match="cannot cross the wire"):
        codec.encode(pool)


def _renamed(codec: otp.Codec) -> bytes:
    tree = codec.to_wire(otp.worker(Registered))
    tree["$v"]["cls"] = "tests.nope"
    return codec.dumps(tree)


def test_supervisor_errors_cross_as_themselves(codec: otp.Codec) -> None:
    for error in (
        otp.NotFound("child 'x'", "supervisor 's'"),
        otp.ChildRunning("x", "s"),
        otp.AlreadyPresent("x", "s"),
        otp.MaxChildren("s", 3),
        otp.NameTaken("svc"),
    ):
        back = roundtrip(codec, _Failed(error))
        assert type(back.error) is type(error) and str(back.error) == str(error)
    # A cause the wire does not know arrives as an otp.RemoteError, also the __cause__.
    failed = roundtrip(codec, _Failed(otp.StartFailed("w", ValueError("bad"), "s"))).error
    assert isinstance(failed, otp.StartFailed) and failed.child == "w"
    assert failed.reason == otp.RemoteError("ValueError", "bad") == failed.__cause__
    # An unregistered exception alone cannot be sent.
    with pytest.raises(otp.CodecError, match="no wire name"):
        codec.encode(ValueError("x"))


def test_hostile_error_nodes_are_codec_errors(codec: otp.Codec) -> None:
    for tree in (
        {"$error": "x"},
        {"$error": ["$otp.error.NotFound", "notalist"]},
        {"$error": ["no.such.error", []]},
        {"$error": ["tests.spec_wire.worker", []]},  # registered, not an exception
        {"$error": ["$otp.error.NotFound", [1, 2, 3, 4, 5]]},  # wrong arity
    ):
        with pytest.raises(otp.CodecError):
            codec.from_wire(tree)


def test_child_info_and_count_cross(codec: otp.Codec) -> None:
    info = otp.ChildInfo("a", None, "worker", otp.TEMPORARY, True)
    assert roundtrip(codec, [info]) == [info]
    count = otp.ChildCount(1, 0, 0, 1)
    assert roundtrip(codec, count) == count


OPERATIONS = [
    WhichChildren(),
    CountChildren(),
    StartChild(otp.worker(Registered, id="w")),
    TerminateChild("w"),
    RestartChild("w"),
    DeleteChild("w"),
]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: type(op).__name__)
def test_typed_operations_cross_in_the_wire_form_nodes_have_always_sent(
    codec: otp.Codec, operation: Any
) -> None:
    # On the wire an operation is _Call(name, its one field): what older nodes send and read.
    wire = operation.wire()
    fields = attrs.astuple(operation, recurse=False)
    assert wire == _Call(operation.wire_name, fields[0] if fields else None)
    assert roundtrip(codec, wire).operation() == operation
    assert _Call("no_such_op").operation() is None


class Echo(otp.GenServer):
    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return request


@pytest.mark.anyio
async def test_a_supervisor_serves_the_wire_form_as_a_remote_node_sends_it() -> None:
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("s", [otp.worker(Echo, id="a")]))
        [info] = await sup.call(_Call("which_children"))
        assert info.id == "a" and info.ref is not None
        child = await sup.call(_Call("start_child", otp.worker(Echo, id="b")))
        assert await child.call("hi") == "hi"
        assert await sup.call(_Call("count_children")) == otp.ChildCount(2, 2, 0, 2)
        refused = await sup.call(_Call("restart_child", "b"))
        assert isinstance(refused, _Failed) and isinstance(refused.error, otp.ChildRunning)
        assert await sup.call(_Call("terminate_child", "b")) is None
        assert await sup.call(_Call("delete_child", "b")) is None
        assert [c.id for c in await sup.which_children()] == ["a"]
