"""Running the Lua scripts of the cluster primitives (global names, groups): each is
loaded once per client and then called by its SHA (``EVALSHA``, reloaded if Redis
forgot it after a restart)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import coredis  # type: ignore[import-not-found, unused-ignore]

__all__ = ["run"]

_loaded: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


async def run(
    client: coredis.Redis[bytes], source: str, keys: Sequence[Any], args: Sequence[Any]
) -> Any:
    """The reply of the Lua script ``source`` run atomically with ``keys`` and ``args``."""
    scripts = _loaded.setdefault(client, {})
    script = scripts.get(source)
    if script is None:
        script = scripts[source] = client.register_script(source)
    return await script(keys=list(keys), args=list(args))
