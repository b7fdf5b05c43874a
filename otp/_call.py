"""Requests typed by their reply: :class:`Call`.

``class Get(otp.Call[int]): ...`` declares that the reply to ``Get`` is an ``int``; the
overloads of ``call`` (on :class:`otp.ActorRef`, :class:`otp.RemoteRef`, ``node.call``,
``send_request`` handles and ``broker.request``) then give ``await ref.call(Get())`` the
type ``int`` in mypy and pyright. Nothing of it exists at run time beyond an empty base
class: a ``Call`` is an ordinary message.

Each such ``call`` has three overloads: ``Call[R] -> R``; ``Call[object] -> object``; and
anything else ``-> Any``. The middle one only matters to mypy: when the context asks for
another type (``x: str = await ref.call(Get())``) mypy fails the first overload and would
fall through to ``Any``, accepting the mistake; the middle one catches it and the error
names ``object``. (mypy reports it as never matched, hence its ``type: ignore``.)
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Call", "R"]

#: The reply type of a :class:`Call` (covariant: a ``Call[bool]`` is a ``Call[int]``).
R_co = TypeVar("R_co", covariant=True)

#: A reply type, as the overloads of ``call`` solve it.
R = TypeVar("R")


class Call(Generic[R_co]):
    """Base class of a request whose reply is an ``R``: ``class Get(otp.Call[int]): ...``.

    Works as a plain class, with ``@attrs.frozen``/``@attrs.define`` subclasses (slotted or
    not) and with no fields at all; it adds no attribute and no behaviour, so matching
    (``case Get():``), equality and the wire codecs see only the subclass. Typing only:
    the reply the server returns from ``handle_call`` is not checked against ``R`` (Python
    cannot tie a ``match`` arm to a return type); the caller side is. OTP has no
    counterpart (Erlang is untyped); Akka Typed's ``ask`` and gleam_otp's ``call`` type
    the reply the same way.
    """

    __slots__ = ()
