"""backends: the same program, unchanged, on asyncio and on trio.

What it shows:

* ``otp.run(main, backend=...)`` runs ``main`` on ``"asyncio"`` (the default) or
  ``"trio"`` and returns what ``main`` returns;
* nothing in the program names a backend: actors, supervisors and the broker are
  built on anyio, so the same code gives the same answers on both.

trio is optional: ``pip install 'anyotp[trio]'``. Without it this example runs asyncio only.

Run it with ``python examples/backends.py``.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import attrs

import otp


@attrs.frozen
class Total: ...


class Accumulator(otp.GenServer):
    """Sums the numbers published on ``numbers.*``."""

    async def init(self) -> None:
        self.total = 0
        await self.subscribe("numbers.*")

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, int):
            self.total += message

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case Total():
                return self.total
            case "boom":
                raise RuntimeError("boom")
            case _:
                return await super().handle_call(request, caller)


async def main(backend: str) -> dict[str, Any]:
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("sup", [otp.worker(Accumulator, name="acc")]))
        for n in range(1, 101):
            await node.broker.publish(f"numbers.{'even' if n % 2 == 0 else 'odd'}", n)
        acc = node.whereis("acc")
        assert acc is not None
        total = await acc.call(Total())
        try:
            await acc.call("boom")
        except otp.ActorExited:
            pass
        restarted = next(c.ref for c in await sup.which_children())
        assert restarted is not None
        result = {
            "total": total,
            "restarted": restarted is not acc and restarted.alive,
            "total after restart": await restarted.call(Total()),
        }
    print(f"{backend:8} -> {result}")
    return result


if __name__ == "__main__":
    # Crash reports go to the "otp" logger; keep this example's output short.
    logging.getLogger("otp").setLevel(logging.CRITICAL)
    backends = ["asyncio"]
    if importlib.util.find_spec("trio") is not None:
        backends.append("trio")
    else:
        print("trio is not installed (pip install 'anyotp[trio]'): running asyncio only")
    results = [otp.run(main, backend, backend=backend) for backend in backends]
    same = all(result == results[0] for result in results)
    print(f"same result on {' and '.join(backends)}: {same}")
    raise SystemExit(0 if same else 1)
