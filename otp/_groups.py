"""Process groups (Erlang/OTP's ``pg``): ``node.groups``.

A group is a name; any actor can join any number of groups, and a group has members on
any number of nodes. ``join``/``leave`` take refs of this node's actors (as ``pg:join``
takes local pids); ``members`` lists the members on every node. A member leaves its groups
when it exits, and the members of a node that goes down vanish from every group.

Where the members live is the broker's business: the in-memory broker keeps them in this
node only (so a group is local); a broker with a cluster (``otp.redis.RedisBroker``)
implements :class:`GroupStore` and keeps them where every node can read them. This module
keeps the local side (monitors on members, the watchers of :meth:`Groups.monitor`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Protocol, cast, runtime_checkable

import anyio
import attrs

from ._envelopes import message
from ._hashring import ring_of

if TYPE_CHECKING:
    from ._actor import ActorRef, Down, MonitorRef
    from ._node import Node

__all__ = ["GroupChange", "GroupMonitor", "GroupStore", "Groups", "check_group"]

_GROUP_RE: Final = re.compile(r"[^\s*#$]+")


def check_group(group: object) -> str:
    """``group`` if it is a valid group name (a non-empty str without whitespace, ``*``,
    ``#`` or ``$``), else ``TypeError``/``ValueError``."""
    if not isinstance(group, str):
        raise TypeError(f"a group name must be a str, not {group!r}")
    if _GROUP_RE.fullmatch(group) is None or ".." in group or group[0] == "." or group[-1] == ".":
        raise ValueError(
            f"group name {group!r} is not valid: use a non-empty str without whitespace, "
            "'*', '#', '$' or empty dot-separated parts"
        )
    return group


@message("$otp.pg.change")
@attrs.frozen
class GroupChange:
    """A change of a group's membership, from :meth:`Groups.monitor`: the refs that
    ``joined`` and that ``left`` (by ``leave``, by exiting, or because their node went
    down). Erlang's ``{Ref, join | leave, Group, Pids}`` messages of ``pg:monitor/1``."""

    group: str
    joined: tuple[Any, ...] = ()
    left: tuple[Any, ...] = ()


@runtime_checkable
class GroupStore(Protocol):
    """What a broker with a cluster offers :class:`Groups` (private hooks).

    The local bookkeeping (monitors, validation) is done before these are called, and
    each gets refs of this node's live actors. ``_group_exited`` is synchronous (called
    when a member exits); the store finishes it in the background. ``_group_watch`` is
    entered by :meth:`Groups.monitor` and calls ``hint()`` whenever the group may have
    changed on another node (a join or leave there, a node going down).
    """

    async def _group_join(self, group: str, ref: ActorRef) -> None: ...

    async def _group_leave(self, group: str, ref: ActorRef) -> None: ...

    def _group_exited(self, group: str, ref: ActorRef) -> None: ...

    async def _group_members(self, group: str) -> list[Any]: ...

    async def _which_groups(self) -> list[str]: ...

    def _group_watch(
        self, group: str, hint: Callable[[], None]
    ) -> AbstractAsyncContextManager[None]: ...


class GroupMonitor:
    """The watch :meth:`Groups.monitor` yields: ``members`` (when it began, then kept up
    to date) and an async iterator of :class:`GroupChange`."""

    __slots__ = ("_changes", "_event", "group", "members")

    def __init__(self, group: str, members: list[Any]) -> None:
        #: The group watched.
        self.group = group
        #: The members as this watch last saw them.
        self.members = list(members)
        self._changes: list[GroupChange] = []
        self._event = anyio.Event()

    def __repr__(self) -> str:
        return f"<GroupMonitor {self.group!r} members={len(self.members)}>"

    def _push(self, change: GroupChange) -> None:
        self._changes.append(change)
        self._event.set()

    def __aiter__(self) -> GroupMonitor:
        return self

    async def __anext__(self) -> GroupChange:
        return await self.receive()

    async def receive(self) -> GroupChange:
        """The next change (waits for one)."""
        while not self._changes:
            self._event = anyio.Event()
            await self._event.wait()
        return self._changes.pop(0)


class Groups:
    """``node.groups``: OTP's ``pg`` process groups (see the module docs).

    ``await join(group, ref)``, ``await leave(group, ref)``, ``await members(group)``,
    ``local_members(group)``, ``await which_groups()``, ``await route(group, key)``
    (consistent hashing over the members) and ``monitor(group)`` (watch changes).
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        # group -> this node's members -> the monitor that removes them when they exit
        self._local: dict[str, dict[Any, MonitorRef]] = {}
        self._watches: dict[str, list[Callable[[], None]]] = {}

    def __repr__(self) -> str:
        return f"<otp.Groups of {self._node.name!r} local_groups={len(self._local)}>"

    @property
    def _store(self) -> GroupStore | None:
        broker = self._node.broker
        return broker if isinstance(broker, GroupStore) else None

    def _check_member(self, ref: Any, action: str) -> Any:
        from ._actor import ActorRef

        if not isinstance(ref, ActorRef):
            raise TypeError(
                f"groups.{action} takes refs of this node's actors (as pg:{action} takes local "
                f"pids), not {ref!r}; {action} on the node the actor runs on"
            )
        if ref._node is not self._node:
            raise ValueError(
                f"{ref!r} runs on another node than {self._node.name!r}; {action} there"
            )
        return ref

    async def join(self, group: str, refs: ActorRef | Iterable[ActorRef]) -> None:
        """Add this node's actor ``refs`` (one ref or several) to ``group``
        (``pg:join/2``). Joining twice is a no-op; an actor that has exited is not added.
        Members leave when they exit. Raises ``TypeError``/``ValueError`` for a bad group
        name or a ref of another node."""
        check_group(group)
        members = [self._check_member(r, "join") for r in _as_list(refs)]
        local = self._local.setdefault(group, {})
        store = self._store
        joined = []
        for ref in members:
            if ref in local or not ref.alive:
                continue
            local[ref] = ref._add_monitor(self._exited_callback(group))
            joined.append(ref)
            if store is not None:
                try:
                    await store._group_join(group, ref)
                except BaseException:
                    # Not joined after all (Redis out of reach, cancelled): undo it here.
                    ref._remove_monitor(local.pop(ref))
                    if not local:
                        self._local.pop(group, None)
                    raise
        if not local:
            del self._local[group]
        if joined:
            self._changed(group)

    async def leave(self, group: str, refs: ActorRef | Iterable[ActorRef]) -> bool:
        """Remove ``refs`` from ``group`` (``pg:leave/2``); ``False`` if none of them was
        a member."""
        check_group(group)
        members = [self._check_member(r, "leave") for r in _as_list(refs)]
        local = self._local.get(group, {})
        store = self._store
        left = False
        for ref in members:
            monitor = local.pop(ref, None)
            if monitor is None:
                continue
            left = True
            ref._remove_monitor(monitor)
            if store is not None:
                await store._group_leave(group, ref)
        if not local:
            self._local.pop(group, None)
        if left:
            self._changed(group)
        return left

    def _exited_callback(self, group: str) -> Callable[[Down], None]:
        def exited(down: Down) -> None:
            local = self._local.get(group)
            if local is None or local.pop(down.ref, None) is None:
                return
            if not local:
                del self._local[group]
            store = self._store
            if store is not None:
                # Groups hold local members only: the Down is from an ActorRef.
                store._group_exited(group, cast("ActorRef", down.ref))
            self._changed(group)

        return exited

    async def members(self, group: str) -> list[Any]:
        """The members of ``group`` on every node (``pg:get_members/1``): this node's
        :class:`otp.ActorRef`s and other nodes' :class:`otp.RemoteRef`s, ordered by node
        then join order. With the in-memory broker, this node's members only."""
        check_group(group)
        store = self._store
        if store is None:
            return self.local_members(group)
        return await store._group_members(group)

    def local_members(self, group: str) -> list[Any]:
        """This node's members of ``group``, in join order (``pg:get_local_members/1``)."""
        return [ref for ref in self._local.get(group, {}) if ref.alive]

    async def which_groups(self) -> list[str]:
        """The groups with members anywhere (``pg:which_groups/0``), sorted."""
        store = self._store
        if store is None:
            return sorted(self._local)
        return await store._which_groups()

    async def route(self, group: str, key: object) -> Any:
        """The member of ``group`` that owns ``key`` by consistent hashing (a str, bytes or
        int): the same key reaches the same member while membership is stable, and a
        member leaving moves only its keys. Raises :class:`otp.NotFound` for an empty
        group."""
        members = await self.members(group)
        if not members:
            from ._exceptions import NotFound

            raise NotFound(f"a member of group {group!r}", "any node")
        by_label = {self._label(member): member for member in members}
        # The ring of these labels is cached: it is rebuilt only when membership changes.
        return by_label[ring_of(tuple(by_label)).lookup(key)]

    def _label(self, ref: Any) -> str:
        # One incarnation of one actor, spelled the same on every node.
        node = getattr(ref, "node", None)
        if not isinstance(node, str):
            node = getattr(self._node.broker, "node_name", "") or self._node.name
        return f"{node}/{ref.id}"

    # ------------------------------------------------------------------ watching

    def monitor(self, group: str) -> Any:
        """Watch ``group`` for the body of an ``async with`` (``pg:monitor/1``):
        ``async with node.groups.monitor("workers") as watch:`` gives ``watch.members``
        now, then ``async for change in watch`` yields a :class:`GroupChange` per change
        (members that joined or left, on any node)."""
        check_group(group)
        return self._monitor(group)

    @asynccontextmanager
    async def _monitor(self, group: str) -> AsyncIterator[GroupMonitor]:
        watch = GroupMonitor(group, [])
        wake = anyio.Event()
        pending = [True]

        def hint() -> None:
            pending[0] = True
            wake.set()

        hints = self._watches.setdefault(group, [])
        hints.append(hint)
        store = self._store
        try:
            async with anyio.create_task_group() as task_group:
                watch.members = await self.members(group)
                pending[0] = False

                async def refresh() -> None:
                    nonlocal wake
                    while True:
                        await wake.wait()
                        wake = anyio.Event()
                        while pending[0]:
                            pending[0] = False
                            now = await self.members(group)
                            _diff(watch, now)

                task_group.start_soon(refresh)
                if store is not None:
                    async with store._group_watch(group, hint):
                        yield watch
                else:
                    yield watch
                task_group.cancel_scope.cancel()
        finally:
            hints.remove(hint)
            if not hints:
                self._watches.pop(group, None)

    def _changed(self, group: str) -> None:
        for hint in list(self._watches.get(group, ())):
            hint()


def _diff(watch: GroupMonitor, now: list[Any]) -> None:
    before = set(watch.members)
    after = set(now)
    joined = tuple(ref for ref in now if ref not in before)
    left = tuple(ref for ref in watch.members if ref not in after)
    watch.members = list(now)
    if joined or left:
        watch._push(GroupChange(watch.group, joined, left))


def _as_list(refs: Any) -> list[Any]:
    from ._actor import ActorRef

    if isinstance(refs, ActorRef) or getattr(refs, "_otp_remote_ref", False):
        return [refs]
    if isinstance(refs, (str, bytes)):
        raise TypeError(f"expected an actor ref or refs, not {refs!r}")
    return list(refs)
