"""Every test runs on both backends; trio is never dropped silently."""

from __future__ import annotations

import pytest


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "trio":
        import trio  # noqa: F401  -- a missing trio fails loudly instead of skipping

    return str(request.param)
