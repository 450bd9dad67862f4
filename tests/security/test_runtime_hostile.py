"""Hostile runtime URLs and hostile runtimes, seen from the document: a real
sync server, a yjs browser, the monitor process, and scripted runtimes or
plain local services.

Each test states what the user sees (final status, error type and text, the
block) and that the monitor goes on serving a normal run afterwards."""

import json
import time

import pytest

from tests.support.local_http import LocalService
from tests.support.notebook import FINAL, block_content, cell, start_cell, uid
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

SECRET = LocalService.SECRET


@pytest.fixture
def service():
    with LocalService() as s:
        yield s


def args(**opts):
    out = []
    for k, v in opts.items():
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


def still_serves(b, faults):
    code = json.dumps({"fault": "ok", "text": "still here\r\n", "id": uid()})
    exec_id = start_cell(b, code, faults.url, prefix="after", add_cell=True)
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "completed", e
    assert block_content(b.text(), exec_id) == "still here\n"


def test_backslash_url_never_reaches_the_hidden_host(sync_server, doc_name, peer_factory,
                                                     monitor_factory, service, faults):
    """Only 127.0.0.2 is allowed. urlsplit reads the host of
    ``http://127.0.0.1:P\\@127.0.0.2:Q/`` as 127.0.0.2, while the HTTP stack
    connected to 127.0.0.1:P: the check and the connection must be one URL."""
    monitor_factory(sync_server.url, doc_name,
                    extra_args=args(allow_runtime="127.0.0.2")
                    + args(allow_runtime="127.0.0.1:%d" % faults.port))
    b = peer_factory(sync_server.url, doc_name)
    code = "print('pwned')"
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, "http://127.0.0.1:%d\\@127.0.0.2:%d/mrp/v1" % (service.port, 9),
                         prefix="bs")
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "error" and e["error"]["type"] == "RuntimeNotAllowed"
    assert "backslash" in e["error"]["message"]
    assert service.requests == []
    still_serves(b, faults)


def test_redirect_to_another_port_is_not_followed(sync_server, doc_name, peer_factory,
                                                  monitor_factory, service, faults):
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "redirect", "status": 307,
                       "to": "http://127.0.0.1:%d/admin/run" % service.port})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="redir")
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "error" and e["error"]["type"] == "RuntimeHTTPError"
    assert "redirect (HTTP 307), which is never followed" in e["error"]["message"]
    assert e["error"]["message"] in block_content(b.text(), exec_id)
    assert service.requests == []
    still_serves(b, faults)


def test_a_local_service_that_is_not_a_runtime_is_never_posted_to(sync_server, doc_name,
                                                                  peer_factory, monitor_factory,
                                                                  service, faults):
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = "DELETE EVERYTHING"
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, "http://127.0.0.1:%d/admin/api" % service.port, prefix="svc")
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "error" and e["error"]["type"] == "RuntimeRefused"
    assert e["error"]["message"] == (
        "the server at http://127.0.0.1:%d/admin/api is not an MRP runtime the monitor can "
        "use: GET /capabilities did not answer a JSON object" % service.port)
    assert SECRET not in b.text() and SECRET not in json.dumps(b.entries())
    assert service.requests == [("GET", "/admin/api/capabilities")]
    still_serves(b, faults)


def test_trickled_headers_do_not_hold_a_worker(sync_server, doc_name, peer_factory,
                                               monitor_factory, faults):
    """One header byte every 0.2 s would beat any per-read timeout; with
    --max-workers 1 a held worker would also starve the next run."""
    monitor_factory(sync_server.url, doc_name,
                    extra_args=args(connect_timeout=2, idle_timeout=300, max_workers=1))
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "trickle_headers", "every": 0.2})
    b.set_text(cell(code) + "\n")
    t0 = time.monotonic()
    exec_id = start_cell(b, code, faults.url, prefix="trickle")
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    took = time.monotonic() - t0
    assert e["status"] == "error" and e["error"]["type"] == "StreamError"
    assert "sent no response headers within 2 s (--connect-timeout)" in e["error"]["message"]
    assert took < 15, took
    still_serves(b, faults)


def test_sleeping_cell_ends_at_max_run_time(sync_server, own_runtime, doc_name, peer_factory,
                                            monitor_factory):
    monitor_factory(sync_server.url, doc_name, extra_args=args(max_run_time=2))
    b = peer_factory(sync_server.url, doc_name)
    # --max-run-time counts from the POST: a first cell warms the runtime up, so that on a
    # loaded machine the sleeping cell still prints within its 2 s.
    warm = start_cell(b, "import time", own_runtime.url, prefix="warm", add_cell=True)
    assert b.wait_entry(warm, FINAL, timeout=40)["status"] == "completed"
    code = "import time\nprint('sleeping', flush=True)\ntime.sleep(1e9)"
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, own_runtime.url, prefix="sleep")
    e = b.wait_entry(exec_id, FINAL, timeout=40)
    assert e["status"] == "error" and e["error"]["type"] == "MaxRunTime"
    assert e["error"]["message"] == "the run took longer than --max-run-time (2s) and was stopped"
    content = block_content(b.text(), exec_id)
    assert content.startswith("sleeping\n")
    # The last line as the editor's own run writes an error.
    assert content.endswith("\n[Error: the run took longer than --max-run-time (2s) and was stopped]\n")
    assert e["completedAt"] - e["requestedAt"] < 20000


def test_busy_runtime_queues_with_a_reason_then_runs(sync_server, doc_name, peer_factory,
                                                     monitor_factory, faults):
    faults.health = True
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "busy", "seconds": 4})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="busy")
    waiting = b.wait_entry(exec_id, lambda e: e and e.get("queueReason"), timeout=30)
    assert waiting["queued"] is True and waiting["status"] in ("ready", "claimed")
    assert waiting["queueReason"] == "waiting for the runtime: it is busy with another execution"
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "completed"
    assert e["queued"] is False and e.get("queueReason") is None
    assert block_content(b.text(), exec_id) == "finally ran\n"
    assert "SECRET-BUSY-BODY" not in b.text()


def test_oversized_event_ends_the_run_and_nothing_else(sync_server, doc_name, peer_factory,
                                                       monitor_factory, faults):
    monitor_factory(sync_server.url, doc_name, extra_args=args(max_event_bytes="1M"))
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "big_event", "bytes": 32 << 20})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="big")
    e = b.wait_entry(exec_id, FINAL, timeout=30)
    assert e["status"] == "error" and e["error"]["type"] == "StreamError"
    assert "larger than 1048576 bytes (--max-event-bytes)" in e["error"]["message"]
    assert block_content(b.text(), exec_id).startswith("before\n")
    still_serves(b, faults)


def test_refused_interrupt_is_said_in_the_block(sync_server, doc_name, peer_factory,
                                                monitor_factory, faults):
    faults.interrupted = False
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "silent", "seconds": 30})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="stuck")
    b.wait_text("partial\n", timeout=30)
    assert b.cancel(exec_id)
    line = ("[mrmd-monitor: the runtime did not stop this cell (the runtime answered "
            "interrupted: false); its code may still be running]")
    wait_until(lambda: line in b.text(), timeout=30, message="the notice in the block")
    assert block_content(b.text(), exec_id) == "partial\n" + line + "\n"
    assert b.entry(exec_id)["status"] == "cancelled"


def test_garbage_streams_leave_the_monitor_serving(sync_server, doc_name, peer_factory,
                                                   monitor_factory, faults):
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    ids = []
    text = ""
    for seed in range(6):
        code = json.dumps({"fault": "garbage", "seed": seed})
        text += cell(code) + "\n\n"
    b.set_text(text)
    for seed in range(6):
        ids.append(start_cell(b, json.dumps({"fault": "garbage", "seed": seed}), faults.url,
                              prefix="garbage"))
    for exec_id in ids:
        e = b.wait_entry(exec_id, FINAL, timeout=60)
        assert e["status"] in ("completed", "error"), e
        if e["status"] == "error":
            assert e["error"]["type"] == "StreamError"
    still_serves(b, faults)


def test_a_result_repeating_ten_megabytes_of_output_completes(sync_server, doc_name, peer_factory,
                                                              monitor_factory, faults):
    """mrmd-python and MRP 0.3.0 repeat the whole output in the result's
    ``stdout``: an event over --max-event-bytes (8 MiB) that must not fail the
    run, since that string is cut while reading."""
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "flood", "bytes": 10 << 20, "echo_result": True})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="echo")
    e = b.wait_entry(exec_id, FINAL, timeout=120)
    assert e["status"] == "completed", e
    assert "stdout" not in (e.get("result") or {})
    assert block_content(b.text(), exec_id).startswith("flood line 000000000 ")


def test_after_a_cancel_the_next_cell_runs_on_a_runtime_that_stays_busy_when_cut(
        sync_server, doc_name, peer_factory, monitor_factory, faults):
    """MRP 0.3.0 keeps an execution lock until its stream ends normally, and for
    good when the stream is cut (the next cell got 409 five times).
    The monitor reads the cancelled stream to its end after the interrupt."""
    faults.capabilities = dict(faults.capabilities, protocolVersion="0.3.0")
    faults.health = True
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    loop = json.dumps({"fault": "wedge", "count": 600, "every": 0.1})
    after = json.dumps({"fault": "ok", "text": "next cell\r\n"})
    b.set_text(cell(loop) + "\n\n" + cell(after) + "\n")
    first = start_cell(b, loop, faults.url, prefix="loop")
    b.wait_text("tick 2\n", timeout=30)
    assert b.cancel(first)
    second = start_cell(b, after, faults.url, prefix="next")
    e = b.wait_entry(second, FINAL, timeout=30)
    assert e["status"] == "completed", e
    assert block_content(b.text(), second) == "next cell\n"
    assert b.entry(first)["status"] == "cancelled"
    # The runtime lets go of the execution after it has sent `done`: wait for its thread.
    wait_until(lambda: faults.wedged_by is None, timeout=10,
               message="the runtime stayed busy: the cancelled stream was cut, not drained")
    assert faults.refused == 0   # never refused: the lock was released first
