"""The monitor under the launchers mrmd users run: ``mrmd`` 0.10.1 and
``mrmd-orchestrator`` 0.2.0 from PyPI (tests/setup.sh installs them in
tests/.work/mrmd and tests/.work/mrmd-orchestrator), each with a throwaway
HOME and every other service it would start turned off or pointed at ours.

How they run a monitor (their ``orchestrator.py`` and ``processes.py``):
``mrmd`` runs ``~/.mrmd/node_modules/.bin/mrmd-monitor --doc DOC ws://localhost:S``,
mrmd-orchestrator ``node <packages>/mrmd-monitor/bin/cli.js --doc DOC URL``
(our contrib/bin/cli.js there); both read its stdout with stderr merged until
a line holds ``Monitor ready`` (30 s, 10 s), and stop it with TERM, then KILL
after 5 s. A user asks for a monitor with ``POST /api/monitors {"doc"}`` and
ends it with ``DELETE /api/monitors/<doc>``: both calls return when the
launcher is done waiting.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support.notebook import FINAL, block, cell, loop_code, run_cell, start_cell
from tests.support.ports import free_port
from tests.support.procs import (MRMD_SYNC_DIR, REPO_ROOT, STACK_DIR, ManagedProcess,
                                 MissingStack, node_executable, require_stack)
from tests.support.reports import test_failed

pytestmark = pytest.mark.e2e

MRMD = STACK_DIR / "mrmd" / "bin" / "mrmd"
ORCHESTRATOR = STACK_DIR / "mrmd-orchestrator" / "bin" / "mrmd-orchestrator"
SHIM = REPO_ROOT / "contrib" / "bin" / "cli.js"

#: POST /api/monitors must come back in this long (it took 30.0 s while the
#: launcher never saw its line).
START_WITHIN = 2.0
#: The launchers' TERM-to-KILL delay: a DELETE that takes longer killed us.
KILLED_AFTER = 5.0
LOOP = loop_code("tick", 600, 0.1)
DOC = "notebook"


class Launcher(ManagedProcess):
    """A launcher with its HTTP API on ``api_port``; ready when /api/status answers."""

    ready_timeout = 90.0

    def __init__(self, argv, *, api_port, sync_port, **kwargs):
        self.api_port, self.sync_port = api_port, sync_port
        super().__init__(argv, **kwargs)

    @property
    def sync_url(self):
        return "ws://127.0.0.1:%d" % self.sync_port

    def is_ready(self):
        try:
            return self.call("GET", "/api/status", timeout=2)[0] == 200
        except OSError:
            return False

    def call(self, method, path, body=None, timeout=40.0):
        """``(status, JSON answer, seconds taken)``."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request("http://127.0.0.1:%d%s" % (self.api_port, path),
                                         data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, json.loads(raw or b"null"), time.monotonic() - started


def script(path, command):
    """An executable sh script at ``path`` that execs ``command`` with its arguments."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexec %s \"$@\"\n" % " ".join(shlex.quote(str(c)) for c in command))
    path.chmod(0o755)
    return path


def launcher_env(tmp_path, **extra):
    """A throwaway HOME; mrmd-sync's lock and snapshots (under TMPDIR) inside the test's tree;
    this checkout's package first for ``python -m mrmd_monitor``."""
    home, state = tmp_path / "home", tmp_path / "sync-state"
    home.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MRMD_MONITOR_", "MRMD_PACKAGES", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), TMPDIR=str(state), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT)] + (
                   [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    env.update(extra)
    return env


@pytest.fixture
def launchers(request, tmp_path):
    """``launchers(argv, api_port=, sync_port=, cwd=, env=) -> Launcher`` (started);
    stopped in teardown, with their logs printed when the test failed."""
    try:
        require_stack(MRMD, "mrmd 0.10.1")
        require_stack(ORCHESTRATOR, "mrmd-orchestrator 0.2.0")
        require_stack(MRMD_SYNC_DIR / "node_modules" / "yjs", "mrmd-sync")
    except MissingStack as exc:
        pytest.fail(str(exc), pytrace=False)
    started = []

    def make(argv, **kwargs):
        launcher = Launcher(argv, name="launcher-%d" % (len(started) + 1),
                            log_path=tmp_path / "logs" / ("launcher-%d.log" % (len(started) + 1)),
                            **kwargs)
        started.append(launcher)
        return launcher.start()

    try:
        yield make
    finally:
        for launcher in started:
            launcher.stop(timeout=15.0)
        if test_failed(request.node):
            for launcher in started:
                print("\n===== %s log =====\n%s" % (launcher.name, launcher.log_text()))


def start_and_stop(launcher, browser, runtime_url):
    """What a user does: a monitor asked for, a cell run, the monitor ended
    while a run goes on. Returns (start seconds, stop seconds)."""
    status, answer, start_took = launcher.call("POST", "/api/monitors", {"doc": DOC})
    print("%s: POST /api/monitors took %.2fs" % (launcher.name, start_took))
    assert status == 200 and answer["running"] is True, answer
    assert start_took < START_WITHIN
    assert "did not show 'Monitor ready'" not in launcher.log_text()

    code = "print('hello from the launcher')"
    browser.set_text(cell(code) + "\n")
    exec_id, entry = run_cell(browser, code, runtime_url)
    assert entry["status"] == "completed", entry
    assert block(exec_id, "hello from the launcher\n") in browser.text()

    exec_id = start_cell(browser, LOOP, runtime_url, add_cell=True)
    browser.wait_text("tick 3\n", timeout=30)
    assert browser.entry(exec_id)["status"] == "running"
    status, answer, stop_took = launcher.call("DELETE", "/api/monitors/" + DOC)
    print("%s: DELETE /api/monitors/%s mid-run took %.2fs" % (launcher.name, DOC, stop_took))
    assert status == 200 and answer["running"] is False, answer
    entry = browser.wait_entry(exec_id, FINAL, timeout=2)
    assert entry["status"] == "error" and "stopped" in entry["error"]["message"], entry
    assert not [e for e in browser.entries().values() if e.get("status") == "running"]
    assert stop_took < KILLED_AFTER                  # stopped by itself, not killed
    assert "did not stop gracefully, killing" not in launcher.log_text()
    return start_took, stop_took


def test_mrmd_starts_runs_and_stops_our_monitor(tmp_path, launchers, own_runtime, peer_factory):
    env = launcher_env(tmp_path)
    bin_dir = tmp_path / "home" / ".mrmd" / "node_modules" / ".bin"
    script(bin_dir / "mrmd-monitor", [sys.executable, "-m", "mrmd_monitor"])
    script(bin_dir / "mrmd-sync", [node_executable(), MRMD_SYNC_DIR / "bin" / "cli.js"])
    project = tmp_path / "project"
    (project / ".mrmd").mkdir(parents=True)   # a project marker: no scratch project in HOME
    api_port, sync_port = free_port(), free_port()
    launcher = launchers(
        [MRMD, "--no-venv-setup", "--no-cleanup", "--no-ai", "--no-editor", "--no-browser",
         "--verbose", "--port", api_port, "--sync-port", sync_port,
         "--runtime-url", own_runtime.url, project],
        api_port=api_port, sync_port=sync_port, cwd=project, env=env)
    browser = peer_factory(launcher.sync_url, DOC)
    start_and_stop(launcher, browser, own_runtime.url)
    # mrmd --verbose shows each line of the monitor: ours was the one it waited for.
    assert "[monitor:%s] Monitor ready" % DOC in launcher.log_text()


def orchestrator_packages(tmp_path):
    """The layout mrmd-orchestrator expects: <packages>/mrmd-sync (the vendored
    copy) and <packages>/mrmd-monitor/bin/cli.js (our shim, copied as a user would)."""
    packages = tmp_path / "packages"
    (packages / "mrmd-monitor" / "bin").mkdir(parents=True)
    os.symlink(MRMD_SYNC_DIR, packages / "mrmd-sync")
    shutil.copy2(SHIM, packages / "mrmd-monitor" / "bin" / "cli.js")
    return packages


def test_mrmd_orchestrator_runs_our_monitor_through_the_shim(tmp_path, launchers, own_runtime,
                                                             peer_factory):
    packages = orchestrator_packages(tmp_path)
    env = launcher_env(tmp_path, MRMD_MONITOR_PYTHON=sys.executable)
    api_port, sync_port = free_port(), free_port()
    launcher = launchers(
        [ORCHESTRATOR, "--packages", packages, "--docs", tmp_path / "docs", "--no-ai",
         "--no-editor", "--port", api_port, "--sync-port", sync_port,
         "--runtime-url", own_runtime.url],
        api_port=api_port, sync_port=sync_port, cwd=tmp_path, env=env)
    browser = peer_factory(launcher.sync_url, DOC)
    start_and_stop(launcher, browser, own_runtime.url)
    assert "[monitor:%s] Monitor ready" % DOC in launcher.log_text()


# -- the shim alone ---------------------------------------------------------------


@pytest.fixture
def run_shim(tmp_path):
    """``run_shim(*args, **env) -> CompletedProcess``: the shim in the orchestrator's layout."""
    shim = orchestrator_packages(tmp_path) / "mrmd-monitor" / "bin" / "cli.js"

    def run(*args, **env):
        return subprocess.run([node_executable(), shim, *args], capture_output=True, text=True,
                              timeout=60, env=launcher_env(tmp_path, **env))
    return run


def test_shim_passes_arguments_and_exit_status(run_shim):
    done = run_shim("--version", MRMD_MONITOR_PYTHON=sys.executable)
    assert (done.returncode, done.stdout.split()[0]) == (0, "mrmd-monitor"), done
    done = run_shim("--no-such-option", MRMD_MONITOR_PYTHON=sys.executable)
    assert done.returncode == 2 and "unrecognized arguments: --no-such-option" in done.stderr


def test_shim_without_a_monitor_to_run_says_so(run_shim):
    done = run_shim("--version", PATH=os.path.dirname(node_executable()))
    assert done.returncode == 127
    assert "set MRMD_MONITOR_PYTHON" in done.stderr
