"""Actors of the cluster-primitive tests, shared with their peer processes (both sides
register the same wire names)."""

from __future__ import annotations

from typing import Any

import otp


@otp.message("test.cluster.echo")
class Echo(otp.GenServer):
    """Answers every call with ``(node name, request)``."""

    async def init(self, tag: Any = None) -> None:
        self.tag = tag

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "crash":
            raise RuntimeError("crash")
        return [self.node.name, request, self.tag]


@otp.message("test.cluster.init_fails")
class InitFails(otp.GenServer):
    async def init(self) -> None:
        raise ValueError("no init today")
