"""A runtime that sends twenty 200 KB displays: the entry is not rewritten per
display, its inline rich output stays within 512 KiB, and the run completes."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.notebook import FINAL, block_content, cell, start_cell

pytestmark = pytest.mark.e2e

DISPLAYS = 20
SIZE = 200_000


class DisplayFlood:
    """Answers every execute/stream with DISPLAYS display events of SIZE bytes."""

    def __init__(self):

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, obj):
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._json({"languages": ["python"], "features": {"executeStream": True}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/execute/stream"):
                    return self._json({"accepted": True, "interrupted": True})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()

                def send(kind, data):
                    self.wfile.write(("event: %s\ndata: %s\n\n" % (kind, json.dumps(data))).encode())
                    self.wfile.flush()

                send("start", {"execId": body.get("execId")})
                send("stdout", {"content": "drawing\r\n"})
                for i in range(DISPLAYS):
                    html = "<p>%02d</p>" % i + "x" * (SIZE - 9)
                    send("display", {"data": {"text/html": html}, "metadata": {}})
                send("result", {"success": True, "stdout": "", "stderr": "", "result": None,
                                "error": None, "displayData": [], "assets": [],
                                "executionCount": 1, "duration": 1})
                send("done", {})
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/mrp/v1" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="display-flood",
                                       daemon=True)


@pytest.fixture
def flood():
    rt = DisplayFlood()
    rt.thread.start()
    try:
        yield rt
    finally:
        rt.server.shutdown()
        rt.server.server_close()
        rt.thread.join(5)


def test_twenty_big_displays_keep_the_entry_small(flood, sync_server, doc_name, peer_factory,
                                                  monitor_factory):
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    b.set_text(cell("draw()") + "\n")
    exec_id = start_cell(b, "draw()", flood.url)
    e = b.wait_entry(exec_id, FINAL, timeout=60)
    assert e["status"] == "completed", e.get("error")
    shown = e["displayData"]
    assert len(shown) == DISPLAYS
    inline = [d for d in shown if d.get("data") is not None]
    assert 1 <= len(inline) <= 3
    assert sum(len(d["data"]) for d in inline) <= 512 * 1024
    assert [d["data"][:9] for d in inline] == ["<p>%02d</p>" % i for i in range(len(inline))]
    assert all("over --max-display-bytes" in d["omitted"] for d in shown[len(inline):])
    assert len(json.dumps(e)) < 700_000
    assert block_content(b.text(), exec_id) == "drawing\n"
