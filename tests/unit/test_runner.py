"""runner.py: what one run's MRP events mean, as messages to the document's
sync thread. The MRP client is a scripted stand-in that replays events (the
wire is tested in test_mrp.py and end to end); faults are raised the way the
client raises them."""

from types import SimpleNamespace

from mrmd_monitor import messages as m
from mrmd_monitor.display import DisplayConverter
from mrmd_monitor.errors import Cancelled, RunTimedOut, RuntimeHTTPError, RuntimeUnavailable
from mrmd_monitor.http import CancelToken
from mrmd_monitor.runner import Runner

RUNTIME = "http://127.0.0.1:8000/mrp/v1"


class ScriptedClient:
    """Replays ``events`` (then raises ``fault``) for execute_stream; answers
    interrupts and input as told; records every call."""

    def __init__(self, events=(), fault=None, busy=None, interrupted=(True, ""),
                 accepted=True):
        self.events, self.fault, self.busy = list(events), fault, busy
        self.interrupted, self.accepted = interrupted, accepted
        self.calls = []

    def execute_stream(self, runtime_url, *, code, session, exec_id, on_event, cancel,
                       max_run_time=0.0, on_busy=None, run_log=None):
        self.calls.append(("execute", runtime_url, code, session, exec_id, max_run_time))
        if self.busy:
            on_busy(self.busy)
        for event in self.events:
            on_event(event)
        if self.fault is not None:
            raise self.fault

    def interrupt_status(self, runtime_url, session, exec_id=None, *, run_log=None):
        self.calls.append(("interrupt", runtime_url, session, exec_id))
        if isinstance(self.interrupted, Exception):
            raise self.interrupted
        return self.interrupted

    def send_input(self, runtime_url, exec_id, text, *, run_log=None):
        self.calls.append(("input", runtime_url, exec_id, text))
        if isinstance(self.accepted, Exception):
            raise self.accepted
        return self.accepted


def job(posted, **fields):
    values = dict(exec_id="e1", runtime_url=RUNTIME, session="s", code="print(1)",
                  post=posted.append, doc="nb.md", max_run_time=0.0, confirm_dispatch=False)
    values.update(fields)
    return SimpleNamespace(**values)


def run(events=(), *, display=None, **client_args):
    client = ScriptedClient(events, **client_args)
    runner = Runner(client, display or DisplayConverter(256 * 1024))
    posted = []
    finished = runner.stream(job(posted), CancelToken())
    return finished, posted, client


def kinds(posted):
    return [type(msg).__name__ for msg in posted]


def test_a_run_posts_its_start_once_and_its_output_in_order():
    finished, posted, client = run([
        ("start", {"execId": "e1"}),
        ("stdout", {"content": "a\r\n", "accumulated": "a\r\n"}),
        ("stderr", {"content": "b\r\n"}),
        ("stdout", {"content": ""}),
        ("result", {"success": True, "stdout": "a\r\n", "executionCount": 1}),
        ("done", {}),
    ])
    assert client.calls == [("execute", RUNTIME, "print(1)", "s", "e1", 0.0)]
    assert kinds(posted) == ["RunStarted", "OutputReady"]   # one notice for the burst
    assert posted[1].buffer is finished.output
    assert finished.output.take() == "a\r\nb\r\n"
    assert finished.error is None and not finished.cancelled
    assert finished.result == {"success": True, "executionCount": 1}   # the output is in the text


def test_a_stdin_request_asks_the_document():
    _, posted, _ = run([("stdin_request", {"prompt": "Name? ", "password": 1, "execId": "e1"})])
    assert posted[-1] == m.StdinRequested("e1", "Name? ", True)


def test_rich_output_from_display_events_is_not_repeated_from_the_result():
    finished, posted, _ = run([
        ("display", {"seq": 1, "data": {"text/html": "<b>hi</b>", "text/plain": "hi"}}),
        ("result", {"success": True,
                    "displayData": [{"data": {"text/html": "<b>hi</b>"}, "metadata": {}}]}),
    ])
    items = [msg for msg in posted if isinstance(msg, m.DisplayItems)]
    assert len(items) == 1
    assert [i["mimeType"] for i in items[0].items] == ["text/html", "text/plain"]


def test_rich_output_only_in_the_result_is_posted_from_it():
    _, posted, _ = run([
        ("result", {"success": True,
                    "displayData": [{"data": {"image/svg+xml": "<svg/>"}, "metadata": {}}],
                    "assets": [{"path": "e1_0001.png", "url": "/mrp/v1/assets/e1_0001.png",
                                "mimeType": "image/png", "assetType": "image", "size": 10}]}),
    ])
    (msg,) = [msg for msg in posted if isinstance(msg, m.DisplayItems)]
    assert msg.items[0] == {"mimeType": "image/svg+xml", "data": "<svg/>", "assetId": None}
    assert msg.items[1]["url"] == "http://127.0.0.1:8000/mrp/v1/assets/e1_0001.png"


def test_a_runtime_warning_becomes_one_clean_line_of_output():
    finished, _, _ = run([("warning", {"message": "slow\x1b[31m import\nof numpy"}),
                          ("warning", {"message": "   "})])
    assert finished.output.take() == "[runtime warning: slow [31m import of numpy]\n"


def test_an_error_event_ends_the_run_in_error():
    finished, _, _ = run([("stdout", {"content": "partial\n"}),
                          ("error", {"type": "ZeroDivisionError", "message": "division by zero",
                                     "traceback": ["line 1", "line 2"]})])
    assert finished.error == {"type": "ZeroDivisionError", "message": "division by zero",
                              "traceback": ["line 1", "line 2"]}
    assert finished.output.take() == "partial\n"


def test_a_failed_result_carries_its_error():
    finished, _, _ = run([("result", {"success": False, "error": {"type": "NameError",
                                                                   "message": "x"}})])
    assert finished.error == {"type": "NameError", "message": "x", "traceback": []}


def test_a_busy_runtime_is_shown_while_the_run_waits():
    _, posted, _ = run([], busy="waiting for the runtime: it is busy with another execution")
    assert posted == [m.RuntimeBusy("e1", "waiting for the runtime: it is busy with another "
                                          "execution")]


def test_a_client_failure_ends_the_run_with_its_type_and_message():
    finished, _, _ = run([("stdout", {"content": "x\n"})],
                         fault=RuntimeUnavailable("lost the connection to the runtime"))
    assert finished.error == {"type": "RuntimeUnavailable", "traceback": [],
                              "message": "lost the connection to the runtime"}
    assert finished.output.take() == "x\n"


def test_a_cancelled_stream_writes_nothing_more():
    finished, _, _ = run([("stdout", {"content": "x\n"})], fault=Cancelled("cancelled"))
    assert finished.cancelled and finished.error is None


def test_over_max_run_time_the_runtime_is_asked_to_stop_and_the_block_says_if_it_would_not():
    client = ScriptedClient([("stdout", {"content": "tick\n"})], fault=RunTimedOut("late"),
                            interrupted=(False, "interrupted: false"))
    posted = []
    finished = Runner(client, DisplayConverter(1024)).stream(
        job(posted, max_run_time=30.0), CancelToken())
    assert client.calls[-1] == ("interrupt", RUNTIME, "s", "e1")
    assert finished.error["type"] == "MaxRunTime"
    assert "--max-run-time (30s)" in finished.error["message"]
    assert finished.output.take() == ("tick\n[mrmd-monitor: the runtime did not stop the code "
                                      "(interrupted: false); it may still be running]\n")


def test_a_run_waits_for_its_dispatch_mark_and_a_stop_before_it_sends_nothing():
    client = ScriptedClient([("stdout", {"content": "ran\n"})])
    runner = Runner(client, DisplayConverter(1024))

    def mark_reached_the_server(msg):
        posted.append(msg)
        if isinstance(msg, m.Dispatching):
            msg.gate.set()   # what the sync thread does once the server has dispatchedAt

    posted = []
    finished = runner.stream(job(posted, confirm_dispatch=True, post=mark_reached_the_server),
                             CancelToken())
    assert kinds(posted)[:2] == ["Dispatching", "RunStarted"]
    assert finished.output.take() == "ran\n" and len(client.calls) == 1

    stopped, posted = CancelToken(), []
    stopped.cancel()
    finished = runner.stream(job(posted, confirm_dispatch=True), stopped)
    assert finished.cancelled and kinds(posted) == ["Dispatching"]
    assert len(client.calls) == 1   # never sent to the runtime


def test_a_stdin_answer_is_forwarded_and_its_outcome_posted():
    posted = []
    client = ScriptedClient()
    Runner(client, DisplayConverter(1024)).send_input("e1", RUNTIME, "Ada\n", posted.append)
    assert client.calls == [("input", RUNTIME, "e1", "Ada\n")]
    refusing = ScriptedClient(accepted=RuntimeHTTPError("HTTP 404 from the runtime"))
    Runner(refusing, DisplayConverter(1024)).send_input("e1", RUNTIME, "Ada\n", posted.append)
    assert posted == [m.InputSent("e1", True),
                      m.InputSent("e1", False, "HTTP 404 from the runtime")]


def test_a_cancelled_run_the_runtime_would_not_stop_gets_a_last_line():
    for interrupted, said in (((False, "interrupted: false"), "interrupted: false"),
                              (OSError("refused"), "the interrupt request failed")):
        posted = []
        Runner(ScriptedClient(interrupted=interrupted), DisplayConverter(1024)).interrupt(
            job(posted))
        assert posted == [m.InterruptRefused("e1", "[mrmd-monitor: the runtime did not stop "
                                                   "this cell (%s); its code may still be "
                                                   "running]" % said)]
    posted = []
    Runner(ScriptedClient(interrupted=(True, "")), DisplayConverter(1024)).interrupt(job(posted))
    assert posted == []
