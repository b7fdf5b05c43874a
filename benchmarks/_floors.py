"""The raw floors, written directly on each backend (no anyio, no anyotp).

Each is the least that the same job can cost on that backend, measured in the same run.
Every consumer awaits an ``async def`` handler per message, as an actor awaits its callback:

* request/reply: ``asyncio.Queue`` + ``Future`` on asyncio, a trio memory channel + ``Event``
  on trio;
* one-way: a ``deque`` drained without yielding, with a ``Future`` (asyncio) or ``Event``
  (trio) that wakes the consumer when it has run dry;
* fan-out: a non-blocking send to each subscriber's own queue or channel;
* actors: a bare task waiting on its own ``asyncio.Queue`` / trio memory channel.

Only the standard library and trio are imported here, so the peer runner can measure the
floor in another virtualenv too.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

from ._common import Counter, split
from ._core import Ctx, Metrics, memory_sample, run_backend, settle_memory

# ============================================================================ request/reply


async def _echo(request: Any) -> Any:
    """The handler every floor server awaits (an actor awaits ``handle_call``)."""
    return request


def call(ctx: Ctx) -> Metrics:
    """Request/reply round-trip with the backend's own queue and one-shot reply."""
    n = ctx.n(10_000)
    warm = max(10, n // 10)
    if ctx.backend == "asyncio":
        return run_backend("asyncio", lambda: _aio_call(n, warm))
    return run_backend("trio", lambda: _trio_call(n, warm))


async def _aio_call(n: int, warm: int) -> Metrics:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]] | None] = asyncio.Queue()

    async def server() -> None:
        get = queue.get
        while (item := await get()) is not None:
            request, reply = item
            reply.set_result(await _echo(request))

    async def calls(k: int) -> float:
        put = queue.put_nowait
        create = loop.create_future
        t0 = perf_counter()
        for i in range(k):
            reply: asyncio.Future[int] = create()
            put((i, reply))
            await reply
        return perf_counter() - t0

    task = asyncio.create_task(server())
    await calls(warm)
    elapsed = await calls(n)
    queue.put_nowait(None)
    await task
    return {"call": elapsed / n, "call_nt": elapsed / n}


async def _trio_call(n: int, warm: int) -> Metrics:
    import trio

    send, recv = trio.open_memory_channel[tuple[int, trio.Event, list[int]]](math.inf)

    async def server() -> None:
        async for request, event, box in recv:
            box.append(await _echo(request))
            event.set()

    async def calls(k: int) -> float:
        put = send.send_nowait
        event_class = trio.Event
        t0 = perf_counter()
        for i in range(k):
            event = event_class()
            box: list[int] = []
            put((i, event, box))
            await event.wait()
        return perf_counter() - t0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        await calls(warm)
        elapsed = await calls(n)
        await send.aclose()
    return {"call": elapsed / n, "call_nt": elapsed / n}


# ============================================================================ one-way


class AioDequeMailbox:
    """The least a mailbox can do on asyncio: append, and wake the consumer if it sleeps."""

    __slots__ = ("_items", "_waiter", "counter")

    def __init__(self, counter: Counter) -> None:
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.counter = counter

    def put(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set_result(None)

    async def consume(self) -> None:
        items = self._items
        popleft = items.popleft
        handle = self.counter.handle
        create = asyncio.get_running_loop().create_future
        while True:
            while items:
                await handle(popleft())
            waiter = self._waiter = create()
            await waiter


class TrioDequeMailbox:
    """The least a mailbox can do on trio: append, and set an Event if the consumer sleeps."""

    __slots__ = ("_items", "_waiter", "counter")

    def __init__(self, counter: Counter) -> None:
        self._items: deque[Any] = deque()
        self._waiter: Any = None
        self.counter = counter

    def put(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def consume(self) -> None:
        import trio

        items = self._items
        popleft = items.popleft
        handle = self.counter.handle
        event_class = trio.Event
        while True:
            while items:
                await handle(popleft())
            waiter = self._waiter = event_class()
            await waiter.wait()


def one_way(producers: int, checkpoint: bool, key: str) -> Callable[[Ctx], Metrics]:
    """``producers`` tasks each send their share into one deque mailbox; with ``checkpoint``
    each producer yields once every 64 messages (the amortised checkpoint of ``await
    ref.cast``: a schedule point per budget, not per message)."""

    def variant(ctx: Ctx) -> Metrics:
        n = ctx.n(40_000 if not checkpoint else 20_000)
        warm = max(10, n // 10)
        if ctx.backend == "asyncio":
            return run_backend("asyncio", lambda: _aio_one_way(n, warm, producers, checkpoint))
        return run_backend("trio", lambda: _trio_one_way(n, warm, producers, checkpoint))

    async def _aio_one_way(n: int, warm: int, parts: int, yields: bool) -> Metrics:
        loop = asyncio.get_running_loop()
        counter = Counter()
        mailbox = AioDequeMailbox(counter)
        consumer = asyncio.create_task(mailbox.consume())

        async def produce(k: int) -> None:
            put = mailbox.put
            sleep = asyncio.sleep
            if yields:
                for i in range(k):
                    put(i)
                    if i & 63 == 63:
                        await sleep(0)
            else:
                for i in range(k):
                    put(i)

        async def phase(k: int) -> float:
            done = loop.create_future()
            counter.expect(k, lambda: done.set_result(None))
            t0 = perf_counter()
            tasks = [asyncio.create_task(produce(share)) for share in split(k, parts)]
            await done
            elapsed = perf_counter() - t0
            await asyncio.gather(*tasks)
            return elapsed

        await phase(warm)
        elapsed = await phase(n)
        consumer.cancel()
        return {key: elapsed / n}

    async def _trio_one_way(n: int, warm: int, parts: int, yields: bool) -> Metrics:
        import trio

        counter = Counter()
        mailbox = TrioDequeMailbox(counter)

        async def produce(k: int) -> None:
            put = mailbox.put
            cp = trio.lowlevel.checkpoint
            if yields:
                for i in range(k):
                    put(i)
                    if i & 63 == 63:
                        await cp()
            else:
                for i in range(k):
                    put(i)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(mailbox.consume)

            async def phase(k: int) -> float:
                done = trio.Event()
                counter.expect(k, done.set)
                t0 = perf_counter()
                async with trio.open_nursery() as producers_nursery:
                    for share in split(k, parts):
                        producers_nursery.start_soon(produce, share)
                    await done.wait()
                    elapsed = perf_counter() - t0
                return elapsed  # noqa: RET504 - taken before the producers are joined

            await phase(warm)
            elapsed = await phase(n)
            nursery.cancel_scope.cancel()
        return {key: elapsed / n}

    return variant


# ============================================================================ fan-out


def fan_out(subscribers: int, key: str | None = None) -> Callable[[Ctx], Metrics]:
    """A raw publish: a non-blocking send to each subscriber's own queue or channel
    (``asyncio.Queue.put_nowait`` / trio ``send_nowait``), each consumer awaiting its queue;
    the time runs until every subscriber has handled every message."""

    def variant(ctx: Ctx) -> Metrics:
        deliveries = ctx.n(40_000)
        messages = max(2, deliveries // subscribers)
        warm = max(1, messages // 10)
        main = _aio_fan_out if ctx.backend == "asyncio" else _trio_fan_out
        return run_backend(ctx.backend, lambda: main(subscribers, messages, warm))

    if key is None:
        return variant

    def renamed(ctx: Ctx) -> Metrics:
        (value,) = variant(ctx).values()
        return {key: value}

    return renamed


async def _aio_fan_out(subscribers: int, messages: int, warm: int) -> Metrics:
    loop = asyncio.get_running_loop()
    counters = [Counter() for _ in range(subscribers)]
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in counters]

    async def consume(queue: asyncio.Queue[int], counter: Counter) -> None:
        get = queue.get
        handle = counter.handle
        while True:
            await handle(await get())

    consumers = [asyncio.create_task(consume(q, c)) for q, c in zip(queues, counters)]
    puts = [q.put_nowait for q in queues]

    async def publish(message: int) -> None:
        for put in puts:
            put(message)

    async def phase(k: int) -> float:
        done = loop.create_future()
        left = [subscribers]

        def one_done() -> None:
            left[0] -= 1
            if not left[0]:
                done.set_result(None)

        for c in counters:
            c.expect(k, one_done)
        t0 = perf_counter()
        for i in range(k):
            await publish(i)
        await done
        return perf_counter() - t0

    await phase(warm)
    elapsed = await phase(messages)
    for task in consumers:
        task.cancel()
    return {f"fanout_{subscribers}": elapsed / (messages * subscribers)}


async def _trio_fan_out(subscribers: int, messages: int, warm: int) -> Metrics:
    import trio

    counters = [Counter() for _ in range(subscribers)]
    channels = [trio.open_memory_channel[int](math.inf) for _ in counters]
    puts = [send.send_nowait for send, _ in channels]

    async def consume(recv: trio.MemoryReceiveChannel[int], counter: Counter) -> None:
        handle = counter.handle
        async for message in recv:
            await handle(message)

    async def publish(message: int) -> None:
        for put in puts:
            put(message)

    async with trio.open_nursery() as nursery:
        for (_, recv), counter in zip(channels, counters):
            nursery.start_soon(consume, recv, counter)

        async def phase(k: int) -> float:
            done = trio.Event()
            left = [subscribers]

            def one_done() -> None:
                left[0] -= 1
                if not left[0]:
                    done.set()

            for c in counters:
                c.expect(k, one_done)
            t0 = perf_counter()
            for i in range(k):
                await publish(i)
            await done.wait()
            return perf_counter() - t0

        await phase(warm)
        elapsed = await phase(messages)
        nursery.cancel_scope.cancel()
    return {f"fanout_{subscribers}": elapsed / (messages * subscribers)}


def publish_nobody(ctx: Ctx) -> Metrics:
    """A raw publish to a topic nobody subscribes to: one failed dict lookup, counted."""
    n = ctx.n(50_000)

    async def main() -> Metrics:
        table: dict[str, list[Any]] = {"other.topic": []}
        dropped = [0]

        async def publish(topic: str, message: Any) -> None:
            if not table.get(topic):
                dropped[0] += 1

        for i in range(n // 10):
            await publish("nobody.home", i)
        t0 = perf_counter()
        for i in range(n):
            await publish("nobody.home", i)
        return {"publish_nobody": (perf_counter() - t0) / n}

    return run_backend(ctx.backend, main)


# ============================================================================ lifecycle


def spawn_stop(ctx: Ctx) -> Metrics:
    """Start N tasks one by one, each acknowledging its start (as ``spawn`` returns after
    ``init``), then stop them one by one (a sentinel, then wait for the task to end)."""
    n = ctx.n(10_000, minimum=100)
    main = _aio_spawn_stop if ctx.backend == "asyncio" else _trio_spawn_stop
    return run_backend(ctx.backend, lambda: main(n))


async def _aio_spawn_stop(n: int) -> Metrics:
    loop = asyncio.get_running_loop()

    async def worker(queue: asyncio.Queue[Any], started: asyncio.Future[None]) -> None:
        started.set_result(None)
        while (await queue.get()) is not None:
            pass

    t0 = perf_counter()
    running = []
    for _ in range(n):
        queue: asyncio.Queue[Any] = asyncio.Queue()
        started = loop.create_future()
        task = asyncio.create_task(worker(queue, started))
        await started
        running.append((task, queue))
    for task, queue in running:
        queue.put_nowait(None)
        await task
    return {"spawn_stop": (perf_counter() - t0) / n}


async def _trio_spawn_stop(n: int) -> Metrics:
    import trio

    async def worker(
        recv: trio.MemoryReceiveChannel[Any],
        done: trio.Event,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        async for message in recv:
            if message is None:
                break
        done.set()

    t0 = perf_counter()
    async with trio.open_nursery() as nursery:
        running = []
        for _ in range(n):
            send, recv = trio.open_memory_channel[Any](math.inf)
            done = trio.Event()
            await nursery.start(worker, recv, done)
            running.append((send, done))
        for send, done in running:
            send.send_nowait(None)
            await done.wait()
    return {"spawn_stop": (perf_counter() - t0) / n}


class Crash(Exception):
    pass


def restart(ctx: Ctx) -> Metrics:
    """Crash-to-serving-again: a supervisor task runs each incarnation in a new task with a
    new queue; the time runs from the crash request to the new incarnation's first reply."""
    n = ctx.n(1_000, minimum=20)
    main = _aio_restart if ctx.backend == "asyncio" else _trio_restart
    return run_backend(ctx.backend, lambda: main(n))


async def _aio_restart(n: int) -> Metrics:
    loop = asyncio.get_running_loop()
    current: list[asyncio.Queue[Any] | None] = [None]

    async def child(queue: asyncio.Queue[Any]) -> None:
        while True:
            request, reply = await queue.get()
            if request == "crash":
                raise Crash
            reply.set_result(request)

    async def supervisor() -> None:
        while True:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            current[0] = queue
            try:
                await asyncio.create_task(child(queue))
            except Crash:
                current[0] = None

    sup = asyncio.create_task(supervisor())
    await asyncio.sleep(0)

    async def cycle() -> None:
        old = current[0]
        assert old is not None
        old.put_nowait(("crash", None))
        while (new := current[0]) is None or new is old:  # noqa: ASYNC110 - the poll is the test
            await asyncio.sleep(0)
        reply = loop.create_future()
        new.put_nowait(("ping", reply))
        await reply

    for _ in range(max(2, n // 10)):
        await cycle()
    t0 = perf_counter()
    for _ in range(n):
        await cycle()
    elapsed = perf_counter() - t0
    sup.cancel()
    return {"restart": elapsed / n}


async def _trio_restart(n: int) -> Metrics:
    import trio

    current: list[Any] = [None]

    async def child(recv: trio.MemoryReceiveChannel[Any]) -> None:
        async for request, event in recv:
            if request == "crash":
                raise Crash
            event.set()

    async def supervisor() -> None:
        while True:
            send, recv = trio.open_memory_channel[Any](math.inf)
            current[0] = send
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(child, recv)
            except* Crash:
                current[0] = None

    async def cycle() -> None:
        old = current[0]
        old.send_nowait(("crash", None))
        while (new := current[0]) is None or new is old:
            await trio.lowlevel.checkpoint()
        event = trio.Event()
        new.send_nowait(("ping", event))
        await event.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervisor)
        while current[0] is None:
            await trio.lowlevel.checkpoint()
        for _ in range(max(2, n // 10)):
            await cycle()
        t0 = perf_counter()
        for _ in range(n):
            await cycle()
        elapsed = perf_counter() - t0
        nursery.cancel_scope.cancel()
    return {"restart": elapsed / n}


# ============================================================================ many idle tasks


def idle_memory(ctx: Ctx) -> Metrics:
    """RSS per bare task waiting on its own queue/channel, with N of them alive."""
    n = ctx.n(10_000, minimum=200)
    main = _aio_many if ctx.backend == "asyncio" else _trio_many
    return run_backend(ctx.backend, lambda: main(n, ctx))


def many_under_one(ctx: Ctx) -> Metrics:
    """100k bare tasks in one task group: start (all running), RSS per task, shutdown (a
    sentinel to each, then wait for all to end)."""
    n = ctx.n(100_000, minimum=500)
    main = _aio_many if ctx.backend == "asyncio" else _trio_many
    result = run_backend(ctx.backend, lambda: main(n, None))
    return {"sup_start": result["start"], "idle_100k": result["rss"], "sup_stop": result["stop"]}


async def _aio_many(n: int, memory_only: Ctx | None) -> Metrics:
    loop = asyncio.get_running_loop()
    all_started = loop.create_future()
    started = [0]

    async def idle(queue: asyncio.Queue[Any]) -> None:
        started[0] += 1
        if started[0] == n:
            all_started.set_result(None)
        await queue.get()

    before = settle_memory()
    t0 = perf_counter()
    queues: list[asyncio.Queue[Any]] = []
    tasks = []
    for _ in range(n):
        queue: asyncio.Queue[Any] = asyncio.Queue()
        queues.append(queue)
        tasks.append(asyncio.create_task(idle(queue)))
    await all_started
    start = perf_counter() - t0
    await asyncio.sleep(0)
    rss = (settle_memory() - before) / n
    if memory_only is not None:
        memory_sample(memory_only, "idle_10k", rss)
    t0 = perf_counter()
    for queue in reversed(queues):
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    return {"start": start, "rss": rss, "stop": perf_counter() - t0, "idle_10k": rss}


async def _trio_many(n: int, memory_only: Ctx | None) -> Metrics:
    import trio

    all_started = trio.Event()
    started = [0]

    async def idle(recv: trio.MemoryReceiveChannel[Any]) -> None:
        started[0] += 1
        if started[0] == n:
            all_started.set()
        await recv.receive()

    before = settle_memory()
    async with trio.open_nursery() as nursery:
        t0 = perf_counter()
        sends = []
        for _ in range(n):
            send, recv = trio.open_memory_channel[Any](math.inf)
            sends.append(send)
            nursery.start_soon(idle, recv)
        await all_started.wait()
        start = perf_counter() - t0
        await trio.lowlevel.checkpoint()
        rss = (settle_memory() - before) / n
        if memory_only is not None:
            memory_sample(memory_only, "idle_10k", rss)
        t0 = perf_counter()
        for send in reversed(sends):
            send.send_nowait(None)
    # Leaving the nursery waits for every task to end.
    return {"start": start, "rss": rss, "stop": perf_counter() - t0, "idle_10k": rss}
