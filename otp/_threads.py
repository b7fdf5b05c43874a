"""The thread-safe way into a node: :attr:`Node.from_thread` (anyio's ``from_thread``,
bound to the node's event loop).

Refs and nodes belong to one event loop and are not thread-safe: every ``ActorRef`` method
raises :class:`otp.WrongThread` outside the node's loop thread. Code in other threads (a
worker thread from ``anyio.to_thread``, a thread of a synchronous library, a GUI's main
loop) goes through ``node.from_thread``, which runs the operation in the node's loop and
blocks the calling thread until it is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.from_thread

from ._exceptions import NotFound

if TYPE_CHECKING:
    from ._actor import ActorRef
    from ._node import Node

__all__ = ["FromThread"]

T = TypeVar("T")


class FromThread:
    """Blocking, thread-safe calls into a running node, for code outside its event loop:
    ``node.from_thread.call(ref_or_name, request)``.

    Each method runs in the node's event loop and blocks the calling thread until it is
    done; its exceptions are raised in the calling thread. A target given by name is looked
    up in the loop at each call (:class:`otp.NotFound` if nothing is registered). Raises
    ``RuntimeError`` when called from the node's own event loop thread (``await`` the ref
    there) or when the node is not running. anyio's counterpart is
    :func:`anyio.from_thread.run` with the node's event loop token.
    """

    __slots__ = ("_node",)

    def __init__(self, node: Node) -> None:
        self._node = node

    def __repr__(self) -> str:
        return f"<otp.FromThread of {self._node!r}>"

    def _token(self) -> Any:
        node = self._node
        token = node._token
        if token is None or node._closing:
            raise RuntimeError(
                f"{node!r} is not running: node.from_thread works while its "
                "`async with otp.Node()` block runs"
            )
        if threading.get_ident() == node._thread:
            raise RuntimeError(
                f"node.from_thread is for other threads; this is {node!r}'s own event loop "
                "thread: await the operation directly (await ref.call(...))"
            )
        return token

    def run(self, func: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run ``await func(*args)`` in the node's event loop and return its result."""
        return anyio.from_thread.run(func, *args, token=self._token())

    def run_sync(self, func: Callable[..., T], *args: Any) -> T:
        """Call ``func(*args)`` in the node's event loop thread and return its result."""
        return anyio.from_thread.run_sync(func, *args, token=self._token())

    def _resolve(self, target: ActorRef | str) -> Any:
        if isinstance(target, str):
            ref = self._node.whereis(target)
            if ref is None:
                raise NotFound(f"actor {target!r}", f"node {self._node.name!r}")
            return ref
        return target

    def call(self, target: ActorRef | str, request: Any, timeout: float | None = 5.0) -> Any:
        """``await target.call(request, timeout)`` in the node's loop; returns the reply."""

        async def go() -> Any:
            return await self._resolve(target).call(request, timeout)

        return self.run(go)

    def cast(self, target: ActorRef | str, message: Any, *, priority: int = 0) -> None:
        """``await target.cast(message)`` in the node's loop (a dead actor: a dead letter)."""

        async def go() -> None:
            await self._resolve(target).cast(message, priority=priority)

        self.run(go)

    def send(self, target: ActorRef | str, message: Any, *, priority: int = 0) -> None:
        """``await target.send(message)`` (to ``handle_info``) in the node's loop."""

        async def go() -> None:
            await self._resolve(target).send(message, priority=priority)

        self.run(go)
