"""format_status: a GenServer redacts its state in crash reports, get_state and snapshots
(OTP's format_status/1)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import otp

pytestmark = pytest.mark.anyio

SECRET = "hunter2-very-secret"


class Vault(otp.GenServer):
    async def init(self, owner: str = "ann") -> None:
        self.owner = owner
        self.password = SECRET

    def format_status(self, state: dict[str, Any]) -> Any:
        return {**state, "password": "***"}

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        if request == "crash":
            raise RuntimeError("vault crashed")
        return self.owner


class BrokenStatus(Vault):
    def format_status(self, state: dict[str, Any]) -> Any:
        raise KeyError("formatter bug")


async def test_get_state_shows_what_format_status_returns() -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Vault)
        assert await ref.get_state() == {"owner": "ann", "password": "***"}
        plain = await node.spawn(otp.GenServer)
        assert await plain.get_state() == {}


async def test_crash_report_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    async with otp.Node() as node:
        ref = await node.spawn(Vault, name="vault")
        with caplog.at_level(logging.ERROR, logger="otp"):
            with pytest.raises(otp.ActorExited):
                await ref.call("crash")
            await ref.join()
    [report] = [r for r in caplog.records if "crash report" in r.getMessage()]
    text = report.getMessage()
    assert SECRET not in text and "'password': '***'" in text and "'owner': 'ann'" in text
    assert report.otp_state == {"owner": "ann", "password": "***"}  # type: ignore[attr-defined]


async def test_crash_report_survives_a_format_status_that_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with otp.Node() as node:
        ref = await node.spawn(BrokenStatus, name="broken")
        with caplog.at_level(logging.WARNING, logger="otp"):
            assert "format_status raised KeyError" in await ref.get_state()
            assert ref.alive  # get_state did not crash it
            with pytest.raises(otp.ActorExited) as info:
                await ref.call("crash")
            await ref.join()
        assert isinstance(info.value.reason, RuntimeError)  # the real crash, not the formatter
    [report] = [r for r in caplog.records if "crash report" in r.getMessage()]
    assert "<format_status raised KeyError" in report.getMessage()
    assert SECRET not in report.getMessage()
    assert any("format_status of BrokenStatus raised" in r.getMessage() for r in caplog.records)


async def test_tree_state_is_opt_in_and_redacted() -> None:
    async with otp.Node() as node:
        await node.spawn(Vault, name="top")
        await node.start(otp.supervisor("sup", [otp.worker(Vault, "bob", name="child")]))
        plain = node.tree()
        assert plain.children[0].state is None  # type: ignore[union-attr]
        tree = node.tree(state=True)
        top, sup = tree.children
        assert top.state == {"owner": "ann", "password": "***"}  # type: ignore[union-attr]
        assert isinstance(sup, otp.SupervisorSnapshot)
        assert sup.children[0].state == {"owner": "bob", "password": "***"}  # type: ignore[union-attr]
        assert tree == plain  # state is not part of equality
        document = json.dumps(otp.to_json(tree), allow_nan=False)
        assert SECRET not in document and '"***"' in document


def test_async_format_status_is_refused_at_class_definition() -> None:
    with pytest.raises(TypeError, match="format_status must be a plain def"):

        class Wrong(otp.GenServer):
            async def format_status(self, state: dict[str, Any]) -> Any:  # type: ignore[override]
                return state


async def test_format_status_may_return_anything() -> None:
    class Opaque(Vault):
        def format_status(self, state: dict[str, Any]) -> Any:
            return "<vault of " + state["owner"] + ">"

    async with otp.Node() as node:
        ref = await node.spawn(Opaque)
        assert await ref.get_state() == "<vault of ann>"
