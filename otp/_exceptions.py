"""The exception family of anyotp, rooted at :class:`OTPError`.

Every exception subclasses the builtin whose meaning it shares, builds its message in
``__init__`` and names the actor involved and what to do about it.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = [
    "RequestTimeout",
    "RemoteError",
    "Restarting",
    "NoSubscriber",
    "Ignored",
    "InvalidTopic",
    "CodecError",
    "NodeFenced",
    "NodeNameTaken",
    "RedisUnavailable",
    "ActorExited",
    "AlreadyPresent",
    "AlreadyStarted",
    "CallTimeout",
    "CalledSelf",
    "ChildRunning",
    "MailboxFull",
    "MaxChildren",
    "NameTaken",
    "NotFound",
    "OTPError",
    "StartFailed",
    "SupervisorGaveUp",
    "WrongThread",
]


def describe(actor: object) -> str:
    """Return a short human name for an actor or ref: its registered name, else its repr."""
    name = getattr(actor, "name", None)
    if name is not None:
        return repr(name)
    return repr(actor)


class OTPError(Exception):
    """Base class of every error raised by anyotp."""


class ActorExited(OTPError, LookupError):
    """The target actor is dead, or died while the caller was waiting on it.

    Raised at once by :meth:`ActorRef.call` (never a hang). ``reason`` is the actor's exit
    reason; when the actor crashed, the exception that crashed it is also ``__cause__``.
    The message's advice fits the cause: a crash is a bug to fix, a stopped node restarts
    nothing, a supervisor's restart gives a new ref to look up. ``supervised`` (``True``,
    ``False`` or unknown ``None``) and ``node_exited`` refine it.
    Erlang's counterpart is the caller exiting with ``{Reason, {gen_server, call, ...}}``.
    """

    def __init__(
        self,
        actor: object,
        reason: object,
        *,
        supervised: bool | None = None,
        node_exited: bool = False,
    ) -> None:
        self.actor = actor
        self.reason = reason
        self.supervised = supervised
        self.node_exited = node_exited
        if isinstance(reason, BaseException):
            why = f"crashed with {type(reason).__name__}: {reason}"
        else:
            why = f"exited with reason {reason!r}"
        super().__init__(
            f"actor {describe(actor)} {why}; {_exit_hint(reason, supervised, node_exited)}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_actor_exited, (self.actor, self.reason, self.supervised, self.node_exited))


def _rebuild_actor_exited(
    actor: object, reason: object, supervised: bool | None, node_exited: bool
) -> ActorExited:
    return ActorExited(actor, reason, supervised=supervised, node_exited=node_exited)


def _exit_hint(reason: object, supervised: bool | None, node_exited: bool) -> str:
    """The way out that fits an exit reason (see :class:`ActorExited`)."""
    if node_exited:
        return (
            "its node is shutting down (its `async with otp.Node()` block was left), so nothing "
            "will restart it: make calls while the node runs"
        )
    again = "look it up again (node.whereis) before retrying"
    if supervised:
        restarted = f"its supervisor restarts it as a new incarnation with a new ref: {again}"
    elif supervised is None:
        restarted = f"if a supervisor restarts it, the new incarnation has a new ref: {again}"
    else:
        restarted = (
            "it has no supervisor (started with node.spawn), so nothing restarts it: start it "
            "under a supervisor (node.start(otp.worker(...))) or spawn it again"
        )
    if isinstance(reason, BaseException):
        if type(reason).__name__ == "SupervisorGaveUp":
            return (
                "it is a supervisor that gave up after too many restarts of its children; "
                "fix the crashing child (see the crash reports) or raise max_restarts/within"
            )
        return (
            "an exception escaped one of its callbacks, which is a bug to fix (see __cause__ "
            f"and the crash report on the 'otp' logger); {restarted}"
        )
    if reason == "normal":
        return (
            "it stopped normally, and a normal exit is restarted only for a PERMANENT child: "
            f"{again}, or start it again"
        )
    if reason == "shutdown" or (isinstance(reason, tuple) and reason[:1] == ("shutdown",)):
        return (
            "it was shut down (by its supervisor, as part of a restart or a give-up, or by its "
            f"node); {again}"
        )
    if reason == "killed":
        return (
            f"it was killed (kill(), BRUTAL_KILL or a shutdown that ran out of time); {restarted}"
        )
    if reason == "noproc":
        return f"no such actor is running (it exited before the message arrived); {again}"
    if reason == "nodedown":
        return (
            "its node is down (it stopped heartbeating or left); retry once it is back or "
            "find another with broker.whereis"
        )
    if reason == "noconnection":
        return "this node has lost its broker connection; retry once it has reconnected"
    return restarted


class CallTimeout(OTPError, TimeoutError):
    """A call got no reply within its timeout (also a :class:`TimeoutError`).

    The server keeps running and a late reply is dropped. Pass a larger ``timeout=`` or make
    the server reply sooner (return ``otp.NOREPLY`` and reply later from another task).
    """

    def __init__(self, actor: object, timeout: float, request: object = None) -> None:
        self.actor = actor
        self.timeout = timeout
        self.request = request
        super().__init__(
            f"call to actor {describe(actor)} got no reply within {timeout:g}s "
            f"(request {request!r}); the actor is still running: raise timeout= or make its "
            "handle_call answer sooner"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.actor, self.timeout, self.request))


class CalledSelf(OTPError, RuntimeError):
    """An actor called itself, which would deadlock (Erlang exits with ``calling_self``)."""

    def __init__(self, actor: object) -> None:
        self.actor = actor
        super().__init__(
            f"actor {describe(actor)} called itself, which would deadlock; call the handler "
            "method directly or cast the message to yourself instead"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.actor,))


class MailboxFull(OTPError, OverflowError):
    """The target's mailbox is full and its overflow policy refused the message."""

    def __init__(self, actor: object, capacity: int | None, policy: object = None) -> None:
        self.actor = actor
        self.capacity = capacity
        self.policy = policy
        size = f"{capacity} message{'s' if capacity != 1 else ''}"
        if getattr(policy, "name", None) == "BLOCK":
            advice = (
                "cast_nowait/send_nowait cannot wait for room: use await ref.cast(...) or "
                "await ref.send(...), which wait, or raise its capacity"
            )
        else:
            how = f" by overflow policy {policy}" if policy is not None else ""
            advice = (
                f"the message was refused{how}: retry later, raise its capacity or choose "
                "Overflow.BLOCK"
            )
        super().__init__(f"mailbox of actor {describe(actor)} is full ({size}); {advice}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.actor, self.capacity, self.policy))


class NameTaken(OTPError, ValueError):
    """A name is already registered to a live actor on this node."""

    def __init__(self, name: str, holder: object = None) -> None:
        self.name = name
        self.holder = holder
        super().__init__(
            f"name {name!r} is already registered to {holder!r}; pick another name or stop "
            "that actor first (names free up when their actor exits)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.holder))


class NotFound(OTPError, LookupError):
    """No child, actor or name of that identity exists where it was looked up."""

    def __init__(self, what: str, where: str = "") -> None:
        self.what = what
        self.where = where
        at = f" in {where}" if where else ""
        super().__init__(f"{what} not found{at}; check the id (which_children lists them)")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.where))


class AlreadyPresent(OTPError, ValueError):
    """A child spec with that id already exists, stopped (OTP's ``already_present``)."""

    def __init__(self, child_id: str, supervisor: str) -> None:
        self.child_id = child_id
        self.supervisor = supervisor
        super().__init__(
            f"child {child_id!r} is already present (stopped) in supervisor {supervisor!r}; "
            "use restart_child to start it or delete_child to remove it first"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.child_id, self.supervisor))


class AlreadyStarted(OTPError, ValueError):
    """A child with that id is already running (OTP's ``already_started``)."""

    def __init__(self, child_id: str, supervisor: str, ref: object = None) -> None:
        self.child_id = child_id
        self.supervisor = supervisor
        self.ref = ref
        super().__init__(
            f"child {child_id!r} is already running in supervisor {supervisor!r} as {ref!r}; "
            "terminate_child it first or pick another id"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.child_id, self.supervisor, self.ref))


class ChildRunning(OTPError, RuntimeError):
    """The child must be stopped first (OTP's ``running`` error)."""

    def __init__(self, child_id: str, supervisor: str) -> None:
        self.child_id = child_id
        self.supervisor = supervisor
        super().__init__(
            f"child {child_id!r} of supervisor {supervisor!r} is running; terminate_child it first"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.child_id, self.supervisor))


class Ignored(OTPError):
    """An actor's ``init`` returned :data:`otp.IGNORE`, so nothing was started.

    Raised by ``node.spawn``/``node.start(worker)``/``spawn_link``, whose result must be a
    running actor (``gen_server:start`` returns ``ignore``); a supervisor instead keeps the
    child's spec without a running child and ``start_child`` returns ``None``.
    """

    def __init__(self, actor: str, where: str = "") -> None:
        self.actor = actor
        self.where = where
        at = f" (child of supervisor {where!r})" if where else ""
        super().__init__(
            f"actor {actor!r}{at} returned otp.IGNORE from init, so nothing was started; "
            "catch otp.Ignored where starting nothing is expected"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.actor, self.where))


class Restarting(OTPError, RuntimeError):
    """The child is between failed restart attempts: its supervisor retries on its own
    (OTP's ``{error, restarting}`` from ``restart_child``/``delete_child``)."""

    def __init__(self, child_id: str, supervisor: str) -> None:
        self.child_id = child_id
        self.supervisor = supervisor
        super().__init__(
            f"child {child_id!r} of supervisor {supervisor!r} is being restarted (a restart "
            "is pending: a backoff delay or a retry after a failed start); wait for it, or "
            "terminate_child it to stop the retries"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.child_id, self.supervisor))


class StartFailed(OTPError, RuntimeError):
    """A child's ``init`` raised; the children already started were stopped again.

    The original exception is ``__cause__``. ``child`` names the child that failed.
    """

    def __init__(self, child: str, reason: object = None, where: str = "") -> None:
        self.child = child
        self.reason = reason
        self.where = where
        at = f"child {child!r} of supervisor {where!r}" if where else f"actor {child!r}"
        if isinstance(reason, BaseException):
            why = f"{type(reason).__name__}: {reason}"
        else:
            why = repr(reason)
        left = (
            "; nothing of that start is left running (siblings started with it were stopped)"
            if where
            else ""
        )
        super().__init__(
            f"{at} failed to start ({why}){left}: see __cause__, fix that and start it again"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.child, self.reason, self.where))


class SupervisorGaveUp(OTPError, RuntimeError):
    """A supervisor hit its restart intensity and stopped all of its children.

    ``supervisor`` is its name, ``last`` the exit reason of the last crash that counted.
    OTP's counterpart is the supervisor exiting with ``shutdown`` after
    ``reached_max_restart_intensity``.
    """

    def __init__(
        self, supervisor: str, max_restarts: int, within: float, last: object = None
    ) -> None:
        self.supervisor = supervisor
        self.max_restarts = max_restarts
        self.within = within
        self.last = last
        why = f"{type(last).__name__}: {last}" if isinstance(last, BaseException) else repr(last)
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {max_restarts} restart(s) within "
            f"{within:g}s (last exit: {why}); fix the crashing child or raise max_restarts/within"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.supervisor, self.max_restarts, self.within, self.last))


class MaxChildren(OTPError, OverflowError):
    """A dynamic supervisor already runs ``max_children`` children (Elixir's
    ``{:error, :max_children}``)."""

    def __init__(self, supervisor: str, limit: int) -> None:
        self.supervisor = supervisor
        self.limit = limit
        super().__init__(
            f"dynamic supervisor {supervisor!r} already runs its max_children={limit} "
            "children; stop one first or raise max_children"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.supervisor, self.limit))


class InvalidTopic(OTPError, ValueError):
    """A topic or subscription pattern breaks the topic grammar (see :mod:`otp._topics`)."""

    def __init__(self, topic: str, problem: str) -> None:
        self.topic = topic
        self.problem = problem
        super().__init__(
            f"invalid topic {topic!r}: {problem}; topics are dot-separated segments like "
            "'orders.created', and subscription patterns may use '*' (one segment) and '#' "
            "(zero or more) as whole segments"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.topic, self.problem))


class NoSubscriber(OTPError, LookupError):
    """A :meth:`Broker.request` reached no subscriber, so no reply can come (NATS's
    "no responders"). Raised at once instead of waiting for the timeout."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(
            f"request on topic {topic!r} reached no subscriber (nobody subscribes to it, "
            "middleware dropped it, or every subscriber's overflow policy refused it); "
            "start the responder first or check the topic"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.topic,))


class RequestTimeout(OTPError, TimeoutError):
    """A :meth:`Broker.request` got no reply within its timeout (also a ``TimeoutError``).

    A reply that arrives later becomes a dead letter.
    """

    def __init__(self, topic: str, timeout: float) -> None:
        self.topic = topic
        self.timeout = timeout
        super().__init__(
            f"request on topic {topic!r} got no reply within {timeout:g}s; make sure the "
            "subscriber answers with request.reply(value) (or broker.reply(envelope, value)) "
            "or raise timeout="
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.topic, self.timeout))


class CodecError(OTPError, ValueError):
    """A value could not be encoded, or bytes could not be decoded.

    ``reason`` is ``"unencodable"`` (encoding: the value's type cannot cross the wire),
    ``"unknown_type"`` (no class is registered under the wire name), ``"malformed"`` (the
    bytes or their structure are wrong), ``"oversized"`` (bigger than ``max_size``) or
    ``"unconfirmed"`` (a Redis node announcement that Redis itself contradicts).
    A broker turns decoding errors into dead letters; it never crashes on them.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        hint = {
            "unencodable": "give message classes a wire name with @otp.message('...') and "
            "use plain values (str, int, float, bool, None, lists, dicts, tuples, sets, bytes)",
            "unknown_type": "register the class with the same @otp.message name on this node "
            "(import the module that defines it)",
            "malformed": "the sender is not speaking this codec (same codec on every node?)",
            "oversized": "raise max_size on every node's codec or send smaller messages",
            "unconfirmed": "restrict who may PUBLISH on the prefix's channels (Redis ACLs)",
        }.get(reason, "")
        super().__init__(f"{reason}: {detail}" + (f"; {hint}" if hint else ""))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.detail))


class RemoteError(OTPError, RuntimeError):
    """An exception raised on another node, as far as the wire can carry it: the exception
    type's qualified name and its text (never the object itself: nothing is unpickled).

    It is the exit reason of a remote actor that crashed, so ``ActorExited.reason``,
    ``Down.reason`` and ``__cause__`` hold one; :func:`otp.is_normal_exit` says ``False``.
    """

    def __init__(self, type_name: str, text: str, node: str = "") -> None:
        self.type_name = type_name
        self.text = text
        self.node = node
        where = f" on node {node!r}" if node else ""
        super().__init__(f"{type_name}: {text}{where}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.text, self.node))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteError):
            return NotImplemented
        return (self.type_name, self.text, self.node) == (other.type_name, other.text, other.node)

    def __hash__(self) -> int:
        return hash((self.type_name, self.text, self.node))


class RedisUnavailable(OTPError, ConnectionError):
    """A node could not reach Redis when it started (wrong URL, server down, bad password
    or TLS settings); the cause is ``__cause__``. The URL in the message has its password
    removed."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(
            f"cannot use Redis at {url}: {problem}; check that the server runs and that "
            "the URL, username/password and TLS options are right"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.url, self.problem))


class NodeNameTaken(OTPError, ValueError):
    """Another live node on the same Redis and prefix already uses this node name."""

    def __init__(self, node: str, prefix: str) -> None:
        self.node = node
        self.prefix = prefix
        super().__init__(
            f"node name {node!r} is in use by a live node under prefix {prefix!r}; give each "
            "node a unique otp.Node(name=...) or use another prefix"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node, self.prefix))


class BadTransition(OTPError, TypeError):
    """A :class:`otp.StateMachine` callback returned something the machine cannot do: not
    a transition, an unknown state, a bad action, or what a state enter call may not do
    (postpone, insert events, change the state).

    It crashes the machine like any exception escaping a callback (OTP's
    ``bad_return_from_state_function``, ``bad_action_from_state_function`` and
    ``bad_state_enter_*`` exit reasons). ``actor`` names the machine, ``detail`` says what.
    """

    def __init__(self, actor: object, detail: str) -> None:
        self.actor = actor
        self.detail = detail
        super().__init__(f"state machine {actor!r}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.actor, self.detail))


class WrongThread(OTPError, RuntimeError):
    """An actor's ref was used outside its node's event loop thread: from another thread,
    or from an event loop running in another thread. Refs are not thread-safe; use
    ``node.from_thread`` there (anyio's ``from_thread``, bound to the node's loop)."""

    def __init__(self, actor: object, operation: str) -> None:
        self.actor = actor
        self.operation = operation
        super().__init__(
            f"{operation}() on actor {describe(actor)} from thread "
            f"{threading.current_thread().name!r}, but its node runs in the event loop of "
            "another thread, and refs are not thread-safe: from other threads use "
            f"node.from_thread.{operation if operation in _PORTAL else 'run'}(...), "
            "or run the code inside the node's event loop"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.actor, self.operation))


_PORTAL = frozenset({"call", "cast", "send"})


class NodeFenced(OTPError, RuntimeError):
    """Another process took over this node's name on Redis while this one could not renew
    its claim (it was paused, or cut off, for longer than ``node_ttl``). This incarnation
    stopped serving remote traffic at once; the Node ends with this error. Restart the
    process (a new incarnation) if it should run again."""

    def __init__(self, node: str, prefix: str) -> None:
        self.node = node
        self.prefix = prefix
        super().__init__(
            f"node {node!r} (prefix {prefix!r}) was fenced: another process took over its "
            "name while this one was paused or cut off for longer than node_ttl; it stopped "
            "serving; restart it, or give each process a unique node name"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node, self.prefix))
