"""message_bus: subjects, subscribers, middleware filters and request/reply on the broker.

What it shows:

* subjects (topics) named ``chat.<room>.<event>``; subscribers pick theirs with
  wildcards: a ``Room`` actor per room on ``chat.<room>.*``, a ``Moderator`` on
  ``chat.#`` (everything), and plain code reading ``chat.lobby.*`` with
  ``async with node.broker.subscribe(...)``;
* middleware: stages every published message passes before delivery. Here one drops
  messages with banned words (they become dead letters, reason
  ``"dropped_by_middleware"``) and one stamps a header on the envelope;
* request/reply over the bus: ``node.broker.request(topic, message)`` returns the first
  answer; an actor subscriber gets an ``otp.Request`` and answers with ``request.reply``.

Run it with ``python examples/message_bus.py``.
"""

from __future__ import annotations

from typing import Any

import attrs

import otp

BANNED = {"spam", "scam"}


@otp.message("chat.said")
@attrs.frozen
class Said:
    user: str
    text: str


@attrs.frozen
class Who:
    """A request: who has spoken in this room?"""


# ------------------------------------------------------------------ middleware


def no_banned_words(envelope: otp.Envelope) -> otp.Envelope | None:
    """Drop chat messages containing a banned word (return None to drop)."""
    message = envelope.message
    if isinstance(message, Said) and BANNED & set(message.text.lower().split()):
        print(f"  [filter]    dropped {message.user}: {message.text!r}")
        return None
    return envelope


def stamp(envelope: otp.Envelope) -> otp.Envelope:
    """Add a header (envelopes are frozen: return a changed copy)."""
    return attrs.evolve(envelope, headers={**envelope.headers, "via": "message_bus"})


# ------------------------------------------------------------------ subscribers


class Room(otp.GenServer):
    async def init(self, room: str) -> None:
        self.room = room
        self.speakers: list[str] = []
        await self.subscribe(f"chat.{room}.*")

    async def handle_info(self, message: Any) -> None:
        match message:
            case Said(user, text):
                print(f"  [room {self.room}] {user}: {text}")
                if user not in self.speakers:
                    self.speakers.append(user)
            case otp.Request(message=Who()) as request:
                await request.reply(list(self.speakers))
            case _:
                await super().handle_info(message)


class Moderator(otp.GenServer):
    async def init(self) -> None:
        self.seen = 0
        await self.subscribe("chat.#")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, Said):
            self.seen += 1

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return self.seen


async def main() -> None:
    async with otp.Node() as node:
        bus = node.broker
        bus.use(no_banned_words)
        bus.use(stamp)
        await node.start(
            otp.supervisor(
                "chat",
                [
                    otp.worker(Room, "lobby", id="lobby"),
                    otp.worker(Room, "games", id="games"),
                    otp.worker(Moderator, name="moderator"),
                ],
            )
        )
        async with bus.subscribe("chat.lobby.*") as lobby_feed:
            lines = [
                ("lobby", Said("ann", "hello everyone")),
                ("games", Said("bob", "anyone for chess?")),
                ("lobby", Said("eve", "cheap spam here")),
                ("lobby", Said("bob", "hi ann")),
            ]
            for room, said in lines:
                await bus.publish(f"chat.{room}.said", said)

            print("the lobby feed (plain code) got:")
            for _ in range(2):  # two lobby lines passed the filter
                envelope = await lobby_feed.receive()
                print(f"  [feed]      {envelope.topic} {envelope.message} {dict(envelope.headers)}")

        speakers = await bus.request("chat.lobby.who", Who(), timeout=5.0)
        print(f"request chat.lobby.who -> {speakers}")
        print(f"the moderator saw {await node.call('moderator', 'count')} messages")
        stats = bus.statistics()
        print(f"broker: {stats.published} published, {stats.filtered} filtered by middleware")


if __name__ == "__main__":
    otp.run(main)
