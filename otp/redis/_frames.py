"""The frames nodes exchange on Redis, and their checks.

A frame is a codec tree (a dict) with a kind ``k`` and the sender's node ``f`` and
incarnation ``fi``. Every field read from the wire is checked here before use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._codec import Codec
from .._exceptions import CodecError, RemoteError

__all__ = ["get", "malformed", "opt", "reason_from_wire", "reason_to_wire"]


def malformed(problem: str) -> CodecError:
    """The error of a frame that breaks the protocol."""
    return CodecError("malformed", problem)


def get(frame: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """The required field ``key`` of ``frame``, of type ``kind``."""
    value = frame.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise malformed(f"field {key!r} is missing or not a {kind}")
    return value


def opt(frame: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """The optional field ``key`` of ``frame``: ``None`` or of type ``kind``."""
    value = frame.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise malformed(f"field {key!r} is not a {kind}")
    return value


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
    """The exit reason of a tree from :func:`reason_to_wire`."""
    if type(tree) is dict and "x" in tree:
        parts = tree["x"]
        if type(parts) is list and len(parts) == 3 and all(type(p) is str for p in parts):
            return RemoteError(parts[0], parts[1], parts[2])
        raise malformed("bad exit reason")
    if type(tree) is dict and "v" in tree:
        # JSON has no tuples: ("shutdown", term) arrives as a $tuple, already restored.
        return codec.from_wire(tree["v"], refs=refs)
    raise malformed("bad exit reason")
