"""Hostile entries written by a real npm yjs browser: nothing a peer writes into
Y.Map('executions') crashes the monitor, blocks a runtime for good, or keeps a
normal run of another cell from completing."""

import json
import signal
import time

import pytest

from tests.support.notebook import FINAL, block, cell, run_cell, uid
from tests.support.peer import PeerError
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

DEPTH = 1000   # Python's json refuses about this deep; yjs and JSON.parse do not


def nested(depth):
    """``[[[...1...]]]`` as JSON text: Python's own encoder cannot write it."""
    return "[" * depth + "1" + "]" * depth


def set_raw_entry(peer, exec_id, fields, deep_field="x", depth=DEPTH, timeout=10.0):
    """Write ``fields`` plus ``deep_field: [[[...]]]`` (``depth`` levels) as the
    entry ``exec_id``, through the peer's ``setEntry`` command. The command
    line is built by hand because json.dumps cannot encode such a value."""
    value = json.dumps(fields)[:-1] + ', %s: %s}' % (json.dumps(deep_field), nested(depth))
    cid = next(peer._ids)
    line = '{"id": %d, "cmd": "setEntry", "execId": %s, "value": %s}\n' % (
        cid, json.dumps(exec_id), value)
    with peer._write_lock:
        peer.proc.stdin.write(line.encode("utf-8"))
        peer.proc.stdin.flush()
    deadline = time.monotonic() + timeout
    with peer._cond:
        while cid not in peer._replies:
            if time.monotonic() > deadline:
                raise PeerError("no reply to the raw setEntry")
            peer._cond.wait(0.2)
        reply = peer._replies.pop(cid)
    assert reply.get("ok"), reply


def request_fields(exec_id, code, runtime_url, browser_id, **extra):
    entry = {"id": exec_id, "cellId": None, "code": code, "language": "python",
             "runtimeUrl": runtime_url, "session": "default", "status": "requested",
             "requestedBy": browser_id, "requestedAt": int(time.time() * 1000),
             "claimedBy": None, "claimedAt": None, "outputBlockReady": False,
             "outputPosition": None, "startedAt": None, "completedAt": None,
             "stdinRequest": None, "stdinResponse": None, "result": None, "error": None,
             "displayData": []}
    entry.update(extra)
    return entry


def test_deeply_nested_entries_are_refused_and_the_monitor_lives(
        sync_server, runtime, doc_name, peer_factory, monitor_factory):
    b = peer_factory(sync_server.url, doc_name)
    b.set_text(cell("print('after the attack')") + "\n")
    session = "deep-" + uid()
    # A deep entry already in the document when the monitor starts (it used to
    # crash at sync, and again after every restart) ...
    early = "deep-early-" + uid()
    set_raw_entry(b, early, request_fields(early, "print(1)", runtime.url, b.client_id,
                                           session=session))
    mon = monitor_factory(sync_server.url, doc_name, extra_args=["--orphan-timeout", "2"])
    # ... and deep ones written while it runs: a request, and a "running" entry
    # held by a client that is gone (the orphan path writes it back).
    late = "deep-late-" + uid()
    set_raw_entry(b, late, request_fields(late, "print(2)", runtime.url, b.client_id,
                                          session=session), deep_field="result")
    orphan = "deep-orphan-" + uid()
    set_raw_entry(b, orphan, request_fields(orphan, "print(3)", runtime.url, b.client_id,
                                            session=session, status="running",
                                            claimedBy=123456))
    for exec_id in (early, late):
        e = b.wait_entry(exec_id, FINAL, timeout=20)
        assert e["status"] == "error", e
        assert e["error"]["type"] == "InvalidRequest"
        assert "nested deeper than 32 levels" in e["error"]["message"]
    e = b.wait_entry(orphan, FINAL, timeout=30)
    assert e["status"] == "error" and "nested deeper than 32 levels" in e["error"]["message"]
    assert mon.alive
    exec_id, entry = run_cell(b, "print('after the attack')", runtime.url, timeout=30)
    assert entry["status"] == "completed"
    assert block(exec_id, "after the attack\n") in b.text()
    # A restart meets the refused entries again and goes on.
    mon.send_signal(signal.SIGTERM)
    assert mon.wait(timeout=20) == 0
    mon2 = monitor_factory(sync_server.url, doc_name)
    exec_id, entry = run_cell(b, "print('after the attack')", runtime.url, timeout=30)
    assert entry["status"] == "completed"
    assert mon2.alive


def test_huge_entry_is_refused_with_code_cut(sync_server, runtime, doc_name, peer_factory,
                                            monitor_factory):
    b = peer_factory(sync_server.url, doc_name)
    monitor_factory(sync_server.url, doc_name)
    big = "big-" + uid()
    # 300,000 characters but 900 KB in UTF-8: over the code limit in bytes.
    code = "# " + "中" * 300_000
    b.set_entry(big, request_fields(big, code, runtime.url, b.client_id))
    e = b.wait_entry(big, FINAL, timeout=30)
    assert e["status"] == "error" and e["error"]["type"] == "InvalidRequest"
    assert "larger than 262144 bytes" in e["error"]["message"]
    assert len(e["code"].encode("utf-8")) < 4000
    b.set_text(cell("print('fine')") + "\n")
    exec_id, entry = run_cell(b, "print('fine')", runtime.url, timeout=30)
    assert entry["status"] == "completed"


def test_fake_running_entry_of_a_browser_blocks_nothing(sync_server, runtime, doc_name,
                                                        peer_factory, monitor_factory):
    monitor_factory(sync_server.url, doc_name)
    attacker = peer_factory(sync_server.url, doc_name, name="attacker")
    b = peer_factory(sync_server.url, doc_name, name="browser")
    session = "s-" + uid()
    fake = "fake-" + uid()
    # A "running" entry of the same runtime and session, requested long before,
    # naming the attacker's own client id, which stays present in awareness.
    attacker.set_entry(fake, request_fields(fake, "import time; time.sleep(1e9)", runtime.url,
                                            attacker.client_id, session=session,
                                            status="running", claimedBy=attacker.client_id,
                                            requestedAt=int(time.time() * 1000) - 60_000))
    wait_until(lambda: b.entry(fake) is not None, timeout=10)
    code = "print('not blocked')"
    b.set_text(cell(code) + "\n")
    exec_id, entry = run_cell(b, code, runtime.url, session=session, timeout=30)
    assert entry["status"] == "completed"
    assert block(exec_id, "not blocked\n") in b.text()
