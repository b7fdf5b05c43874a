"""Links against a reference model: random link/unlink/exit sequences over a few actors,
some trapping exits, checked against Erlang's exit-signal rules after every step."""

from __future__ import annotations

from collections import Counter as Multiset
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otp

N = 4


class Node(otp.GenServer):
    async def init(self, trap: bool, seen: list[tuple[int, Any]]) -> None:
        self.trap_exit = trap
        self.seen = seen

    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        if request[0] == "link":
            try:
                self.link(request[1])
            except otp.ActorExited as exc:
                return exc.reason
        elif request[0] == "unlink":
            self.unlink(request[1])
        return "ok"

    async def handle_info(self, message: Any) -> None:
        self.seen.append((self.ref.id, message))


@attrs.define
class Model:
    """Erlang/OTP 25's rules for exit signals between processes that have no parent link."""

    traps: list[bool]
    alive: list[bool] = attrs.field(factory=lambda: [True] * N)
    reasons: list[Any] = attrs.field(factory=lambda: [None] * N)
    links: set[frozenset[int]] = attrs.Factory(set)
    exits: list[tuple[int, int | None, Any]] = attrs.Factory(list)  # (to, from, reason)

    def link(self, i: int, j: int) -> Any:
        if i == j:
            return "ok"
        if not self.alive[j]:
            if self.traps[i]:
                self.exits.append((i, j, "noproc"))
                return "ok"
            return "noproc"
        self.links.add(frozenset((i, j)))
        return "ok"

    def unlink(self, i: int, j: int) -> None:
        self.links.discard(frozenset((i, j)))

    def exit(self, i: int, reason: str) -> None:  # ref.exit from outside any actor
        if not self.alive[i]:
            return
        if reason == "kill":
            self.die(i, "killed")
        elif self.traps[i]:
            self.exits.append((i, None, reason))
        elif reason != "normal":
            self.die(i, reason)

    def die(self, i: int, reason: Any) -> None:
        self.alive[i] = False
        self.reasons[i] = reason
        for pair in [p for p in self.links if i in p]:
            self.links.discard(pair)
            (j,) = pair - {i}
            if not self.alive[j]:
                continue
            if self.traps[j]:
                self.exits.append((j, i, reason))
            elif reason != "normal":
                self.die(j, reason)


operation = st.one_of(
    st.tuples(st.just("link"), st.integers(0, N - 1), st.integers(0, N - 1)),
    st.tuples(st.just("unlink"), st.integers(0, N - 1), st.integers(0, N - 1)),
    st.tuples(
        st.just("exit"),
        st.integers(0, N - 1),
        st.sampled_from(["normal", "boom", "kill", "shutdown"]),
    ),
)


@given(
    traps=st.lists(st.booleans(), min_size=N, max_size=N),
    operations=st.lists(operation, max_size=25),
)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_links_match_erlang_exit_signal_rules(
    anyio_backend: str, traps: list[bool], operations: list[tuple[Any, ...]]
) -> None:
    model = Model(traps)

    async def scenario() -> None:
        seen: list[tuple[int, Any]] = []
        async with otp.Node() as node:
            refs = [await node.spawn(Node, trap, seen) for trap in traps]
            index = {ref.id: i for i, ref in enumerate(refs)}
            for op in operations:
                if op[0] == "exit":
                    model.exit(op[1], op[2])
                    refs[op[1]].exit(op[2])
                else:
                    i, j = op[1], op[2]
                    if not model.alive[i]:
                        continue  # a dead actor does nothing
                    if op[0] == "link":
                        assert await refs[i].call(("link", refs[j])) == model.link(i, j)
                    else:
                        model.unlink(i, j)
                        await refs[i].call(("unlink", refs[j]))
                with anyio.fail_after(5):
                    for i, ref in enumerate(refs):
                        if model.alive[i]:
                            await ref.call(("ping",))  # every signal so far is handled
                        else:
                            assert await ref.join() == model.reasons[i]
                assert [r.alive for r in refs] == model.alive
                links = {frozenset((index[a.id], index[b.id])) for a in refs for b in a.links}
                assert links == model.links
                got = Multiset(
                    (index[to], None if m.ref is None else index[m.ref.id], m.reason)
                    for to, m in seen
                )
                assert got == Multiset(model.exits)

    anyio.run(scenario, backend=anyio_backend)


@pytest.mark.anyio
async def test_model_sanity_kill_cascade() -> None:
    model = Model([False, True, False, False])
    model.link(0, 1)
    model.link(0, 2)
    model.link(2, 3)
    model.exit(0, "kill")
    assert model.alive == [False, True, False, False]
    assert model.reasons == ["killed", None, "killed", "killed"]
    assert model.exits == [(1, 0, "killed")]
