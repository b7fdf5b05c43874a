"""What an actor shows of its state: ``format_status`` applied safely (``get_state``,
snapshots, crash reports) and the brief reprs of a crash report (OTP's
``format_status/1`` and the ``crash_report`` of ``proc_lib``)."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from ._gen_server import GenServer
from ._mailbox import Wrapped

__all__ = ["brief", "describe_item", "state_of", "status_of"]

logger = logging.getLogger("otp")


def state_of(server: GenServer) -> dict[str, Any]:
    return {k: v for k, v in vars(server).items() if k not in ("ref", "node")}


def status_of(server: GenServer) -> Any:
    """The state as ``format_status`` shows it (crash reports, get_state, snapshots).

    Never raises: a failing ``format_status`` is replaced by a note saying so (and never
    by the raw state, which it was meant to hide), and a warning is logged.
    """
    try:
        state = state_of(server)
        if type(server).format_status is GenServer.format_status:
            return state
        shown = server.format_status(state)
    except Exception as exc:
        logger.warning(
            "format_status of %s raised %s: %s; its state is not shown",
            type(server).__qualname__,
            type(exc).__name__,
            exc,
            extra={"otp_event": "format_status_failed", "otp_reason": exc},
        )
        return f"<format_status raised {type(exc).__name__}: {brief(exc, 200)}>"
    if inspect.isawaitable(shown):
        close = getattr(shown, "close", None)
        if close is not None:
            close()  # never awaited: no "coroutine was never awaited" warning
        return "<format_status must be a plain def, not async def: state not shown>"
    return shown


def brief(value: Any, limit: int = 2000) -> str:
    """A repr for a log line: cut at ``limit`` characters, never raising."""
    try:
        text = repr(value) if not isinstance(value, str) else value
    except Exception as exc:
        text = f"<unrepresentable {type(value).__qualname__}: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_item(item: Any) -> str:
    # item: ActorRef._current (None, an Wrapped or _IN_HAND).
    if item is None:
        return "no message"
    if type(item) is not Wrapped:
        return "a cast"
    return f"{('call', 'cast', 'info', 'system', 'info')[item.kind]} {item.message!r}"
