"""Making the broker's coredis client: a plain or TLS client, or one that follows a Redis
Sentinel's primary (``_client_factory``)."""

from __future__ import annotations

import contextlib
import logging
import ssl as _ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import coredis  # type: ignore[import-not-found, unused-ignore]

from ._describe import describe

__all__ = ["_client_factory"]

logger = logging.getLogger("otp.redis")


def _client_factory(
    url: str,
    *,
    username: str | None,
    password: str | None,
    ssl: bool,
    ssl_context: _ssl.SSLContext | None,
    ssl_ca_certs: str | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    ssl_check_hostname: bool,
    sentinels: Iterable[tuple[str, int]] | None,
    service: str | None,
    connect_timeout: float,
    client_options: Mapping[str, Any],
) -> Callable[[str], AbstractAsyncContextManager[coredis.Redis[bytes]]]:
    """How to make this broker's coredis client (a context that yields it); checks the TLS
    and Sentinel options now, so a wrong combination fails at construction with a clear
    error."""
    kwargs: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "decode_responses": False,
        **client_options,
    }
    if username is not None:
        kwargs["username"] = username
    if password is not None:
        kwargs["password"] = password
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    wants_tls = ssl or scheme == "rediss" or ssl_ca_certs or ssl_certfile or ssl_context
    if ssl_keyfile and not ssl_certfile:
        raise ValueError("ssl_keyfile needs ssl_certfile (the client certificate)")
    context = ssl_context
    if context is not None and (ssl_ca_certs or ssl_certfile):
        raise ValueError(
            "give either ssl_context or ssl_ca_certs/ssl_certfile/ssl_keyfile, not both: "
            "load the files into your context"
        )
    if context is None and wants_tls:
        context = _ssl.create_default_context(cafile=ssl_ca_certs)
        if ssl_certfile is not None:
            context.load_cert_chain(ssl_certfile, ssl_keyfile)
        if not ssl_check_hostname:
            context.check_hostname = False
    elif context is not None and not ssl_check_hostname:
        context.check_hostname = False
    if context is None and not ssl_check_hostname:
        raise ValueError(
            "ssl_check_hostname=False only makes sense with TLS: use a rediss:// URL or ssl=True"
        )
    if context is not None:
        kwargs["ssl_context"] = context
        if scheme == "redis":
            url = "rediss://" + url.split("://", 1)[1]
    if scheme in ("redis+sentinel", "sentinel") or sentinels is not None:
        return _sentinel_factory(url, scheme, sentinels, service, kwargs)

    def make(client_name: str) -> coredis.Redis[bytes]:
        return coredis.Redis.from_url(url, client_name=client_name, **kwargs)

    return make


def _sentinel_factory(
    url: str,
    scheme: str,
    sentinels: Iterable[tuple[str, int]] | None,
    service: str | None,
    kwargs: dict[str, Any],
) -> Callable[[str], AbstractAsyncContextManager[coredis.Redis[bytes]]]:
    import urllib.parse

    addresses = list(sentinels or ())
    if scheme in ("redis+sentinel", "sentinel"):
        parts = urllib.parse.urlsplit(url)
        for host_port in parts.netloc.rsplit("@", 1)[-1].split(","):
            host, _, port = host_port.partition(":")
            addresses.append((host or "127.0.0.1", int(port or 26379)))
        path = parts.path.strip("/").split("/")
        service = service or (path[0] if path and path[0] else None)
        if parts.username and "username" not in kwargs:
            kwargs["username"] = urllib.parse.unquote(parts.username)
        if parts.password and "password" not in kwargs:
            kwargs["password"] = urllib.parse.unquote(parts.password)
        if len(path) > 1 and path[1].isdigit():
            kwargs["db"] = int(path[1])
    if not addresses or not service:
        raise ValueError(
            "Redis Sentinel needs the sentinels' addresses and the service name: "
            "RedisBroker('redis+sentinel://host1:26379,host2:26379/mymaster') or "
            "RedisBroker(sentinels=[('host1', 26379)], service='mymaster')"
        )
    timeout = kwargs.pop("connect_timeout", None)
    kwargs.pop("decode_responses", None)
    sentinel_kwargs = {k: v for k, v in kwargs.items() if k in ("username", "password")}

    # coredis >= 6.x wants TCPLocation (a (host, port) tuple is deprecated: a warning on
    # every connection); older releases take the tuples.
    location = getattr(getattr(coredis, "connection", None), "TCPLocation", None)
    places: list[Any] = [
        location(host, port) if location is not None else (host, port) for host, port in addresses
    ]

    @contextlib.asynccontextmanager
    async def make(client_name: str) -> AsyncIterator[coredis.Redis[bytes]]:
        sentinel = coredis.Sentinel(
            places,
            sentinel_kwargs=sentinel_kwargs or None,
            decode_responses=False,
            connect_timeout=timeout,
            **{k: v for k, v in kwargs.items() if k not in sentinel_kwargs},
        )
        client: coredis.Redis[bytes] = sentinel.primary_for(service, client_name=client_name)
        # The sentinels' own clients must be open while the primary's pool asks them where
        # the primary is (on every new connection: after a failover, the new primary).
        async with sentinel, client, anyio.create_task_group() as task_group:
            task_group.start_soon(_follow_failovers, sentinel, service, client)
            try:
                yield client
            finally:
                task_group.cancel_scope.cancel()

    return make


async def _follow_failovers(sentinel: Any, service: str, client: Any) -> None:
    """Drop ``client``'s connections when a sentinel announces that ``service`` has a new
    primary (``+switch-master``): they reconnect to it at once. Without it, a forced
    failover (``SENTINEL FAILOVER``, the old primary still up) moves the nodes only when
    the sentinel demotes the old primary, about 10 s later. Never raises: a sentinel that
    cannot be reached is tried again (the connections still move on demotion)."""
    wanted = service.encode()
    while True:
        for watcher in list(sentinel.sentinels):
            try:
                async with watcher.pubsub(channels=["+switch-master"], retry_policy=None) as feed:
                    async for message in feed:
                        data = message.get("data")
                        if message.get("type") != "message" or not isinstance(data, bytes):
                            continue
                        if data.split(b" ", 1)[0] == wanted:
                            logger.warning(
                                "Redis Sentinel switched the primary of %r (%s); reconnecting",
                                service,
                                data.decode(errors="replace"),
                                extra={"otp_event": "sentinel_switch"},
                            )
                            client.connection_pool.disconnect()
            except Exception as exc:
                logger.debug("following Redis Sentinel failed: %s", describe(exc))
        await anyio.sleep(1.0)
