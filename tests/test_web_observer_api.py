"""The web observer's JSON API and event stream, on a real server on port 0, both backends."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import pytest

import otp

httpx = pytest.importorskip("httpx", reason="the web observer tests need httpx (test extra)")
observer = pytest.importorskip("otp.observer", reason="the web observer needs anyotp[web]")

from otp.testing import wait_for_name, wait_until  # noqa: E402
from tests._helpers import Block, Counter  # noqa: E402

pytestmark = [
    pytest.mark.anyio,
    # httpx leaves its own response-body async generators to the garbage collector when a
    # stream is closed early (trio warns about those); ours are closed with aclosing.
    pytest.mark.filterwarnings(r"ignore:Async generator 'http(x|core)\.:ResourceWarning"),
]

TOKEN = "t0ken-for-the-tests-0123456789"


@attrs.frozen
class Boom:
    """A message that crashes a Victim."""


class Victim(otp.GenServer):
    async def init(self) -> None:
        self.seen = 0
        self.me: dict[str, Any] = {}
        self.me["me"] = self.me

    async def handle_cast(self, message: Any) -> None:
        self.seen += 1
        if isinstance(message, Boom):
            raise RuntimeError("injected")

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        if isinstance(request, Block):
            await request.event.wait()
        return None


def tree_spec(n: int = 3) -> otp.SupervisorSpec:
    return otp.supervisor(
        "root",
        [otp.worker(Victim, name=f"v{i}") for i in range(n)]
        + [otp.supervisor("inner", [otp.worker(Counter, name="c")])],
        max_restarts=100,
        within=1.0,
    )


@contextlib.asynccontextmanager
async def observed(
    **options: Any,
) -> AsyncIterator[tuple[otp.Node, Any, Any]]:
    async with otp.Node(name="web") as node:
        await node.start(tree_spec())
        async with observer.serve(node, port=0, **options) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
                yield node, server, client


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def find(tree: dict[str, Any], child_id: str) -> dict[str, Any]:
    stack = list(tree["children"])
    while stack:
        item = stack.pop()
        if item["id"] == child_id:
            return item
        stack.extend(item.get("children", ()))
    raise KeyError(child_id)


@contextlib.asynccontextmanager
async def sse(
    client: Any, url: str = "/api/events", **kw: Any
) -> AsyncIterator[AsyncIterator[tuple[str, Any]]]:
    """The observer's stream as (event name, parsed data) pairs; closed on leaving."""
    async with client.stream("GET", url, **kw) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")

        async def pairs() -> AsyncIterator[tuple[str, Any]]:
            name = "message"
            async with contextlib.aclosing(response.aiter_lines()) as lines:
                async for line in lines:
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        yield name, json.loads(line[6:])

        async with contextlib.aclosing(pairs()) as stream:
            yield stream


# ---------------------------------------------------------------------------- reading


async def test_page_tree_and_info() -> None:
    async with observed() as (_node, server, client):
        assert server.host == "127.0.0.1"
        assert server.port != 0
        assert server.url == f"http://127.0.0.1:{server.port}/"
        assert server.token is None
        page = await client.get("/")
        assert page.status_code == 200
        assert "anyotp" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        script = await client.get("/static/app.js")
        assert script.status_code == 200
        assert "EventSource" in script.text
        assert (await client.get("/static/../_app.py")).status_code == 404
        assert (await client.get("/static/nope.js")).status_code == 404

        tree = (await client.get("/api/tree")).json()
        assert tree["version"] == otp.JSON_FORM_VERSION
        assert tree["type"] == "tree"
        assert tree["node"] == "web"
        root = tree["children"][0]
        assert [c["id"] for c in root["children"]] == ["v0", "v1", "v2", "inner"]
        assert find(tree, "c")["behaviour"] == "Counter"

        info = (await client.get("/api/info")).json()
        assert info["node"] == "web"
        assert info["actions"] is False
        assert info["demo"] is False
        assert info["cluster"] is False


async def test_one_actor() -> None:
    async with observed() as (node, _server, client):
        ref = node.whereis("v1")
        await ref.cast("hello")
        await wait_until(lambda: ref.statistics().messages_handled == 1)
        detail = (await client.get(f"/api/actors/{ref.id}")).json()
        assert detail["type"] == "actor"
        assert detail["snapshot"]["id"] == "v1"
        assert "version" not in detail["snapshot"]
        assert detail["supervisor"]["name"] == "root"
        assert detail["statistics"]["messages_handled"] == 1
        assert detail["statistics"]["mailbox"]["high_water"] >= 1
        assert detail["state_source"] == "get_state"
        assert detail["state"]["seen"] == 1
        assert detail["state"]["me"] == {"me": "<cycle>"}

        root = node.whereis("root")
        sup = (await client.get(f"/api/actors/{root.id}")).json()
        assert sup["snapshot"]["type"] == "supervisor"
        assert [c["id"] for c in sup["snapshot"]["children"]] == ["v0", "v1", "v2", "inner"]

        missing = await client.get("/api/actors/999999")
        assert missing.status_code == 404
        assert "no actor #999999" in missing.json()["error"]
        assert (await client.get("/api/actors/abc")).status_code == 404


class Secretive(otp.GenServer):
    async def init(self) -> None:
        self.user = "ada"
        self.password = "hunter2"

    def format_status(self, state: dict[str, Any]) -> Any:
        return {**state, "password": "***"}


async def test_the_state_goes_through_format_status() -> None:
    async with observed() as (node, _server, client):
        ref = await node.spawn(Secretive)
        detail = (await client.get(f"/api/actors/{ref.id}")).json()
        assert detail["state"] == {"user": "ada", "password": "***"}
        assert "hunter2" not in json.dumps(detail)
        await ref.stop()


class Linker(otp.GenServer):
    async def init(self, other: otp.ActorRef) -> None:
        self.link(other)
        self.monitor(other)
        self.trap_exit = True


async def test_links_and_monitors_of_one_actor() -> None:
    async with observed() as (node, _server, client):
        other = node.whereis("v0")
        linker = await node.spawn(Linker, other)
        detail = (await client.get(f"/api/actors/{linker.id}")).json()
        assert [r["id"] for r in detail["links"]] == [other.id]
        assert [r["id"] for r in detail["monitors"]] == [other.id]
        assert detail["trap_exit"] is True
        watched = (await client.get(f"/api/actors/{other.id}")).json()
        assert linker.id in [r["id"] for r in watched["monitored_by"]]
        assert linker.id in [r["id"] for r in watched["links"]]
        await linker.stop()


async def test_a_busy_actor_answers_without_its_state() -> None:
    async with observed() as (node, _server, client):
        ref = node.whereis("v0")
        release = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ref.call, Block(release))
            await wait_until(
                lambda: ref.statistics().mailbox.depth == 0 and ref.statistics().mailbox.enqueued
            )
            detail = (await client.get(f"/api/actors/{ref.id}")).json()
            release.set()
        assert detail["state"] is None
        assert "busy" in detail["state_error"]
        assert detail["statistics"]["alive"] is True


async def test_topics_and_dead_letters_per_topic() -> None:
    class Listener(otp.GenServer):
        async def init(self) -> None:
            await self.subscribe("orders.*")

    async with observed() as (node, _server, client):
        await node.spawn(Listener)
        await node.broker.publish("orders.created", 1)
        await node.broker.publish("nobody.home", 2)
        await node.broker.publish("nobody.home", 3)

        async def counted() -> Any:
            topics = (await client.get("/api/topics")).json()
            rows = {r["topic"]: r for r in topics["topics"]}
            return rows if rows.get("nobody.home", {}).get("dead_letters") == 2 else None

        rows = await wait_until(counted)
        assert rows["orders.*"]["subscribers"] == 1
        assert rows["orders.*"]["dead_letters"] == 0
        assert otp.DEAD_LETTERS not in rows  # the observer's own subscription is not shown
        topics = (await client.get("/api/topics")).json()
        assert topics["statistics"]["type"] == "broker_statistics"
        assert topics["statistics"]["published"] >= 3


async def test_samples_count_throughput_across_restarts() -> None:
    async with observed() as (node, _server, client):
        ref = node.whereis("v2")
        for _ in range(50):
            await ref.cast("work")

        async def sampled() -> Any:
            samples = (await client.get("/api/samples")).json()["samples"]
            return samples if sum(s["handled_per_s"] for s in samples) > 0 else None

        samples = await wait_until(sampled)
        last = samples[-1]
        assert set(last) >= {
            "t",
            "handled_per_s",
            "published_per_s",
            "mailbox_total",
            "mailbox_max",
        }
        assert last["actors"] == 6
        assert all(s["handled_per_s"] >= 0 for s in samples)


async def test_nodes_on_the_in_memory_broker() -> None:
    async with observed() as (_node, _server, client):
        nodes = (await client.get("/api/nodes")).json()
        assert nodes["cluster"] is False
        assert nodes["broker"] == "InMemoryBroker"
        assert [n["name"] for n in nodes["nodes"]] == ["web"]
        assert nodes["nodes"][0]["tree"]["node"] == "web"


# ---------------------------------------------------------------------------- the stream


async def test_the_stream_pushes_trees_and_events() -> None:
    async with observed(actions=True, token=TOKEN) as (node, _server, client):
        victim = node.whereis("v0")
        trees = 0
        hello = None
        seen: list[dict[str, Any]] = []
        with anyio.fail_after(10):
            async with sse(client) as stream:
                async for name, data in stream:
                    if name == "hello":
                        hello = data
                    elif name == "tree":
                        trees += 1
                        assert data["type"] == "tree"
                        if trees == 1:
                            await victim.cast(Boom())
                    elif name == "event":
                        seen.append(data)
                        if data["kind"] == "restarted" and data["detail"] == "v0":
                            break
        assert hello is not None and hello["actions"] is True
        crash = next(e for e in seen if e["kind"] == "exited" and e["actor"]["id"] == victim.id)
        assert crash["reason"]["class"] == "RuntimeError"
        assert crash["reason"]["message"] == "injected"
        assert crash["version"] == otp.JSON_FORM_VERSION
        seqs = [e["seq"] for e in seen]
        assert seqs == sorted(seqs)

        # Reconnecting with Last-Event-ID replays only what came after it.
        last = seen[-1]["seq"]
        await node.whereis("v1").cast(Boom())
        with anyio.fail_after(10):
            async with sse(client, headers={"Last-Event-ID": str(last)}) as stream:
                async for name, data in stream:
                    if name == "event":
                        assert data["seq"] > last
                        if data["kind"] == "restarted" and data["detail"] == "v1":
                            break


async def test_the_tree_is_pushed_at_least_once_a_second() -> None:
    async with observed() as (_node, _server, client):
        stamps: list[float] = []
        with anyio.fail_after(10):
            async with sse(client, params={"tree": "1"}) as stream:
                async for name, _data in stream:
                    if name == "tree":
                        stamps.append(anyio.current_time())
                        if len(stamps) == 4:
                            break
        gaps = [b - a for a, b in itertools.pairwise(stamps[1:])]
        # Pushed every 0.5 s; a loaded machine may delay one, never to a stale page.
        assert max(gaps) < 1.5, gaps


async def test_event_streams_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observer._app, "MAX_STREAMS", 2)
    async with observed() as (_node, _server, client):
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(2):
                stream = await stack.enter_async_context(sse(client))
                assert (await stream.__anext__())[0] == "hello"
            refused = await client.get("/api/events")
            assert refused.status_code == 503
            assert "event streams" in refused.json()["error"]

        # Closed streams free their places.
        async def accepted() -> bool:
            async with client.stream("GET", "/api/events") as response:
                return response.status_code == 200  # type: ignore[no-any-return]

        await wait_until(accepted)


async def test_event_bursts_are_bounded() -> None:
    async with observed() as (node, _server, client):
        ref = node.whereis("v0")
        await ref.stop("shutdown")  # a dead incarnation: every cast is a dead letter
        started = time.monotonic()
        for i in range(3000):
            ref.cast_nowait(i)
        # The burst limit is per second: a loaded machine may spread the loop over a few.
        windows = math.ceil(time.monotonic() - started) + 1
        log = (await client.get("/api/log")).json()
        letters = [e for e in log["events"] if e["kind"] == "dead_letter"]
        assert 0 < len(letters) <= min(3000, windows * observer._collector.EVENT_BURST)
        if windows <= 2:
            assert len(letters) < 3000  # the rest were only counted
        assert len(log["events"]) <= observer._collector.EVENTS


# ---------------------------------------------------------------------------- actions


async def test_actions_are_off_unless_asked_for() -> None:
    async with observed() as (node, _server, client):
        ref = node.whereis("v0")
        for path in (f"/api/actors/{ref.id}/kill", "/api/demo/crash"):
            response = await client.post(path, headers=auth())
            assert response.status_code == 403
            assert "actions are off" in response.json()["error"]
        assert ref.alive


async def test_actions_need_the_token() -> None:
    async with observed(actions=True, token=TOKEN) as (node, server, client):
        ref = node.whereis("v0")
        kill = f"/api/actors/{ref.id}/kill"
        for headers in (
            {},
            auth("wrong-token-of-the-same-length-x"),
            auth(TOKEN[:-1]),
            {"Authorization": "Bearer"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            response = await client.post(kill, headers=headers)
            assert response.status_code == 401, headers
            assert "token" in response.json()["error"]
        # Only POST: a link or an <img> cannot act.
        assert (await client.get(kill, params={"token": TOKEN})).status_code == 405
        # Other origins and cross-site fetches are refused even with the token.
        evil = await client.post(kill, headers={**auth(), "Origin": "http://evil.example"})
        assert evil.status_code == 403
        site = await client.post(kill, headers={**auth(), "Sec-Fetch-Site": "cross-site"})
        assert site.status_code == 403
        assert ref.alive
        same = await client.post(kill, headers={**auth(), "Origin": server.url.rstrip("/")})
        assert same.status_code == 200
        assert await ref.join(timeout=5) == "killed"


async def test_host_guard_and_no_cors() -> None:
    async with observed(actions=True, token=TOKEN) as (_node, server, client):
        for path in ("/", "/api/tree", "/api/events"):
            response = await client.get(path, headers={"Host": "attacker.example"})
            assert response.status_code == 421, path
        localhost = await client.get("/api/tree", headers={"Host": f"localhost:{server.port}"})
        assert localhost.status_code == 200
        preflight = await client.options(
            "/api/tree",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        responses = [
            preflight,
            await client.get("/api/tree", headers={"Origin": "http://evil.example"}),
            await client.post("/api/demo/crash", headers=auth()),
        ]
        for response in responses:
            assert not any(k.lower().startswith("access-control-") for k in response.headers)


async def test_kill_stop_and_restart() -> None:
    async with observed(actions=True, token=TOKEN) as (node, _server, client):
        for action, reason in (("kill", "killed"), ("stop", "normal")):
            ref = node.whereis("v1")
            response = await client.post(f"/api/actors/{ref.id}/{action}", headers=auth())
            assert response.status_code == 200, response.text
            assert response.json()["actor"]["id"] == ref.id
            assert response.json()["actor"]["alive"] is False  # answered once it exited
            assert await ref.join(timeout=5) == reason
            await wait_for_name(node, "v1", not_ref=ref)

        ref = node.whereis("c")
        response = await client.post(f"/api/actors/{ref.id}/restart", headers=auth())
        assert response.status_code == 200, response.text
        assert not ref.alive
        fresh = await wait_for_name(node, "c", not_ref=ref)
        tree = (await client.get("/api/tree")).json()
        assert find(tree, "c")["ref"]["id"] == fresh.id

        lone = await node.spawn(Counter)
        response = await client.post(f"/api/actors/{lone.id}/restart", headers=auth())
        assert response.status_code == 409
        assert "no live supervisor" in response.json()["error"]
        assert (await client.post("/api/actors/424242/kill", headers=auth())).status_code == 404
        bad = await client.post(f"/api/actors/{lone.id}/explode", headers=auth())
        assert bad.status_code == 404
        body = await client.post(
            f"/api/actors/{lone.id}/stop", headers=auth(), content=b"x" * 10_000
        )
        assert body.status_code == 413
        body = await client.post(f"/api/actors/{lone.id}/stop", headers=auth(), content=b"[1]")
        assert body.status_code == 400
        assert lone.alive
        await lone.stop()


async def test_crash_injection() -> None:
    crashed: list[int | None] = []

    async def inject(actor_id: int | None) -> otp.ActorRef | None:
        crashed.append(actor_id)
        victim = node.whereis("v2")
        await victim.cast(Boom())
        return victim  # type: ignore[no-any-return]

    async with otp.Node(name="web") as node:
        await node.start(tree_spec())
        async with observer.serve(
            node, port=0, actions=True, token=TOKEN, inject_crash=inject
        ) as srv:
            async with httpx.AsyncClient(base_url=srv.url) as client:
                info = (await client.get("/api/info")).json()
                assert info["demo"] is True
                victim = node.whereis("v2")
                response = await client.post("/api/demo/crash", headers=auth())
                assert response.status_code == 200
                assert response.json()["actor"]["id"] == victim.id
                assert isinstance(await victim.join(timeout=5), RuntimeError)
                response = await client.post("/api/demo/crash", headers=auth(), json={"id": "x"})
                assert response.status_code == 400
    assert crashed == [None]


async def test_no_demo_no_crash() -> None:
    async with observed(actions=True, token=TOKEN) as (_node, _server, client):
        response = await client.post("/api/demo/crash", headers=auth())
        assert response.status_code == 404


# ---------------------------------------------------------------------------- serving


async def test_serve_arguments() -> None:
    async with otp.Node() as node:
        with pytest.raises(ValueError, match="port"):
            observer.serve(node, port=70000)
        with pytest.raises(ValueError, match="token"):
            observer.serve(node, port=0, actions=True, token="short")
        async with observer.serve(node, port=0, actions=True) as server:
            assert server.token is not None and len(server.token) >= 30
            assert server.action_url == f"{server.url}#token={server.token}"
            # The port is taken while it runs.
            with pytest.raises(OSError, match="cannot listen"):
                async with observer.serve(node, port=server.port):
                    pass
        # ...and free again afterwards.
        async with observer.serve(node, port=server.port) as again:
            assert again.port == server.port


async def test_a_cancelled_body_stops_the_server_cleanly() -> None:
    async def watch(url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            async with sse(client) as stream:
                async for _name, _data in stream:
                    pass

    async with otp.Node() as node:
        with anyio.move_on_after(1.0) as scope:
            async with observer.serve(node, port=0) as server:
                port = server.port
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(watch, server.url)
                    await anyio.sleep_forever()
        assert scope.cancelled_caught
        async with observer.serve(node, port=port) as again:  # the port is free again
            assert again.port == port


async def test_create_app_runs_its_collector_in_the_lifespan() -> None:
    async with otp.Node(name="mounted") as node:
        app = observer.create_app(node, allowed_hosts=["observer.test"])
        to_app: Any
        to_app, from_host = anyio.create_memory_object_stream[dict[str, Any]](4)
        to_host, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)

        async def receive() -> dict[str, Any]:
            return await from_host.receive()

        async def send(message: dict[str, Any]) -> None:
            await to_host.send(message)

        with to_app, from_host, to_host, from_app:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    app, {"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send
                )
                await to_app.send({"type": "lifespan.startup"})
                assert (await from_app.receive())["type"] == "lifespan.startup.complete"
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://observer.test"
                ) as c:
                    assert (await c.get("/api/tree")).json()["node"] == "mounted"
                    await node.broker.publish("nobody.home", 1)

                    async def counted() -> Any:
                        rows = (await c.get("/api/topics")).json()["topics"]
                        return [r for r in rows if r["topic"] == "nobody.home"]

                    assert (await wait_until(counted))[0]["dead_letters"] == 1
                    # The allowed host is the only one answered.
                    other = await c.get("http://elsewhere.test/api/tree")
                    assert other.status_code == 421
                await to_app.send({"type": "lifespan.shutdown"})
                assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"
        with pytest.raises(ValueError, match="token"):
            observer.create_app(node, actions=True)


async def test_a_thousand_actors() -> None:
    async with otp.Node(name="big") as node:
        await node.start(
            otp.supervisor(
                "big",
                [
                    otp.supervisor(
                        f"group{g}", [otp.worker(Counter, id=f"w{g}.{i}") for i in range(100)]
                    )
                    for g in range(10)
                ],
            )
        )
        async with observer.serve(node, port=0) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                start = anyio.current_time()
                tree = (await client.get("/api/tree")).json()
                took = anyio.current_time() - start
                assert sum(len(g["children"]) for g in tree["children"][0]["children"]) == 1000
                assert took < 5.0
                with anyio.fail_after(10):
                    async with sse(client) as stream:
                        async for name, data in stream:
                            if name == "tree":
                                assert len(data["children"][0]["children"]) == 10
                                break


def test_import_otp_does_not_import_the_web_stack() -> None:
    code = (
        "import sys, otp; print(sorted(m for m in ('starlette', 'hypercorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
