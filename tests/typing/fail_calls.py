"""Typed requests and refs used wrongly: each marked line must be an error with the code
named in its expect comment, under both checkers (check.py verifies it)."""

from __future__ import annotations

from typing import Any

import attrs

import otp


@attrs.frozen
class Get(otp.Call[int]): ...


class Store(otp.GenServer):
    async def init(self) -> None:
        self.waiting: list[otp.Caller] = []

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        caller.resolve(1)  # expect: mypy=attr-defined pyright=reportAttributeAccessIssue
        caller.fail(RuntimeError())  # expect: mypy=attr-defined pyright=reportAttributeAccessIssue
        return otp.NOREPLY


async def replies(ref: otp.ActorRef, node: otp.Node, remote: otp.RemoteRef) -> None:
    text: str = await ref.call(Get())  # expect: mypy=assignment pyright=reportAssignmentType
    # expect: mypy=assignment pyright=reportAssignmentType
    name: str = await node.call("store", Get())
    label: str = await remote.call(Get())  # expect: mypy=assignment pyright=reportAssignmentType
    del text, name, label
    takes_str(await ref.call(Get()))  # expect: mypy=arg-type pyright=reportArgumentType


async def requests(ref: otp.ActorRef) -> None:
    handle = ref.send_request(Get())
    reply: str = await handle.wait(1.0)  # expect: mypy=assignment pyright=reportAssignmentType
    ids: otp.RequestIds[int] = otp.RequestIds()
    ids.add(handle, "label")  # expect: mypy=arg-type pyright=reportArgumentType
    del reply


async def broker_requests(node: otp.Node) -> None:
    # expect: mypy=assignment pyright=reportAssignmentType
    text: str = await node.broker.request("store.get", Get())
    del text


def takes_str(text: str) -> None: ...


async def returns_str(ref: otp.Ref) -> str:
    return await ref.call(Get())  # expect: mypy=return-value pyright=reportReturnType


async def lookups(node: otp.Node) -> None:
    # expect: mypy=union-attr pyright=reportOptionalMemberAccess
    await node.whereis("nope").call(Get())
    found = await node.locate("nope")
    if found is not None:
        found.kill()  # expect: mypy=attr-defined pyright=reportAttributeAccessIssue


async def starts(node: otp.Node) -> None:
    # expect: mypy=assignment pyright=reportAssignmentType
    pool: otp.PoolRef = await node.start(otp.supervisor("s", []))
    # expect: mypy=assignment pyright=reportAssignmentType
    sup: otp.SupervisorRef = await node.start(otp.worker(Store))
    del pool, sup


def downs(message: otp.Down) -> otp.ActorRef:
    return message.ref  # expect: mypy=return-value pyright=reportReturnType
