"""The public surface: __all__ is honest and the DESIGN.md contract names exist."""

from __future__ import annotations

import inspect
import pathlib

import otp

CONTRACT = """
Node spawn start whereis tree run GenServer ActorRef Mailbox Overflow supervisor worker
ONE_FOR_ONE ONE_FOR_ALL REST_FOR_ONE PERMANENT TRANSIENT TEMPORARY BRUTAL_KILL SupervisorRef
ChildInfo Down Envelope message NOREPLY OTPError CallTimeout ActorExited MailboxFull NameTaken
SupervisorGaveUp NotFound StartFailed
""".split()  # noqa: SIM905


def test_all_is_sorted_unique_and_importable() -> None:
    names = otp.__all__
    assert names == sorted(names), "keep otp.__all__ in sorted() order"
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(otp, name), name


def test_every_public_attribute_is_in_all() -> None:
    public = {
        name
        for name, value in vars(otp).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public - {"annotations"} == set(otp.__all__)


def test_contract_names_exist() -> None:
    for name in CONTRACT:
        if name in {"spawn", "start", "whereis", "tree"}:
            assert hasattr(otp.Node, name), name
        else:
            assert name in otp.__all__, name


def test_actor_ref_and_supervisor_ref_api() -> None:
    for name in ("name", "call", "cast", "send", "stop", "alive"):
        assert hasattr(otp.ActorRef, name)
    for name in (
        "which_children",
        "start_child",
        "restart_child",
        "terminate_child",
        "delete_child",
        "count_children",
    ):
        assert hasattr(otp.SupervisorRef, name)
    assert issubclass(otp.SupervisorRef, otp.ActorRef)


def test_exceptions_share_builtin_meaning() -> None:
    assert issubclass(otp.CallTimeout, TimeoutError)
    assert issubclass(otp.MailboxFull, OverflowError)
    assert issubclass(otp.NameTaken, ValueError)
    for exc in (
        otp.CallTimeout,
        otp.ActorExited,
        otp.MailboxFull,
        otp.NameTaken,
        otp.SupervisorGaveUp,
        otp.NotFound,
        otp.StartFailed,
    ):
        assert issubclass(exc, otp.OTPError)


def test_core_never_imports_rich_asyncio_or_trio() -> None:
    root = pathlib.Path(otp.__file__).parent
    allowed = {
        "import asyncio": {"_backends/_asyncio.py"},
        "import trio": {"_backends/_trio.py"},
        "import rich": {"_observer.py", "__main__.py", "testing.py"},
        "from rich": {"_observer.py", "__main__.py", "testing.py", "_logging.py"},
    }
    for path in root.rglob("*.py"):
        name = path.relative_to(root).as_posix()
        text = path.read_text()
        for needle, where in allowed.items():
            if needle in text:
                assert name in where, f"{name} contains {needle!r}"


def test_importing_otp_does_not_import_rich_trio_or_the_redis_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys, otp; "
        "print(sorted(m for m in ('rich', 'trio', 'coredis', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_install_rich_logging_renders_crash_reports() -> None:
    import io
    import logging

    from rich.console import Console

    buffer = io.StringIO()
    logger = logging.getLogger("otp")
    level = logger.level
    handler = otp.install_rich_logging(console=Console(file=buffer, width=120))
    try:
        logger.error("crash report: actor %r crashed", "x")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert "crash report: actor 'x' crashed" in buffer.getvalue()


def test_names_used_in_public_signatures_are_exported() -> None:
    assert otp.Shutdown is not None
    assert otp.WorkerSpec in otp.ChildSpec.__args__
    assert otp.SupervisorSpec in otp.ChildSpec.__args__


def test_node_event_is_the_clash_free_name_of_event() -> None:
    assert otp.NodeEvent is otp.Event
    assert otp.NodeEvent("started").kind == "started"


def test_broker_probe_moved_to_testing_with_a_deprecated_alias() -> None:
    import warnings

    import otp.testing

    assert "BrokerProbe" not in otp.__all__
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert otp.BrokerProbe is otp.testing.BrokerProbe
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "from otp.testing import BrokerProbe" in str(caught[0].message)


def test_optional_parts_are_attributes_after_a_plain_import_otp() -> None:
    import subprocess
    import sys

    code = (
        "import sys, otp\n"
        "assert 'coredis' not in sys.modules\n"
        "broker_class = otp.redis.RedisBroker\n"  # imports otp.redis (and coredis) on use
        "assert 'coredis' in sys.modules\n"
        "assert otp.testing.start_probe is not None\n"
        "try:\n"
        "    otp.no_such_part\n"
        "except AttributeError as exc:\n"
        "    assert 'no_such_part' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('otp.no_such_part did not raise')\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_no_private_reads_across_modules() -> None:
    # tests/test_architecture.py's check, here too so that every landing runs it (this file
    # is in the gate's smoke set): a new cross-module private read fails at once.
    from tests.test_architecture import ALLOWED, private_reads

    new = sorted(private_reads() - ALLOWED.keys())
    assert not new, f"private reads across modules (see tests/test_architecture.py): {new}"
