"""The wire codec: round trips of registered attrs messages (hypothesis), the plain-value
tree, and refusals: unknown types, malformed and oversized payloads, unencodable values."""

from __future__ import annotations

import datetime
import enum
import json
import uuid
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import otp

# ---------------------------------------------------------------------------- messages


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@otp.message("codec.point")
@attrs.frozen
class Point:
    x: int
    y: float


@otp.message("codec.line")
@attrs.frozen
class Line:
    name: str
    points: list[Point]
    tags: frozenset[str] = frozenset()
    colour: Colour = Colour.RED
    parent: Line | None = None


@otp.message("codec.envelope")
@attrs.frozen
class Wrapper:
    """An ``Any`` field keeps nested registered messages and plain values typed."""

    payload: Any
    meta: dict[str, int] = attrs.field(factory=dict)
    pair: tuple[int, str] = (0, "")
    stamp: datetime.datetime | None = None
    key: uuid.UUID | None = None
    blob: bytes = b""


@otp.message("codec.empty")
@attrs.frozen
class Empty:
    pass


CODECS: list[Any] = [otp.JsonCodec]
try:
    import msgpack  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    CODECS.append(otp.MsgpackCodec)


# ---------------------------------------------------------------------------- strategies

_text = st.text(max_size=12)
_ints = st.integers(-(2**63), 2**63 - 1)  # msgpack's range
_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
_points = st.builds(Point, st.integers(-(2**53), 2**53), _floats)
_lines = st.recursive(
    st.builds(
        Line,
        _text,
        st.lists(_points, max_size=3),
        st.frozensets(_text, max_size=3),
        st.sampled_from(Colour),
    ),
    lambda inner: st.builds(
        Line,
        _text,
        st.lists(_points, max_size=2),
        st.frozensets(_text, max_size=2),
        st.sampled_from(Colour),
        inner,
    ),
    max_leaves=4,
)
_plain = st.recursive(
    st.none() | st.booleans() | _ints | _floats | _text | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(_text, inner, max_size=3)
        | st.dictionaries(_ints, inner, max_size=2)
        | st.frozensets(_ints, max_size=3)
    ),
    max_leaves=5,
)
_values = st.recursive(
    _plain | _lines | _points | st.just(Empty()),
    lambda inner: (
        st.builds(
            Wrapper,
            inner,
            st.dictionaries(_text, st.integers(-100, 100), max_size=2),
            st.tuples(st.integers(-100, 100), _text),
            st.none() | st.datetimes(timezones=st.just(datetime.UTC)),
            st.none() | st.uuids(),
            st.binary(max_size=8),
        )
        | st.lists(inner, max_size=2)
    ),
    max_leaves=4,
)


@pytest.mark.parametrize("codec_class", CODECS, ids=lambda c: c.name)
@settings(max_examples=60, deadline=None)
@given(value=_values)
def test_round_trip(codec_class: type[otp.Codec], value: Any) -> None:
    codec = codec_class()
    data = codec.encode(value)
    assert isinstance(data, bytes)
    assert codec.decode(data) == value
    assert type(codec.decode(data)) is type(value)


def test_messages_travel_under_their_wire_name() -> None:
    codec = otp.JsonCodec()
    tree = json.loads(codec.encode(Point(1, 2.5)))
    assert tree == {"$msg": "codec.point", "$v": {"x": 1, "y": 2.5}}
    assert "test_codec" not in codec.encode(Line("l", [Point(1, 2.0)])).decode()


def test_plain_values_stay_readable() -> None:
    codec = otp.JsonCodec()
    assert json.loads(codec.encode({"a": [1, "x", None]})) == {"a": [1, "x", None]}
    assert codec.decode(codec.encode((1, 2))) == (1, 2)
    assert codec.decode(codec.encode({"$x": 1})) == {"$x": 1}
    assert codec.decode(codec.encode({1: "a"})) == {1: "a"}


# ---------------------------------------------------------------------------- refusals


def reason_of(codec: otp.Codec, data: bytes) -> str:
    with pytest.raises(otp.CodecError) as caught:
        codec.decode(data)
    assert isinstance(caught.value, ValueError)
    return caught.value.reason


def test_unknown_type_is_refused_not_imported() -> None:
    codec = otp.JsonCodec()
    data = b'{"$msg": "os.system", "$v": {"command": "echo pwned"}}'
    assert reason_of(codec, data) == "unknown_type"
    # A Python path is not a wire name either.
    assert reason_of(codec, b'{"$msg": "tests.test_codec.Point", "$v": {}}') == "unknown_type"


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"\xff\xfe",
        b'{"$msg": "codec.point", "$v": {"x": "not a number", "y": 1}}',
        b'{"$msg": "codec.point", "$v": {"y": 1}}',
        b'{"$msg": "codec.point"}',
        b'{"$msg": 5, "$v": {}}',
        b'{"$tuple": 5}',
        b'{"$tuple": [], "extra": 1}',
        b'{"$bytes": "!!!"}',
        b'{"$dict": [[1]]}',
        b'{"$what": []}',
        b'{"$ref": {"n": "a"}}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_malformed_payloads_are_refused(data: bytes) -> None:
    assert reason_of(otp.JsonCodec(), data) == "malformed"


def test_oversized_payloads_are_refused_before_parsing() -> None:
    codec = otp.JsonCodec(max_size=100)
    assert reason_of(codec, b'"' + b"x" * 200 + b'"') == "oversized"
    with pytest.raises(ValueError, match="max_size"):
        otp.JsonCodec(max_size=0)


def test_unencodable_values_say_what_to_do() -> None:
    @attrs.frozen
    class Unregistered:
        x: int

    codec = otp.JsonCodec()
    with pytest.raises(otp.CodecError, match=r"@otp\.message") as caught:
        codec.encode(Unregistered(1))
    assert caught.value.reason == "unencodable"
    with pytest.raises(otp.CodecError, match="cannot cross the wire"):
        codec.encode(object())
    with pytest.raises(otp.CodecError, match="cannot cross the wire"):
        codec.encode(Wrapper(payload=object()))


def test_refs_need_a_broker() -> None:
    codec = otp.JsonCodec()
    with pytest.raises(otp.CodecError, match="broker"):
        codec.decode(b'{"$ref": {"n": "a", "a": 1}}')


def test_undecodable_keeps_a_sample() -> None:
    error = otp.CodecError("malformed", "bad")
    letter = otp.Undecodable.of(error, b"x" * 1000)
    assert (letter.reason, letter.size, len(letter.data)) == ("malformed", 1000, 256)
    assert "..." in repr(letter)


def test_msgpack_refuses_extension_types() -> None:
    msgpack = pytest.importorskip("msgpack")
    codec = otp.MsgpackCodec()
    assert reason_of(codec, msgpack.packb(msgpack.ExtType(5, b"x"))) == "malformed"
    assert reason_of(codec, b"\xc1") == "malformed"
    assert reason_of(codec, msgpack.packb({1: 2}, strict_types=False) + b"x") == "malformed"


@otp.message("codec.containers_of_any")
@attrs.frozen
class ContainersOfAny:
    items: list[Any]
    pair: tuple[int, Any]
    rest: tuple[Any, ...]
    by_key: dict[str, Any]
    unique: frozenset[Any] = frozenset()


def test_containers_of_any_restore_their_items() -> None:
    # cattrs copies list[Any] items as they are; the codec restores tuples, bytes,
    # registered messages and refs inside them as it does in a bare Any field.
    value = ContainersOfAny(
        [(1, 2), b"x", Point(1, 2.0)], (3, (4,)), ((5,),), {"k": (6, 7)}, frozenset({(8,)})
    )
    for make in CODECS:
        codec = make()
        assert codec.decode(codec.encode(value)) == value
    codec = otp.JsonCodec()
    tree = codec.to_wire(value)
    tree["$v"]["pair"] = [1]
    with pytest.raises(otp.CodecError, match="expected 2 items"):
        codec.from_wire(tree)
    tree["$v"]["pair"] = {"a": 1}
    with pytest.raises(otp.CodecError):
        codec.from_wire(tree)
