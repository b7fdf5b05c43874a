"""Child specs on the wire, for ``start_child`` on a supervisor of another node.

A :class:`otp.WorkerSpec` crosses with its GenServer class written as the class's wire
name (``@otp.message("shop.cart")`` on the class) and its ``init`` arguments as codec
trees; every other field as a plain value (enums by value, :data:`otp.BRUTAL_KILL` as
``"brutal_kill"``, an :class:`otp.Global` name as ``{"$global": name}``, mailboxes and
backoffs as their fields). A :class:`otp.SupervisorSpec`
crosses the same way with its children. Nothing is imported on the receiving node: a wire
name no class is registered under there, or one that is not a GenServer, is refused with
:class:`otp.CodecError` naming it; a spec holding a function (a pool's ``key=``) cannot be
sent at all.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs
import cattrs

from ._actor import BRUTAL_KILL
from ._envelopes import message_type
from ._exceptions import CodecError
from ._gen_server import GenServer
from ._global import Global
from ._mailbox import Mailbox, Overflow
from ._specs import Backoff, SupervisorSpec, WorkerSpec

__all__ = ["install"]

_Tree = Callable[[Any], Any]


def install(converter: cattrs.Converter, to_tree: _Tree, from_tree: _Tree) -> None:
    """Register the spec hooks on a codec's converter."""

    def unstructure(spec: Any) -> Any:
        return _spec_to_wire(spec, to_tree)

    def structure(tree: Any, cls: Any) -> Any:
        return _spec_from_wire(tree, cls, from_tree)

    for cls in (WorkerSpec, SupervisorSpec):
        converter.register_unstructure_hook(cls, unstructure)
        converter.register_structure_hook(cls, structure)


def _spec_to_wire(spec: Any, to_tree: _Tree) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for field in attrs.fields(type(spec)):
        name = field.name
        value = getattr(spec, name)
        if name == "kind":
            continue
        if name == "cls":
            tree[name] = _class_name(value)
        elif name == "args":
            tree[name] = [to_tree(arg) for arg in value]
        elif name == "children":
            tree[name] = [
                {"$spec": child.kind, "v": _spec_to_wire(child, to_tree)} for child in value
            ]
        else:
            tree[name] = _plain_to_wire(spec, name, value)
    return tree


def _class_name(cls: type) -> str:
    name = getattr(cls, "__otp_message__", None)
    if not isinstance(name, str) or message_type(name) is not cls:
        raise CodecError(
            "unencodable",
            f"{cls.__module__}.{cls.__qualname__} has no wire name, so a node cannot be told "
            "to start it; decorate the class with @otp.message('some.stable.name') and import "
            "its module on every node",
        )
    return name


def _plain_to_wire(spec: Any, name: str, value: Any) -> Any:
    if type(value) is Global:
        return {"$global": str(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if value is BRUTAL_KILL:
        return "brutal_kill"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mailbox):
        return {"capacity": value.capacity, "overflow": value.overflow.value}
    if isinstance(value, Backoff):
        return attrs.asdict(value)
    raise CodecError(
        "unencodable",
        f"field {name}={value!r} of {type(spec).__name__} {getattr(spec, 'id', '')!r} cannot "
        "cross the wire (functions and other live objects stay on their node)",
    )


def _spec_from_wire(tree: Any, cls: type, from_tree: _Tree) -> Any:
    if type(tree) is not dict:
        raise CodecError("malformed", f"a {cls.__name__} is a map")
    fields = {field.name: field for field in attrs.fields(cls)}
    unknown = set(tree) - set(fields)
    if unknown:
        raise CodecError(
            "malformed",
            f"{cls.__name__} fields {sorted(unknown)} are unknown here: are both nodes on "
            "the same anyotp version?",
        )
    values: dict[str, Any] = {}
    for name, raw in tree.items():
        field = fields[name]
        if name == "cls":
            values[name] = _class_from_wire(raw)
        elif name == "args":
            if type(raw) is not list:
                raise CodecError("malformed", "a spec's args are a list")
            values[name] = tuple(from_tree(arg) for arg in raw)
        elif name == "children":
            if type(raw) is not list:
                raise CodecError("malformed", "a spec's children are a list")
            values[name] = tuple(_child_from_wire(child, from_tree) for child in raw)
        else:
            values[name] = _plain_from_wire(field, raw)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise CodecError("malformed", f"bad {cls.__name__}: {exc}") from None


def _child_from_wire(tree: Any, from_tree: _Tree) -> Any:
    if type(tree) is not dict or set(tree) != {"$spec", "v"}:
        raise CodecError("malformed", "a child spec is {$spec: kind, v: fields}")
    kinds: dict[Any, type] = {"worker": WorkerSpec, "supervisor": SupervisorSpec}
    cls = kinds.get(tree["$spec"])
    if cls is None:
        raise CodecError("malformed", f"unknown child kind {tree['$spec']!r}")
    return _spec_from_wire(tree["v"], cls, from_tree)


def _class_from_wire(name: Any) -> type:
    if type(name) is not str:
        raise CodecError("malformed", "a spec's class is its wire name (a str)")
    cls = message_type(name)
    if cls is None:
        raise CodecError(
            "unknown_type",
            f"no GenServer class is registered as {name!r} on this node: import the module "
            "that declares it (with @otp.message) on every node that may start it",
        )
    if not (isinstance(cls, type) and issubclass(cls, GenServer)):
        raise CodecError("unknown_type", f"{name!r} names {cls.__qualname__}, not a GenServer")
    return cls


def _plain_from_wire(field: Any, raw: Any) -> Any:
    name = field.name
    default = field.default
    if type(raw) is dict and set(raw) == {"$global"} and type(raw["$global"]) is str:
        try:
            return Global(raw["$global"])
        except TypeError as exc:
            raise CodecError("malformed", str(exc)) from None
    if name == "shutdown" and raw == "brutal_kill":
        return BRUTAL_KILL
    if name == "mailbox" and raw is not None:
        if type(raw) is not dict:
            raise CodecError("malformed", "a mailbox is {capacity, overflow}")
        try:
            return Mailbox(raw.get("capacity"), Overflow(raw.get("overflow")))
        except (TypeError, ValueError) as exc:
            raise CodecError("malformed", f"bad mailbox: {exc}") from None
    if name == "backoff" and raw is not None:
        if type(raw) is not dict:
            raise CodecError("malformed", "a backoff is a map of its fields")
        try:
            return Backoff(**raw)
        except (TypeError, ValueError) as exc:
            raise CodecError("malformed", f"bad backoff: {exc}") from None
    if isinstance(default, enum.Enum) and default is not attrs.NOTHING:
        try:
            return type(default)(raw)
        except ValueError:
            raise CodecError("malformed", f"bad {name}: {raw!r}") from None
    if raw is not None and not isinstance(raw, (bool, int, float, str)):
        raise CodecError("malformed", f"bad {name}: {raw!r}")
    return raw
