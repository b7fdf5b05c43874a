"""Small pieces every variant shares, so that the work *around* the mailbox is identical."""

from __future__ import annotations

from collections.abc import Callable


def _nothing() -> None:
    pass


class Counter:
    """The "handler" of every one-way scenario: count, and call ``on_goal`` at ``goal``.

    Floors, anyotp actors and peers all call :meth:`hit` once per message, so the user-code
    part of a message is the same everywhere and the difference is the messaging itself.
    """

    __slots__ = ("count", "goal", "on_goal")

    def __init__(self) -> None:
        self.count = 0
        self.goal = -1
        self.on_goal: Callable[[], None] = _nothing

    def expect(self, more: int, on_goal: Callable[[], None]) -> None:
        """Call ``on_goal`` once ``more`` further messages have been counted."""
        self.goal = self.count + more
        self.on_goal = on_goal

    def hit(self) -> None:
        self.count += 1
        if self.count == self.goal:
            self.on_goal()

    async def handle(self, message: object) -> None:
        """The async callback a floor awaits per message, as an actor awaits its handler."""
        self.count += 1
        if self.count == self.goal:
            self.on_goal()


def split(total: int, parts: int) -> list[int]:
    """``total`` messages shared between ``parts`` producers as evenly as possible."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
