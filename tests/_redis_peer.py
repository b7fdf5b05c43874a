"""A peer node for the cross-process Redis tests.

``python -m tests._redis_peer URL PREFIX NODE BACKEND`` runs a node named NODE on the Redis
broker with a registered ``counter`` and a dead-letter reporter, prints ``READY`` and runs
until its standard input closes (then it leaves cleanly) or it is killed.
"""

from __future__ import annotations

import sys

import anyio

import otp
from otp.redis import RedisBroker
from tests._redis_messages import Counter, DeadLetterReporter


async def main(url: str, prefix: str, name: str) -> None:
    broker = RedisBroker(url, prefix=prefix, heartbeat=0.1, node_ttl=0.6)
    async with otp.Node(name=name, broker=broker) as node:
        await node.spawn(Counter, 0, name="counter")
        await node.spawn(DeadLetterReporter, name="reporter")
        print("READY", flush=True)
        stdin = anyio.wrap_file(sys.stdin)
        while await stdin.readline():
            pass


if __name__ == "__main__":
    url, prefix, name, backend = sys.argv[1:5]
    otp.run(main, url, prefix, name, backend=backend)
