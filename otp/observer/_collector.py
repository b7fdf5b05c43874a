"""What the web observer knows about a node, kept current while it is served.

One :class:`Collector` per served node. It listens to the node's events, samples the tree
every tick, counts dead letters per topic, follows the cluster when the broker reaches
other nodes, and answers other observers' tree requests. Everything it keeps is bounded:
the last :data:`EVENTS` events, :data:`HISTORY` samples, at most :data:`EVENT_BURST`
events a second (the rest are counted in a ``"suppressed"`` event).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup

from .. import _json
from .._envelopes import DeadLetter
from .._exceptions import OTPError
from .._mailbox import Mailbox, Overflow
from .._node import Event, Node
from .._snapshots import ActorSnapshot, SupervisorSnapshot, TreeSnapshot
from .._topics import DEAD_LETTERS

__all__ = ["Collector", "dumps", "tree_topic"]

logger = logging.getLogger("otp.observer")

#: Events kept for the log (and replayed to a new page).
EVENTS: Final = 2000
#: Samples kept for the charts: one a second, five minutes.
HISTORY: Final = 300
#: Events recorded in one second; beyond that they are only counted.
EVENT_BURST: Final = 500
#: How often the tree is sampled and pushed, in seconds.
TICK: Final = 0.5
#: The pause between two ticks is at least this many times the tick's own cost.
LOAD_FACTOR: Final = 9.0
#: How often the cluster's members and trees are refreshed, in seconds.
CLUSTER_TICK: Final = 2.0
#: How long another node's observer has to send its tree.
REMOTE_TIMEOUT: Final = 1.5


def dumps(value: Any) -> str:
    """Compact, strict JSON (never NaN) of a JSON-form value."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def tree_topic(node_name: str) -> str:
    """The topic on which a node's observer answers requests for its tree."""
    return f"$observer.{node_name}.tree"


def walk(
    snapshot: TreeSnapshot,
) -> Iterator[tuple[ActorSnapshot | SupervisorSnapshot, SupervisorSnapshot | None]]:
    """Every supervisor and actor of ``snapshot`` with its parent supervisor (or None)."""
    stack: list[tuple[ActorSnapshot | SupervisorSnapshot, SupervisorSnapshot | None]] = [
        (child, None) for child in reversed(snapshot.children)
    ]
    while stack:
        item, parent = stack.pop()
        yield item, parent
        if isinstance(item, SupervisorSnapshot):
            stack.extend((child, item) for child in reversed(item.children))


class Collector:
    """Gathers a node's tree, events, samples, topics and cluster for the web observer."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.started = time.time()
        self.seq = 0
        #: (seq, JSON text) of the latest events, oldest first.
        self.events: deque[tuple[int, str]] = deque(maxlen=EVENTS)
        self.samples: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.tree_text = dumps(_json.to_json(node.tree()))
        self.tree_version = 0
        self.dead_letters: Counter[str] = Counter()
        self.cluster = callable(getattr(node.broker, "nodes", None))
        self.members: list[str] = [node.name]
        self.remote: dict[str, dict[str, Any]] = {}
        self.nodes_version = 0
        self.fetched_at = -CLUSTER_TICK
        #: Page connections streaming now (the cluster's trees are fetched only then).
        self.watchers = 0
        self._burst_second = 0
        self._burst = 0
        self._suppressed = 0
        self._handled: dict[int, int] = {}
        self._published = 0
        self._changed = anyio.Event()
        self._tasks: TaskGroup | None = None
        self._remove_listener: Callable[[], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Collector:
        self._remove_listener = self.node.add_event_listener(self._on_event)
        self._published = self.node.broker.statistics().published
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._ticker, name="otp.observer ticker")
        await self._tasks.start(self._dead_letter_counter, name="otp.observer dead letters")
        if self.cluster:
            self._tasks.start_soon(self._cluster_watch, name="otp.observer cluster")
            await self._tasks.start(self._tree_server, name="otp.observer tree server")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
        tasks = self._tasks
        assert tasks is not None
        tasks.cancel_scope.cancel()
        await tasks.__aexit__(exc_type, exc, tb)
        self.notify()

    # ------------------------------------------------------------------ change signal

    def notify(self) -> None:
        """Wake every :meth:`wait_change` now (a new event, tree or sample; the app on a
        client's request)."""
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def wait_change(self, timeout: float) -> None:
        """Wait for a new event, tree or sample, at most ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            await self._changed.wait()

    # ------------------------------------------------------------------ events

    def _on_event(self, event: Event) -> None:
        # Runs inside the node's code paths: cheap, and never raises on odd data.
        if self.cluster and event.kind in ("nodeup", "nodedown") and type(event.detail) is str:
            # The broker said so first: the membership poll must not report it again.
            self._member(event.detail, event.kind == "nodeup")
        second = int(time.monotonic())
        if second != self._burst_second:
            self._burst_second, self._burst = second, 0
            if self._suppressed:
                suppressed, self._suppressed = self._suppressed, 0
                self._record(Event("suppressed", detail=suppressed))
        self._burst += 1
        if self._burst > EVENT_BURST:
            self._suppressed += 1
            return
        self._record(event)

    def add_event(self, event: Event) -> None:
        """Record an event the observer itself noticed (a node joined or left)."""
        self._record(event)

    def _record(self, event: Event) -> None:
        self.seq += 1
        form = _json.to_json(event)
        form["seq"] = self.seq
        self.events.append((self.seq, dumps(form)))
        self.notify()

    def events_after(self, seq: int) -> tuple[list[tuple[int, str]], bool]:
        """The recorded events after ``seq`` and whether some were lost in between."""
        if not self.events:
            return [], False
        if seq > self.seq:  # a page that saw an earlier server: send everything
            seq = 0
        first = self.events[0][0]
        lost = seq + 1 < first and seq > 0
        if seq < first:
            return list(self.events), lost
        start = seq - first + 1
        return [self.events[i] for i in range(start, len(self.events))], False

    # ------------------------------------------------------------------ sampling

    async def _ticker(self) -> None:
        last_sample = time.monotonic()
        delay = TICK
        while True:
            await anyio.sleep(delay)
            began = time.perf_counter()
            try:
                snapshot = self.node.tree()
                if self.watchers:  # the JSON only when a page is open
                    self.tree_text = dumps(_json.to_json(snapshot))
                    self.tree_version += 1
                now = time.monotonic()
                if now - last_sample >= 1.0 - TICK / 2:
                    self.samples.append(self._sample(snapshot, now - last_sample))
                    last_sample = now
                self.notify()
            except Exception:  # a broken snapshot must not stop the observer
                logger.exception("otp.observer: sampling the tree of %r failed", self.node)
            # The observer takes at most about a tenth of the event loop: a huge tree is
            # pushed less often than twice a second.
            delay = max(TICK, LOAD_FACTOR * (time.perf_counter() - began))

    def _sample(self, snapshot: TreeSnapshot, elapsed: float) -> dict[str, Any]:
        handled = 0
        depth = 0
        deepest = 0
        actors = 0
        alive = 0
        restarts = 0
        seen: dict[int, int] = {}
        for item, _parent in walk(snapshot):
            actors += 1
            alive += item.alive
            restarts += item.restarts
            if isinstance(item, ActorSnapshot):
                depth += item.mailbox_depth
                deepest = max(deepest, item.mailbox_depth)
                if item.ref is not None:
                    count = item.messages_handled
                    seen[item.ref.id] = count
                    # A new incarnation starts from zero: count all it handled.
                    handled += max(0, count - self._handled.get(item.ref.id, 0))
        self._handled = seen
        published = self.node.broker.statistics().published
        published_delta, self._published = max(0, published - self._published), published
        return {
            "t": round(time.time(), 3),
            "handled_per_s": round(handled / elapsed, 2),
            "published_per_s": round(published_delta / elapsed, 2),
            "mailbox_total": depth,
            "mailbox_max": deepest,
            "actors": actors,
            "alive": alive,
            "restarts": restarts,
        }

    # ------------------------------------------------------------------ topics

    async def _dead_letter_counter(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        mailbox = Mailbox(capacity=1000, overflow=Overflow.DROP_OLDEST)
        try:
            async with self.node.broker.subscribe(DEAD_LETTERS, mailbox=mailbox) as sub:
                task_status.started()
                async for envelope in sub:
                    letter = envelope.message
                    if isinstance(letter, DeadLetter):
                        self.dead_letters[letter.topic or "(to actors)"] += 1
        except (OTPError, OSError) as exc:
            logger.warning("otp.observer: cannot count dead letters: %s", exc)
            task_status.started()

    def topics(self) -> dict[str, Any]:
        """Broker statistics and, per topic or pattern, subscribers and dead letters."""
        statistics = self.node.broker.statistics()
        rows: dict[str, dict[str, Any]] = {}
        for pattern, count in statistics.subscribers.items():
            if pattern == DEAD_LETTERS:
                count -= 1  # the observer's own subscription
            if count > 0:
                rows[pattern] = {"topic": pattern, "subscribers": count, "dead_letters": 0}
        for topic, count in self.dead_letters.items():
            row = rows.setdefault(topic, {"topic": topic, "subscribers": 0, "dead_letters": 0})
            row["dead_letters"] = count
        return {
            "version": _json.JSON_FORM_VERSION,
            "type": "topics",
            "statistics": _json.json_converter.unstructure(statistics),
            "topics": sorted(rows.values(), key=lambda r: r["topic"]),
        }

    # ------------------------------------------------------------------ the cluster

    async def _members(self) -> list[str]:
        nodes: Callable[[], Awaitable[list[str]]] = self.node.broker.nodes  # type: ignore[attr-defined]
        found = await nodes()
        return sorted({*found, self.node.name})

    async def _cluster_watch(self) -> None:
        while True:
            try:
                with anyio.fail_after(CLUSTER_TICK * 2):
                    members = await self._members()
            except Exception as exc:
                logger.debug("otp.observer: listing the cluster failed: %s", exc)
            else:
                self._membership(members)
            if self.watchers:
                await self.fetch_trees()
            await anyio.sleep(CLUSTER_TICK)

    def _member(self, peer: str, up: bool) -> None:
        members = set(self.members)
        if (peer in members) == up or peer == self.node.name:
            return
        if up:
            members.add(peer)
        else:
            members.discard(peer)
            self.remote.pop(peer, None)
        self.members = sorted(members)
        self.nodes_version += 1

    def _membership(self, members: list[str]) -> None:
        before = set(self.members)
        after = set(members)
        # A broker with membership events (otp.redis) reports them itself.
        own = not callable(getattr(self.node.broker, "monitor_node", None))
        for peer in sorted(after - before):
            if own:
                self.add_event(Event("nodeup", detail=peer))
        for peer in sorted(before - after):
            if own:
                self.add_event(Event("nodedown", detail=peer))
            self.remote.pop(peer, None)
        if before != after:
            self.members = members
            self.nodes_version += 1
            self.notify()

    async def fetch_trees(self) -> None:
        """Ask every other node for its tree (at most :data:`REMOTE_TIMEOUT` seconds)."""
        self.fetched_at = time.monotonic()

        async def fetch(peer: str) -> None:
            try:
                text = await self.node.broker.request(
                    tree_topic(peer), "tree", timeout=REMOTE_TIMEOUT
                )
                tree = json.loads(text) if isinstance(text, str) else None
                if not isinstance(tree, dict):
                    raise ValueError(f"not a tree: {text!r:.80}")
                self.remote[peer] = {"tree": tree, "error": None}
            except Exception as exc:
                self.remote[peer] = {
                    "tree": None,
                    "error": (
                        f"no tree from {peer!r} ({type(exc).__name__}): run otp.observer.serve "
                        "or otp.observer.agent on that node to see its tree"
                    ),
                }

        async with anyio.create_task_group() as tasks:
            for peer in self.members:
                if peer != self.node.name:
                    tasks.start_soon(fetch, peer)
        self.nodes_version += 1
        self.notify()

    def nodes(self) -> dict[str, Any]:
        """Every node this observer knows of, with its tree where one can be had."""
        rows = []
        for peer in self.members:
            if peer == self.node.name:
                rows.append(
                    {
                        "name": peer,
                        "self": True,
                        "tree": _json.to_json(self.node.tree()),
                        "error": None,
                    }
                )
            else:
                known = self.remote.get(peer, {"tree": None, "error": "not asked yet"})
                rows.append({"name": peer, "self": False, **known})
        return {
            "version": _json.JSON_FORM_VERSION,
            "type": "nodes",
            "cluster": self.cluster,
            "broker": type(self.node.broker).__name__,
            "self": self.node.name,
            "nodes": rows,
        }

    async def _tree_server(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await serve_tree(self.node, task_status=task_status)

    # ------------------------------------------------------------------ lookups

    def find(
        self, actor_id: int
    ) -> tuple[ActorSnapshot | SupervisorSnapshot, SupervisorSnapshot | None] | None:
        """The snapshot of the actor with ref id ``actor_id`` and its supervisor's."""
        for item, parent in walk(self.node.tree()):
            if item.ref is not None and item.ref.id == actor_id:
                return item, parent
        return None


async def serve_tree(
    node: Node, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Answer other nodes' requests for this node's tree (the JSON form as text)."""
    broker = node.broker
    mailbox = Mailbox(capacity=16, overflow=Overflow.DROP_OLDEST)
    async with broker.subscribe(tree_topic(node.name), mailbox=mailbox) as sub:
        task_status.started()
        async for envelope in sub:
            with contextlib.suppress(Exception):
                await broker.reply(envelope, dumps(_json.to_json(node.tree())))
