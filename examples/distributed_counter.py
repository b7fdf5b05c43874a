"""distributed_counter: one counter actor, reached from another process through Redis.

What it shows:

* ``otp.Node(name=..., broker=RedisBroker(url))``: the only change from a one-process
  program; the actors are the same;
* finding an actor registered on another node (``await node.broker.whereis("counter")``)
  and using the ``otp.RemoteRef`` it returns like a local ref: ``cast``, ``call``;
* a remote monitor: the client watches the counter and is told ``Down(ref, reason)`` when
  it stops, or ``"nodedown"`` when its whole process disappears (Ctrl-C or kill it);
* pub/sub across processes: the counter publishes ``counter.changed``, the client prints it.

Needs a Redis server (``REDIS_URL``, default ``redis://127.0.0.1:6379/0``) and coredis
(``pip install 'anyotp[redis]'``). Run it in two terminals::

    python examples/distributed_counter.py serve     # terminal 1: the counter's node
    python examples/distributed_counter.py client    # terminal 2: cast, call, watch

or both nodes in one process, as a smoke test that exits on its own::

    python examples/distributed_counter.py

Options: ``--url``, ``--prefix`` (keys and channels; several demos can share one Redis),
``--backend asyncio|trio``, ``--rounds`` (client).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import anyio
import attrs

import otp
from otp.redis import RedisBroker, RedisUnavailable


# Messages that cross processes get a stable wire name; both sides import the same classes.
@otp.message("counter.add")
@attrs.frozen
class Add:
    n: int


@otp.message("counter.get")
@attrs.frozen
class Get(otp.Call[int]):  # the reply is an int: `await counter.call(Get())` is typed
    pass


@otp.message("counter.changed")
@attrs.frozen
class Changed:
    total: int
    by: int


class Counter(otp.GenServer):
    async def init(self) -> None:
        self.total = 0

    async def handle_cast(self, message: Any) -> None:
        match message:
            case Add(n):
                self.total += n
                await self.publish("counter.changed", Changed(self.total, n))
            case _:
                await super().handle_cast(message)

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case Get():
                return self.total
            case _:
                return await super().handle_call(request, caller)


class Watcher(otp.GenServer):
    """Monitors a (remote) ref and reports its Down."""

    async def init(self, target: Any, said: anyio.Event) -> None:
        self.said = said
        self.monitor(target)

    async def handle_info(self, message: Any) -> None:
        match message:
            case otp.Down(ref, reason):
                where = ref.node if isinstance(ref, otp.RemoteRef) else "this node"
                print(f"[watcher] Down: {ref.name!r} on node {where!r} -> {reason!r}")
                self.said.set()
            case _:
                await super().handle_info(message)


def broker(args: argparse.Namespace) -> RedisBroker:
    return RedisBroker(args.url, prefix=args.prefix, heartbeat=0.5, node_ttl=2.0)


async def serve(args: argparse.Namespace) -> None:
    async with otp.Node(name="counter-server", broker=broker(args)) as node:
        await node.spawn(Counter, name="counter")
        print(f"node {node.name!r} serves 'counter' on {args.url} (prefix {args.prefix!r})")
        print("start the client in another terminal; Ctrl-C to stop")
        await anyio.sleep_forever()


async def find_counter(node: otp.Node, timeout: float = 30.0) -> otp.Ref:
    with anyio.fail_after(timeout):
        while True:
            ref = await node.locate("counter")
            if ref is not None:
                return ref
            await anyio.sleep(0.5)


async def client(args: argparse.Namespace, rounds: int, pause: float) -> None:
    async with otp.Node(name=f"counter-client-{os.getpid()}", broker=broker(args)) as node:
        print("looking for 'counter' on any node...")
        counter = await find_counter(node)
        print(f"found {counter!r}")
        down = anyio.Event()
        await node.spawn(Watcher, counter, down)
        async with node.broker.subscribe("counter.changed") as changes:

            async def show_changes() -> None:
                async for envelope in changes:
                    change = envelope.message
                    print(f"[changed] total={change.total} (+{change.by}) from {envelope.sender}")

            async with anyio.create_task_group() as tg:
                tg.start_soon(show_changes)
                for _ in range(rounds):
                    if down.is_set():
                        break
                    await counter.cast(Add(1))
                    try:
                        print(f"call Get() -> {await counter.call(Get(), timeout=5)}")
                    except otp.ActorExited as exc:
                        print(f"call failed: the counter exited ({exc.reason!r})")
                        break
                    await anyio.sleep(pause)
                tg.cancel_scope.cancel()


async def demo(args: argparse.Namespace) -> None:
    """Both nodes in one process: what the two terminals would show, then a clean stop."""
    async with otp.Node(name="counter-server", broker=broker(args)) as server:
        local = await server.spawn(Counter, name="counter")
        async with otp.Node(name="counter-client", broker=broker(args)) as node:
            counter = await find_counter(node, timeout=5)
            assert isinstance(counter, otp.RemoteRef)  # found on the other node
            print(f"client found {counter.name!r} on node {counter.node!r}")
            down = anyio.Event()
            await node.spawn(Watcher, counter, down)
            async with node.broker.subscribe("counter.changed") as changes:
                for n in (1, 2, 3):
                    await counter.cast(Add(n))
                print(f"total = {await counter.call(Get(), timeout=5)}")
                with anyio.fail_after(5):
                    for _ in range(3):
                        change = (await changes.receive()).message
                        print(f"[changed] total={change.total} (+{change.by})")
            await local.stop("shutdown")  # the server's node stops its counter...
            with anyio.fail_after(5):
                await down.wait()  # ...and the client's watcher is told
            try:
                await counter.call(Get())
            except otp.ActorExited as exc:
                print(f"calling it now: ActorExited ({exc.reason!r})")
    print("both nodes closed")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("role", nargs="?", choices=["serve", "client", "demo"], default="demo")
    parser.add_argument("--url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--prefix", default="otp-demo")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    try:
        try:
            if args.role == "serve":
                otp.run(serve, args, backend=args.backend)
            elif args.role == "client":
                otp.run(client, args, args.rounds, 1.0, backend=args.backend)
            else:
                otp.run(demo, args, backend=args.backend)
        except* RedisUnavailable as group:
            print(f"error: {group.exceptions[0]}", file=sys.stderr)
            sys.exit(2)
    except KeyboardInterrupt:
        print("stopped")


if __name__ == "__main__":
    main()
