"""Consistent hashing: otp.HashRing and worker_pool(dispatch=otp.CONSISTENT_HASH)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import otp

labels = st.lists(
    st.text(alphabet="abcdefghij0123456789.-", min_size=1, max_size=8),
    min_size=1,
    max_size=12,
    unique=True,
)
keys = st.lists(st.one_of(st.text(max_size=12), st.binary(max_size=12), st.integers()), max_size=60)


@settings(max_examples=60, deadline=None)
@given(labels, keys, st.randoms())
def test_routing_depends_only_on_the_key_and_the_members(
    members: list[str], sample: list[Any], rnd: Any
) -> None:
    shuffled = list(members)
    rnd.shuffle(shuffled)
    one, two = otp.HashRing(members), otp.HashRing(shuffled)
    for key in sample:
        assert one.lookup(key) == two.lookup(key)
        assert one.lookup(key) in members


@settings(max_examples=60, deadline=None)
@given(labels.filter(lambda m: len(m) >= 2), keys, st.data())
def test_a_member_leaving_moves_only_its_own_keys(
    members: list[str], sample: list[Any], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(members))
    before = otp.HashRing(members)
    after = otp.HashRing([m for m in members if m != gone])
    for key in sample:
        owner = before.lookup(key)
        if owner == gone:
            # It goes where the ring says its keys go next: its successor.
            assert after.lookup(key) == before.successors(key, 2)[1]
        else:
            assert after.lookup(key) == owner


@settings(max_examples=60, deadline=None)
@given(labels, keys, st.text(alphabet="klmnop", min_size=1, max_size=6))
def test_a_member_joining_takes_keys_only_for_itself(
    members: list[str], sample: list[Any], newcomer: str
) -> None:
    before = otp.HashRing(members)
    after = otp.HashRing(members)
    after.add(newcomer)
    for key in sample:
        assert after.lookup(key) in (before.lookup(key), newcomer)


@settings(max_examples=40, deadline=None)
@given(labels, st.text(max_size=10))
def test_successors_are_distinct_and_start_with_the_owner(members: list[str], key: str) -> None:
    ring = otp.HashRing(members)
    order = ring.successors(key)
    assert order[0] == ring.lookup(key)
    assert sorted(order) == sorted(members)


def test_keys_spread_over_members() -> None:
    ring = otp.HashRing([f"worker-{i}" for i in range(4)])
    counts: dict[str, int] = {}
    for i in range(20_000):
        owner = ring.lookup(f"user-{i}")
        counts[owner] = counts.get(owner, 0) + 1
    assert min(counts.values()) > 20_000 / 4 * 0.6


def test_ring_errors_and_edges() -> None:
    ring: otp.HashRing[str] = otp.HashRing()
    with pytest.raises(otp.NotFound):
        ring.lookup("k")
    ring.add("a")
    ring.add("a")  # same label: still one member
    assert len(ring) == 1 and "a" in ring and list(ring) == ["a"]
    with pytest.raises(TypeError, match="routing key"):
        ring.lookup(1.5)
    with pytest.raises(TypeError, match="routing key"):
        ring.lookup(None)
    with pytest.raises(KeyError):
        ring.remove("b")
    ring.discard("b")
    ring.remove("a")
    assert not ring.members
    with pytest.raises(ValueError, match="replicas"):
        otp.HashRing(replicas=0)
    # The same key in the same ring built anywhere: a fixed answer (no Python hash()).
    assert otp.HashRing(["a", "b", "c"]).lookup("user-42") == otp.HashRing(["c", "b", "a"]).lookup(
        "user-42"
    )


# ---------------------------------------------------------------------------- pools


@attrs.frozen
class Job:
    user: str


class Worker(otp.GenServer):
    async def handle_call(self, request: Any, caller: otp.Caller) -> Any:
        if request == "crash":
            raise RuntimeError("crash")
        return self.ref.name or self.ref.id


def test_pool_key_is_required_for_consistent_hash_only() -> None:
    with pytest.raises(ValueError, match="key="):
        otp.worker_pool("p", Worker, dispatch=otp.CONSISTENT_HASH)
    with pytest.raises(ValueError, match="key="):
        otp.worker_pool("p", Worker, key=lambda m: m)
    with pytest.raises(ValueError, match="CONSISTENT_HASH"):
        otp.worker_pool("p", Worker, dispatch="random")


@pytest.mark.anyio
async def test_pool_routes_a_key_to_the_same_worker_and_only_its_keys_move() -> None:
    async with otp.Node() as node:
        pool = await node.start(
            otp.worker_pool(
                "pool", Worker, size=4, dispatch=otp.CONSISTENT_HASH, key=lambda job: job.user
            )
        )
        assert isinstance(pool, otp.PoolRef)
        users = [f"user-{i}" for i in range(40)]

        async def owners() -> dict[str, Any]:
            # Where each key goes, asked of the pool itself: a worker answers with its id.
            live = {worker.id: worker for worker in pool.workers()}
            return {u: live[await pool.call(Job(u))] for u in users}

        first = await owners()
        assert first == await owners()  # stable while membership is
        assert len(set(first.values())) == 4  # spread over every worker
        for user in users[:5]:
            assert await pool.call(Job(user)) == first[user].id
        # A worker stops: while it is away only its keys go elsewhere.
        victim = first[users[0]]
        victim_id = next(i.id for i in await pool.which_children() if i.ref == victim)
        await pool.terminate_child(victim_id)
        during = await owners()
        for user in users:
            if first[user] is victim:
                assert during[user] is not victim and during[user].alive
            else:
                assert during[user] is first[user]
        # Started again (the same child id, a new incarnation): its keys come back to it.
        fresh = await pool.restart_child(victim_id)
        again = await owners()
        for user in users:
            assert again[user] is (fresh if first[user] is victim else first[user])


@pytest.mark.anyio
async def test_pool_send_request_routes_by_the_key_as_call_does() -> None:
    async with otp.Node() as node:
        pool = await node.start(
            otp.worker_pool(
                "pool", Worker, size=4, dispatch=otp.CONSISTENT_HASH, key=lambda job: job.user
            )
        )
        for user in [f"user-{i}" for i in range(12)]:
            owner = await pool.call(Job(user))
            assert await pool.send_request(Job(user)).wait(2.0) == owner
