"""A Redis-backed broker: pub/sub, streams and remote actor refs across processes and hosts.

::

    from otp.redis import RedisBroker

    async with otp.Node(name="a", broker=RedisBroker("redis://127.0.0.1:6379/0")) as node:
        ...  # the same code as with the in-memory broker

Needs the ``coredis`` package (``pip install 'anyotp[redis]'``), an anyio-native client, so
it runs on asyncio and trio alike. See ``docs/distributed.md`` for the protocol, the
guarantees and security.

The package has one concept a module: ``_naming`` (keys and channels), ``_frames`` (the
wire frames), ``_session`` (connect, claim, the lease; its mixins ``_sender``, the outbox,
and ``_listener``, listen, reconnect), ``_clients`` (the coredis clients), ``_membership``
(peers and failure detection), ``_remote`` (remote call, send_request, cast, exit, monitor),
``_serve`` (serving local actors to other nodes), ``_inbound`` (handing inbound
publishes to local subscribers), ``_streams`` (durable topics), ``_cluster`` (cluster
primitives) and ``_broker`` (the :class:`RedisBroker` that composes them; its mixin
``_wire``, frames in and out).
"""

from __future__ import annotations

try:
    import coredis  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "otp.redis needs the coredis package: install the extra with pip install 'anyotp[redis]'"
    ) from exc

from .._exceptions import NodeFenced as NodeFenced
from .._exceptions import NodeNameTaken as NodeNameTaken
from .._exceptions import RedisUnavailable as RedisUnavailable
from ._broker import RedisBroker as RedisBroker
from ._broker import RedisStatistics as RedisStatistics
from ._membership import NodeDown as NodeDown
from ._membership import NodeMonitor as NodeMonitor
from ._naming import glob_for as glob_for
from ._streams import StreamSubscription as StreamSubscription

__all__ = [
    "NodeDown",
    "NodeFenced",
    "NodeMonitor",
    "NodeNameTaken",
    "RedisBroker",
    "RedisStatistics",
    "RedisUnavailable",
    "StreamSubscription",
    "glob_for",
]
