"""MrpClient against scripted servers: faults the real runtime never makes
(refused connections, HTTP errors, wrong content type, broken or stalled
streams) and hostile ones (redirects, foreign services, trickled headers,
huge events, garbage). The real mrmd-python is tested in
tests/e2e/test_mrp_runtime.py.
"""

import json
import logging
import select
import socket
import threading
import time

import pytest

from mrmd_monitor import messages as m
from mrmd_monitor.display import DisplayConverter
from mrmd_monitor.errors import (Cancelled, MrpError, RunTimedOut, RuntimeBusy, RuntimeHTTPError,
                                 RuntimeRefused, RuntimeUnavailable, StreamError)
from mrmd_monitor.mrp import CancelToken, MrpClient
from mrmd_monitor.runner import Runner
from mrmd_monitor.messages import RunJob
from tests.support.local_http import CAPABILITIES, LocalServer, LocalService, QuietHandler
from tests.support.notebook import uid as new_id
from tests.support.streams import StreamRunner
from tests.support.waiting import wait_until



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


def test_cancel_before_start_raises_without_request(client):
    token = CancelToken()
    token.cancel()
    token.cancel()  # idempotent
    with pytest.raises(Cancelled):
        client.execute_stream("http://127.0.0.1:9/mrp/v1", code="1", session="s", exec_id="e",
                              on_event=lambda e: pytest.fail("no event expected"), cancel=token)


def test_interrupt_is_best_effort_when_unreachable(client, closed_port):
    url = f"http://127.0.0.1:{closed_port}/mrp/v1"
    assert client.interrupt_status(url, "default", "x")[0] is False


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


class FaultHandler(QuietHandler):
    """The first path segment picks the fault: /<fault>/mrp/v1/execute/stream.
    Its events end their lines with CRLF; each connection serves one request."""

    protocol_version = "HTTP/1.0"

    def do_GET(self):
        self.server.gets.append(self.path)
        self.answer_json(200, CAPABILITIES)

    def do_POST(self):
        fault = self.path.strip("/").split("/")[0]
        body = self.read_json()
        self.server.requests.append((self.path, dict(self.headers), body))
        getattr(self, "fault_" + fault.replace("-", "_"))()

    def send_sse_headers(self):
        self.start_events("text/event-stream; charset=utf-8")

    def fault_http500(self):
        self.answer(500, b"Internal Server Error: worker crashed\n   Traceback...\n")

    def fault_html(self):
        self.answer(200, b"<html><body><h1>Welcome to nginx</h1></body></html>", "text/html")

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
    local = LocalServer(FaultHandler, "fake-mrp-server", join_handlers=True)
    server = local.server
    server.requests = []
    server.gets = []
    server.release, release_w = socket.socketpair()
    local.start()
    try:
        yield server
    finally:
        release_w.close()  # wakes silent handlers
        local.stop()
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


def test_no_response_headers_within_connect_timeout(fake_server):
    client = MrpClient(connect_timeout=0.5, idle_timeout=30)
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


# -- hostile runtimes and URLs ----------

def run_code(client, url, spec, exec_id="exec-1", **kw):
    events = []
    client.execute_stream(url, code=json.dumps(spec) if isinstance(spec, dict) else spec,
                          session="s", exec_id=exec_id, on_event=events.append,
                          cancel=kw.pop("cancel", CancelToken()), **kw)
    return events


@pytest.mark.parametrize("template,words", [
    ("http://127.0.0.1:{other}\\@127.0.0.1:{other}/mrp/v1", "backslash"),
    ("http://user:pw@127.0.0.1:{other}/mrp/v1", "user name or password"),
    ("http://127.0.0.1:{other}/mrp/v1?x=1", "query"),
    ("http://127.0.0.1:{other}/mrp/v1#frag", "fragment"),
    ("http://127.0.0.1:{other}/mrp/v1\r\nX-Injected: 1", "control characters"),
    ("ftp://127.0.0.1:{other}/mrp/v1", "http:// or https://"),
    ("http://127.1:{other}/mrp/v1", "canonical"),
    ("http://2130706433:{other}/mrp/v1", "canonical"),
    ("http://0x7f.0.0.1:{other}/mrp/v1", "canonical"),
    ("http://127.0.0.1:99999/mrp/v1", "port"),
    ("http://[::1/mrp/v1", "IPv6"),
])
def test_hostile_runtime_urls_are_refused_before_any_connection(client, template, words):
    with LocalService() as other:
        url = template.format(other=other.port)
        with pytest.raises(RuntimeRefused) as info:
            run_code(client, url, "print(1)")
        assert words in str(info.value)
        assert other.requests == []
        with pytest.raises(RuntimeRefused):
            client.send_input(url, "e", "secret\n", retry_for=0)
        assert client.interrupt_status(url, "s", "e")[0] is False
        assert other.requests == []
    assert "\r" not in str(info.value) and LocalService.SECRET not in str(info.value)


def test_allowlist_uses_the_parsed_url():
    from mrmd_monitor.protocol import runtime_refused
    loop = ("localhost", "127.0.0.0/8", "::1")
    # urlsplit saw 127.0.0.1 here, while requests connected to OTHER.
    assert runtime_refused("http://10.0.0.5:80\\@127.0.0.1/mrp/v1", loop) is not None
    assert runtime_refused("http://evil.example@127.0.0.1/mrp/v1", loop) is not None
    assert runtime_refused("http://127.0.0.1:8000/mrp/v1", loop) is None
    assert runtime_refused("HTTP://LOCALHOST:8000/mrp/v1", loop) is None
    assert runtime_refused("http://[::1]:8000/mrp/v1", loop) is None
    assert "not allowed" in runtime_refused("http://10.0.0.5:8000/mrp/v1", loop)


def test_redirect_to_another_port_is_never_followed(client, faults):
    with LocalService() as other:
        target = "http://127.0.0.1:%d/mrp/v1/execute/stream" % other.port
        for status in (302, 307, 308):
            with pytest.raises(RuntimeHTTPError) as info:
                run_code(client, faults.url, {"fault": "redirect", "to": target, "status": status})
            assert "redirect (HTTP %d)" % status in str(info.value)
        assert other.requests == []


def test_redirect_of_capabilities_is_refused(client):
    with LocalService() as other:
        class Redirect(QuietHandler):
            def do_GET(self):
                self.answer(302, headers=[("Location", "http://127.0.0.1:%d/" % other.port)])
            do_POST = do_GET

        with LocalServer(Redirect, "redirector", join_handlers=True) as server:
            with pytest.raises(RuntimeRefused) as info:
                run_code(client, server.url, "1")
        assert "redirect" in str(info.value)
        assert other.requests == []


@pytest.mark.parametrize("status,ctype", [(200, "text/html"), (404, "text/html"),
                                          (200, "application/json")])
def test_a_local_service_that_is_not_a_runtime_gets_no_post(client, status, ctype):
    with LocalService(status, ctype) as service:
        url = "http://127.0.0.1:%d/admin/api" % service.port
        with pytest.raises(RuntimeRefused) as info:
            run_code(client, url, "DROP TABLE users")
        assert service.requests == [("GET", "/admin/api/capabilities")]
    message = str(info.value)
    assert "not an MRP runtime" in message
    assert LocalService.SECRET not in message and "\x1b" not in message


def test_capabilities_are_checked_once_per_base_url(client, faults):
    for _ in range(3):
        run_code(client, faults.url, {"fault": "ok"})
    assert faults.gets.count("/mrp/v1/capabilities") == 1
    faults.capabilities = {"languages": ["python"], "features": {"executeStream": False}}
    other = MrpClient(connect_timeout=5, idle_timeout=30, capabilities_ttl=0)
    try:
        with pytest.raises(RuntimeRefused, match="executeStream"):
            run_code(other, faults.url, {"fault": "ok"})
    finally:
        other.close()
    assert all(path.endswith("/capabilities") for path, _ in faults.requests) is False


def test_trickled_headers_end_at_the_connect_deadline(faults):
    """One header byte every 0.1 s: the per-read timeout (30 s) never fires;
    the whole-header deadline (1 s) does."""
    client = MrpClient(connect_timeout=1.0, idle_timeout=30.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(StreamError) as info:
            run_code(client, faults.url, {"fault": "trickle_headers", "every": 0.1})
        took = time.monotonic() - t0
        assert "no response headers within 1 s" in str(info.value)
        assert took < 4.0, took
        assert run_code(client, faults.url, {"fault": "ok"})[-1].kind == "done"
    finally:
        client.close()


def test_max_run_time_counts_from_the_post(client, faults):
    t0 = time.monotonic()
    with pytest.raises(RunTimedOut):
        run_code(client, faults.url, {"fault": "silent", "seconds": 30}, max_run_time=1.0)
    assert time.monotonic() - t0 < 4.0
    # A run waiting for a busy runtime is bounded by it too.
    t0 = time.monotonic()
    with pytest.raises(RunTimedOut):
        run_code(client, faults.url, {"fault": "busy", "seconds": 30}, exec_id="other",
                 max_run_time=1.0)
    assert time.monotonic() - t0 < 4.0


@pytest.mark.parametrize("health", [True, False])
def test_busy_runtime_is_waited_for(client, faults, health):
    faults.health = health
    busy = []
    t0 = time.monotonic()
    events = run_code(client, faults.url, {"fault": "busy", "seconds": 1.5}, on_busy=busy.append)
    took = time.monotonic() - t0
    assert [e.kind for e in events] == ["start", "stdout", "result", "done"]
    assert events[1].data == {"content": "finally ran\r\n"}
    assert busy == ["waiting for the runtime: it is busy with another execution"]
    assert 1.4 < took < 8, took
    posts = [p for p, _ in faults.requests if p.endswith("/execute/stream")]
    if health:
        assert faults.gets.count("/mrp/v1/health") >= 2
        assert len(posts) == 2   # once busy, once when /health said idle
    else:
        assert 2 <= len(posts) <= 6


def test_busy_for_too_long_ends_without_the_busy_body(faults):
    client = MrpClient(connect_timeout=5, idle_timeout=30, busy_wait=1.0)
    try:
        with pytest.raises(RuntimeBusy) as info:
            run_code(client, faults.url, {"fault": "busy", "seconds": 30, "status": 503})
    finally:
        client.close()
    assert "stayed busy" in str(info.value) and "SECRET-BUSY-BODY" not in str(info.value)


def test_event_over_the_limit_ends_the_run(faults):
    client = MrpClient(connect_timeout=5, idle_timeout=30, max_event_bytes=1 << 20)
    try:
        events = []
        t0 = time.monotonic()
        with pytest.raises(StreamError) as info:
            client.execute_stream(faults.url, code=json.dumps({"fault": "big_event", "bytes": 8 << 20}),
                                  session="s", exec_id="e", on_event=events.append,
                                  cancel=CancelToken())
        assert time.monotonic() - t0 < 5
    finally:
        client.close()
    assert "larger than 1048576 bytes (--max-event-bytes)" in str(info.value)
    assert [e.kind for e in events] == ["start", "stdout"]


def test_garbage_streams_end_typed_and_the_next_run_works(client, faults):
    """Seeded, time-bounded fuzz over whole HTTP streams."""
    t0 = time.monotonic()
    ended = {"ok": 0, "error": 0}
    for seed in range(40):
        try:
            run_code(client, faults.url, {"fault": "garbage", "seed": seed}, exec_id="g%d" % seed)
            ended["ok"] += 1
        except MrpError as exc:
            assert isinstance(exc, StreamError), repr(exc)
            ended["error"] += 1
    assert ended["error"] > 0
    assert time.monotonic() - t0 < 60
    assert run_code(client, faults.url, {"fault": "ok"})[-1].kind == "done"


def test_input_carries_both_id_spellings(client, faults):
    assert client.send_input(faults.url, "e-7", "Ada\n", retry_for=0) is True
    path, body = faults.requests[-1]
    assert path.endswith("/input")
    assert body == {"exec_id": "e-7", "execId": "e-7", "text": "Ada\n"}


def _job(faults, code, posted, **kw):
    return RunJob(exec_id=kw.pop("exec_id", "run-" + new_id()), runtime_url=faults.url,
                  session="s", code=json.dumps(code), post=posted.append, **kw)


def test_runner_mrp3_assets_warnings_and_seq_gaps(client, faults, caplog):
    caplog.set_level(logging.WARNING, logger="mrmd_monitor.mrp")
    posted = []
    job = _job(faults, {"fault": "mrp3"}, posted)
    finished = Runner(client, DisplayConverter(1 << 20)).stream(job, CancelToken())
    assert finished.error is None and not finished.cancelled
    items = [i for msg in posted if isinstance(msg, m.DisplayItems) for i in msg.items]
    assert [i["mimeType"] for i in items] == ["text/plain", "image/png"]   # not twice
    assert items[1]["assetId"] == "asset-%s-1" % job.exec_id
    assert items[1]["url"] == "http://127.0.0.1:%d/mrp/v1/assets/a1.png" % faults.port
    text = finished.output.take()
    assert text == "three\r\n[runtime warning: state may be stale [31m]\n"
    assert any("out of sequence: seq 4 after 2" in r.getMessage() for r in caplog.records)


def test_runner_reports_busy_and_max_run_time(client, faults):
    posted = []
    job = _job(faults, {"fault": "busy", "seconds": 30}, posted, max_run_time=1.0,
               exec_id="slow")
    faults.interrupted = False
    finished = Runner(client, DisplayConverter(1 << 20)).stream(job, CancelToken())
    assert m.RuntimeBusy("slow", "waiting for the runtime: it is busy with another execution") \
        in posted
    assert finished.error["type"] == "MaxRunTime"
    assert finished.error["message"] == ("the run took longer than --max-run-time (1s) "
                                         "and was stopped")
    assert "the runtime did not stop the code" in finished.output.take()


def test_runner_says_when_the_interrupt_was_refused(client, faults):
    posted = []
    job = _job(faults, {"fault": "ok"}, posted, exec_id="cancelled-one")
    runner = Runner(client, DisplayConverter(1 << 20))
    runner.interrupt(job)
    assert posted == []
    faults.interrupted = False
    runner.interrupt(job)
    assert posted == [m.InterruptRefused("cancelled-one", "[mrmd-monitor: the runtime did not "
                                         "stop this cell (the runtime answered interrupted: "
                                         "false); its code may still be running]")]


def test_cancel_on_an_mrp3_runtime_lets_it_finish_the_execution(client, faults):
    """MRP 0.3.0 stays busy for good when a stream is cut: a cancelled stream is
    read (delivering nothing) until the runtime, interrupted, ends it; the next
    run then finds the runtime free."""
    faults.capabilities = dict(faults.capabilities, protocolVersion="0.3.0")
    run = StreamRunner(client, faults.url, json.dumps({"fault": "wedge", "count": 300}))
    wait_until(lambda: run.kinds().count("stdout") >= 3, timeout=10, message="three ticks")
    t0 = time.monotonic()
    run.cancel.cancel()
    assert time.monotonic() - t0 < 0.1
    seen = len(run.events)
    assert client.interrupt_status(faults.url, "default", run.exec_id)[0] is True
    run.join(5)
    assert isinstance(run.error, Cancelled), repr(run.error)
    assert len(run.events) <= seen + 1   # at most the event being handed over at cancel()
    # The runtime lets go of the execution after it has sent `done`: wait for its thread.
    wait_until(lambda: faults.wedged_by is None, timeout=10,
               message="the runtime stayed busy: the cancelled stream was cut, not drained")
    assert run_code(client, faults.url, {"fault": "wedge", "count": 1})[-1].kind == "done"


def test_a_chunk_read_while_a_cancel_arms_its_drain_is_drained_too(client, faults, monkeypatch):
    """The reader must never see a cancel that will drain as one that cuts: a
    tick read while cancel() was still arming the drain closed the stream, and
    MRP 0.3.0 stayed busy for good (the end-to-end cancel test then waited for
    a 409 to clear, about one run in thirty under load)."""
    from mrmd_monitor import http
    faults.capabilities = dict(faults.capabilities, protocolVersion="0.3.0")
    run = StreamRunner(client, faults.url, json.dumps({"fault": "wedge", "count": 300}))
    wait_until(lambda: run.kinds().count("stdout") >= 2, timeout=10, message="two ticks")
    real_call_at = http.DEADLINES.call_at

    def call_at(when, fn):
        if fn == run.cancel._end_drain:
            # The cancelling thread held up right here while the reader takes
            # two more ticks (they come every 0.1 s).
            seen = run.kinds().count("stdout")
            wait_until(lambda: run.kinds().count("stdout") >= seen + 2, timeout=10,
                       message="the reader stopped reading while the cancel was arming its drain")
        return real_call_at(when, fn)

    monkeypatch.setattr(http.DEADLINES, "call_at", call_at)
    run.cancel.cancel()
    assert client.interrupt_status(faults.url, "default", run.exec_id)[0] is True
    run.join(10)
    assert isinstance(run.error, Cancelled), repr(run.error)
    wait_until(lambda: faults.wedged_by is None, timeout=10,
               message="the runtime stayed busy: the cancelled stream was cut, not drained")


def test_a_cancel_while_the_stream_opens_still_lets_an_mrp3_runtime_finish(client, faults):
    """The runtime begins the execution before its response headers reach us: a cancel
    in that window must drain the stream as well, not close it (MRP 0.3.0 would stay
    busy for good and refuse every later run with 409)."""
    faults.capabilities = dict(faults.capabilities, protocolVersion="0.3.0")
    run = StreamRunner(client, faults.url,
                       json.dumps({"fault": "wedge", "count": 300, "headers_after": 10}))
    wait_until(lambda: faults.wedged_by == run.exec_id, timeout=10,
               message="the runtime to begin the execution")
    run.cancel.cancel()
    faults.release_headers.set()
    wait_until(faults.headers_sent.is_set, timeout=10, message="the response headers")
    assert client.interrupt_status(faults.url, "default", run.exec_id)[0] is True
    run.join(10)
    assert isinstance(run.error, Cancelled), repr(run.error)
    assert run.events == []   # nothing of a cancelled run is delivered
    wait_until(lambda: faults.wedged_by is None, timeout=10,
               message="the runtime stayed busy: the stream cancelled while opening was cut")
    assert run_code(client, faults.url, {"fault": "wedge", "count": 1})[-1].kind == "done"


def test_a_second_cancel_cuts_a_draining_stream_at_once(client, faults):
    faults.capabilities = dict(faults.capabilities, protocolVersion="0.3.0")
    run = StreamRunner(client, faults.url, json.dumps({"fault": "wedge", "count": 300}))
    wait_until(lambda: run.kinds().count("stdout") >= 2, timeout=10, message="two ticks")
    run.cancel.cancel()
    time.sleep(0.3)   # draining (deliberate: the stream goes on meanwhile)
    assert not run.finished.is_set()
    t0 = time.monotonic()
    run.cancel.cancel()
    run.join(2)
    assert time.monotonic() - t0 < 1.0
    assert isinstance(run.error, Cancelled)
    faults.interrupt_requested.set()   # let the scripted runtime's handler end


def test_accepted_runtime_urls_are_rebuilt_from_their_parts():
    from mrmd_monitor.http import parse_url
    assert parse_url("http://localhost:8000/mrp/v1/").base == "http://localhost:8000/mrp/v1"
    assert parse_url("HTTPS://Example.COM/x").base == "https://example.com:443/x"
    assert parse_url("http://[::1]:9/x").base == "http://[::1]:9/x"
    assert parse_url("http://my_runtime:8000/mrp/v1").host == "my_runtime"
    assert parse_url("http://127.0.0.1.nip.io/x").host == "127.0.0.1.nip.io"
    assert parse_url("http://127.0.0.1/a%20b/c").path == "/a%20b/c"
