"""The one public ref protocol, :class:`Ref`: what :class:`otp.ActorRef` and
:class:`otp.RemoteRef` (and so supervisors' and pools' refs) have in common."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, overload, runtime_checkable

from ._call import Call, R

if TYPE_CHECKING:
    from ._requests import RequestId

__all__ = ["Ref"]


@runtime_checkable
class Ref(Protocol):
    """Any actor handle, local or remote (Erlang's pid, wherever it lives).

    Annotate with ``otp.Ref`` where either kind may arrive: ``otp.Down.ref``,
    ``otp.MonitorRef.target``, ``GenServer.monitor``, ``node.locate``. Both
    :class:`otp.ActorRef` and :class:`otp.RemoteRef` satisfy it (``isinstance`` works too);
    what only a local actor offers (``priority=``, ``kill``, ``join``, ``statistics``)
    needs the concrete type.
    """

    @property
    def name(self) -> str | None:
        """The registered name, or ``None``."""
        ...

    @property
    def alive(self) -> bool:
        """``False`` once the actor is known to have exited."""
        ...

    @property
    def exit_reason(self) -> Any:
        """The exit reason once known, else ``None``."""
        ...

    @overload
    async def call(self, request: Call[R], timeout: float | None = 5.0) -> R: ...
    @overload
    async def call(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object], timeout: float | None = 5.0
    ) -> object: ...
    @overload
    async def call(self, request: Any, timeout: float | None = 5.0) -> Any: ...

    async def cast(self, message: Any) -> None:
        """Send ``message`` to ``handle_cast`` without waiting for it to be handled."""
        ...

    async def send(self, message: Any) -> None:
        """Send ``message`` to ``handle_info`` (Erlang's ``!``)."""
        ...

    def cast_nowait(self, message: Any) -> None:
        """:meth:`cast` from synchronous code."""
        ...

    def send_nowait(self, message: Any) -> None:
        """:meth:`send` from synchronous code."""
        ...

    async def stop(self, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the actor and wait until it has exited."""
        ...

    @overload
    def send_request(self, request: Call[R]) -> RequestId[R]: ...
    @overload
    def send_request(  # type: ignore[overload-cannot-match]  # see otp/_call.py
        self, request: Call[object]
    ) -> RequestId[object]: ...
    @overload
    def send_request(self, request: Any) -> RequestId[Any]: ...

    def send_request(self, request: Any) -> RequestId[Any]:
        """Send ``request`` to ``handle_call`` without waiting (``gen_server:send_request``)."""
        ...

    def exit(self, reason: Any) -> None:
        """Send the actor an exit signal (``erlang:exit/2``); ``"kill"`` cannot be trapped."""
        ...
