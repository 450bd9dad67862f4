"""No websocket message the monitor sends exceeds --max-message-bytes.

The real mrmd-sync (vendored in ../shared/vendor/mrmd-sync) closes any message
over its maxMessageSize (1 MiB). A run that writes 1.5 MB while the server is
down must reach it afterwards, cut into several updates, and a browser joining
later must see every line. The npm y-websocket server is checked too.
"""

import json
import os
import re
import signal
from pathlib import Path

import pytest

from tests.support.fault_runtime import GATED_LINE as LINE
from tests.support.notebook import FINAL, block, cell, start_cell
from tests.support.ports import free_port, port_open
from tests.support.procs import (JS_DIR, MRMD_SYNC_DIR, ManagedProcess, node_executable,
                                 require_stack)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e



# -- servers that can come back empty -----------------------------------------------

@pytest.fixture(scope="module")
def mrmd_sync_dir():
    """The copy of mrmd-sync that tests/setup.sh installed."""
    require_stack(MRMD_SYNC_DIR / "node_modules" / "yjs", "mrmd-sync")
    return MRMD_SYNC_DIR


class MrmdSync(ManagedProcess):
    """``node bin/cli.js --port P --no-persist DIR``; each start gets a fresh DIR,
    so a restart is a server that has lost every document."""

    name = "mrmd-sync"
    ready_timeout = 30.0

    def __init__(self, install_dir, data_root, log_path=None):
        self.port = free_port()
        self.install_dir = Path(install_dir)
        self.data_root = Path(data_root)
        self._generation = 0
        self.data_root.mkdir(parents=True, exist_ok=True)
        argv = self._argv()
        super().__init__(argv, cwd=install_dir, env=self._env, log_path=log_path)

    def _argv(self):
        # mrmd-sync keeps its pid lock under $TMPDIR: keep it in the test's directory.
        self._env = dict(os.environ, TMPDIR=str(self.data_root))
        self._generation += 1
        data = self.data_root / ("data-%d" % self._generation)
        data.mkdir(parents=True, exist_ok=True)
        return [node_executable(), str(self.install_dir / "bin" / "cli.js"), "--port", str(self.port),
                "--no-persist", str(data)]

    @property
    def url(self):
        return "ws://127.0.0.1:%d" % self.port

    def is_ready(self):
        return port_open(self.port)

    def restart_empty(self):
        self.stop()
        wait_until(lambda: not port_open(self.port), timeout=10)
        self.argv = self._argv()
        self.env = self._env
        return self.start()


class YWebsocketServer(MrmdSync):
    """The npm y-websocket server (no message limit of its own)."""

    name = "y-websocket-server"

    def _argv(self):
        self._env = dict(os.environ, HOST="127.0.0.1", PORT=str(self.port))
        self._env.pop("YPERSISTENCE", None)
        return [node_executable(), str(JS_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js")]

    def restart_empty(self):
        self.stop()
        wait_until(lambda: not port_open(self.port), timeout=10)
        return self.start()


@pytest.fixture(params=["mrmd-sync", "y-websocket"])
def server(request, tmp_path):
    if request.param == "mrmd-sync":
        proc = MrmdSync(request.getfixturevalue("mrmd_sync_dir"), tmp_path / "sync-data",
                        log_path=tmp_path / "logs" / "mrmd-sync.log")
    else:
        proc = YWebsocketServer(JS_DIR, tmp_path, log_path=tmp_path / "logs" / "y-websocket.log")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


# -- a runtime that prints a lot when the test says so ------------------------------

# -- the test ---------------------------------------------------------------------------

def test_large_output_written_during_an_outage_reaches_a_late_browser(server, doc_name, peer_factory,
                                                                       monitor_factory, faults):
    lines = 15_000     # 1.5 MB of output, under the default --max-output-bytes (2 MiB)
    monitor = monitor_factory(server.url, doc_name, extra_args=["--reconnect-max", "1"])
    browser = peer_factory(server.url, doc_name, name="browser")
    code = json.dumps({"fault": "gated", "lines": lines})
    browser.set_text("# Ünïcode títle 😀\n\n" + cell(code) + "\n")
    exec_id = start_cell(browser, code, faults.url, prefix="big")
    browser.wait_entry(exec_id, "running", timeout=30)
    browser.close()
    server.stop()
    faults.release.set()                      # the output is written while the server is down
    monitor.wait_for_line("%s completed" % exec_id, timeout=60)
    server.restart_empty()                     # it lost everything: the monitor has it all
    late = peer_factory(server.url, doc_name, name="late", sync_timeout=60)
    expected = ("# Ünïcode títle 😀\n\n" + cell(code) + "\n\n"
                + block(exec_id, "".join(LINE % i for i in range(lines))) + "\n")
    wait_until(lambda: late.text() == expected, timeout=60,
               message="the late browser does not see the whole output")
    assert late.wait_entry(exec_id, FINAL, timeout=10)["status"] == "completed"
    assert monitor.alive
    log = monitor.log_text()
    assert "lost connection" in log
    assert re.search(r"update of \d+ bytes sent as \d+ messages", log), "the resync was not cut"


def test_a_stop_during_an_outage_reconnects_and_flushes_within_grace(server, doc_name, peer_factory,
                                                                     monitor_factory, faults):
    """TERM while the server is down: the monitor keeps trying within --grace and
    leaves only once the server has what was written during the outage."""
    lines = 300
    monitor = monitor_factory(server.url, doc_name, extra_args=["--reconnect-max", "1",
                                                                "--grace", "20"])
    browser = peer_factory(server.url, doc_name, name="browser")
    code = json.dumps({"fault": "gated", "lines": lines})
    browser.set_text(cell(code) + "\n")
    exec_id = start_cell(browser, code, faults.url, prefix="flush")
    browser.wait_entry(exec_id, "running", timeout=30)
    browser.close()
    server.stop()
    faults.release.set()
    monitor.wait_for_line("%s completed" % exec_id, timeout=60)
    monitor.send_signal(signal.SIGTERM)
    monitor.wait_for_line("stopping (SIGTERM)", timeout=10)

    def attempts_since_the_stop():
        lines = monitor.lines("stderr")
        start = next(i for i, line in enumerate(lines) if "stopping (SIGTERM)" in line)
        return sum("cannot connect" in line for line in lines[start:])

    wait_until(lambda: attempts_since_the_stop() >= 2, timeout=20,
               message="the stopping monitor does not try to reconnect")
    assert monitor.alive
    server.restart_empty()
    wait_until(lambda: not monitor.alive, timeout=30, message="the monitor did not finish")
    assert monitor.proc.returncode == 0
    assert "the last changes could not be sent" not in monitor.log_text()
    late = peer_factory(server.url, doc_name, name="late")
    expected = cell(code) + "\n\n" + block(exec_id, "".join(LINE % i for i in range(lines))) + "\n"
    wait_until(lambda: late.text() == expected, timeout=30,
               message="the output written during the outage was lost at the stop")
    assert late.entry(exec_id)["status"] == "completed"
