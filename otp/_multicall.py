"""``node.multi_call``: one request to the actor registered under a name on every node
(OTP's ``gen_server:multi_call/4``), with the replies and the failures per node."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ._exceptions import ActorExited

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["MultiCallResult", "multi_call"]


@attrs.frozen
class MultiCallResult:
    """What :meth:`otp.Node.multi_call` returns: ``replies`` (node name -> reply) from the
    nodes whose actor answered, and ``failures`` (node name -> the exception its call
    raised: :class:`otp.ActorExited` with ``"noproc"`` when nothing is registered there,
    ``"nodedown"`` for a node that is gone, :class:`otp.CallTimeout`, a crash, ...).

    OTP returns ``{Replies, BadNodes}``; so does unpacking this:
    ``replies, bad_nodes = await node.multi_call(...)``.
    """

    replies: Mapping[str, Any] = attrs.field(factory=dict)
    failures: Mapping[str, BaseException] = attrs.field(factory=dict)

    @property
    def bad_nodes(self) -> list[str]:
        """The nodes that gave no reply, sorted (OTP's ``BadNodes``)."""
        return sorted(self.failures)

    def __iter__(self) -> Any:
        return iter((self.replies, self.bad_nodes))


async def multi_call(
    node: Node,
    name: str,
    request: Any,
    *,
    timeout: float | None,
    nodes: Iterable[str] | None,
) -> MultiCallResult:
    """See :meth:`otp.Node.multi_call`."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"an actor name must be a non-empty str, not {name!r}")
    broker: Any = node.broker
    here: str = getattr(broker, "node_name", "") or node.name
    if nodes is None:
        lister = getattr(broker, "nodes", None)
        targets = sorted(await lister()) if lister is not None else [here]
    else:
        targets = sorted(set(nodes))
    replies: dict[str, Any] = {}
    failures: dict[str, BaseException] = {}

    async def ask(target: str) -> None:
        try:
            ref: Any
            if target == here:
                ref = node.whereis(name)
                if ref is None:
                    raise ActorExited(name, "noproc")
            else:
                remote = getattr(broker, "remote", None)
                if remote is None:
                    raise ActorExited(name, "nodedown")  # no such node in a one-node world
                ref = remote(name, target)
            replies[target] = await ref.call(request, timeout=timeout)
        except Exception as exc:  # every failure is that node's result
            failures[target] = exc

    async with anyio.create_task_group() as task_group:
        for target in targets:
            task_group.start_soon(ask, target)
    return MultiCallResult(
        {n: replies[n] for n in sorted(replies)}, {n: failures[n] for n in sorted(failures)}
    )
