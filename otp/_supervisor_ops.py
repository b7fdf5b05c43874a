"""What a supervisor is asked and what it answers: the supervisor operations.

``SupervisorRef`` and ``RemoteRef`` send them through ``call`` (:func:`supervisor_op`); the
supervisor process (otp/_supervisor.py) serves them. The answers (:class:`ChildInfo`,
:class:`ChildCount`) and refusals (:class:`_Failed`) cross the wire for remote supervisors,
so their ``@message`` names and fields are a wire format: keep them.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from ._actor import ActorRef
from ._broker import message
from ._specs import Restart

__all__ = ["ChildCount", "ChildInfo", "supervisor_op"]


@message("$otp.child_info")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class ChildInfo:
    """One row of :meth:`SupervisorRef.which_children` (OTP's ``{Id, Child, Type, Modules}``).

    ``ref`` is ``None`` when the child is not running; ``restarting`` is ``True`` while a
    restart waits (a failed start being retried, or a backoff delay).
    """

    id: str
    ref: ActorRef | None
    kind: Literal["worker", "supervisor"]
    restart: Restart
    restarting: bool = False


@message("$otp.child_count")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class ChildCount:
    """:meth:`SupervisorRef.count_children` (OTP's ``count_children/1``)."""

    specs: int
    active: int
    supervisors: int
    workers: int


@message("$otp.supervisor.failed")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class _Failed:
    error: BaseException


@message("$otp.supervisor.call")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class _Call:
    op: str
    arg: Any = None


async def supervisor_op(ref: Any, op: str, arg: Any = None, timeout: float | None = None) -> Any:
    """Run a supervisor operation through ``ref.call`` (a local or a remote ref) and raise
    the supervisor's refusal (:class:`otp.NotFound`, ...) as the caller's error."""
    result = await ref.call(_Call(op, arg), timeout=timeout)
    if isinstance(result, _Failed):
        raise result.error
    return result
