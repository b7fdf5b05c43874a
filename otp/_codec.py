"""The wire codec: messages to bytes and back, on cattrs, for brokers that cross processes.

A message crosses the wire as a *tree* of plain values (``None``, ``bool``, ``int``,
``float``, ``str``, lists and string-keyed dicts) that a serializer (JSON by default,
msgpack as an option) turns into bytes. Message classes are written under the stable name
they were given with ``@otp.message("orders.created")``, never under their Python path,
and only classes registered that way are ever built from the wire: nothing is imported,
evaluated or unpickled, whatever the bytes say.

The tree of one value:

* ``None``, ``bool``, ``int``, ``float``, ``str`` and lists: as they are;
* a dict whose keys are strings not starting with ``$``: a dict of trees;
* anything else is a one-key dict whose key starts with ``$``: ``{"$msg": name, "$v":
  fields}`` for a registered message (its fields unstructured by cattrs according to their
  annotations; an ``Any`` field holds a tree again), ``{"$tuple": [...]}``,
  ``{"$set": [...]}``, ``{"$frozenset": [...]}``, ``{"$dict": [[key, value], ...]}`` (other
  keys), ``{"$bytes": "<base64>"}``, ``{"$ref": {...}}`` for an actor ref (only when a
  broker that can route to it does the encoding) and ``{"$error": [name, [args]]}`` for an
  exception whose class has a wire name (anyotp's own errors are ``$otp.error.<Name>``;
  rebuilt as ``cls(*args)`` from its ``__reduce__`` arguments; any other exception inside
  one arrives as an :class:`otp.RemoteError`).
"""

from __future__ import annotations

import base64
import binascii
import collections.abc
import contextvars
import datetime
import decimal
import json
import typing
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Final, Protocol

import attrs
import cattrs

from ._actor import ActorRef
from ._envelopes import message, message_type
from ._exceptions import CodecError, RemoteError

__all__ = ["Codec", "JsonCodec", "MsgpackCodec", "Undecodable"]

#: Default largest payload a codec accepts, in bytes.
DEFAULT_MAX_SIZE: Final = 1 << 20

#: How much of a refused payload a dead letter keeps.
_SAMPLE: Final = 256

_SCALARS: Final = (str, int, float, bool, type(None))


@attrs.frozen
class Undecodable:
    """The message of a dead letter for a payload the codec refused.

    ``reason`` is the :class:`CodecError` reason (also the dead letter's reason),
    ``error`` its text, ``size`` the payload's length and ``data`` its first bytes.
    """

    reason: str
    error: str
    size: int
    data: bytes = attrs.field(repr=lambda d: repr(d[:64]) + ("..." if len(d) > 64 else ""))

    @classmethod
    def of(cls, error: CodecError, data: bytes) -> Undecodable:
        return cls(error.reason, str(error), len(data), bytes(data[:_SAMPLE]))


class RefCodec(Protocol):
    """What a broker lends the codec to write and read actor refs (an internal interface
    of otp's own: the codec and brokers; not for users)."""

    def _ref_to_wire(self, ref: Any) -> dict[str, Any]: ...

    def _ref_from_wire(self, tree: dict[str, Any]) -> Any: ...


_refs: contextvars.ContextVar[RefCodec | None] = contextvars.ContextVar(
    "otp_wire_refs", default=None
)


def _is_ref_type(cls: Any) -> bool:
    return isinstance(cls, type) and (
        issubclass(cls, ActorRef) or getattr(cls, "_otp_remote_ref", False)
    )


class Codec:
    """Turns messages into bytes and back; subclasses choose the serializer.

    ``max_size`` (bytes) bounds what :meth:`loads` accepts; ``converter`` is the cattrs
    converter for message fields (a preconfigured one for the serializer by default:
    ``datetime``, ``UUID``, enums and nested attrs classes work in annotated fields).
    Register extra hooks on :attr:`converter` for field types it does not know.

    Every node of a system must use the same codec class and registered message names.
    """

    #: A short name of the format, written in nothing (for humans and logs).
    name: ClassVar[str] = "abstract"

    def __init__(
        self, *, max_size: int = DEFAULT_MAX_SIZE, converter: cattrs.Converter | None = None
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive number of bytes, not {max_size!r}")
        self.max_size = max_size
        self.converter = converter if converter is not None else self._make_converter()
        self._install_hooks(self.converter)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} max_size={self.max_size}>"

    # ------------------------------------------------------------------ serializer

    def _make_converter(self) -> cattrs.Converter:
        return cattrs.Converter()

    def dumps(self, tree: Any) -> bytes:
        """Serialize a tree (see the module docs) to bytes."""
        raise NotImplementedError

    def _parse(self, data: bytes) -> Any:
        raise NotImplementedError

    def loads(self, data: bytes) -> Any:
        """Parse bytes into a tree. Raises :class:`CodecError` (``"oversized"``,
        ``"malformed"``)."""
        if len(data) > self.max_size:
            raise CodecError(
                "oversized", f"payload of {len(data)} bytes exceeds max_size={self.max_size}"
            )
        try:
            return self._parse(data)
        except CodecError:
            raise
        except (ValueError, TypeError, RecursionError, UnicodeDecodeError) as exc:
            raise CodecError("malformed", f"{type(exc).__name__}: {exc}") from None

    # ------------------------------------------------------------------ values

    def encode(self, value: Any, *, refs: RefCodec | None = None) -> bytes:
        """The bytes of ``value``. Raises :class:`CodecError` (``"unencodable"``)."""
        return self.dumps(self.to_wire(value, refs=refs))

    def decode(self, data: bytes, *, refs: RefCodec | None = None) -> Any:
        """The value ``data`` encodes. Raises :class:`CodecError`; never executes or
        imports anything."""
        return self.from_wire(self.loads(data), refs=refs)

    def to_wire(self, value: Any, *, refs: RefCodec | None = None) -> Any:
        """The tree of ``value``. Raises :class:`CodecError` (``"unencodable"``)."""
        with _lending(refs):
            try:
                return self._to_tree(value)
            except CodecError:
                raise
            except RecursionError:
                raise CodecError("unencodable", "the value nests too deeply") from None
            except Exception as exc:
                raise CodecError(
                    "unencodable", f"{type(value).__name__}: {type(exc).__name__}: {exc}"
                ) from exc

    def from_wire(self, tree: Any, *, refs: RefCodec | None = None) -> Any:
        """The value of ``tree``. Raises :class:`CodecError` (``"unknown_type"``,
        ``"malformed"``)."""
        with _lending(refs):
            try:
                return self._from_tree(tree)
            except CodecError:
                raise
            except RecursionError:
                raise CodecError("malformed", "the payload nests too deeply") from None
            except Exception as exc:
                raise CodecError("malformed", _describe_structure_error(exc)) from None

    # ------------------------------------------------------------------ the tree

    def _to_tree(self, value: Any) -> Any:
        if isinstance(value, _SCALARS):
            return value
        cls = type(value)
        if cls is list:
            return [self._to_tree(item) for item in value]
        if cls is dict:
            if all(type(k) is str and not k.startswith("$") for k in value):
                return {k: self._to_tree(v) for k, v in value.items()}
            return {"$dict": [[self._to_tree(k), self._to_tree(v)] for k, v in value.items()]}
        if cls is tuple:
            return {"$tuple": [self._to_tree(item) for item in value]}
        if cls is set or cls is frozenset:
            key = "$set" if cls is set else "$frozenset"
            return {key: [self._to_tree(item) for item in value]}
        if cls is bytes or cls is bytearray:
            return {"$bytes": base64.b64encode(value).decode("ascii")}
        if _is_ref_type(cls):
            return {"$ref": _ref_to_wire(value)}
        if isinstance(value, BaseException):
            return self._error_to_tree(value)
        name = getattr(cls, "__otp_message__", None)
        if name is not None and message_type(name) is cls:
            return {"$msg": name, "$v": self.converter.unstructure(value, cls)}
        if attrs.has(cls):
            raise CodecError(
                "unencodable",
                f"{cls.__module__}.{cls.__qualname__} has no wire name; decorate it with "
                "@otp.message('some.stable.name')",
            )
        raise CodecError("unencodable", f"values of type {cls.__qualname__} cannot cross the wire")

    def _error_to_tree(self, error: BaseException, *, nested: bool = False) -> Any:
        # A registered exception class crosses as itself, rebuilt from its __reduce__
        # arguments; any other exception inside one crosses as an otp.RemoteError.
        cls = type(error)
        name = getattr(cls, "__otp_message__", None)
        if name is not None and message_type(name) is cls:
            reduced = error.__reduce__()
            if (
                isinstance(reduced, tuple)
                and len(reduced) >= 2
                and reduced[0] is cls
                and type(reduced[1]) is tuple
            ):
                try:
                    args = [self._arg_to_tree(arg) for arg in reduced[1]]
                except CodecError:
                    pass  # an argument cannot cross: the type name and text still can
                else:
                    return {"$error": [name, args]}
        if not nested:
            raise CodecError(
                "unencodable",
                f"exception {cls.__qualname__} has no wire name; decorate its class with "
                "@otp.message('some.stable.name') (its __reduce__ arguments cross)",
            )
        remote = RemoteError(cls.__qualname__, str(error), getattr(error, "node", ""))
        if isinstance(error, RemoteError):
            remote = error
        return {"$error": [_REMOTE_ERROR, [remote.type_name, remote.text, remote.node]]}

    def _arg_to_tree(self, value: Any) -> Any:
        if isinstance(value, BaseException):
            return self._error_to_tree(value, nested=True)
        return self._to_tree(value)

    def _error_from_tree(self, body: Any) -> BaseException:
        if type(body) is not list or len(body) != 2 or type(body[0]) is not str:
            raise CodecError("malformed", "an $error node holds [name, [arguments]]")
        name, args = body
        cls = message_type(name)
        if cls is None or not issubclass(cls, BaseException):
            raise CodecError("unknown_type", f"no exception class is registered as {name!r}")
        if type(args) is not list:
            raise CodecError("malformed", "an $error node's arguments are a list")
        values = [self._from_tree(arg) for arg in args]
        try:
            error = cls(*values)
        except Exception as exc:
            raise CodecError("malformed", f"{name!r}: {type(exc).__name__}: {exc}") from None
        for value in values:
            if isinstance(value, BaseException) and error.__cause__ is None:
                error.__cause__ = value  # as on the node that raised it
        return error

    def _from_tree(self, tree: Any) -> Any:
        if isinstance(tree, _SCALARS):
            return tree
        if type(tree) is list:
            return [self._from_tree(item) for item in tree]
        if type(tree) is not dict:
            raise CodecError("malformed", f"unexpected {type(tree).__name__} in the payload")
        special = next((k for k in tree if type(k) is str and k.startswith("$")), None)
        if special is None:
            return {_key(k): self._from_tree(v) for k, v in tree.items()}
        if special == "$msg":
            if set(tree) != {"$msg", "$v"} or type(tree["$msg"]) is not str:
                raise CodecError("malformed", "a $msg node needs exactly $msg (a str) and $v")
            wire_name = tree["$msg"]
            cls = message_type(wire_name)
            if cls is None:
                raise CodecError("unknown_type", f"no message class is registered as {wire_name!r}")
            try:
                return self.converter.structure(tree["$v"], cls)
            except CodecError:
                raise
            except Exception as exc:
                raise CodecError(
                    "malformed", f"{wire_name!r}: {_describe_structure_error(exc)}"
                ) from None
        if len(tree) != 1:
            raise CodecError("malformed", f"a {special} node must have no other keys")
        body = tree[special]
        if special == "$error":
            return self._error_from_tree(body)
        if special == "$ref":
            if type(body) is not dict:
                raise CodecError("malformed", "a $ref node holds a dict")
            return _ref_from_wire(body)
        if special == "$bytes":
            if type(body) is not str:
                raise CodecError("malformed", "a $bytes node holds a base64 str")
            try:
                return base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise CodecError("malformed", "a $bytes node holds invalid base64") from None
        if type(body) is not list:
            raise CodecError("malformed", f"a {special} node holds a list")
        if special == "$tuple":
            return tuple(self._from_tree(item) for item in body)
        if special == "$set":
            return {self._from_tree(item) for item in body}
        if special == "$frozenset":
            return frozenset(self._from_tree(item) for item in body)
        if special == "$dict":
            pairs = []
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise CodecError("malformed", "a $dict node holds [key, value] pairs")
                pairs.append((self._from_tree(pair[0]), self._from_tree(pair[1])))
            return dict(pairs)
        raise CodecError("malformed", f"unknown node {special!r}")

    # ------------------------------------------------------------------ cattrs hooks

    def _install_hooks(self, converter: cattrs.Converter) -> None:
        # ``Any`` fields (and unannotated ones) hold a tree, so a nested registered message
        # keeps its type; actor refs go through the broker that lends its routing.
        converter.register_unstructure_hook_func(_is_any, self._to_tree)
        converter.register_structure_hook_func(_is_any, lambda tree, _: self._from_tree(tree))
        # cattrs copies the items of list[Any] (and friends) as they are: restore them.
        converter.register_structure_hook_func(_holds_any, self._structure_container)
        converter.register_unstructure_hook_func(_is_ref_type, _ref_to_wire)
        converter.register_structure_hook_func(_is_ref_type, _structure_ref)
        # Exception fields (a supervisor's refusal) cross as $error nodes.
        converter.register_unstructure_hook_func(_is_error_type, self._to_tree)
        converter.register_structure_hook_func(_is_error_type, self._structure_error)
        # Child specs (remote start_child) cross with their class as its wire name.
        from ._spec_wire import install

        install(converter, self._to_tree, self._from_tree)
        # Annotated fields of these types travel as strings.
        for cls in (uuid.UUID, decimal.Decimal):
            converter.register_unstructure_hook(cls, str)
            converter.register_structure_hook(cls, _from_str(cls))

    def _structure_container(self, tree: Any, cls: Any) -> Any:
        origin = typing.get_origin(cls)
        args = typing.get_args(cls)

        def one(kind: Any, value: Any) -> Any:
            return self._from_tree(value) if kind is Any else self.converter.structure(value, kind)

        if origin in _MAPPINGS:
            if type(tree) is not dict:
                raise CodecError("malformed", f"expected a map for {cls!r}")
            key_type, value_type = args if len(args) == 2 else (Any, Any)
            return {one(key_type, k): one(value_type, v) for k, v in tree.items()}
        if type(tree) is not list:
            raise CodecError("malformed", f"expected a list for {cls!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(tree):
                raise CodecError("malformed", f"expected {len(args)} items for {cls!r}")
            return tuple(one(kind, value) for kind, value in zip(args, tree))
        items = [one(args[0], value) for value in tree]
        if origin is tuple:
            return tuple(items)
        if origin in (set, collections.abc.Set, collections.abc.MutableSet):
            return set(items)
        if origin is frozenset:
            return frozenset(items)
        return items

    def _structure_error(self, tree: Any, _: Any) -> Any:
        value = self._from_tree(tree)
        if not isinstance(value, BaseException):
            raise CodecError("malformed", "an exception field holds an $error node")
        return value


_MAPPINGS: Final = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_SEQUENCES: Final = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.MutableSet,
)


def _holds_any(cls: Any) -> bool:
    origin = typing.get_origin(cls)
    return (origin in _MAPPINGS or origin in _SEQUENCES) and Any in typing.get_args(cls)


def _is_error_type(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, BaseException)


def _register_errors() -> None:
    # anyotp's own errors cross the wire as themselves (a remote supervisor's NotFound is
    # an otp.NotFound); their names are fixed, so every node agrees on them.
    from . import _exceptions

    for export in _exceptions.__all__:
        cls = getattr(_exceptions, export)
        if isinstance(cls, type) and issubclass(cls, _exceptions.OTPError):
            message(f"$otp.error.{export}")(cls)


_REMOTE_ERROR: Final = "$otp.error.RemoteError"


def _from_str(cls: Callable[[str], Any]) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if type(value) is not str:
            raise CodecError("malformed", f"expected a str for {cls!r}, got {type(value).__name__}")
        return cls(value)

    return structure


def _key(key: Any) -> str:
    if type(key) is not str:
        raise CodecError("malformed", f"a map key must be a str, not {type(key).__name__}")
    return key


def _is_any(cls: Any) -> bool:
    return cls is Any


def _describe_structure_error(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        leaves = list(_leaves(exc))
        shown = "; ".join(f"{type(e).__name__}: {e}" for e in leaves[:3])
        return f"{exc.message} ({shown})" if shown else str(exc.message)
    return f"{type(exc).__name__}: {exc}"


def _leaves(group: BaseExceptionGroup[Any]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


@contextmanager
def _lending(refs: RefCodec | None) -> Iterator[None]:
    if refs is None:
        yield
        return
    token = _refs.set(refs)
    try:
        yield
    finally:
        _refs.reset(token)


def _ref_to_wire(ref: Any) -> dict[str, Any]:
    lender = _refs.get()
    if lender is None:
        raise CodecError(
            "unencodable",
            f"actor ref {ref!r} can only cross the wire through a broker that routes to it "
            "(otp.redis.RedisBroker)",
        )
    return lender._ref_to_wire(ref)


def _ref_from_wire(tree: dict[str, Any]) -> Any:
    lender = _refs.get()
    if lender is None:
        raise CodecError("malformed", "an actor ref arrived outside a broker")
    return lender._ref_from_wire(tree)


def _structure_ref(tree: Any, _: Any) -> Any:
    if type(tree) is not dict:
        raise CodecError("malformed", "an actor ref field holds a dict")
    return _ref_from_wire(tree)


# ---------------------------------------------------------------------------- formats


#: ``json.dumps(tree, separators=(",", ":"), ensure_ascii=False)`` without building an
#: encoder per call (``json.dumps`` makes one whenever an option is not its default).
_json_encode: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class JsonCodec(Codec):
    """The default codec: compact UTF-8 JSON (cattrs' JSON-preconfigured converter)."""

    name = "json"

    def _make_converter(self) -> cattrs.Converter:
        from cattrs.preconf.json import make_converter

        return make_converter()

    def dumps(self, tree: Any) -> bytes:
        try:
            return _json_encode(tree).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise CodecError("unencodable", f"{type(exc).__name__}: {exc}") from None

    def _parse(self, data: bytes) -> Any:
        return json.loads(data)


class MsgpackCodec(Codec):
    """msgpack (needs the ``msgpack`` package: ``pip install anyotp[msgpack]``); smaller
    and faster than JSON. Integers must fit in 64 bits; extension types from the wire are
    refused."""

    name = "msgpack"

    def __init__(
        self, *, max_size: int = DEFAULT_MAX_SIZE, converter: cattrs.Converter | None = None
    ) -> None:
        try:
            import msgpack  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError(
                "MsgpackCodec needs the msgpack package: pip install 'anyotp[msgpack]'"
            ) from None
        self._msgpack = msgpack
        super().__init__(max_size=max_size, converter=converter)

    def _make_converter(self) -> cattrs.Converter:
        from cattrs.preconf.msgpack import make_converter

        converter = make_converter()
        # cattrs' msgpack preset writes datetimes as float timestamps, which loses
        # microseconds far from 1970: ISO 8601 strings round-trip exactly, as in JSON.
        converter.register_unstructure_hook(datetime.datetime, datetime.datetime.isoformat)
        converter.register_structure_hook(
            datetime.datetime, _from_str(datetime.datetime.fromisoformat)
        )
        return converter

    def dumps(self, tree: Any) -> bytes:
        try:
            data: bytes = self._msgpack.packb(tree, use_bin_type=True)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise CodecError("unencodable", f"{type(exc).__name__}: {exc}") from None
        return data

    def _parse(self, data: bytes) -> Any:
        msgpack = self._msgpack
        try:
            return msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                use_list=True,
                ext_hook=_refuse_ext,
            )
        except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise CodecError("malformed", f"{type(exc).__name__}: {exc}") from None


def _refuse_ext(code: int, data: bytes) -> Any:
    raise CodecError("malformed", f"msgpack extension type {code} is not accepted")


_register_errors()
