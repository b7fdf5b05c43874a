"""Names on Redis: the keys and channels of one prefix, and the globs of topic patterns.

Every key and channel of a system starts with its ``prefix`` (``P`` below):

* ``P:t:<topic>``: the pub/sub channel of a topic (a wildcard pattern is a PSUBSCRIBE
  glob matching a superset, filtered exactly on receipt);
* ``P:i:<node>``: the channel of every request inbox of a node (the topics
  ``$otp.inbox.<node>.<n>``; the frame says which), so a node needs no PSUBSCRIBE of its
  own and an ACL can name its channels exactly;
* ``P:n:<node>``: a node's control channel (calls, casts, replies, monitors, lookups);
* ``P:c``: the cluster channel (``hello`` and ``bye`` announcements);
* ``P:node:<node>``: a node's liveness key, holding its incarnation, with a TTL;
* ``P:nodes``: the sorted set of node names seen;
* ``P:s:<topic>``: the stream of a durable topic.
"""

from __future__ import annotations

import re
from typing import Final

from .._topics import DEAD_LETTERS, _check_pattern, _is_wild

__all__ = ["INBOX", "Names", "check_node_name", "escape", "glob_for"]

#: Request inboxes are topics under this prefix: ``$otp.inbox.<node>.<n>``.
INBOX: Final = "$otp.inbox."

_SEGMENT_RE: Final = re.compile(r"[^.*#\s]+")
_GLOB_SPECIAL: Final = re.compile(r"([\\*?\[\]])")


def escape(text: str) -> str:
    """``text`` with Redis glob metacharacters escaped."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def glob_for(pattern: str) -> str:
    """The Redis glob that matches (a superset of) the topics ``pattern`` matches.

    Literal segments are escaped; ``*`` and ``#`` become ``*``, and a ``#`` takes one
    neighbouring dot with it so it can match zero segments (``orders.#`` → ``orders*``,
    ``a.#.b`` → ``a*.b``). Redis' ``*`` also crosses dots, so receivers filter exactly.
    """
    _check_pattern(pattern)
    parts: list[str] = []
    at_start = True  # no dot before the next segment
    for segment in pattern.split("."):
        if segment == "#":
            # Redis' '*' absorbs the dot before it (or, at the start, the one after it),
            # so '#' can match zero segments.
            parts.append("*")
            continue
        if not at_start:
            parts.append(".")
        parts.append("*" if segment == "*" else escape(segment))
        at_start = False
    return re.sub(r"\*{2,}", "*", "".join(parts))


def check_node_name(name: object) -> str:
    """Return ``name`` if it can name a node on Redis (one topic segment); raise
    ``ValueError`` otherwise."""
    if not isinstance(name, str) or _SEGMENT_RE.fullmatch(name) is None:
        raise ValueError(
            f"node name {name!r} cannot be used on Redis: it must be non-empty, without "
            "whitespace, '.', '*' or '#'"
        )
    return name


class Names:
    """The keys and channels of one ``prefix`` (see the module docs)."""

    __slots__ = ("cluster", "nodes", "prefix", "topic_prefix")

    def __init__(self, prefix: str) -> None:
        if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"prefix must be a non-empty str without whitespace, not {prefix!r}")
        self.prefix = prefix
        #: The sorted set of node names seen.
        self.nodes = f"{prefix}:nodes".encode()
        #: The cluster channel: every node listens to it.
        self.cluster = f"{prefix}:c".encode()
        #: What every topic channel starts with.
        self.topic_prefix = f"{prefix}:t:".encode()

    def topic(self, topic: str) -> bytes:
        """The pub/sub channel of a concrete topic (an inbox's is its node's)."""
        if topic.startswith(INBOX):
            return self.inbox(topic[len(INBOX) :].split(".", 1)[0])
        return f"{self.prefix}:t:{topic}".encode()

    def inbox(self, node: str) -> bytes:
        """The channel of a node's request inboxes."""
        return f"{self.prefix}:i:{node}".encode()

    def control(self, node: str) -> bytes:
        """A node's control channel."""
        return f"{self.prefix}:n:{node}".encode()

    def node_key(self, node: str) -> bytes:
        """A node's liveness key."""
        return f"{self.prefix}:node:{node}".encode()

    def stream(self, topic: str) -> bytes:
        """The stream of a durable topic."""
        return f"{self.prefix}:s:{topic}".encode()

    def redis_target(self, pattern: str) -> tuple[bool, bytes] | None:
        """``(is a glob, name)`` to subscribe on Redis for a local subscription pattern,
        or ``None`` for node-local topics (dead letters, inboxes)."""
        if pattern == DEAD_LETTERS or pattern.startswith(INBOX):
            return None
        if _is_wild(pattern):
            return True, f"{escape(self.prefix)}:t:{glob_for(pattern)}".encode()
        return False, self.topic(pattern)
