"""Topics: the grammar, its checks, wildcard patterns, and the table of subscriptions with
its route cache (the base of :class:`otp.InMemoryBroker`).

A topic is one or more dot-separated segments (``orders.eu.created``); a segment is any
non-empty run of characters other than ``.``, ``*``, ``#`` and whitespace. A subscription
*pattern* may also use two wildcards, each a whole segment: ``*`` matches exactly one
segment and ``#`` matches zero or more (``orders.*`` matches ``orders.created`` but not
``orders.eu.created``; ``orders.#`` matches ``orders``, ``orders.created`` and
``orders.eu.created``). As in MQTT, a pattern that *starts* with a wildcard does not match
a topic whose first segment starts with ``$`` (the system topics such as
:data:`DEAD_LETTERS` and request inboxes): subscribe to them by name.
"""

from __future__ import annotations

import re
from typing import Any, Final

from ._exceptions import InvalidTopic

__all__ = ["BROADCAST", "DEAD_LETTERS", "RouteTable", "topic_matches"]

#: The topic on which every dead letter is published as a :class:`otp.DeadLetter`.
DEAD_LETTERS: Final = "$otp.dead_letters"

#: The topic middleware sees on the envelope of a :meth:`otp.Broker.broadcast`.
BROADCAST: Final = "$otp.broadcast"

#: Request inboxes are topics under this prefix (``$otp.inbox.<id>``).
_INBOX: Final = "$otp.inbox."

#: The runtime's own topics; user code may subscribe to them but not publish on them.
_SYSTEM: Final = "$otp."

#: The route cache's key for the dead-letter route: not a str, so no user publish (whose
#: topic is checked on a cache miss) can hit it.
_DEAD_LETTERS_KEY: Final = object()

#: Concrete topics remembered by the route cache before it starts over.
_ROUTE_CACHE_SIZE: Final = 10_000


_SEGMENT = r"[^.*#\s]+"
_TOPIC_RE: Final = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_PATTERN_RE: Final = re.compile(rf"(?:{_SEGMENT}|\*|#)(?:\.(?:{_SEGMENT}|\*|#))*")


def _topic_problem(topic: str, *, pattern: bool) -> str:
    if any(not segment for segment in topic.split(".")):
        return "it has an empty segment (segments are separated by single dots)"
    if any(c.isspace() for c in topic):
        return "it contains whitespace"
    if not pattern:
        return "wildcards belong in subscription patterns; publish to a concrete topic"
    return "'*' and '#' must be whole segments (like 'orders.*' or 'orders.#')"


def _check_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid concrete topic; raise otherwise."""
    return _validate(topic, pattern=False)


def _check_publish_topic(topic: object) -> str:
    """Return ``topic`` if user code may publish on it: a valid concrete topic that is not
    one of the runtime's own ``$otp.`` topics (request inboxes excepted: replies go there)."""
    _check_topic(topic)
    assert isinstance(topic, str)
    if topic.startswith(_SYSTEM) and not topic.startswith(_INBOX):
        raise InvalidTopic(
            topic,
            "topics under '$otp.' belong to the runtime (the broker publishes dead letters "
            "itself); subscribe to them, and publish your own messages on a topic of yours",
        )
    return topic


def _check_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid subscription pattern; raise otherwise."""
    return _validate(pattern, pattern=True)


def _validate(value: object, *, pattern: bool) -> str:
    if not isinstance(value, str):
        example = "a topic pattern must be a str like 'orders.*'"
        if not pattern:
            example = "a topic must be a str like 'orders.created'"
        raise TypeError(f"{example}, not {value!r}")
    if (_PATTERN_RE if pattern else _TOPIC_RE).fullmatch(value) is None:
        if not value:
            raise InvalidTopic(value, "it is empty")
        raise InvalidTopic(value, _topic_problem(value, pattern=pattern))
    return value


def _is_wild(pattern: str) -> bool:
    return "*" in pattern or "#" in pattern


class _Pattern:
    """A compiled wildcard pattern."""

    __slots__ = ("guard_system", "has_hash", "segments")

    def __init__(self, pattern: str) -> None:
        self.segments = tuple(pattern.split("."))
        self.has_hash = "#" in self.segments
        self.guard_system = self.segments[0] in ("*", "#")

    def match(self, topic: list[str]) -> bool:
        p = self.segments
        if self.guard_system and topic[0].startswith("$"):
            return False
        if not self.has_hash:
            if len(p) != len(topic):
                return False
            return all(want == "*" or want == got for want, got in zip(p, topic))
        # '#' present: simulate the pattern as an NFA, one topic segment at a time
        # (linear in len(pattern) * len(topic), whatever the number of '#').
        n = len(p)
        states = self._closure([0])
        for segment in topic:
            following: list[int] = []
            for i in states:
                if i < n:
                    want = p[i]
                    if want == "#":
                        following.append(i)
                    elif want == "*" or want == segment:
                        following.append(i + 1)
            if not following:
                return False
            states = self._closure(following)
        return n in states

    def _closure(self, start: list[int]) -> set[int]:
        # Every state reachable by letting a '#' match zero segments.
        p = self.segments
        n = len(p)
        seen: set[int] = set()
        stack = list(start)
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            if i < n and p[i] == "#":
                stack.append(i + 1)
        return seen


def topic_matches(pattern: str, topic: str) -> bool:
    """``True`` if the concrete ``topic`` matches the subscription ``pattern``.

    ``*`` matches one segment, ``#`` zero or more; a pattern starting with a wildcard
    does not match a topic whose first segment starts with ``$``. Raises
    :class:`InvalidTopic` if either breaks the grammar.
    """
    _check_pattern(pattern)
    _check_topic(topic)
    return _Pattern(pattern).match(topic.split("."))


class RouteTable:
    """Who subscribes to what, and the route of each concrete topic: the base of
    :class:`otp.InMemoryBroker` (and so of every broker built on it).

    A subscriber is anything hashable (an actor's ref, a subscription, a request's inbox);
    the table does not look inside it. A route is the tuple of every subscriber of a
    pattern matching the topic, each once (an actor whose patterns overlap gets one copy),
    in subscription order, exact pattern first; routes are cached per topic and dropped
    when a subscription that could change them comes or goes.
    """

    def __init__(self) -> None:
        # pattern -> its subscribers (actor refs, Subscriptions, request waiters) in
        # subscription order; a dict used as an ordered set.
        self._subs: dict[str, dict[Any, None]] = {}
        # the wildcard patterns among them, compiled.
        self._wild: dict[str, _Pattern] = {}
        # concrete topic -> its subscribers (a snapshot, rebuilt after changes).
        self._routes: dict[str, tuple[Any, ...]] = {}

    def _add(self, pattern: str, subscriber: Any) -> None:
        subs = self._subs.get(pattern)
        if subs is None:
            subs = self._subs[pattern] = {}
            if _is_wild(pattern):
                self._wild[pattern] = _Pattern(pattern)
        subs[subscriber] = None
        self._invalidate(pattern)

    def _remove(self, pattern: str, subscriber: Any) -> None:
        subs = self._subs.get(pattern)
        if subs is None or subs.pop(subscriber, False) is False:
            return
        self._invalidate(pattern)
        if not subs:
            del self._subs[pattern]
            self._wild.pop(pattern, None)

    def _invalidate(self, pattern: str) -> None:
        if pattern in self._wild:
            self._routes.clear()
        else:
            self._routes.pop(pattern, None)
            if pattern == DEAD_LETTERS:
                self._routes.pop(_DEAD_LETTERS_KEY, None)  # type: ignore[call-overload]

    def _route(self, topic: Any, key: Any = None) -> tuple[Any, ...]:
        _check_topic(topic)
        # An ordered set: a subscriber met again under another pattern keeps its place.
        found: dict[Any, None] = {}
        exact = self._subs.get(topic)
        if exact:
            found.update(exact)
        if self._wild:
            segments = topic.split(".")
            for pattern, compiled in self._wild.items():
                if compiled.match(segments):
                    found.update(self._subs[pattern])
        route = tuple(found)
        routes = self._routes
        if len(routes) >= _ROUTE_CACHE_SIZE:
            routes.clear()
        routes[topic if key is None else key] = route
        return route

    def _lookup(self, topic: Any) -> tuple[Any, ...]:
        """The route of ``topic`` (cached); raises :class:`otp.InvalidTopic`."""
        try:
            return self._routes[topic]
        except (KeyError, TypeError):
            return self._route(topic)
