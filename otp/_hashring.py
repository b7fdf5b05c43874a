"""Consistent hashing: :class:`HashRing` routes keys to members so that the same key reaches
the same member while membership is stable, and a member leaving moves only its own keys.

Each member is placed on a 64-bit ring at ``replicas`` points (virtual nodes) hashed from
its *label*; a key goes to the member owning the first point at or after the key's hash
(wrapping around). Hashes are BLAKE2b, never Python's ``hash()``, so every process and
every run agrees on where a key goes. Used by ``node.groups.route`` (over a group's
members, across nodes) and by ``otp.worker_pool(..., dispatch=otp.CONSISTENT_HASH)``.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["HashRing", "key_bytes", "ring_of"]

T = TypeVar("T")

#: Virtual nodes per member: enough for a spread within about ±20% for a handful of members.
DEFAULT_REPLICAS = 128


def key_bytes(key: object) -> bytes:
    """The bytes a routing key hashes as: ``str`` (UTF-8), ``bytes`` and ``int`` keys are
    stable across processes; anything else raises ``TypeError`` (pass ``key=`` a function
    that returns one of those)."""
    if isinstance(key, str):
        return key.encode("utf-8", "surrogatepass")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return b"#" + str(key).encode()
    raise TypeError(
        f"a routing key must be a str, bytes or int, not {type(key).__name__} ({key!r}); "
        "derive one, e.g. key=lambda message: str(message.user_id)"
    )


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class HashRing(Generic[T]):
    """A consistent-hash ring over ``members`` (``ring.lookup(key)`` -> member).

    ``label(member)`` names a member on the ring (``str`` by default): members with the
    same label are the same member, and the label alone decides where its points sit, so
    two rings with the same labels route every key alike, whatever order they were built
    in. ``replicas`` is the number of points per member.

    Guarantees: :meth:`lookup` depends only on the key and the set of labels; removing a
    member moves only the keys it owned (each to the next member on the ring), and adding
    one moves only keys to it. Raises ``LookupError`` (:class:`otp.NotFound`) on an empty
    ring and ``TypeError`` for a key that is not ``str``/``bytes``/``int``.
    """

    __slots__ = ("_hashes", "_label", "_members", "_owners", "replicas")

    def __init__(
        self,
        members: Iterable[T] = (),
        *,
        replicas: int = DEFAULT_REPLICAS,
        label: Callable[[T], str] = str,
    ) -> None:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas must be an int >= 1, not {replicas!r}")
        self.replicas = replicas
        self._label = label
        self._members: dict[str, T] = {}
        # Sorted points and, in step, the label owning each.
        self._hashes: list[int] = []
        self._owners: list[str] = []
        self._place(members)

    def __repr__(self) -> str:
        return f"<HashRing members={len(self._members)} replicas={self.replicas}>"

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._members.values()))

    def __contains__(self, member: object) -> bool:
        try:
            return self._label(member) in self._members  # type: ignore[arg-type]
        except Exception:
            return False

    @property
    def members(self) -> list[T]:
        """The members, in the order they were added."""
        return list(self._members.values())

    def add(self, member: T) -> None:
        """Place ``member`` on the ring (replacing a member with the same label)."""
        self._place((member,))

    def _place(self, members: Iterable[T]) -> None:
        points = list(zip(self._hashes, self._owners))
        added = False
        for member in members:
            label = self._label(member)
            if not isinstance(label, str):
                raise TypeError(f"a ring label must be a str, not {label!r}")
            fresh = label not in self._members
            self._members[label] = member
            if fresh:
                added = True
                seed = label.encode("utf-8", "surrogatepass")
                points.extend(
                    (_point(seed + b"\x00" + replica.to_bytes(4, "big")), label)
                    for replica in range(self.replicas)
                )
        if added:
            # Ties (astronomically rare) are broken by label: the order of adds never matters.
            points.sort()
            self._hashes = [point for point, _ in points]
            self._owners = [owner for _, owner in points]

    def remove(self, member: T) -> None:
        """Take ``member`` off the ring; its keys move to the next members. Raises
        ``KeyError`` if it is not there."""
        label = self._label(member)
        if label not in self._members:
            raise KeyError(member)
        del self._members[label]
        keep = [i for i, owner in enumerate(self._owners) if owner != label]
        self._hashes = [self._hashes[i] for i in keep]
        self._owners = [self._owners[i] for i in keep]

    def discard(self, member: T) -> None:
        """:meth:`remove`, without an error when ``member`` is not there."""
        if member in self:
            self.remove(member)

    def lookup(self, key: object) -> T:
        """The member that owns ``key``."""
        return self.successors(key, 1)[0]

    def successors(self, key: object, n: int | None = None) -> list[T]:
        """Up to ``n`` distinct members (all, for ``None``) in ring order from ``key``'s
        owner on: the owner first, then where its keys would go if it left."""
        if not self._members:
            from ._exceptions import NotFound

            raise NotFound("a member on the hash ring", "an empty ring (no members)")
        limit = len(self._members) if n is None else min(n, len(self._members))
        start = bisect.bisect_left(self._hashes, _point(key_bytes(key)))
        found: list[T] = []
        seen: set[str] = set()
        total = len(self._hashes)
        for step in range(total):
            owner = self._owners[(start + step) % total]
            if owner not in seen:
                seen.add(owner)
                found.append(self._members[owner])
                if len(found) >= limit:
                    break
        return found


@functools.lru_cache(maxsize=256)
def ring_of(labels: tuple[str, ...], replicas: int = DEFAULT_REPLICAS) -> HashRing[str]:
    """A (cached) ring over string labels: rings are rebuilt only when membership changes."""
    return HashRing(labels, replicas=replicas)


def pick(labels: tuple[str, ...], key: object, usable: Callable[[str], Any]) -> Any:
    """The first usable member for ``key`` in ring order: ``usable(label)`` returns the
    member to use, or ``None`` to skip it (a worker being restarted: only its keys move, and
    only while it is away). ``None`` if no member is usable."""
    for label in ring_of(labels).successors(key):
        found = usable(label)
        if found is not None:
            return found
    return None
