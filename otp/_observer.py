"""Rendering of snapshots with rich: the only place in ``otp`` that imports rich."""

from __future__ import annotations

from typing import Any


def render_snapshot(snapshot: Any) -> Any:
    """Return a rich renderable for an ``ActorSnapshot``, ``SupervisorSnapshot`` or
    ``TreeSnapshot``."""
    from rich.pretty import Pretty

    return Pretty(snapshot)
