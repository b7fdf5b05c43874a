"""Links and trapped exits (erlang:link/1, unlink/1, exit/2, process_flag(trap_exit)).

Each scenario was run the same way in Erlang/OTP 25 (gen_server processes linked with
link/1 or started with gen_server:start_link/3) and the assertions follow what it did.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

import otp
from otp.testing import Probe, start_probe, wait_for_restart, wait_until
from tests._helpers import FailingInit

pytestmark = pytest.mark.anyio


async def _downs(probe: Probe) -> list[Any]:
    """The reasons of every ``Down`` the probe got, after a round trip through its mailbox
    (so none sent before it is still on the way)."""
    await probe.ref.call("sync")
    return [m.reason for m in probe.messages if isinstance(m, otp.Down)]


class Peer(otp.GenServer):
    """Does what it is told; records infos and terminate in a shared log."""

    async def init(self, log: list[Any], trap: bool = False) -> None:
        self.log = log
        self.trap_exit = trap

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        match request:
            case ("link", ref):
                self.link(ref)
            case ("try_link", ref):
                try:
                    self.link(ref)
                except otp.ActorExited as exc:
                    return exc
            case ("unlink", ref):
                self.unlink(ref)
            case ("crash", why):
                raise RuntimeError(why)
            case ("stop", reason):
                self.stop(reason)
            case ("exit", ref, reason):
                ref.exit(reason)
            case ("spawn_link", cls, args):
                return await self.spawn_link(cls, *args)
            case ("trap", flag):
                self.trap_exit = flag
        return "ok"

    async def handle_info(self, message: Any) -> None:
        self.log.append((self.ref.name, message))

    async def terminate(self, reason: Any) -> None:
        self.log.append((self.ref.name, "terminate", reason))


async def _peers(node: otp.Node, log: list[Any], *traps: bool) -> list[otp.ActorRef]:
    return [await node.spawn(Peer, log, trap, name=f"p{i}") for i, trap in enumerate(traps)]


async def test_linked_crash_kills_non_trapping_actor_without_terminate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # OTP: a gen_server that does not trap exits is killed by the signal: no terminate/2,
    # no crash report of its own, and it exits with the very same reason.
    log: list[Any] = []
    async with otp.Node() as node:
        a, b = await _peers(node, log, False, False)
        probe = await start_probe(node)
        await probe.monitor(a)
        await a.call(("link", b))
        with caplog.at_level(logging.ERROR, logger="otp"):
            with pytest.raises(otp.ActorExited):
                await b.call(("crash", "boom"))
            with anyio.fail_after(5):
                reason = await a.join()
        assert isinstance(reason, RuntimeError) and reason is b.exit_reason
        assert await probe.expect_down(a) is reason
        assert await _downs(probe) == [reason]
        assert ("p0", "terminate", reason) not in log
        assert ("p1", "terminate", reason) in log
        reports = [r for r in caplog.records if "crash report" in r.getMessage()]
        assert len(reports) == 1 and "'p1'" in reports[0].getMessage()


async def test_links_are_bidirectional() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        a, b = await _peers(node, log, False, False)
        await a.call(("link", b))
        assert a.links == {b} and b.links == {a}
        with pytest.raises(otp.ActorExited):
            await a.call(("crash", "from a"))
        with anyio.fail_after(5):
            assert isinstance(await b.join(), RuntimeError)
        assert a.links == frozenset() and b.links == frozenset()


async def test_trapping_actor_gets_exit_message_and_lives() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        a, b = await _peers(node, log, True, False)
        await a.call(("link", b))
        with pytest.raises(otp.ActorExited):
            await b.call(("crash", "boom"))
        assert await a.call("ping") == "ok"
        assert log[-1] == ("p0", otp.Exit(b, b.exit_reason))
        assert a.alive and a.links == frozenset()


async def test_normal_exit_of_a_link_spares_non_trapping_and_reaches_trapping() -> None:
    # OTP: only `normal` is ignored by a process that does not trap exits; a trapping one
    # gets {'EXIT', Pid, normal}.
    log: list[Any] = []
    async with otp.Node() as node:
        a, t, b = await _peers(node, log, False, True, False)
        await a.call(("link", b))
        await t.call(("link", b))
        await b.stop()
        assert await a.call("ping") == "ok" and await t.call("ping") == "ok"
        assert ("p1", otp.Exit(b, "normal")) in log
        assert not any(entry[0] == "p0" for entry in log)


async def test_shutdown_exit_of_a_link_kills_non_trapping() -> None:
    # Unlike a supervisor's restart decision, a link treats "shutdown" as abnormal.
    log: list[Any] = []
    async with otp.Node() as node:
        a, b = await _peers(node, log, False, False)
        await a.call(("link", b))
        await b.stop("shutdown")
        with anyio.fail_after(5):
            assert await a.join() == "shutdown"


async def test_exit_signal_rules_from_outside_and_from_an_actor() -> None:
    # exit(Pid, normal): ignored without trap_exit; delivered as {'EXIT', From, normal} with
    # it. From is the calling process; None here when the caller is not an actor.
    log: list[Any] = []
    async with otp.Node() as node:
        a, t, s = await _peers(node, log, False, True, False)
        a.exit("normal")
        t.exit("normal")
        await s.call(("exit", t, "hello"))
        assert await a.call("ping") == "ok" and await t.call("ping") == "ok"
        assert log == [("p1", otp.Exit(None, "normal")), ("p1", otp.Exit(s, "hello"))]
        a.exit("custom")
        with anyio.fail_after(5):
            assert await a.join() == "custom"
        assert ("p0", "terminate", "custom") not in log


async def test_exit_kill_cannot_be_trapped_and_spreads_as_killed() -> None:
    # exit(Pid, kill) kills even a trapping process (reason killed); its links then get
    # `killed`, which is an ordinary (trappable) reason.
    log: list[Any] = []
    async with otp.Node() as node:
        victim, watcher, bystander = await _peers(node, log, True, True, False)
        await watcher.call(("link", victim))
        await bystander.call(("link", victim))
        victim.exit("kill")
        with anyio.fail_after(5):
            assert await victim.join() == "killed"
            assert await bystander.join() == "killed"
        assert await watcher.call("ping") == "ok"
        assert ("p1", otp.Exit(victim, "killed")) in log
        assert ("p0", "terminate", "killed") not in log


async def test_a_link_exiting_with_reason_kill_is_an_ordinary_signal() -> None:
    # OTP: a process that exits with reason `kill` sends `kill` to its links, and there it
    # is trappable; a non-trapping link dies with reason `kill` (not `killed`).
    log: list[Any] = []
    async with otp.Node() as node:
        quitter, trapper, plain = await _peers(node, log, False, True, False)
        await trapper.call(("link", quitter))
        await plain.call(("link", quitter))
        await quitter.call(("stop", "kill"))
        with anyio.fail_after(5):
            assert await plain.join() == "kill"
        assert await trapper.call("ping") == "ok"
        assert ("p1", otp.Exit(quitter, "kill")) in log


async def test_link_to_dead_actor_raises_noproc_or_traps_it() -> None:
    # OTP 25: link/1 to a dead pid fails with noproc in a process that does not trap
    # exits, and delivers {'EXIT', Pid, noproc} in one that does.
    log: list[Any] = []
    async with otp.Node() as node:
        a, t, dead = await _peers(node, log, False, True, False)
        await dead.stop()
        error = await a.call(("try_link", dead))
        assert isinstance(error, otp.ActorExited)
        assert error.reason == "noproc" and error.actor is dead
        assert a.links == frozenset() and a.alive
        await t.call(("link", dead))
        assert await t.call("ping") == "ok"
        assert ("p1", otp.Exit(dead, "noproc")) in log


async def test_link_twice_is_one_link_and_unlink_removes_it() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        a, b = await _peers(node, log, False, False)
        await a.call(("link", b))
        await a.call(("link", b))
        await a.call(("link", a))  # linking to yourself does nothing
        assert a.links == {b}
        await a.call(("unlink", b))
        assert a.links == frozenset() and b.links == frozenset()
        b.exit("boom")
        assert await b.join() == "boom"
        assert await a.call("ping") == "ok"


async def test_link_chain_propagates_the_reason() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        a, b, c = await _peers(node, log, False, False, False)
        await a.call(("link", b))
        await b.call(("link", c))
        c.exit("cascade")
        with anyio.fail_after(5):
            assert [await r.join() for r in (c, b, a)] == ["cascade"] * 3


async def test_spawn_link_child_dies_with_its_parent() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        parent = await node.spawn(Peer, log, False, name="parent")
        child = await parent.call(("spawn_link", Peer, (log, False)))
        assert parent.links == {child} and child.links == {parent}
        with pytest.raises(otp.ActorExited):
            await parent.call(("crash", "parent died"))
        with anyio.fail_after(5):
            assert (await child.join()) is parent.exit_reason
        assert (None, "terminate", parent.exit_reason) not in log


async def test_trapping_child_terminates_when_its_parent_exits() -> None:
    # gen_server: an {'EXIT', Parent, Reason} is not handed to handle_info; the server
    # runs terminate(Reason) and exits with Reason, `normal` included.
    for reason in ("boom", "normal"):
        log: list[Any] = []
        async with otp.Node() as node:
            parent = await node.spawn(Peer, log, False, name="parent")
            child = await parent.call(("spawn_link", Peer, (log, True)))
            await parent.stop(reason)
            with anyio.fail_after(5):
                assert await child.join() == reason
            assert (None, "terminate", reason) in log
            assert (None, otp.Exit(parent, reason)) not in log


async def test_non_trapping_child_outlives_a_parent_that_exits_normally() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        parent = await node.spawn(Peer, log, False, name="parent")
        child = await parent.call(("spawn_link", Peer, (log, False)))
        await parent.stop()
        assert await child.call("ping") == "ok"
        assert child.links == frozenset()


async def test_parent_exit_signal_stops_a_trapping_child() -> None:
    # exit(Child, foo) sent by the parent is an {'EXIT', Parent, foo} too: terminate(foo).
    log: list[Any] = []
    async with otp.Node() as node:
        parent = await node.spawn(Peer, log, False, name="parent")
        child = await parent.call(("spawn_link", Peer, (log, True)))
        await parent.call(("exit", child, "foo"))
        with anyio.fail_after(5):
            assert await child.join() == "foo"
        assert log[-1] == (None, "terminate", "foo")
        # The child's exit then reaches the parent through the link, which kills it.
        with anyio.fail_after(5):
            assert await parent.join() == "foo"


async def test_spawn_link_init_failure_raises_and_sends_no_signal() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        parent = await node.spawn(Peer, log, False, name="parent")
        with pytest.raises(otp.ActorExited) as info:
            await parent.call(("spawn_link", FailingInit, ("nope",)))
        # The StartFailed escaped handle_call and crashed the parent by itself, not by a
        # link: its own exception, and terminate ran.
        assert isinstance(info.value.reason, otp.StartFailed)
        assert log[-1][1] == "terminate"

        quiet = await node.spawn(Peer, log, False, name="quiet")
        with pytest.raises(otp.StartFailed):
            await node.spawn(FailingInit, "nope", link=quiet)
        assert await quiet.call("ping") == "ok"
        assert quiet.links == frozenset()


async def test_node_spawn_link_option() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        (anchor,) = await _peers(node, log, False)
        linked = await node.spawn(Peer, log, False, link=anchor)
        assert anchor.links == {linked}
        anchor.exit("gone")
        with anyio.fail_after(5):
            assert await linked.join() == "gone"
        with pytest.raises(otp.ActorExited) as info:
            await node.spawn(Peer, log, link=anchor)
        assert info.value.reason == "noproc"
        with pytest.raises(TypeError, match="link"):
            await node.spawn(Peer, log, link="anchor")  # type: ignore[arg-type]


async def test_exit_normal_to_yourself_ends_a_non_trapping_actor() -> None:
    # OTP quirk kept: exit(self(), normal) ends the caller; a trapping gen_server started
    # without a parent link is its own parent, so it runs terminate(normal).
    log: list[Any] = []
    async with otp.Node() as node:
        plain, trapper = await _peers(node, log, False, True)
        with pytest.raises(otp.ActorExited) as info:
            await plain.call(("exit", plain, "normal"))
        assert info.value.reason == "normal"
        assert ("p0", "terminate", "normal") not in log
        await trapper.call(("exit", trapper, "normal"))
        with anyio.fail_after(5):
            assert await trapper.join() == "normal"
        assert ("p1", "terminate", "normal") in log


async def test_calls_waiting_on_an_actor_killed_by_a_link_fail_at_once() -> None:
    gate = anyio.Event()

    class Busy(otp.GenServer):
        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            await gate.wait()
            return "never"

    log: list[Any] = []
    async with otp.Node() as node:
        busy = await node.spawn(Busy)
        (other,) = await _peers(node, log, False)
        await other.call(("link", busy))
        errors: list[Any] = []

        async def call() -> None:
            try:
                await busy.call("work", timeout=None)
            except otp.ActorExited as exc:
                errors.append(exc.reason)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            other.exit("boom")
        assert errors == ["boom"]
        assert busy.exit_reason == "boom"


async def test_trap_exit_property_that_raises_does_not_break_an_exit() -> None:
    class Weird(otp.GenServer):
        @property
        def trap_exit(self) -> bool:  # type: ignore[override]
            raise RuntimeError("no")

    log: list[Any] = []
    async with otp.Node() as node:
        weird = await node.spawn(Weird)
        (a,) = await _peers(node, log, False)
        await a.call(("link", weird))
        probe = await start_probe(node)
        await probe.monitor(weird)
        a.exit("boom")
        with anyio.fail_after(5):
            assert await weird.join() == "boom"
        assert await probe.expect_down(weird) == "boom"
        assert await _downs(probe) == ["boom"]


async def test_many_links_all_get_the_signal() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        hub = await node.spawn(Peer, log, False)
        spokes = [await node.spawn(Peer, log, i % 2 == 0) for i in range(200)]
        for spoke in spokes:
            await spoke.call(("link", hub))
        assert len(hub.links) == 200
        hub.exit("hub down")
        with anyio.fail_after(10):
            for i, spoke in enumerate(spokes):
                if i % 2:
                    assert await spoke.join() == "hub down"
                else:
                    assert await spoke.call("ping") == "ok"
        trapped = [entry for entry in log if isinstance(entry[1], otp.Exit)]
        assert len(trapped) == 100 and {e[1].reason for e in trapped} == {"hub down"}


async def test_supervisor_traps_exits_from_linked_actors() -> None:
    # OTP supervisors trap exits: the EXIT of a linked non-child, or an exit signal from
    # anyone but the parent, does not end them. "kill" still does.
    log: list[Any] = []
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("sup", [otp.worker(Peer, log, name="w")]))
        (stranger,) = await _peers(node, log, False)
        await stranger.call(("link", sup))
        with pytest.raises(otp.ActorExited):
            await stranger.call(("crash", "stranger crash"))
        sup.exit("shutdown")
        assert [c.id for c in await sup.which_children()] == ["w"]
        assert sup.statistics().trap_exit is True
        sup.exit("kill")
        with anyio.fail_after(5):
            assert await sup.join() == "killed"


async def test_supervised_worker_killed_by_a_link_is_restarted() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        sup = await node.start(otp.supervisor("sup", [otp.worker(Peer, log, name="w")]))
        worker = node.whereis("w")
        (outsider,) = await _peers(node, log, False)
        await worker.call(("link", outsider))
        outsider.exit("boom")
        with anyio.fail_after(5):
            assert await worker.join() == "boom"
            new = await wait_for_restart(sup, "w", worker)
        assert new is not worker and new.alive
        assert (await sup.which_children())[0].ref is new


async def test_links_and_monitors_are_visible_to_introspection() -> None:
    log: list[Any] = []

    class Watcher(Peer):
        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            if isinstance(request, tuple) and request[0] == "monitor":
                self.monitor(request[1])
                return "ok"
            return await super().handle_call(request, caller)

    async with otp.Node() as node:
        a, b = await _peers(node, log, True, False)
        w = await node.spawn(Watcher, log)
        await a.call(("link", b))
        await w.call(("monitor", a))
        stats = a.statistics()
        assert stats.links == (b,)
        assert stats.monitored_by == (w,)
        assert stats.trap_exit is True
        assert w.statistics().monitors == (a,)
        assert b.statistics().trap_exit is False
        snapshot = {child.name: child for child in node.tree().children}
        assert snapshot["p0"].links == (b,)  # type: ignore[union-attr]
        assert snapshot[None].monitors == (a,)  # type: ignore[union-attr]
        document = otp.to_json(stats)
        assert document["links"][0]["id"] == b.id
        assert document["trap_exit"] is True


async def test_exit_for_remote_refs_and_bad_links_is_a_type_error() -> None:
    log: list[Any] = []
    async with otp.Node() as node:
        (a,) = await _peers(node, log, False)
        with pytest.raises(otp.ActorExited) as info:
            await a.call(("link", "not a ref"))
        assert isinstance(info.value.__cause__, TypeError)


async def test_exit_to_yourself_inside_a_task_group_ends_the_actor_cleanly() -> None:
    class Nested(otp.GenServer):
        async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.sleep_forever)
                self.ref.exit(request)
            return "never"

    async with otp.Node() as node:
        for reason, expected in (("boom", "boom"), ("kill", "killed")):
            ref = await node.spawn(Nested)
            with pytest.raises(otp.ActorExited) as info:
                await ref.call(reason)
            assert info.value.reason == expected
            assert await ref.join() == expected


async def test_linked_actor_dying_during_init_fails_the_start() -> None:
    gate = anyio.Event()

    class SlowInit(otp.GenServer):
        async def init(self) -> None:
            await gate.wait()

    log: list[Any] = []
    async with otp.Node() as node:
        (anchor,) = await _peers(node, log, False)
        errors: list[BaseException] = []

        async def start() -> None:
            try:
                await node.spawn(SlowInit, link=anchor)
            except otp.StartFailed as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            await anyio.wait_all_tasks_blocked()
            anchor.exit("gone")
        assert len(errors) == 1
        cause = errors[0].__cause__
        assert isinstance(cause, otp.ActorExited) and cause.reason == "gone"


async def test_untrapped_signal_cuts_terminate_short() -> None:
    # A process that does not trap exits is killed even while it runs terminate/2.
    entered = anyio.Event()

    class SlowTerminate(otp.GenServer):
        async def terminate(self, reason: Any) -> None:
            entered.set()
            await anyio.sleep_forever()

    async with otp.Node() as node:
        ref = await node.spawn(SlowTerminate)

        async def stop() -> None:
            # It asks for "shutdown" and waits without a limit; the signal ends it first.
            with pytest.raises(otp.ActorExited):
                await ref.stop("shutdown")

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop)
            await entered.wait()
            ref.exit("cut short")
        assert ref.exit_reason == "cut short"


async def test_node_exit_still_runs_terminate_of_linked_actors() -> None:
    # The node stops every actor in reverse start order with terminate("shutdown"); the
    # child's "shutdown" does not kill its non-trapping parent before the parent's turn.
    log: list[Any] = []
    async with otp.Node() as node:
        parent = await node.spawn(Peer, log, False, name="parent")
        await parent.call(("spawn_link", Peer, (log, False)))
    assert {e for e in log if e[1] == "terminate"} == {
        (None, "terminate", "shutdown"),
        ("parent", "terminate", "shutdown"),
    }


async def test_exit_message_is_never_refused_by_a_full_mailbox() -> None:
    gate = anyio.Event()
    seen: list[Any] = []

    class Full(otp.GenServer):
        async def init(self) -> None:
            self.trap_exit = True

        async def handle_cast(self, message: Any) -> None:
            await gate.wait()

        async def handle_info(self, message: Any) -> None:
            seen.append(message)

    log: list[Any] = []
    async with otp.Node() as node:
        full = await node.spawn(Full, mailbox=otp.Mailbox(capacity=1, overflow=otp.Overflow.FAIL))
        (other,) = await _peers(node, log, False)
        await other.call(("link", full))
        await full.cast("block")
        await anyio.wait_all_tasks_blocked()  # now being handled
        await full.cast("fills the mailbox")
        with pytest.raises(otp.MailboxFull):
            await full.cast("refused")
        other.exit("boom")
        assert await other.join() == "boom"
        gate.set()
        await wait_until(lambda: seen == [otp.Exit(other, "boom")])
