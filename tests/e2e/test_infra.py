"""The test infrastructure itself, with real processes: sync server, browser peers, runtime.

These tests do not involve the monitor; a second browser peer with auto-block
off plays the monitor's part where one is needed.
"""

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.support import procs
from tests.support.peer import PeerError
from tests.support.ports import port_open
from tests.support.procs import ManagedProcess, MissingNodeModules, ProcessFailed
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

INTRO = "# Notes é 😀 中文\n\nSome prose with accents: café, naïve.\n\n"
CELL = "```python\nprint('hi')\n```"


def claim(monitor_peer, exec_id):
    """Play the monitor: mark the entry claimed by `monitor_peer`, as the monitor would."""
    entry = monitor_peer.wait_entry(exec_id, "requested")
    entry = dict(entry, status="claimed", claimedBy=monitor_peer.client_id, claimedAt=int(time.time() * 1000))
    monitor_peer.set_entry(exec_id, entry)
    return entry


_barriers = iter(range(1, 10**9))


def barrier(src, dst):
    """Return once `dst` has applied every update `src` sent before (updates of one peer arrive in order).

    When `dst` answers the next command, the deferred reactions (auto-block) to
    those updates have run as well.
    """
    n = next(_barriers)
    src.set_entry("__barrier__", n)
    dst.wait_entry("__barrier__", lambda e: e == n)


# ---------------------------------------------------------------------- two peers
def test_two_peers_see_each_others_text_and_entries(sync_server, doc_name, peer_factory):
    a = peer_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    assert a.client_id != b.client_id

    a.set_text(INTRO + CELL + "\n")
    assert b.wait_text(lambda t: t == INTRO + CELL + "\n")

    b.insert_after("café", " au lait")
    a.wait_text("café au lait, naïve")
    emoji_end = a.text().index("😀") + 2  # JS indices count UTF-16 code units
    a.insert(emoji_end, "!")
    b.wait_text("😀! 中文")

    entry = a.request("exec-1", "print('hi')", "http://127.0.0.1:9/mrp/v1", cell_id="cell-1")
    assert entry["status"] == "requested"
    assert entry["requestedBy"] == a.client_id
    seen = b.wait_entry("exec-1", "requested")
    assert seen == entry
    assert set(seen) == {
        "id", "cellId", "code", "language", "runtimeUrl", "session", "status", "requestedBy", "requestedAt",
        "claimedBy", "claimedAt", "outputBlockReady", "outputPosition", "startedAt", "completedAt",
        "stdinRequest", "stdinResponse", "result", "error", "displayData",
    }
    assert (seen["language"], seen["session"], seen["displayData"], seen["outputBlockReady"]) == (
        "python", "default", [], False)

    b.set_entry("weird", {"nested": [1, "two", None]})
    assert a.wait_entry("weird", lambda e: e == {"nested": [1, "two", None]})
    b.delete_entry("weird")
    a.wait_entry("weird", lambda e: e is None)
    assert set(a.entries()) == {"exec-1"}


def test_a_peer_that_joins_later_gets_the_full_state(sync_server, doc_name, peer_factory):
    a = peer_factory(sync_server.url, doc_name)
    a.set_text(INTRO + CELL)
    a.request("exec-late", "print('hi')", "http://127.0.0.1:9/mrp/v1")
    size = a.state_size()
    assert size > len(INTRO)
    assert a.quit() == 0  # the server keeps the document in memory

    c = peer_factory(sync_server.url, doc_name)
    assert c.text() == INTRO + CELL
    assert c.entry("exec-late")["code"] == "print('hi')"
    assert c.state_size() >= size - 16


def test_awareness_and_reconnect(sync_server, doc_name, peer_factory):
    a = peer_factory(sync_server.url, doc_name, name="alice")
    b = peer_factory(sync_server.url, doc_name, name="bob")
    states = wait_until(lambda: dict(a.awareness()).get(b.client_id), message="a never saw b's awareness")
    assert states["user"]["name"] == "bob"

    b.disconnect()
    b.wait_event(lambda e: e == {"event": "status", "status": "disconnected"})
    wait_until(lambda: b.client_id not in dict(a.awareness()), message="b's awareness state stayed")
    a.set_text("written while b was away")
    witness = peer_factory(sync_server.url, doc_name, name="witness")
    witness.wait_text("written while b was away")
    assert b.text() == ""
    b.connect()
    b.wait_text("written while b was away")
    assert len(b.events("synced")) == 2


def test_typing_one_character_per_transaction(sync_server, doc_name, peer_factory):
    a = peer_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    a.set_text("start|end")
    b.wait_text("start|end")
    b.watch("none")
    b.clear_events()
    a.type_after("start|", "héllo 😀", delay_ms=5)
    assert b.wait_text("start|héllo 😀end")
    text_events = b.events("text")
    assert len(text_events) >= 2  # typed one character at a time
    assert text_events[-1]["length"] == len("start|héllo end") + 2

    # The caret follows the typed text even when another peer inserts before it.
    a.set_text("X:")
    b.wait_text(lambda t: t == "X:")
    a.watch("none")
    typing = []
    worker = threading.Thread(target=lambda: typing.append(a.type_after("X:", "abcdefghij", delay_ms=20)))
    worker.start()
    try:
        a.wait_event(lambda e: e.get("event") == "text" and e["length"] >= 4, timeout=5)
        b.insert(0, "PREFIX ")
    finally:
        worker.join(15)
    assert typing and typing[0]["typed"] == 10
    assert a.wait_text(lambda t: t == "PREFIX X:abcdefghij")


def test_commands_report_errors(sync_server, doc_name, peer_factory):
    a = peer_factory(sync_server.url, doc_name)
    with pytest.raises(PeerError, match="anchor not found"):
        a.insert_after("nowhere", "x")
    with pytest.raises(PeerError, match="unknown command"):
        a.call("noSuchCommand")
    with pytest.raises(PeerError, match="out of range"):
        a.delete(0, 5)
    assert a.entry("missing") is None
    assert a.info()["doc"] == doc_name


# ---------------------------------------------------------------------- editor behaviour
def test_auto_block_creates_output_block_on_claim(sync_server, doc_name, peer_factory):
    browser = peer_factory(sync_server.url, doc_name)
    fake_monitor = peer_factory(sync_server.url, doc_name, auto_block=False)
    text = INTRO + CELL + "\n\nAfter the cell.\n"
    browser.set_text(text)
    browser.request("exec-ab", "print('hi')", "http://127.0.0.1:9/mrp/v1")
    claim(fake_monitor, "exec-ab")

    entry = fake_monitor.wait_entry("exec-ab", "ready")
    assert entry["outputBlockReady"] is True
    assert entry["claimedBy"] == fake_monitor.client_id
    pos = entry["outputPosition"]
    assert pos["assoc"] == -1 and pos["tname"] == "content" and set(pos["item"]) == {"client", "clock"}
    assert pos["item"]["client"] == browser.client_id

    expected = INTRO + CELL + "\n\n```output:exec-ab\n```" + "\n\nAfter the cell.\n"
    assert fake_monitor.wait_text(lambda t: t == expected)
    content_start = expected.index("```output:exec-ab\n") + len("```output:exec-ab\n")
    content_start_js = len(expected[:content_start].encode("utf-16-le")) // 2
    assert fake_monitor.resolve_position(pos) == content_start_js

    # Output written at the position stays inside the block (assoc -1 keeps the
    # position before text inserted there).
    fake_monitor.insert(content_start_js, "hi\n")
    fake_monitor.insert(fake_monitor.resolve_position(pos), "first ")
    assert browser.wait_text("```output:exec-ab\nfirst hi\n```")

    # Only the first claim creates a block.
    fake_monitor.set_entry("exec-ab", dict(entry, status="claimed"))
    barrier(fake_monitor, browser)
    assert browser.text().count("```output:") == 1


def test_auto_block_reuses_an_existing_output_block(sync_server, doc_name, peer_factory):
    browser = peer_factory(sync_server.url, doc_name)
    fake_monitor = peer_factory(sync_server.url, doc_name, auto_block=False)
    browser.set_text(INTRO + CELL + "\n\n```output:exec-old\nold line 1\nold line 2\n```\n\nTail\n")
    for n in range(1, 4):
        exec_id = "exec-run-%d" % n
        browser.request(exec_id, "print('hi')", "http://127.0.0.1:9/mrp/v1")
        claim(fake_monitor, exec_id)
        fake_monitor.wait_entry(exec_id, "ready")
        fake_monitor.insert_after("```output:%s\n" % exec_id, "output %d\n" % n)
        expected = INTRO + CELL + "\n\n```output:%s\noutput %d\n```\n\nTail\n" % (exec_id, n)
        assert browser.wait_text(lambda t: t == expected)


def test_auto_block_does_nothing_without_the_cell_or_after_a_cancel(sync_server, doc_name, peer_factory):
    browser = peer_factory(sync_server.url, doc_name)
    fake_monitor = peer_factory(sync_server.url, doc_name, auto_block=False)
    browser.set_text("no cells here\n")
    browser.request("exec-nocell", "print('hi')", "http://127.0.0.1:9/mrp/v1")
    claim(fake_monitor, "exec-nocell")
    browser.wait_for_line("cell for exec-nocell not found", stream="stderr")
    assert browser.entry("exec-nocell")["status"] == "claimed"
    assert browser.text() == "no cells here\n"

    # A peer with auto-block off never creates blocks.
    fake_monitor.set_text(CELL)
    browser.wait_text(CELL)
    browser.set_auto_block(False)
    browser.request("exec-off", "print('hi')", "http://127.0.0.1:9/mrp/v1")
    claim(fake_monitor, "exec-off")
    barrier(fake_monitor, browser)
    assert browser.text() == CELL
    assert browser.entry("exec-off")["status"] == "claimed"


def test_cancel_and_stdin_like_the_editor(sync_server, doc_name, peer_factory):
    browser = peer_factory(sync_server.url, doc_name)
    fake_monitor = peer_factory(sync_server.url, doc_name, auto_block=False)
    browser.set_text(CELL + "\n")
    browser.request("exec-in", "print('hi')", "http://127.0.0.1:9/mrp/v1")
    claim(fake_monitor, "exec-in")
    entry = fake_monitor.wait_entry("exec-in", "ready")

    entry = dict(entry, status="running", stdinRequest={"prompt": "Name: ", "password": False, "requestedAt": 1})
    fake_monitor.set_entry("exec-in", entry)
    with_stdin = CELL + "\n\n```output:exec-in\n```\n\n```stdin:exec-in\n```\n"
    assert browser.wait_text(lambda t: t == with_stdin)

    browser.answer_stdin("exec-in", "Ada")
    answered = fake_monitor.wait_entry("exec-in", lambda e: e["stdinResponse"] is not None)
    assert answered["stdinResponse"]["text"] == "Ada\n"
    assert isinstance(answered["stdinResponse"]["respondedAt"], int)
    assert fake_monitor.wait_text(lambda t: t == CELL + "\n\n```output:exec-in\n```\n")

    # A second input() shows the block again; the end of the run removes it.
    fake_monitor.set_entry("exec-in", dict(answered, stdinRequest={"prompt": "Age: ", "password": False,
                                                                    "requestedAt": 2}))
    assert browser.wait_text(lambda t: t == with_stdin)
    fake_monitor.set_entry("exec-in", dict(answered, status="error"))
    assert browser.wait_text(lambda t: t == CELL + "\n\n```output:exec-in\n```\n")
    fake_monitor.set_entry("exec-in", dict(answered, status="running"))
    browser.wait_entry("exec-in", "running")

    assert browser.cancel("exec-in") is True
    cancelled = fake_monitor.wait_entry("exec-in", "cancelled")
    assert cancelled["completedAt"] >= cancelled["requestedAt"]
    fake_monitor.set_entry("exec-in", dict(cancelled, status="completed"))
    browser.wait_entry("exec-in", "completed")
    assert browser.cancel("exec-in") is False


# ---------------------------------------------------------------------- processes
def test_monitor_factory_reports_a_failed_start(sync_server, doc_name, monitor_factory):
    """Only the fixture's plumbing: an unknown option makes any monitor exit with an error."""
    monitor = monitor_factory(sync_server.url, doc_name, extra_args=["--no-such-option-for-tests"],
                              wait_ready=False)
    assert monitor.wait(timeout=30) != 0
    assert monitor.log_text()
    with pytest.raises(ProcessFailed, match="exited"):
        monitor.wait_ready(timeout=5)


def test_runtime_answers_capabilities(runtime):
    with urllib.request.urlopen(runtime.url + "/capabilities", timeout=5) as resp:
        assert resp.status == 200
        caps = json.loads(resp.read())
    assert "python" in caps["languages"]
    assert runtime.url == "http://127.0.0.1:%d/mrp/v1" % runtime.port


def test_sync_server_restart_and_peers_reconnect(sync_server, doc_name, peer_factory):
    a = peer_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    a.set_text("before the restart\n")
    a.request("exec-r", "print(1)", "http://127.0.0.1:9/mrp/v1")
    b.wait_text("before the restart")

    old_pid = sync_server.pid
    sync_server.restart(down_for=0.3)
    assert sync_server.pid != old_pid and port_open(sync_server.port)
    for peer in (a, b):
        peer.wait_event(lambda e: e["event"] == "synced" and e["count"] >= 2, timeout=15)

    b.insert_after("restart\n", "after the restart\n")
    assert a.wait_text(lambda t: t == "before the restart\nafter the restart\n")
    # The restarted server lost the document; the peers gave it back, so a newcomer sees it all.
    newcomer = peer_factory(sync_server.url, doc_name)
    assert newcomer.wait_text(lambda t: t == "before the restart\nafter the restart\n")
    assert newcomer.entry("exec-r")["status"] == "requested"


def test_managed_process_stop_kills_a_stubborn_group(tmp_path):
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('child', child.pid, flush=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = ManagedProcess([sys.executable, "-c", script], name="stubborn", log_path=tmp_path / "stubborn.log")
    with proc:
        proc.wait_for_line("ready", timeout=10)
        child_pid = int(proc.wait_for_line("child ").split()[1])
        started = time.monotonic()
        proc.stop(timeout=0.5)
        assert time.monotonic() - started < 5
    assert proc.returncode == -signal.SIGKILL
    assert wait_until(lambda: not _pid_alive(child_pid), timeout=5, message="grandchild survived")
    assert "ready" in (tmp_path / "stubborn.log").read_text()
    with pytest.raises(ProcessFailed, match="exited"):
        proc.wait_for_line("never printed", timeout=5)


def test_managed_process_reports_an_early_exit():
    proc = ManagedProcess([sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"],
                          name="early")
    proc.is_ready = lambda: False
    with pytest.raises(ProcessFailed, match="exited with code 3[^$]*boom"):
        proc.start(timeout=10)
    assert not proc.alive


def test_missing_node_modules_gives_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setattr(procs, "NODE_MODULES", tmp_path / "node_modules")
    monkeypatch.setattr(procs, "SERVER_SCRIPT", tmp_path / "node_modules" / "server.js")
    with pytest.raises(MissingNodeModules, match="npm ci"):
        procs.SyncServer()


def _pid_alive(pid):
    out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(out) and not out.startswith("Z")



# ---------------------------------------------------------------------- the mrmd stack
def test_mrmd_sync_serves_peers_lists_documents_and_writes_files(module_mrmd_sync, doc_name,
                                                                 peer_factory):
    a = peer_factory(module_mrmd_sync.url, doc_name)
    b = peer_factory(module_mrmd_sync.url, doc_name)
    a.set_text(INTRO + CELL + "\n")
    assert b.wait_text(lambda t: t == INTRO + CELL + "\n")
    a.request("exec-s", "print('hi')", "http://127.0.0.1:9/mrp/v1")
    assert b.wait_entry("exec-s", "requested")["code"] == "print('hi')"
    assert doc_name in [d["name"] for d in module_mrmd_sync.stats()["documents"]]
    md = module_mrmd_sync.directory / (doc_name + ".md")
    wait_until(lambda: md.exists() and md.read_text(encoding="utf-8") == INTRO + CELL + "\n",
               timeout=15, message="mrmd-sync did not write %s" % md)


def test_stack_runtimes_answer_capabilities(mrp3_runtime, bash_runtime):
    with urllib.request.urlopen(mrp3_runtime.url + "/capabilities", timeout=5) as resp:
        caps = json.loads(resp.read())
    assert caps["protocolVersion"] == "0.3.0" and "python" in caps["languages"]
    assert mrp3_runtime.health()["state"] in ("idle", "executing")
    with urllib.request.urlopen(bash_runtime.url + "/capabilities", timeout=5) as resp:
        caps = json.loads(resp.read())
    assert "bash" in caps["languages"] and caps["features"]["executeStream"] is True


def test_missing_stack_gives_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setattr(procs, "MRMD_SYNC_DIR", tmp_path / "mrmd-sync")
    with pytest.raises(procs.MissingStack, match="tests/setup.sh"):
        procs.MrmdSyncServer(tmp_path / "docs")
