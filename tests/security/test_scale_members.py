"""Hostile awareness states: any peer of the sync server can
publish a state; presence.py takes a member only from a state inside every
bound, and a flood of members makes it trust none (see also
test_scale_awareness_flood.py for the same against real processes)."""

import pytest

from mrmd_monitor import cluster as c
from mrmd_monitor import presence as p
from mrmd_monitor.cluster import Member


def state(member_id, capacity=8, busy=0, version="0.1", name="mrmd-monitor"):
    return {"name": name, "type": "monitor",
            "monitor": {"id": member_id, "capacity": capacity, "busy": busy, "version": version}}


@pytest.mark.parametrize("info", [
    {"id": "", "capacity": 8, "busy": 0},
    {"id": "x" * (c.MAX_ID_CHARS + 1), "capacity": 8, "busy": 0},
    {"id": 7, "capacity": 8, "busy": 0},
    {"id": "a", "capacity": 0, "busy": 0},
    {"id": "a", "capacity": -3, "busy": 0},
    {"id": "a", "capacity": float("nan"), "busy": 0},
    {"id": "a", "capacity": float("inf"), "busy": 0},
    {"id": "a", "capacity": 2.5, "busy": 0},
    {"id": "a", "capacity": True, "busy": 0},
    {"id": "a", "capacity": c.MAX_CAPACITY + 1, "busy": 0},
    {"id": "a", "capacity": "8", "busy": 0},
    {"id": "a", "capacity": 8, "busy": -1},
    {"id": "a", "capacity": 8},
    [1, 2, 3],
    "monitor",
])
def test_a_state_outside_the_bounds_is_not_a_member(info):
    assert p.parse_member({"name": "m", "type": "monitor", "monitor": info}) is None


def test_long_name_and_version_are_dropped_not_the_member():
    m = p.parse_member({"name": "n" * 10_000, "type": "monitor",
                        "monitor": {"id": "a", "capacity": 2, "busy": 0, "version": "v" * 10_000}})
    assert m == Member(id="a", capacity=2, busy=0, version="", name="")


def test_more_members_than_any_real_cluster_is_a_flood_and_trusts_none():
    states = {i: state("m-%05d" % i) for i in range(c.MAX_MEMBERS)}
    assert len(p.members_from_states(states)) == c.MAX_MEMBERS
    states[10**6] = state("0000-one-too-many")
    assert p.members_from_states(states) is None
    # Then: every document followed, every claim at once (a lone monitor's behaviour).
    assert c.followed(["a", "b"], None, "me", 1) == ["a", "b"]
    assert c.claim_delay("u", "s", None, "me") == 0.0


def test_a_deeply_nested_or_huge_state_is_not_a_member():
    deep = {}
    cur = deep
    for _ in range(5000):
        cur["monitor"] = {}
        cur = cur["monitor"]
    assert p.parse_member(deep) is None
    assert p.parse_member({"type": "monitor", "monitor": {"id": "a", "capacity": 10 ** 400, "busy": 0}}) is None
    assert p.parse_member({"type": "monitor", "monitor": {"id": "a", "capacity": 1, "busy": 10 ** 400}}) is None
