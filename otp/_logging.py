"""Where the ``otp`` logger's records go: stderr by default (Python's last resort), rich on
request."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["install_rich_logging"]


def install_rich_logging(level: int = logging.INFO, *, console: Any = None) -> Any:
    """Send the ``otp`` logger's records (crash reports, restarts, give-ups) to a
    :class:`rich.logging.RichHandler` at ``level`` and return the handler.

    The ``otp`` logger has no handler of its own: until the application configures
    logging, Python's last-resort handler prints warnings and errors (crash reports,
    give-ups) on stderr. Call this once at start-up for readable, coloured crash reports;
    remove the returned handler from ``logging.getLogger("otp")`` to undo it.
    """
    from rich.logging import RichHandler  # rich stays at the edge: imported on use

    handler = RichHandler(console=console, show_path=False, rich_tracebacks=True)
    handler.setLevel(level)
    logger = logging.getLogger("otp")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler
