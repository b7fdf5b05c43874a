"""Every test runs on both backends through the project's own pytest plugin
(``otp.pytest_plugin``: the ``anyio_backend`` fixture over asyncio and trio, where a missing
trio fails loudly instead of skipping, and the ``otp_node`` fixture)."""

from __future__ import annotations

pytest_plugins = ["otp.pytest_plugin"]
