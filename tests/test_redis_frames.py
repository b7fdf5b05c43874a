"""The wire frames of the Redis layer: every field is checked, whatever the bytes.

Property tests of the decoder (hypothesis) and the hostile payloads of issue 10 as
regression tests, at the decoder level; tests/test_redis_hostile.py sends them to live
nodes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("coredis", reason="the Redis broker needs coredis (pip install anyotp[redis])")

import otp
from otp.redis import _frames as frames
from otp.redis._frames import Call, Cast, ExitSignal, Pub, Reply, Target, WireRef, decode, encode

ME = {"node": "a", "incarnation": "0123abcd"}

_names = st.text(
    # No lone surrogates: they cannot be sent as UTF-8 at all (the codec refuses them).
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=".*# \t\n\r\x0b\x0c"),
    min_size=1,
    max_size=20,
).filter(lambda s: not any(c.isspace() for c in s))
_ids = st.integers(min_value=0, max_value=frames.MAX_INT)
_trees = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.text(max_size=4).filter(lambda k: not k.startswith("$")), inner, max_size=3
        )
    ),
    max_leaves=10,
)
_good_frames = st.one_of(
    st.builds(
        lambda cid, name, actor, m, dl: Call(
            cid=cid, to=Target(name=name, id=actor), message=m, deadline=dl, **ME
        ),
        _ids,
        _names,
        st.none() | _ids,
        _trees,
        st.none() | st.floats(min_value=0, max_value=1e10),
    ),
    st.builds(
        lambda name, m, fl, sq: Cast(to=Target(name=name), message=m, flow=fl, seq=sq, **ME),
        _names,
        _trees,
        st.none() | _ids,
        st.none() | _ids,
    ),
    st.builds(
        lambda name, why, sender: ExitSignal(
            to=Target(name=name), why={"v": why}, sender=sender, **ME
        ),
        _names,
        _trees,
        st.none() | st.builds(lambda i: WireRef(node="b", id=i, incarnation="ab"), _ids),
    ),
    st.builds(
        lambda cid, status, v: Reply(cid=cid, status=status, value=v, **ME),
        _ids,
        st.sampled_from(sorted(frames.REPLY_STATUSES)),
        _trees,
    ),
    st.builds(
        lambda i, segs, m, ts, p: Pub(
            id=i,
            topic=".".join(segs),
            message=m,
            timestamp=ts,
            priority=p,
            sender=WireRef(node="b", id=1),
            **ME,
        ),
        st.text(max_size=20),
        st.lists(_names, min_size=1, max_size=4),
        _trees,
        st.floats(min_value=0, max_value=1e10),
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
    ),
)


@settings(max_examples=200, deadline=None)
@given(_good_frames)
def test_every_good_frame_round_trips_through_json(frame: frames.Frame) -> None:
    codec = otp.JsonCodec()
    data = codec.dumps(encode(frame))
    assert decode(codec.loads(data)) == frame


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=6,
)
_keys = st.sampled_from(
    [
        "k",
        "f",
        "fi",
        "c",
        "to",
        "m",
        "dl",
        "fl",
        "sq",
        "s",
        "v",
        "mid",
        "why",
        "nm",
        "a",
        "i",
        "t",
        "ts",
        "r",
        "h",
        "p",
        "n",
    ]
)
_kinds = st.sampled_from([*frames.FRAMES, "zzz", "", 1, None, [], {}])


@settings(max_examples=500, deadline=None)
@given(kind=_kinds, fields=st.dictionaries(_keys, _json_values, max_size=10))
def test_the_decoder_raises_only_codec_errors(kind: Any, fields: dict[str, Any]) -> None:
    tree = {**fields, "k": kind}
    try:
        frame = decode(tree)
    except otp.CodecError as error:
        reason = error.reason
    else:
        reason = None
    if reason is not None:
        assert reason == "malformed"
        return
    # Whatever it accepts is well-formed: types exact, numbers finite and in range.
    for attribute in frames.attrs.fields(type(frame)):
        value = getattr(frame, attribute.name)
        if isinstance(value, float):
            assert math.isfinite(value) and value >= 0
        if isinstance(value, int) and not isinstance(value, bool) and attribute.name != "priority":
            assert 0 <= value <= frames.MAX_INT
    assert frame.kind == kind


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_anything_but_codec_errors(data: bytes) -> None:
    codec = otp.JsonCodec()
    try:
        decode(codec.loads(data))
    except otp.CodecError:
        pass


# The payloads that crashed nodes (issue 10), as trees a node decodes.
HOSTILE = {
    "call with a list target id": {
        "k": "call",
        "f": "x",
        "fi": "ab",
        "c": 1,
        "to": {"a": [1]},
        "m": 1,
    },
    "call with a dict target id": {
        "k": "call",
        "f": "x",
        "fi": "ab",
        "c": 1,
        "to": {"a": {"x": 1}},
        "m": 1,
    },
    "call with a list target name": {
        "k": "call",
        "f": "x",
        "fi": "ab",
        "c": 1,
        "to": {"nm": ["c"]},
        "m": 1,
    },
    "call with tm NaN": {
        "k": "call",
        "f": "x",
        "fi": "ab",
        "c": 1,
        "to": {"nm": "c"},
        "m": 1,
        "tm": math.nan,
        "dl": math.nan,
    },
    "call with an infinite deadline": {
        "k": "call",
        "f": "x",
        "fi": "ab",
        "c": 1,
        "to": {"nm": "c"},
        "m": 1,
        "dl": math.inf,
    },
    "call with a negative deadline": {
        "k": "call",
        "f": "x",
        "fi": "ab",
        "c": 1,
        "to": {"nm": "c"},
        "m": 1,
        "dl": -1.0,
    },
    "call with a bool call id": {
        "k": "call",
        "f": "x",
        "fi": "ab",
        "c": True,
        "to": {"nm": "c"},
        "m": 1,
    },
    "call with a huge call id": {
        "k": "call",
        "f": "x",
        "fi": "ab",
        "c": 2**64,
        "to": {"nm": "c"},
        "m": 1,
    },
    "mon with a list id": {"k": "mon", "f": "x", "fi": "ab", "mid": [1], "to": {"a": 1}},
    "mon with a list target": {"k": "mon", "f": "x", "fi": "ab", "mid": 1, "to": [1]},
    "pub on wild..x": {"k": "pub", "f": "x", "fi": "ab", "i": "1", "t": "wild..x", "m": 1, "ts": 0},
    "pub on an inbox with a space": {
        "k": "pub",
        "f": "x",
        "fi": "ab",
        "i": "1",
        "t": "$otp.inbox.a.x y",
        "m": 1,
        "ts": 0,
    },
    "pub with a NaN timestamp": {
        "k": "pub",
        "f": "x",
        "fi": "ab",
        "i": "1",
        "t": "a.b",
        "m": 1,
        "ts": math.nan,
    },
    "pub with bad headers": {
        "k": "pub",
        "f": "x",
        "fi": "ab",
        "i": "1",
        "t": "a.b",
        "m": 1,
        "ts": 0,
        "h": {"a": 1},
    },
    "reply with an unknown status": {
        "k": "reply",
        "f": "x",
        "fi": "ab",
        "c": 1,
        "s": "boom",
        "v": 1,
    },
    "exit with a list target id": {
        "k": "exit",
        "f": "x",
        "fi": "ab",
        "to": {"a": [1]},
        "why": {"v": "kill"},
    },
    "exit with a sender that is no ref": {
        "k": "exit",
        "f": "x",
        "fi": "ab",
        "to": {"nm": "counter"},
        "why": {"v": "kill"},
        "s": {"n": 1, "a": 1},
    },
    "a node name with a dot": {"k": "bye", "f": "x.y", "fi": "ab"},
    "an unknown kind": {"k": "rm -rf", "f": "x", "fi": "ab"},
    "no kind": {"f": "x", "fi": "ab"},
    "not a map": [1, 2, 3],
}


@pytest.mark.parametrize("tree", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_trees_are_malformed(tree: Any) -> None:
    with pytest.raises(otp.CodecError) as caught:
        decode(tree)
    assert caught.value.reason == "malformed"


def test_deep_and_huge_payloads_are_refused() -> None:
    codec = otp.JsonCodec()
    with pytest.raises(otp.CodecError) as caught:
        codec.loads(b"[" * 100_000 + b"]" * 100_000)
    assert caught.value.reason == "malformed"
    with pytest.raises(otp.CodecError) as caught:
        codec.loads(b"[" * (2 << 20))
    assert caught.value.reason == "oversized"
    deep: Any = 1
    for _ in range(2000):
        deep = [deep]
    text = json.dumps({"k": "cast", "f": "x", "fi": "ab", "to": {"nm": "c"}, "m": 1})
    frame = decode(json.loads(text))
    with pytest.raises(otp.CodecError):
        codec.from_wire(deep)
    assert frame.kind == "cast"


def test_the_hot_encoders_write_what_the_decoder_reads() -> None:
    pub = frames.pub_tree(
        "a", "0123abcd", "x-1", "a.b", 1, 5.0, {"n": "a", "a": 3}, "r.s", {"h": "v"}, 2
    )
    assert decode(pub) == Pub(
        id="x-1",
        topic="a.b",
        message=1,
        timestamp=5.0,
        sender=WireRef(node="a", id=3),
        reply_to="r.s",
        headers={"h": "v"},
        priority=2,
        **ME,
    )
    to = frames.target_tree(Target(name="svc", id=4))
    cast = frames.post_tree("send", "a", "0123abcd", to, [1], 7, 8)
    assert decode(cast) == frames.Send(
        to=Target(name="svc", id=4), message=[1], flow=7, seq=8, **ME
    )
