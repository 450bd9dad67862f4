"""The monitor's log as a service manager collects it: the start line with
every value and its source (secrets masked), JSON lines for log collectors,
a log file that logrotate can move."""

import json
import os
import signal

import pytest

from tests.service.helpers import read, run_cell, wait_for_log, write_ini

pytestmark = pytest.mark.e2e


def test_start_line_names_each_value_and_its_source(tmp_path, sync_server, doc_name, configured_monitor):
    ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name, grace=4,
                    token="file-secret-123")
    monitor = configured_monitor("-c", ini, "--name", "svc-test", env={"MRMD_MONITOR_MAX_WORKERS": "3"})
    line = monitor.wait_for_line("starting with")
    source = "(config file %s)" % ini
    assert "config=%s (command line)" % ini in line
    assert "sync-url=%s %s" % (sync_server.url, source) in line
    assert "doc=%s %s" % (doc_name, source) in line
    assert "grace=4.0 %s" % source in line
    assert "name=svc-test (command line)" in line
    assert "max-workers=3 (environment MRMD_MONITOR_MAX_WORKERS)" in line
    assert "flush-interval=0.05 (default)" in line
    assert "token=*** %s" % source in line
    assert "file-secret-123" not in monitor.log_text()


def test_json_lines(tmp_path, sync_server, own_runtime, doc_name, peer_factory, configured_monitor):
    ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name, log_format="json")
    monitor = configured_monitor("-c", ini)
    browser = peer_factory(sync_server.url, doc_name)
    exec_id, entry = run_cell(browser, own_runtime, "print('json')")
    assert entry["status"] == "completed"
    monitor.wait_for_line('"%s completed"' % exec_id)
    records = [json.loads(line) for line in monitor.lines("stderr")]  # every line is one object
    assert records
    for record in records:
        assert {"time", "level", "thread", "message"} <= set(record)
        assert record["time"].endswith("Z") and record["level"] in ("debug", "info", "warning", "error")
    assert any(r["thread"] == "MainThread" and "monitor ready" in r["message"] for r in records)
    about_run = [r for r in records if r.get("exec_id") == exec_id]
    assert about_run and all(r.get("doc") == doc_name for r in about_run)
    assert any(r["thread"] == "sync:%s" % doc_name for r in about_run)


def test_log_file_moved_by_logrotate_then_hup(tmp_path, sync_server, doc_name, configured_monitor):
    log_file = tmp_path / "log" / "monitor.log"
    log_file.parent.mkdir()
    ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name, log_file=log_file)
    monitor = configured_monitor("-c", ini, wait_ready=False)
    wait_for_log(log_file, "monitor ready")
    assert monitor.lines("stderr") == []  # everything goes to the file
    os.rename(log_file, str(log_file) + ".1")
    monitor.send_signal(signal.SIGHUP)
    text = wait_for_log(log_file, "SIGHUP: log files reopened")
    assert "SIGHUP: configuration reloaded" in text
    assert "SIGHUP" not in read(str(log_file) + ".1")
    monitor.send_signal(signal.SIGTERM)
    assert monitor.wait(timeout=15) == 0
    assert "monitor stopped" in read(log_file)
