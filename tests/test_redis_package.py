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
