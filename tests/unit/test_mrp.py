"""MrpClient against the real mrmd-python runtime, and against a fake server for faults.

The fake server exists only to inject faults the real runtime never makes
(refused connections, HTTP errors, wrong content type, broken or stalled
streams); everything the runtime really does is tested against mrmd-python.
"""

import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from mrmd_monitor import mrp
from mrmd_monitor.errors import (Cancelled, MrpError, RuntimeHTTPError, RuntimeUnavailable,
                                 StreamError)
from mrmd_monitor.mrp import CancelToken, MrpClient, MrpEvent, decode_output_data
from tests.support.ports import free_port
from tests.support.waiting import wait_until


def new_id():
    return uuid.uuid4().hex[:12]


@pytest.fixture(autouse=True)
def no_thread_leak():
    before = set(threading.enumerate())
    yield
    wait_until(lambda: not (set(threading.enumerate()) - before), timeout=5,
               message="threads started by the test to end")


@pytest.fixture
def client():
    c = MrpClient(connect_timeout=5.0, idle_timeout=30.0, request_timeout=10.0)
    yield c
    c.close()


class StreamRunner:
    """Runs execute_stream on its own thread and records what happened."""

    def __init__(self, client, runtime_url, code, cancel=None, exec_id=None, on_event=None):
        self.events = []
        self.error = None
        self.finished = threading.Event()
        self.finished_at = None
        self.cancel = cancel or CancelToken()
        self.exec_id = exec_id or new_id()
        self._extra = on_event
        self._lock = threading.Lock()
        self.thread = threading.Thread(
            target=self._run, args=(client, runtime_url, code), name=f"test-stream-{self.exec_id}")
        self.thread.start()

    def _on_event(self, event):
        with self._lock:
            self.events.append(event)
        if self._extra:
            self._extra(event)

    def _run(self, client, runtime_url, code):
        try:
            client.execute_stream(runtime_url, code=code, session="default", exec_id=self.exec_id,
                                  on_event=self._on_event, cancel=self.cancel)
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to assert on
            self.error = exc
        finally:
            self.finished_at = time.monotonic()
            self.finished.set()

    def kinds(self):
        with self._lock:
            return [e.kind for e in self.events]

    def output(self, stream="stdout"):
        with self._lock:
            return "".join(e.data["content"] for e in self.events if e.kind == stream)

    def join(self, timeout):
        assert self.finished.wait(timeout), "execute_stream did not return in time"
        self.thread.join(timeout)
        return self


# -- the real runtime --------------------------------------------------------

@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """A real mrmd-python on a free port; yields its base URL (with a trailing slash).

    mrmd-python writes its log and registry under ``~/.mrmd`` and IPython its
    profile under ``~/.ipython``, so HOME points into a temporary directory.
    ``--managed`` keeps it out of the registry (a runtime with the same id
    elsewhere would make it refuse to start), and in managed mode it ignores
    SIGTERM and SIGINT by design: it is stopped with SIGKILL, its whole
    process group (it was started in a new session).
    """
    exe = shutil.which("mrmd-python", path=os.path.dirname(sys.executable)) or shutil.which("mrmd-python")
    if exe is None:
        pytest.skip("mrmd-python is not installed")
    workdir = tmp_path_factory.mktemp("mrmd-python")
    home = workdir / "home"
    home.mkdir()
    port = free_port()
    env = dict(os.environ, HOME=str(home))
    proc = subprocess.Popen(
        [exe, "--foreground", "--managed", "--id", "test-mrp", "--host", "127.0.0.1",
         "--port", str(port), "--cwd", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        cwd=str(workdir), env=env, start_new_session=True)

    def runtime_log():
        return "\n".join(p.read_text(errors="replace") for p in home.glob(".mrmd/logs/*.log"))

    base = f"http://127.0.0.1:{port}/mrp/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mrmd-python exited with {proc.returncode}: {runtime_log()}")
            try:
                if requests.get(base + "/capabilities", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mrmd-python did not answer within 60 s: {runtime_log()}")
            time.sleep(0.1)
        yield base + "/"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def test_hello_world_events_in_order(client, runtime):
    events = []
    client.execute_stream(runtime, code='print("hello")', session="default", exec_id=new_id(),
                          on_event=events.append, cancel=CancelToken())
    assert [e.kind for e in events] == ["start", "stdout", "result", "done"]
    assert all(isinstance(e, MrpEvent) for e in events)
    assert events[1].data == {"content": "hello\r\n"}
    assert events[2].data["success"] is True
    assert events[2].data["stdout"] == "hello\r\n"
    assert events[3].data == {}


def test_start_event_carries_our_exec_id(client, runtime):
    events = []
    exec_id = new_id()
    client.execute_stream(runtime.rstrip("/"), code="x = 1", session="default", exec_id=exec_id,
                          on_event=events.append, cancel=CancelToken())
    assert events[0].kind == "start" and events[0].data["execId"] == exec_id
    assert events[-1].kind == "done"


def test_error_event_for_zero_division(client, runtime):
    events = []
    client.execute_stream(runtime, code="1/0", session="default", exec_id=new_id(),
                          on_event=events.append, cancel=CancelToken())
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-2:] == ["error", "done"]
    error = events[-2].data
    assert error["type"] == "ZeroDivisionError"
    assert isinstance(error["traceback"], list) and error["traceback"]
    assert "division by zero" in error["message"]


def test_output_events_never_keep_accumulated(client, runtime):
    n = 3000
    run = StreamRunner(client, runtime, f"for i in range({n}): print(i)").join(60)
    assert run.error is None
    outputs = [e for e in run.events if e.kind == "stdout"]
    assert len(outputs) > 1, "expected the output to arrive in several chunks"
    for event in outputs:
        assert set(event.data) == {"content"}
        assert "accumulated" not in event.data
    assert run.output() == "".join(f"{i}\r\n" for i in range(n))


def test_non_ascii_output_passes_through(client, runtime):
    text = "a😀é中b \\ \" \t end"
    run = StreamRunner(client, runtime, f"print({text!r})").join(30)
    assert run.error is None
    assert run.output() == text + "\r\n"


def test_stdin_request_and_send_input(client, runtime, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "Ada"
    asked = threading.Event()
    request = {}

    def on_event(event):
        if event.kind == "stdin_request":
            request.update(event.data)
            asked.set()

    run = StreamRunner(client, runtime, 'name = input("Name: "); print("Hi", name)',
                       on_event=on_event)
    assert asked.wait(30), "no stdin_request arrived"
    assert request["prompt"] == "Name: "
    assert request["execId"] == run.exec_id
    # Answer from this (another) thread while the stream thread is blocked reading.
    assert client.send_input(runtime, run.exec_id, secret + "\n") is True
    run.join(30)
    assert run.error is None, run.error
    assert "Hi Ada" in run.output()
    assert run.kinds()[-2:] == ["result", "done"]
    # The answer is never logged (it may be a password).
    for record in caplog.records:
        if record.name.startswith("mrmd_monitor"):
            assert secret not in record.getMessage()


def test_send_input_without_pending_request_is_not_accepted(client, runtime):
    t0 = time.monotonic()
    assert client.send_input(runtime, "no-such-" + new_id(), "x\n", retry_for=0) is False
    assert client.send_input(runtime, "no-such-" + new_id(), "x\n", retry_for=0.3) is False
    assert 0.3 <= time.monotonic() - t0 < 3


def test_immediate_answers_are_accepted(client, runtime):
    """mrmd-python announces stdin_request before it can take the answer; an answer
    sent from the event callback itself, as early as possible, must still land."""
    for _ in range(5):
        answers = []
        exec_id = new_id()

        def on_event(event):
            if event.kind == "stdin_request":
                answers.append(client.send_input(runtime, exec_id, "Ada\n"))

        events = []
        token = CancelToken()
        watchdog = threading.Timer(20, token.cancel)  # a lost answer would hang for 300 s
        watchdog.start()
        try:
            client.execute_stream(runtime, code='x = input("? "); print("got", x)',
                                  session="default", exec_id=exec_id, cancel=token,
                                  on_event=lambda e: (events.append(e), on_event(e)))
        finally:
            watchdog.cancel()
            watchdog.join()
        assert answers == [True]
        assert "got Ada" in "".join(e.data["content"] for e in events if e.kind == "stdout")


class SleepLoop:
    """Code for a long ``time.sleep`` loop that the test can end afterwards.

    Cancelling only closes our stream, and the runtime's interrupt is best
    effort: a loop left running would keep printing into later runs' output
    (mrmd-python mixes them). The loop stops when a file appears and says so.
    """

    def __init__(self, tmp_path):
        self.stop_file = tmp_path / "stop"
        self.done_file = tmp_path / "done"
        self.code = (
            "import os, time\n"
            "try:\n"
            "    for i in range(600):\n"
            f"        if os.path.exists({str(self.stop_file)!r}): break\n"
            "        print(i, flush=True)\n"
            "        time.sleep(0.1)\n"
            "finally:\n"
            f"    open({str(self.done_file)!r}, 'w').close()\n")

    def end(self):
        self.stop_file.touch()
        wait_until(self.done_file.exists, timeout=10, message="the sleep loop to end")


def test_cancel_mid_run_is_prompt(client, runtime, tmp_path):
    loop = SleepLoop(tmp_path)
    run = StreamRunner(client, runtime, loop.code)
    try:
        wait_until(lambda: run.output().count("\n") >= 3, timeout=30, message="three lines")
        assert not run.finished.is_set()
        t0 = time.monotonic()
        run.cancel.cancel()
        cancel_took = time.monotonic() - t0
        assert cancel_took < 0.1, f"cancel() blocked for {cancel_took:.3f} s"
        assert run.cancel.cancelled
        assert run.finished.wait(1.0), "execute_stream did not stop within 1 s of cancel()"
        assert run.finished_at - t0 < 1.0
        assert isinstance(run.error, Cancelled), repr(run.error)
        assert run.error.execution_id == run.exec_id
        seen = len(run.events)
        assert run.kinds()[-1] != "done"
    finally:
        assert client.interrupt(runtime, "default", run.exec_id) in (True, False)
        loop.end()
        run.join(5)
    assert len(run.events) == seen, "events were delivered after cancel"


def test_cancel_without_a_socket_stops_between_events(client, runtime, monkeypatch, tmp_path):
    # Neither the connect hook nor the response gives a socket: only the flag is left.
    monkeypatch.setattr(mrp, "_register_new_socket", lambda sock: None)
    monkeypatch.setattr(mrp, "response_socket", lambda response: None)
    loop = SleepLoop(tmp_path)
    run = StreamRunner(client, runtime, loop.code)
    try:
        wait_until(lambda: run.output().count("\n") >= 2, timeout=30, message="two lines")
        t0 = time.monotonic()
        run.cancel.cancel()
        assert time.monotonic() - t0 < 0.1
        assert run.finished.wait(2.0), "the flag was not checked at the next event"
        assert isinstance(run.error, Cancelled), repr(run.error)
    finally:
        loop.end()
        run.join(5)


def test_response_socket_is_found_with_installed_urllib3(runtime):
    with requests.get(runtime + "capabilities", stream=True, timeout=5) as response:
        sock = mrp.response_socket(response)
        assert isinstance(sock, socket.socket)
        assert sock.getpeername()[1] == int(runtime.split(":")[2].split("/")[0])


def test_cancel_before_start_raises_without_request(client):
    token = CancelToken()
    token.cancel()
    token.cancel()  # idempotent
    with pytest.raises(Cancelled):
        client.execute_stream("http://127.0.0.1:9/mrp/v1", code="1", session="s", exec_id="e",
                              on_event=lambda e: pytest.fail("no event expected"), cancel=token)


def test_interrupt_answers(client, runtime):
    assert client.interrupt(runtime, "default") is True


def test_interrupt_is_best_effort_when_unreachable(client, closed_port):
    assert client.interrupt(f"http://127.0.0.1:{closed_port}/mrp/v1", "default", "x") is False


def test_large_output_is_exact(client, runtime):
    """The throughput path: 20,000 lines (~100 MB of SSE with accumulated)."""
    n = 20000
    events = []
    t_cpu = time.thread_time()
    t_wall = time.monotonic()
    client.execute_stream(runtime, code=f"for i in range({n}): print(i)", session="default",
                          exec_id=new_id(), on_event=events.append, cancel=CancelToken())
    cpu = time.thread_time() - t_cpu
    wall = time.monotonic() - t_wall
    out = "".join(e.data["content"] for e in events if e.kind == "stdout")
    assert out == "".join(f"{i}\r\n" for i in range(n))
    assert events[-1].kind == "done"
    logging.getLogger(__name__).info("%d lines: wall %.2f s, client cpu %.2f s", n, wall, cpu)


# -- pure parsing -------------------------------------------------------------

def test_decode_output_fast_path_and_fallback():
    content = "x\r\n😀 \"q\" \\ \ufffd é"
    runtime_shape = json.dumps({"content": content, "accumulated": "old" + content})
    assert runtime_shape.startswith('{"content": ')
    assert decode_output_data(runtime_shape) == {"content": content}
    other_order = json.dumps({"accumulated": "zz", "content": content})
    assert decode_output_data(other_order) == {"content": content}
    compact = json.dumps({"content": content, "accumulated": "a"}, separators=(",", ":"))
    assert decode_output_data(compact) == {"content": content}
    only = json.dumps({"content": content})
    assert decode_output_data(only) == {"content": content}
    extra = json.dumps({"accumulated": "a", "content": "c", "stream": "x"})
    assert decode_output_data(extra) == {"content": "c", "stream": "x"}
    for broken in ('{"content": "abc', '{"content": "abc", "accumulated": "ab', "[1]", "nope"):
        with pytest.raises(ValueError):
            decode_output_data(broken)


# -- faults, from a fake server ----------------------------------------------

@pytest.fixture
def closed_port():
    """A port that refuses connections: bound, never listening."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


def sse(kind, data):
    text = data if isinstance(data, str) else json.dumps(data)
    return f"event: {kind}\r\ndata: {text}\r\n\r\n".encode()


class FaultHandler(BaseHTTPRequestHandler):
    """The first path segment picks the fault: /<fault>/mrp/v1/execute/stream."""

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        fault = self.path.strip("/").split("/")[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append((self.path, dict(self.headers), body))
        getattr(self, "fault_" + fault.replace("-", "_"))()

    def send_sse_headers(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def fault_http500(self):
        body = b"Internal Server Error: worker crashed\n   Traceback...\n"
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def fault_html(self):
        body = b"<html><body><h1>Welcome to nginx</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def fault_badjson(self):
        self.send_sse_headers()
        self.wfile.write(sse("start", {"execId": "x"}) + sse("result", "{success: true"))

    def fault_badoutput(self):
        self.send_sse_headers()
        self.wfile.write(sse("start", {"execId": "x"}) + sse("stdout", '{"content": "hi\\r\\n", "acc'))

    def fault_noresult(self):
        self.send_sse_headers()
        self.wfile.write(sse("start", {"execId": "x"}) + sse("stdout", {"content": "a", "accumulated": "a"}))

    def fault_doneonly(self):
        self.send_sse_headers()
        self.wfile.write(sse("start", {"execId": "x"}) + sse("done", {}))

    def fault_resultnodone(self):
        self.send_sse_headers()
        self.wfile.write(sse("start", {"execId": "x"}) + b": a comment\r\n\r\n"
                         + sse("mystery", {"k": 1}) + sse("result", {"success": True}))

    def fault_noheaders(self):
        # Accept the request, never answer, until the client goes away.
        select.select([self.connection, self.server.release], [], [], 30)

    def fault_silent(self):
        self.send_sse_headers()
        self.wfile.write(sse("start", {"execId": "x"}))
        self.wfile.flush()
        # Stay silent until the client goes away (EOF) or the fixture ends.
        select.select([self.connection, self.server.release], [], [], 30)


@pytest.fixture(scope="module")
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FaultHandler)
    server.daemon_threads = False  # server_close() joins the handler threads
    server.requests = []
    server.release, release_w = socket.socketpair()
    thread = threading.Thread(target=server.serve_forever, name="fake-mrp-server")
    thread.start()
    try:
        yield server
    finally:
        release_w.close()  # wakes silent handlers
        server.shutdown()
        server.server_close()
        thread.join(5)
        server.release.close()


def fake_url(server, fault):
    return f"http://127.0.0.1:{server.server_address[1]}/{fault}/mrp/v1/"


def run_fault(client, url, exc_type):
    events = []
    with pytest.raises(exc_type) as info:
        client.execute_stream(url, code="print(1)", session="sess", exec_id="exec-1",
                              on_event=events.append, cancel=CancelToken())
    error = info.value
    assert isinstance(error, MrpError)
    assert error.execution_id == "exec-1"
    assert error.runtime_url == url
    return error, events


def test_connection_refused(client, closed_port):
    url = f"http://127.0.0.1:{closed_port}/mrp/v1"
    error, events = run_fault(client, url, RuntimeUnavailable)
    assert "connection refused" in str(error) and url in str(error)
    assert events == []


def test_send_input_to_unreachable_runtime(client, closed_port):
    with pytest.raises(RuntimeUnavailable):
        client.send_input(f"http://127.0.0.1:{closed_port}/mrp/v1", "e", "secret\n")


def test_request_shape(client, fake_server):
    url = fake_url(fake_server, "resultnodone")
    n = len(fake_server.requests)
    events = []
    client.execute_stream(url, code="print(1)", session="sess", exec_id="exec-1",
                          on_event=events.append, cancel=CancelToken())
    path, headers, body = fake_server.requests[n]
    assert path == "/resultnodone/mrp/v1/execute/stream"  # trailing slash stripped
    assert headers["Accept"] == "text/event-stream"
    assert body == {"code": "print(1)", "session": "sess", "storeHistory": True, "execId": "exec-1"}
    # A stream that ends right after its result is fine; unknown events pass through.
    assert [e.kind for e in events] == ["start", "mystery", "result"]
    assert events[1].data == {"k": 1}


def test_http_500(client, fake_server):
    error, _ = run_fault(client, fake_url(fake_server, "http500"), RuntimeHTTPError)
    assert error.status_code == 500
    assert "HTTP 500" in str(error)
    assert "worker crashed" in str(error)


def test_not_an_event_stream(client, fake_server):
    error, _ = run_fault(client, fake_url(fake_server, "html"), StreamError)
    assert "text/html" in str(error) and "Welcome to nginx" in str(error)


def test_malformed_json_event(client, fake_server):
    error, events = run_fault(client, fake_url(fake_server, "badjson"), StreamError)
    assert "'result' event" in str(error) and "not a JSON object" in str(error)
    assert [e.kind for e in events] == ["start"]


def test_malformed_output_event(client, fake_server):
    error, events = run_fault(client, fake_url(fake_server, "badoutput"), StreamError)
    assert "'stdout' event" in str(error)


def test_stream_ends_without_result(client, fake_server):
    error, events = run_fault(client, fake_url(fake_server, "noresult"), StreamError)
    assert "ended before a result or error" in str(error)
    assert [e.kind for e in events] == ["start", "stdout"]
    assert events[1].data == {"content": "a"}


def test_done_without_result(client, fake_server):
    error, _ = run_fault(client, fake_url(fake_server, "doneonly"), StreamError)
    assert "without a result or error" in str(error)


def test_silent_stream_hits_idle_timeout(fake_server):
    client = MrpClient(connect_timeout=5.0, idle_timeout=0.5)
    try:
        t0 = time.monotonic()
        error, events = run_fault(client, fake_url(fake_server, "silent"), StreamError)
        took = time.monotonic() - t0
    finally:
        client.close()
    assert "sent nothing for 0.5 s" in str(error)
    assert [e.kind for e in events] == ["start"]
    assert 0.4 < took < 5


def test_cancel_silent_stream(client, fake_server):
    run = StreamRunner(client, fake_url(fake_server, "silent"), "x")
    wait_until(lambda: run.kinds() == ["start"], timeout=10, message="the start event")
    t0 = time.monotonic()
    run.cancel.cancel()
    assert time.monotonic() - t0 < 0.1
    run.join(1.0)
    assert isinstance(run.error, Cancelled), repr(run.error)


def test_cancel_before_response_headers(client, fake_server):
    """The socket reaches the token at connect time, so a runtime that never answers
    cannot hold a cancel for idle_timeout."""
    n = len(fake_server.requests)
    run = StreamRunner(client, fake_url(fake_server, "noheaders"), "x")
    wait_until(lambda: len(fake_server.requests) > n, timeout=10, message="the request")
    t0 = time.monotonic()
    run.cancel.cancel()
    assert time.monotonic() - t0 < 0.1
    run.join(1.0)
    assert isinstance(run.error, Cancelled), repr(run.error)
    assert run.events == []


def test_no_response_headers_within_idle_timeout(fake_server):
    client = MrpClient(connect_timeout=5.0, idle_timeout=0.5)
    try:
        error, events = run_fault(client, fake_url(fake_server, "noheaders"), StreamError)
    finally:
        client.close()
    assert "no response headers within 0.5 s" in str(error)


def test_on_event_errors_propagate_unchanged(client, fake_server):
    class Boom(Exception):
        pass

    def on_event(event):
        raise Boom(event.kind)

    with pytest.raises(Boom, match="start"):
        client.execute_stream(fake_url(fake_server, "resultnodone"), code="x", session="s",
                              exec_id="e", on_event=on_event, cancel=CancelToken())


def test_client_is_usable_after_close_and_from_many_threads(fake_server):
    client = MrpClient(connect_timeout=5.0, idle_timeout=5.0)
    url = fake_url(fake_server, "resultnodone")
    results = []

    def one():
        events = []
        client.execute_stream(url, code="x", session="s", exec_id=new_id(),
                              on_event=events.append, cancel=CancelToken())
        results.append([e.kind for e in events])

    try:
        one()
        client.close()
        one()
        threads = [threading.Thread(target=one, name=f"test-many-{i}") for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        client.close()
    assert results == [["start", "mystery", "result"]] * 6
