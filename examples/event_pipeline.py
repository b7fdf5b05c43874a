"""event_pipeline: stages connected by the broker, under a REST_FOR_ONE supervisor.

What it shows:

* stages that know nothing of each other, only of topics: ``ingest`` publishes raw lines
  on ``pipeline.raw``, ``parse`` turns them into ``Reading`` messages on
  ``pipeline.parsed.<sensor>``, ``enrich`` adds a running average on
  ``pipeline.enriched.<sensor>``;
* actors subscribe in ``init`` (``await self.subscribe(topic)``) and receive published
  messages in ``handle_info``; the subscription ends when the actor exits;
* plain code reading a topic with ``async with node.broker.subscribe(...)``, which yields
  ``otp.Envelope`` objects (id, topic, message, timestamp, sender);
* a malformed line crashes ``parse``; ``REST_FOR_ONE`` restarts it and the stage after it
  (``enrich``, whose running averages start over), and the lines after the bad one flow
  through the fresh stages. (Messages still queued in a crashed actor's mailbox are lost,
  as in Erlang, which is why this example feeds one line at a time.)

Run it with ``python examples/event_pipeline.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

import otp

LINES = [
    "kitchen 20.5",
    "garage 11.0",
    "kitchen 21.5",
    "this line is garbage",
    "garage 13.0",
    "kitchen 22.0",
]


@attrs.frozen
class RawLine:
    seq: int
    text: str


@otp.message("pipeline.reading")  # a stable wire name, should it ever cross a process
@attrs.frozen
class Reading:
    seq: int
    sensor: str
    celsius: float


@attrs.frozen
class Enriched:
    reading: Reading
    average: float


@attrs.frozen
class Feed:
    line: str


class Ingest(otp.GenServer):
    """Publishes each line it is given as a RawLine."""

    async def init(self) -> None:
        self.seq = 0

    async def handle_cast(self, message: Any) -> None:
        if isinstance(message, Feed):
            self.seq += 1
            await self.publish("pipeline.raw", RawLine(self.seq, message.line))


class Parse(otp.GenServer):
    async def init(self) -> None:
        await self.subscribe("pipeline.raw")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, RawLine):
            sensor, value = message.text.split(" ")  # garbage crashes here: let it crash
            reading = Reading(message.seq, sensor, float(value))
            await self.publish(f"pipeline.parsed.{sensor}", reading)


class Enrich(otp.GenServer):
    async def init(self) -> None:
        self.history: dict[str, list[float]] = {}
        await self.subscribe("pipeline.parsed.*")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, Reading):
            seen = self.history.setdefault(message.sensor, [])
            seen.append(message.celsius)
            average = sum(seen) / len(seen)
            await self.publish(f"pipeline.enriched.{message.sensor}", Enriched(message, average))


async def main() -> None:
    tree = otp.supervisor(
        "pipeline",
        strategy=otp.REST_FOR_ONE,  # a stage that restarts takes the stages after it along
        children=[
            otp.worker(Ingest, name="ingest"),
            otp.worker(Parse, name="parse"),
            otp.worker(Enrich, name="enrich"),
        ],
    )
    async with otp.Node() as node:
        pipeline = await node.start(tree)
        ingest = node.whereis("ingest")
        assert ingest is not None
        async with node.broker.subscribe("pipeline.enriched.*") as results:
            received = 0
            for line in LINES:
                parse, enrich = node.whereis("parse"), node.whereis("enrich")
                assert parse is not None
                assert enrich is not None
                await ingest.cast(Feed(line))
                if line.count(" ") != 1:
                    print(f"  {line!r} is garbage: parse crashes on it")
                    reason = await parse.join()
                    print(f"  parse exited with {reason!r}")
                    # The supervisor handles the exit before this call: restarts are done.
                    children = {c.id: c.ref for c in await pipeline.which_children()}
                    print(
                        f"  restarted: parse {children['parse'] != parse}, "
                        f"enrich {children['enrich'] != enrich}, "
                        f"ingest {children['ingest'] != ingest}"
                    )
                    continue
                envelope = await results.receive()
                enriched: Enriched = envelope.message
                r = enriched.reading
                print(
                    f"  #{r.seq} {envelope.topic:28} {r.celsius:5.1f} C"
                    f"  (average so far {enriched.average:.2f})"
                )
                received += 1
        print(f"{received} of {len(LINES)} lines came through the pipeline")


if __name__ == "__main__":
    # Crash reports go to the "otp" logger; keep this example's output short.
    logging.getLogger("otp").setLevel(logging.CRITICAL)
    otp.run(main)
