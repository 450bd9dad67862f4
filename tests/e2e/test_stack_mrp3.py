"""The MRP 0.3.0 runtime (the vendored mrmd-python with ``protocolVersion``
0.3.0) behind mrmd-sync, as mrmd users run it.

The real runtime is used wherever it can show the behaviour: figures as
assets with an ``id``. Two of its answers cannot be had from it on demand, so
a scripted stand-in that speaks MRP 0.3.0 exactly as measured (``seq`` on
every event, 409 ``execution_in_progress``, ``/health``) injects them:
an ``/interrupt`` that answers ``{"interrupted": false}`` while the cancelled
code keeps the runtime busy, and a ``warning`` event (the real runtime's
streaming path never emits one; only its non-streaming ``/execute`` does). It
also records the ``/input`` bodies the monitor sends."""

import json
import threading
from datetime import datetime, timezone

import pytest
import requests

from tests.support.local_http import LocalServer, QuietHandler
from tests.support.notebook import FINAL, block_content, cell, start_cell, uid

pytestmark = pytest.mark.e2e

BUSY_BODY = "execution_in_progress"


# ---------------------------------------------------------------------- the stand-in
class Mrp3StandIn(LocalServer):
    """A scripted MRP 0.3.0 runtime. The request's ``code`` is JSON:
    ``{"input": prompt, "print": text}`` asks for a line first (and echoes it,
    as a terminal does); ``{"loop": N, "delay": s}`` prints ``tick i`` N times and ignores
    interrupts (``/interrupt`` answers ``interrupted: false``) and a closed
    stream, like code that keeps running; ``{"warning": msg, "print": text}``
    prints, then sends a ``warning`` event before its result; ``{"print": text}``."""

    def __init__(self):
        self.lock = threading.Lock()
        self.current = None          # execId of the code running now
        self.execution_count = 0
        self.interrupts = []         # bodies of /interrupt calls
        self.inputs = []             # bodies of /input calls
        self.answered = threading.Event()
        self.answer = None
        self.busy_answers = 0        # 409s sent
        self.stop_event = threading.Event()
        outer = self

        class Handler(QuietHandler):
            _json = QuietHandler.answer_json

            def do_GET(self):
                if self.path.endswith("/capabilities"):
                    return self._json(200, {
                        "protocol": "mrp", "protocolVersion": "0.3.0", "runtime": "mrmd-python",
                        "version": "0.3.0", "languages": ["python"],
                        "features": {"execute": True, "executeStream": True, "interrupt": True}})
                if self.path.endswith("/health"):
                    with outer.lock:
                        current = outer.current
                    return self._json(200, {
                        "status": "ok", "state": "executing" if current else "idle",
                        "runtime": "mrmd-python", "currentExecId": current,
                        "executionCount": outer.execution_count, "stateRevision": 0, "uptime": 1})
                self._json(404, {"error": "not_found"})

            def do_POST(self):
                body = self.read_json()
                if self.path.endswith("/interrupt"):
                    outer.interrupts.append(body)
                    return self._json(200, {"interrupted": False})
                if self.path.endswith("/input"):
                    outer.inputs.append(body)
                    with outer.lock:
                        current = outer.current
                    # As the real runtime: either key names the execution.
                    if current and (body.get("execId") or body.get("exec_id")) == current:
                        outer.answer = str(body.get("text", ""))
                        outer.answered.set()
                        return self._json(200, {"accepted": True})
                    return self._json(200, {"accepted": False, "error": "No pending input request"})
                if not self.path.endswith("/execute/stream"):
                    return self._json(404, {"error": "not_found"})
                exec_id = body.get("execId")
                with outer.lock:
                    current = outer.current
                    if current is None:
                        outer.current = exec_id
                        outer.execution_count += 1
                if current is not None:
                    outer.busy_answers += 1
                    return self._json(409, {
                        "error": BUSY_BODY,
                        "message": "An execution is already running. Use /interrupt to cancel it.",
                        "execId": current})
                try:
                    self._run(exec_id, json.loads(body.get("code") or "{}"))
                finally:
                    with outer.lock:
                        outer.current = None

            def _run(self, exec_id, spec):
                self.start_events("text/event-stream; charset=utf-8")
                seq = [0]
                alive = [True]

                def send(kind, data):
                    seq[0] += 1
                    payload = dict(data, seq=seq[0])
                    if not alive[0]:
                        return
                    try:
                        self.send_event(kind, payload)
                    except OSError:
                        alive[0] = False  # the client left; the code goes on running

                send("start", {"execId": exec_id,
                               "timestamp": datetime.now(timezone.utc).isoformat()})
                out = ""
                for i in range(int(spec.get("loop", 0))):
                    line = "tick %d\r\n" % i
                    out += line
                    send("stdout", {"content": line})
                    if outer.stop_event.wait(float(spec.get("delay", 0.1))):
                        return
                if "input" in spec:
                    send("stdin_request", {"prompt": spec["input"], "password": False,
                                           "execId": exec_id})
                    send("stdout", {"content": spec["input"]})
                    if not outer.answered.wait(30):
                        send("error", {"type": "StdinTimeout", "message": "no input", "traceback": []})
                        send("done", {})
                        return
                    echo = outer.answer.replace("\n", "\r\n")
                    out += spec["input"] + echo
                    send("stdout", {"content": echo})
                if "print" in spec:
                    out += spec["print"]
                    send("stdout", {"content": spec["print"]})
                warnings = []
                if "warning" in spec:
                    warnings = [{"code": "repr_failed", "message": spec["warning"]}]
                    send("warning", warnings[0])
                send("result", {"success": True, "stdout": out, "stderr": "", "result": None,
                                "error": None, "displayData": [], "assets": [],
                                "executionCount": outer.execution_count, "stateRevision": 1,
                                "duration": 1, "imports": [], "warnings": warnings})
                send("done", {})

        super().__init__(Handler, "mrp3-stand-in")

    def busy(self):
        with self.lock:
            return self.current is not None

    def stop(self):
        self.stop_event.set()
        super().stop()


@pytest.fixture
def stand_in():
    rt = Mrp3StandIn().start()
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture
def on_mrmd_sync(module_mrmd_sync, doc_name, peer_factory, monitor_factory):
    """mrmd-sync, one monitor and one browser on a fresh document."""
    monitor = monitor_factory(module_mrmd_sync.url, doc_name)
    browser = peer_factory(module_mrmd_sync.url, doc_name)
    return monitor, browser


def _watch(peer, exec_id, seen, stop):
    """Record every version of an entry the browser sees (the queued state is transient)."""
    while not stop.is_set():
        try:
            entry = peer.entry(exec_id)
        except Exception:  # the peer is closing
            return
        if entry and (not seen or seen[-1] != entry):
            seen.append(entry)
        stop.wait(0.05)


# ---------------------------------------------------------------------- item 2
def test_after_a_refused_interrupt_the_next_cell_waits_then_runs(stand_in, on_mrmd_sync):
    monitor, b = on_mrmd_sync
    loop = json.dumps({"loop": 60, "delay": 0.3})       # ~18 s, beyond today's 5 retries (~15 s)
    after = json.dumps({"print": "after the busy spell\r\n"})
    b.set_text(cell(loop) + "\n\n" + cell(after) + "\n")
    first = start_cell(b, loop, stand_in.url, prefix="loop")
    b.wait_text("tick 2\n", timeout=30)
    assert b.cancel(first)
    monitor.wait_for_line("%s was cancelled" % first, timeout=10)
    assert stand_in.busy()                              # the cancelled code goes on running
    second = "after-" + uid()
    seen, stop = [], threading.Event()
    watcher = threading.Thread(target=_watch, args=(b, second, seen, stop), name="watch-entry")
    watcher.start()
    try:
        b.request(second, after, stand_in.url)
        entry = b.wait_entry(second, FINAL, timeout=90)
    finally:
        stop.set()
        watcher.join(5)
    assert entry["status"] == "completed", entry
    assert not stand_in.busy()
    text = b.text()
    # The cancelled run's block keeps whole lines, and says that the runtime
    # refused the interrupt.
    cancelled = block_content(text, first)
    ticks = [l for l in cancelled.splitlines() if l.startswith("tick ")]
    assert len(ticks) >= 3 and ticks == ["tick %d" % i for i in range(len(ticks))]
    notices = [l for l in cancelled.splitlines() if not l.startswith("tick ")]
    assert len(notices) == 1 and "interrupt" in notices[0].lower(), cancelled
    # The waiting run showed why it waited, and its block holds only its output.
    waiting = [e for e in seen if e.get("queued") is True]
    assert waiting, seen
    # Why it waits: behind the cancelled run whose stream the monitor drains (a position), or
    # on the runtime's own 409 (a reason).
    assert all((isinstance(e.get("queueReason"), str) and e["queueReason"])
               or (isinstance(e.get("queuePosition"), (int, float)) and e["queuePosition"] >= 1)
               for e in waiting), waiting
    assert block_content(text, second) == "after the busy spell\n"
    assert BUSY_BODY not in text and "409" not in text
    assert b.entry(first)["status"] == "cancelled"


def test_warning_event_is_a_line_in_the_block(stand_in, on_mrmd_sync):
    monitor, b = on_mrmd_sync
    code = json.dumps({"print": "computed\r\n", "warning": "Result repr failed; returned fallback preview"})
    b.set_text(cell(code) + "\n\nAfter.\n")
    exec_id = start_cell(b, code, stand_in.url, prefix="warn")
    entry = b.wait_entry(exec_id, FINAL, timeout=30)
    assert entry["status"] == "completed"
    text = b.wait_text(lambda t: "Result repr failed" in block_content(t, exec_id), timeout=10)
    lines = block_content(text, exec_id).splitlines()
    assert lines[0] == "computed"
    assert len(lines) == 2 and "Result repr failed; returned fallback preview" in lines[1]
    assert b.text().endswith("```\n\nAfter.\n")


def test_input_names_the_run_both_ways(stand_in, on_mrmd_sync):
    """MRP 0.3.0 reads ``exec_id`` in ``/input``; the spec says ``execId``: send both."""
    monitor, b = on_mrmd_sync
    code = json.dumps({"input": "Your name: ", "print": "Hi Ada\r\n"})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, stand_in.url, prefix="stdin")
    b.wait_entry(exec_id, lambda e: e and e.get("stdinRequest"), timeout=30)
    b.answer_stdin(exec_id, "Ada")
    entry = b.wait_entry(exec_id, FINAL, timeout=30)
    assert entry["status"] == "completed"
    assert block_content(b.text(), exec_id) == "Your name: Ada\nHi Ada\n"
    assert stand_in.inputs, "no /input call"
    body = stand_in.inputs[-1]
    assert body.get("execId") == exec_id and body.get("exec_id") == exec_id, body
    assert body.get("text") == "Ada\n"


# ---------------------------------------------------------------------- item 3, real runtime
def test_figure_on_mrp3_keeps_its_asset_id(module_mrmd_sync, mrp3_runtime, on_mrmd_sync):
    monitor, b = on_mrmd_sync
    code = ("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "plt.figure()\nplt.plot([1, 3, 2])\nplt.show()\nprint('plotted')")
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, mrp3_runtime.url, prefix="fig")
    entry = b.wait_entry(exec_id, FINAL, timeout=90)
    assert entry["status"] == "completed"
    pngs = [d for d in entry["displayData"] if d["mimeType"] == "image/png"]
    assert len(pngs) == 1, entry["displayData"]              # one figure, shown once
    png = pngs[0]
    # MRP 0.3.0 names assets by id ("asset-<hex>.png"), served at <runtime>/assets/<id>.
    assert isinstance(png["assetId"], str) and png["assetId"].startswith("asset-"), png
    assert png["assetId"].endswith(".png") and png["data"] is None
    assert png["url"] == mrp3_runtime.url + "/assets/" + png["assetId"]
    got = requests.get(png["url"], timeout=10)
    assert got.status_code == 200 and got.content.startswith(b"\x89PNG")
    assert block_content(b.text(), exec_id) == "plotted\n"
    # Shown as the editor shows a plot (no --project-root: the runtime's URL).
    assert b.text().endswith("```\n\n![plot-1](%s)\n" % png["url"])
