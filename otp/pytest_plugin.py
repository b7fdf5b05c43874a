"""pytest fixtures for testing anyotp code on both backends.

Enable them in your top-level ``conftest.py``::

    pytest_plugins = ["otp.pytest_plugin"]

and mark async tests with ``pytestmark = pytest.mark.anyio`` (anyio's pytest plugin, which
comes with anyio, runs them). Then every such test runs twice, on asyncio and on trio, and
can take a running node::

    async def test_counter(otp_node: otp.Node) -> None:
        ref = await otp_node.spawn(Counter, 1)
        assert await ref.call(Get()) == 1

Trio must be installed (``pip install anyotp[trio]``); a missing trio fails loudly.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import pytest

from ._node import Node

__all__ = ["anyio_backend", "otp_node"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``anyio`` test on asyncio and on trio."""
    if request.param == "trio" and importlib.util.find_spec("trio") is None:
        # Fail loudly rather than skip: a suite that silently drops trio proves nothing.
        pytest.fail("the trio backend needs trio: pip install 'anyotp[trio]'")
    return str(request.param)


@pytest.fixture
async def otp_node(anyio_backend: str) -> AsyncIterator[Node]:
    """A running :class:`otp.Node` for the test, shut down (every actor stopped) after it."""
    async with Node() as node:
        yield node
