"""``otp.observer``: a live web observer of a node or a cluster (the extra ``anyotp[web]``).

::

    async with otp.observer.serve(node, port=8765) as server:
        print("observer at", server.url)
        ...

The page shows the supervision tree as it changes, one actor's statistics and state, the
event log, throughput and mailbox charts, the broker's topics and, on
``otp.redis.RedisBroker``, every node of the cluster. Everything it shows comes from a
JSON API under ``/api/`` in the form of :func:`otp.to_json`; see docs/guide/observer.md.
"""

from __future__ import annotations

try:
    import hypercorn  # noqa: F401
    import starlette  # noqa: F401
except ModuleNotFoundError as _missing:  # pragma: no cover - exercised in a clean venv
    raise ModuleNotFoundError(
        f"otp.observer needs the web extra ({_missing.name} is not installed): "
        "pip install 'anyotp[web]'",
        name=_missing.name,
    ) from None

from ._app import CrashInjector as CrashInjector
from ._app import ObserverApp as ObserverApp
from ._app import create_app as create_app
from ._server import ObserverServer as ObserverServer
from ._server import agent as agent
from ._server import serve as serve

__all__ = ["CrashInjector", "ObserverApp", "ObserverServer", "agent", "create_app", "serve"]
