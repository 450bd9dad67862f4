"""Claims over a fake document port: leases, probes and settle, orphans,
retention and stale requests, with the clock passed in."""

import pytest

from mrmd_monitor import protocol as p
from mrmd_monitor.claims import Claims
from mrmd_monitor.config import Config
from tests.support.docport import FakePort

ME = 7


def claims(**cfg):
    port = FakePort(monitors={ME})
    config = Config(sync_url="ws://127.0.0.1:1", claim_settle=0.3, orphan_timeout=5.0, **cfg)
    return Claims(ME, port, config), port


def entry(key, **value):
    return p.parse_entry(key, {"status": "requested", **value})


def test_only_monitors_hold_leases():
    c, port = claims()
    port.monitors = {ME, 42}
    assert c.lease_holder(ME) and c.lease_holder(42)
    assert not c.lease_holder(3_000_000_000) and not c.lease_holder(None)


def ours(*keys):
    """entry_now for acked: every entry still ours (no gate is asked about here)."""
    return lambda key: None


def test_probe_then_settle_only_with_other_monitors():
    c, port = claims()
    c.begin("a")
    c.begin("b")
    c.probe()
    assert c.probe_of("a") == c.probe_of("b") == 1 and port.seq == 1   # one step 1 for both
    c.probe()
    assert port.seq == 1                                   # not again while unanswered
    c.acked(1, now=10.0, entry_now=ours())
    assert c.due("a", 10.0)                                # alone: no settle delay
    c.begin("d")
    port.others = True
    c.probe()
    c.acked(2, now=20.0, entry_now=ours())
    assert not c.due("d", 20.2) and c.due("d", 20.3)
    assert c.next_deadline(20.0) == 0.0                    # "a" is due already


def test_unanswered_probe_is_sent_again_on_a_new_connection():
    c, port = claims()
    c.begin("a")
    port.connected = False
    c.probe()
    assert c.probe_of("a") is None
    port.connected = True
    c.probe()
    assert c.probe_of("a") == 1
    c.reset()
    assert c.probe_of("a") is None
    c.probe()
    assert c.probe_of("a") == 2
    c.confirmed("a")                                       # decided: not a claim to confirm
    c.acked(2, now=1.0, entry_now=ours())
    assert not c.due("a", 1.0) and c.next_deadline(1.0) is None


def test_orphans_after_the_timeout_and_only_of_non_monitors():
    c, port = claims()
    port.monitors = {ME, 42}
    entries = {"gone": entry("gone", status="running", claimedBy=99),
               "live": entry("live", status="running", claimedBy=42),
               "fake": entry("fake", status="claimed", claimedBy=3_000_000_000),
               "mine": entry("mine", status="running", claimedBy=ME)}
    held = {"mine": object()}                              # our run: no orphan
    assert c.orphans(entries, held, now=0.0) == []
    assert c.orphans(entries, held, now=4.9) == []
    found = c.orphans(entries, held, now=5.0)
    assert sorted(e.exec_id for e in found) == ["fake", "gone"]
    forged = {"mine": entry("mine", status="running", claimedBy=ME)}   # ours in name only
    c.orphans(forged, {}, now=10.0)
    assert [e.exec_id for e in c.orphans(forged, {}, now=15.0)] == ["mine"]
    port.connected = False
    assert c.orphans(entries, {}, now=100.0) == []         # disconnected: nobody is judged


def test_stale_requests():
    c, _ = claims(stale_after=600.0)
    now = 1_000_000_000
    entries = {"old": entry("old", status="completed", completedAt=now - 61_000),
               "stale": entry("stale", requestedAt=now - 3_600_000),
               "fresh": entry("fresh", requestedAt=now - 1_000)}
    stale = c.stale(entries, now)
    assert [k for k, _ in stale] == ["stale"] and "60 minutes" in stale[0][1]


def test_sweep_is_due_only_while_something_can_come_due():
    c, _ = claims(retention=3600.0)
    held = {"a": entry("a", status="running", claimedBy=42)}
    done = {"d": entry("d", status="completed", completedAt=1)}
    waiting = {"r": entry("r")}
    assert c.sweep_interval({}, {}, 1.0, 30.0) is None             # an idle document sleeps
    assert c.sweep_interval(waiting, {}, 1.0, 30.0) is None
    assert c.sweep_interval({**waiting, **done}, {}, 1.0, 30.0) == 30.0   # retention only
    assert c.sweep_interval({**done, **held}, {}, 1.0, 30.0) == 1.0       # a lease to watch
    assert c.sweep_interval(held, {"a": object()}, 1.0, 30.0) is None      # ours: not an orphan
    mine = {"m": entry("m", status="claimed", claimedBy=ME)}
    assert c.sweep_interval(mine, {"m": object()}, 1.0, 30.0) is None      # our run
    assert c.sweep_interval(mine, {}, 1.0, 30.0) == 1.0       # in our name, not ours: watched
    c0, _ = claims(retention=0.0)
    assert c0.sweep_interval(done, {}, 1.0, 30.0) is None                  # retention off


def test_settle_window_follows_the_slowest_recent_round_trip():
    from mrmd_monitor.claims import settle_window
    assert settle_window(0.3, []) == 0.3                       # nothing measured yet
    assert settle_window(0.3, [0.01, 0.05]) == 0.3             # fast round trips: the option
    assert settle_window(0.3, [0.05, 0.9, 0.2]) == pytest.approx(1.8)        # twice the slowest
    assert settle_window(0.3, [40.0]) == 5.0                   # capped
    assert settle_window(0.0, [2.0]) == 0.0                    # an operator turned it off


def test_a_slow_probe_round_trip_lengthens_the_settle():
    c, port = claims()
    port.others = True
    c.begin("a")
    c.probe(now=10.0)
    c.acked(1, now=11.2, entry_now=ours())                     # 1.2 s round trip under load
    assert c.next_deadline(11.2) == pytest.approx(2.4)
    c.confirmed("a")
    c.begin("b")
    c.probe(now=20.0)
    c.acked(2, now=20.01, entry_now=ours())                    # the slow one is still recent
    assert c.next_deadline(20.01) == pytest.approx(2.4)
    c.confirmed("b")
    for i in range(16):                                        # until it ages out
        c.begin("d%d" % i)
        c.probe(now=30.0 + i)
        c.acked(port.seq, now=30.0 + i + 0.01, entry_now=ours())
    assert c.settle() == 0.3


def test_backups_wait_longer_while_round_trips_are_slow():
    from mrmd_monitor.claims import backup_delay
    assert backup_delay(0.0, [3.0]) == 0.0                      # the preferred: at once
    assert backup_delay(0.5, []) == 0.5
    assert backup_delay(1.0, [0.1, 0.2]) == 1.0                 # fast: the nominal steps
    assert backup_delay(1.0, [1.0]) == pytest.approx(4.0)       # each 0.5 s step -> 2 round trips
    c, port = claims()
    port.delay = 0.5
    c.rtts.add(0.75)
    assert c.claim_delay(entry("x")) == pytest.approx(1.5)


def test_another_monitors_late_claim_lengthens_this_documents_settle():
    """How late other monitors' claims reach us counts like a round trip, in
    the document where it was seen (entries are any peer's); our own probe
    round trips are the process's, shared by every document."""
    from mrmd_monitor.claims import Latencies
    shared = Latencies()
    config = Config(sync_url="ws://127.0.0.1:1", claim_settle=0.3, orphan_timeout=5.0)
    one = Claims(ME, FakePort(monitors={ME, 42}), config, latencies=shared)
    other = Claims(ME, FakePort(monitors={ME, 42}), config, latencies=shared)
    late = p.parse_entry("x", {"status": "claimed", "claimedBy": 42, "claimedAt": 10_000})
    one.observe(late, now_ms=11_500)                           # arrived 1.5 s after it was made
    assert one.settle() == pytest.approx(3.0) and other.settle() == 0.3
    ours = p.parse_entry("y", {"status": "claimed", "claimedBy": ME, "claimedAt": 0})
    running = p.parse_entry("z", {"status": "running", "claimedBy": 42, "claimedAt": 0})
    skewed = p.parse_entry("w", {"status": "claimed", "claimedBy": 42, "claimedAt": 20_000})
    for e in (ours, running, skewed):                          # not a fresh claim of another
        one.observe(e, now_ms=12_000)
    assert one.late.snapshot() == (1.5,)
    shared.add(40.0)                                           # a stalled probe, capped
    assert other.settle() == 5.0 and shared.snapshot() == (2.5,)
