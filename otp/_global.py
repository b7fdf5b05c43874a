"""Cluster-wide unique names: :class:`Global` (Erlang's ``{global, Name}``).

A ``Global("svc")`` is accepted wherever an actor name is (``node.spawn``, ``otp.worker``,
``otp.supervisor``). It is a ``str`` (equal to ``"svc"``), so the actor is also registered
under ``"svc"`` in its own node's registry and ``node.whereis("svc")`` finds it there.

On top of that, the node asks its broker to *claim* the name for the whole cluster before
the actor's ``init`` runs, and to release it when the actor exits:

* a broker that reaches other nodes (``otp.redis.RedisBroker``) claims it atomically in
  Redis; a name held anywhere in the cluster makes the start raise :class:`otp.NameTaken`;
* the in-memory broker has no cluster: a ``Global`` name is a node-unique name.

The broker side is the optional pair of hooks in :class:`GlobalRegistry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, final, runtime_checkable

if TYPE_CHECKING:
    from ._actor import ActorRef

__all__ = ["Global", "GlobalRegistry", "is_global"]


@final
class Global(str):
    """A name unique in the whole cluster: ``name=otp.Global("svc")``.

    Erlang's ``{global, Name}`` (``global:register_name/2``). Starting a second actor under
    the same global name anywhere in the cluster raises :class:`otp.NameTaken`; the name
    is freed when its actor exits or its node goes down. Find it from any node with
    ``await node.locate("svc")``; call it with ``await node.call(otp.Global("svc"), ...)``
    or by its plain name. Raises ``TypeError`` for an empty or non-str name.
    """

    __slots__ = ()

    def __new__(cls, name: str) -> Global:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a global name must be a non-empty str, not {name!r}")
        return super().__new__(cls, name)

    def __repr__(self) -> str:
        return f"otp.Global({str.__repr__(str(self))})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Global, (str(self),))


def is_global(name: object) -> bool:
    """``True`` for a :class:`Global` name."""
    return type(name) is Global


@runtime_checkable
class GlobalRegistry(Protocol):
    """What a broker with a cluster offers the node for :class:`Global` names (an
    internal interface of otp's own, between the node and brokers; not for users).

    ``_claim_global`` registers ``name`` for ``ref`` cluster-wide or raises
    :class:`otp.NameTaken` (holder: the ref that has it); ``_release_global`` frees it
    (synchronous: called from an actor's exit; the broker finishes it in the background
    and never frees a name another incarnation holds); ``_locate_global`` finds the
    holder (a local or remote ref) or returns ``None``.
    """

    async def _claim_global(self, name: str, ref: ActorRef) -> None: ...

    def _release_global(self, name: str, ref: ActorRef) -> None: ...

    async def _locate_global(self, name: str, timeout: float) -> Any: ...
