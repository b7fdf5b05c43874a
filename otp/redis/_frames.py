"""The wire frames nodes exchange on Redis: attrs classes, decoded by cattrs, every field
checked.

A frame is a codec tree (a map) with short keys, serialized by the broker's codec. Topic
channels carry :class:`Pub` frames; a node's control channel carries the others. Every
frame names its sender node (``f``) and that node's incarnation (``fi``, random per run).

====== ======================== ================================================
kind   class                    fields on the wire
====== ======================== ================================================
pub    :class:`Pub`             i id, t topic, m message, ts time, s sender ref,
                                r reply_to, h headers, p priority
call   :class:`Call`            c call id, to target, m request, dl deadline
cast   :class:`Cast`            to, m, fl flow, sq sequence number in the flow
send   :class:`Send`            as cast (to ``handle_info``)
stop   :class:`Stop`            c, to, why reason
exit   :class:`ExitSignal`      to, why reason, s sender ref (``erlang:exit/2``)
reply  :class:`Reply`           c, s status (ok, exit, full, raise, err), v value
mon    :class:`Monitor`         mid monitor id, to
demon  :class:`Demonitor`       mid
down   :class:`DownNotice`      mid, why
whereis :class:`Whereis`        c, nm name
where  :class:`Where`           c, nm, a actor id (absent: not here)
credit :class:`Credit`          fl, n: the flow's messages consumed so far, b: its
                                actor's mailbox is full and frames wait (``BLOCK``)
sync   :class:`Sync`            fl, n: the flow's last sequence number sent
hello  :class:`Hello`           (on the cluster channel) a node is up
bye    :class:`Bye`             a node leaves
====== ======================== ================================================

A target (``to``) is ``{"nm": name, "a": actor id, "i": node incarnation}`` (a name or an
id, or both); an actor ref inside a message is ``{"n": node, "i", "a", "nm"}``. A deadline
is the caller's wall clock (seconds since the epoch) after which the call is worthless.
An exit reason is ``{"x": [type, text, node]}`` for an exception, else ``{"v": tree}``.

Decoding checks types exactly (no ``bool`` for an ``int``, no ``"5"`` for ``5``), numbers
finite and in range, names and topics against their grammar, and sizes: anything else is
a :class:`otp.CodecError` with reason ``"malformed"``, which the broker turns into a dead
letter. Nothing from the wire reaches a dict key, a timeout or a topic lookup unchecked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from .._codec import Codec
from .._exceptions import CodecError, InvalidTopic, RemoteError
from .._topics import _check_topic

__all__ = [
    "FRAMES",
    "Bye",
    "Call",
    "Cast",
    "Credit",
    "Demonitor",
    "DownNotice",
    "ExitSignal",
    "Frame",
    "Hello",
    "Monitor",
    "Pub",
    "Reply",
    "Send",
    "Stop",
    "Sync",
    "Target",
    "Where",
    "Whereis",
    "WireRef",
    "decode",
    "decode_ref",
    "encode",
    "malformed",
    "post_tree",
    "pub_tree",
    "reason_from_wire",
    "reason_to_wire",
    "ref_tree",
    "target_tree",
]

#: The largest id, count or sequence number on the wire.
MAX_INT: Final = (1 << 63) - 1
#: Longest node name, actor name, incarnation, envelope id, topic, header key or value.
MAX_NAME: Final = 256
MAX_TOPIC: Final = 1024
MAX_HEADERS: Final = 64
MAX_HEADER: Final = 1024
#: Priorities are kept within 32 bits.
MAX_PRIORITY: Final = 1 << 31

_NODE_RE: Final = re.compile(r"[^.*#\s]+")
_INCARNATION_RE: Final = re.compile(r"[0-9A-Za-z_-]+")


def malformed(problem: str) -> CodecError:
    """The error of a frame that breaks the protocol."""
    return CodecError("malformed", problem)


# ---------------------------------------------------------------------------- validators


def _count(_: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_INT:
        raise ValueError(f"{attribute.name} must be in 0..2**63-1, not {value!r}")


def _node(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (len(value) > MAX_NAME or _NODE_RE.fullmatch(value) is None):
        raise ValueError(f"{attribute.name} is not a node name: {value[:64]!r}")


def _incarnation(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (len(value) > 64 or _INCARNATION_RE.fullmatch(value) is None):
        raise ValueError(f"{attribute.name} is not an incarnation: {value[:64]!r}")


def _name(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not 0 < len(value) <= MAX_NAME:
        raise ValueError(f"{attribute.name} must hold 1..{MAX_NAME} characters")


def _short(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if len(value) > MAX_NAME:
        raise ValueError(f"{attribute.name} is longer than {MAX_NAME} characters")


def _time(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and 0 <= value < 1e11):
        raise ValueError(f"{attribute.name} must be a finite time in seconds, not {value!r}")


def _topic(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    if len(value) > MAX_TOPIC:
        raise ValueError(f"{attribute.name} is longer than {MAX_TOPIC} characters")
    try:
        _check_topic(value)
    except InvalidTopic as exc:
        raise ValueError(f"{attribute.name}: {exc}") from None


def _headers(_: Any, attribute: attrs.Attribute[Any], value: dict[str, str]) -> None:
    if len(value) > MAX_HEADERS:
        raise ValueError(f"more than {MAX_HEADERS} headers")
    for key, text in value.items():
        if len(key) > MAX_HEADER or len(text) > MAX_HEADER:
            raise ValueError(f"a header is longer than {MAX_HEADER} characters")


def _priority(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not -MAX_PRIORITY <= value < MAX_PRIORITY:
        raise ValueError(f"priority {value!r} is out of range")


def _wire(key: str, **kwargs: Any) -> Any:
    """An attrs field written under ``key`` on the wire."""
    return attrs.field(metadata={"wire": key}, **kwargs)


# ---------------------------------------------------------------------------- parts


@attrs.frozen(kw_only=True)
class Target:
    """Which actor a frame is for: a registered name, an actor id, or both, on the node
    incarnation ``incarnation`` (``None``: whichever runs)."""

    name: str | None = _wire("nm", default=None, validator=_name)
    id: int | None = _wire("a", default=None, validator=_count)
    incarnation: str | None = _wire("i", default=None, validator=_incarnation)

    def __attrs_post_init__(self) -> None:
        if self.name is None and self.id is None:
            raise ValueError("a target needs a name or an id")


@attrs.frozen(kw_only=True)
class WireRef:
    """An actor ref inside a message or as an envelope's sender."""

    node: str = _wire("n", validator=_node)
    incarnation: str | None = _wire("i", default=None, validator=_incarnation)
    id: int | None = _wire("a", default=None, validator=_count)
    name: str | None = _wire("nm", default=None, validator=_name)

    def __attrs_post_init__(self) -> None:
        if self.name is None and self.id is None:
            raise ValueError("an actor ref needs a name or an id")


# ---------------------------------------------------------------------------- frames


@attrs.frozen(kw_only=True)
class Frame:
    """What every frame has: its sender node and that node's incarnation."""

    kind: ClassVar[str] = ""
    node: str = _wire("f", validator=_node)
    incarnation: str = _wire("fi", validator=_incarnation)


@attrs.frozen(kw_only=True)
class Pub(Frame):
    """A published message, on the topic's channel."""

    kind: ClassVar[str] = "pub"
    id: str = _wire("i", validator=_short)
    topic: str = _wire("t", validator=_topic)
    message: Any = _wire("m")
    timestamp: float = _wire("ts", validator=_time)
    sender: WireRef | None = _wire("s", default=None)
    reply_to: str | None = _wire("r", default=None, validator=_topic)
    headers: dict[str, str] = _wire("h", factory=dict, validator=_headers)
    priority: int = _wire("p", default=0, validator=_priority)


@attrs.frozen(kw_only=True)
class Call(Frame):
    kind: ClassVar[str] = "call"
    cid: int = _wire("c", validator=_count)
    to: Target = _wire("to")
    message: Any = _wire("m")
    deadline: float | None = _wire("dl", default=None, validator=_time)


@attrs.frozen(kw_only=True)
class Cast(Frame):
    kind: ClassVar[str] = "cast"
    to: Target = _wire("to")
    message: Any = _wire("m")
    flow: int | None = _wire("fl", default=None, validator=_count)
    seq: int | None = _wire("sq", default=None, validator=_count)


@attrs.frozen(kw_only=True)
class Send(Cast):
    kind: ClassVar[str] = "send"


@attrs.frozen(kw_only=True)
class Stop(Frame):
    kind: ClassVar[str] = "stop"
    cid: int = _wire("c", validator=_count)
    to: Target = _wire("to")
    why: Any = _wire("why")


@attrs.frozen(kw_only=True)
class ExitSignal(Frame):
    """An exit signal for ``to`` (``erlang:exit/2``), from the actor ``sender`` (``None``:
    code outside any actor). No answer: a signal is asynchronous."""

    kind: ClassVar[str] = "exit"
    to: Target = _wire("to")
    why: Any = _wire("why")
    sender: WireRef | None = _wire("s", default=None)


REPLY_STATUSES: Final = frozenset({"ok", "exit", "full", "raise", "err"})


def _status(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in REPLY_STATUSES:
        raise ValueError(f"unknown reply status {value[:32]!r}")


@attrs.frozen(kw_only=True)
class Reply(Frame):
    """The answer to a call or a stop: ``status`` says what ``value`` is (``ok``: the
    reply's tree; ``exit``: an exit reason; ``full``: ``[capacity, overflow]``;
    ``raise``: the tree of an exception the call raises, such as a pool's
    :class:`otp.NotFound`; ``err``: a text)."""

    kind: ClassVar[str] = "reply"
    cid: int = _wire("c", validator=_count)
    status: str = _wire("s", validator=_status)
    value: Any = _wire("v")


@attrs.frozen(kw_only=True)
class Monitor(Frame):
    kind: ClassVar[str] = "mon"
    mid: int = _wire("mid", validator=_count)
    to: Target = _wire("to")


@attrs.frozen(kw_only=True)
class Demonitor(Frame):
    kind: ClassVar[str] = "demon"
    mid: int = _wire("mid", validator=_count)


@attrs.frozen(kw_only=True)
class DownNotice(Frame):
    kind: ClassVar[str] = "down"
    mid: int = _wire("mid", validator=_count)
    why: Any = _wire("why")


@attrs.frozen(kw_only=True)
class Whereis(Frame):
    kind: ClassVar[str] = "whereis"
    cid: int = _wire("c", validator=_count)
    name: str = _wire("nm", validator=_name)


@attrs.frozen(kw_only=True)
class Where(Frame):
    kind: ClassVar[str] = "where"
    cid: int = _wire("c", validator=_count)
    name: str = _wire("nm", validator=_name)
    actor: int | None = _wire("a", default=None, validator=_count)


@attrs.frozen(kw_only=True)
class Credit(Frame):
    """The receiver of a flow consumed its first ``n`` frames; ``blocked``: the actor's
    mailbox is full (``BLOCK``) and frames of this flow wait for room."""

    kind: ClassVar[str] = "credit"
    flow: int = _wire("fl", validator=_count)
    n: int = _wire("n", validator=_count)
    blocked: bool = _wire("b", default=False)


@attrs.frozen(kw_only=True)
class Sync(Frame):
    kind: ClassVar[str] = "sync"
    flow: int = _wire("fl", validator=_count)
    n: int = _wire("n", validator=_count)


@attrs.frozen(kw_only=True)
class Hello(Frame):
    kind: ClassVar[str] = "hello"


@attrs.frozen(kw_only=True)
class Bye(Frame):
    kind: ClassVar[str] = "bye"


#: Every frame class by its kind.
FRAMES: Final[Mapping[str, type[Frame]]] = {
    cls.kind: cls
    for cls in (
        Pub,
        Call,
        Cast,
        Send,
        Stop,
        ExitSignal,
        Reply,
        Monitor,
        Demonitor,
        DownNotice,
        Whereis,
        Where,
        Credit,
        Sync,
        Hello,
        Bye,
    )
}


# ---------------------------------------------------------------------------- the converter

F = TypeVar("F")


def _strict(kind: type, *, also: tuple[type, ...] = ()) -> Callable[[Any, Any], Any]:
    accepted = (kind, *also)

    def structure(value: Any, _: Any) -> Any:
        if type(value) not in accepted:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure


def _float(value: Any, _: Any) -> float:
    if type(value) is not float and type(value) is not int:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _headers_hook(value: Any, _: Any) -> dict[str, str]:
    if type(value) is not dict:
        raise TypeError(f"headers are a map, not {type(value).__name__}")
    if not all(type(k) is str and type(v) is str for k, v in value.items()):
        raise TypeError("headers must map str to str")
    return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=False, detailed_validation=False)
    converter.register_structure_hook(int, _strict(int))
    converter.register_structure_hook(str, _strict(str))
    converter.register_structure_hook(bool, _strict(bool))
    converter.register_structure_hook(float, _float)
    converter.register_structure_hook_func(lambda t: t == dict[str, str], _headers_hook)
    converter.register_structure_hook_func(lambda t: t is Any, lambda value, _: value)
    for cls in (Target, WireRef, *FRAMES.values()):
        renames = {a.name: override(rename=a.metadata["wire"]) for a in attrs.fields(cls)}
        converter.register_structure_hook(
            cls,
            make_dict_structure_fn(cls, converter, **renames),  # type: ignore[arg-type]
        )
    return converter


_CONVERTER: Final = _make_converter()


def _default(attribute: attrs.Attribute[Any]) -> Any:
    default: Any = attribute.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory()
    return default


# class -> (attribute name, wire key, default) for encoding; defaults are left out
_LAYOUT: Final[dict[type, tuple[tuple[str, str, Any], ...]]] = {
    cls: tuple((a.name, a.metadata["wire"], _default(a)) for a in attrs.fields(cls))
    for cls in (Target, WireRef, *FRAMES.values())
}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        parts = [_describe(e) for e in exc.exceptions[:3]]
        return "; ".join(parts)
    note = getattr(exc, "__notes__", None)
    where = f" ({note[-1]})" if note else ""
    return f"{exc}{where}"[:300]


def decode(tree: Any) -> Frame:
    """The frame of a tree the codec parsed. Raises :class:`otp.CodecError`."""
    if type(tree) is not dict:
        raise malformed(f"a frame is a map, not {type(tree).__name__}")
    kind = tree.get("k")
    cls = FRAMES.get(kind) if type(kind) is str else None
    if cls is None:
        raise malformed(f"unknown frame kind {str(kind)[:32]!r}")
    try:
        frame: Frame = _CONVERTER.structure(tree, cls)
    except Exception as exc:
        raise malformed(f"bad {kind} frame: {_describe(exc)}") from None
    return frame


def decode_ref(tree: Any) -> WireRef:
    """The actor ref of a tree. Raises :class:`otp.CodecError`."""
    if type(tree) is not dict:
        raise malformed("an actor ref is a map")
    try:
        ref: WireRef = _CONVERTER.structure(tree, WireRef)
    except Exception as exc:
        raise malformed(f"bad actor ref: {_describe(exc)}") from None
    return ref


def _tree(value: Any) -> Any:
    layout = _LAYOUT.get(type(value))
    if layout is None:
        return value
    out: dict[str, Any] = {}
    for name, key, default in layout:
        item = getattr(value, name)
        if default is not attrs.NOTHING and (item is None or item == default):
            continue  # an optional field at its default is left out
        out[key] = _tree(item)
    return out


def encode(frame: Frame) -> dict[str, Any]:
    """The tree of ``frame``, for the codec to serialize."""
    tree = _tree(frame)
    tree["k"] = frame.kind
    return tree  # type: ignore[no-any-return]


# The hot frames are written directly (no instance, no validators: the values are ours);
# tests/test_redis_frames.py checks that these trees decode to the classes above.


def pub_tree(
    node: str,
    incarnation: str,
    id: str,
    topic: str,
    message: Any,
    timestamp: float,
    sender: dict[str, Any] | None,
    reply_to: str | None,
    headers: Mapping[str, str],
    priority: int,
) -> dict[str, Any]:
    """The tree of a :class:`Pub` frame."""
    tree: dict[str, Any] = {
        "f": node,
        "fi": incarnation,
        "i": id,
        "t": topic,
        "m": message,
        "ts": timestamp,
        "k": "pub",
    }
    if sender is not None:
        tree["s"] = sender
    if reply_to is not None:
        tree["r"] = reply_to
    if headers:
        tree["h"] = dict(headers)
    if priority:
        tree["p"] = priority
    return tree


def post_tree(
    kind: str, node: str, incarnation: str, to: dict[str, Any], message: Any, flow: int, seq: int
) -> dict[str, Any]:
    """The tree of a :class:`Cast` (``kind="cast"``) or :class:`Send` frame."""
    return {"f": node, "fi": incarnation, "to": to, "m": message, "fl": flow, "sq": seq, "k": kind}


def ref_tree(ref: WireRef) -> dict[str, Any]:
    """The tree of a decoded :class:`WireRef` (for the codec's ref lender)."""
    return _tree(ref)  # type: ignore[no-any-return]


def target_tree(target: Target) -> dict[str, Any]:
    """The tree of a :class:`Target`."""
    return _tree(target)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- exit reasons


def reason_to_wire(codec: Codec, reason: Any, node: str, refs: Any) -> dict[str, Any]:
    """An exit reason as a tree: ``{"x": [type, text, node]}`` for an exception, else
    ``{"v": tree}``."""
    if isinstance(reason, RemoteError):
        return {"x": [reason.type_name, reason.text, reason.node]}
    if isinstance(reason, BaseException):
        return {"x": [type(reason).__qualname__, str(reason), node]}
    try:
        return {"v": codec.to_wire(reason, refs=refs)}
    except CodecError:
        return {"x": [type(reason).__qualname__, repr(reason), node]}


def reason_from_wire(codec: Codec, tree: Any, refs: Any) -> Any:
    """The exit reason of a tree from :func:`reason_to_wire`. Raises
    :class:`otp.CodecError`."""
    if type(tree) is dict and len(tree) == 1:
        if "x" in tree:
            parts = tree["x"]
            if (
                type(parts) is list
                and len(parts) == 3
                and all(type(p) is str and len(p) <= 4096 for p in parts)
            ):
                return RemoteError(parts[0], parts[1], parts[2])
        elif "v" in tree:
            # JSON has no tuples: ("shutdown", term) arrives as a $tuple, already restored.
            return codec.from_wire(tree["v"], refs=refs)
    raise malformed("bad exit reason")
