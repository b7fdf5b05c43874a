"""door_lock: a code lock as an ``otp.StateMachine`` (Erlang's gen_statem).

What it shows (the lock of OTP's gen_statem guide):

* state functions: one async method per state, ``locked`` and ``open``;
* ``state_enter = True``: each state's ENTER event locks or unlocks the bolt;
* a state timeout that forgets half-typed codes, restarted by every button, and one that
  locks the door again a while after it opened (a state change cancels it);
* ``otp.Postpone``: a call that waits for the lock is kept while the door is open and
  answered once it has locked again;
* replies as actions (``otp.Reply``), and a supervisor that restarts a crashed lock in its
  initial state.

Run it with ``python examples/door_lock.py``.
"""

from __future__ import annotations

import logging

import anyio
import attrs

import otp
from otp import EventType
from otp.testing import wait_for_restart


@attrs.frozen
class Button:
    digit: int


@attrs.frozen
class Status: ...


@attrs.frozen
class WhenLocked:
    """A call answered only once the door is locked."""


class CodeLock(otp.StateMachine):
    state_enter = True

    async def init(self, code: list[int], open_for: float, forget_after: float) -> otp.NextState:
        self.code = code
        self.open_for = open_for
        self.forget_after = forget_after
        self.buttons: list[int] = []
        return otp.NextState("locked")

    async def locked(self, event: otp.StateEvent) -> otp.Transition:
        match event:
            case otp.StateEvent(EventType.ENTER):
                self.buttons.clear()
                print(f"[{self.ref.name}] locked")
            case otp.StateEvent(EventType.CAST, Button(digit)):
                if digit not in range(10):
                    raise ValueError(f"not a digit: {digit!r}")
                self.buttons = [*self.buttons, digit][-len(self.code) :]
                if self.buttons == self.code:
                    return otp.NextState("open")
                # Restarted by every button; it survives KeepState.
                return otp.KeepState(otp.StateTimeout(self.forget_after, "forget"))
            case otp.StateEvent(EventType.STATE_TIMEOUT, "forget"):
                print(f"[{self.ref.name}] forgot {len(self.buttons)} button(s)")
                self.buttons.clear()
            case otp.StateEvent(EventType.CALL, Status(), otp.Caller() as caller):
                return otp.KeepState(otp.Reply(caller, "locked"))
            case otp.StateEvent(EventType.CALL, WhenLocked(), otp.Caller() as caller):
                return otp.KeepState(otp.Reply(caller, "locked"))
            case _:
                pass
        return None

    async def open(self, event: otp.StateEvent) -> otp.Transition:
        match event:
            case otp.StateEvent(EventType.ENTER):
                print(f"[{self.ref.name}] open: unlocked for {self.open_for:g} s")
                return otp.KeepState(otp.StateTimeout(self.open_for, "lock"))
            case otp.StateEvent(EventType.STATE_TIMEOUT, "lock"):
                return otp.NextState("locked")
            case otp.StateEvent(EventType.CAST, Button(digit)):
                print(f"[{self.ref.name}] open: button {digit} ignored")
            case otp.StateEvent(EventType.CALL, Status(), otp.Caller() as caller):
                return otp.KeepState(otp.Reply(caller, "open"))
            case otp.StateEvent(EventType.CALL, WhenLocked()):
                return otp.KeepState(otp.Postpone())  # retried after the next state change
            case _:
                pass
        return None


async def main() -> None:
    async with otp.Node() as node:
        doors = await node.start(
            otp.supervisor("doors", [otp.worker(CodeLock, [4, 2, 7], 0.2, 0.1, name="front")])
        )
        door = node.whereis("front")
        assert door is not None

        print("buttons 1, 2, then a pause:")
        await door.cast(Button(1))
        await door.cast(Button(2))
        await anyio.sleep(0.3)  # longer than forget_after

        print("buttons 4, 2, 7:")
        for digit in (4, 2, 7):
            await door.cast(Button(digit))
        await door.cast(Button(9))
        print(f"status: {await door.call(Status())}")

        print("a call that waits for the lock is postponed while the door is open...")
        answer = await door.call(WhenLocked(), timeout=5.0)
        print(f"...and answered once it locked again: {answer}")

        print("a bad button crashes the lock:")
        logging.getLogger("otp").setLevel(logging.CRITICAL)  # keep the crash report quiet
        await door.cast(Button("x"))  # type: ignore[arg-type]
        new = await wait_for_restart(doors, "front", door)
        print(f"the supervisor restarted it: status {await new.call(Status())}")


if __name__ == "__main__":
    otp.run(main)
