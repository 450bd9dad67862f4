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
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

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

LINE = "%06d " + "z" * 92 + "\n"      # 100 bytes a line


class GatedRuntime:
    """An MRP runtime that opens the stream, then waits for ``release`` and
    prints ``lines`` lines in 4 KB events (no ``accumulated``)."""

    def __init__(self, lines):
        self.release = threading.Event()
        self.stop_event = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = json.dumps({"runtime": "gated", "languages": ["python"],
                                   "features": {"executeStream": True}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/execute/stream"):
                    data = b'{"interrupted": true}'
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self._event("start", {"execId": body.get("execId")})
                    while not outer.release.wait(0.1):
                        if outer.stop_event.is_set():
                            return
                    chunk = []
                    for i in range(lines):
                        chunk.append(LINE % i)
                        if len(chunk) == 40:
                            self._event("stdout", {"content": "".join(chunk)})
                            chunk = []
                    if chunk:
                        self._event("stdout", {"content": "".join(chunk)})
                    result = {"success": True, "stdout": "", "stderr": "", "result": None,
                              "error": None, "displayData": [], "assets": [],
                              "executionCount": 1, "duration": 1}
                    self._event("result", result)
                    self._event("done", {})
                except OSError:
                    pass

            def _event(self, kind, data):
                self.wfile.write(("event: %s\ndata: %s\n\n" % (kind, json.dumps(data))).encode())
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/mrp/v1" % self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="gated-runtime",
                                        daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


# -- the test ---------------------------------------------------------------------------

def test_large_output_written_during_an_outage_reaches_a_late_browser(server, doc_name, peer_factory,
                                                                       monitor_factory):
    lines = 15_000     # 1.5 MB of output, under the default --max-output-bytes (2 MiB)
    runtime = GatedRuntime(lines).start()
    try:
        monitor = monitor_factory(server.url, doc_name, extra_args=["--reconnect-max", "1"])
        browser = peer_factory(server.url, doc_name, name="browser")
        code = "print_a_lot()"
        browser.set_text("# Ünïcode títle 😀\n\n" + cell(code) + "\n")
        exec_id = start_cell(browser, code, runtime.url, prefix="big")
        browser.wait_entry(exec_id, "running", timeout=30)
        browser.close()
        server.stop()
        runtime.release.set()                      # the output is written while the server is down
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
    finally:
        runtime.stop()


def test_a_stop_during_an_outage_reconnects_and_flushes_within_grace(server, doc_name, peer_factory,
                                                                     monitor_factory):
    """TERM while the server is down: the monitor keeps trying within --grace and
    leaves only once the server has what was written during the outage."""
    lines = 300
    runtime = GatedRuntime(lines).start()
    try:
        monitor = monitor_factory(server.url, doc_name, extra_args=["--reconnect-max", "1",
                                                                    "--grace", "20"])
        browser = peer_factory(server.url, doc_name, name="browser")
        code = "print_some()"
        browser.set_text(cell(code) + "\n")
        exec_id = start_cell(browser, code, runtime.url, prefix="flush")
        browser.wait_entry(exec_id, "running", timeout=30)
        browser.close()
        server.stop()
        runtime.release.set()
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
    finally:
        runtime.stop()
