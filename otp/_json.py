"""The JSON form of snapshots, statistics and events, on cattrs.

:func:`to_json` turns a :class:`otp.TreeSnapshot` (or one supervisor or actor of it), an
:class:`otp.ActorStatistics`, :class:`otp.MailboxStatistics`, :class:`otp.BrokerStatistics`,
:class:`otp.Event` or :class:`otp.DeadLetter` into plain values (dicts with string keys,
lists, strings, finite numbers, booleans, ``None``) that ``json.dumps(..., allow_nan=False)``
always accepts, whatever the tree holds: exit reasons that are exceptions, user objects
in states and reasons, cycles, NaN. The web observer (``otp.observer``) serves exactly this
form; docs/guide/observer.md documents it field by field.

The rules, one value at a time:

* ``None``, ``bool``, ``int`` and ``str`` stay as they are (a string longer than
  :data:`MAX_STRING` is cut and ends with ``"…"``); a finite ``float`` too, while NaN and
  the infinities become the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``;
* enums become their value, datetimes an ISO 8601 string;
* an anyotp object becomes a dict whose ``"type"`` names it (``"tree"``, ``"supervisor"``,
  ``"worker"``, ``"actor_statistics"``, ``"mailbox_statistics"``, ``"broker_statistics"``,
  ``"event"``, ``"dead_letter"``, ``"ref"``, ``"exception"``); the outermost one also
  carries ``"version"`` (:data:`JSON_FORM_VERSION`);
* an exception becomes ``{"type": "exception", "class", "module", "message", "notes",
  "cause"}`` (the cause nested the same way, or ``None``);
* lists, tuples, sets and dicts are walked (dict keys that are not strings become their
  ``repr``), at most :data:`MAX_ITEMS` items and :data:`MAX_DEPTH` levels deep; a value met
  again on its own path is the string ``"<cycle>"``;
* anything else becomes its ``repr`` (cut at :data:`MAX_REPR`), or
  ``"<unrepresentable T>"`` when its ``__repr__`` raises.

Register your own hook on :data:`json_converter` to render a type of yours differently
(``otp.json_converter.register_unstructure_hook(Money, lambda m: str(m))``); the hook is
used wherever such a value appears. There is no structuring back: the form is for
looking at (a ref in it cannot be used to send a message).
"""

from __future__ import annotations

import contextvars
import datetime
import enum
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
import cattrs

from ._actor import ActorRef, ActorStatistics
from ._envelopes import BrokerStatistics, DeadLetter, Envelope
from ._mailbox import MailboxStatistics, Overflow
from ._node import Event
from ._remote import RemoteRef
from ._snapshots import ActorSnapshot, SupervisorSnapshot, TreeSnapshot
from ._specs import Restart, Strategy

__all__ = ["JSON_FORM_VERSION", "json_converter", "to_json"]

#: The version of the JSON form; it grows when a field changes meaning or goes away
#: (new fields may appear without a new version).
JSON_FORM_VERSION: Final = 1

#: Longest string kept whole.
MAX_STRING: Final = 4096
#: Longest ``repr`` kept whole.
MAX_REPR: Final = 500
#: Most items of one list, set or dict (the rest are summed up as ``"… N more"``).
MAX_ITEMS: Final = 200
#: Deepest nesting of plain containers (deeper ones become their ``repr``).
MAX_DEPTH: Final = 12

#: The converter behind :func:`to_json`; register hooks on it for your own types.
json_converter: Final = cattrs.Converter()

# ids of the containers on the current path (cycle detection) and the depth.
_path: contextvars.ContextVar[tuple[frozenset[int], int]] = contextvars.ContextVar(
    "otp_json_path", default=(frozenset(), 0)
)

_ELLIPSIS: Final = "…"


def to_json(value: Any) -> Any:
    """The JSON form of ``value``: plain data that ``json.dumps(..., allow_nan=False)``
    accepts. An anyotp snapshot, statistics, event or dead letter becomes a dict with
    ``"type"`` and ``"version"``; anything else follows the same rules without a version.

    Never raises for a value it cannot represent (that becomes a ``repr`` string); a
    hook you registered on :data:`json_converter` may still raise. Erlang has no direct
    counterpart (observer reads the same data through ``sys`` and ``erlang:process_info``).
    """
    result = json_converter.unstructure(value)
    if isinstance(result, dict) and isinstance(value, _VERSIONED):
        return {"version": JSON_FORM_VERSION, **result}
    return result


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"
    if not isinstance(text, str):  # pragma: no cover - repr() itself enforces str
        return f"<unrepresentable {type(value).__qualname__}>"
    return _cut(text, MAX_REPR)


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _key(key: Any) -> str:
    return _cut(key, MAX_STRING) if isinstance(key, str) else _safe_repr(key)


def _container(value: Any, walk: Callable[[Any], Any]) -> Any:
    """Walk a plain container with cycle and depth guards."""
    seen, depth = _path.get()
    if id(value) in seen:
        return "<cycle>"
    if depth >= MAX_DEPTH:
        return _safe_repr(value)
    token = _path.set((seen | {id(value)}, depth + 1))
    try:
        return walk(value)
    finally:
        _path.reset(token)


def _walk_mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index, (key, item) in enumerate(value.items()):
        if index == MAX_ITEMS:
            out[_ELLIPSIS] = f"{len(value) - MAX_ITEMS} more"
            break
        out[_key(key)] = json_converter.unstructure(item)
    return out


def _walk_items(value: Any) -> list[Any]:
    out: list[Any] = []
    for index, item in enumerate(value):
        if index == MAX_ITEMS:
            out.append(f"{_ELLIPSIS} {len(value) - MAX_ITEMS} more")
            break
        out.append(json_converter.unstructure(item))
    return out


def _exception(exc: BaseException) -> dict[str, Any]:
    cause = exc.__cause__
    if cause is None and not exc.__suppress_context__:
        cause = exc.__context__
    notes = getattr(exc, "__notes__", None)
    out: dict[str, Any] = {
        "type": "exception",
        "class": type(exc).__qualname__,
        "module": type(exc).__module__,
        "message": _cut(_safe_str(exc), MAX_STRING),
        "notes": [_cut(_safe_str(n), MAX_STRING) for n in notes[:MAX_ITEMS]]
        if isinstance(notes, list)
        else [],
        "cause": _container(cause, _exception) if isinstance(cause, BaseException) else None,
    }
    if isinstance(exc, BaseExceptionGroup):
        out["exceptions"] = [_container(inner, _exception) for inner in exc.exceptions[:MAX_ITEMS]]
    return out


def _safe_str(value: Any) -> str:
    try:
        text = str(value)
    except Exception:
        return _safe_repr(value)
    return text if isinstance(text, str) else _safe_repr(value)


def _any(value: Any) -> Any:
    """Every value without a more specific hook (and every ``Any`` field) lands here."""
    if value is None or isinstance(value, bool | int):
        return value if type(value) in (bool, int) or value is None else int(value)
    if isinstance(value, str):
        return _cut(str(value), MAX_STRING)
    if isinstance(value, float):
        return _float(float(value))
    # A type with its own hook (ours or the user's), met through an ``Any`` field.
    hook = json_converter.get_unstructure_hook(type(value))
    if hook is not _any:
        return hook(value)
    if isinstance(value, enum.Enum):
        return json_converter.unstructure(value.value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, BaseException):
        return _container(value, _exception)
    if isinstance(value, Mapping):
        return _container(value, _walk_mapping)
    if isinstance(value, list | tuple | set | frozenset):
        return _container(value, _walk_items)
    return _safe_repr(value)


def _ref(ref: Any) -> dict[str, Any]:
    """A ref: who it is, never something to send to."""
    out: dict[str, Any] = {"type": "ref", "id": ref.id, "name": ref.name, "alive": ref.alive}
    node = getattr(ref, "node", None)
    if isinstance(node, str):  # a RemoteRef knows its node
        out["node"] = node
    return out


# The enums of anyotp objects (their values are short strings): written without a lookup.
_OUR_ENUMS: Final = frozenset({Overflow, Restart, Strategy})


def _fields(
    type_name: str,
    *,
    omit: tuple[str, ...] = (),
    rename: Mapping[str, str] | None = None,
) -> Callable[[Any], dict[str, Any]]:
    """A hook writing every attrs field by the runtime type of its value.

    Read from the class (once per class), so a field added later appears without a change
    here; ``omit`` leaves fields out, ``rename`` writes them under another key. Plain
    ``int``, ``bool``, ``str``, ``float`` and ``None`` values take a fast path that skips
    the converter (a tree of 1,000 actors is written twice a second by the observer).
    """
    renames = dict(rename or {})
    layouts: dict[type, tuple[tuple[str, str], ...]] = {}
    unstructure = json_converter.unstructure

    def hook(value: Any) -> dict[str, Any]:
        cls = type(value)
        layout = layouts.get(cls)
        if layout is None:
            layout = layouts[cls] = tuple(
                (f.name, renames.get(f.name, f.name))
                for f in attrs.fields(cls)
                if f.name not in omit
            )
        out: dict[str, Any] = {"type": type_name}
        for name, key in layout:
            item = getattr(value, name)
            kind = type(item)
            if item is None or kind is int or kind is bool:
                out[key] = item
            elif kind is str:
                out[key] = item if len(item) <= MAX_STRING else _cut(item, MAX_STRING)
            elif kind is float:
                out[key] = item if math.isfinite(item) else _float(item)
            elif kind is tuple and not item:
                out[key] = []
            elif kind in _OUR_ENUMS:
                out[key] = item.value
            else:
                out[key] = unstructure(item)
        return out

    return hook


def _actor_snapshot(value: ActorSnapshot) -> dict[str, Any]:
    out = _fields_worker(value)
    out["ref"] = _ref(value.ref) if value.ref is not None else None
    return out


def _supervisor_snapshot(value: SupervisorSnapshot) -> dict[str, Any]:
    out = _fields_supervisor(value)
    out["ref"] = _ref(value.ref) if value.ref is not None else None
    return out


_fields_worker = _fields("worker", omit=("kind", "ref"))
_fields_supervisor = _fields("supervisor", omit=("kind", "ref"))

_VERSIONED: Final = (
    TreeSnapshot,
    SupervisorSnapshot,
    ActorSnapshot,
    ActorStatistics,
    MailboxStatistics,
    BrokerStatistics,
    Event,
    DeadLetter,
)


def _register(cls: type, hook: Callable[[Any], Any]) -> None:
    # A predicate rather than a class hook: cattrs would resolve the class's annotations
    # (some name types imported only for type checking) and covers subclasses this way.
    json_converter.register_unstructure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, cls), hook
    )


# The catch-all first: cattrs tries predicates newest first, so the hooks below (and any a
# user registers later) take precedence over it.
json_converter.register_unstructure_hook_func(lambda _type: True, _any)
# cattrs passes these through as they are by default: strings must be cut, bytes written.
for _scalar in (str, bytes, int, float, bool):
    json_converter.register_unstructure_hook(_scalar, _any)
_register(ActorRef, _ref)
_register(RemoteRef, _ref)
_register(TreeSnapshot, _fields("tree"))
_register(SupervisorSnapshot, _supervisor_snapshot)
_register(ActorSnapshot, _actor_snapshot)
_register(ActorStatistics, _fields("actor_statistics"))
_register(MailboxStatistics, _fields("mailbox_statistics"))
_register(BrokerStatistics, _fields("broker_statistics"))
_register(Event, _fields("event"))
_register(DeadLetter, _fields("dead_letter"))
_register(Envelope, _fields("envelope"))
