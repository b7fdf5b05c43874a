"""``python -m otp``: the command line of anyotp (also installed as ``anyotp``).

``python -m otp demo`` starts a small but real service in memory and injects random crashes
while you watch its supervision tree heal::

    demo (one_for_one)
    ├── pipeline (rest_for_one)   source → parser → dispatcher, over the broker
    ├── pool (one_for_one)        otp.worker_pool: pool.0 … pool.3, round-robin
    └── metrics (one_for_all)     aggregator + reporter

On a terminal the tree is drawn live with rich; without one (a pipe, CI) plain snapshots are
printed every second. Either way the demo stops on its own after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import math
import os
import random
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import attrs
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

import otp

from ._observer import count_tree, render_snapshot, render_text

__all__ = ["main"]

DEFAULT_DURATION = 10.0
DEFAULT_CRASH_RATE = 2.0
POOL_SIZE = 4
#: Columns of the plain (non-terminal) snapshots.
PLAIN_WIDTH = 100
#: Lines of recent events under the live tree.
RECENT_EVENTS = 6


# ---------------------------------------------------------------------------- the service


@attrs.frozen
class RawEvent:
    """What the source publishes on ``events.raw.<kind>``."""

    seq: int
    kind: str
    payload: int


@attrs.frozen
class Job:
    """A parsed event, published on ``jobs.<kind>`` and handed to a pool worker."""

    seq: int
    kind: str
    weight: int


@attrs.frozen
class Tick:
    """The source's timer message."""


@attrs.frozen
class GetCounts:
    """Ask the aggregator for its per-kind counts."""


@attrs.frozen
class Poison:
    """Injected by the chaos monkey: the actor that handles it crashes."""


class InjectedCrash(Exception):
    """The exception a poisoned actor raises (what a real bug would be)."""


@attrs.define
class Stats:
    """Running totals shared by the demo's actors (one event loop: no locks needed)."""

    handled: int = 0
    crashes: int = 0
    starts: int = 0
    #: Actor starts of the initial tree; every start after those is a restart.
    baseline: int = 0
    undeliverable: int = 0
    #: The latest crashes, restarts and give-ups, for the live view.
    recent: deque[str] = attrs.field(factory=lambda: deque(maxlen=RECENT_EVENTS))

    def on_event(self, event: otp.NodeEvent) -> None:
        """A node event listener: keep a readable line per crash, restart and give-up."""
        if event.kind == "exited" and isinstance(event.reason, Exception):
            self.recent.append(f"crash    {type(event.reason).__name__}: {event.reason}")
        elif event.kind == "restarted":
            self.recent.append(f"restart  {event.supervisor.name} restarted {event.detail}")
        elif event.kind == "gave_up":
            self.recent.append(f"give up  {event.supervisor.name} gave up")

    @property
    def restarts(self) -> int:
        return max(0, self.starts - self.baseline)


class DemoActor(otp.GenServer):
    """Shared behaviour: count starts and handled messages, crash on :class:`Poison`."""

    child_id = "?"

    async def init(self, stats: Stats, child_id: str) -> None:
        self.stats = stats
        self.child_id = child_id
        stats.starts += 1
        await self.setup()

    async def setup(self) -> None:
        """Subclasses subscribe or start timers here."""

    async def handle_cast(self, message: Any) -> None:
        self.stats.handled += 1
        if isinstance(message, Poison):
            self.stats.crashes += 1
            raise InjectedCrash(f"chaos monkey poisoned {self.child_id}")
        await self.on_message(message)

    async def handle_info(self, message: Any) -> None:
        self.stats.handled += 1
        await self.on_message(message)

    async def on_message(self, message: Any) -> None:
        """Subclasses handle their messages here."""


class Source(DemoActor):
    """Publishes a burst of raw events every few milliseconds."""

    kinds = ("click", "view", "order")

    async def setup(self) -> None:
        self.seq = 0
        self.rng = random.Random(self.stats.starts)
        self.send_after(0.01, Tick())

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Tick):
            for _ in range(10):
                self.seq += 1
                kind = self.rng.choice(self.kinds)
                await self.publish(
                    f"events.raw.{kind}", RawEvent(self.seq, kind, self.rng.randint(1, 9))
                )
            self.send_after(0.01, Tick())


class Parser(DemoActor):
    """Turns raw events into jobs: ``events.raw.*`` → ``jobs.<kind>``."""

    async def setup(self) -> None:
        await self.subscribe("events.raw.*")

    async def on_message(self, message: Any) -> None:
        if isinstance(message, RawEvent):
            await self.publish(
                f"jobs.{message.kind}", Job(message.seq, message.kind, message.payload)
            )


class Dispatcher(DemoActor):
    """Hands each job to the worker pool (which picks a worker round-robin)."""

    async def setup(self) -> None:
        await self.subscribe("jobs.*")

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Job):
            pool = self.node.whereis("pool")
            try:
                if pool is None:
                    raise otp.NotFound("pool", "the demo node")
                await pool.cast(message)
            except otp.NotFound:  # the pool or all its workers are being restarted
                self.stats.undeliverable += 1


class Worker(DemoActor):
    """A pool worker: does the (pretend) work of a job."""

    async def setup(self) -> None:
        self.total = 0

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Job):
            self.total += message.weight


class Aggregator(DemoActor):
    """Counts jobs per kind (``jobs.*``)."""

    async def setup(self) -> None:
        self.counts: dict[str, int] = {}
        await self.subscribe("jobs.*")

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Job):
            self.counts[message.kind] = self.counts.get(message.kind, 0) + 1

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        if isinstance(request, GetCounts):
            return dict(self.counts)
        return await super().handle_call(request, caller)


class Reporter(DemoActor):
    """Asks the aggregator for its counts twice a second (it restarts along with it)."""

    async def setup(self) -> None:
        self.latest: dict[str, int] = {}
        self.send_after(0.5, Tick())

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Tick):
            aggregator = self.node.whereis("aggregator")
            if aggregator is not None:
                try:
                    self.latest = await aggregator.call(GetCounts(), timeout=1.0)
                except otp.ActorExited:
                    pass  # it crashed under us; the supervisor is on it
            self.send_after(0.5, Tick())


def demo_tree(stats: Stats) -> otp.SupervisorSpec:
    """The demo service: nested supervisors with all three strategies."""

    def w(cls: type[DemoActor], name: str) -> otp.WorkerSpec:
        return otp.worker(cls, stats, name, name=name, shutdown=1.0)

    return otp.supervisor(
        "demo",
        strategy=otp.ONE_FOR_ONE,
        max_restarts=20,
        within=5.0,
        children=[
            otp.supervisor(
                "pipeline",
                strategy=otp.REST_FOR_ONE,
                max_restarts=10,
                within=2.0,
                children=[w(Source, "source"), w(Parser, "parser"), w(Dispatcher, "dispatcher")],
            ),
            otp.worker_pool(
                "pool",
                Worker,
                stats,
                "worker",
                size=POOL_SIZE,
                max_restarts=10,
                within=2.0,
                # A crashed worker waits a moment before its restart (shown as restarting);
                # meanwhile the pool sends its jobs to the others.
                backoff=otp.Backoff(min=0.25, max=1.0, reset_after=2.0),
            ),
            otp.supervisor(
                "metrics",
                strategy=otp.ONE_FOR_ALL,
                max_restarts=10,
                within=2.0,
                children=[w(Aggregator, "aggregator"), w(Reporter, "reporter")],
            ),
        ],
    )


def _live_workers(snapshot: otp.TreeSnapshot) -> list[otp.ActorRef]:
    found: list[otp.ActorRef] = []

    def visit(node: otp.ActorSnapshot | otp.SupervisorSnapshot) -> None:
        if isinstance(node, otp.SupervisorSnapshot):
            for child in node.children:
                visit(child)
        elif node.ref is not None and node.alive:
            found.append(node.ref)

    for child in snapshot.children:
        visit(child)
    return found


# ---------------------------------------------------------------------------- running it


@attrs.frozen
class DemoOptions:
    backend: str
    duration: float
    crash_rate: float
    seed: int | None
    live: bool
    verbose: bool
    #: Serve the web observer on this port (``--web [PORT]``), else ``None``.
    web: int | None = None


def _header(options: DemoOptions, stats: Stats, elapsed: float) -> Text:
    text = Text()
    text.append("anyotp demo", style="bold")
    text.append(
        f"  backend {options.backend}  {elapsed:4.1f}s / {options.duration:g}s"
        f"  crash rate {options.crash_rate:g}/s\n",
        style="dim",
    )
    text.append(f"messages handled {stats.handled}", style="green")
    text.append("   ")
    text.append(f"crashes {stats.crashes}", style="red")
    text.append("   ")
    text.append(f"restarts {stats.restarts}", style="yellow")
    return text


def _summary_line(stats: Stats, elapsed: float) -> str:
    return (
        f"t={elapsed:.1f}s  handled={stats.handled}  crashes={stats.crashes}  "
        f"restarts={stats.restarts}"
    )


async def _chaos(node: otp.Node, options: DemoOptions, rng: random.Random, deadline: float) -> None:
    """Poison a random live worker about ``crash_rate`` times a second until ``deadline``.

    Each poisoned actor is waited for, so when this returns every injected crash has
    happened (and been counted): the final numbers add up.
    """
    tick = 0.05
    while True:
        await anyio.sleep(tick)
        if time.monotonic() >= deadline:
            return
        if options.crash_rate > 0 and rng.random() < options.crash_rate * tick:
            victims = _live_workers(node.tree())
            if victims:
                victim = rng.choice(victims)
                await victim.cast(Poison())
                with contextlib.suppress(otp.CallTimeout):
                    await victim.join(timeout=1.0)


async def run_demo(options: DemoOptions, console: Console) -> int:
    """Run the demo; returns the process exit status."""
    stats = Stats()
    rng = random.Random(options.seed)
    started = time.monotonic()
    deadline = started + options.duration
    gave_up: otp.SupervisorGaveUp | None = None
    try:
        async with otp.Node(name="demo") as node:
            node.add_event_listener(stats.on_event)
            await node.start(demo_tree(stats))
            stats.baseline = stats.starts
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_chaos, node, options, rng, deadline)
                if options.web is not None:
                    await _serve_web(node, options, deadline)
                elif options.live:
                    await _show_live(node, options, stats, console, started, deadline)
                else:
                    await _show_plain(node, stats, started, deadline)
                # Leaving the task group waits for the chaos monkey's last crash.
            # Give the supervisors a moment to finish healing before the final picture.
            with anyio.move_on_after(2.0):
                while True:
                    counts = count_tree(node.tree())
                    if counts.alive == counts.total:
                        break
                    await anyio.sleep(0.01)
            final = node.tree()
    except otp.SupervisorGaveUp as exc:
        gave_up = exc
    elapsed = time.monotonic() - started
    if gave_up is not None:
        _say(
            f"the demo's top supervisor gave up ({gave_up}); "
            "try a lower --crash-rate to stay within its restart intensity"
        )
        return 1
    counts = count_tree(final)
    if not options.live:
        _say(render_text(final, width=PLAIN_WIDTH), end="")
    _say(
        f"demo finished after {elapsed:.1f}s: {stats.handled} messages handled, "
        f"{stats.crashes} crashes injected, {stats.restarts} restarts; "
        f"{counts.alive}/{counts.total} actors alive"
    )
    return 0


async def _serve_web(node: otp.Node, options: DemoOptions, deadline: float) -> None:
    """Serve the web observer with actions on (the token is printed) until ``deadline``."""
    import otp.observer

    rng = random.Random(options.seed)

    async def inject_crash(actor_id: int | None) -> otp.ActorRef | None:
        victims = _live_workers(node.tree())
        if actor_id is not None:
            victims = [ref for ref in victims if ref.id == actor_id]
        if not victims:
            return None
        victim = rng.choice(victims)
        await victim.cast(Poison())
        return victim

    assert options.web is not None
    async with otp.observer.serve(
        node, port=options.web, actions=True, inject_crash=inject_crash
    ) as server:
        _say(f"observer: {server.url}")
        _say(f"actions token: {server.token}")
        _say(f"open {server.action_url} to use the buttons (Ctrl-C stops the demo)")
        if math.isinf(deadline):
            await anyio.sleep_forever()
        await anyio.sleep(max(0.0, deadline - time.monotonic()))


def _say(text: str, end: str = "\n") -> None:
    """Plain output: no markup, no wrapping, flushed at once (pipes buffer otherwise)."""
    print(text, end=end, flush=True)


async def _show_live(
    node: otp.Node,
    options: DemoOptions,
    stats: Stats,
    console: Console,
    started: float,
    deadline: float,
) -> None:
    def frame() -> Group:
        recent = Text("\n".join(stats.recent) or "(no crashes yet)", style="dim")
        return Group(
            _header(options, stats, time.monotonic() - started),
            render_snapshot(node.tree()),
            Text("recent events", style="bold"),
            recent,
        )

    with Live(frame(), console=console, auto_refresh=False, transient=False) as live:
        while time.monotonic() < deadline:
            await anyio.sleep(0.1)
            live.update(frame(), refresh=True)


async def _show_plain(node: otp.Node, stats: Stats, started: float, deadline: float) -> None:
    period = 1.0
    next_print = started + period
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        await anyio.sleep(min(next_print, deadline) - now)
        if time.monotonic() >= next_print and time.monotonic() < deadline:
            next_print += period
            _say("--- " + _summary_line(stats, time.monotonic() - started))
            _say(render_text(node.tree(), width=PLAIN_WIDTH), end="")


def _configure_logging(verbose: bool, console: Console) -> None:
    log = logging.getLogger("otp")
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
    if verbose:
        from rich.logging import RichHandler

        log.addHandler(RichHandler(console=console, show_path=False))
        log.setLevel(logging.INFO)
    else:
        # Crash reports are the point of the demo, but a wall of tracebacks hides the tree.
        log.addHandler(logging.NullHandler())


# ---------------------------------------------------------------------------- the CLI


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {value}")
    return number


def _non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, not {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m otp`` argument parser."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m otp",
        description=(
            "anyotp: Erlang/OTP-style supervision trees, GenServers and pub/sub "
            "for asyncio and trio."
        ),
        epilog="Start with:  python -m otp demo",
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"anyotp {otp.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a small service, crash it at random and watch the supervisors heal it",
        description=(
            "Start an in-memory service (an event pipeline over the broker feeding a worker\n"
            "pool, plus metrics) under nested supervisors with all three strategies, inject\n"
            "random crashes and show the supervision tree healing. Live on a terminal;\n"
            "plain periodic snapshots otherwise. Exits on its own after --duration."
        ),
        formatter_class=formatter,
    )
    demo.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (default: asyncio)",
    )
    demo.add_argument(
        "--duration",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help=f"how long to run (default: {DEFAULT_DURATION:g}; with --web, until Ctrl-C)",
    )
    demo.add_argument(
        "--crash-rate",
        type=_non_negative,
        default=DEFAULT_CRASH_RATE,
        metavar="R",
        help=f"injected crashes per second, on average (default: {DEFAULT_CRASH_RATE:g})",
    )
    demo.add_argument("--seed", type=int, default=None, help="seed the chaos for a repeatable run")
    demo.add_argument(
        "--plain",
        action="store_true",
        help="print plain snapshots even on a terminal (the default without one)",
    )
    demo.add_argument(
        "--verbose", action="store_true", help="show the crash reports and restarts as they happen"
    )
    demo.add_argument(
        "--web",
        nargs="?",
        type=_port,
        const=8765,
        default=None,
        metavar="PORT",
        help="serve the web observer on 127.0.0.1:PORT (default 8765; needs anyotp[web])",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point (``anyotp`` / ``python -m otp``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        # Live only on a real terminal (FORCE_COLOR and friends do not make a pipe one).
        live = sys.stdout.isatty() and not args.plain
        console = Console(highlight=False) if live else Console(stderr=True, highlight=False)
        if args.backend == "trio" and importlib.util.find_spec("trio") is None:
            print("the trio backend needs trio: pip install 'anyotp[trio]'", file=sys.stderr)
            return 2
        if args.web is not None and importlib.util.find_spec("starlette") is None:
            print(
                "the web observer needs the web extra: pip install 'anyotp[web]'", file=sys.stderr
            )
            return 2
        duration = args.duration
        if duration is None:
            duration = float("inf") if args.web is not None else DEFAULT_DURATION
        options = DemoOptions(
            backend=args.backend,
            duration=duration,
            crash_rate=args.crash_rate,
            seed=args.seed,
            live=live and args.web is None,
            verbose=args.verbose,
            web=args.web,
        )
        _configure_logging(args.verbose, console)
        try:
            return otp.run(run_demo, options, console, backend=args.backend)
        except KeyboardInterrupt:
            # otp.run has already shut the node down in order (terminate ran everywhere).
            print("interrupted: the demo's node shut down in order", file=sys.stderr)
            return 130
        except (BrokenPipeError, BaseExceptionGroup) as exc:
            # `python -m otp demo | head`: the reader has gone; leave quietly.
            if isinstance(exc, BaseExceptionGroup) and exc.split(BrokenPipeError)[1] is not None:
                raise
            # Keep Python from complaining again while it flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse checks


if __name__ == "__main__":
    sys.exit(main())
