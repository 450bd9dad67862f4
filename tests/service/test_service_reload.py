"""HUP inside the daemon, without network: what each sync thread is handed.

The real-process side (log level, allowlist, a bad file) is in
test_service_signals.py; here the Daemon is built but not started, with
stand-ins for its sync threads that run the posted Call at once.
"""

import logging

import pytest

from mrmd_monitor import messages as m
from mrmd_monitor.config import load_config
from mrmd_monitor.daemon import Daemon
from tests.service.helpers import write_ini


class FakeSync:
    def __init__(self):
        self.applied = []

    def post(self, message):
        assert isinstance(message, m.Call)
        message.fn(self)

    def apply_config(self, config):
        self.applied.append(config)


pytestmark = pytest.mark.usefixtures("restore_logging")


def daemon_for(ini, *extra):
    argv = ["-c", str(ini)] + list(extra)
    daemon = Daemon(load_config(argv, env={}), argv=argv, env={})
    daemon.fleet.syncs = [FakeSync(), FakeSync()]
    return daemon


def test_live_values_reach_every_sync_thread_and_restart_only_ones_stay(tmp_path, caplog):
    ini = write_ini(tmp_path / "monitor.ini", sync_url="ws://127.0.0.1:1", doc="a.md", grace=5,
                    max_workers=4)
    daemon = daemon_for(ini)
    write_ini(ini, sync_url="ws://127.0.0.1:2", doc="b.md", grace=7, max_workers=9,
              allow_runtime=["runtimes.example.org"], retention=10)
    with caplog.at_level(logging.INFO):
        daemon._reload()
    new = daemon.config
    assert (new.grace, new.allow_runtime, new.retention) == (7.0, ("runtimes.example.org",), 10.0)
    assert (new.sync_url, new.docs, new.max_workers) == ("ws://127.0.0.1:1", ("a.md",), 4)
    for sync in daemon.fleet.syncs:
        assert sync.applied == [new]
    messages = [r.getMessage() for r in caplog.records]
    assert any("grace 5.0 -> 7.0" in msg and "retention 3600.0 -> 10.0" in msg for msg in messages)
    warning = next(r for r in caplog.records if "cannot change while running" in r.getMessage())
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith("SIGHUP: sync-url, doc, max-workers cannot change")


def test_command_line_still_beats_the_file_after_a_reload(tmp_path):
    ini = write_ini(tmp_path / "monitor.ini", sync_url="ws://127.0.0.1:1", grace=5)
    daemon = daemon_for(ini, "--grace", "2")
    write_ini(ini, sync_url="ws://127.0.0.1:1", grace=8)
    daemon._reload()
    assert daemon.config.grace == 2.0
    assert daemon.fleet.syncs[0].applied == [daemon.config]
    assert daemon.config.source_of("grace") == "command line"


def test_a_bad_file_keeps_the_running_configuration(tmp_path, caplog):
    ini = write_ini(tmp_path / "monitor.ini", sync_url="ws://127.0.0.1:1", grace=5)
    daemon = daemon_for(ini)
    before = daemon.config
    ini.write_text("[mrmd-monitor]\nsync-url = ws://127.0.0.1:1\ngrace = soon\n")
    daemon._reload()
    assert daemon.config is before
    assert all(sync.applied == [] for sync in daemon.fleet.syncs)
    error = next(r for r in caplog.records if "configuration not reloaded" in r.getMessage())
    assert error.levelno == logging.ERROR and "grace" in error.getMessage()


def test_a_missing_file_keeps_the_running_configuration(tmp_path, caplog):
    ini = write_ini(tmp_path / "monitor.ini", sync_url="ws://127.0.0.1:1")
    daemon = daemon_for(ini)
    before = daemon.config
    ini.unlink()
    daemon._reload()
    assert daemon.config is before
    assert any("configuration not reloaded" in r.getMessage() for r in caplog.records)


def test_without_a_command_line_hup_only_reopens_logs(caplog):
    config = load_config(["ws://127.0.0.1:1"], env={})
    daemon = Daemon(config)
    daemon.fleet.syncs = [FakeSync()]
    with caplog.at_level(logging.INFO):
        daemon._reload()
    assert daemon.config is config and daemon.fleet.syncs[0].applied == []
    assert any("log files reopened" in r.getMessage() for r in caplog.records)
