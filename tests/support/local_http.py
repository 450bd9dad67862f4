"""The pieces every scripted local HTTP server of the tests shares: a quiet
request handler with JSON and event-stream helpers, a server on 127.0.0.1
(a free port) run on its own thread, and a plain local service that is not a
runtime. Scripted servers are for fault injection only (tests/support/
fault_runtime.py and a few tests' own); the real runtimes are used for
everything they do right."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def sse_event(kind, data):
    """One server-sent event; ``data`` is JSON-encoded unless already a string."""
    text = data if isinstance(data, str) else json.dumps(data)
    return ("event: %s\ndata: %s\n\n" % (kind, text)).encode()


#: The least a runtime must state in GET /capabilities for the monitor to use it.
CAPABILITIES = {"languages": ["python"], "features": {"executeStream": True}}


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def answer(self, status, body=b"", ctype="text/plain", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def answer_json(self, status, obj, headers=()):
        self.answer(status, json.dumps(obj).encode(), "application/json", headers)

    def start_events(self, ctype="text/event-stream"):
        """Response headers of an event stream; the connection ends with it."""
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def send_raw(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def send_event(self, kind, data):
        self.send_raw(sse_event(kind, data))


class _ResetsExpected(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client killed with kill -9 resets its connections: no traceback for that.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class LocalServer:
    """``handler`` served on ``host`` (a free port) by a thread of its own:
    ``with LocalServer(H) as s:`` or ``start()`` / ``stop()``. With
    ``join_handlers`` the stop waits for every handler thread too; with
    ``resets_expected`` a client's reset connection prints no traceback."""

    def __init__(self, handler, name="local-http", host="127.0.0.1", join_handlers=False,
                 resets_expected=False):
        server_class = _ResetsExpected if resets_expected else ThreadingHTTPServer
        self.server = server_class((host, 0), handler)
        self.server.daemon_threads = not join_handlers
        self.port = self.server.server_address[1]
        self.base = "http://%s:%d" % (host, self.port)
        self.url = self.base + "/mrp/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, name=name,
                                       daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class LocalService(LocalServer):
    """A plain local service that is not a runtime: it records every request
    and answers each with a page (escape codes included) that must never reach
    a document."""

    SECRET = "SECRET-SERVICE-PAGE"

    def __init__(self, status=200, ctype="text/html", host="127.0.0.1"):
        outer = self
        self.requests = []

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.0"

            def _answer(self):
                outer.requests.append((self.command, self.path))
                page = "<html><h1>%s</h1>%s</html>" % (LocalService.SECRET, "\x1b[2J" * 3)
                self.answer(status, page.encode(), ctype)

            do_GET = do_POST = _answer

        super().__init__(Handler, "local-service", host, join_handlers=True)
