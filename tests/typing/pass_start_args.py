"""Start arguments checked against ``init``: every call here must type-check (mypy
--strict and pyright strict). The failing counterparts are in fail_start_args.py."""

from __future__ import annotations

from typing import Any

import otp


class NoArgs(otp.GenServer):
    async def init(self) -> None: ...


class Defaults(otp.GenServer):
    async def init(self, start: int = 0, label: str = "") -> None: ...


class Required(otp.GenServer):
    async def init(self, a: int, b: str) -> None: ...


class Five(otp.GenServer):
    async def init(self, a: int, b: str, c: float, d: bytes, e: bool = False) -> None: ...


class Six(otp.GenServer):
    async def init(self, a: int, b: int, c: int, d: int, e: int, f: int) -> None: ...


class Star(otp.GenServer):
    async def init(self, first: int, *rest: str) -> None: ...


class Inherited(otp.GenServer):  # does not override init: no start arguments (not checked)
    pass


class Returns(otp.GenServer):
    async def init(self, x: int) -> object:  # init may return something (e.g. otp.IGNORE)
        return None


class Loose(otp.GenServer):
    async def init(self, *args: Any) -> None: ...


async def start(node: otp.Node) -> None:
    await node.spawn(NoArgs)
    await node.spawn(Defaults)
    await node.spawn(Defaults, 1)
    await node.spawn(Defaults, 1, "x", name="d", shutdown=1.0, mailbox=otp.Mailbox(10))
    await node.spawn(Required, 1, "x")
    await node.spawn(Five, 1, "b", 1.0, b"d")
    await node.spawn(Five, 1, "b", 1.0, b"d", True)
    await node.spawn(Six, 1, 2, 3, 4, 5, 6)
    await node.spawn(Star, 1)
    await node.spawn(Star, 1, "a", "b", "c")
    await node.spawn(Inherited)
    await node.spawn(Returns, 1)
    await node.spawn(Loose, 1, "two", 3.0)
    parent = await node.spawn(NoArgs)
    await node.spawn(Required, 1, "x", link=parent, start_timeout=2.0)


class Parent(otp.GenServer):
    async def init(self) -> None:
        await self.spawn_link(Required, 1, "x", name="child")
        await self.spawn_link(Defaults)


def specs() -> list[otp.WorkerSpec | otp.SupervisorSpec]:
    return [
        otp.worker(NoArgs),
        otp.worker(Defaults, name="a"),
        otp.worker(Defaults, 1, "x", id="b", restart=otp.TRANSIENT, shutdown=otp.BRUTAL_KILL),
        otp.worker(Required, 1, "x"),
        otp.worker(Five, 1, "b", 1.0, b"d"),
        otp.worker(Six, 1, 2, 3, 4, 5, 6, name="six"),
        otp.worker(Star, 1, "a"),
        otp.worker_pool("p1", NoArgs),
        otp.worker_pool("p2", Required, 1, "x", size=3, dispatch=otp.LEAST_BUSY),
        otp.worker_pool("p3", Six, 1, 2, 3, 4, 5, 6, start_timeout=1.0),
        otp.worker(NoArgs, start_timeout=1.0, significant=True, restart=otp.TRANSIENT),
    ]


async def start_timeouts(node: otp.Node) -> None:
    # start_timeout is a spawn/spawn_link/worker option (issue 11).
    await node.spawn(otp.GenServer, start_timeout=1.0)
    otp.worker(otp.GenServer, start_timeout=1.0, restart=otp.TRANSIENT, significant=True)
