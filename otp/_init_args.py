"""Typing only: protocols that tie start arguments to a GenServer's ``init``.

``node.spawn(cls, *args)``, ``otp.worker(cls, *args)`` and ``otp.worker_pool(name, cls,
*args)`` are overloaded on these, so a type checker matches ``args`` against
``cls.init``: a missing, extra or mistyped start argument is an error. One overload per
argument count up to :data:`MAX_CHECKED` (mypy cannot solve a variadic signature whose
``init`` has defaults from fewer arguments than it has parameters), then a variadic one.
What is not checked: keyword-only ``init`` parameters (start arguments are positional),
and classes that do not override ``init`` (the base accepts anything; it raises
``TypeError`` at start for arguments it did not expect).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar, TypeVarTuple

__all__ = [
    "A1",
    "A2",
    "A3",
    "A4",
    "MAX_CHECKED",
    "Init0",
    "Init1",
    "Init2",
    "Init3",
    "Init4",
    "InitN",
    "Ts",
]

#: Start argument counts with an overload of their own (more go through :class:`InitN`).
MAX_CHECKED = 4

A1 = TypeVar("A1", contravariant=True)
A2 = TypeVar("A2", contravariant=True)
A3 = TypeVar("A3", contravariant=True)
A4 = TypeVar("A4", contravariant=True)
Ts = TypeVarTuple("Ts")


class Init0(Protocol):
    """A GenServer class whose ``init`` takes no start argument."""

    def init(self, /) -> Coroutine[Any, Any, object]: ...


class Init1(Protocol[A1]):
    """A GenServer class whose ``init`` takes one start argument."""

    def init(self, a1: A1, /) -> Coroutine[Any, Any, object]: ...


class Init2(Protocol[A1, A2]):
    """A GenServer class whose ``init`` takes two start arguments."""

    def init(self, a1: A1, a2: A2, /) -> Coroutine[Any, Any, object]: ...


class Init3(Protocol[A1, A2, A3]):
    """A GenServer class whose ``init`` takes three start arguments."""

    def init(self, a1: A1, a2: A2, a3: A3, /) -> Coroutine[Any, Any, object]: ...


class Init4(Protocol[A1, A2, A3, A4]):
    """A GenServer class whose ``init`` takes four start arguments."""

    def init(self, a1: A1, a2: A2, a3: A3, a4: A4, /) -> Coroutine[Any, Any, object]: ...


class InitN(Protocol[*Ts]):
    """A GenServer class whose ``init`` takes the start arguments ``*Ts``."""

    def init(self, *args: *Ts) -> Coroutine[Any, Any, object]: ...
