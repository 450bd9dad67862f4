"""Signals against a real monitor started as a service would start it
(``mrmd-monitor -c monitor.ini``): HUP reloads the file, TERM/INT stop
against the grace deadline, a second one stops at once."""

import signal
import time

import pytest

from tests.service.helpers import run_cell, write_ini
from tests.support.notebook import cell, loop_code, uid
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

LOOP = loop_code('tick', 600, 0.1)


def debug_lines(monitor):
    return [line for line in monitor.lines("stderr") if " DEBUG " in line]


def start_long_run(browser, runtime):
    exec_id = "exec-" + uid()
    browser.set_text(browser.text() + "\n" + cell(LOOP) + "\n")
    browser.request(exec_id, LOOP, runtime.url)
    browser.wait_text("tick 3\n", timeout=30)
    return exec_id


def test_hup_reloads_the_config_file(tmp_path, sync_server, own_runtime, doc_name, peer_factory,
                                     configured_monitor):
    ini = tmp_path / "monitor.ini"
    base = dict(sync_url=sync_server.url, doc=doc_name)
    write_ini(ini, log_level="info", **base)
    monitor = configured_monitor("-c", ini)
    browser = peer_factory(sync_server.url, doc_name)
    assert run_cell(browser, own_runtime, "print(1)")[1]["status"] == "completed"
    assert debug_lines(monitor) == []

    # Live: log level, limits, the token (masked in the log). Not live: the name.
    write_ini(ini, log_level="debug", max_output_bytes="1M", token="s3cret-token", name="renamed", **base)
    monitor.send_signal(signal.SIGHUP)
    line = monitor.wait_for_line("SIGHUP: configuration reloaded from %s: " % ini)
    assert "log-level info -> debug" in line
    assert "max-output-bytes 2097152 -> 1048576" in line
    assert "token none -> ***" in line
    changes = line.split("%s: " % ini, 1)[1].split("; ")
    assert not any(change.startswith("name ") for change in changes)  # not applied: see below
    warning = monitor.wait_for_line("cannot change while running")
    assert "SIGHUP: name cannot change while running" in warning
    monitor.wait_for_line("SIGHUP: log files reopened")
    count = len(debug_lines(monitor))
    assert run_cell(browser, own_runtime, "print(2)")[1]["status"] == "completed"
    wait_until(lambda: len(debug_lines(monitor)) > count, timeout=10, message="no debug line after HUP")

    # A bad file: keep running with what was loaded before.
    write_ini(ini, log_level="debug", max_workers=0, **base)
    monitor.send_signal(signal.SIGHUP)
    line = monitor.wait_for_line("SIGHUP: configuration not reloaded")
    assert "still running with the previous one" in line and "max-workers" in line
    assert " ERROR " in line
    assert monitor.alive
    exec_id, entry = run_cell(browser, own_runtime, "print(3)")
    assert entry["status"] == "completed"
    assert any(exec_id in line for line in debug_lines(monitor))  # still at debug

    # The allowlist is read at claim time: after a HUP, a runtime left out is refused.
    write_ini(ini, log_level="debug", allow_runtime=["runtimes.example.org"], **base)
    monitor.send_signal(signal.SIGHUP)
    monitor.wait_for_line("allow-runtime localhost,127.0.0.0/8,::1 -> runtimes.example.org")
    exec_id, entry = run_cell(browser, own_runtime, "print('refused')")
    assert entry["status"] == "error", entry
    assert "is not allowed by this monitor" in entry["error"]["message"]

    # Back to info: debug lines stop.
    write_ini(ini, log_level="info", **base)
    monitor.send_signal(signal.SIGHUP)
    monitor.wait_for_line("log-level debug -> info")
    count = len(debug_lines(monitor))
    assert run_cell(browser, own_runtime, "print(4)")[1]["status"] == "completed"
    assert len(debug_lines(monitor)) == count
    assert "s3cret-token" not in monitor.log_text()


def test_term_lets_a_short_run_finish(tmp_path, sync_server, own_runtime, doc_name, peer_factory,
                                      configured_monitor):
    ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name, grace=20)
    monitor = configured_monitor("-c", ini)
    browser = peer_factory(sync_server.url, doc_name)
    code = "import time\nprint('begin', flush=True)\ntime.sleep(2)\nprint('end')"
    exec_id = "exec-" + uid()
    browser.set_text(cell(code) + "\n")
    browser.request(exec_id, code, own_runtime.url)
    browser.wait_text("begin\n", timeout=30)
    started = time.monotonic()
    monitor.send_signal(signal.SIGINT)
    assert monitor.wait(timeout=25) == 0
    took = time.monotonic() - started
    print("INT with a 2 s run left: exited after %.2fs" % took)
    assert took < 10
    entry = browser.wait_entry(exec_id, ("completed", "error"), timeout=10)
    assert entry["status"] == "completed"
    assert "```output:%s\nbegin\nend\n```" % exec_id in browser.text()
    monitor.wait_for_line("stopping (SIGINT)")


def test_second_term_stops_at_once(tmp_path, sync_server, own_runtime, doc_name, peer_factory,
                                   configured_monitor):
    ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name, grace=60)
    monitor = configured_monitor("-c", ini)
    browser = peer_factory(sync_server.url, doc_name)
    exec_id = start_long_run(browser, own_runtime)
    monitor.send_signal(signal.SIGTERM)
    monitor.wait_for_line("stopping (SIGTERM): running executions may finish within 60.0s")
    assert monitor.alive
    started = time.monotonic()
    monitor.send_signal(signal.SIGTERM)
    assert monitor.wait(timeout=10) == 0
    took = time.monotonic() - started
    print("second TERM: exited after %.2fs" % took)
    assert took < 5
    monitor.wait_for_line("second stop signal (SIGTERM): stopping now")
    entry = browser.wait_entry(exec_id, ("error", "completed", "cancelled"), timeout=10)
    assert entry["status"] == "error"
