"""The shape of the otp.redis package: what it exports and how it fails without coredis."""

from __future__ import annotations

import subprocess
import sys


def test_import_without_coredis_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['coredis'] = None\n"
        "try:\n"
        "    import otp.redis\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "anyotp[redis]" in out.stdout, out


def test_public_names() -> None:
    import pytest

    pytest.importorskip("coredis", reason="the Redis broker needs coredis")
    import otp.redis

    assert sorted(otp.redis.__all__) == otp.redis.__all__
    for name in otp.redis.__all__:
        assert getattr(otp.redis, name).__module__.startswith("otp.")
    from otp.redis import RedisBroker

    assert RedisBroker.__module__ == "otp.redis._broker"


def test_secrets_never_reach_messages_or_the_url_attribute() -> None:
    import pytest

    pytest.importorskip("coredis", reason="the Redis broker needs coredis")
    from otp.redis import RedisBroker, RedisUnavailable
    from otp.redis._session import redact

    assert redact("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact("rediss://:s3cret@host/0") == "rediss://***@host/0"
    assert "s3cret" not in redact("redis://host/0?password=s3cret&db=1")
    broker = RedisBroker("redis://otp:s3cret@127.0.0.1:1/0", password="other-secret")
    assert "s3cret" not in broker.url and "s3cret" not in repr(broker)
    error = RedisUnavailable(broker.url, "ConnectionError")
    assert "s3cret" not in str(error)


def test_tls_options_are_honoured_or_refused() -> None:
    import ssl

    import pytest

    pytest.importorskip("coredis", reason="the Redis broker needs coredis")
    from otp.redis import RedisBroker

    with pytest.raises(ValueError, match="ssl_check_hostname=False only makes sense with TLS"):
        RedisBroker("redis://127.0.0.1:6379/0", ssl_check_hostname=False)
    with pytest.raises(ValueError, match="ssl_keyfile needs ssl_certfile"):
        RedisBroker(ssl=True, ssl_keyfile="key.pem")
    with pytest.raises(ValueError, match="either ssl_context"):
        RedisBroker(ssl_context=ssl.create_default_context(), ssl_ca_certs="ca.pem")
    # rediss:// without hostname checks builds a TLS context (it used to build none).
    from otp.redis._broker import _client_factory

    made: dict[str, object] = {}

    def spy(url: str, **kwargs: object) -> None:
        made.update(kwargs, url=url)

    import coredis

    original = coredis.Redis.from_url
    coredis.Redis.from_url = spy  # type: ignore[method-assign, assignment]
    try:
        _client_factory(
            "rediss://host:6380/0",
            username=None,
            password=None,
            ssl=False,
            ssl_context=None,
            ssl_ca_certs=None,
            ssl_certfile=None,
            ssl_keyfile=None,
            ssl_check_hostname=False,
            sentinels=None,
            service=None,
            connect_timeout=1.0,
            client_options={},
        )("name")
    finally:
        coredis.Redis.from_url = original  # type: ignore[method-assign]
    context = made["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname is False
    with pytest.raises(ValueError, match="Sentinel needs"):
        RedisBroker("redis+sentinel:///")
