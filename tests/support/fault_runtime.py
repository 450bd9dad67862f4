"""A scripted MRP runtime for fault injection only: dying mid-stream, garbage,
HTTP errors, silence. Everything it can do right, the real mrmd-python is
used for instead.

The request's ``code`` is a JSON object naming the behaviour, e.g.
``{"fault": "http", "status": 503, "times": 2, "retry_after": 1}``.
"""

import json
import random
import threading
import time

from tests.support.local_http import LocalServer, QuietHandler
from tests.support.local_http import sse_event as _event


def big_html(rows):
    return "<table>" + "".join("<tr><td>%d</td></tr>" % i for i in range(rows)) + "</table>"


def display_html(i, size):
    """The ``i``-th display of a "displays" run: ``size`` characters of HTML."""
    body = "<p>display %d</p>" % i
    return body + "x" * (size - len(body))


#: A "gated" run's lines: 100 bytes each.
GATED_LINE = "%06d " + "z" * 92 + "\n"


def _result(stdout=""):
    return {"success": True, "stdout": stdout, "stderr": "", "result": None, "error": None,
            "displayData": [], "assets": [], "executionCount": 1, "duration": 1}


class FaultRuntime(LocalServer):
    def __init__(self):
        self.requests = []         # (path, body) of every POST
        self.counts = {}           # fault name -> times asked
        self.last_line = None      # index of the last line a finished flood printed
        self.stop_event = threading.Event()
        self.gets = []             # paths of every GET
        self.capabilities = {"runtime": "fault", "languages": ["python"],
                             "features": {"execute": True, "executeStream": True}}
        self.interrupted = True    # what /interrupt answers
        self.interrupt_requested = threading.Event()
        self.wedged_by = None      # the execution a "wedge" run holds the runtime for
        self.refused = 0           # POSTs answered 409 because of it
        self.health = False        # serve GET /health (MRP 0.3.0) or answer 404 (0.4.2)
        self.busy_until = 0.0      # monotonic time until which "busy" answers 409
        self.release_headers = threading.Event()   # ends a "wedge" run's headers_after wait
        self.headers_sent = threading.Event()
        self.release = threading.Event()            # lets "gated" runs print
        outer = self

        class Handler(QuietHandler):
            def do_GET(self):
                outer.gets.append(self.path)
                if self.path.endswith("/capabilities"):
                    body = json.dumps(outer.capabilities).encode()
                    return self.answer(200, body, "application/json")
                if self.path.endswith("/health") and outer.health:
                    busy = time.monotonic() < outer.busy_until or outer.wedged_by is not None
                    state = "executing" if busy else "idle"
                    return self.answer(200, json.dumps({"status": "ok", "state": state}).encode(),
                                       "application/json")
                self.answer(404, b"not found")

            def do_POST(self):
                body = self.read_json()
                outer.requests.append((self.path, body))
                if self.path.endswith("/input"):
                    return self.answer(200, b'{"accepted": true}', "application/json")
                if self.path.endswith("/interrupt"):
                    outer.interrupt_requested.set()
                    answer = {"interrupted": outer.interrupted}
                    return self.answer(200, json.dumps(answer).encode(), "application/json")
                try:
                    spec = json.loads(body.get("code") or "{}")
                except ValueError:
                    spec = {}
                fault = spec.get("fault", "ok")
                if outer.wedged_by is not None:   # one execution at a time, like MRP 0.3.0
                    outer.refused += 1
                    payload = {"error": "execution_in_progress", "execId": outer.wedged_by}
                    return self.answer(409, json.dumps(payload).encode(), "application/json")
                n = outer.counts[fault] = outer.counts.get(fault, 0) + 1
                getattr(self, "fault_" + fault)(spec, n, body)

            def _ok(self, body, text="ok\r\n"):
                self.start_events()
                self.send_raw(_event("start", {"execId": body.get("execId")}))
                self.send_raw(_event("stdout", {"content": text, "accumulated": text}))
                self.send_raw(_event("result", _result(text)))
                self.send_raw(_event("done", {}))

            def fault_ok(self, spec, n, body):
                self._ok(body, spec.get("text", "ok\r\n"))

            def fault_http(self, spec, n, body):
                if n > spec.get("times", 1 << 30):
                    return self._ok(body, "recovered\r\n")
                headers = []
                if "retry_after" in spec:
                    headers.append(("Retry-After", str(spec["retry_after"])))
                self.answer(spec.get("status", 500), spec.get("body", "boom").encode(),
                            headers=headers)

            def fault_html(self, spec, n, body):
                self.answer(200, b"<html><body><h1>Welcome to nginx!</h1></body></html>",
                            "text/html")

            def fault_malformed(self, spec, n, body):
                self.start_events()
                self.send_raw(_event("start", {"execId": body.get("execId")}))
                self.send_raw(_event("stdout", {"content": "partial\r\n", "accumulated": ""}))
                self.send_raw(b"event: stdout\ndata: {this is not json\n\n")

            def fault_no_result(self, spec, n, body):
                self.start_events()
                self.send_raw(_event("start", {"execId": body.get("execId")}))
                self.send_raw(_event("stdout", {"content": "partial\r\n", "accumulated": ""}))

            def fault_silent(self, spec, n, body):
                self.start_events()
                self.send_raw(_event("start", {"execId": body.get("execId")}))
                self.send_raw(_event("stdout", {"content": "partial\r\n", "accumulated": ""}))
                outer.stop_event.wait(spec.get("seconds", 30))

            def fault_stdin_timeout(self, spec, n, body):
                self.start_events()
                self.send_raw(_event("start", {"execId": body.get("execId")}))
                self.send_raw(_event("stdin_request", {"prompt": "Answer: ", "password": False,
                                                    "execId": body.get("execId")}))
                self.send_raw(_event("stdout", {"content": "Answer: ", "accumulated": ""}))
                outer.stop_event.wait(spec.get("seconds", 1.0))
                self.send_raw(_event("error", {"type": "StdinTimeout",
                                            "message": "no input received within 1 s",
                                            "traceback": []}))
                self.send_raw(_event("done", {}))

            def fault_flood(self, spec, n, body):
                """Print ``bytes`` of numbered lines as fast as the socket takes
                them (forever when 0), in 4 KB events like mrmd-python's."""
                total = spec.get("bytes", 0)
                echo = [] if spec.get("echo_result") else None   # the result repeats the output
                self.start_events()
                self.send_raw(_event("start", {"execId": body.get("execId")}))
                sent, i = 0, 0
                try:
                    while (not total or sent < total) and not outer.stop_event.is_set():
                        lines = []
                        size = 0
                        while size < 4000:
                            line = "flood line %09d %s\r\n" % (i, "x" * 40)
                            lines.append(line)
                            size += len(line)
                            i += 1
                        chunk = "".join(lines)
                        self.send_raw(_event("stdout", {"content": chunk, "accumulated": ""}))
                        if echo is not None:
                            echo.append(chunk)
                        sent += size
                    outer.last_line = i - 1
                    self.send_raw(_event("result", _result("".join(echo or ()))))
                    self.send_raw(_event("done", {}))
                except OSError:
                    pass  # the monitor closed the stream (cancel)

            def fault_display(self, spec, n, body):
                self.start_events()
                self.send_raw(_event("start", {"execId": body.get("execId")}))
                self.send_raw(_event("stdout", {"content": "shown\r\n", "accumulated": ""}))
                result = _result("shown\r\n")
                bundle = dict(spec.get("bundle") or {})
                if "html_rows" in spec:   # large HTML made here, not sent through the code
                    bundle["text/html"] = big_html(spec["html_rows"])
                result["displayData"] = [{"data": bundle, "metadata": {}}]
                self.send_raw(_event("result", result))
                self.send_raw(_event("done", {}))

            def fault_displays(self, spec, n, body):
                """One line, then ``count`` display events of ``size`` bytes of HTML
                each (MRP 0.3.0's ``display`` events), then a result."""
                self.start_events()
                self.send_raw(_event("start", {"execId": body.get("execId")}))
                self.send_raw(_event("stdout", {"content": "shown\r\n"}))
                for i in range(spec.get("count", 20)):
                    self.send_raw(_event("display", {"metadata": {}, "data": {
                        "text/html": display_html(i, spec.get("size", 200_000))}}))
                self.send_raw(_event("result", _result("shown\r\n")))
                self.send_raw(_event("done", {}))

            def fault_gated(self, spec, n, body):
                """Opens the stream, waits for ``release``, then prints ``lines``
                GATED_LINEs in 4 KB events (no ``accumulated``)."""
                self.start_events()
                try:
                    self.send_raw(_event("start", {"execId": body.get("execId")}))
                    while not outer.release.wait(0.1):
                        if outer.stop_event.is_set():
                            return
                    lines = [GATED_LINE % i for i in range(spec.get("lines", 100))]
                    for i in range(0, len(lines), 40):
                        self.send_raw(_event("stdout", {"content": "".join(lines[i:i + 40])}))
                    self.send_raw(_event("result", _result("")))
                    self.send_raw(_event("done", {}))
                except OSError:
                    pass

            def fault_busy(self, spec, n, body):
                """Busy with another execution for ``seconds`` from the first
                request (409 like MRP 0.3.0, or ``status`` 503), then runs."""
                if n == 1:
                    outer.busy_until = time.monotonic() + spec.get("seconds", 1.0)
                if time.monotonic() < outer.busy_until:
                    status = spec.get("status", 409)
                    payload = {"error": "execution_in_progress" if status == 409 else "runtime_busy",
                               "message": "SECRET-BUSY-BODY", "execId": "someone-else"}
                    headers = [("Retry-After", "1")] if status == 503 else []
                    return self.answer(status, json.dumps(payload).encode(), "application/json",
                                       headers=headers)
                self._ok(body, "finally ran\r\n")

            def fault_wedge(self, spec, n, body):
                """Like MRP 0.3.0: one execution at a time, released when its
                stream ends normally and never when the client cuts it; /interrupt
                stops the loop."""
                outer.wedged_by = body.get("execId")
                outer.interrupt_requested.clear()
                # The execution has begun before its response headers go out.
                outer.headers_sent.clear()
                if spec.get("headers_after"):
                    outer.release_headers.wait(spec["headers_after"])
                self.start_events()
                outer.headers_sent.set()
                try:
                    self.send_raw(_event("start", {"execId": body.get("execId")}))
                    for i in range(spec.get("count", 100)):
                        if outer.interrupt_requested.wait(spec.get("every", 0.1)):
                            self.send_raw(_event("error", {"type": "KeyboardInterrupt",
                                                        "message": "", "traceback": []}))
                            break
                        self.send_raw(_event("stdout", {"content": "tick %d\r\n" % i}))
                    else:
                        self.send_raw(_event("result", _result("")))
                    self.send_raw(_event("done", {}))
                except OSError:
                    return   # cut by the client: the runtime stays busy for good
                outer.wedged_by = None

            def fault_redirect(self, spec, n, body):
                self.send_response(spec.get("status", 307))
                self.send_header("Location", spec["to"])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def fault_trickle_headers(self, spec, n, body):
                """A status line, then one header byte every ``every`` seconds, forever."""
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    self.wfile.flush()
                    while not outer.stop_event.wait(spec.get("every", 0.2)):
                        self.wfile.write(b"a")
                        self.wfile.flush()
                except OSError:
                    pass  # the monitor gave up
                self.close_connection = True

            def fault_big_event(self, spec, n, body):
                """An output event of ``bytes`` bytes on one line, never ended."""
                self.start_events()
                self.send_raw(_event("start", {"execId": body.get("execId")}))
                self.send_raw(_event("stdout", {"content": "before\r\n"}))
                try:
                    self.send_raw(b'event: stdout\ndata: {"content": "')
                    piece = b"x" * 65536
                    for _ in range(spec.get("bytes", 16 << 20) // len(piece)):
                        self.send_raw(piece)
                    outer.stop_event.wait(spec.get("hold", 10))
                except OSError:
                    pass

            def fault_garbage(self, spec, n, body):
                """A seeded random stream (random splits, missing newlines, huge
                fields, invalid UTF-8), then a clean end or none."""
                self.start_events()
                try:
                    for piece in garbage_stream(spec.get("seed", 0), body.get("execId")):
                        self.send_raw(piece)
                except OSError:
                    pass

            def fault_mrp3(self, spec, n, body):
                """MRP 0.3.0's shapes: seq on every event, display and asset events
                repeated in the result, a warning, and a seq gap."""
                self.start_events()
                exec_id = body.get("execId")
                seq = iter(range(1, 100))
                ev = lambda kind, data: self.send_raw(_event(kind, dict({"seq": next(seq)}, **data)))
                ev("start", {"execId": exec_id})
                ev("stdout", {"content": "three\r\n"})
                next(seq)   # a lost event
                display = {"data": {"text/plain": "<shown>"}, "metadata": {}}
                asset = {"id": "asset-%s-1" % exec_id, "url": "/mrp/v1/assets/a1.png",
                         "mimeType": "image/png", "assetType": "image", "size": 10}
                ev("display", display)
                ev("asset", asset)
                ev("warning", {"code": "stale", "message": "state may be stale\x1b[31m"})
                result = dict(_result("three\r\n"), displayData=[display], assets=[asset])
                ev("result", result)
                ev("done", {})

        super().__init__(Handler, "fault-runtime")

    def stop(self):
        self.stop_event.set()
        self.release.set()
        super().stop()


def garbage_stream(seed, exec_id):
    """Pieces of a hostile but bounded SSE stream, the same for the same seed."""
    rnd = random.Random(seed)
    parts = [_event("start", {"execId": exec_id})]
    for _ in range(rnd.randint(1, 30)):
        choice = rnd.random()
        if choice < 0.2:
            parts.append(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300))))
        elif choice < 0.4:
            parts.append(b"event: stdout\ndata: {\"content\": \"" + b"\\" * rnd.randint(0, 9)
                         + b"y" * rnd.randint(0, 200000))
        elif choice < 0.55:
            parts.append(b"event: \xff\xfe" + b"z" * rnd.randint(0, 50) + b"\r")
        elif choice < 0.7:
            parts.append(b"data: " + b"[" * rnd.randint(1, 5000) + b"\n\n")
        elif choice < 0.85:
            parts.append(_event("stdout", {"content": "ok \ud800 %d" % rnd.randint(0, 9)}))
        else:
            parts.append(b"\r\n" * rnd.randint(0, 3) + b":" + b"c" * rnd.randint(0, 1000))
    if rnd.random() < 0.5:
        parts.append(_event("result", _result("")) + _event("done", {}))
    raw = b"".join(parts)
    i = 0
    while i < len(raw):
        size = rnd.choice((1, 2, 7, 100, 4096, 65536))
        yield raw[i:i + size]
        i += size
