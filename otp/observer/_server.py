"""Serving the observer with Hypercorn beside a running node, on asyncio or trio."""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup
from hypercorn.config import Config

from .._backends import backend as _current_backend
from .._node import Node
from ._app import CrashInjector, ObserverApp, create_app
from ._collector import Collector, serve_tree

__all__ = ["ObserverServer", "agent", "serve"]

logger = logging.getLogger("otp.observer")

_LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
#: Seconds open connections (event streams) get to finish when the server stops.
GRACE: Final = 1.0


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _allowed_hosts(host: str, port: int, extra: Iterable[str] | None) -> frozenset[str] | None:
    names: set[str] = set()
    if _is_wildcard(host):
        if extra is None:
            return None  # bound everywhere on purpose: the Host cannot be known
    elif _is_loopback(host):
        names |= {"localhost", "127.0.0.1", "[::1]", host if ":" not in host else f"[{host}]"}
    else:
        names.add(host if ":" not in host else f"[{host}]")
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= names
    hosts |= {h.lower() for h in (extra or ())}
    return frozenset(hosts)


class ObserverServer:
    """A running web observer (returned by :func:`serve`): ``url``, ``host``, ``port``,
    ``token`` (``None`` when actions are off), ``actions``, ``app`` (the ASGI app)."""

    def __init__(
        self,
        node: Node,
        *,
        host: str,
        port: int,
        token: str | None,
        actions: bool,
        allowed_hosts: Iterable[str] | None,
        inject_crash: CrashInjector | None,
    ) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int from 0 (any free port) to 65535, not {port!r}")
        if not isinstance(host, str):
            raise TypeError(f"host must be a str like '127.0.0.1', not {host!r}")
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ValueError("a token must be a str of at least 16 characters (or None)")
        self.node = node
        self.host = host
        self.port = port
        self.actions = bool(actions)
        self.token: str | None = None
        if self.actions:
            self.token = token if token is not None else secrets.token_urlsafe(24)
        self._allowed_extra = None if allowed_hosts is None else list(allowed_hosts)
        self._inject_crash = inject_crash
        self._stop = anyio.Event()
        self._done = anyio.Event()
        self._hard_stop = anyio.CancelScope(shield=True)
        self._tasks: TaskGroup | None = None
        self._stack = contextlib.AsyncExitStack()
        self.app: ObserverApp | None = None

    def __repr__(self) -> str:
        return f"<otp.observer.ObserverServer {self.url} actions={self.actions}>"

    @property
    def url(self) -> str:
        """The page's address (``http://127.0.0.1:8765/``)."""
        shown = "127.0.0.1" if _is_wildcard(self.host) else self.host
        return f"http://{_hostport(shown, self.port)}/"

    @property
    def action_url(self) -> str:
        """The page's address with the token in its fragment (never sent to the server):
        opening it enables the action buttons."""
        return self.url if self.token is None else f"{self.url}#token={self.token}"

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        infos = socket.getaddrinfo(
            self.host or None, self.port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
        error: OSError | None = None
        for af, kind, proto, _canon, address in infos:
            sock = socket.socket(af, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
                sock.listen(128)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            return sock
        raise OSError(f"cannot listen on {_hostport(self.host, self.port)}: {error}") from error

    async def __aenter__(self) -> ObserverServer:
        sock = self._bind()
        self.port = sock.getsockname()[1]
        stack = contextlib.AsyncExitStack()
        try:
            collector = await stack.enter_async_context(Collector(self.node))
            self.app = create_app(
                self.node,
                token=self.token,
                actions=self.actions,
                allowed_hosts=_allowed_hosts(self.host, self.port, self._allowed_extra),
                inject_crash=self._inject_crash,
                collector=collector,
            )
            config = Config()
            # Hypercorn takes the listening socket over (and closes it when it stops).
            config.bind = [f"fd://{sock.detach()}"]
            config.graceful_timeout = GRACE
            config.accesslog = None
            config.errorlog = logging.getLogger("otp.observer.http")
            config.include_server_header = False
            hypercorn: Any = importlib.import_module(f"hypercorn.{_current_backend().name}")
            self._tasks = tasks = await stack.enter_async_context(anyio.create_task_group())
            tasks.start_soon(self._run, hypercorn.serve, self.app, config, name="otp.observer http")
        except BaseException:
            sock.close()  # harmless once detached
            await stack.aclose()
            raise
        self._stack = stack
        logger.info("otp.observer serving node %r at %s", self.node.name, self.url)
        return self

    async def _run(self, serve: Any, app: ObserverApp, config: Config) -> None:
        # Shielded: Hypercorn stops through its shutdown trigger (set in __aexit__), never by
        # a cancellation from outside (a node body cancelled by a signal, say), which its
        # asyncio server does not survive cleanly. Past the grace period __aexit__ cancels
        # this scope itself.
        with self._hard_stop:
            try:
                await serve(app, config, shutdown_trigger=self._stop.wait)
            finally:
                self._done.set()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tasks is not None
        assert self.app is not None
        self.app.close()
        self._stop.set()
        # Hypercorn stops within its grace period; past it (a stuck connection) it is cancelled.
        with anyio.move_on_after(GRACE + 2.0, shield=True):
            await self._done.wait()
        self._hard_stop.cancel()
        self._tasks.cancel_scope.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)


def serve(
    node: Node,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    token: str | None = None,
    actions: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    inject_crash: CrashInjector | None = None,
) -> ObserverServer:
    """Serve the web observer of ``node`` at ``http://host:port/`` for the body of an
    ``async with``: ``async with otp.observer.serve(node) as server: print(server.url)``.

    ``port=0`` picks a free port (read ``server.port``). Binds to 127.0.0.1 unless told
    otherwise. Actions (stop, kill, restart; crash injection when ``inject_crash`` is
    given) are off unless ``actions=True``; they then need ``server.token`` (``token``, or
    a random one). ``allowed_hosts`` adds ``Host`` header values to answer (the bound
    address is always allowed; on a wildcard address every host is, unless you list them).
    Raises ``OSError`` if the address cannot be bound. Erlang's counterpart is
    ``observer:start()`` (a GUI) and Phoenix LiveDashboard (a page).
    """
    return ObserverServer(
        node,
        host=host,
        port=port,
        token=token,
        actions=actions,
        allowed_hosts=allowed_hosts,
        inject_crash=inject_crash,
    )


@contextlib.asynccontextmanager
async def agent(node: Node) -> AsyncIterator[None]:
    """Answer other nodes' observers with this node's tree, without serving a page.

    Use it on the nodes of a cluster (``otp.redis.RedisBroker``) whose trees an observer
    elsewhere should show. :func:`serve` does this already for the node it serves.
    """
    async with anyio.create_task_group() as tasks:
        await tasks.start(_agent_task, node)
        try:
            yield
        finally:
            tasks.cancel_scope.cancel()


async def _agent_task(
    node: Node, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    await serve_tree(node, task_status=task_status)
