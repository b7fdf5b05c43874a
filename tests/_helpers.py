"""Small GenServers shared by the tests."""

from __future__ import annotations

from typing import Any

import anyio
import attrs

import otp
from otp.testing import wait_for_restart, wait_until


@attrs.frozen
class Add:
    n: int


@attrs.frozen
class Get: ...


@attrs.frozen
class Crash:
    error: str = "boom"


@attrs.frozen
class Sleep:
    seconds: float


@attrs.frozen
class Block:
    """Wait in the handler until the given event is set."""

    event: anyio.Event


class Counter(otp.GenServer):
    """Counts; records its lifecycle in a shared log when given one."""

    async def init(self, start: int = 0, log: list[Any] | None = None) -> None:
        self.total = start
        self.log = log if log is not None else []
        self.log.append(("init", self.ref.name))
        self.infos: list[Any] = []

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case Get():
                return self.total
            case Add(n):
                self.total += n
                return self.total
            case Crash(error):
                raise RuntimeError(error)
            case Sleep(seconds):
                await anyio.sleep(seconds)
                return "slept"
            case Block(event):
                await event.wait()
                return "unblocked"
            case "infos":
                return list(self.infos)
        raise ValueError(f"unknown call {request!r}")

    async def handle_cast(self, message: Any) -> None:
        match message:
            case Add(n):
                self.total += n
            case Crash(error):
                raise RuntimeError(error)
            case Block(event):
                await event.wait()

    async def handle_info(self, message: Any) -> None:
        self.infos.append(message)
        if isinstance(message, Crash):
            raise RuntimeError(message.error)

    async def terminate(self, reason: Any) -> None:
        self.log.append(("terminate", self.ref.name, reason))


class FailingInit(otp.GenServer):
    async def init(self, error: str = "init failed") -> None:
        raise RuntimeError(error)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` (sync or async) is true: ``otp.testing.wait_until``."""
    await wait_until(predicate, timeout)


async def child_ref(sup: otp.SupervisorRef, child_id: str) -> otp.ActorRef | None:
    for info in await sup.which_children():
        if info.id == child_id:
            return info.ref
    return None


async def restarted(sup: otp.SupervisorRef, child_id: str, old: Any) -> otp.ActorRef:
    """Wait until ``child_id`` runs again with a ref other than ``old``; return it
    (``otp.testing.wait_for_restart``)."""
    return await wait_for_restart(sup, child_id, old)
