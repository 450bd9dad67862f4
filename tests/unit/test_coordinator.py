"""The coordinator on a real pycrdt document, with a second pycrdt document as
the browser and a recording stand-in for the worker pool (the pool and the
runtime are tested for real in the end-to-end tests)."""

import threading
import pytest
from pycrdt import Doc, Map, Text

from mrmd_monitor import messages as m
from mrmd_monitor.config import Config
from mrmd_monitor.coordinator import Coordinator
from mrmd_monitor.runs import Phase
from tests.support.docport import FakePort

ME = 7
BROWSER = 3_000_000_000
CELL = "# Notes ✓ 😀 é 中\n\n```python\nprint('hi')\n```\n\nEnd.\n"


def out(exec_id, text):
    """What a worker posts when it has read output."""
    buf = m.OutputBuffer()
    buf.put(text)
    return m.OutputReady(exec_id, buf)


class Pool:
    def __init__(self):
        self.calls = []

    def submit(self, exec_id, job):
        self.calls.append(("submit", exec_id))

    def cancel(self, exec_id, interrupt=True):
        self.calls.append(("cancel", exec_id))

    def send_input(self, exec_id, url, text, post):
        self.calls.append(("input", exec_id, text))

    def names(self, kind):
        return [c[1] for c in self.calls if c[0] == kind]


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class World:
    def __init__(self, block_wait=1.0, **config):
        self.mon = Doc(client_id=ME)
        self.br = Doc(client_id=BROWSER)
        self.br_text = self.br.get("content", type=Text)
        self.br_map = self.br.get("executions", type=Map)
        self.pool = Pool()
        self.clock = Clock()
        self.posted = []
        self.changed = set()
        self.mon_map = self.mon.get("executions", type=Map)  # observers die with their type
        self.sub = self.mon_map.integrated.observe(lambda e: self.changed.update(e.keys))
        self.mon_text = self.mon.get("content", type=Text)
        self.text_sub = self.mon_text.observe(lambda e: self._text_moved())
        cfg = Config(sync_url="ws://127.0.0.1:1", block_wait=block_wait, claim_settle=0.0,
                     **config)
        self.port = FakePort(monitors={ME, 42}, others=True)
        self.co = Coordinator(self.mon, me=ME, pool=self.pool, post=self.posted.append,
                              config=cfg, port=self.port, clock=self.clock,
                              now_ms=lambda: 1_700_000_000_123)

    def tick(self):
        """The server answers the probes sent so far, then the timers run."""
        if self.port.auto_ack and self.port.seq > self.port.acked:
            self.port.acked = self.port.seq
            self.co.on_probe_acked(self.port.acked)
        return self.co.tick()

    def _text_moved(self):
        if self.applying:   # as the sync thread does for remote edits
            self.co.text_epoch += 1

    applying = False

    def to_monitor(self):
        self.changed.clear()
        self.applying = True
        self.mon.apply_update(self.br.get_update(self.mon.get_state()))
        self.applying = False
        keys = list(self.changed)
        self.co.on_entries_changed(keys)
        self.tick()

    def to_browser(self):
        self.br.apply_update(self.mon.get_update(self.br.get_state()))

    def request(self, exec_id, code="print('hi')", **extra):
        entry = {"id": exec_id, "cellId": None, "code": code, "language": "python",
                 "runtimeUrl": "http://127.0.0.1:9/mrp/v1", "session": "s", "status": "requested",
                 "requestedBy": BROWSER, "requestedAt": 1_700_000_000_000, "claimedBy": None,
                 "claimedAt": None, "outputBlockReady": False, "outputPosition": None,
                 "startedAt": None, "completedAt": None, "stdinRequest": None,
                 "stdinResponse": None, "result": None, "error": None, "displayData": []}
        entry.update(extra)
        self.br_map[exec_id] = entry
        self.to_monitor()

    def start_run(self, exec_id, **request):
        """Request, let the block wait pass (the monitor makes the block), start."""
        self.request(exec_id, **request)
        self.clock.t += 2
        self.co.tick()
        self.co.on_message(m.RunStarted(exec_id))

    def dispatching(self, exec_id):
        """Request, start the block wait, hand it to the pool: its worker asks
        to send it (messages.Dispatching); the probe is not answered yet.
        Returns the gate the worker waits on."""
        self.request(exec_id)
        self.clock.t += 2
        self.co.tick()
        gate = threading.Event()
        self.port.auto_ack = False
        self.co.on_message(m.Dispatching(exec_id, gate))
        return gate

    def entry(self, exec_id):
        self.to_browser()
        return self.br_map.get(exec_id)

    def text(self):
        self.to_browser()
        return str(self.br_text)

    def browser_set(self, exec_id, **changes):
        self.to_browser()
        self.br_map[exec_id] = {**self.br_map[exec_id], **changes}
        self.to_monitor()


@pytest.fixture
def w():
    world = World()
    world.br_text += CELL
    world.to_monitor()
    return world


def test_claims_requested_entry_with_whole_object_and_ints(w):
    w.request("e1")
    e = w.entry("e1")
    assert e["status"] == "claimed" and e["claimedBy"] == ME
    assert e["claimedAt"] == 1_700_000_000_123
    assert e["code"] == "print('hi')" and e["displayData"] == []
    assert list(w.co.runs) == ["e1"]
    assert w.mon.get("executions", type=Map)["e1"]["requestedBy"] == BROWSER


def test_browser_ready_arms_and_output_lands_in_block(w):
    w.request("e1")
    w.br_text.insert(len(CELL.encode()) - len("\n\nEnd.\n"), "\n\n```output:e1\n```")
    w.browser_set("e1", status="ready", outputBlockReady=True)
    assert w.pool.names("submit") == ["e1"]
    w.co.on_message(m.RunStarted("e1"))
    assert w.entry("e1")["status"] == "running"
    w.co.on_message(out("e1", "hi\r\n"))
    w.tick()
    assert w.text() == CELL.replace("```\n\nEnd", "```\n\n```output:e1\nhi\n```\n\nEnd")
    w.co.on_message(m.RunFinished("e1", result={"success": True, "stdout": "hi\r\n",
                                                "executionCount": 1}))
    e = w.entry("e1")
    assert e["status"] == "completed" and e["result"] == {"success": True, "executionCount": 1}
    assert not w.co.runs


def test_headless_block_after_deadline(w):
    w.request("e1")
    w.tick()
    assert w.pool.names("submit") == []
    w.clock.t += 1.01
    w.tick()
    assert w.pool.names("submit") == ["e1"]
    assert "```\n\n```output:e1\n```\n\nEnd." in w.text()
    e = w.entry("e1")
    assert e["status"] == "ready" and e["outputBlockReady"] is True


def test_throttled_flush_progress_bar_one_line(w):
    w.start_run("e1")
    w.co.on_message(out("e1", "0%"))
    w.tick()
    assert "```output:e1\n0%\n```" in w.text()
    for i in range(1, 101):
        w.co.on_message(out("e1", "\r%d%%" % i))
    w.tick()
    assert "```output:e1\n0%\n```" in w.text()  # within the flush interval: not yet
    w.clock.t += 0.05
    w.tick()
    assert "```output:e1\n100%\n```" in w.text()


def test_cancel_stops_writes_and_keeps_status(w):
    w.start_run("e1")
    w.co.on_message(out("e1", "line 1\n"))
    w.tick()
    w.co.on_message(out("e1", "line 2\n"))
    w.browser_set("e1", status="cancelled")
    assert ("cancel", "e1") in w.pool.calls
    w.co.on_message(out("e1", "line 3\n"))
    w.co.on_message(m.RunFinished("e1", cancelled=True))
    w.clock.t += 1
    w.tick()
    assert "```output:e1\nline 1\n```" in w.text()
    assert w.entry("e1")["status"] == "cancelled"


def test_concurrent_browser_write_wins_then_monitor_reapplies(w):
    w.request("e1")
    w.clock.t += 2
    w.tick()
    w.to_browser()
    # The browser answers from a stale copy while the monitor writes running.
    stale = dict(w.br_map["e1"])
    w.co.on_message(m.RunStarted("e1"))
    w.br_map["e1"] = {**stale, "stdinResponse": {"text": "x\n", "respondedAt": 1}}
    w.to_monitor()
    e = w.entry("e1")
    assert e["status"] == "running"


def test_stdin_round_trip_never_keeps_answer(w):
    w.start_run("e1")
    w.co.on_message(m.StdinRequested("e1", "Name: ", False))
    req = w.entry("e1")["stdinRequest"]
    assert req["prompt"] == "Name: " and req["password"] is False
    w.browser_set("e1", stdinResponse={"text": "Ada\n", "respondedAt": 5})
    assert ("input", "e1", "Ada\n") in w.pool.calls
    e = w.entry("e1")
    assert e["stdinRequest"] is None and e["stdinResponse"] is None


def test_error_shown_once_in_block(w):
    w.start_run("e1")
    w.co.on_message(m.RunFinished("e1", error={"type": "RuntimeUnavailable",
                                               "message": "cannot reach the runtime",
                                               "traceback": []}))
    # As the editor's own run writes it: "\n[Error: ...]" after no output.
    assert "```output:e1\n\n[Error: cannot reach the runtime]\n```" in w.text()
    e = w.entry("e1")
    assert e["status"] == "error" and e["error"]["type"] == "RuntimeUnavailable"


def test_invalid_request_marked_error(w):
    w.request("bad", code=None)
    e = w.entry("bad")
    assert e["status"] == "error" and "no code" in e["error"]["message"]
    assert w.pool.calls == []


def test_garbage_entries_ignored(w):
    w.br_map["junk"] = "not an object"
    w.br_map["junk2"] = {"status": "weird"}
    w.to_monitor()
    assert w.pool.calls == [] and not w.co.runs


def held_in_order(world):
    return [r.exec_id for r in sorted(world.co.runs.values(), key=lambda r: r.order)]


def run_in_turn(world):
    """Let every held run go (blocks made after the wait), finishing each run
    the pool is handed; the order the pool was handed them in."""
    world.clock.t += 2
    world.tick()
    done = set()
    while True:
        todo = [e for e in world.pool.names("submit") if e not in done]
        if not todo:
            return world.pool.names("submit")
        assert len(todo) == 1, "one run at a time on a runtime and session: %s" % todo
        world.co.on_message(m.RunStarted(todo[0]))
        world.co.on_message(m.RunFinished(todo[0], result={"success": True}))
        done.add(todo[0])
        world.tick()


def test_claims_in_request_order_within_one_update(w):
    for i, t in [(3, 30), (1, 10), (2, 20)]:
        w.br_map["e%d" % i] = {"id": "e%d" % i, "code": "x", "runtimeUrl": "http://127.0.0.1:9",
                               "status": "requested", "requestedAt": t}
    w.to_monitor()
    w.tick()     # seen long after they were made, with another monitor here: after a probe
    assert held_in_order(w) == ["e1", "e2", "e3"]
    assert run_in_turn(w) == ["e1", "e2", "e3"]


def test_same_millisecond_requests_follow_the_notebook_order():
    world = World()
    cells = ["```python\nx%d = 1\n```" % i for i in range(4)]
    world.br_text += "\n\n".join(cells) + "\n"
    for key, i in [("zz", 0), ("aa", 1), ("mm", 2), ("bb", 3)]:
        world.br_map[key] = {"id": key, "code": "x%d = 1" % i, "language": "python",
                             "runtimeUrl": "http://127.0.0.1:9", "status": "requested",
                             "requestedAt": 1000}
    world.to_monitor()
    world.tick()     # seen long after they were made, with another monitor here: after a probe
    assert held_in_order(world) == ["zz", "aa", "mm", "bb"]
    assert run_in_turn(world) == ["zz", "aa", "mm", "bb"]


def test_settle_on_stop(w):
    w.request("e1")
    w.request("e2", code="x = 1")
    w.clock.t += 2
    w.tick()
    w.co.on_message(m.RunStarted("e1"))
    w.co.on_message(out("e1", "partial"))
    w.co.settle("the monitor was stopped")
    assert w.entry("e1")["status"] == "error"
    assert w.entry("e2")["status"] == "requested" and w.entry("e2")["claimedBy"] is None
    assert "partial\n[mrmd-monitor: the monitor was stopped; the output above is kept]\n" in w.text()


# -- robustness --------------------------------------------------------------

from mrmd_monitor.protocol import runtime_refused  # noqa: E402


def test_runtime_allowlist_patterns():
    loop = ("localhost", "127.0.0.0/8", "::1")
    assert runtime_refused("http://127.0.0.1:8000/mrp/v1", loop) is None
    assert runtime_refused("http://127.9.9.9/mrp/v1", loop) is None
    assert runtime_refused("http://[::1]:9/x", loop) is None
    assert runtime_refused("http://localhost:9/x", loop) is None
    assert "not allowed" in runtime_refused("http://10.0.0.5:8000/x", loop)
    # Names are never resolved: only what is listed.
    assert runtime_refused("http://127.0.0.1.nip.io/x", loop) is not None
    assert runtime_refused("http://gpu-1.lab:8000/x", ("*.lab",)) is None
    assert runtime_refused("http://gpu-1.lab:9000/x", ("gpu-1.lab:8000",)) is not None
    assert runtime_refused("http://gpu-1.lab:8000/x", ("gpu-1.lab:8000",)) is None
    assert runtime_refused("http://10.1.2.3/x", ("10.0.0.0/8",)) is None
    assert runtime_refused("http://anything/x", ("*",)) is None


def test_refused_runtime_marked_error(w):
    w.request("far", runtimeUrl="http://10.0.0.5:8000/mrp/v1")
    e = w.entry("far")
    assert e["status"] == "error" and e["error"]["type"] == "RuntimeNotAllowed"
    assert "10.0.0.5" in e["error"]["message"]
    assert w.pool.calls == []


def test_stale_requests_expire_on_first_sync():
    world = World()
    world.br_text += CELL
    now = 1_700_000_000_123
    world.br_map["old"] = {"id": "old", "code": "x", "runtimeUrl": "http://127.0.0.1:9",
                           "status": "requested", "requestedAt": now - 3_600_000}
    world.br_map["new"] = {"id": "new", "code": "x", "runtimeUrl": "http://127.0.0.1:9",
                           "status": "requested", "requestedAt": now - 60_000}
    world.mon.apply_update(world.br.get_update(world.mon.get_state()))
    world.co.on_synced()
    world.tick()
    world.tick()     # seen a minute late, with another monitor here: claimed after a probe
    old, new = world.entry("old"), world.entry("new")
    assert old["status"] == "error" and old["error"]["type"] == "Expired"
    assert "60 minutes" in old["error"]["message"]
    assert new["status"] == "claimed"


def test_claim_not_confirmed_when_another_monitor_won():
    world = World()
    world.port.auto_ack = False   # confirmation waits for the probe's answer
    world.br_text += CELL
    world.to_monitor()
    world.request("e1")
    assert world.co.claims.probe_of("e1") == 1 and world.co.runs["e1"].phase is Phase.CLAIMED
    # A concurrent claim by another monitor with a larger client id arrives first.
    other = Doc(client_id=ME + 1)
    other.apply_update(world.br.get_update())
    om = other.get("executions", type=Map)
    om["e1"] = {**om["e1"], "status": "claimed", "claimedBy": ME + 1}
    world.changed.clear()
    world.mon.apply_update(other.get_update(world.mon.get_state()))
    world.co.on_probe_acked(1)
    world.co.on_entries_changed(list(world.changed))
    world.clock.t += 5
    world.tick()
    assert "e1" not in world.co.runs
    assert world.pool.names("submit") == []
    assert ("cancel", "e1") in world.pool.calls
    assert world.entry("e1")["claimedBy"] == ME + 1


def test_orphans_taken_over_or_marked_lost():
    world = World(orphan_timeout=5.0)
    alive = {ME}
    world.port.monitors = alive
    world.br_text += CELL + "\n```output:run1\npartial\n```\n"
    base = {"code": "print('hi')", "runtimeUrl": "http://127.0.0.1:9", "claimedBy": 99,
            "requestedAt": 1_700_000_000_000}
    world.br_map["run1"] = {**base, "id": "run1", "status": "running"}
    world.br_map["wait1"] = {**base, "id": "wait1", "status": "ready", "outputBlockReady": True}
    # Sent to its runtime, not yet seen to start: it may have run, so it is not run again.
    world.br_map["sent1"] = {**base, "id": "sent1", "status": "ready", "outputBlockReady": True,
                             "dispatchedAt": 1_700_000_000_050}
    world.to_monitor()
    world.clock.t += 1.1
    world.tick()
    assert world.entry("run1")["status"] == "running"  # not yet: absent < orphan timeout
    world.clock.t += 5
    world.tick()
    world.clock.t += 1.1
    world.tick()
    lost = world.entry("run1")
    assert lost["status"] == "error" and lost["error"]["type"] == "MonitorLost"
    assert "partial\n[mrmd-monitor: the monitor running this cell (client 99) was lost" in world.text()
    took = world.entry("wait1")
    assert took["claimedBy"] == ME
    assert world.pool.names("submit") == ["wait1"]
    sent = world.entry("sent1")
    assert sent["status"] == "error" and sent["error"]["type"] == "MonitorLost"
    assert "the cell may have run" in sent["error"]["message"]


def test_max_run_time_error_of_the_worker_reaches_entry_and_block():
    # The worker enforces --max-run-time (counted from the POST) and ends the
    # run with this error; the coordinator never stops a run on its own clock.
    world = World(max_run_time=2.0)
    world.br_text += CELL
    world.to_monitor()
    world.start_run("e1")
    world.co.on_message(out("e1", "working\n"))
    world.clock.t += 2.1
    world.tick()
    assert ("cancel", "e1") not in world.pool.calls
    world.co.on_message(m.RunFinished("e1", error={
        "type": "MaxRunTime", "traceback": [],
        "message": "the run took longer than --max-run-time (2s) and was stopped"}))
    e = world.entry("e1")
    assert e["status"] == "error" and e["error"]["type"] == "MaxRunTime"
    assert "working\n[Error: the run took longer than --max-run-time (2s) and was stopped]\n```" \
        in world.text()


def test_large_output_split_into_small_updates():
    world = World(max_output_bytes=0)
    world.br_text += CELL
    world.to_monitor()
    world.start_run("e1")
    sizes = []
    sub = world.mon.observe(lambda ev: sizes.append(len(ev.update)))
    big = "".join("%07d\n" % i for i in range(100_000))  # 800 kB in one chunk
    world.co.on_message(out("e1", big))
    world.tick()
    assert max(sizes) < 300_000
    assert big in world.text()
    del sub


def test_output_cap_in_block():
    world = World(max_output_bytes=20_000)
    world.br_text += CELL
    world.to_monitor()
    world.start_run("e1")
    for i in range(200):
        world.co.on_message(out("e1", "".join("n%d\r\n" % (i * 100 + j)
                                                                  for j in range(100))))
        world.clock.t += 0.1
        world.tick()
    world.clock.t += 2
    world.tick()
    world.co.on_message(m.RunFinished("e1", result={"success": True}))
    text = world.text()
    start = text.index("```output:e1\n")
    block = text[start:text.index("```", start + 5) + 3]
    assert len(block.encode()) < 21_000
    assert "n0\nn1\n" in block and "n19999\n```" in block
    assert "lines (" in block and "left out here" in block


def test_finished_entries_removed_after_retention():
    world = World(retention=60.0)
    now = 1_700_000_000_123
    world.br_map["done-old"] = {"status": "completed", "completedAt": now - 61_000}
    world.br_map["done-new"] = {"status": "error", "completedAt": now - 10_000}
    world.br_map["running"] = {"status": "running", "claimedBy": 1, "completedAt": None}
    world.to_monitor()
    world.clock.t += 1.1
    world.tick()
    assert world.entry("done-old") is None
    assert world.entry("done-new")["status"] == "error"
    assert world.entry("running")["status"] == "running"


def test_two_runs_interleaved_with_remote_typing_above():
    world = World()
    world.br_text += "Top: \n\n```python\nprint('a')\n```\n\n```python\nprint('b')\n```\n"
    world.to_monitor()
    world.request("a", code="print('a')")
    world.request("b", code="print('b')", session="s2")   # two sessions: both run at once
    world.clock.t += 2
    world.tick()
    for e in ("a", "b"):
        world.co.on_message(m.RunStarted(e))
    for i in range(30):
        world.co.on_message(out("a", "a%d ✓\n" % i))
        world.co.on_message(out("b", "b%d 中\n" % i))
        world.clock.t += 0.06
        world.tick()
        if i % 7 == 0:
            world.to_browser()
            world.br_text.insert(len("Top: ".encode()) , "é")
            world.to_monitor()
    world.clock.t += 1
    world.tick()
    text = world.text()
    assert text.startswith("Top: " + "é" * 5 + "\n")
    assert ("```output:a\n" + "".join("a%d ✓\n" % i for i in range(30)) + "```") in text
    assert ("```output:b\n" + "".join("b%d 中\n" % i for i in range(30)) + "```\n") in text


def test_waits_for_an_earlier_cell_another_monitor_runs():
    world = World()
    world.br_text += CELL
    world.br_map["theirs"] = {"id": "theirs", "code": "a = 1", "runtimeUrl": "http://127.0.0.1:9/mrp/v1",
                              "session": "s", "status": "running", "claimedBy": 42,
                              "requestedAt": 1_700_000_000_000 - 5}
    world.to_monitor()
    world.request("mine")            # same runtime and session, requested later
    world.clock.t += 2
    world.tick()
    assert world.pool.names("submit") == []
    e = world.entry("mine")
    assert e["status"] == "ready" and e["queued"] is True and e["queuePosition"] == 1
    world.br_map["theirs"] = {**world.br_map["theirs"], "status": "completed"}
    world.to_monitor()
    assert world.pool.names("submit") == ["mine"]


# -- hostile entries ---------------------------------------------------------

from mrmd_monitor import protocol as proto  # noqa: E402


def deep(depth):
    v = 1
    for _ in range(depth):
        v = [v]
    return v


def test_measure_is_iterative_and_bounded():
    assert proto.measure({"a": deep(31)})[0] is None
    assert proto.measure({"a": deep(32)})[0] == "nested deeper than 32 levels"
    assert proto.measure(deep(100_000))[0] == "nested deeper than 32 levels"
    assert proto.measure({"code": "中" * 400_000})[0] == "larger than %d bytes" % proto.MAX_ENTRY_BYTES
    assert proto.measure({"code": "中" * 300_000})[0] is None
    with pytest.raises(proto.EntryRefused):
        proto.updated({"x": deep(5000)}, {"status": "error"})


def test_code_limit_counts_utf8_bytes(w):
    w.request("cjk", code="# " + "中" * 100_000)   # 100,002 characters, 300,002 bytes
    e = w.entry("cjk")
    assert e["status"] == "error" and "larger than 262144 bytes" in e["error"]["message"]
    assert e["code"].endswith("# ... (cut by mrmd-monitor)") and len(e["code"]) < 1100
    assert w.pool.calls == []


def test_deep_request_refused_never_walked(w):
    w.request("deep", x=deep(3000))
    e = w.entry("deep")
    assert e["status"] == "error" and e["error"]["type"] == "InvalidRequest"
    assert e["error"]["message"] == "the entry is nested deeper than 32 levels; not run"
    assert e["x"] is None and e["code"] == "print('hi')" and e["requestedBy"] == BROWSER
    assert w.pool.calls == [] and not w.co.runs
    w.request("ok")
    assert w.entry("ok")["status"] == "claimed"


def test_own_run_refused_when_a_peer_deepens_it(w):
    w.start_run("e1")
    w.browser_set("e1", result=deep(2000))
    e = w.entry("e1")
    assert e["status"] == "error" and "nested deeper" in e["error"]["message"]
    assert ("cancel", "e1") in w.pool.calls and not w.co.runs


def test_one_failing_entry_does_not_stop_the_others(w, monkeypatch):
    real = proto.parse_entry

    def parse(key, value):
        if key == "boom":
            raise RuntimeError("a bug met by one entry")
        return real(key, value)

    monkeypatch.setattr(proto, "parse_entry", parse)
    w.br_map["boom"] = {"status": "requested"}
    w.request("e1")
    assert w.entry("e1")["status"] == "claimed"


def test_a_browser_claim_is_no_lease():
    world = World(orphan_timeout=5.0)
    world.port.monitors = {ME, 42}    # 42 is a monitor; BROWSER is not
    world.br_text += CELL
    base = {"code": "a = 1", "runtimeUrl": "http://127.0.0.1:9/mrp/v1", "session": "s",
            "requestedAt": 1_700_000_000_000 - 5}
    world.br_map["fake"] = {**base, "id": "fake", "status": "running", "claimedBy": BROWSER}
    world.to_monitor()
    world.request("mine")
    world.clock.t += 2
    world.tick()
    assert world.pool.names("submit") == ["mine"]     # not behind the fake run
    world.br_map["real"] = {**base, "id": "real", "status": "running", "claimedBy": 42}
    world.request("mine2", requestedAt=1_700_000_000_001)
    world.clock.t += 2
    world.tick()
    assert world.pool.names("submit") == ["mine"]     # behind the monitor's run and ours
    assert world.entry("mine2")["queuePosition"] == 2


def test_displays_batched_into_one_entry_write():
    """The inline cap is the worker's (display.DisplayBudget, tested in
    test_display.py); here: a burst of displays is one entry write, not one each."""
    world = World()
    world.br_text += CELL
    world.to_monitor()
    world.start_run("e1")
    sizes = []
    sub = world.mon.observe(lambda ev: sizes.append(len(ev.update)))
    for i in range(20):   # twenty 20 KB displays in one burst
        item = {"mimeType": "text/html", "data": "<p>%d</p>" % i + "x" * 20_000, "assetId": None}
        world.co.on_message(m.DisplayItems("e1", (item,)))
    world.clock.t += 1
    world.tick()
    world.co.on_message(m.DisplayItems("e1", ({"mimeType": "text/plain", "data": "last",
                                               "assetId": None},)))
    world.co.on_message(m.RunFinished("e1", result={"success": True}))
    del sub
    e = world.entry("e1")
    assert e["status"] == "completed"
    shown = e["displayData"]
    assert len(shown) == 21
    assert [d["data"][:8] for d in shown[:2]] == ["<p>0</p>", "<p>1</p>"]
    assert shown[-1]["data"] == "last"
    assert len(sizes) <= 4     # the burst, the last item with the final status
    assert max(sizes) < 20 * 21_000 * 2   # the burst once, not twenty growing copies


def test_unasked_stdin_answer_cleared_and_never_republished(w):
    w.start_run("e1")
    w.browser_set("e1", stdinResponse={"text": "secret\n", "respondedAt": 5})
    assert w.entry("e1")["stdinResponse"] is None
    assert not [c for c in w.pool.calls if c[0] == "input"]
    w.co.on_message(out("e1", "more\n"))
    w.co.on_message(m.RunFinished("e1", result={"success": True}))
    e = w.entry("e1")
    assert e["status"] == "completed" and e["stdinResponse"] is None


def test_block_made_by_browser_and_monitor_at_once_ends_as_one(w):
    w.request("e1")
    w.to_browser()
    # The browser makes its block from a view without the monitor's ...
    at = len(CELL.encode()) - len("\n\nEnd.\n")
    stale = Doc(client_id=BROWSER + 1)
    stale.apply_update(w.br.get_update())
    stale.get("content", type=Text).insert(at, "\n\n```output:e1\n```")
    w.clock.t += 2
    w.tick()                       # ... while the monitor makes its own (headless)
    w.br.apply_update(stale.get_update(w.br.get_state()))
    w.to_monitor()
    w.co.on_message(m.RunStarted("e1"))
    w.co.on_message(out("e1", "hi\r\n"))
    w.tick()
    w.co.on_message(m.RunFinished("e1", result={"success": True}))
    text = w.text()
    assert text.count("```output:e1\n") == 1
    assert text == CELL.replace("```\n\nEnd", "```\n\n```output:e1\nhi\n```\n\nEnd")


def test_runtime_result_and_error_past_the_limits_are_cut(w):
    w.start_run("e1")
    w.co.on_message(m.RunFinished("e1", result={"success": True, "result": deep(500)}))
    e = w.entry("e1")
    assert e["status"] == "completed"
    assert e["result"] == {"success": True,
                           "omitted": "the runtime's result was nested deeper than 16 levels"}
    w.start_run("e2", code="x = 1")
    tb = ["  File \"<cell>\", line %d\n" % i for i in range(100_000)]
    w.co.on_message(m.RunFinished("e2", error={"type": "RecursionError", "message": "deep",
                                               "traceback": tb}))
    e = w.entry("e2")
    assert e["status"] == "error" and e["error"]["type"] == "RecursionError"
    assert 0 < len(e["error"]["traceback"]) <= 200
    assert e["error"]["traceback"][-1] == tb[-1]


def _random_value(rng, depth=0):
    kind = rng.randrange(9)
    if kind == 0:
        return deep(rng.choice([5, 31, 33, 200, 2000]))
    if kind == 1:
        return "".join(rng.choice("a\x00\x1b\n\r`\u202e中😀\ud7ff") for _ in range(rng.randrange(50)))
    if kind == 2:
        return rng.choice([None, True, False, 0, -1, 1.5, float("nan"), 2 ** 60, 1e308])
    if kind == 3 and depth < 4:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 4 and depth < 4:
        return {rng.choice(["status", "code", "x", "claimedBy", "stdinResponse", "中"]):
                _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    if kind == 5:
        return "x" * rng.choice([10, 300_000, 1_100_000])
    return rng.choice(["requested", "claimed", "ready", "running", "completed", "cancelled"])


def test_fuzzed_entries_never_escape_and_a_normal_run_follows(caplog):
    import random
    import time as _time
    rng = random.Random(20261129)
    world = World(orphan_timeout=1.0)
    world.port.monitors = {ME}
    world.br_text += CELL
    world.to_monitor()
    started = _time.monotonic()
    fields = ["status", "code", "runtimeUrl", "session", "claimedBy", "requestedAt",
              "stdinResponse", "displayData", "result", "x"]
    for i in range(300):
        entry = {"status": rng.choice(["requested", "running", "claimed", "ready", "bogus"])}
        for name in rng.sample(fields, rng.randrange(len(fields))):
            entry[name] = _random_value(rng)
        if rng.random() < 0.5:
            entry["runtimeUrl"] = "http://127.0.0.1:9/mrp/v1"
        world.br_map["f%d" % i] = entry if rng.random() < 0.9 else _random_value(rng)
        if i % 20 == 0:
            world.to_monitor()
            world.clock.t += 1.5
            world.tick()
    world.to_monitor()
    world.clock.t += 5
    world.tick()
    world.tick()
    assert _time.monotonic() - started < 60
    # Every entry was handled on purpose: none reached the last-resort catch.
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    refused = [k for k in world.mon_map.keys()
               if isinstance(world.mon_map[k], dict)
               and (world.mon_map[k].get("error") or {}).get("type") == "InvalidRequest"]
    assert len(refused) > 20
    for exec_id in list(world.co.runs):     # whatever got claimed ends
        world.co.on_message(m.RunStarted(exec_id))
        world.co.on_message(m.RunFinished(exec_id, result={"success": True}))
    world.request("normal")
    world.clock.t += 2
    world.tick()
    world.co.on_message(m.RunStarted("normal"))
    world.co.on_message(out("normal", "hi\r\n"))
    world.co.on_message(m.RunFinished("normal", result={"success": True}))
    assert world.entry("normal")["status"] == "completed"
    assert "```output:normal\nhi\n```" in world.text()


def test_claim_delay_is_one_hook_and_a_request_claimed_meanwhile_is_left(w):
    w.port.delay = 0.5     # as a backup monitor would
    w.request("e1")
    w.request("e2", code="x = 1")
    assert w.entry("e1")["status"] == "requested" and not w.co.runs
    assert w.tick() <= 0.5
    w.browser_set("e2", status="claimed", claimedBy=42)    # the preferred monitor took it
    w.clock.t += 0.5
    w.tick()
    w.tick()     # a backup claims on the server's view: after a probe
    assert list(w.co.runs) == ["e1"]
    assert w.entry("e1")["claimedBy"] == ME and w.entry("e2")["claimedBy"] == 42


def test_an_idle_document_sets_no_timer_and_a_change_wakes_the_sweep():
    """A thousand idle documents must not wake a thousand threads every second."""
    w = World()
    assert w.tick() is None                  # nothing held, nothing to retire: no timer
    w.br_map["x"] = {"id": "x", "status": "running", "claimedBy": 42}   # another's lease
    w.to_monitor()
    assert w.tick() is not None and w.tick() <= 1.0   # watched for orphans, every second


def test_past_the_cap_output_waits_in_the_worker_buffer_until_the_flush():
    """Past the cap the block moves once a second: the output gathers in the
    worker's buffer meanwhile (one message, not one per event) and the block
    ends up exact: head, notice, the latest lines in order."""
    world = World(max_output_bytes=20_000)
    world.br_text += CELL
    world.to_monitor()
    world.start_run("e1")
    buf = m.OutputBuffer()
    lines = ["n%d" % i for i in range(20_000)]
    posted = 0
    for i in range(0, len(lines), 100):
        if buf.put("".join(line + "\r\n" for line in lines[i:i + 100])):
            posted += 1
            world.co.on_message(m.OutputReady("e1", buf))
        world.clock.t += 0.01
        world.tick()
    assert posted < 60   # one message a flush past the cap, not one per event
    world.co.on_message(m.RunFinished("e1", result={"success": True}, output=buf))
    text = world.text()
    start = text.index("```output:e1\n") + len("```output:e1\n")
    block = text[start:text.index("\n```", start)].split("\n")
    notice = [k for k, line in enumerate(block) if line.startswith("[mrmd-monitor: output over")]
    assert len(notice) == 1
    head, tail = block[:notice[0]], block[notice[0] + 1:]
    assert head == lines[:len(head)] and tail == lines[-len(tail):]
    left = len(lines) - len(head) - len(tail)
    assert "; %d lines (" % left in block[notice[0]]


def test_a_run_is_sent_only_once_the_server_has_its_dispatch_mark(w):
    gate = w.dispatching("d1")
    assert w.entry("d1")["dispatchedAt"] == 1_700_000_000_123
    assert not gate.is_set()                   # written, not yet known to be at the server
    w.co.on_synced()                           # a reconnect: the probe is asked again
    assert not gate.is_set()
    w.port.acked = w.port.seq - 1              # an earlier probe's answer is not enough
    w.co.on_probe_acked(w.port.acked)
    assert not gate.is_set()
    w.co.on_probe_acked(w.port.seq)
    assert gate.is_set()


def test_a_sent_run_is_not_handed_back_at_stop():
    world = World()
    world.br_text += CELL
    world.to_monitor()
    world.request("sent1")
    world.clock.t += 2
    world.co.tick()
    world.co.on_message(m.Dispatching("sent1", threading.Event()))
    world.co.release_unstarted("stopping")
    assert world.entry("sent1")["status"] == "ready"    # it may be running: not handed back
    assert "sent1" in world.co.runs
