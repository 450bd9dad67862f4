"""cluster.py: document assignment, claim order; membership as presence.py reads it."""

import collections
import math
import time

import pytest

from mrmd_monitor import cluster as c
from mrmd_monitor import presence as p
from mrmd_monitor.cluster import Member
from tests.support.docport import FakePort as Port


def members(*ids, capacity=8, busy=0):
    return tuple(Member(id=i, capacity=capacity, busy=busy) for i in ids)


def state(member_id, capacity=8, busy=0, version="0.1", name="mrmd-monitor"):
    return {"name": name, "type": "monitor",
            "monitor": {"id": member_id, "capacity": capacity, "busy": busy, "version": version}}


def shares(plan, ids):
    count = collections.Counter(i for chosen in plan.values() for i in chosen)
    return [count[i] for i in ids]


# -- membership ------------------------------------------------------------------

def test_members_from_states_reads_monitors_and_ignores_browsers():
    states = {
        11: state("b"), 12: state("a", capacity=4.0, busy=1.0),  # JS numbers arrive as floats
        13: {"name": "Ada", "color": "#fff"},                    # a browser
        14: None,
    }
    got = p.members_from_states(states)
    assert got == (Member(id="a", capacity=4, busy=1, version="0.1", name="mrmd-monitor"),
                   Member(id="b", capacity=8, busy=0, version="0.1", name="mrmd-monitor"))
    assert got[0].free == 3


def test_members_from_states_drops_the_ones_not_alive():
    states = {1: state("a"), 2: state("b")}
    assert [m.id for m in p.members_from_states(states, alive=lambda cid: cid == 2)] == ["b"]


def test_one_id_under_two_client_ids_counts_once_as_the_busiest():
    states = {1: state("a", busy=1), 2: state("a", busy=5)}
    assert p.members_from_states(states) == (Member(id="a", capacity=8, busy=5, version="0.1",
                                                    name="mrmd-monitor"),)


def test_member_state_round_trips():
    m = Member(id="a", capacity=3, busy=2, version="1.0", name="mon")
    assert p.parse_member({"name": "mon", "type": "monitor", "monitor": p.member_state(m)}) == m


# -- rendezvous --------------------------------------------------------------------

def test_scores_are_stable_known_values():
    # Fixed across processes and machines (no Python hash randomisation).
    assert c.score("k", "a") == c.score("k", "a")
    assert 0 < c._unit("k", "a") < 1
    assert c._unit("doc.md", "mon-1") == pytest.approx(c._unit("doc.md", "mon-1"))
    assert [m.id for m in c.ranking("k", members("a", "b", "c"))] == \
        [m.id for m in c.ranking("k", reversed(members("a", "b", "c")))]


def test_weighted_ranking_gives_shares_proportional_to_weight():
    ms = (Member(id="light", capacity=8, busy=6), Member(id="heavy", capacity=8, busy=2))
    first = collections.Counter(c.ranking("key-%d" % i, ms, weight=lambda m: m.free)[0].id
                                for i in range(4000))
    # free 2 vs free 6: 1/4 and 3/4 of the keys
    assert first["heavy"] / 4000 == pytest.approx(0.75, abs=0.04)


# -- documents ---------------------------------------------------------------------

def test_all_replicas_is_todays_behaviour():
    docs = ["a.md", "b.md"]
    ms = members("x", "y", "z")
    for replicas in (None, 0, 3, 10):
        assert c.assignment(docs, ms, replicas) == {"a.md": ("x", "y", "z"), "b.md": ("x", "y", "z")}
        assert c.followed(docs, ms, "y", replicas) == docs


def test_no_members_no_assignment():
    assert c.assignment(["a"], (), 1) == {"a": ()}


@pytest.mark.parametrize("n_members,n_docs,replicas", [
    (4, 64, 1), (4, 64, 2), (3, 64, 1), (2, 10, 1), (5, 1000, 2), (4, 7, 3),
])
def test_each_document_has_exactly_r_distinct_members_and_shares_are_even(n_members, n_docs,
                                                                          replicas):
    for trial in range(20):
        ids = ["mon-%d-%d" % (trial, k) for k in range(n_members)]
        docs = ["t%d/doc-%03d.md" % (trial, i) for i in range(n_docs)]
        plan = c.assignment(docs, members(*ids), replicas)
        assert set(plan) == set(docs)
        assert all(len(set(v)) == len(v) == replicas for v in plan.values())
        even = n_docs * replicas / n_members
        for share in shares(plan, ids):
            assert math.floor(0.75 * even) <= share <= math.ceil(1.25 * even), (trial, share, even)


def test_assignment_ignores_listing_order_and_duplicates():
    docs = ["d%d" % i for i in range(40)]
    ms = members("a", "b", "c", "d")
    plan = c.assignment(docs, ms, 2)
    assert c.assignment(list(reversed(docs)) + docs[:5], tuple(reversed(ms)), 2) == plan
    got = {}
    for m in ms:
        for d in c.followed(docs, ms, m.id, 2):
            got.setdefault(d, set()).add(m.id)
    assert got == {d: set(v) for d, v in plan.items()}


def _moved(before, after):
    """(document, member) pairs that are new after the change."""
    return sum(len(set(after[d]) - set(before[d])) for d in before)


def test_a_member_leaving_moves_about_its_own_share():
    total, own_total = 0, 0
    for trial in range(40):
        ids = ["mon-%d-%d" % (trial, k) for k in range(4)]
        docs = ["t%d-%d.md" % (trial, i) for i in range(64)]
        before = c.assignment(docs, members(*ids), 1)
        after = c.assignment(docs, members(*ids[:3]), 1)
        own = shares(before, ids)[3]
        moved = _moved(before, after)
        assert moved >= own
        # Untouched documents mostly stay: at most 50 % more moves than its own share.
        assert moved <= 1.5 * own + 2, (trial, moved, own)
        total, own_total = total + moved, own_total + own
    assert total <= 1.2 * own_total


def test_a_member_joining_takes_about_its_share():
    total, even_total = 0, 0
    for trial in range(40):
        ids = ["mon-%d-%d" % (trial, k) for k in range(4)]
        docs = ["t%d-%d.md" % (trial, i) for i in range(64)]
        before = c.assignment(docs, members(*ids), 2)
        after = c.assignment(docs, members(*ids, "new-%d" % trial), 2)
        moved = _moved(before, after)
        assert shares(after, ["new-%d" % trial])[0] <= moved <= 2 * 64 * 2 / 5
        total, even_total = total + moved, even_total + 64 * 2 / 5
    assert total <= 1.3 * even_total


def test_a_monitor_not_yet_seeing_itself_follows_nothing_when_sharding():
    assert c.followed(["a", "b"], members("x"), "me", 1) == []
    assert c.followed(["a", "b"], members("x"), "me", None) == ["a", "b"]


def test_a_thousand_documents_over_sixty_four_members_is_quick():
    import time
    docs = ["doc-%d" % i for i in range(1000)]
    ms = members(*("m%d" % i for i in range(c.MAX_MEMBERS)))
    t0 = time.process_time()
    c.assignment(docs, ms, 2)
    assert time.process_time() - t0 < 5.0  # measured ~0.3 s; generous for a loaded machine


# -- claims ------------------------------------------------------------------------

def test_the_preferred_monitor_claims_at_once_the_others_as_backups_in_turn():
    ms = members("a", "b", "c")
    order = [m.id for m in c.claim_order("http://127.0.0.1:1/mrp/v1", "s", ms)]
    delays = [c.claim_delay("http://127.0.0.1:1/mrp/v1", "s", ms, i, step=0.5) for i in order]
    assert delays == [0.0, 0.5, 1.0]


def test_alone_or_unseen_claims_at_once():
    assert c.claim_delay("u", "s", members("a"), "a") == 0.0
    assert c.claim_delay("u", "s", (), "a") == 0.0
    assert c.claim_delay("u", "s", members("b", "c"), "a") == 0.0


def test_a_monitor_published_full_and_past_its_bound_goes_after_the_others():
    full = Member(id="full", capacity=2, busy=2)
    for i in range(200):
        ms = (full,) + members("x", "y")
        order = [m.id for m in c.claim_order("u", "s%d" % i, ms)]
        assert order[-1] == "full"
        assert c.claim_delay("u", "s%d" % i, ms, "full", step=0.5) == 1.0


def test_all_full_still_has_a_preferred_monitor_and_delays_never_tie():
    ms = (Member(id="a", capacity=1, busy=3), Member(id="b", capacity=1, busy=1))
    assert sorted(c.claim_delay("u", "s", ms, m.id, step=1.0) for m in ms) == [0.0, 1.0]
    ms = members("a", "b", "c", "d")
    for i in range(100):
        delays = [c.claim_delay("u", "s%d" % i, ms, m.id, step=0.5) for m in ms]
        assert sorted(delays) == [0.0, 0.5, 1.0, 1.5]


def test_equal_loads_keep_the_rendezvous_order_and_a_busier_monitor_is_first_less():
    calm = members("a", "b", "c", "d")
    same = tuple(Member(id=m.id, capacity=8, busy=3) for m in calm)
    for i in range(100):
        assert [m.id for m in c.claim_order("u", "s%d" % i, calm)] == \
            [m.id for m in c.claim_order("u", "s%d" % i, same)]
    # within the bound (4, 5, 5, 5 of 19: ceil(1.2 * 20 / 4) = 6), the busier
    # is first for fewer pairs, in proportion to 1 / (1 + busy)
    ms = (Member(id="a", capacity=8, busy=5),) + tuple(
        Member(id=x, capacity=8, busy=4 + (x != "b")) for x in "bcd")
    assert not any(c.over_bound(m, ms) for m in ms)
    firsts = collections.Counter(c.claim_order("u", "s%d" % i, ms)[0].id for i in range(4000))
    assert firsts["b"] / 4000 == pytest.approx((1 / 5) / (1 / 5 + 3 / 6), abs=0.04)
    # loads this close move few pairs from where the plain hash puts them
    moved = sum(c.claim_order("u", "s%d" % i, calm)[0].id
                != c.claim_order("u", "s%d" % i, ms)[0].id for i in range(4000))
    assert moved < 4000 * 0.2


def test_a_monitor_past_its_bound_goes_after_the_ones_within_it():
    loaded = (Member(id="a", capacity=8, busy=6),) + tuple(
        Member(id=x, capacity=8, busy=1) for x in "bcd")
    assert c.over_bound(loaded[0], loaded) and not c.over_bound(loaded[1], loaded)
    for i in range(200):
        order = [m.id for m in c.claim_order("u", "s%d" % i, loaded)]
        assert order[-1] == "a"
        calm = [m.id for m in c.claim_order("u", "s%d" % i, members("a", "b", "c", "d"))]
        assert order[:3] == [x for x in calm if x != "a"]   # the others keep their order


def test_bounded_loads_even_out_a_lumpy_hash():
    """64 pairs placed one after another (each a run that stays busy): the
    first choices alone are lumpy, bounded loads keep every monitor within
    1.2x of even."""
    ids = ["mon%d" % i for i in range(4)]
    plain = collections.Counter(c.claim_order("u", "s-%d" % k, members(*ids))[0].id
                                for k in range(64))
    assert max(plain.values()) / 16 > 1.25 or min(plain.values()) / 16 < 0.75  # the problem
    busy = dict.fromkeys(ids, 0)
    for k in range(64):
        ms = tuple(Member(id=i, capacity=8, busy=busy[i]) for i in ids)
        busy[c.claim_order("u", "s-%d" % k, ms)[0].id] += 1
    assert max(busy.values()) <= 1.2 * 16 + 1 and min(busy.values()) >= 0.75 * 16, busy


def test_cluster_loads_replace_stale_counts_and_make_up_the_mean():
    # This document is followed by a and b (--replicas 2); the cluster has four.
    here = (Member(id="a", capacity=8, busy=0), Member(id="b", capacity=8, busy=0))
    loads = (Member(id="a", capacity=8, busy=9), Member(id="b", capacity=8, busy=2),
             Member(id="c", capacity=8, busy=2), Member(id="d", capacity=8, busy=2))
    for i in range(100):
        assert [m.id for m in c.claim_order("u", "s%d" % i, here, loads)] == ["b", "a"]
        assert c.claim_delay("u", "s%d" % i, here, "b", step=0.5, loads=loads) == 0.0
        assert c.claim_delay("u", "s%d" % i, here, "a", step=0.5, loads=loads) == 0.5
    # a member of the document missing from the cluster's view keeps its own count
    assert [m.id for m in c.claim_order("u", "s", here + (Member(id="e", busy=0),),
                                        loads)][-1] == "a"


def test_one_runtime_and_session_goes_to_one_monitor_and_pairs_spread():
    ms = members("a", "b", "c", "d")
    firsts = collections.Counter(c.claim_order("http://h/mrp/v1", "session-%d" % i, ms)[0].id
                                 for i in range(4000))
    assert all(abs(n / 1000 - 1) < 0.12 for n in firsts.values()), firsts
    assert c.claim_order("http://h/mrp/v1/", "s", ms) == c.claim_order("http://h/mrp/v1", "s", ms)


def test_loads_as_of_a_moment_are_the_same_whenever_one_looks():
    """Each monitor takes a request's loads as published before it was made:
    the answer does not move as newer states arrive, so two monitors looking
    at different times agree on who claims first."""
    h = {}
    h = c.remember(h, (Member(id="a", busy=1, at=1000), Member(id="b", busy=0, at=1000)))
    h = c.remember(h, (Member(id="a", busy=5, at=1200), Member(id="b", busy=0, at=1000)))
    early = c.loads_as_of(h, 1100)
    assert [(m.id, m.busy) for m in early] == [("a", 1), ("b", 0)]
    h = c.remember(h, (Member(id="a", busy=9, at=1400), Member(id="b", busy=2, at=1350)))
    assert c.loads_as_of(h, 1100) == early                 # a later look, the same answer
    assert [(m.id, m.busy) for m in c.loads_as_of(h, 1300)] == [("a", 5), ("b", 0)]
    assert [(m.id, m.busy) for m in c.loads_as_of(h, None)] == [("a", 9), ("b", 2)]
    assert [(m.id, m.busy) for m in c.loads_as_of(h, 10)] == [("a", 1), ("b", 0)]  # oldest


def test_the_history_forgets_members_gone_and_old_states_but_the_one_in_force():
    h = {}
    for t in range(0, 20_000, 100):
        h = c.remember(h, (Member(id="a", busy=t // 100, at=t), Member(id="b", at=5)),
                       keep_ms=1000)
    assert len(h["a"]) <= c.MAX_HISTORY and h["a"][-1].at == 19_900
    assert h["a"][0].at <= 19_900 - 1000                   # the state in force at the cutoff
    assert c.loads_as_of(h, 19_000)[0].busy == 190
    assert len(h["b"]) == 1                                # the same state, kept once
    assert set(c.remember(h, (Member(id="b", at=6),))) == {"b"}
    assert c.remember(h, None) == {}                       # a flood: nothing trusted


def test_a_published_time_round_trips_and_is_bounded():
    m = Member(id="a", capacity=3, busy=2, at=1_795_000_000_000)
    assert p.parse_member({"type": "monitor", "monitor": p.member_state(m)}) == m
    for bad in (-1, 1.5, "1", float("inf"), 2 ** 60):
        state = {"type": "monitor", "monitor": dict(p.member_state(m), at=bad)}
        assert p.parse_member(state).at == 0               # ignored, the member kept


def test_capacity_weights_the_share_of_pairs():
    ms = (Member(id="small", capacity=2), Member(id="big", capacity=6))
    firsts = collections.Counter(c.claim_order("u", "s%d" % i, ms)[0].id for i in range(4000))
    assert firsts["big"] / 4000 == pytest.approx(0.75, abs=0.04)


# -- options -------------------------------------------------------------------------

def test_replicas_and_control_doc_options():
    from mrmd_monitor.config import ConfigError, load_config
    default = load_config(["ws://127.0.0.1:1"], env={})
    assert (default.replicas, default.control_doc) == (None, "mrmd-monitors")
    got = load_config(["ws://127.0.0.1:1", "--replicas", "2", "--control-doc", "ops/monitors"],
                      env={})
    assert (got.replicas, got.control_doc) == (2, "ops/monitors")
    env = load_config(["ws://127.0.0.1:1"], env={"MRMD_MONITOR_REPLICAS": "all",
                                                 "MRMD_MONITOR_CONTROL_DOC": " "})
    assert (env.replicas, env.control_doc) == (None, None)
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(ConfigError, match="--replicas"):
            load_config(["ws://127.0.0.1:1", "--replicas", bad], env={})



# -- metrics ---------------------------------------------------------------------------

def test_flush_latency_histogram_exposition():
    from mrmd_monitor.metrics import FLUSH_BUCKETS, Metrics
    m = Metrics()
    for v in (0.003, 0.7, 9.0):
        m.observe("mrmd_monitor_flush_latency_seconds", v)
    lines = [l for l in m.render_prometheus().splitlines() if "flush_latency" in l]
    assert lines[:2] == ["# HELP mrmd_monitor_flush_latency_seconds From output reaching the "
                         "sync thread to its write into the document.",
                         "# TYPE mrmd_monitor_flush_latency_seconds histogram"]
    buckets = [l for l in lines if "_bucket" in l]
    assert len(buckets) == len(FLUSH_BUCKETS) + 1
    assert buckets[0] == 'mrmd_monitor_flush_latency_seconds_bucket{le="0.001"} 0'
    assert 'mrmd_monitor_flush_latency_seconds_bucket{le="0.005"} 1' in buckets
    assert 'mrmd_monitor_flush_latency_seconds_bucket{le="1.0"} 2' in buckets
    assert buckets[-1] == 'mrmd_monitor_flush_latency_seconds_bucket{le="+Inf"} 3'
    assert lines[-2:] == ["mrmd_monitor_flush_latency_seconds_sum 9.703",
                          "mrmd_monitor_flush_latency_seconds_count 3"]


# -- the coordinator's scale metrics ---------------------------------------------------

ME = 7  # tests.unit.test_coordinator.ME


def _world():
    from tests.unit.test_coordinator import CELL, World
    world = World()
    world.br_text += CELL
    world.to_monitor()
    return world


def test_claims_won_queue_depth_and_flush_latency_through_a_run():
    from mrmd_monitor import messages as m
    from tests.unit.test_coordinator import out
    w = _world()
    runtime = "http://127.0.0.1:9/mrp/v1"
    w.request("e1")
    assert w.co.metrics.get("mrmd_monitor_queue_depth", runtime=runtime) == 1
    assert w.co.metrics.get("mrmd_monitor_claims_won_total") == 1
    w.clock.t += 2
    w.co.tick()
    w.co.on_message(m.RunStarted("e1"))
    assert w.co.metrics.get("mrmd_monitor_queue_depth", runtime=runtime) == 0
    w.co.on_message(out("e1", "hi\n"))
    w.clock.t += 0.02          # the first output shows at once: the tick 20 ms later writes it
    w.tick()
    assert "```output:e1\nhi\n```" in w.text()
    text = w.co.metrics.render_prometheus()
    assert 'mrmd_monitor_flush_latency_seconds_bucket{le="0.01"} 0' in text
    assert 'mrmd_monitor_flush_latency_seconds_bucket{le="0.025"} 1' in text
    assert "mrmd_monitor_flush_latency_seconds_count 1" in text


def test_a_claim_another_monitor_won_counts_as_lost_and_leaves_no_queue():
    w = _world()
    w.port.auto_ack = False
    w.request("e1")
    assert w.co.metrics.get("mrmd_monitor_queue_depth", runtime="http://127.0.0.1:9/mrp/v1") == 1
    w.browser_set("e1", claimedBy=42)   # the other monitor's concurrent claim won
    assert not w.co.runs
    assert w.co.metrics.get("mrmd_monitor_claims_lost_total") == 1
    assert w.co.metrics.get("mrmd_monitor_claims_won_total") == 0
    assert w.co.metrics.get("mrmd_monitor_queue_depth", runtime="http://127.0.0.1:9/mrp/v1") == 0


# -- claims: the preferred monitor first, backups on the server's view ------------------

class _ClusterPort(Port):
    """The test_coordinator port plus what SyncThread adds for several monitors."""

    def __init__(self, port, delays):
        self.__dict__.update(port.__dict__)
        self._port = port
        self.delays = delays
        self.members = ("us", "them")   # cluster.Member objects in SyncThread; only counted
        self.on_catch_up = None

    def claim_delay(self, entry):
        return self.delays.get(entry.exec_id, 0.0)

    def catch_up(self):
        if self.on_catch_up is not None:
            self.on_catch_up()


def _cluster_world(delays):
    w = _world()
    w.port = w.co.port = w.co.claims.port = _ClusterPort(w.port, delays)
    return w


def test_a_backup_waits_its_delay_then_claims_after_a_probe():
    w = _cluster_world({"backup": 1.0})
    w.request("mine")
    w.request("backup", code="x = 1")
    assert list(w.co.runs) == ["mine"]
    assert w.entry("backup")["status"] == "requested"
    assert w.tick() == pytest.approx(1.0)   # the next timer is the backup's
    w.clock.t += 0.5
    w.tick()
    assert list(w.co.runs) == ["mine"]
    w.clock.t += 0.6
    sent = w.port.seq
    w.tick()
    assert w.port.seq == sent + 1 and list(w.co.runs) == ["mine"]  # a probe, no claim yet
    w.tick()                                 # its answer: the server's view, no other claim
    assert list(w.co.runs) == ["mine", "backup"]
    assert w.entry("backup")["status"] == "claimed" and w.entry("backup")["claimedBy"] == ME
    assert w.co.metrics.get("mrmd_monitor_claims_backed_up_total") == 1
    assert w.co.metrics.get("mrmd_monitor_queue_depth", runtime="http://127.0.0.1:9/mrp/v1") == 2


def test_a_backup_leaves_a_request_the_preferred_monitor_claimed():
    w = _cluster_world({"r": 1.0})
    w.request("r")
    w.browser_set("r", status="claimed", claimedBy=42)   # the preferred one
    assert not w.co.claims.deferring()
    w.clock.t += 5
    w.tick()
    w.tick()
    assert not w.co.runs and w.entry("r")["claimedBy"] == 42
    assert w.co.metrics.get("mrmd_monitor_claims_backed_up_total") == 0


def test_a_backup_claims_once_the_preferred_monitor_is_gone():
    delays = {"r": 1.0}
    w = _cluster_world(delays)
    w.request("r")
    w.clock.t += 0.1
    delays["r"] = 0.0        # the preferred monitor left awareness: we rank first now
    w.tick()
    w.tick()
    assert list(w.co.runs) == ["r"]


def test_stopping_drops_deferred_requests():
    w = _cluster_world({"r": 1.0})
    w.request("r")
    w.co.stop_claiming()
    assert not w.co.claims.deferring()
    w.clock.t += 2
    w.tick()
    w.tick()
    assert not w.co.runs and w.entry("r")["status"] == "requested"


def test_a_backup_claim_first_applies_what_waits_on_the_socket():
    """The preferred monitor's claim may sit unread on the socket when the
    probe is answered: it is applied first, and the backup does not claim."""
    w = _cluster_world({"r": 1.0})
    w.request("r")

    def catch_up():
        w.br_map["r"] = {**w.br_map["r"], "status": "claimed", "claimedBy": 42}
        w.to_monitor()

    w.port.on_catch_up = catch_up
    w.clock.t += 1.5
    w.tick()
    w.tick()
    assert not w.co.runs and w.entry("r")["claimedBy"] == 42
    assert w.co.metrics.get("mrmd_monitor_claims_backed_up_total") == 0


def test_a_backup_claims_on_what_the_probe_brought():
    """The answer to the backup's probe brings the preferred monitor's claim
    on one request: only the other one is claimed."""
    w = _cluster_world({"free": 1.0, "taken": 1.0})
    w.port.auto_ack = False
    w.request("free")
    w.request("taken", code="x = 1")
    w.clock.t += 1.1
    sent = w.port.seq
    w.tick()
    assert w.port.seq == sent + 1 and not w.co.runs      # one probe for both, no claim yet
    w.clock.t += 5
    w.tick()
    assert w.port.seq == sent + 1 and not w.co.runs      # still waiting for the answer
    w.browser_set("taken", status="claimed", claimedBy=42)
    w.co.on_probe_acked(w.port.seq)
    w.tick()
    assert list(w.co.runs) == ["free"] and w.entry("taken")["claimedBy"] == 42
    assert w.co.metrics.get("mrmd_monitor_claims_backed_up_total") == 1


def test_a_backup_probe_lost_with_the_connection_is_sent_again():
    w = _cluster_world({"r": 1.0})
    w.port.auto_ack = False
    w.request("r")
    w.clock.t += 1.1
    w.tick()
    first = w.port.seq
    w.co.on_synced()          # reconnected: that probe will never be answered
    w.tick()
    assert w.port.seq > first and not w.co.runs
    w.co.on_probe_acked(w.port.seq)
    w.tick()
    assert list(w.co.runs) == ["r"]


def test_a_request_first_seen_late_is_claimed_after_a_probe_even_by_the_preferred():
    """A backup that saw the request in time may be claiming it: the preferred
    monitor, seeing it only now (its thread was slow), looks at the server first."""
    w = _cluster_world({})
    w.port.auto_ack = False
    now = 1_700_000_000_123
    w.request("fresh", requestedAt=now - 100)
    w.request("old", code="x = 1", requestedAt=now - 2_000)
    assert list(w.co.runs) == ["fresh"]
    w.co.on_probe_acked(w.port.seq)
    w.tick()
    assert list(w.co.runs) == ["fresh", "old"]
    assert w.co.metrics.get("mrmd_monitor_claims_backed_up_total") == 0


def test_the_preferred_monitor_claiming_after_its_own_probe_is_no_backup():
    """Seen late, the preferred monitor probes before it claims: a claim made
    once that probe is answered is still its own, not a backup's."""
    w = _cluster_world({})
    w.port.auto_ack = False
    w.request("old", requestedAt=1_700_000_000_123 - 2_000)
    assert not w.co.runs
    w.clock.t += 0.2          # the probe's round trip
    w.co.on_probe_acked(w.port.seq)
    w.tick()
    assert list(w.co.runs) == ["old"]
    assert w.co.metrics.get("mrmd_monitor_claims_backed_up_total") == 0


def test_alone_in_the_cluster_nothing_waits():
    w = _cluster_world({})
    w.port.others = False     # no other monitor in this document's awareness
    w.port.auto_ack = False
    w.request("old", requestedAt=1_700_000_000_123 - 2_000)
    assert list(w.co.runs) == ["old"]


def test_a_sync_thread_publishes_itself_and_stops_being_a_member_when_leaving():
    """Not started: its awareness as it will be sent. A document being left
    claims nothing more, so it is no member there (the others claim at once)."""
    from mrmd_monitor import __version__
    from mrmd_monitor.config import Config
    from mrmd_monitor.sync import SyncThread
    cfg = Config(sync_url="ws://127.0.0.1:9", docs=("doc",), max_workers=3, name="alpha")
    sync = SyncThread(config=cfg, doc_name="doc", pool=None, member_id="alpha-1")
    before = int(time.time() * 1000)
    state = sync.presence.state()
    assert state["user"]["type"] == "monitor"
    got = p.parse_member(state)
    assert got == Member(id="alpha-1", capacity=3, busy=0, version=__version__, name="alpha",
                         at=got.at)
    assert before - 5000 <= got.at <= time.time() * 1000     # when it was published
    sync._stop_deadline = 0.0     # as _begin_stop sets it
    sync._publish_member()
    state = sync.presence.state()
    assert state["user"]["type"] == "monitor" and p.STATE_KEY not in state
    assert p.parse_member(state) is None
