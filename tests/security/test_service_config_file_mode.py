"""A config file others can read may give away the token: the monitor says so
once at start and once on each reload, and says nothing for a private file."""

import os
import stat

import pytest

from mrmd_monitor import cli
from mrmd_monitor.config import config_file_warning, load_config


def write_config(tmp_path, mode):
    path = tmp_path / "monitor.ini"
    path.write_text("[mrmd-monitor]\nsync-url = ws://127.0.0.1:4444\ntoken = s3cret-t0ken\n")
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode,readable_by", [(0o644, "group and others"), (0o640, "group"),
                                              (0o604, "others"), (0o660, "group")])
def test_a_file_others_can_read_is_named_with_its_mode(tmp_path, mode, readable_by):
    path = write_config(tmp_path, mode)
    text = config_file_warning(load_config(["-c", str(path)], env={}))
    assert text is not None
    assert str(path) in text and "%04o" % mode in text and readable_by in text
    assert "chmod 600" in text and "s3cret" not in text


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_a_private_file_or_none_says_nothing(tmp_path, mode):
    path = write_config(tmp_path, mode)
    assert config_file_warning(load_config(["-c", str(path)], env={})) is None
    assert config_file_warning(load_config(["ws://127.0.0.1:1"], env={})) is None


def test_the_start_logs_one_warning(tmp_path, capsys, monkeypatch):
    path = write_config(tmp_path, 0o644)

    class Daemon:
        def __init__(self, config, argv=None, **kwargs):
            pass

        def run(self):
            return 0

    monkeypatch.setattr("mrmd_monitor.daemon.Daemon", Daemon)
    assert cli.main(["-c", str(path)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "readable by" in line]
    assert len(lines) == 1 and "WARNING" in lines[0] and str(path) in lines[0]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644   # told, not changed
