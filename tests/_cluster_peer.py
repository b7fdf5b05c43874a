"""A peer node for the cross-process cluster tests.

``python -m tests._cluster_peer URL PREFIX NODE BACKEND`` runs a node named NODE with an
``Echo`` registered as ``"svc"`` and a dynamic supervisor ``"sup"``, prints ``READY``, then
obeys one command per line on standard input, answering one line each:

* ``global NAME AT``: at Unix time AT, start an Echo as ``otp.Global(NAME)``;
  answers ``WON <id>`` or ``TAKEN``;
* ``join GROUP``: start an Echo and join it to GROUP; answers ``JOINED <id>``.

It runs until its standard input closes (then leaves cleanly) or it is killed.
"""

from __future__ import annotations

import sys
import time

import anyio

import otp
from otp.redis import RedisBroker
from tests._cluster_messages import Echo


async def main(url: str, prefix: str, name: str) -> None:
    broker = RedisBroker(url, prefix=prefix, heartbeat=0.1, node_ttl=0.6)
    async with otp.Node(name=name, broker=broker) as node:
        await node.spawn(Echo, name, name="svc")
        await node.start(otp.dynamic_supervisor("sup"))
        print("READY", flush=True)
        stdin = anyio.wrap_file(sys.stdin)
        while line := await stdin.readline():
            words = line.split()
            if words[:1] == ["global"]:
                await anyio.sleep(max(0.0, float(words[2]) - time.time()))
                try:
                    ref = await node.spawn(Echo, name, name=otp.Global(words[1]))
                except otp.NameTaken:
                    print("TAKEN", flush=True)
                else:
                    print(f"WON {ref.id}", flush=True)
            elif words[:1] == ["join"]:
                ref = await node.spawn(Echo, name)
                await node.groups.join(words[1], ref)
                print(f"JOINED {ref.id}", flush=True)


if __name__ == "__main__":
    url, prefix, name, backend = sys.argv[1:5]
    otp.run(main, url, prefix, name, backend=backend)
