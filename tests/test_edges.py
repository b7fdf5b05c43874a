"""Friendly edges (issue 12): each test is a mistake a new user makes, and the clear answer.

Crash reports visible by default, sync callbacks refused at class definition, exit hints
that fit the cause, loose values refused with errors naming the parameter, wire-name
collisions, the runtime's own topics, and the optional trio backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest

import otp
from tests._helpers import Counter, Crash, Get
from tests._redis_support import prefix, redis_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, *, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with no logging configured; ``block`` names
    modules that must look uninstalled."""
    prelude = "".join(f"import sys; sys.modules[{name!r}] = None\n" for name in block)
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# ---------------------------------------------------------------------------- crash reports


def test_a_crash_report_reaches_stderr_with_no_logging_configured() -> None:
    result = _python(
        """
        import otp

        class Boom(otp.GenServer):
            async def handle_cast(self, message):
                raise ZeroDivisionError("the bug")

        async def main():
            async with otp.Node() as node:
                ref = await node.spawn(Boom, name="boom")
                await ref.cast("go")
                await ref.join()

        otp.run(main)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "crash report: actor <ActorRef 'boom' Boom" in result.stderr
    assert "ZeroDivisionError: the bug" in result.stderr  # with the traceback


def test_the_otp_logger_has_no_handler_of_its_own() -> None:
    import logging

    assert not any(isinstance(h, logging.NullHandler) for h in logging.getLogger("otp").handlers)


# ---------------------------------------------------------------------------- sync callbacks


@pytest.mark.parametrize(
    "name", ["init", "handle_call", "handle_cast", "handle_info", "handle_continue", "terminate"]
)
def test_a_plain_def_callback_is_refused_at_class_definition(name: str) -> None:
    def callback(self: Any, *args: Any) -> None:
        return None

    with pytest.raises(TypeError, match=rf"Sync\.{name} must be a coroutine function") as info:
        type("Sync", (otp.GenServer,), {name: callback})
    assert f"async def {name}" in str(info.value)


def test_generators_are_refused_and_async_or_inherited_callbacks_accepted() -> None:
    with pytest.raises(TypeError, match="an async generator"):

        class Gen(otp.GenServer):
            async def handle_info(self, message: Any) -> Any:  # type: ignore[override]
                yield message

    class Fine(otp.GenServer):
        async def handle_cast(self, message: Any) -> None: ...

        def helper(self) -> int:  # not a callback: any kind of method
            return 1

    class Child(Fine):  # inherits the async callback; defines nothing new
        pass

    assert Child().helper() == 1


# ---------------------------------------------------------------------------- hints


async def test_a_crash_hint_says_bug_and_supervisor_restart() -> None:
    async with otp.Node() as node:
        await node.start(otp.supervisor("sup", [otp.worker(Counter, name="c")]))
        with pytest.raises(otp.ActorExited) as info:
            await node.whereis("c").call(Crash())
    text = str(info.value)
    assert "bug to fix" in text and "crash report" in text
    assert "its supervisor restarts it" in text and "node.whereis" in text


async def test_an_unsupervised_crash_says_nothing_restarts_it() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        with pytest.raises(otp.ActorExited) as info:
            await ref.call(Crash())
    assert "no supervisor" in str(info.value)
    assert "supervisor restarts it" not in str(info.value)


async def test_a_normal_stop_and_a_stopped_node_have_their_own_hints() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        await ref.stop()
        with pytest.raises(otp.ActorExited, match="stopped normally"):
            await ref.call(Get())
        late = await node.spawn(Counter)
    with pytest.raises(otp.ActorExited, match="its node is shutting down") as info:
        await late.call(Get())
    assert "node.whereis" not in str(info.value)


def test_hints_for_give_up_noproc_and_remote_reasons() -> None:
    gave_up = otp.SupervisorGaveUp("root", 3, 5.0)
    assert "gave up after too many restarts" in str(otp.ActorExited("root", gave_up))
    assert "no such actor is running" in str(otp.ActorExited("x", "noproc"))
    assert "its node is down" in str(otp.ActorExited("x", "nodedown"))
    assert "lost its broker connection" in str(otp.ActorExited("x", "noconnection"))
    error = otp.ActorExited("x", "killed", supervised=True, node_exited=False)
    import pickle

    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.supervised, str(copy)) == ("killed", True, str(error))


# ---------------------------------------------------------------------------- loose values


async def test_loose_timeouts_are_refused_naming_the_parameter() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        with pytest.raises(TypeError, match=r"timeout must be seconds .* not True \(bool\)"):
            await ref.call(Get(), timeout=True)
        with pytest.raises(TypeError, match=r"timeout must be seconds .* not '5' \(str\)"):
            await ref.call(Get(), timeout="5")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="timeout"):
            await ref.join(timeout="1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="timeout"):
            await ref.stop(timeout=True)
        assert ref.alive  # a refused stop did not stop it
        assert await ref.call(Get(), timeout=5) == 0  # an int is fine


async def test_loose_priorities_and_capacities_are_refused() -> None:
    with pytest.raises(TypeError, match=r"capacity .* not True \(bool\)"):
        otp.Mailbox(capacity=True)
    with pytest.raises(TypeError, match="capacity"):
        otp.Mailbox(capacity="10")  # type: ignore[arg-type]
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        with pytest.raises(TypeError, match=r"priority must be an int .* not 'high' \(str\)"):
            await ref.cast("x", priority="high")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="priority"):
            ref.send_nowait("x", priority=1.5)  # type: ignore[arg-type]
        assert ref.statistics().mailbox.enqueued == 0


async def test_stop_none_means_normal() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        await ref.stop(None)
        assert ref.exit_reason == "normal"
        assert otp.is_normal_exit(ref.exit_reason)


async def test_exit_none_means_normal() -> None:
    # ref.exit(None) used to kill the actor with exit_reason None ("not exited").
    async with otp.Node() as node:
        ref = await node.spawn(Counter)
        ref.exit(None)  # "normal": a non-trapping actor ignores it
        assert await ref.call(Get()) == 0
        assert ref.alive


def test_a_wire_name_collision_between_two_classes_raises() -> None:
    @otp.message("test_edges.collide")
    @attrs.frozen
    class First:
        pass

    namespace: dict[str, Any] = {"otp": otp, "attrs": attrs, "__name__": "elsewhere"}
    code = "@otp.message('test_edges.collide')\n@attrs.frozen\nclass First:\n    pass\n"
    with pytest.raises(ValueError, match=r"already used by .*First, so elsewhere\.First cannot"):
        exec(code, namespace)
    assert otp.message_type("test_edges.collide") is First
    # The same class defined again (a module re-run) takes the name over.
    code = code.replace("test_edges.collide", "test_edges.rerun")
    for _ in range(2):
        exec(code, {"otp": otp, "attrs": attrs, "__name__": "rerun"})
    assert otp.message_type("test_edges.rerun").__module__ == "rerun"


async def test_user_code_cannot_publish_on_the_runtimes_topics() -> None:
    async with otp.Node() as node, node.broker.subscribe(otp.DEAD_LETTERS) as letters:
        for topic in (otp.DEAD_LETTERS, otp.BROADCAST, "$otp.anything"):
            with pytest.raises(otp.InvalidTopic, match="belong to the runtime"):
                await node.broker.publish(topic, "forged")
            with pytest.raises(otp.InvalidTopic, match="belong to the runtime"):
                node.broker.publish_nowait(topic, "forged")
        # ...while the broker itself still publishes dead letters there.
        await node.broker.publish("nobody.listens", "lost")
        letter = (await letters.receive()).message
        assert isinstance(letter, otp.DeadLetter) and letter.message == "lost"
        with pytest.raises(otp.InvalidTopic):  # also after the route was used
            await node.broker.publish(otp.DEAD_LETTERS, "forged")


async def test_a_middleware_cannot_reroute_onto_the_runtimes_topics() -> None:
    async with otp.Node() as node:

        def reroute(envelope: otp.Envelope) -> otp.Envelope:
            return attrs.evolve(envelope, topic=otp.DEAD_LETTERS)

        node.broker.use(reroute)
        with pytest.raises(otp.InvalidTopic, match="belong to the runtime"):
            await node.broker.publish("orders.created", 1)


# ---------------------------------------------------------------------------- optional parts


def test_the_trio_backend_without_trio_is_one_clear_error() -> None:
    result = _python(
        """
        import otp

        async def main():
            return 1

        try:
            otp.run(main, backend="trio")
        except ModuleNotFoundError as exc:
            print(exc)
        """,
        block=("trio",),
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'anyotp[trio]'" in result.stdout
    assert result.stderr == ""


def test_the_demo_without_trio_names_the_extra() -> None:
    result = _python(
        "import sys, otp.__main__ as m; sys.exit(m.main(['demo', '--backend', 'trio']))",
        block=("trio",),
    )
    assert result.returncode == 2
    assert "anyotp[trio]" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------- threads


async def test_a_ref_used_from_another_threads_event_loop_is_refused(anyio_backend: str) -> None:
    import anyio

    from tests._helpers import Add

    async with otp.Node() as node:
        ref = await node.spawn(Counter, name="c")
        errors: list[BaseException] = []

        def elsewhere(backend: str) -> None:
            async def use_it() -> None:
                for attempt in (
                    lambda: ref.call(Get()),
                    lambda: ref.cast(Add(1)),
                    lambda: ref.send("x"),
                    lambda: ref.stop(),
                ):
                    try:
                        await attempt()
                    except otp.WrongThread as exc:
                        errors.append(exc)

            anyio.run(use_it, backend=backend)  # another event loop, in another thread

        for other in ("asyncio", "trio"):
            await anyio.to_thread.run_sync(elsewhere, other)
        assert len(errors) == 8
        assert "node.from_thread.call(" in str(errors[0])
        assert await ref.call(Get()) == 0  # nothing reached it


async def test_sync_ref_methods_from_a_plain_thread_are_refused() -> None:
    import anyio

    async with otp.Node() as node:
        ref = await node.spawn(Counter)

        def plain() -> list[str]:
            names = []
            for method in (lambda: ref.cast_nowait(1), lambda: ref.send_nowait(1), ref.kill):
                try:
                    method()
                except otp.WrongThread as exc:
                    names.append(exc.operation)
            return names

        assert await anyio.to_thread.run_sync(plain) == ["cast", "send", "kill"]
        assert ref.alive


async def test_node_from_thread_is_the_thread_safe_way_in() -> None:
    import threading

    import anyio

    from tests._helpers import Add

    async with otp.Node() as node:
        ref = await node.spawn(Counter, 1, name="counter")
        results: list[Any] = []

        def worker() -> None:  # a plain thread, not one anyio started
            portal = node.from_thread
            portal.cast("counter", Add(2))
            portal.send(ref, "hello")
            results.append(portal.call(ref, Get()))
            results.append(portal.run(ref.call, Get()))
            results.append(portal.run_sync(node.whereis, "counter") is ref)
            try:
                portal.call("nobody", Get())
            except otp.NotFound as exc:
                results.append(type(exc).__name__)

        thread = threading.Thread(target=worker)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        assert results == [3, 3, True, "NotFound"]
        with pytest.raises(RuntimeError, match="own event loop thread"):
            node.from_thread.call(ref, Get())
    with pytest.raises(RuntimeError, match="is not running"):
        node.from_thread.call(ref, Get())


def test_a_plain_def_state_machine_callback_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Door\.handle_event must be a coroutine function"):

        class Door(otp.StateMachine):
            callback_mode = otp.CallbackMode.HANDLE_EVENT_FUNCTION

            def handle_event(self, event: Any, state: Any) -> Any:  # type: ignore[override]
                return None

    with pytest.raises(TypeError, match=r"Lock\.init must be a coroutine function"):

        class Lock(otp.StateMachine):
            def init(self) -> Any:  # type: ignore[override]
                return otp.NextState("locked")


async def test_the_redis_broker_refuses_the_runtimes_topics_too(
    redis_url: str,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    from otp.redis import RedisBroker

    async with otp.Node(name="edges", broker=RedisBroker(redis_url, prefix=prefix)) as node:
        with pytest.raises(otp.InvalidTopic, match="belong to the runtime"):
            await node.broker.publish(otp.DEAD_LETTERS, "forged")
        await node.broker.publish("edges.fine", "ok")  # an ordinary topic goes out
