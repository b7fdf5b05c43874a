"""actor_basic: one GenServer, start to finish.

What it shows:

* a GenServer with ``init``, ``handle_call`` (request/reply), ``handle_cast``
  (fire-and-forget), ``handle_info`` (plain sends and timers) and ``terminate``;
* ``node.spawn`` with a registered name and ``node.whereis``;
* a call that crashes the server: the caller gets ``otp.ActorExited`` at once, with the
  exception as ``__cause__``, and a monitor gets ``otp.Down``.

Run it with ``python examples/actor_basic.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

import otp


@attrs.frozen
class Deposit:
    amount: int


# A request typed by its reply: `await ref.call(Withdraw(5))` is an int for mypy and pyright.
@attrs.frozen
class Withdraw(otp.Call[int]):
    amount: int


@attrs.frozen
class Balance(otp.Call[int]): ...


@attrs.frozen
class Interest:
    """Sent to ourselves with ``send_after``: arrives in ``handle_info``."""

    percent: int


class Account(otp.GenServer):
    """A bank account: its balance is state that only this actor touches."""

    async def init(self, opening: int) -> None:
        self.balance = opening
        print(f"  [account] opened with {opening}")

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case Balance():
                return self.balance
            case Withdraw(amount):
                if amount > self.balance:
                    # An exception escaping a callback crashes the actor: let it crash.
                    raise ValueError(f"cannot withdraw {amount}, balance is {self.balance}")
                self.balance -= amount
                return self.balance
            case _:
                return await super().handle_call(request, caller)  # crashes, as in OTP

    async def handle_cast(self, message: Any) -> None:
        match message:
            case Deposit(amount):
                self.balance += amount
                print(f"  [account] deposit {amount} -> balance {self.balance}")
            case _:
                await super().handle_cast(message)

    async def handle_info(self, message: Any) -> None:
        match message:
            case Interest(percent):
                self.balance += self.balance * percent // 100
                print(f"  [account] {percent}% interest -> balance {self.balance}")
            case _:
                await super().handle_info(message)

    async def terminate(self, reason: Any) -> None:
        print(f"  [account] terminate({reason!r})")


class Auditor(otp.GenServer):
    """Monitors the account and reports how it ended."""

    async def init(self, account: otp.ActorRef) -> None:
        self.monitor(account)
        self.reasons: list[Any] = []

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, otp.Down):
            print(f"  [auditor] Down: the account exited with {message.reason!r}")
            self.reasons.append(message.reason)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        return list(self.reasons)


async def main() -> None:
    async with otp.Node() as node:
        print("spawn an account named 'alice'")
        alice = await node.spawn(Account, 100, name="alice")
        assert node.whereis("alice") == alice
        auditor = await node.spawn(Auditor, alice)

        print("cast: deposits do not wait for an answer")
        await alice.cast(Deposit(50))
        await alice.cast(Deposit(25))

        print("call: waits for the reply (messages are handled in order)")
        print(f"balance = {await alice.call(Balance(), timeout=5.0)}")

        print("send: a plain message for handle_info")
        await alice.send(Interest(10))
        print(f"balance = {await alice.call(Withdraw(5))}")

        print("a call that crashes the account")
        try:
            await alice.call(Withdraw(10_000))
        except otp.ActorExited as exc:
            print(f"caller got ActorExited, caused by {exc.__cause__!r}")
        print(f"alice alive? {alice.alive}; whereis('alice') -> {node.whereis('alice')}")
        print(f"the auditor saw: {await auditor.call('reasons')!r}")

        print("casting to a dead actor returns quietly (a dead letter)")
        await alice.cast(Deposit(1))
        print(f"dead letters so far: {node.broker.statistics().dead_letters}")

        bob = await node.spawn(Account, 10, name="bob")
        print("stop bob normally")
        await bob.stop()
    print("node closed: every actor has stopped")


if __name__ == "__main__":
    # Crash reports go to the "otp" logger; keep this example's output short.
    logging.getLogger("otp").setLevel(logging.CRITICAL)
    otp.run(main)
