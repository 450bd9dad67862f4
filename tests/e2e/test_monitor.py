"""The monitor end to end: a real sync server (the npm y-websocket server and
mrmd-sync), real yjs browser peers (tests/js/peer.mjs), a real runtime
(mrmd-python 0.4.2 and the MRP 0.3.0 mrmd-python), and the monitor as its own
process. Each test asserts what a notebook author would see: the document's
text and the entry's final status. Each scenario runs on the stacks where it
matters (tests/support/stacks.py); servers and runtimes are shared by the
module, every test has a fresh document."""

import signal
import subprocess
import sys

import pytest

from mrmd_monitor.terminal import SGR
from tests.support import editor_parsers
from tests.support.notebook import (FINAL, block, block_content, cell, loop_code, run_cell,
                                    start_cell, uid)
from tests.support.stacks import EVERY, SERVERS, on_stacks
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def setup(stack, doc_name, peer_factory, monitor_factory):
    """Server, runtime, one monitor and one browser on a fresh document."""
    class Env:
        pass
    env = Env()
    env.stack = stack
    env.server, env.runtime, env.doc = stack.server, stack.runtime, doc_name
    env.monitor = monitor_factory(stack.server.url, doc_name)
    env.browser = peer_factory(stack.server.url, doc_name)
    env.peers = peer_factory
    env.monitors = monitor_factory
    env.out = stack.out
    return env


@pytest.fixture
def abandon(setup):
    setup.runtime = setup.stack.new_runtime()
    return setup


@on_stacks(EVERY)
def test_hello_world(setup):
    b = setup.browser
    b.set_text("# Hello\n\n" + cell("print('hello world')") + "\n\nThe end.\n")
    exec_id, entry = run_cell(b, "print('hello world')", setup.runtime.url)
    assert entry["status"] == "completed"
    assert entry["claimedBy"] is not None and entry["outputBlockReady"] is True
    assert isinstance(entry["completedAt"], int) and entry["startedAt"] <= entry["completedAt"]
    assert entry["result"]["success"] is True
    assert b.text() == ("# Hello\n\n" + cell("print('hello world')") + "\n\n"
                        + block(exec_id, setup.out("hello world\n")) + "\n\nThe end.\n")


@on_stacks(EVERY)
def test_five_thousand_lines_in_order(setup):
    b = setup.browser
    code = "for i in range(5000):\n    print('line', i)"
    b.set_text(cell(code) + "\n")
    exec_id, entry = run_cell(b, code, setup.runtime.url, timeout=60)
    assert entry["status"] == "completed"
    expected = "".join("line %d\n" % i for i in range(5000))
    assert b.text() == cell(code) + "\n\n" + block(exec_id, setup.out(expected)) + "\n"


@on_stacks(EVERY)
def test_progress_bar_collapses_to_one_line(setup):
    b = setup.browser
    code = ("import sys, time\nfor i in range(101):\n"
            "    sys.stdout.write('\\rprogress %3d%%' % i); sys.stdout.flush(); time.sleep(0.005)\n"
            "print()\nprint('done')")
    b.set_text(cell(code) + "\n")
    exec_id, entry = run_cell(b, code, setup.runtime.url)
    assert entry["status"] == "completed"
    assert b.text() == cell(code) + "\n\n" + block(exec_id, setup.out("progress 100%\ndone\n")) + "\n"


@on_stacks(EVERY)
def test_stdin_answered_by_browser(setup):
    b = setup.browser
    var = "name_" + uid()
    code = "%s = input('Your name: ')\nprint('Hi', %s)" % (var, var)
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, setup.runtime.url, prefix="exec")
    entry = b.wait_entry(exec_id, lambda e: e and e.get("stdinRequest"), timeout=30)
    assert entry["status"] == "running"
    assert entry["stdinRequest"]["prompt"] == "Your name: "
    assert entry["stdinRequest"]["password"] is False
    # The editor shows a temporary stdin block while it waits.
    assert "```stdin:%s" % exec_id in b.text()
    b.answer_stdin(exec_id, "Ada")
    entry = b.wait_entry(exec_id, FINAL, timeout=30)
    assert entry["status"] == "completed"
    assert entry["stdinRequest"] is None and entry["stdinResponse"] is None
    assert b.text() == cell(code) + "\n\n" + block(exec_id, setup.out("Your name: Ada\nHi Ada\n")) + "\n"
    assert "Ada" not in setup.monitor.log_text()  # answers never reach the log


@on_stacks(EVERY)
def test_error_with_traceback_in_block(setup):
    b = setup.browser
    code = "def f():\n    return 1 / 0\nf()"
    b.set_text(cell(code) + "\n")
    exec_id, entry = run_cell(b, code, setup.runtime.url)
    assert entry["status"] == "error"
    assert entry["error"]["type"] == "ZeroDivisionError"
    assert entry["error"]["message"] == "division by zero"
    assert any("return 1 / 0" in line for line in entry["error"]["traceback"])
    text = b.text()
    content = text[text.index("```output:%s\n" % exec_id):]
    plain = SGR.sub("", content)
    assert "ZeroDivisionError: division by zero\n" in plain
    assert "return 1 / 0" in plain
    assert "\x1b" not in plain   # colours kept as the editor keeps them, nothing else
    assert "\x1b[31mZeroDivisionError\x1b[0m" in content
    # The last line as the editor's own run writes it.
    assert text.endswith("\n[Error: division by zero]\n```\n")


@on_stacks(EVERY)
def test_cancel_printing_loop(abandon):
    setup = abandon
    b = setup.browser
    code = loop_code('tick', 200, 0.05)
    marker = "print('marker after cancel')"
    b.set_text(cell(code) + "\n\n" + cell(marker) + "\n")
    exec_id = start_cell(b, code, setup.runtime.url, prefix="exec")
    b.wait_text("tick 5\n", timeout=30)
    assert b.cancel(exec_id)
    setup.monitor.wait_for_line("%s was cancelled" % exec_id, timeout=10)
    # The monitor's updates reach us in the order it sent them: once the
    # output of a run it started after seeing the cancel is here, so is
    # everything it wrote for the cancelled run. On MRP 0.3.0 the marker waits for
    # the loop's end (about 10 s, as steady under CPU load): that runtime refuses to
    # interrupt the first run after its kernel starts (this fresh runtime's), and the
    # monitor reads the cancelled stream to its end so that the runtime is free again.
    run_cell(b, marker, setup.runtime.url)
    text = b.wait_text("marker after cancel\n")
    entry = b.entry(exec_id)
    assert entry["status"] == "cancelled"
    shown = content = block_content(text, exec_id)
    # A runtime that answers the interrupt with interrupted: false gets one last line saying so.
    refused = ("[mrmd-monitor: the runtime did not stop this cell (the runtime answered "
               "interrupted: false); its code may still be running]\n")
    if content.endswith(refused):
        content = content[:-len(refused)]
    n = content.count("\n")
    assert n >= 6
    assert content == "".join("tick %d\n" % i for i in range(n))  # kept, in order, whole lines
    # Nothing is written for the cancelled run afterwards, although the
    # runtime goes on printing (its interrupt is best effort, ../shared/NOTES.md; those
    # lines even reach the marker run's stream).
    with pytest.raises(AssertionError):
        wait_until(lambda: block_content(b.text(), exec_id) != shown, timeout=1.5)


@on_stacks(EVERY)
def test_three_cells_at_once_in_order(setup):
    b = setup.browser
    v = "v_" + uid()
    codes = ["%s = 1\nprint(%s)" % (v, v), "%s = %s + 1\nprint(%s)" % (v, v, v),
             "%s = %s * 10\nprint(%s)" % (v, v, v)]
    b.set_text("\n\n".join(cell(c) for c in codes) + "\n")
    ids = ["exec-%s-%d" % (uid(), i) for i in range(3)]
    for exec_id, code in zip(ids, codes):
        b.request(exec_id, code, setup.runtime.url)
    entries = [b.wait_entry(i, FINAL, timeout=30) for i in ids]
    assert [e["status"] for e in entries] == ["completed"] * 3
    assert entries[0]["startedAt"] <= entries[1]["startedAt"] <= entries[2]["startedAt"]
    assert entries[0]["completedAt"] <= entries[1]["startedAt"]
    assert entries[1]["completedAt"] <= entries[2]["startedAt"]
    expected = "\n\n".join(cell(c) + "\n\n" + block(i, setup.out(out))
                           for c, i, out in zip(codes, ids, ["1\n", "2\n", "20\n"])) + "\n"
    assert b.text() == expected


@on_stacks(SERVERS)
def test_headless_run_without_browser_block(stack, doc_name, peer_factory, monitor_factory):
    monitor_factory(stack.server.url, doc_name, extra_args=["--block-wait", "0.3"])
    b = peer_factory(stack.server.url, doc_name, auto_block=False)
    code = "print('nobody made my block')"
    b.set_text("Intro\n\n" + cell(code) + "\n\n```output:old-run\nstale output\n```\n\nOutro\n")
    exec_id = start_cell(b, code, stack.runtime.url, prefix="exec")
    entry = b.wait_entry(exec_id, FINAL, timeout=30)
    assert entry["status"] == "completed" and entry["outputBlockReady"] is True
    # The old output block of that cell is replaced, not stacked.
    assert b.text() == ("Intro\n\n" + cell(code) + "\n\n" + block(exec_id, "nobody made my block\n")
                        + "\n\nOutro\n")


@on_stacks(SERVERS)
def test_browser_leaves_mid_run_late_joiner_sees_all(setup):
    b = setup.browser
    code = loop_code('row', 40, 0.05)
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, setup.runtime.url, prefix="exec")
    b.wait_entry(exec_id, "running", timeout=30)
    b.wait_text("row 2\n", timeout=30)
    b.close()  # the author closes the browser
    # Nobody watches while the run goes on; the monitor keeps writing.
    setup.monitor.wait_for_line("%s completed" % exec_id, timeout=30)
    late = setup.peers(setup.server.url, setup.doc, name="late")
    assert late.entry(exec_id)["status"] == "completed"
    expected = "".join("row %d\n" % i for i in range(40))
    assert late.text() == cell(code) + "\n\n" + block(exec_id, setup.out(expected)) + "\n"


@on_stacks(EVERY)
def test_non_ascii_above_the_cell(setup):
    b = setup.browser
    code = "print('naïve ✓ 中文 😀')"
    head = "# Über ✓ 😀 é 中\n\nEmoji 👩‍👩‍👧 and 中文 text, é à ü.\n\n"
    b.set_text(head + cell(code) + "\n\nAfter ✓\n")
    exec_id, entry = run_cell(b, code, setup.runtime.url)
    assert entry["status"] == "completed"
    assert b.text() == head + cell(code) + "\n\n" + block(exec_id, setup.out("naïve ✓ 中文 😀\n")) + "\n\nAfter ✓\n"


@on_stacks(SERVERS)
def test_typing_above_while_output_streams(setup):
    b = setup.browser
    code = loop_code('out', 60, 0.02)
    b.set_text("Paragraph: \n\n" + cell(code) + "\n")
    exec_id = start_cell(b, code, setup.runtime.url, prefix="exec")
    b.wait_text("out 1\n", timeout=30)
    typed = "typed while streaming ✓ é 😀"
    b.type_after("Paragraph: ", typed, delay_ms=15)
    entry = b.wait_entry(exec_id, FINAL, timeout=30)
    assert entry["status"] == "completed"
    expected = "".join("out %d\n" % i for i in range(60))
    assert b.text() == ("Paragraph: " + typed + "\n\n" + cell(code) + "\n\n"
                        + block(exec_id, setup.out(expected)) + "\n")


@on_stacks(EVERY)
def test_output_with_backtick_fences(setup):
    """Runs of backticks anywhere in a line, fence lines, tildes: the block
    stays whole for the editor's own parsers, and so does the next cell."""
    b = setup.browser
    code = ("print('```')\nprint('```python')\nprint('x')\nprint('~~~')\n"
            "print('a ``` b ````` c')")
    b.set_text(cell(code) + "\n\nText after.\n\n" + cell("print('next')") + "\n")
    exec_id, entry = run_cell(b, code, setup.runtime.url)
    assert entry["status"] == "completed"
    zw = "\u200b"
    content = setup.out(zw + "```\n" + zw + "```python\nx\n" + zw + "~~~\na ``` b ````` c\n")
    fence = "`" * 6   # longer than the five backticks in a row of the last line
    assert b.text() == (cell(code) + "\n\n"
                        + "%soutput:%s\n%s%s" % (fence, exec_id, content, fence)
                        + "\n\nText after.\n\n" + cell("print('next')") + "\n")
    text = b.text()
    assert editor_parsers.find_output_block_by_exec_id(text, exec_id)["content"] == content
    cells = editor_parsers.find_code_blocks(text)
    assert [c["language"] for c in cells] == ["python", "output:" + exec_id, "python"]
    assert cells[2]["code"] == "print('next')\n"


@on_stacks(SERVERS)
def test_rerun_replaces_block(setup):
    b = setup.browser
    v = "r_" + uid()
    code = "%s = globals().get(%r, 0) + 1\nprint('run', %s)" % (v, v, v)
    b.set_text(cell(code) + "\n")
    first, _ = run_cell(b, code, setup.runtime.url)
    second, entry = run_cell(b, code, setup.runtime.url)
    assert entry["status"] == "completed"
    assert b.text() == cell(code) + "\n\n" + block(second, "run 2\n") + "\n"


@on_stacks(SERVERS)
def test_awareness_announces_monitor(setup):
    """In the shape the editor reads (its isMonitorAvailable()), as M0 sends it."""
    states = wait_until(lambda: [s for _, s in setup.browser.monitors()], timeout=10)
    assert states[0]["user"] == {"name": "mrmd-monitor", "color": "#10b981", "type": "monitor"}


@on_stacks(SERVERS)
def test_a_monitor_does_not_answer_its_own_echo(stack, doc_name, peer_factory, monitor_factory):
    """The server relays our awareness state back re-encoded (a non-ASCII name
    unescaped): other bytes, our clock. Taken for a peer speaking for us, it
    was answered, echoed and answered again, thousands of times a second."""
    browser = peer_factory(stack.server.url, doc_name, name="browser")
    monitor_factory(stack.server.url, doc_name, extra_args=["--name", "mönitor 中"])
    (monitor, state), = wait_until(lambda: browser.monitors(), timeout=10)
    assert state["user"]["name"] == "mönitor 中"
    first = browser.awareness_clock(monitor)
    code = "print('echo')"
    browser.set_text(cell(code) + "\n")
    _, entry = run_cell(browser, code, stack.runtime.url)
    assert entry["status"] == "completed"
    assert browser.awareness_clock(monitor) - first < 10


@on_stacks(("npm+py042",))
def test_a_monitor_alone_falls_silent_and_a_browser_arriving_later_sees_it(
        stack, doc_name, peer_factory, monitor_factory):
    """Alone with nothing to run (a watcher without a state of its own does not
    count), the monitor stops renewing and the server drops its state after
    30 s; a browser that arrives then sees the monitor as it connects."""
    def monitors(peer):
        return [s for _, s in peer.monitors()]

    watcher = peer_factory(stack.server.url, doc_name, name="watcher")
    watcher.set_awareness(None)
    monitor_factory(stack.server.url, doc_name)
    wait_until(lambda: monitors(watcher), timeout=10, message="the monitor never announced itself")
    wait_until(lambda: not monitors(watcher), timeout=45,
               message="the monitor kept renewing while alone")
    browser = peer_factory(stack.server.url, doc_name, name="browser")
    wait_until(lambda: monitors(browser), timeout=5, message="the late browser does not see the monitor")
    code = "print('after the silence')"
    browser.set_text(cell(code) + "\n")
    _, entry = run_cell(browser, code, stack.runtime.url)
    assert entry["status"] == "completed"


@on_stacks(SERVERS)
def test_sigterm_leaves_nothing_running(stack, doc_name, peer_factory, monitor_factory):
    own_runtime = stack.new_runtime()
    monitor = monitor_factory(stack.server.url, doc_name, extra_args=["--grace", "0.5"])
    b = peer_factory(stack.server.url, doc_name)
    code = loop_code('beat', 200, 0.05)
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, own_runtime.url, prefix="exec")
    b.wait_text("beat 3\n", timeout=30)
    monitor.send_signal(signal.SIGTERM)
    assert monitor.wait(timeout=30) == 0
    entry = b.wait_entry(exec_id, FINAL, timeout=10)
    assert entry["status"] == "error"
    assert "stopped" in entry["error"]["message"]
    text = b.text()
    assert "beat 3\n" in text
    assert "[mrmd-monitor: the monitor was stopped before the run finished; the output above is kept]\n```" in text
    assert "monitor stopped" in monitor.log_text()


def test_cli_version_and_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "mrmd_monitor", "--version"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip().startswith("mrmd-monitor ")
    out = subprocess.run([sys.executable, "-m", "mrmd_monitor"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "sync" in out.stderr.lower()


@on_stacks(EVERY)
def test_cancel_queued_entry_leaves_the_queue(abandon):
    setup = abandon
    b = setup.browser
    v = "q_" + uid()
    loop = loop_code('busy', 30, 0.1)
    queued = "%s = 1\nprint('must not run', %s)" % (v, v)
    after = "print('after', globals().get(%r))" % v
    b.set_text(cell(loop) + "\n\n" + cell(queued) + "\n\n" + cell(after) + "\n")
    first, second, third = ("exec-%s-%d" % (uid(), i) for i in range(3))
    b.request(first, loop, setup.runtime.url)
    b.wait_text("busy 1\n", timeout=30)
    b.request(second, queued, setup.runtime.url)
    entry = b.wait_entry(second, lambda e: e and e.get("queued"), timeout=10)
    assert entry["status"] == "ready" and entry["queuePosition"] == 1
    assert b.cancel(second)
    b.request(third, after, setup.runtime.url)
    assert b.wait_entry(first, FINAL, timeout=30)["status"] == "completed"
    assert b.wait_entry(third, FINAL, timeout=30)["status"] == "completed"
    assert b.entry(second)["status"] == "cancelled"
    text = b.text()
    assert block_content(text, second) == ""
    assert block_content(text, third) == setup.out("after None\n")   # the cancelled cell never ran
