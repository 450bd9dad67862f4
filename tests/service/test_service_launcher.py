"""The monitor as the mrmd launchers run it: ``mrmd-monitor --doc DOC URL``,
nothing else. They wait for the text ``Monitor ready`` on its stdout (stderr
merged), stop it with TERM and kill it 5 s later (mrmd 0.10.1 and
mrmd-orchestrator 0.2.0, ``processes.py``). The launchers themselves run in
tests/e2e/test_launcher.py."""

import signal
import time

import pytest

from tests.service.helpers import READY
from tests.support.notebook import FINAL, cell, loop_code, uid

pytestmark = pytest.mark.e2e

#: SIGTERM to SIGKILL under the launchers.
LAUNCHER_KILL_AFTER = 5.0
LAUNCHER_READY_LINE = "Monitor ready"


def test_ready_line_on_stdout_even_at_log_level_error(sync_server, doc_name, configured_monitor):
    started = time.monotonic()
    monitor = configured_monitor("--log-level", "error", "--doc", doc_name, sync_server.url,
                                 wait_ready=False)
    line = monitor.wait_for_line(LAUNCHER_READY_LINE, timeout=15, stream="stdout")
    print("spawn to %r: %.2fs" % (LAUNCHER_READY_LINE, time.monotonic() - started))
    assert line == LAUNCHER_READY_LINE
    assert not any(READY in l for l in monitor.lines("stderr"))   # the log is at error
    assert monitor.lines("stdout") == [LAUNCHER_READY_LINE]       # once, and nothing else


def test_ready_line_with_the_log_in_a_file(tmp_path, sync_server, doc_name, configured_monitor):
    """The log can go elsewhere: the launcher's line stays on stdout."""
    log_file = tmp_path / "monitor.log"
    monitor = configured_monitor("--log-file", log_file, "--doc", doc_name, sync_server.url,
                                 wait_ready=False)
    monitor.wait_for_line(LAUNCHER_READY_LINE, timeout=15, stream="stdout")
    assert READY in log_file.read_text()


def test_project_root_is_accepted(tmp_path, sync_server, doc_name, configured_monitor):
    """The Node CLI takes --project-root; ours exited with status 2 on it."""
    monitor = configured_monitor("--project-root", tmp_path, "--doc", doc_name, sync_server.url,
                                 wait_ready=False)
    monitor.wait_for_line(LAUNCHER_READY_LINE, timeout=15, stream="stdout")
    assert monitor.alive


def test_term_mid_run_ends_before_the_launcher_kills(sync_server, own_runtime, doc_name,
                                                     peer_factory, configured_monitor):
    """With the default grace, a run that would go on for a minute is marked
    final (error, its output kept) and the process is gone before the
    launcher's SIGKILL: the entry is never left ``running``."""
    monitor = configured_monitor("--doc", doc_name, sync_server.url, wait_ready=False)
    monitor.wait_for_line(LAUNCHER_READY_LINE, timeout=15, stream="stdout")
    browser = peer_factory(sync_server.url, doc_name)
    code = loop_code("tick", 600, 0.1)
    exec_id = "exec-" + uid()
    browser.set_text(cell(code) + "\n")
    browser.request(exec_id, code, own_runtime.url)
    browser.wait_text("tick 3\n", timeout=30)
    assert browser.entry(exec_id)["status"] == "running"

    sent = time.monotonic()
    monitor.send_signal(signal.SIGTERM)
    assert monitor.wait(timeout=LAUNCHER_KILL_AFTER) == 0
    gone = time.monotonic() - sent
    entry = browser.wait_entry(exec_id, FINAL, timeout=max(0.1, LAUNCHER_KILL_AFTER - gone))
    seen = time.monotonic() - sent
    print("TERM mid-run: process gone after %.2fs, final entry seen by the peer after %.2fs"
          % (gone, seen))
    assert seen < LAUNCHER_KILL_AFTER
    assert entry["status"] == "error", entry
    assert "stopped" in entry["error"]["message"]
    text = browser.text()
    assert "tick 3\n" in text and "[mrmd-monitor: the monitor was stopped" in text
