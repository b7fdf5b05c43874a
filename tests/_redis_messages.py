"""Message classes and actors shared by the Redis tests and their peer processes: both
sides register the same wire names."""

from __future__ import annotations

from typing import Any

import anyio
import attrs

import otp


@otp.message("test.add")
@attrs.frozen
class Add:
    n: int


@otp.message("test.get")
@attrs.frozen
class Get:
    pass


@otp.message("test.crash")
@attrs.frozen
class Crash:
    why: str = "boom"


@otp.message("test.slow")
@attrs.frozen
class Slow:
    seconds: float


@otp.message("test.order_created")
@attrs.frozen
class OrderCreated:
    id: int
    lines: list[str] = attrs.field(factory=list)


@otp.message("test.seen")
@attrs.frozen
class Seen:
    id: int
    by: str


@otp.message("test.quote")
@attrs.frozen
class Quote:
    symbol: str


@otp.message("test.price")
@attrs.frozen
class Price:
    symbol: str
    price: float


@otp.message("test.wire_report")
@attrs.frozen
class WireReport:
    reason: str
    topic: str


@otp.message("test.ping_me")
@attrs.frozen
class PingMe:
    """Asks the receiver to send ``Add(1)`` back to ``who`` (a ref crossing the wire)."""

    who: otp.ActorRef


class Counter(otp.GenServer):
    """Counts; answers quotes on ``prices.quote``; echoes orders as ``Seen`` on ``audit.seen``."""

    async def init(self, start: int = 0) -> None:
        self.total = start
        await self.subscribe("orders.*")
        await self.subscribe("prices.quote")

    async def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case Get():
                return self.total
            case Slow(seconds):
                await anyio.sleep(seconds)
                return "slow"
            case Crash(why):
                raise RuntimeError(why)
            case ("echo", value):
                return value
            case "stop-me":
                self.stop("shutdown")
                return "bye"
        raise ValueError(f"unexpected call {request!r}")

    async def handle_cast(self, message: Any) -> None:
        match message:
            case Add(n):
                self.total += n
            case PingMe(who):
                await who.send(Add(1))

    async def handle_info(self, message: Any) -> None:
        match message:
            case Add(n):
                self.total += n
            case otp.Request(message=Quote(symbol)) as request:
                await request.reply(Price(symbol, 42.0))
            case OrderCreated(order_id):
                await self.publish("audit.seen", Seen(order_id, self.node.name))


class DeadLetterReporter(otp.GenServer):
    """Publishes a ``WireReport`` on ``report.dead`` for every payload its node refused."""

    async def init(self) -> None:
        await self.subscribe(otp.DEAD_LETTERS)

    async def handle_info(self, message: Any) -> None:
        match message:
            case otp.DeadLetter(message=otp.Undecodable(), reason=reason, topic=topic):
                await self.publish("report.dead", WireReport(reason, topic or ""))


class Watcher(otp.GenServer):
    """Monitors a ref and keeps the ``Down`` notices it gets."""

    async def init(self, target: Any) -> None:
        self.downs: list[otp.Down] = []
        self.got: list[Any] = []
        self.monitor(target)

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, otp.Down):
            self.downs.append(message)
        else:
            self.got.append(message)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        return list(self.downs) if request == "downs" else list(self.got)


@otp.message("test.fault.work")
@attrs.frozen
class Work:
    """A call or cast of the fault tests; ``deadline`` is the caller's (wall clock)."""

    n: int
    deadline: float


@otp.message("test.fault.stats")
@attrs.frozen
class Stats:
    pass
