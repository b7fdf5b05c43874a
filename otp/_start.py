"""Starting an actor: :func:`start_actor`, behind ``node.spawn``, ``spawn_link`` and every
supervisor's children (OTP's ``gen_server:start_link``: the spawner waits for ``init``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import anyio

from ._actor import _OUTER_SCOPE, ActorRef, Shutdown, check_shutdown, check_start_timeout
from ._backends import Expired
from ._exceptions import ActorExited, Ignored, StartFailed
from ._gen_server import IGNORE, GenServer
from ._mailbox import Mailbox

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._node import Node

__all__ = ["start_actor"]


async def start_actor(
    node: Node,
    task_group: TaskGroup,
    cls: type[GenServer],
    args: tuple[Any, ...],
    *,
    name: str | None = None,
    mailbox: Mailbox | None = None,
    shutdown: Shutdown = 5.0,
    escalate: bool = False,
    ref_class: type[ActorRef] | None = None,
    child_id: str | None = None,
    where: str = "",
    link: ActorRef | None = None,
    start_timeout: float | None = None,
) -> ActorRef:
    """Create, register and start an actor in ``task_group``; return once ``init`` is done.

    With ``link``, the new actor is linked to that actor before ``init`` runs and treats it
    as its parent (``gen_server:start_link``); a failed start unlinks it without a signal.
    Raises ``TypeError``/``ValueError`` for bad arguments, ``ActorExited("noproc")`` if
    ``link`` is dead, :class:`otp.NameTaken`, and :class:`otp.StartFailed` (cause: the
    exception) if creating it or its ``init`` fails or does not return within
    ``start_timeout`` seconds (cause: a ``TimeoutError``; the actor is killed), and
    :class:`otp.Ignored` if ``init`` returned :data:`otp.IGNORE`; a
    :class:`otp.StartFailed` from deeper in a subtree passes through unchanged.
    """
    if not (isinstance(cls, type) and issubclass(cls, GenServer)):
        raise TypeError(f"expected a GenServer subclass, got {cls!r}")
    if mailbox is None:
        mailbox = _DEFAULT_MAILBOX
    elif not isinstance(mailbox, Mailbox):
        raise TypeError(f"mailbox must be an otp.Mailbox, not {mailbox!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"an actor name must be a non-empty str or None, not {name!r}")
    check_shutdown(shutdown)
    check_start_timeout(start_timeout)
    if link is not None:
        if not isinstance(link, ActorRef):
            raise TypeError(f"link= needs an otp.ActorRef of this process, not {link!r}")
        if not link._alive:
            raise ActorExited(link, "noproc")
    label = child_id or name or cls.__name__
    try:
        server = cls()
    except Exception as exc:
        raise StartFailed(label, exc, where) from exc
    ref = (ref_class or ActorRef)(node, server, name, mailbox, shutdown)
    ref._escalate = escalate
    ref._parent = where
    server.ref = ref
    server.node = node
    if name is not None:
        node._register(name, ref)
        if type(name) is not str:  # an otp.Global: claimed in the cluster before init
            await node._claim_global(name, ref)
    if link is not None:
        ref._link_parent = link
        if link._alive:
            ref._add_link(link)
        else:  # it died while a global name was claimed: link/1 to a dead actor
            ref._signal(link, "noproc", linked=True)
    started = node._backend.promise()
    try:
        if _OUTER_SCOPE:
            # create_task (anyio >= 4.14, as the handle's scope): start_soon would only add
            # a second coroutine check and a name lookup.
            handle = task_group.create_task(ref._run(args, started), name=f"otp actor {label}")
            # The actor's scope is the one anyio already runs the task in (TaskHandle's,
            # anyio >= 4.14), shielded now, before the task first runs: one cancel scope
            # (and its two sets) per actor instead of two. A kill that came before (the
            # actor was reachable by its name) is passed on.
            scope: anyio.CancelScope = handle._cancel_scope
            scope.shield = True
            if ref._scope is not None and ref._scope.cancel_called:
                scope.cancel()
            ref._scope = scope
        else:
            task_group.start_soon(ref._run_scoped, args, started, name=f"otp actor {label}")
    except BaseException:
        if name is not None:
            node._unregister(name, ref)
        if link is not None:
            ref._unlink(link)
        raise
    try:
        result = await started.wait(start_timeout)
    except BaseException as exc:
        # init failed, timed out, or the starter gave up (cancelled): never leave a
        # half-started actor behind, and return only once it is gone (its name is free).
        ref.kill()
        with anyio.CancelScope(shield=True):
            await ref._join_killed()
        if isinstance(exc, Expired):
            # OTP's start_link Timeout: {error, timeout}, the process killed.
            timeout = TimeoutError(f"init did not return within {start_timeout:g}s")
            raise StartFailed(label, timeout, where) from timeout
        if isinstance(exc, Exception) and not isinstance(exc, StartFailed):
            raise StartFailed(label, exc, where) from exc
        raise
    if result is IGNORE:
        with anyio.CancelScope(shield=True):
            await ref.join()  # it exits "normal" at once; its name is free on return
        raise Ignored(label, where)
    if ref._alive:  # (it may have exited since init returned)
        node._actor_started(ref, worker=not server._otp_owns_task_group)
    if node._listeners:
        node._emit("started", actor=ref)
    return ref


_DEFAULT_MAILBOX: Final = Mailbox()
