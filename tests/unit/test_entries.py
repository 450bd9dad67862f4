"""The one writer of Y.Map('executions') on a real pycrdt document: whole
entries, checked moves, refusals, deletes, and a stdin answer never written
back unasked."""

import logging

from pycrdt import Doc, Map

from mrmd_monitor.entries import Entries

NOW = 1_700_000_000_000


def setup():
    doc = Doc(client_id=7)
    moved = []
    entries = Entries(doc, now_ms=lambda: NOW, on_change=lambda: moved.append(1),
                      on_refused=lambda key: moved.append(("refused", key)), doc_name="d")
    return doc, doc.get("executions", type=Map), entries, moved


def test_write_is_whole_checked_and_indexed(caplog):
    doc, emap, entries, moved = setup()
    emap["e1"] = {"status": "requested", "code": "x", "requestedAt": 1.0}
    entries.reindex("e1")
    assert entries.write("e1", {"status": "claimed", "claimedBy": 7})
    assert emap["e1"] == {"status": "claimed", "code": "x", "requestedAt": 1, "claimedBy": 7}
    assert entries.get("e1").claimed_by == 7 and moved
    emap["e1"] = {**emap["e1"], "status": "cancelled"}
    entries.reindex("e1")
    with caplog.at_level(logging.WARNING, logger="mrmd_monitor.entries"):
        assert not entries.write("e1", {"status": "running"})    # a browser's cancel won
    assert emap["e1"]["status"] == "cancelled"
    assert "illegal move of e1 not written: cancelled -> running" in caplog.text


def test_an_unasked_answer_is_cleared_an_asked_one_kept():
    doc, emap, entries, _ = setup()
    emap["e1"] = {"status": "running", "stdinResponse": {"text": "secret\n"}}
    assert entries.write("e1", {"queued": False})
    assert emap["e1"]["stdinResponse"] is None
    emap["e1"] = {"status": "running", "stdinResponse": {"text": "asked\n"}}
    assert entries.write("e1", {"queued": False}, keep_answer=True)
    assert emap["e1"]["stdinResponse"] == {"text": "asked\n"}


def test_refuse_end_and_retire():
    doc, emap, entries, moved = setup()
    emap["bad"] = {"status": "requested", "code": "x"}
    assert entries.refuse("bad", "the entry is too odd")
    assert ("refused", "bad") in moved                           # its run, if any, stops
    assert emap["bad"]["status"] == "error" and "too odd" in emap["bad"]["error"]["message"]
    assert not entries.refuse("bad", "again")                    # final: left alone
    emap["old"] = {"status": "completed", "completedAt": NOW - 61_000}
    emap["mine"] = {"status": "completed", "completedAt": NOW - 61_000}
    emap["new"] = {"status": "requested"}
    for key in ("old", "mine", "new"):
        entries.reindex(key)
    assert entries.end("new", "Expired", "too old")
    assert emap["new"]["error"]["type"] == "Expired"
    assert entries.retire({"mine"}, 60.0) == 1
    assert "old" not in emap and "mine" in emap and entries.get("old") is None
    assert entries.retire({}, 0.0) == 0                           # retention off


def test_a_write_that_cannot_fit_refuses_the_entry():
    doc, emap, entries, moved = setup()
    emap["e1"] = {"status": "running", "claimedBy": 7, "notes": "n" * 800_000}
    assert not entries.write("e1", {"result": {"text": "r" * 200_000}})
    assert emap["e1"]["status"] == "error" and emap["e1"]["notes"] is None
    assert ("refused", "e1") in moved
