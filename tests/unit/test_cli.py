"""The mrmd-monitor command: exit statuses, --help, --version, handing over to the daemon."""

import io
import sys
import types

import pytest

from mrmd_monitor import __version__, cli
from mrmd_monitor.config import build_parser, option_actions

URL = "ws://localhost:4444"


@pytest.fixture(autouse=True)
def clean_env_and_logging(monkeypatch, restore_logging):
    for name in list(__import__("os").environ):
        if name.startswith("MRMD_MONITOR_"):
            monkeypatch.delenv(name)


@pytest.fixture
def fake_daemon(monkeypatch):
    """Replace mrmd_monitor.daemon with a stub that records what it was given."""
    seen = {}

    class Daemon:
        def __init__(self, config, argv=None, on_ready=None):
            seen["config"] = config
            seen["argv"] = argv
            seen["on_ready"] = on_ready

        def run(self):
            seen["ran"] = True
            return seen.get("status", 0)

    module = types.ModuleType("mrmd_monitor.daemon")
    module.Daemon = Daemon
    monkeypatch.setitem(sys.modules, "mrmd_monitor.daemon", module)
    return seen


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["http://localhost:4444"],
        [URL, "--max-workers", "0"],
        [URL, "--log-level", "loud"],
        [URL, "--grace", "soon"],
        [URL, "--unknown"],
        ["-c", "/nonexistent/monitor.ini", URL],
    ],
)
def test_config_error_is_one_stderr_line_and_status_2(argv, capsys, fake_daemon):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1
    assert err.startswith("mrmd-monitor: error: ")
    assert "ran" not in fake_daemon


def test_unopenable_log_file_is_status_2(tmp_path, capsys, fake_daemon):
    assert cli.main([URL, "--log-file", str(tmp_path / "no" / "such" / "dir.log")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open log file" in err


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"mrmd-monitor {__version__}\n"


def test_help_mentions_every_option(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for key, action in option_actions(build_parser()).items():
        assert f"--{key}" in out, key
        assert action.env_var in out, action.env_var
    for text in ("-c PATH, --config PATH", "MRMD_MONITOR_CONFIG", "sync-url", "--version",
                 "(default: 8)", "(default: 0.05)", "Y.Map('executions')",
                 "mrmd-monitor -c /etc/mrmd-monitor/monitor.ini",
                 "mrmd-monitor --doc notebook.md ws://localhost:4444"):
        assert text in out, text


def test_help_does_not_need_a_sync_url_or_a_valid_config(capsys, monkeypatch):
    monkeypatch.setenv("MRMD_MONITOR_GRACE", "-1")
    assert cli.main(["--max-workers", "0", "--help", "-c", "/nonexistent.ini"]) == 0
    assert "--reconnect-max" in capsys.readouterr().out
    assert cli.main(["--max-workers", "0", "-V", "-c", "/nonexistent.ini"]) == 0
    assert capsys.readouterr().out == f"mrmd-monitor {__version__}\n"


def test_runs_the_daemon_with_the_config_and_returns_its_status(capsys, fake_daemon):
    fake_daemon["status"] = 3
    assert cli.main(["localhost:4444", "--doc", "a.md"]) == 3
    config = fake_daemon["config"]
    assert config.sync_url == URL and config.docs == ("a.md",)
    assert fake_daemon["argv"] == ["localhost:4444", "--doc", "a.md"]  # loaded again on HUP
    assert fake_daemon["ran"]
    err = capsys.readouterr().err
    assert "starting with" in err and "sync-url=ws://localhost:4444 (command line)" in err
    assert fake_daemon["on_ready"] is cli.tell_launcher


def test_the_launchers_ready_line_goes_to_stdout(capsys):
    cli.tell_launcher()
    out, err = capsys.readouterr()
    assert out == "Monitor ready\n" and err == ""


class GoneReader(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def closed():
    stream = io.StringIO()
    stream.close()
    return stream


@pytest.mark.parametrize("stream", [GoneReader(), closed()], ids=["reader gone", "closed"])
def test_a_launcher_gone_or_a_closed_stdout_does_not_stop_the_monitor(stream):
    cli.tell_launcher(stream)   # no exception: the line is for a reader that may be gone


def test_none_from_the_daemon_means_success(fake_daemon, monkeypatch):
    fake_daemon["status"] = None
    assert cli.main([URL]) == 0


def test_reads_sys_argv_and_environment(monkeypatch, fake_daemon):
    monkeypatch.setattr(sys, "argv", ["mrmd-monitor", "--max-workers", "2"])
    monkeypatch.setenv("MRMD_MONITOR_SYNC_URL", "localhost:9")
    assert cli.main() == 0
    assert fake_daemon["config"].sync_url == "ws://localhost:9"
    assert fake_daemon["config"].max_workers == 2
    assert fake_daemon["argv"] == ["--max-workers", "2"]


def test_main_entry_exits_with_the_status(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["mrmd-monitor", "--version"])
    with pytest.raises(SystemExit) as info:
        cli.main_entry()
    assert info.value.code == 0


def test_a_subcommand_gets_the_rest_of_the_arguments(monkeypatch, fake_daemon):
    seen = []
    monkeypatch.setitem(cli.SUBCOMMANDS, "probe", lambda argv: seen.append(argv) or 4)
    assert cli.main(["probe", "--status-addr", "9464"]) == 4
    assert seen == [["--status-addr", "9464"]] and "ran" not in fake_daemon
    assert cli.main([URL]) == 0 and fake_daemon["ran"]  # anything else is the daemon
