"""A burst of requests splits evenly over the monitors, by (runtime, session) pair.

Requests made at once all see the same published loads (as of a moment
before them, all zero in a quiet cluster), so the rendezvous hash alone used
to decide: 48 runs over 8 pairs went 18/12/12/6 to four monitors. The pairs
requested in the same moment (cluster.burst_keys) are placed one after
another under the bounded-load rule, in one order every monitor computes
alike. Pure functions; no monitors run here."""

import collections
import random

import pytest

from mrmd_monitor import cluster as c
from mrmd_monitor.cluster import Member

RUNTIME = "http://127.0.0.1:8000/mrp/v1"
T0 = 1_800_000_000_000


def monitors(n, capacity=8):
    return tuple(Member(id="mon%d" % i, capacity=capacity) for i in range(n))


def burst_requests(pairs, runs_per_pair, start=T0, spacing_ms=0):
    """(runtime, session, requestedAt) of every run, in the order they were written."""
    out, t = [], start
    for _ in range(runs_per_pair):
        for runtime, session in pairs:
            out.append((runtime, session, t))
            t += spacing_ms
    return out


def first_choices(requests, members, seen=None):
    """Which monitor each run goes to first, as a monitor computes it, one run
    at a time, from the requests it has seen (all of them by default)."""
    seen = requests if seen is None else seen
    firsts = []
    for runtime, session, at in requests:
        burst = c.burst_keys(seen, at)
        firsts.append(c.claim_order(runtime, session, members, burst=burst)[0].id)
    return firsts


def test_the_hash_alone_splits_this_burst_unevenly():
    pairs = [(RUNTIME, "s%d" % k) for k in range(8)]
    plain = collections.Counter(c.claim_order(r, s, monitors(4))[0].id for r, s in pairs)
    assert sorted(plain.values()) == [1, 2, 2, 3]   # 6/12/12/18 runs: the problem


@pytest.mark.parametrize("spacing_ms", [0, 1, 7])
def test_forty_eight_runs_over_eight_pairs_split_evenly(spacing_ms):
    pairs = [(RUNTIME, "s%d" % k) for k in range(8)]
    requests = burst_requests(pairs, 6, spacing_ms=spacing_ms)
    firsts = first_choices(requests, monitors(4))
    by_monitor = collections.Counter(firsts)
    even = len(requests) / 4
    assert all(0.75 * even <= n <= 1.25 * even for n in by_monitor.values()), by_monitor
    assert len(by_monitor) == 4
    # Per-pair FIFO: every run of a pair goes to one monitor.
    owner = {}
    for (runtime, session, _), first in zip(requests, firsts):
        assert owner.setdefault(session, first) == first


def test_every_monitor_computes_the_same_order_whenever_it_looks():
    pairs = [(RUNTIME, "s%d" % k) for k in range(8)]
    requests = burst_requests(pairs, 6, spacing_ms=3)
    ms = monitors(4)
    everything = first_choices(requests, ms)
    shuffled = requests[:]
    random.Random(7).shuffle(shuffled)
    assert first_choices(requests, ms, seen=shuffled) == everything   # any listing order
    # A monitor that looks early, before the later requests were written,
    # places each run as one that saw them all.
    early = [first_choices([r], ms, seen=requests[:i + 1])[0] for i, r in enumerate(requests)]
    assert early == everything


def test_requests_long_before_are_not_part_of_the_burst():
    old = [(RUNTIME, "old%d" % k, T0 - 10_000) for k in range(30)]
    now = [(RUNTIME, "s%d" % k, T0) for k in range(8)]
    assert c.burst_keys(old + now, T0) == c.burst_keys(now, T0)
    assert len(c.burst_keys(now, T0)) == 8


def test_uneven_capacities_and_three_monitors_stay_within_the_band():
    for ms, pairs in ((monitors(3), 9), ((Member(id="big", capacity=6),
                                          Member(id="small", capacity=2)), 8)):
        requests = burst_requests([(RUNTIME, "p%d" % k) for k in range(pairs)], 1)
        by_monitor = collections.Counter(first_choices(requests, ms))
        total_capacity = sum(m.capacity for m in ms)
        for m in ms:
            even = pairs * m.capacity / total_capacity
            assert 0.75 * even <= by_monitor[m.id] <= 1.25 * even, by_monitor


def test_a_flood_of_pairs_is_bounded_and_falls_back_to_the_hash():
    flood = [(RUNTIME, "f%d" % k, T0) for k in range(5000)]
    burst = c.burst_keys(flood, T0)
    assert len(burst) == c.MAX_BURST_PAIRS
    ms = monitors(4)
    outside = next(s for _, s, _ in flood if c.run_key(RUNTIME, s) not in burst)
    assert c.claim_order(RUNTIME, outside, ms, burst=burst) == c.claim_order(RUNTIME, outside, ms)
    assert c.claim_delay(RUNTIME, outside, ms, "mon0", burst=burst) == \
        c.claim_delay(RUNTIME, outside, ms, "mon0")
