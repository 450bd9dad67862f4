"""Hostile peers on the coordinator's side: nothing a
peer writes into Y.Map('executions') wedges a document, costs more than its
size, poisons a delay, blocks a runtime for good, or runs a cell twice.

On a real pycrdt document with a second pycrdt document as the peer (the
World of tests/unit/test_coordinator.py)."""

import time

import pytest

from mrmd_monitor import document
from mrmd_monitor import messages as m
from mrmd_monitor import protocol as p
from mrmd_monitor.claims import Claims
from mrmd_monitor.config import Config
from tests.support.docport import FakePort
from tests.unit.test_coordinator import BROWSER, CELL, ME, World

# mrmd-sync closes a connection that sends a message over this (maxPayload).
SYNC_LIMIT = 1 << 20
URL = "http://127.0.0.1:9/mrp/v1"


def world(**config):
    w = World(**config)
    w.br_text += CELL
    w.to_monitor()
    w.sent = []
    # Every update the monitor makes is a message to the sync server (the
    # peer's, applied by World.to_monitor, are not).
    w.sent_sub = w.mon.observe(
        lambda event: None if w.applying else w.sent.append(len(event.update)))
    return w


def peer_update_size(w, exec_id, value):
    """Write ``value`` as the peer does and return the size of its update."""
    before = w.br.get_state()
    w.br_map[exec_id] = value
    return len(w.br.get_update(before))


def request(exec_id, **extra):
    return {"id": exec_id, "cellId": None, "code": "print('hi')", "language": "python",
            "runtimeUrl": URL, "session": "s", "status": "requested", "requestedBy": BROWSER,
            "requestedAt": 1_700_000_000_000, "claimedBy": None, "claimedAt": None,
            "outputBlockReady": False, "stdinResponse": None, "displayData": [], **extra}


# -- nothing a peer writes can wedge a document -------------------------------------

def test_an_entry_just_under_the_sync_limit_never_makes_us_send_over_it():
    w = world()
    pad = ["x" * 16384] * 63 + ["y" * 14000]
    size = peer_update_size(w, "big", request("big", pad=pad))
    pad[-1] += "y" * (SYNC_LIMIT - 8 - size)             # 63 strings of 16 KiB and one more
    size = peer_update_size(w, "big", request("big", pad=pad))
    assert SYNC_LIMIT - 16 < size < SYNC_LIMIT          # the peer's own update goes through
    w.to_monitor()
    w.tick()
    assert w.sent and max(w.sent) < SYNC_LIMIT - 64 * 1024   # with room to spare
    e = w.entry("big")
    assert e["status"] == "error" and e["error"]["type"] == "InvalidRequest"
    assert "larger than" in e["error"]["message"] and w.pool.calls == []
    w.request("next")                                    # the document still runs cells
    assert w.entry("next")["status"] == "claimed" and w.entry("next")["claimedBy"] == ME


def test_displays_added_to_a_large_entry_are_cut_not_sent_over_the_limit():
    w = world(max_display_bytes=4 << 20)                 # an operator raised the budget
    w.request("e1", notes="n" * 300_000)                # a large entry we still accept
    w.clock.t += 2
    w.tick()
    w.co.on_message(m.RunStarted("e1"))
    items = tuple({"mimeType": "text/html", "assetId": None, "data": "<p>%d</p>" % i + "h" * 200_000}
                  for i in range(4))
    w.co.on_message(m.DisplayItems("e1", items))
    w.co.on_message(m.RunFinished("e1", result={"success": True}))
    assert max(w.sent) < SYNC_LIMIT - 64 * 1024
    e = w.entry("e1")
    assert e["status"] == "completed"
    kept = [d for d in e["displayData"] if d["mimeType"] == "text/html"]
    assert 0 < len(kept) < 4
    assert "left out" in e["displayData"][-1]["data"]    # the person sees why


# -- no input costs more than its size ------------------------------------------------

def test_unrunnable_requests_are_dropped_before_any_cell_search(monkeypatch):
    w = world()
    w.br_text += "```python\n```\n\n" * 100_000
    w.to_monitor()
    scans = []
    real = document.iter_cells

    def counting(text):
        scans.append(len(text))
        return real(text)

    monkeypatch.setattr(document, "iter_cells", counting)
    for i in range(200):
        w.br_map["far%d" % i] = request("far%d" % i, runtimeUrl="http://10.0.0.5:9/mrp/v1",
                                        code="x = %d" % i)
    w.br_map["ok"] = request("ok", code="print('hi')")
    started = time.monotonic()
    w.to_monitor()
    took = time.monotonic() - started
    assert w.entry("far7")["status"] == "error"
    assert w.entry("far7")["error"]["type"] == "RuntimeNotAllowed"
    assert w.entry("ok")["status"] == "claimed"
    assert len(scans) <= 1                               # the text is read through once
    assert took < 5.0


# -- delays: per document, from real claims only, capped ------------------------------

def test_a_forged_late_claim_poisons_no_delay():
    config = Config(sync_url="ws://127.0.0.1:1", claim_settle=0.3, orphan_timeout=5.0)
    port = FakePort(monitors={ME, 42}, others=True)
    port.delay = 0.5
    one = Claims(ME, port, config)
    forged = p.parse_entry("x", {"status": "claimed", "claimedBy": BROWSER, "claimedAt": 1_000})
    one.observe(forged, now_ms=60_000)                   # "59 s late", by a client no monitor
    assert one.settle() == 0.3
    assert one.claim_delay(p.parse_entry("y", {"status": "requested"})) == 0.5
    real = p.parse_entry("z", {"status": "claimed", "claimedBy": 42, "claimedAt": 1_000})
    one.observe(real, now_ms=60_000)                     # a real monitor with a skewed clock
    assert 0.3 < one.settle() <= 5.0
    assert one.claim_delay(p.parse_entry("y", {"status": "requested"})) <= 5.0
    other = Claims(ME, FakePort(monitors={ME, 42}, others=True), config)
    assert other.settle() == 0.3                         # another document is not touched


# -- a claim in our name that we do not hold blocks nobody -----------------------------

def test_a_forged_running_entry_in_our_name_is_marked_lost():
    w = world(orphan_timeout=5.0)
    w.br_map["forged"] = {"id": "forged", "code": "a = 1", "runtimeUrl": URL, "session": "s",
                          "status": "running", "claimedBy": ME,
                          "requestedAt": 1_700_000_000_000 - 5}
    w.to_monitor()
    w.clock.t += 1
    w.tick()
    assert w.entry("forged")["status"] == "running"      # not before the orphan timeout
    w.clock.t += 5
    w.tick()
    e = w.entry("forged")
    assert e["status"] == "error" and "does not hold" in e["error"]["message"]


# -- the dispatch gate ------------------------------------------------------------------

def test_a_takeover_in_the_answer_to_the_dispatch_probe_keeps_the_gate_shut():
    w = world()
    gate = w.dispatching("d1")
    # Another monitor's takeover, written at the same moment as our mark, is
    # applied with the probe's answer, before the entries are looked at.
    w.to_browser()
    w.br_map["d1"] = {**w.br_map["d1"], "status": "claimed", "claimedBy": 42,
                      "dispatchedAt": None}
    w.applying = True
    w.mon.apply_update(w.br.get_update(w.mon.get_state()))
    w.applying = False
    w.co.on_probe_acked(w.port.seq)
    assert not gate.is_set()
    w.co.on_entries_changed(["d1"])
    assert not gate.is_set() and "d1" not in w.co.runs and ("cancel", "d1") in w.pool.calls


def test_a_self_declared_monitors_waiting_claim_blocks_a_runtime_only_so_long():
    """Without a cluster secret any peer can say it is a monitor (type:
    "monitor" in its awareness): its claim is a lease. One that is first in
    line and never moves is taken over after three orphan timeouts."""
    w = world(orphan_timeout=5.0)
    w.port.monitors.add(99)                              # the peer, believed a monitor
    w.br_map["fake"] = request("fake", code="a = 1", status="claimed", claimedBy=99,
                               requestedAt=1_700_000_000_000 - 5)
    w.request("mine")
    w.clock.t += 2
    w.tick()
    assert w.entry("mine")["queuePosition"] == 1 and w.pool.calls == []
    for _ in range(14):
        w.clock.t += 1
        w.tick()
    assert w.entry("fake")["claimedBy"] == 99            # 16 s: not yet
    for _ in range(4):
        w.clock.t += 1
        w.tick()
    assert w.entry("fake")["claimedBy"] == ME            # taken over: run once, by us
    for _ in range(3):
        w.clock.t += 1
        w.tick()
    assert w.pool.names("submit") == ["fake"]            # in order: then ours
