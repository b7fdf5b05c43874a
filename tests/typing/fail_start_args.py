"""Start arguments that do not fit ``init``: each marked line must be an error, with the
error code named in its ``# expect:`` comment, under both checkers (check.py verifies it)."""

from __future__ import annotations

import otp


class NoArgs(otp.GenServer):
    async def init(self) -> None: ...


class Defaults(otp.GenServer):
    async def init(self, start: int = 0, label: str = "") -> None: ...


class Required(otp.GenServer):
    async def init(self, a: int, b: str) -> None: ...


class Six(otp.GenServer):
    async def init(self, a: int, b: int, c: int, d: int, e: int, f: int) -> None: ...


class NotAServer:
    async def work(self) -> None: ...


async def start(node: otp.Node) -> None:
    await node.spawn(Required)  # expect: mypy=arg-type pyright=reportCallIssue
    await node.spawn(Required, 1)  # expect: mypy=arg-type pyright=reportCallIssue
    await node.spawn(Required, "1", "x")  # expect: mypy=misc pyright=reportCallIssue
    await node.spawn(NoArgs, 1)  # expect: mypy=arg-type pyright=reportCallIssue
    await node.spawn(Defaults, "x")  # expect: mypy=misc pyright=reportCallIssue
    await node.spawn(Defaults, 1, 2)  # expect: mypy=misc pyright=reportCallIssue
    await node.spawn(Six, 1, 2, 3, 4, 5)  # expect: mypy=misc pyright=reportArgumentType
    await node.spawn(NotAServer)  # expect: mypy=arg-type pyright=reportCallIssue
    await node.spawn(NoArgs, nme="x")  # expect: mypy=call-overload pyright=reportCallIssue


class Parent(otp.GenServer):
    async def init(self) -> None:
        await self.spawn_link(Required, 1)  # expect: mypy=arg-type pyright=reportCallIssue
        # expect: mypy=call-overload pyright=reportCallIssue
        await self.spawn_link(NoArgs, link=None)


def specs() -> None:
    otp.worker(Required)  # expect: mypy=arg-type pyright=reportCallIssue
    otp.worker(Required, 1, 2)  # expect: mypy=misc pyright=reportCallIssue
    otp.worker(Six, 1, 2, 3, 4, 5, "6")  # expect: mypy=misc pyright=reportArgumentType
    otp.worker(NoArgs, restart="permanent")  # expect: mypy=call-overload pyright=reportCallIssue
    otp.worker_pool("p", Required, 1)  # expect: mypy=arg-type pyright=reportCallIssue
