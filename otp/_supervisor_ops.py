"""What a supervisor is asked and what it answers: the supervisor operations.

Each operation is a small frozen value (:class:`WhichChildren`, :class:`StartChild`, ...),
sent by ``SupervisorRef`` and ``RemoteRef`` through ``call`` (:func:`supervisor_op`) and
served by the supervisor process (otp/_supervisor.py) with ``match``. Internal to otp.

On the wire (remote supervisor operations) an operation travels as ``_Call(op, arg)``,
its ``wire_name`` and its one field (if any): the form nodes have always exchanged, so
nodes of other versions keep understanding each other. The answers (:class:`ChildInfo`,
:class:`ChildCount`) and refusals (:class:`_Failed`) cross the wire too: their
``@message`` names and fields are a wire format, keep them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import attrs

from ._actor import ActorRef
from ._broker import message
from ._specs import Restart

if TYPE_CHECKING:
    from ._ref import Ref
    from ._specs import ChildSpec

__all__ = [
    "ChildCount",
    "ChildInfo",
    "CountChildren",
    "DeleteChild",
    "Operation",
    "RestartChild",
    "StartChild",
    "SupervisorOp",
    "TerminateChild",
    "WhichChildren",
    "supervisor_op",
]


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


# ---------------------------------------------------------------------------- operations


@attrs.frozen
class SupervisorOp:
    """Base of the supervisor operations (``isinstance`` tells them from user calls)."""

    #: Its name in the wire form ``_Call(op, arg)``; the arg is its one field, if any.
    wire_name: ClassVar[str]

    def wire(self) -> _Call:
        """This operation as it crosses the wire."""
        fields = attrs.astuple(self, recurse=False)
        return _Call(self.wire_name, fields[0] if fields else None)


@attrs.frozen
class WhichChildren(SupervisorOp):
    """``supervisor:which_children/1``: a :class:`ChildInfo` a child, in start order."""

    wire_name: ClassVar[str] = "which_children"


@attrs.frozen
class CountChildren(SupervisorOp):
    """``supervisor:count_children/1``: a :class:`ChildCount`."""

    wire_name: ClassVar[str] = "count_children"


@attrs.frozen
class StartChild(SupervisorOp):
    """``supervisor:start_child/2``: add ``spec`` and start it; its ref or ``None``."""

    wire_name: ClassVar[str] = "start_child"
    spec: ChildSpec


@attrs.frozen
class TerminateChild(SupervisorOp):
    """``supervisor:terminate_child/2``: stop a child by id or ref."""

    wire_name: ClassVar[str] = "terminate_child"
    target: str | Ref


@attrs.frozen
class RestartChild(SupervisorOp):
    """``supervisor:restart_child/2``: start a stopped child again from its spec."""

    wire_name: ClassVar[str] = "restart_child"
    child_id: str


@attrs.frozen
class DeleteChild(SupervisorOp):
    """``supervisor:delete_child/2``: remove a stopped child's spec."""

    wire_name: ClassVar[str] = "delete_child"
    child_id: str


#: Every supervisor operation (``match`` on it is exhaustive for mypy).
Operation = WhichChildren | CountChildren | StartChild | TerminateChild | RestartChild | DeleteChild

_BY_WIRE_NAME: dict[str, type[Operation]] = {cls.wire_name: cls for cls in get_args(Operation)}


# ---------------------------------------------------------------------------- the wire form


@message("$otp.supervisor.failed")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class _Failed:
    """The supervisor's refusal (``NotFound``, ``AlreadyStarted``, ...): raised at the caller."""

    error: BaseException


@message("$otp.supervisor.call")  # crosses the wire (remote supervisor operations)
@attrs.frozen
class _Call:
    """A supervisor operation on the wire: its ``wire_name`` and its one field (if any)."""

    op: str
    arg: Any = None

    def operation(self) -> Operation | None:
        """The operation this stands for; ``None`` for a name this node does not know."""
        cls = _BY_WIRE_NAME.get(self.op)
        if cls is None:
            return None
        return cls() if not attrs.fields(cls) else cls(self.arg)  # type: ignore[call-arg]


async def supervisor_op(ref: Any, operation: Operation, timeout: float | None = None) -> Any:
    """Run ``operation`` through ``ref.call`` (a local or a remote ref) and raise the
    supervisor's refusal (:class:`otp.NotFound`, ...) as the caller's error. A remote ref
    gets the wire form (see the module docstring)."""
    request = operation if isinstance(ref, ActorRef) else operation.wire()
    result = await ref.call(request, timeout=timeout)
    if isinstance(result, _Failed):
        raise result.error
    return result
