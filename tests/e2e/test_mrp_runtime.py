"""MrpClient against the real mrmd-python runtime (PyPI 0.4.2): event order,
output, stdin, cancel, interrupt, throughput, and --max-run-time on a cell
that sleeps forever. Faults are injected in tests/unit/test_mrp.py instead."""

import logging
import socket
import threading
import time

import pytest
import requests

from mrmd_monitor import http, mrp
from mrmd_monitor.errors import Cancelled, RunTimedOut
from mrmd_monitor.mrp import CancelToken, MrpClient, MrpEvent
from tests.support.notebook import uid as new_id
from tests.support.streams import StreamRunner
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e



@pytest.fixture
def client():
    c = MrpClient(connect_timeout=5.0, idle_timeout=30.0, request_timeout=10.0)
    yield c
    c.close()


@pytest.fixture
def base(runtime):
    """The shared runtime's base URL, with a trailing slash (which must not matter)."""
    return runtime.url.rstrip("/") + "/"


# -- the real runtime ---------------------------------------------------------

def test_hello_world_events_in_order(client, base):
    events = []
    client.execute_stream(base, code='print("hello")', session="default", exec_id=new_id(),
                          on_event=events.append, cancel=CancelToken())
    assert [e.kind for e in events] == ["start", "stdout", "result", "done"]
    assert all(isinstance(e, MrpEvent) for e in events)
    assert events[1].data == {"content": "hello\r\n"}
    assert events[2].data["success"] is True
    assert events[2].data["stdout"] == "hello\r\n"
    assert events[3].data == {}


def test_start_event_carries_our_exec_id(client, base):
    events = []
    exec_id = new_id()
    client.execute_stream(base.rstrip("/"), code="x = 1", session="default", exec_id=exec_id,
                          on_event=events.append, cancel=CancelToken())
    assert events[0].kind == "start" and events[0].data["execId"] == exec_id
    assert events[-1].kind == "done"


def test_error_event_for_zero_division(client, base):
    events = []
    client.execute_stream(base, code="1/0", session="default", exec_id=new_id(),
                          on_event=events.append, cancel=CancelToken())
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-2:] == ["error", "done"]
    error = events[-2].data
    assert error["type"] == "ZeroDivisionError"
    assert isinstance(error["traceback"], list) and error["traceback"]
    assert "division by zero" in error["message"]


def test_output_events_never_keep_accumulated(client, base):
    n = 3000
    run = StreamRunner(client, base, f"for i in range({n}): print(i)").join(60)
    assert run.error is None
    outputs = [e for e in run.events if e.kind == "stdout"]
    assert len(outputs) > 1, "expected the output to arrive in several chunks"
    for event in outputs:
        assert set(event.data) == {"content"}
        assert "accumulated" not in event.data
    assert run.output() == "".join(f"{i}\r\n" for i in range(n))


def test_non_ascii_output_passes_through(client, base):
    text = "a😀é中b \\ \" \t end"
    run = StreamRunner(client, base, f"print({text!r})").join(30)
    assert run.error is None
    assert run.output() == text + "\r\n"


def test_stdin_request_and_send_input(client, base, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "Ada"
    asked = threading.Event()
    request = {}

    def on_event(event):
        if event.kind == "stdin_request":
            request.update(event.data)
            asked.set()

    run = StreamRunner(client, base, 'name = input("Name: "); print("Hi", name)',
                       on_event=on_event)
    assert asked.wait(30), "no stdin_request arrived"
    assert request["prompt"] == "Name: "
    assert request["execId"] == run.exec_id
    # Answer from this (another) thread while the stream thread is blocked reading.
    assert client.send_input(base, run.exec_id, secret + "\n") is True
    run.join(30)
    assert run.error is None, run.error
    assert "Hi Ada" in run.output()
    assert run.kinds()[-2:] == ["result", "done"]
    # The answer is never logged (it may be a password).
    for record in caplog.records:
        if record.name.startswith("mrmd_monitor"):
            assert secret not in record.getMessage()


def test_send_input_without_pending_request_is_not_accepted(client, base):
    t0 = time.monotonic()
    assert client.send_input(base, "no-such-" + new_id(), "x\n", retry_for=0) is False
    assert client.send_input(base, "no-such-" + new_id(), "x\n", retry_for=0.3) is False
    assert 0.3 <= time.monotonic() - t0 < 3


def test_immediate_answers_are_accepted(client, base):
    """mrmd-python announces stdin_request before it can take the answer; an answer
    sent from the event callback itself, as early as possible, must still land."""
    for _ in range(5):
        answers = []
        exec_id = new_id()

        def on_event(event):
            if event.kind == "stdin_request":
                answers.append(client.send_input(base, exec_id, "Ada\n"))

        events = []
        token = CancelToken()
        watchdog = threading.Timer(20, token.cancel)  # a lost answer would hang for 300 s
        watchdog.start()
        try:
            client.execute_stream(base, code='x = input("? "); print("got", x)',
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


def test_cancel_mid_run_is_prompt(client, base, tmp_path):
    loop = SleepLoop(tmp_path)
    run = StreamRunner(client, base, loop.code)
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
        assert client.interrupt_status(base, "default", run.exec_id)[0] in (True, False)
        loop.end()
        run.join(5)
    assert len(run.events) == seen, "events were delivered after cancel"


def test_cancel_without_a_socket_stops_between_events(client, base, monkeypatch, tmp_path):
    # Neither the connect hook nor the response gives a socket: only the flag is left.
    monkeypatch.setattr(http, "register_new_socket", lambda sock: None)
    monkeypatch.setattr(mrp, "response_socket", lambda response: None)
    loop = SleepLoop(tmp_path)
    run = StreamRunner(client, base, loop.code)
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


def test_response_socket_is_found_with_installed_urllib3(base):
    with requests.get(base + "capabilities", stream=True, timeout=5) as response:
        sock = mrp.response_socket(response)
        assert isinstance(sock, socket.socket)
        assert sock.getpeername()[1] == int(base.split(":")[2].split("/")[0])


def test_interrupt_answers(client, base):
    assert client.interrupt_status(base, "default")[0] is True


def test_large_output_is_exact(client, base):
    """The throughput path: 20,000 lines (~100 MB of SSE with accumulated)."""
    n = 20000
    events = []
    t_cpu = time.thread_time()
    t_wall = time.monotonic()
    client.execute_stream(base, code=f"for i in range({n}): print(i)", session="default",
                          exec_id=new_id(), on_event=events.append, cancel=CancelToken())
    cpu = time.thread_time() - t_cpu
    wall = time.monotonic() - t_wall
    out = "".join(e.data["content"] for e in events if e.kind == "stdout")
    assert out == "".join(f"{i}\r\n" for i in range(n))
    assert events[-1].kind == "done"
    logging.getLogger(__name__).info("%d lines: wall %.2f s, client cpu %.2f s", n, wall, cpu)


def test_sleeping_cell_ends_at_max_run_time(client, own_runtime):
    """``time.sleep(1e9)`` with a 2 s limit: the stream ends by itself, counted
    from the POST, and the next run on that runtime completes."""
    t0 = time.monotonic()
    with pytest.raises(RunTimedOut):
        client.execute_stream(own_runtime.url, code="import time; time.sleep(1e9)",
                              session="default", exec_id=new_id(), on_event=lambda e: None,
                              cancel=CancelToken(), max_run_time=2.0)
    took = time.monotonic() - t0
    assert 1.8 < took < 6, took
    client.interrupt_status(own_runtime.url, "default")
    events = []
    client.execute_stream(own_runtime.url, code='print("next")', session="other",
                          exec_id=new_id(), on_event=events.append, cancel=CancelToken())
    assert "next\r\n" in "".join(e.data.get("content", "") for e in events if e.kind == "stdout")
