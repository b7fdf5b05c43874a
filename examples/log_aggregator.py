"""log_aggregator: log events routed by topic to specialised processors.

What it shows:

* services publish ``LogEvent`` messages on ``logs.<service>.<level>``;
* each processor subscribes to the slice it cares about, with wildcards:
  ``*`` matches one segment, ``#`` zero or more:

  - ``errors``  on ``logs.*.error``   : alerts on every error, from any service;
  - ``auth``    on ``logs.auth.#``    : an audit trail of the auth service;
  - ``counter`` on ``logs.#``         : counts everything, by service and level;

* one event can reach several processors; an event nobody subscribed to becomes a dead
  letter (watched here on ``otp.DEAD_LETTERS``);
* the processors run under one supervisor and are queried with ``call`` at the end.

Run it with ``python examples/log_aggregator.py``.
"""

from __future__ import annotations

from typing import Any

import attrs

import otp


@otp.message("logs.event")
@attrs.frozen
class LogEvent:
    service: str
    level: str
    text: str


@attrs.frozen
class Report: ...


class ErrorAlerter(otp.GenServer):
    async def init(self) -> None:
        self.alerts: list[str] = []
        await self.subscribe("logs.*.error")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, LogEvent):
            alert = f"ALERT {message.service}: {message.text}"
            print(f"  [errors]  {alert}")
            self.alerts.append(alert)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return list(self.alerts)


class AuthAudit(otp.GenServer):
    async def init(self) -> None:
        self.trail: list[str] = []
        await self.subscribe("logs.auth.#")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, LogEvent):
            print(f"  [auth]    audit: {message.level} {message.text}")
            self.trail.append(message.text)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return list(self.trail)


class Counter(otp.GenServer):
    async def init(self) -> None:
        self.counts: dict[str, int] = {}
        await self.subscribe("logs.#")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, LogEvent):
            key = f"{message.service}.{message.level}"
            self.counts[key] = self.counts.get(key, 0) + 1

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return dict(sorted(self.counts.items()))


class DeadLetterWatch(otp.GenServer):
    async def init(self) -> None:
        self.letters: list[Any] = []
        await self.subscribe(otp.DEAD_LETTERS)

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, otp.DeadLetter):
            print(f"  [dead]    nobody listens on {message.topic}: {message.message!r}")
            self.letters.append(message)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return len(self.letters)


EVENTS = [
    LogEvent("auth", "info", "alice logged in"),
    LogEvent("billing", "info", "invoice 17 created"),
    LogEvent("auth", "error", "bad password for bob"),
    LogEvent("billing", "error", "card declined for invoice 17"),
    LogEvent("search", "debug", "query took 3 ms"),
    LogEvent("auth", "info", "bob logged in"),
]


async def main() -> None:
    tree = otp.supervisor(
        "logging",
        children=[
            otp.worker(ErrorAlerter, name="errors"),
            otp.worker(AuthAudit, name="auth"),
            otp.worker(Counter, name="counter"),
            otp.worker(DeadLetterWatch, name="dead"),
        ],
    )
    async with otp.Node() as node:
        await node.start(tree)
        for event in EVENTS:
            topic = f"logs.{event.service}.{event.level}"
            print(f"publish {topic}")
            await node.broker.publish(topic, event)
        # Something outside the logs.* namespace: no processor wants it.
        await node.broker.publish("metrics.cpu", 0.93)

        # A call is queued behind the published messages, so the answers are complete.
        print(f"alerts: {await node.call('errors', Report())}")
        print(f"auth trail: {await node.call('auth', Report())}")
        print(f"counts: {await node.call('counter', Report())}")
        print(f"dead letters: {await node.call('dead', Report())}")
        stats = node.broker.statistics()
        print(f"broker: {stats.published} published, {stats.delivered} delivered")


if __name__ == "__main__":
    otp.run(main)
