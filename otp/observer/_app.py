"""The observer's ASGI application (Starlette): the page, the JSON API and the event stream.

Security, in this order for every request: the ``Host`` header must name this server (a
page on another site that rebinds its DNS name to 127.0.0.1 is refused, reads included);
no CORS headers are ever sent, so other origins cannot read anything; the page forbids
framing. Actions (``POST`` only) are off unless asked for and need the token in an
``Authorization: Bearer`` header, compared in constant time, and an ``Origin`` (when a
browser sends one) that is this server.
"""

from __future__ import annotations

import hmac
import importlib.resources
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import _json
from .._actor import ActorRef
from .._exceptions import CallTimeout, OTPError
from .._snapshots import SupervisorSnapshot
from .._supervisor_refs import SupervisorRef
from ._collector import CLUSTER_TICK, Collector, dumps

__all__ = ["CrashInjector", "ObserverApp", "create_app"]

#: ``inject_crash(actor_id or None)``: crash that actor (or one picked at random) and
#: return the ref of the actor it crashed, or ``None`` when there was none to crash.
CrashInjector = Callable[[int | None], Awaitable[ActorRef | None]]

#: The largest request body an action accepts.
MAX_BODY: Final = 4096
#: Events replayed to a page that connects (the rest are in ``GET /api/log``).
REPLAY: Final = 500
#: Event streams served at once (each page holds one); more are refused with 503.
MAX_STREAMS: Final = 32
#: A comment line this often keeps proxies and browsers from closing a quiet stream.
KEEPALIVE: Final = 15.0

_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_STATIC: Final = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def _static(name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath("static", name).read_bytes()


def _nested(value: Any) -> Any:
    """The JSON form of a value inside a larger document (no ``version`` of its own)."""
    return _json.json_converter.unstructure(value)


def _json_response(value: Any, status: int = 200) -> Response:
    return Response(dumps(value), status_code=status, media_type="application/json")


def _action_reply(action: str, ref: Any, *, pending: bool = False) -> Response:
    """An action's answer: 200 once done, 202 while it still goes on (``"pending"``)."""
    body: dict[str, Any] = {"type": "action", "action": action, "ok": True}
    if pending:
        body["pending"] = True
    body["actor"] = _nested(ref)
    return _json_response(body, 202 if pending else 200)


def _error(status: int, message: str) -> Response:
    return _json_response({"type": "error", "status": status, "error": message}, status)


class _Guard:
    """ASGI middleware: the Host check and the security headers on every response."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str] | None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if self.allowed_hosts is not None and (host or "").lower() not in self.allowed_hosts:
            response = _error(
                421, f"this observer does not answer to host {host!r} (DNS rebinding guard)"
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for key, value in _HEADERS.items():
                    if key.lower().encode() not in present:
                        headers.append((key.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class ObserverApp:
    """The ASGI app of one observed node; built by :func:`create_app`."""

    def __init__(
        self,
        collector: Collector,
        *,
        token: str | None,
        actions: bool,
        allowed_hosts: Iterable[str] | None,
        inject_crash: CrashInjector | None,
        manage_collector: bool,
    ) -> None:
        self.collector = collector
        self.node = collector.node
        self.token = token
        self.actions = actions
        self.inject_crash = inject_crash
        self.closing = anyio.Event()
        hosts = None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
        routes = [
            Route("/", self.page, methods=["GET"]),
            Route("/static/{name}", self.static, methods=["GET"]),
            Route("/favicon.ico", self.favicon, methods=["GET"]),
            Route("/api/info", self.info, methods=["GET"]),
            Route("/api/tree", self.tree, methods=["GET"]),
            Route("/api/actors/{actor_id:int}", self.actor, methods=["GET"]),
            Route("/api/events", self.events, methods=["GET"]),
            Route("/api/log", self.log, methods=["GET"]),
            Route("/api/samples", self.samples, methods=["GET"]),
            Route("/api/topics", self.topics, methods=["GET"]),
            Route("/api/nodes", self.nodes, methods=["GET"]),
            Route("/api/actors/{actor_id:int}/{action}", self.act, methods=["POST"]),
            Route("/api/demo/crash", self.crash, methods=["POST"]),
        ]
        lifespan = self._lifespan if manage_collector else None
        self.starlette = Starlette(routes=routes, lifespan=lifespan)
        self.asgi: ASGIApp = _Guard(self.starlette, hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)

    def _lifespan(self, app: Starlette) -> Any:
        collector = self.collector
        closing = self.closing

        class _Lifespan:
            async def __aenter__(self) -> None:
                await collector.__aenter__()

            async def __aexit__(self, *exc: object) -> None:
                closing.set()
                await collector.__aexit__(None, None, None)

        return _Lifespan()

    def close(self) -> None:
        """End every event stream (the server is going away)."""
        self.closing.set()
        self.collector.notify()

    # ------------------------------------------------------------------ the page

    async def page(self, request: Request) -> Response:
        return Response(_static("index.html"), media_type=_STATIC["index.html"])

    async def favicon(self, request: Request) -> Response:
        return Response(status_code=204)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC or name == "index.html":
            return _error(404, f"no static file {name!r}")
        return Response(_static(name), media_type=_STATIC[name])

    # ------------------------------------------------------------------ reading

    def _info(self) -> dict[str, Any]:
        return {
            "version": _json.JSON_FORM_VERSION,
            "type": "info",
            "node": self.node.name,
            "broker": type(self.node.broker).__name__,
            "cluster": self.collector.cluster,
            "actions": self.actions,
            "demo": self.inject_crash is not None,
            "started": self.collector.started,
        }

    async def info(self, request: Request) -> Response:
        return _json_response(self._info())

    async def tree(self, request: Request) -> Response:
        return _json_response(_json.to_json(self.node.tree()))

    async def samples(self, request: Request) -> Response:
        return _json_response(
            {
                "version": _json.JSON_FORM_VERSION,
                "type": "samples",
                "samples": list(self.collector.samples),
            }
        )

    async def topics(self, request: Request) -> Response:
        return _json_response(self.collector.topics())

    async def nodes(self, request: Request) -> Response:
        collector = self.collector
        if collector.cluster and time.monotonic() - collector.fetched_at >= CLUSTER_TICK:
            await collector.fetch_trees()
        return _json_response(collector.nodes())

    async def log(self, request: Request) -> Response:
        since = _int(request.query_params.get("since"), 0)
        events, lost = self.collector.events_after(since)
        body = (
            f'{{"version":{_json.JSON_FORM_VERSION},"type":"log",'
            f'"lost":{"true" if lost else "false"},'
            f'"events":[{",".join(text for _, text in events)}]}}'
        )
        return Response(body, media_type="application/json")

    async def actor(self, request: Request) -> Response:
        actor_id: int = request.path_params["actor_id"]
        found = self.collector.find(actor_id)
        if found is None:
            return _error(
                404,
                f"no actor #{actor_id} in the tree of node {self.node.name!r}: it may have "
                "exited (a restarted actor has a new id); reload the tree",
            )
        item, parent = found
        ref = item.ref
        assert ref is not None
        form = _json.json_converter.unstructure(item)
        if isinstance(item, SupervisorSnapshot):
            form["children"] = [
                {
                    "id": c.id,
                    "type": "supervisor" if isinstance(c, SupervisorSnapshot) else "worker",
                    "ref": _nested(c.ref) if c.ref is not None else None,
                }
                for c in item.children
            ]
        detail: dict[str, Any] = {
            "version": _json.JSON_FORM_VERSION,
            "type": "actor",
            "id": actor_id,
            "snapshot": form,
            "supervisor": _nested(parent.ref) if parent and parent.ref else None,
            "statistics": _nested(ref.statistics()),
            "state": None,
            "state_source": None,
            "state_error": None,
            "links": None,
            "monitors": None,
            "monitored_by": None,
            "trap_exit": None,
        }
        if ref.alive:
            await self._state_into(ref, detail)
        # Links and monitors as ref.statistics() lists them (OTP's process_info).
        statistics = detail["statistics"]
        for name in ("links", "monitors", "monitored_by", "trap_exit"):
            detail[name] = statistics.get(name)
        return _json_response(detail)

    async def _state_into(self, ref: ActorRef, detail: dict[str, Any]) -> None:
        # get_state shows what the server's format_status returns (OTP's format_status/1),
        # so a secret hidden there stays hidden here.
        try:
            state = await ref.get_state(timeout=1.0)
        except CallTimeout:
            detail["state_error"] = "busy: no answer within 1 s (it is inside a callback)"
        except OTPError as exc:
            detail["state_error"] = str(exc)
        else:
            detail["state"] = _nested(state)
            detail["state_source"] = "get_state"

    # ------------------------------------------------------------------ the stream

    async def events(self, request: Request) -> Response:
        since = _int(request.headers.get("last-event-id"), 0) or _int(
            request.query_params.get("since"), 0
        )
        with_tree = request.query_params.get("tree", "1") != "0"
        if self.collector.watchers >= MAX_STREAMS:
            return _error(503, f"{MAX_STREAMS} event streams are open already; close a page")
        return StreamingResponse(
            self._stream(since, with_tree),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    async def _stream(self, since: int, with_tree: bool) -> AsyncIterator[str]:
        collector = self.collector
        collector.watchers += 1
        try:
            yield "retry: 2000\n" + _sse("hello", dumps(self._info()))
            events, lost = collector.events_after(since)
            if lost:
                yield _sse("gap", '{"type":"gap"}')
            last_seq = since
            backlog = events[-REPLAY:]
            if backlog:
                yield "".join(_sse("event", text, seq) for seq, text in backlog)
                last_seq = backlog[-1][0]
            elif events:
                last_seq = events[-1][0]
            tree_version = collector.tree_version
            if with_tree:  # a fresh one at once: the collector writes them only while watched
                yield _sse("tree", dumps(_json.to_json(self.node.tree())))
            samples_seen = -1.0
            nodes_version = -1
            quiet_since = time.monotonic()
            while not self.closing.is_set():
                out: list[str] = []
                events, lost = collector.events_after(last_seq)
                if lost:
                    out.append(_sse("gap", '{"type":"gap"}'))
                if events:
                    out.extend(_sse("event", text, seq) for seq, text in events)
                    last_seq = events[-1][0]
                if with_tree and collector.tree_version != tree_version:
                    tree_version = collector.tree_version
                    out.append(_sse("tree", collector.tree_text))
                if collector.samples and collector.samples[-1]["t"] != samples_seen:
                    sample = collector.samples[-1]
                    samples_seen = sample["t"]
                    out.append(_sse("sample", dumps(sample)))
                    out.append(_sse("topics", dumps(collector.topics())))
                if collector.nodes_version != nodes_version:
                    nodes_version = collector.nodes_version
                    out.append(_sse("nodes", dumps(collector.nodes())))
                now = time.monotonic()
                if out:
                    quiet_since = now
                    yield "".join(out)
                elif now - quiet_since >= KEEPALIVE:
                    quiet_since = now
                    yield ": keep-alive\n\n"
                await collector.wait_change(1.0)
        finally:
            collector.watchers -= 1

    # ------------------------------------------------------------------ actions

    def _refuse(self, request: Request) -> Response | None:
        """Why this action request may not run, or ``None`` when it may."""
        if not self.actions:
            return _error(
                403,
                "actions are off: serve the observer with actions=True (the demo: "
                "python -m otp demo --web) and send its token",
            )
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return _error(403, f"cross-site action refused (Sec-Fetch-Site: {site})")
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is not None and origin.lower() not in (
            f"http://{host}".lower(),
            f"https://{host}".lower(),
        ):
            return _error(403, f"action from origin {origin!r} refused: not this observer")
        given = request.headers.get("authorization", "")
        scheme, _, presented = given.partition(" ")
        expected = self.token or ""
        ok = hmac.compare_digest(presented.strip().encode(), expected.encode())
        if scheme.lower() != "bearer" or not expected or not ok:
            return _error(
                401,
                "this action needs the observer's token: send 'Authorization: Bearer <token>' "
                "(the token is printed when the observer starts)",
            )
        return None

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        length = _int(request.headers.get("content-length"), 0)
        if length > MAX_BODY:
            return _error(413, f"a request body of at most {MAX_BODY} bytes, please")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                return _error(413, f"a request body of at most {MAX_BODY} bytes, please")
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "the request body must be JSON (an object) or empty")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        return body

    async def act(self, request: Request) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        action = request.path_params["action"]
        if action not in ("stop", "kill", "restart"):
            return _error(404, f"no action {action!r}: use stop, kill or restart")
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        actor_id: int = request.path_params["actor_id"]
        found = self.collector.find(actor_id)
        if found is None:
            return _error(404, f"no actor #{actor_id} on node {self.node.name!r}")
        item, parent = found
        ref = item.ref
        assert ref is not None
        if not ref.alive and action != "restart":
            return _error(409, f"{ref!r} has already exited")
        try:
            if action == "kill":
                ref.kill()
                try:  # answer once it has exited, so the reply shows it dead
                    await ref.join(timeout=5.0)
                except CallTimeout:
                    return _action_reply(action, ref, pending=True)
            elif action == "stop":
                reason = body.get("reason", "normal")
                if not isinstance(reason, str) or not reason or len(reason) > 200:
                    return _error(400, "reason must be a non-empty string of at most 200 chars")
                try:
                    await ref.stop(reason, timeout=5.0)
                except CallTimeout:
                    return _action_reply(action, ref, pending=True)
            else:
                supervisor = parent.ref if parent is not None else None
                if not isinstance(supervisor, SupervisorRef) or not supervisor.alive:
                    return _error(
                        409, f"{ref!r} has no live supervisor to restart it (stop it instead)"
                    )
                await supervisor.terminate_child(item.id)
                await supervisor.restart_child(item.id)
        except OTPError as exc:
            return _error(409, str(exc))
        return _action_reply(action, ref)

    async def crash(self, request: Request) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        if self.inject_crash is None:
            return _error(404, "this node runs no demo: nothing to inject a crash into")
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        target = body.get("id")
        if target is not None and (not isinstance(target, int) or isinstance(target, bool)):
            return _error(400, "id must be an actor id (an integer) or absent")
        victim = await self.inject_crash(target)
        if victim is None:
            return _error(
                409, "no live actor to crash" if target is None else f"no live demo actor #{target}"
            )
        return _json_response(
            {"type": "action", "action": "crash", "ok": True, "actor": _nested(victim)}
        )


def _sse(event: str, data: str, seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    # The JSON text holds no raw newlines (json.dumps escapes them), so one data line.
    return f"{head}event: {event}\ndata: {data}\n\n"


def _int(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return max(0, int(value))
    except ValueError:
        return default


def create_app(
    node: Any,
    *,
    token: str | None = None,
    actions: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    inject_crash: CrashInjector | None = None,
    collector: Collector | None = None,
) -> ObserverApp:
    """The observer's ASGI app for ``node``, to mount in a server of your own.

    Without ``collector`` the app starts its own at ASGI lifespan startup (your server
    must run the lifespan protocol). ``allowed_hosts`` lists the ``Host`` header values it
    answers (``None``: any, which exposes it to DNS rebinding: give the names). Actions
    need ``actions=True`` and a non-empty ``token``.
    """
    if actions and not token:
        raise ValueError("actions=True needs a token (a long random string)")
    return ObserverApp(
        collector if collector is not None else Collector(node),
        token=token,
        actions=actions,
        allowed_hosts=allowed_hosts,
        inject_crash=inject_crash,
        manage_collector=collector is None,
    )
