"""Links and exit signals (OTP's ``link/1``, ``exit/2``, ``process_flag(trap_exit)``).

Links are symmetric and local; an exit travels to every linked actor as an exit signal,
which an actor that traps exits receives as an :class:`Exit` message and any other obeys
(``"normal"`` ignored, anything else ends it at once, without ``terminate``). The rules are
those of OTP 25; :class:`Linking` holds them for :class:`otp.ActorRef`, whose exit routine
calls :meth:`Linking._signal_links` once, synchronously.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs

from ._exceptions import ActorExited
from ._ref import Ref

if TYPE_CHECKING:
    import anyio

    from ._actor import ActorRef
    from ._gen_server import GenServer
    from ._node import Node

__all__ = ["RUNNING", "Exit", "Linking", "SelfExit", "is_normal_exit", "traps"]


class _Running:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<running>"


#: ``ActorRef._stop_reason`` while no stop is asked for (and the exit reason, until one is
#: known: a cancelled task then exits with its ``_kill_reason``).
RUNNING: Final = _Running()


def is_normal_exit(reason: object) -> bool:
    """``True`` for OTP's normal exit reasons: ``"normal"``, ``"shutdown"`` and
    ``("shutdown", term)``; everything else (exceptions included) is abnormal."""
    if isinstance(reason, str):
        return reason == "normal" or reason == "shutdown"
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"


class SelfExit(BaseException):
    """Raised by an untrapped exit signal an actor sends itself: it unwinds the callback
    at once (``exit(self(), Reason)``), skipping ``terminate``; caught in ``_run``."""


@attrs.frozen
class Exit:
    """An exit signal turned into a message, for an actor that traps exits
    (``self.trap_exit = True``; OTP's ``{'EXIT', From, Reason}``).

    It reaches ``handle_info`` when a linked actor exits (with any reason, ``"normal"``
    included) or when ``ref.exit(reason)`` is called on this actor. ``ref`` is the linked
    actor that exited or the actor that called ``exit`` (an :class:`otp.RemoteRef` when it
    runs on another node); ``None`` when the signal came from code outside any actor.
    ``reason`` is ``"noproc"`` for a link to an actor that was already dead.
    """

    ref: Ref | None
    reason: Any


def traps(server: GenServer) -> bool:
    try:
        return server.trap_exit is True
    except Exception:  # a user property that raises must not break an exit
        return False


class Linking:
    """The links and exit signals of an :class:`otp.ActorRef` (a mixin of it: the
    attributes below are its slots)."""

    if not TYPE_CHECKING:  # slotted at run time; mypy sees the attributes below
        __slots__ = ()

    _node: Node
    _server: GenServer
    _alive: bool
    _parent: str
    _scope: anyio.CancelScope | None
    _coro: Any
    _kill_reason: Any
    _stop_reason: Any
    _stopped_inside: bool
    # Symmetric: a is in b._links exactly when b is in a._links (both sides are updated
    # together, and an exit clears them before it signals).
    _links: set[Any] | None  # of ActorRef (Any: the mixin's self is not one to mypy)
    _link_parent: Any  # ActorRef | None

    if TYPE_CHECKING:

        def kill(self) -> None: ...
        def _deliver_control(self, message: Any) -> None: ...
        def _request_stop(self, reason: Any) -> None: ...

    def _link(self, other: ActorRef) -> None:
        """Link this actor and ``other`` both ways (``erlang:link/1``, called by this actor).

        Linking to a dead actor raises ``ActorExited(reason="noproc")`` unless this actor
        traps exits; then it gets ``Exit(other, "noproc")`` instead (as in OTP 25).
        """
        if not isinstance(other, Linking):
            raise TypeError(
                f"link needs an otp.ActorRef of this process, not {other!r}; links do not "
                "cross nodes: monitor a remote actor instead"
            )
        if other is self or not self._alive:
            return
        if not other._alive:
            if traps(self._server):
                self._deliver_control(Exit(other, "noproc"))
                return
            raise ActorExited(other, "noproc")
        self._add_link(other)

    def _add_link(self, other: ActorRef) -> None:
        if self._links is None:
            self._links = set()
        self._links.add(other)
        if other._links is None:
            other._links = set()
        other._links.add(self)  # type: ignore[arg-type]  # self: an ActorRef

    def _unlink(self, other: ActorRef) -> None:
        if self._links:
            self._links.discard(other)
        if isinstance(other, Linking) and other._links:
            other._links.discard(self)

    def _parent_actor(self) -> Any:  # ActorRef | None
        # gen_server's Parent: the start_link caller; an actor started without one is its
        # own parent (as gen_server:start makes it). Supervisors handle their children.
        if self._link_parent is not None:
            return self._link_parent
        return None if self._parent else self

    def _signal(self, sender: ActorRef | None, reason: Any, linked: bool) -> None:
        """Receive an exit signal (OTP's rules); synchronous, safe inside another's exit."""
        if not self._alive:
            return
        if not linked and isinstance(reason, str) and reason == "kill":
            self._die("killed")  # untrappable; a *linked* actor exiting with "kill" is not
            return
        if traps(self._server):
            if sender is not None and sender is self._parent_actor():
                # gen_server: an EXIT from the parent terminates it with that reason.
                if self._stop_reason is RUNNING:
                    self._request_stop(reason)
                    self._stopped_inside = False
            else:
                self._deliver_control(Exit(sender, reason))
            return
        if isinstance(reason, str) and reason == "normal":
            if sender is self and not linked:
                self._die(reason)  # exit(self(), normal) does end the caller
            return
        self._die(reason)

    def _die(self, reason: Any) -> None:
        """End at once with ``reason``, without ``terminate`` (an untrapped exit signal).

        From the actor's own task it raises :class:`SelfExit`, so the callback ends here
        and no reply or later line of it runs (cancellation would only land at its next
        ``await``)."""
        if self._alive and not (self._scope is not None and self._scope.cancel_called):
            self._kill_reason = reason
            self.kill()
            if self._coro.cr_running:
                raise SelfExit

    def _parent_exited(self, reason: Any) -> None:
        """The parent (a supervisor) exited with ``reason``: a trapping actor stops with it
        (``terminate`` runs), another dies with it at once, as OTP's linked children do."""
        if not self._alive:
            return
        if traps(self._server):
            if self._stop_reason is RUNNING:
                self._request_stop(reason)
                self._stopped_inside = False
        elif not (isinstance(reason, str) and reason == "normal"):
            self._die(reason)

    def _signal_links(self, reason: Any, failed_start: bool) -> None:
        """At its exit (once, from ``ActorRef._exit``): unlink every linked actor and send
        it the exit signal, except the parent of an actor whose start failed (it hears of
        it from the start's exception alone)."""
        links = self._links
        if links:
            self._links = None
            spared = self._link_parent if failed_start else None
            # While the node closes it stops every actor in order with terminate("shutdown"):
            # that "shutdown" does not also kill non-trapping links before their turn.
            orderly = self._node._closing and isinstance(reason, str) and reason == "shutdown"
            for other in links:
                if other._links:
                    other._links.discard(self)
                if other is not spared and not (orderly and not traps(other._server)):
                    other._signal(self, reason, linked=True)
