"""Small GenServers shared by the tests, and ``child_ref``.

Waiting helpers are not here: use ``otp.testing`` (``wait_until``, ``wait_for_restart``,
``wait_for_name``, ``start_probe``), the documented API users have too."""

from __future__ import annotations

from typing import Any

import anyio
import attrs

import otp


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


async def child_ref(sup: otp.SupervisorRef, child_id: str) -> otp.ActorRef | None:
    """The ref of ``sup``'s child ``child_id`` now (``None``: not running or unknown)."""
    for info in await sup.which_children():
        if info.id == child_id:
            return info.ref
    return None
