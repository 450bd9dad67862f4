"""The shipped supervisord program section under a real supervisord (from PyPI).

supervisord gets a config of this test's own (socket, logs, pid file under a
temporary directory) that includes a copy of contrib/supervisord.conf whose
paths point at this checkout and the temporary directory (see helpers.adapt).
"""

import subprocess
import sys
import time

import pytest

from tests.service.conftest import print_files_if_failed
from tests.service.helpers import (CONTRIB, READY, SHIPPED_COMMAND, SHIPPED_CONFIG, adapt,
                                   clean_env, kill_if_alive,
                                   pid_alive, read, run_cell,
                                   wait_for_log, write_ini)
from tests.support.notebook import cell, loop_code, uid
from tests.support.procs import ManagedProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

GRACE = 3.0
PROGRAM = "mrmd-monitor"
FINAL_NOT_RUNNING = ("completed", "error", "cancelled", "requested")

SUPERVISORD_CONF = """\
[unix_http_server]
file={dir}/supervisor.sock

[supervisord]
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}
nodaemon=true
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/supervisor.sock

[include]
files = {dir}/mrmd-monitor.conf
"""


class Supervisor:
    """A supervisord in the foreground, and supervisorctl against it."""

    def __init__(self, directory, env):
        self.dir = directory
        self.conf = directory / "supervisord.conf"
        self.env = env
        self.proc = ManagedProcess([sys.executable, "-m", "supervisor.supervisord", "-n", "-c", self.conf],
                                   name="supervisord", cwd=directory, env=env,
                                   log_path=directory / "supervisord.out")
        self.pids = set()  # every monitor pid seen, killed in teardown if still alive

    def ctl(self, *args, timeout=60):
        result = subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.conf)]
                                + list(args), capture_output=True, text=True, timeout=timeout,
                                env=self.env, cwd=self.dir)
        return result.returncode, (result.stdout + result.stderr).strip()

    def status(self):
        return self.ctl("status", PROGRAM)[1]

    def pid(self):
        code, out = self.ctl("pid", PROGRAM)
        if out.isdigit() and int(out) > 0:
            self.pids.add(int(out))
            return int(out)
        return None

    def start(self):
        self.proc.start(wait_ready=False)
        wait_until(lambda: self.ctl("status")[0] in (0, 3) and "RUNNING" in self.status(), timeout=30,
                   message="supervisorctl status never showed RUNNING")

    def stop(self):
        for pid in list(self.pids):
            if pid_alive(pid):
                self.ctl("stop", "all")
                break
        self.proc.stop(timeout=40)
        for pid in self.pids:
            kill_if_alive(pid)


@pytest.fixture
def supervisor(request, short_tmp, monitor_command, sync_server, doc_name):
    ini = write_ini(short_tmp / "monitor.ini", sync_url=sync_server.url, doc=doc_name, grace=GRACE)
    program_log = short_tmp / "mrmd-monitor.log"
    program = adapt((CONTRIB / "supervisord.conf").read_text(), {
        SHIPPED_COMMAND: monitor_command,
        SHIPPED_CONFIG: ini,
        "/var/log/supervisor/mrmd-monitor.log": program_log,
    }, drop_prefixes=("user=",))
    (short_tmp / "mrmd-monitor.conf").write_text(program)
    (short_tmp / "supervisord.conf").write_text(SUPERVISORD_CONF.format(dir=short_tmp))
    sup = Supervisor(short_tmp, clean_env())
    sup.log = program_log
    try:
        sup.start()
        sup.pid()
        yield sup
    finally:
        sup.stop()
        print_files_if_failed(request.node, program_log, short_tmp / "supervisord.log")


def test_supervisord_runs_and_stops_the_monitor_within_the_grace_period(
        supervisor, sync_server, own_runtime, doc_name, peer_factory):
    code, status = supervisor.ctl("status", PROGRAM)
    assert code == 0 and "RUNNING" in status, status
    pid = supervisor.pid()
    wait_for_log(supervisor.log, READY)
    browser = peer_factory(sync_server.url, doc_name)

    exec_id, entry = run_cell(browser, own_runtime, "print('under supervisord')")
    assert entry["status"] == "completed"
    assert "```output:%s\nunder supervisord\n```" % exec_id in browser.text()

    # A run longer than the grace period: stop must end it, and in time.
    code = loop_code('tick', 600, 0.1)
    long_id = "exec-" + uid()
    browser.set_text(browser.text() + "\n" + cell(code) + "\n")
    browser.request(long_id, code, own_runtime.url)
    browser.wait_text("tick 3\n", timeout=30)

    started = time.monotonic()
    code, out = supervisor.ctl("stop", PROGRAM)
    took = time.monotonic() - started
    print("supervisorctl stop took %.2fs (grace %.1fs)" % (took, GRACE))
    assert code == 0 and "stopped" in out, out
    assert GRACE - 0.5 <= took <= GRACE + 5.0  # waited for the run, then stopped on its own
    assert "STOPPED" in supervisor.status()
    assert not pid_alive(pid)
    # It exited by itself (status 0), it was not killed at stopwaitsecs.
    assert "stopped: %s (exit status 0)" % PROGRAM in read(supervisor.dir / "supervisord.log")

    entry = browser.wait_entry(long_id, FINAL_NOT_RUNNING, timeout=10)
    assert entry["status"] == "error"
    assert "stopped" in entry["error"]["message"]
    assert "stopping (SIGTERM)" in read(supervisor.log)
    assert "monitor stopped" in read(supervisor.log)


def test_supervisorctl_signal_hup_reloads(supervisor):
    wait_for_log(supervisor.log, READY)
    code, out = supervisor.ctl("signal", "HUP", PROGRAM)
    assert code == 0, out
    wait_for_log(supervisor.log, "SIGHUP: configuration reloaded from")
    assert "RUNNING" in supervisor.status()
