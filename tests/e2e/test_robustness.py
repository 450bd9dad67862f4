"""Nothing lost, nothing run twice: several monitors, kills, restarts, dead
runtimes and hostile entries, each with real processes (the npm y-websocket
server, and mrmd-sync for several monitors and a server restart; yjs
browsers, mrmd-python, monitor processes). A scripted runtime
(tests/support/fault_runtime.py) is used only to inject faults."""

import json
import random
import signal
import time

import pytest

from tests.support.notebook import FINAL, block, block_content, cell, loop_code, start_cell, uid
from tests.support.procs import Runtime
from tests.support.stacks import SERVERS, on_stacks
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def monitor_args(**opts):
    args = []
    for k, v in opts.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    return args


# -- 1. exactly once with several monitors -------------------------------------

@on_stacks(SERVERS)
def test_four_monitors_hundred_requests_exactly_once(stack, doc_name, tmp_path, peer_factory,
                                                    monitor_factory):
    sync_server, runtime = stack.server, stack.runtime
    ledger = tmp_path / "ledger.txt"
    n = 100
    ids = ["x%03d-%s" % (i, uid()[:4]) for i in range(n)]
    codes = ["open(%r, 'a').write(%r + '\\n'); print('ran', %r)" % (str(ledger), i, i)
             for i in ids]
    for _ in range(4):
        monitor_factory(sync_server.url, doc_name)
    a = peer_factory(sync_server.url, doc_name, name="browser-a")
    b = peer_factory(sync_server.url, doc_name, name="browser-b")
    a.set_text("\n\n".join(cell(c) for c in codes) + "\n")
    wait_until(lambda: b.text().count("```python") == n, timeout=10)
    for i, (exec_id, code) in enumerate(zip(ids, codes)):
        (a if i % 2 == 0 else b).request(exec_id, code, runtime.url)
    entries = {i: a.wait_entry(i, FINAL, timeout=120) for i in ids}
    assert sorted(e["status"] for e in entries.values()) == ["completed"] * n
    ran = ledger.read_text().split()
    assert sorted(ran) == sorted(ids), "each request executed exactly once"
    text = wait_until(lambda: (lambda t: t if all(block_content(t, i) == "ran %s\n" % i
                                                  for i in ids) else None)(a.text()),
                      timeout=20)
    for exec_id in ids:
        assert text.count("```output:%s\n" % exec_id) == 1
        assert text.count("ran %s\n" % exec_id) == 1


# -- 2. leases and orphans -------------------------------------------------------

def test_killed_monitor_orphans_are_recovered(sync_server, own_runtime, doc_name, peer_factory,
                                              monitor_factory):
    first = monitor_factory(sync_server.url, doc_name, extra_args=monitor_args(orphan_timeout=3))
    b = peer_factory(sync_server.url, doc_name)
    v = "o_" + uid()
    # The lost loop keeps running inside mrmd-python 0.4.2, which runs streams side by side and
    # has no busy signal: it must be over (12 x 0.2 s, 2.4 s) before the takeover (at least the
    # second monitor's start plus --orphan-timeout 3 s), or its lines mix into the next run.
    long_code = loop_code('slow', 12, 0.2)
    queued_code = "%s = 42\nprint('queued ran', %s)" % (v, v)
    b.set_text(cell(long_code) + "\n\n" + cell(queued_code) + "\n")
    long_id, queued_id = "long-" + uid(), "queued-" + uid()
    b.request(long_id, long_code, own_runtime.url)
    b.request(queued_id, queued_code, own_runtime.url)
    b.wait_text("slow 2\n", timeout=30)
    assert b.entry(queued_id)["status"] == "ready"       # waiting its turn behind the long run
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = time.monotonic()
    second = monitor_factory(sync_server.url, doc_name, extra_args=monitor_args(orphan_timeout=3))
    lost = b.wait_entry(long_id, FINAL, timeout=30)
    recovered = b.wait_entry(queued_id, FINAL, timeout=30)
    elapsed = time.monotonic() - killed_at
    assert lost["status"] == "error" and lost["error"]["type"] == "MonitorLost"
    assert "output up to that point is kept" in lost["error"]["message"]
    assert recovered["status"] == "completed"
    assert recovered["claimedBy"] != lost["claimedBy"]
    assert elapsed < 20
    text = b.text()
    kept = block_content(text, long_id)
    assert kept.startswith("slow 0\nslow 1\nslow 2\n")
    assert "[mrmd-monitor: the monitor running this cell" in kept
    assert block_content(text, queued_id) == "queued ran 42\n"
    assert "taking the run over" in second.log_text()


def test_a_run_sent_before_the_kill_is_not_sent_again(faults, sync_server, doc_name, peer_factory,
                                                      monitor_factory):
    """kill -9 after the run reached the runtime, before the runtime answered: the cell
    may be running, so the next monitor marks it lost instead of sending it again."""
    first = monitor_factory(sync_server.url, doc_name, extra_args=monitor_args(orphan_timeout=3))
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "wedge", "count": 5, "headers_after": 30})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="sent")
    wait_until(lambda: faults.wedged_by == exec_id, timeout=30,
               message="the runtime to receive the run")
    assert b.entry(exec_id)["status"] == "ready"      # nothing came back from the runtime yet
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    faults.release_headers.set()                      # its answer finds nobody
    second = monitor_factory(sync_server.url, doc_name, extra_args=monitor_args(orphan_timeout=3))
    lost = b.wait_entry(exec_id, FINAL, timeout=30)
    assert lost["status"] == "error" and lost["error"]["type"] == "MonitorLost", lost
    assert "the cell may have run" in lost["error"]["message"]
    sent = [body for path, body in faults.requests if path.endswith("/execute/stream")]
    assert [body["execId"] for body in sent] == [exec_id]
    assert "may have run" in second.log_text()


# -- 3. stale requests ---------------------------------------------------------

def test_stale_requests_expire_at_start(sync_server, runtime, doc_name, peer_factory,
                                        monitor_factory):
    b = peer_factory(sync_server.url, doc_name)
    code = "print('fresh')"
    b.set_text(cell("print('old')") + "\n\n" + cell(code) + "\n")
    old = b.request("old-" + uid(), "print('old')", runtime.url)
    old["requestedAt"] -= 20 * 60 * 1000
    b.set_entry(old["id"], old)
    fresh_id = "fresh-" + uid()
    b.request(fresh_id, code, runtime.url)
    monitor_factory(sync_server.url, doc_name)
    expired = b.wait_entry(old["id"], FINAL, timeout=30)
    assert expired["status"] == "error" and expired["error"]["type"] == "Expired"
    assert "20 minutes" in expired["error"]["message"]
    assert b.wait_entry(fresh_id, FINAL, timeout=30)["status"] == "completed"
    assert "old\n" not in b.text()


# -- 4. sync server restart --------------------------------------------------------

@on_stacks(SERVERS)
def test_sync_server_restart_mid_run_loses_nothing(stack, doc_name, peer_factory, monitor_factory):
    sync_server, runtime = stack.new_server(), stack.runtime     # restarted: this test's own
    monitor = monitor_factory(sync_server.url, doc_name, extra_args=monitor_args(reconnect_max=1))
    b = peer_factory(sync_server.url, doc_name)
    code = loop_code('beat', 50, 0.1)
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, runtime.url, prefix="exec")
    b.wait_text("beat 5\n", timeout=30)
    b.close()
    # The npm server keeps documents in memory: all lost. mrmd-sync (with its
    # snapshots, as it runs by default) serves them back from its directory.
    sync_server.restart(down_for=1.5)
    monitor.wait_for_line("%s completed" % exec_id, timeout=60)
    assert "lost connection" in monitor.log_text()
    late = peer_factory(sync_server.url, doc_name, name="late")
    expected = cell(code) + "\n\n" + block(exec_id, "".join("beat %d\n" % i for i in range(50))) + "\n"
    wait_until(lambda: late.text() == expected, timeout=20,
               message="the document after the restart does not hold every line exactly once")
    assert late.entry(exec_id)["status"] == "completed"


# -- 5. runtime failures -----------------------------------------------------------

FAULTS = [
    ({"fault": "http", "status": 500, "body": "kaboom"}, "500"),
    ({"fault": "http", "status": 404, "body": "no such endpoint"}, "404"),
    ({"fault": "html"}, "event stream"),
    ({"fault": "malformed"}, "not a JSON"),
    ({"fault": "no_result"}, "ended before"),
]


@pytest.mark.parametrize("spec,words", FAULTS, ids=[f[0].get("status", f[0]["fault"]) and
                                                   "%s-%s" % (f[0]["fault"], f[0].get("status", ""))
                                                   for f in FAULTS])
def test_runtime_faults_end_in_clear_error(spec, words, faults, sync_server, runtime, doc_name,
                                           peer_factory, monitor_factory):
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps(spec)
    good = "print('still serving')"
    b.set_text(cell(code) + "\n\n" + cell(good) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="bad")
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "error"
    assert words in e["error"]["message"]
    content = block_content(b.text(), exec_id)
    assert e["error"]["message"] in content
    if spec["fault"] in ("malformed", "no_result"):
        assert content.startswith("partial\n")  # output so far kept
    ok_id = "good-" + uid()
    b.request(ok_id, good, runtime.url)
    assert b.wait_entry(ok_id, FINAL, timeout=30)["status"] == "completed"


def test_connection_refused(sync_server, doc_name, peer_factory, monitor_factory):
    from tests.support.ports import free_port
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    b.set_text(cell("print(1)") + "\n")
    exec_id = "refused-" + uid()
    b.request(exec_id, "print(1)", "http://127.0.0.1:%d/mrp/v1" % free_port())
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "error" and e["error"]["type"] == "RuntimeUnavailable"
    assert "127.0.0.1" in e["error"]["message"]


@pytest.mark.parametrize("status", [409, 503])
def test_busy_runtime_retried(status, faults, sync_server, doc_name, peer_factory, monitor_factory):
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "http", "status": status, "times": 2, "retry_after": 0,
                       "body": "busy"})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="busy")
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "completed"
    assert block_content(b.text(), exec_id) == "recovered\n"
    assert faults.counts["http"] == 3


def test_runtime_killed_mid_run_then_restarted(sync_server, doc_name, peer_factory,
                                               monitor_factory, tmp_path):
    rt = Runtime(workdir=tmp_path / "rt", log_path=tmp_path / "logs" / "rt.log")
    rt.start()
    try:
        monitor_factory(sync_server.url, doc_name)
        b = peer_factory(sync_server.url, doc_name)
        v = "k_" + uid()
        loop = loop_code('work', 100, 0.1)
        after = "%s = 1\nprint('after', %s)" % (v, v)
        b.set_text(cell(loop) + "\n\n" + cell(after) + "\n")
        run_id, queued_id = "run-" + uid(), "queued-" + uid()
        b.request(run_id, loop, rt.url)
        b.request(queued_id, after, rt.url)
        b.wait_text("work 3\n", timeout=30)
        rt.send_signal(signal.SIGKILL)
        rt.wait(timeout=10)
        died = b.wait_entry(run_id, FINAL, timeout=30)
        queued = b.wait_entry(queued_id, FINAL, timeout=30)
        assert died["status"] == "error"
        assert "runtime" in died["error"]["message"].lower()
        assert block_content(b.text(), run_id).startswith("work 0\nwork 1\nwork 2\nwork 3\n")
        assert queued["status"] == "error" and queued["error"]["type"] == "RuntimeUnavailable"
        # The runtime comes back on the same port and serves new requests.
        rt2 = Runtime(workdir=tmp_path / "rt2", port=rt.port, log_path=tmp_path / "logs" / "rt2.log")
        rt2.start()
        try:
            again = "again-" + uid()
            b.request(again, after, rt2.url)
            assert b.wait_entry(again, FINAL, timeout=30)["status"] == "completed"
            assert block_content(b.text(), again) == "after 1\n"
        finally:
            rt2.stop()
    finally:
        rt.stop()


# -- 7. timeouts ---------------------------------------------------------------------

def test_idle_stream_times_out(faults, sync_server, doc_name, peer_factory, monitor_factory):
    monitor_factory(sync_server.url, doc_name, extra_args=monitor_args(idle_timeout=1))
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "silent", "seconds": 20})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="silent")
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "error" and "1" in e["error"]["message"]
    assert block_content(b.text(), exec_id).startswith("partial\n")


def test_max_run_time(sync_server, own_runtime, doc_name, peer_factory, monitor_factory):
    monitor_factory(sync_server.url, doc_name, extra_args=monitor_args(max_run_time=1.5))
    b = peer_factory(sync_server.url, doc_name)
    code = loop_code('t', 100, 0.1)
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, own_runtime.url, prefix="long")
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "error" and e["error"]["type"] == "MaxRunTime"
    assert e["completedAt"] - e["startedAt"] < 5000
    # The last line as the editor's own run writes an error.
    assert "\n[Error: the run took longer than --max-run-time (2s) and was stopped]\n" \
        in block_content(b.text(), exec_id)


def test_unanswered_stdin_ends_cleanly(faults, sync_server, doc_name, peer_factory, monitor_factory):
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "stdin_timeout", "seconds": 1.0})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="stdin")
    b.wait_entry(exec_id, lambda e: e and e.get("stdinRequest"), timeout=30)
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "error" and e["error"]["type"] == "StdinTimeout"
    assert e["stdinRequest"] is None
    assert "```stdin:" not in b.text()


# -- 8. hostile entries ---------------------------------------------------------------

def _garbage(rng, runtime_url):
    atoms = [None, True, 0, -1, 1.5, 2 ** 60, "", "x", "requested", "running", [], {}, [1, "a"],
             {"nested": {"deep": [None]}}, "\u0000\ud7ff", "😀" * 5]
    statuses = ["requested", "claimed", "ready", "running", "completed", "error", "cancelled",
                "bogus", None, 7, ["requested"]]
    kind = rng.random()
    if kind < 0.15:
        return rng.choice(atoms)
    entry = {}
    for key in ("id", "cellId", "code", "language", "runtimeUrl", "session", "status",
                "requestedBy", "requestedAt", "claimedBy", "outputBlockReady", "stdinResponse",
                "displayData", "error", "result"):
        if rng.random() < 0.6:
            entry[key] = rng.choice(atoms)
    entry["status"] = rng.choice(statuses)
    r = rng.random()
    if r < 0.2:
        entry["code"] = "x" * rng.choice([0, 10, 2_000_000])
    elif r < 0.3:
        entry["code"] = "pass"
        entry["runtimeUrl"] = runtime_url          # runnable: harmless code
    if rng.random() < 0.2:
        entry["runtimeUrl"] = rng.choice(["http://10.255.255.1:9/mrp", "ftp://x", "not a url",
                                          "http://", "http://[::1", 12])
    if rng.random() < 0.1:
        entry["claimedBy"] = rng.choice([1, 2 ** 53, "me", -5])
    return entry


def test_fuzzed_entries_do_not_hurt(sync_server, runtime, doc_name, peer_factory, monitor_factory):
    # Fuzzed entries "held" by monitors that do not exist are orphans: the
    # normal run waits for the earlier ones on its runtime until they are settled.
    monitor = monitor_factory(sync_server.url, doc_name, extra_args=monitor_args(orphan_timeout=3))
    b = peer_factory(sync_server.url, doc_name)
    rng = random.Random(20261126)
    for i in range(1000):
        key = rng.choice(["fz%d" % i, "fz%d\n```" % i, "", "`", "fz" + "k" * 300])
        b.set_entry(key or "fz%d" % i, _garbage(rng, runtime.url))
    code = "print('still fine after the fuzz')"
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, runtime.url, prefix="after-fuzz")
    e = b.wait_entry(exec_id, FINAL, timeout=60)
    assert e["status"] == "completed"
    assert block_content(b.text(), exec_id) == "still fine after the fuzz\n"
    assert monitor.alive
    assert "Traceback" not in monitor.log_text()
    # No fuzzed entry is left claimed or running by the monitor.
    me = e["claimedBy"]
    for key, entry in b.entries().items():
        if isinstance(entry, dict) and entry.get("claimedBy") == me:
            assert entry.get("status") in FINAL, (key, entry)


# -- 9. security --------------------------------------------------------------------------

def test_runtime_outside_allowlist_refused(sync_server, doc_name, peer_factory, monitor_factory):
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    b.set_text(cell("print(1)") + "\n")
    exec_id = "far-" + uid()
    b.request(exec_id, "print(1)", "http://10.255.255.1:8000/mrp/v1")
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "error" and e["error"]["type"] == "RuntimeNotAllowed"
    assert "--allow-runtime" in e["error"]["message"]


def test_output_cap_keeps_document_bounded(sync_server, runtime, doc_name, peer_factory,
                                           monitor_factory):
    monitor_factory(sync_server.url, doc_name, extra_args=monitor_args(max_output_bytes="64K"))
    b = peer_factory(sync_server.url, doc_name)
    code = "for i in range(40000):\n    print('spam line', i)"
    b.set_text(cell(code) + "\n\nAfter.\n")
    exec_id = start_cell(b, code, runtime.url, prefix="spam")
    e = b.wait_entry(exec_id, FINAL, timeout=120)
    assert e["status"] == "completed"
    content = b.wait_text(lambda t: "spam line 39999\n" in t)
    content = block_content(content, exec_id)
    assert len(content.encode()) < 64 * 1024 + 300
    assert content.startswith("spam line 0\nspam line 1\n")
    assert "left out here" in content
    assert content.endswith("spam line 39999\n")
    assert b.text().endswith("```\n\nAfter.\n")


# -- 10. graceful stop ---------------------------------------------------------------------

def test_grace_lets_short_run_finish(sync_server, runtime, doc_name, peer_factory, monitor_factory):
    monitor = monitor_factory(sync_server.url, doc_name, extra_args=monitor_args(grace=15))
    b = peer_factory(sync_server.url, doc_name)
    code = loop_code('g', 10, 0.2)
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, runtime.url, prefix="grace")
    b.wait_text("g 1\n", timeout=30)
    monitor.send_signal(signal.SIGTERM)
    assert monitor.wait(timeout=30) == 0
    e = b.wait_entry(exec_id, FINAL, timeout=10)
    assert e["status"] == "completed"
    assert block_content(b.text(), exec_id) == "".join("g %d\n" % i for i in range(10))


def test_token_sent_both_ways_and_never_logged(sync_server, runtime, doc_name, peer_factory,
                                               monitor_factory):
    from tests.support.sync_proxy import SyncProxy
    secret = "s3cr3t-" + uid()
    with SyncProxy(sync_server.port) as proxy:
        monitor = monitor_factory(proxy.url, doc_name, extra_args=["--token", secret])
        b = peer_factory(sync_server.url, doc_name)
        b.set_text(cell("print('authorized')") + "\n")
        exec_id = "tok-" + uid()
        b.request(exec_id, "print('authorized')", runtime.url)
        assert b.wait_entry(exec_id, FINAL, timeout=30)["status"] == "completed"
        upgrade = [h for h in proxy.heads if "/%s" % doc_name in h.split("\r\n")[0]][0]
        assert ("token=%s" % secret) in upgrade.split("\r\n")[0]
        assert ("Authorization: Bearer %s" % secret) in upgrade
    logged = "\n".join(monitor.lines("stderr"))   # what the monitor wrote, not our argv
    assert "monitor ready" in logged and secret not in logged
    assert "token=*** (command line)" in logged


@pytest.fixture
def tls_files(tmp_path):
    """A self-signed certificate for localhost and 127.0.0.1, made with openssl."""
    import shutil
    import subprocess
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_wss_with_ca_file_and_verification(tls_files, sync_server, runtime, doc_name,
                                           peer_factory, monitor_factory):
    import ssl
    from tests.support.sync_proxy import SyncProxy
    cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    with SyncProxy(sync_server.port, tls=ctx) as proxy:
        assert proxy.url.startswith("wss://localhost:")
        # Without the CA the certificate is refused: never synced, and it says why.
        refused = monitor_factory(proxy.url, doc_name, wait_ready=False)
        refused.wait_for_line("cannot connect", timeout=30)
        assert "CERTIFICATE_VERIFY_FAILED" in refused.log_text() or "certificate" in refused.log_text()
        assert "monitor ready" not in refused.log_text()
        refused.stop()
        monitor_factory(proxy.url, doc_name, extra_args=["--ca-file", str(cert)])
        b = peer_factory(sync_server.url, doc_name)
        b.set_text(cell("print('over tls')") + "\n")
        exec_id = "tls-" + uid()
        b.request(exec_id, "print('over tls')", runtime.url)
        assert b.wait_entry(exec_id, FINAL, timeout=30)["status"] == "completed"
        assert block_content(b.text(), exec_id) == "over tls\n"


def test_failing_document_does_not_disturb_the_others(sync_server, runtime, peer_factory,
                                                      monitor_factory):
    from tests.support.sync_proxy import SyncProxy
    good, bad = "good-" + uid(), "bad-" + uid()
    with SyncProxy(sync_server.port) as proxy:
        proxy.blocked.add(bad)
        monitor = monitor_factory(proxy.url, [good, bad], wait_ready=False)
        monitor.wait_for_line("synced %s" % good, timeout=30)
        b = peer_factory(sync_server.url, good)
        b.set_text(cell("print('unaffected')") + "\n")
        exec_id = "good-" + uid()
        b.request(exec_id, "print('unaffected')", runtime.url)
        assert b.wait_entry(exec_id, FINAL, timeout=30)["status"] == "completed"
        assert "lost connection to %s/%s" % (proxy.url, bad) in monitor.log_text() or \
            "cannot connect to %s/%s" % (proxy.url, bad) in monitor.log_text()
        # When the document becomes reachable, it is joined and served too.
        proxy.blocked.clear()
        monitor.wait_for_line("synced %s" % bad, timeout=60)
        c = peer_factory(sync_server.url, bad)
        c.set_text(cell("print('late but fine')") + "\n")
        exec_id = "bad-" + uid()
        c.request(exec_id, "print('late but fine')", runtime.url)
        assert c.wait_entry(exec_id, FINAL, timeout=30)["status"] == "completed"
