"""No module reads another's private attributes (issue 15): each class offers a small
internal interface instead, and what remains is an allow-list that says why.

The check is a heuristic on the source (no types): in every module of ``otp/``, an access
``x._name`` where ``x`` is not ``self``/``cls`` is a private read from another module
unless ``_name`` is the module's own (assigned as ``self._name``, a class attribute or
field, a method of a class defined there) or a name of a documented internal interface
(``INTERNAL_INTERFACES``, used where ``INTERFACE_USERS`` allows). Run
``python tests/test_architecture.py`` to print the reads.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "otp"

# Modules left out of the check (none: the broker split has landed).
EXCLUDED: set[str] = set()

# The documented internal interfaces of public classes: underscore names that otp's own
# modules may use across module boundaries. Each is listed in the class's "internal
# interface" comment (test_internal_interfaces_are_documented checks both ways).
INTERNAL_INTERFACES: dict[str, frozenset[str]] = {
    "otp._actor.ActorRef": frozenset(
        {
            "_behaviour",
            "_load",
            "_continue",
            "_reply",
            "_request_stop",
            "_monitor",
            "_demonitor",
            "_link",
            "_unlink",
            "_send_after",
            "_deliver_control",
            "_shutdown",
            "_shutdown_own",
            "_join_killed",
            "_parent_exited",
            "_status",
            "_monitor_count",
            "_add_monitor",
            "_remove_monitor",
            "_offer",
            "_offer_full",
            "_offer_blocking",
            "_offer_system",
        }
    ),
    "otp._node.Node": frozenset(
        {
            "_backend",
            "_deadlines",
            "_task_group",
            "_thread",
            "_closing",
            "_top",
            "_listeners",
            "_emit",
            "_dead_letter",
            "_register",
            "_unregister",
            "_claim_global",
            "_exits_settled",
            "_start_top",
            "_actor_started",
            "_actor_exited",
        }
    ),
    "otp._requests.RequestId": frozenset({"_slot"}),
    "otp._remote.RemoteRef": frozenset({"_exit_reason", "_mark_exited"}),
    "otp._codec.RefCodec": frozenset({"_ref_to_wire", "_ref_from_wire"}),
    "otp._supervisor_refs.PoolRef": frozenset({"_pick"}),
    "otp.redis._broker.RedisBroker": frozenset(
        {
            "_me",
            "_node",
            "_require_node",
            "_counter",
            "_cluster_time",
            "_clock_tolerance",
            "_clock_sample",
            "_dumps",
            "_wire_error",
            "_decode_pub",
            "_envelope_of",
            "_control_channel",
            "_inbox_channel",
            "_on_control",
            "_on_topic",
            "_connection_lost",
            "_reconnected",
            "_lease_ok",
            "_fenced",
            "_peer_down",
            "_cluster_later",
            "_cluster_publish",
            "_exits_pending",
            "_deliver",
            "_deliver_now",
            "_delivered",
        }
    ),
    "otp._broker.Broker": frozenset(
        {"_attach", "_detach", "_subscribe_actor", "_unsubscribe_actor", "_dead_letter"}
    ),
    "otp._broker.InMemoryBroker": frozenset({"_index_sizes"}),
    "otp._subscriptions.Subscription": frozenset(
        {"_offer", "_offer_blocking", "_offer_system", "_close"}
    ),
    "otp._global.GlobalRegistry": frozenset({"_claim_global", "_release_global", "_locate_global"}),
    # The hooks a behaviour built on GenServer overrides (docs/architecture.md).
    "otp._gen_server.GenServer": frozenset(
        {"_otp_init", "_otp_owns_task_group", "_otp_task_group", "_otp_async_callbacks"}
    ),
}

# Which modules may use an interface (a path prefix; every otp module if not listed): the
# check knows names, not types, so an interface's names are accepted only where its users
# are.
INTERFACE_USERS: dict[str, str] = {
    "otp._remote.RemoteRef": "otp/redis/",
    "otp._supervisor_refs.PoolRef": "otp/redis/",
    "otp.redis._broker.RedisBroker": "otp/redis/",
}

# (module, expression): why the read stays. Shrink it; never grow it without a reason.
_HOT = "hot path inlined, benchmarks justify it (MailboxQueue docstring, comment at the read)"
_FANOUT = (
    "a fan-out inlines ActorRef._offer's common case, as its receiver group allows "
    "(the call cost ~7 % of a delivery)"
)
_THIRD = (
    "a third-party or stdlib private (anyio's TaskHandle scope, trio's cancel status, "
    "sys._getframe): no public equivalent at the cost, see the comment at the read"
)
_START = (
    "otp/_start.py is start_actor, split out of _actor.py (commit 168b871): the spawn path "
    "sets up the new process's own fields; to become ActorRef methods (not measured here)"
)
_REDIS = (
    "otp.redis serving remote peers signals a local actor and clears a watcher's monitor "
    "itself (docs/architecture.md, known debts): ActorRef methods next"
)
ALLOWED: dict[tuple[str, str], str] = {
    ("otp/_start.py", "handle._cancel_scope"): _THIRD,
    ("otp/_start.py", "link._alive"): _START,
    ("otp/_start.py", "ref._add_link"): _START,
    ("otp/_start.py", "ref._alive"): _START,
    ("otp/_start.py", "ref._escalate"): _START,
    ("otp/_start.py", "ref._link_parent"): _START,
    ("otp/_start.py", "ref._parent"): _START,
    ("otp/_start.py", "ref._run"): _START,
    ("otp/_start.py", "ref._run_scoped"): _START,
    ("otp/_start.py", "ref._scope"): _START,
    ("otp/_start.py", "ref._signal"): _START,
    ("otp/_actor.py", "mailbox._capacity"): _HOT,
    ("otp/_actor.py", "mailbox._extra"): _HOT,
    ("otp/_actor.py", "mailbox._high"): _HOT,
    ("otp/_actor.py", "mailbox._items"): _HOT,
    ("otp/_actor.py", "mailbox._look"): _HOT,
    ("otp/_actor.py", "self._mailbox._look"): _HOT,
    ("otp/_delivery.py", "mailbox._capacity"): _HOT,
    ("otp/_delivery.py", "mailbox._items"): _HOT,
    ("otp/_stopping.py", "self._mailbox._look"): _HOT,
    ("otp/_broker.py", "target._alive"): _FANOUT,
    ("otp/_broker.py", "target._mailbox"): _FANOUT,
    ("otp/_actor.py", "sys._getframe"): _THIRD,
    ("otp/_backends/_trio.py", "current_task()._cancel_status"): _THIRD,
    ("otp/redis/_remote.py", "watcher._watching"): _REDIS,
    ("otp/redis/_serve.py", "target._signal"): _REDIS,
}


def _own_names(tree: ast.Module) -> set[str]:
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    own.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    own.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    for target in item.targets:
                        if isinstance(target, ast.Name):
                            own.add(target.id)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if (
                        isinstance(sub, ast.Attribute)
                        and isinstance(sub.value, ast.Name)
                        and sub.value.id in {"self", "cls"}
                    ):
                        own.add(sub.attr)
    return own


def private_reads() -> set[tuple[str, str]]:
    """Every (module, expression) reading another module's private attribute."""
    found: set[tuple[str, str]] = set()
    for path in sorted(ROOT.rglob("*.py")):
        module = path.relative_to(ROOT.parent).as_posix()
        if path.relative_to(ROOT).as_posix() in EXCLUDED:
            continue
        interface = frozenset().union(
            *(
                names
                for owner, names in INTERNAL_INTERFACES.items()
                if module.startswith(INTERFACE_USERS.get(owner, "otp/"))
            )
        )
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = _own_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}:
                continue
            if name in own or name in interface:
                continue
            found.add((module, ast.unparse(node)))
    return found


def test_no_private_reads_across_modules() -> None:
    found = private_reads()
    new = sorted(found - ALLOWED.keys())
    assert not new, f"private reads across modules (give the owner an interface): {new}"


def test_allow_list_only_holds_reads_that_remain() -> None:
    stale = sorted(ALLOWED.keys() - private_reads())
    assert not stale, f"no longer read, drop from ALLOWED: {stale}"


def test_internal_interfaces_are_documented() -> None:
    for qualified, names in INTERNAL_INTERFACES.items():
        module_name, class_name = qualified.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), class_name)
        source = inspect.getsource(cls)
        assert "internal interface" in source, qualified
        for name in names:
            assert name in source.split("internal interface", 1)[1], (qualified, name)
            defined = hasattr(cls, name) or any(
                re.search(rf"self\.{name}\b[^=\n]*=", inspect.getsource(k))
                for k in cls.__mro__
                if k.__module__.startswith("otp")
            )
            assert defined, (qualified, name)


if __name__ == "__main__":
    for module, expression in sorted(private_reads()):
        reason = ALLOWED.get((module, expression), "")
        print(f"{module}: {expression}  {reason}", file=sys.stdout)
