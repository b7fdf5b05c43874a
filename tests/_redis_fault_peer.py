"""A peer node for the Redis fault tests.

``python -m tests._redis_fault_peer URL PREFIX NODE BACKEND`` runs a node with a ``svc``
actor that answers ``Work`` calls with ``(n, incarnation)`` and counts the calls it ran
after their caller's deadline (stale). It prints ``READY`` and runs until its standard
input closes; fenced, it prints ``FENCED`` and exits with status 3.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

import otp
from otp.redis import NodeFenced, RedisBroker
from tests._redis_messages import Stats, Work


class Svc(otp.GenServer):
    async def init(self) -> None:
        self.done = 0
        self.stale = 0
        self.seen: set[int] = set()
        self.duplicates = 0

    async def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case Work(n, deadline):
                if time.time() > deadline + 0.05:
                    self.stale += 1
                if n in self.seen:
                    self.duplicates += 1
                self.seen.add(n)
                self.done += 1
                return (n, self.node.broker.incarnation)
            case Stats():
                return {"done": self.done, "stale": self.stale, "duplicates": self.duplicates}
        raise ValueError(request)

    async def handle_cast(self, message: Any) -> None:
        match message:
            case Work(n, _):
                if n in self.seen:
                    self.duplicates += 1
                self.seen.add(n)
                self.done += 1


async def main(url: str, prefix: str, name: str) -> None:
    broker = RedisBroker(url, prefix=prefix, heartbeat=0.1, node_ttl=0.6, backoff=(0.02, 0.2))
    async with otp.Node(name=name, broker=broker) as node:
        await node.spawn(Svc, name="svc")
        print("READY", broker.incarnation, flush=True)
        # Until stdin closes, cancellably (a fenced node's body is cancelled): a daemon
        # thread watches stdin, so nothing waits for it at exit.
        closed = anyio.Event()
        token = anyio.lowlevel.current_token()

        def watch() -> None:
            sys.stdin.read()
            anyio.from_thread.run_sync(closed.set, token=token)

        threading.Thread(target=watch, daemon=True).start()
        await closed.wait()


if __name__ == "__main__":
    url, prefix, name, backend = sys.argv[1:5]
    try:
        otp.run(main, url, prefix, name, backend=backend)
    except NodeFenced:
        print("FENCED", flush=True)
        sys.exit(3)
