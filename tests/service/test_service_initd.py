"""The shipped LSB init script with Debian's start-stop-daemon, against a
temporary prefix: MRMD_MONITOR_DEFAULTS names a defaults file (the shape of
/etc/default/mrmd-monitor) whose DAEMON is this checkout's command and whose
pid file, config and logs live under the test's temporary directory. USER is
empty: no user switch (the tests run without creating users)."""

import os
import shutil
import subprocess
import time

import pytest

from tests.service.conftest import print_files_if_failed
from tests.service.helpers import (CONTRIB, READY, clean_env, kill_if_alive, pid_alive, read,
                                   run_cell, wait_for_log,
                                   write_ini)
from tests.support.notebook import loop_code
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

SCRIPT = CONTRIB / "init.d" / "mrmd-monitor"


@pytest.fixture(autouse=True)
def need_start_stop_daemon():
    if shutil.which("start-stop-daemon", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        pytest.fail("start-stop-daemon is not installed (Debian package dpkg); tests/run.sh installs "
                    "it when it runs as root", pytrace=False)


class InitScript:
    def __init__(self, prefix, defaults):
        self.prefix = prefix
        self.defaults = defaults
        self.pidfile = prefix / "run" / "mrmd-monitor.pid"
        self.log = prefix / "log" / "monitor.log"
        self.output = prefix / "log" / "stderr.log"
        self.pids = set()

    def __call__(self, action, timeout=60):
        result = subprocess.run([str(SCRIPT), action], capture_output=True, text=True, timeout=timeout,
                                env=clean_env(MRMD_MONITOR_DEFAULTS=self.defaults), cwd=self.prefix)
        self.pid()
        return result.returncode, (result.stdout + result.stderr).strip()

    def pid(self):
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        self.pids.add(pid)
        return pid

    def cleanup(self):
        if self.pidfile.exists():
            self("stop")
        for pid in self.pids:
            kill_if_alive(pid)


def make_init(prefix, monitor_command, config, **settings):
    values = dict(DAEMON=monitor_command, CONFIG=config, USER="",
                  PIDFILE=prefix / "run" / "mrmd-monitor.pid",
                  LOG_FILE=prefix / "log" / "monitor.log", OUTPUT=prefix / "log" / "stderr.log")
    values.update(settings)
    defaults = prefix / "default"
    defaults.write_text("".join("%s=%s\n" % (k, v) for k, v in values.items()))
    return InitScript(prefix, defaults)


@pytest.fixture
def init_script(request, tmp_path, monitor_command):
    made = []

    def make(config, **settings):
        script = make_init(tmp_path, monitor_command, config, **settings)
        made.append(script)
        return script

    try:
        yield make
    finally:
        for script in made:
            script.cleanup()
            print_files_if_failed(request.node, script.log, script.output, script.defaults)


def test_start_status_run_reload_restart_stop(tmp_path, init_script, sync_server, own_runtime,
                                               doc_name, peer_factory):
    ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name, grace=3)
    init = init_script(ini)

    code, out = init("start")
    assert code == 0, out
    pid = init.pid()
    assert pid and pid_alive(pid)
    code, out = init("status")
    assert (code, out) == (0, "mrmd-monitor is running (pid %d)" % pid)
    wait_for_log(init.log, READY)
    code, out = init("start")
    assert code == 0 and "already running" in out and init.pid() == pid

    browser = peer_factory(sync_server.url, doc_name)
    exec_id, entry = run_cell(browser, own_runtime, "print('under init.d')")
    assert entry["status"] == "completed"
    assert "```output:%s\nunder init.d\n```" % exec_id in browser.text()

    # logrotate: move the file away, then reload; the monitor writes a new one.
    os.rename(init.log, str(init.log) + ".1")
    code, out = init("reload")
    assert code == 0, out
    text = wait_for_log(init.log, "SIGHUP: log files reopened")
    assert "SIGHUP: configuration reloaded from %s" % ini in text
    assert "SIGHUP" not in read(str(init.log) + ".1")
    assert init.pid() == pid and pid_alive(pid)
    code, out = init("force-reload")
    assert code == 0, out
    wait_for_log(init.log, "SIGHUP: configuration reloaded", count=2)

    code, out = init("restart")
    assert code == 0, out
    new_pid = init.pid()
    assert new_pid != pid and not pid_alive(pid) and pid_alive(new_pid)
    wait_until(lambda: READY in read(init.log).split("monitor stopped", 1)[-1], timeout=15,
               message="no %r after the restart" % READY)
    assert read(init.log).count("monitor stopped") == 1

    started = time.monotonic()
    code, out = init("stop")
    took = time.monotonic() - started
    print("init.d stop took %.2fs" % took)
    assert code == 0, out
    assert not pid_alive(new_pid)
    assert not init.pidfile.exists()
    assert read(init.log).count("monitor stopped") == 2
    code, out = init("status")
    assert (code, out) == (3, "mrmd-monitor is not running")
    code, out = init("stop")  # stopping a stopped service is fine
    assert code == 0, out
    code, out = init("reload")
    assert code == 7, out


def test_stop_waits_for_the_grace_period_then_marks_the_run(tmp_path, init_script, sync_server,
                                                           own_runtime, doc_name, peer_factory):
    grace = 2.0
    ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name, grace=grace)
    init = init_script(ini)
    assert init("start")[0] == 0
    wait_for_log(init.log, READY)
    browser = peer_factory(sync_server.url, doc_name)
    code = loop_code('tick', 600, 0.1)
    browser.set_text("```python\n%s\n```\n" % code)
    browser.request("exec-long", code, own_runtime.url)
    browser.wait_text("tick 3\n", timeout=30)
    pid = init.pid()
    started = time.monotonic()
    code, out = init("stop")
    took = time.monotonic() - started
    print("init.d stop with a running cell took %.2fs (grace %.1fs)" % (took, grace))
    assert code == 0, out
    assert grace - 0.5 <= took <= grace + 5.0
    assert not pid_alive(pid)
    entry = browser.wait_entry("exec-long", ("error", "completed"), timeout=10)
    assert entry["status"] == "error"


def test_disabled_service_does_not_start(tmp_path, init_script):
    ini = write_ini(tmp_path / "monitor.ini", sync_url="ws://127.0.0.1:9")
    init = init_script(ini, ENABLED="no")
    code, out = init("start")
    assert code == 0 and "disabled" in out
    assert not init.pidfile.exists()
    assert init("status")[0] == 3


def test_a_bad_configuration_fails_the_start(tmp_path, init_script):
    ini = write_ini(tmp_path / "monitor.ini", sync_url="ws://127.0.0.1:9", max_workers=0)
    # The check waits START_CHECK seconds for the monitor to exit: more than the
    # default 1 s, so that a loaded machine's slow interpreter start cannot outlast it.
    init = init_script(ini, START_CHECK="10")
    code, out = init("start")
    assert code == 1, out
    assert "exited right after its start" in out
    assert "max-workers" in wait_for_log(init.output, "mrmd-monitor: error:")
    assert init("status")[0] == 3


def test_missing_command_or_config(tmp_path, init_script):
    init = init_script(tmp_path / "missing.ini")
    code, out = init("start")
    assert code == 6 and "cannot read the configuration" in out
    ini = write_ini(tmp_path / "monitor.ini", sync_url="ws://127.0.0.1:9")
    init = init_script(ini, DAEMON=tmp_path / "nothing-here")
    code, out = init("start")
    assert code == 5 and "not installed" in out


def test_usage():
    result = subprocess.run([str(SCRIPT), "dance"], capture_output=True, text=True, timeout=30,
                            env=clean_env(MRMD_MONITOR_DEFAULTS="/nonexistent"))
    assert result.returncode == 2
    assert "Usage:" in result.stderr and "force-reload" in result.stderr


def test_pid_file_of_a_dead_monitor_reports_status_1(tmp_path, init_script):
    ini = write_ini(tmp_path / "monitor.ini", sync_url="ws://127.0.0.1:9")
    init = init_script(ini)
    dead = subprocess.Popen(["true"])
    dead.wait()
    init.pidfile.parent.mkdir(parents=True, exist_ok=True)
    init.pidfile.write_text("%d\n" % dead.pid)
    wait_until(lambda: not pid_alive(dead.pid), timeout=5)
    code, out = init("status")
    assert code == 1 and "pid file" in out
