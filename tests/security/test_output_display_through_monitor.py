"""Twenty 200 KB displays in one run, end to end: a scripted runtime sends
them as MRP 0.3.0 ``display`` events, a real monitor process writes the run's
entry, a yjs browser reads it. The unbounded entry was 4 MB, one update over
mrmd-sync's 1 MiB message limit (which wedges the document there); now no
frame the monitor sends comes near it and the browser sees what was left out.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.notebook import FINAL, cell, start_cell
from tests.support.sync_proxy import SyncProxy

pytestmark = pytest.mark.e2e

DISPLAYS = 20
SIZE = 200 * 1000


def html(i):
    body = "<p>display %d</p>" % i
    return body + "x" * (SIZE - len(body))


def _event(kind, data):
    return ("event: %s\ndata: %s\n\n" % (kind, json.dumps(data))).encode()


class DisplayRuntime:
    """Only what this test needs of an MRP runtime: capabilities, and a
    stream of DISPLAYS large display events, then a result."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = json.dumps({"languages": ["python"], "protocolVersion": "0.3.0",
                                   "features": {"executeStream": True}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                seq = iter(range(1, 1000))
                self.wfile.write(_event("start", {"seq": next(seq), "execId": request.get("execId")}))
                self.wfile.write(_event("stdout", {"seq": next(seq), "content": "shown\r\n"}))
                for i in range(DISPLAYS):
                    self.wfile.write(_event("display", {"seq": next(seq), "metadata": {},
                                                        "data": {"text/html": html(i)}}))
                    self.wfile.flush()
                self.wfile.write(_event("result", {
                    "seq": next(seq), "success": True, "stdout": "shown\r\n", "stderr": "",
                    "result": None, "error": None, "displayData": [], "assets": [],
                    "executionCount": 1, "duration": 1}))
                self.wfile.write(_event("done", {"seq": next(seq)}))
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/mrp/v1" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       name="display-runtime", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def display_runtime():
    with DisplayRuntime() as rt:
        yield rt


@pytest.fixture
def proxy(sync_server):
    p = SyncProxy(sync_server.port, documents=[]).start()
    try:
        yield p
    finally:
        p.stop()


def test_twenty_large_displays_keep_every_frame_small(display_runtime, proxy, sync_server,
                                                      doc_name, peer_factory, monitor_factory):
    monitor_factory(proxy.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = "show(20 tables)"
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, display_runtime.url, prefix="displays")
    e = b.wait_entry(exec_id, FINAL, timeout=60)
    assert e["status"] == "completed"
    items = b.wait_entry(exec_id, lambda x: x and len(x.get("displayData") or []) == DISPLAYS,
                         timeout=30)["displayData"]
    assert [i["data"] for i in items[:2]] == [html(0), html(1)]
    for item in items[2:]:
        assert item["data"] is None and item["size"] == SIZE
        assert item["omitted"].startswith("over --max-display-bytes (524288 bytes")
    assert proxy.max_frame() < 600 * 1024
