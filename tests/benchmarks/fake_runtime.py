"""A fast, scripted MRP runtime for the benchmarks.

It speaks mrmd-python 0.4.2's wire format byte for byte where it matters
(HTTP/1.1, one chunk of the chunked body per SSE event, ``\\r\\n``
separators, ``{"content": ..., "accumulated": ...}`` output events, the
ExecuteResult shape), but the "code" is a script for the stream instead of
Python, so the stream comes as fast as the socket takes it and the monitor's
own cost shows. The code is a JSON object (unknown keys are ignored, so an
``"id"`` can make two cells differ):

``{"lines": N}``
    print ``0`` .. ``N-1``, one number per line (like ``for i in range(N): print(i)``)
``{"every_ms": 100, "count": 100}``
    one line every 100 ms, each in its own event; the line is ``T<epoch ms>``
    (three decimals), taken just before the event is sent, so an observer
    can compute the latency of every line
``{"progress": N}``
    ``N`` events ``\\rprogress i/N`` and a final ``\\r\\n`` (a progress bar)

Modifiers: ``"chunk"`` (most bytes of output per event, whole lines, at most
4096, default 4096), ``"sleep_ms"`` (pause after every event, default 0),
``"accumulated"`` (default true: every output event carries the whole output
so far, as mrmd-python does; false leaves it out).

Run it as a process: ``python fake_runtime.py [--port P]`` prints
``listening on http://127.0.0.1:P/mrp/v1`` and serves until killed. Also
``/capabilities``, ``/input`` (``{"accepted": false}``) and ``/interrupt``.
"""

import argparse
import json
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/mrp/v1"
MAX_CHUNK = 4096
LOG_RUNS = False
LOG_LOCK = threading.Lock()

CAPABILITIES = {
    "runtime": "fake-mrp",
    "version": "0.0.1",
    "languages": ["python", "py", "python3"],
    "features": {"execute": True, "executeStream": True, "interrupt": True},
}


class Script:
    """What the code asks for, validated."""

    def __init__(self, code):
        spec = json.loads(code) if code.strip().startswith("{") else {}
        self.lines = int(spec.get("lines", 0))
        self.every_ms = float(spec.get("every_ms", 0))
        self.count = int(spec.get("count", 0))
        self.progress = int(spec.get("progress", 0))
        self.chunk = max(1, min(MAX_CHUNK, int(spec.get("chunk", MAX_CHUNK))))
        self.sleep = float(spec.get("sleep_ms", 0)) / 1000.0
        self.accumulated = bool(spec.get("accumulated", True))
        if not (self.lines or self.count or self.progress):
            raise ValueError("the code must be a JSON object with lines, count (+ every_ms) or progress")

    def pieces(self):
        """The output, as (text, pause before it in seconds, stamp?) per event."""
        if self.lines:
            buf, size = [], 0
            for i in range(self.lines):
                line = "%d\r\n" % i
                if buf and size + len(line) > self.chunk:
                    yield "".join(buf), self.sleep, False
                    buf, size = [], 0
                buf.append(line)
                size += len(line)
            if buf:
                yield "".join(buf), self.sleep, False
        elif self.count:
            for i in range(self.count):
                yield None, (self.every_ms / 1000.0 if i else 0.0), True
        else:
            for i in range(1, self.progress + 1):
                yield "\rprogress %d/%d" % (i, self.progress), self.sleep, False
            yield "\r\n", 0.0, False


def _escape(text):
    """JSON string body (ensure_ascii, like json.dumps): escaping is per character,
    so the escaped whole output is the concatenation of the escaped chunks."""
    return json.dumps(text)[1:-1].encode("ascii")


def _send_buffers(sock, buffers):
    """sendmsg() every buffer completely (handles partial writes, copies nothing)."""
    views = [memoryview(b) for b in buffers if len(b)]
    try:
        while views:
            sent = sock.sendmsg(views[:512])
            while sent:
                first = views[0]
                if sent >= len(first):
                    sent -= len(first)
                    first.release()
                    views.pop(0)
                else:
                    views[0] = first[sent:]
                    first.release()
                    sent = 0
    finally:
        for v in views:
            v.release()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-mrp"

    def log_message(self, fmt, *args):  # quiet
        pass

    # ------------------------------------------------------------------ helpers
    def _json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw.strip() else {}

    def _event(self, name, *data_parts):
        """One SSE event as one HTTP chunk; data_parts are bytes-like, sent without copying."""
        head = b"event: " + name.encode() + b"\r\ndata: "
        size = len(head) + sum(len(p) for p in data_parts) + 4
        _send_buffers(self.connection, [b"%x\r\n" % size, head, *data_parts, b"\r\n\r\n\r\n"])

    # ------------------------------------------------------------------ routes
    def do_GET(self):
        if self.path == PREFIX + "/capabilities":
            self._json(CAPABILITIES)
        else:
            self._json({"error": "not found"}, 404)

    def do_POST(self):
        try:
            body = self._body()
        except ValueError:
            self._json({"error": "bad JSON"}, 400)
            return
        if self.path == PREFIX + "/execute/stream":
            self._stream(body)
        elif self.path == PREFIX + "/input":
            self._json({"accepted": False})
        elif self.path == PREFIX + "/input/cancel":
            self._json({"cancelled": False})
        elif self.path == PREFIX + "/interrupt":
            self._json({"interrupted": True})
        else:
            self._json({"error": "not found"}, 404)

    def _stream(self, body):
        exec_id = body.get("execId") or "fake"
        if LOG_RUNS:
            with LOG_LOCK:   # print() writes the line and its end apart: handler threads interleave
                sys.stdout.write("run %s\n" % exec_id)
                sys.stdout.flush()
        try:
            script = Script(body.get("code", ""))
        except (ValueError, TypeError) as exc:
            self._json({"error": str(exc)}, 400)
            return
        self.send_response(200)
        self.send_header("cache-control", "no-store")
        self.send_header("connection", "keep-alive")
        self.send_header("x-accel-buffering", "no")
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        started = time.time()
        try:
            self._event("start", json.dumps({"execId": exec_id,
                                             "timestamp": datetime.now(timezone.utc).isoformat()}).encode())
            acc = bytearray()  # the escaped output so far
            parts = []
            for text, pause, stamp in script.pieces():
                if pause:
                    time.sleep(pause)
                if stamp:
                    text = "T%.3f\r\n" % (time.time() * 1000.0)
                esc = _escape(text)
                parts.append(text)
                if script.accumulated:
                    acc += esc
                    view = memoryview(acc)
                    try:
                        self._event("stdout", b'{"content": "', esc, b'", "accumulated": "', view, b'"}')
                    finally:
                        view.release()
                else:
                    self._event("stdout", b'{"content": "', esc, b'"}')
            result = {"success": True, "stdout": "".join(parts), "stderr": "", "result": None, "error": None,
                      "displayData": [], "assets": [], "executionCount": 1,
                      "duration": int((time.time() - started) * 1000), "imports": []}
            self._event("result", json.dumps(result).encode())
            self._event("done", b"{}")
            _send_buffers(self.connection, [b"0\r\n\r\n"])
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


class FakeRuntime:
    """The server in a thread of this process (``with FakeRuntime() as rt: rt.url``)."""

    def __init__(self, host="127.0.0.1", port=0):
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = None

    @property
    def url(self):
        host, port = self.server.server_address[:2]
        return "http://%s:%d%s" % (host, port, PREFIX)

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-runtime", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log-runs", action="store_true",
                        help="print 'run <execId>' for every execution asked for (counts runs per id)")
    args = parser.parse_args(argv)
    global LOG_RUNS
    LOG_RUNS = args.log_runs
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print("listening on http://%s:%d%s" % (host, port, PREFIX), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
