"""The contrib files as shipped: what each promises an operator, read from the
file itself; the systemd unit through ``systemd-analyze verify``."""

import configparser
import os
import re
import shutil
import subprocess

import pytest

from mrmd_monitor.config import load_config
from mrmd_monitor.daemon import STOP_MARGIN

from tests.service.helpers import CONTRIB, SHIPPED_COMMAND, SHIPPED_CONFIG, adapt

DEFAULT_GRACE = load_config(["ws://localhost:1"], env={}).grace


def unit_file():
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(CONTRIB / "mrmd-monitor.service")
    return parser


def seconds(text):
    """A systemd time span in seconds: ``30``, ``30s``, ``1min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit]
    return total


def test_systemd_unit_settings():
    service = unit_file()["Service"]
    assert service["ExecStart"] == "%s -c %s" % (SHIPPED_COMMAND, SHIPPED_CONFIG)
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert seconds(service["TimeoutStopSec"]) > DEFAULT_GRACE + STOP_MARGIN
    assert service["Restart"] == "on-failure"
    assert service["User"] not in ("", "root", "0")
    assert service.get("Type", "simple") in ("simple", "exec")  # the monitor stays in the foreground
    assert unit_file()["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verify(tmp_path, monitor_command):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt package systemd); tests/run.sh installs it "
                    "when it runs as root")
    # verify checks that ExecStart exists: point it at this checkout's command.
    unit = tmp_path / "mrmd-monitor.service"
    unit.write_text(adapt((CONTRIB / "mrmd-monitor.service").read_text(),
                          {SHIPPED_COMMAND: monitor_command}))
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="")
    result = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                            timeout=60, env=env)
    output = result.stdout + result.stderr
    # Only lines about our unit count: a container's own units may be odd.
    ours = [line for line in output.splitlines() if "mrmd-monitor" in line]
    assert result.returncode == 0 and not ours, output


def test_systemd_analyze_verify_catches_mistakes(tmp_path, monitor_command):
    """The check above would notice a typo: an unknown key is reported."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "mrmd-monitor.service"
    text = adapt((CONTRIB / "mrmd-monitor.service").read_text(), {SHIPPED_COMMAND: monitor_command})
    unit.write_text(text.replace("TimeoutStopSec=", "TimeoutStopSecs="))
    result = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert "TimeoutStopSecs" in result.stdout + result.stderr


def supervisor_program():
    parser = configparser.ConfigParser(strict=True, interpolation=None, inline_comment_prefixes=(";",))
    parser.read(CONTRIB / "supervisord.conf")
    assert parser.sections() == ["program:mrmd-monitor"]
    return parser["program:mrmd-monitor"]


def test_supervisor_program_settings():
    program = supervisor_program()
    assert program["command"] == "%s -c %s" % (SHIPPED_COMMAND, SHIPPED_CONFIG)
    assert program["stopsignal"] == "TERM"
    assert float(program["stopwaitsecs"]) > DEFAULT_GRACE + STOP_MARGIN
    assert program["autorestart"] in ("true", "unexpected")
    assert program["user"] not in ("", "root")
    assert program["stdout_logfile"].startswith("/var/log/")
    assert program["redirect_stderr"] == "true"


def test_init_script_header_and_actions():
    script = CONTRIB / "init.d" / "mrmd-monitor"
    text = script.read_text()
    assert os.access(script, os.X_OK)
    assert text.startswith("#!/bin/sh\n")
    header = text[text.index("### BEGIN INIT INFO"):text.index("### END INIT INFO")]
    for field in ("Provides: ", "Required-Start:", "Required-Stop:", "Default-Start:",
                  "Default-Stop:", "Short-Description:"):
        assert "# " + field in header
    assert "/etc/default/$NAME" in text
    for action in ("start)", "stop)", "restart)", "reload|force-reload)", "status)"):
        assert "\n    %s\n" % action in text
    for flag in ("--background", "--make-pidfile", "--pidfile", "--retry"):
        assert flag in text
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_defaults_file_names_every_variable_of_the_init_script():
    script = (CONTRIB / "init.d" / "mrmd-monitor").read_text()
    defaults = (CONTRIB / "default" / "mrmd-monitor").read_text()
    block = script[script.index("# Defaults;"):script.index("DEFAULTS=")]
    variables = re.findall(r"^([A-Z_]+)=(.*)$", block, re.M)
    assert {name for name, _ in variables} >= {"DAEMON", "CONFIG", "USER", "PIDFILE", "DAEMON_ARGS",
                                               "ENABLED"}
    for name, value in variables:
        assert "#%s=%s\n" % (name, value) in defaults, name  # documented, with the same default


def test_logrotate_snippet_matches_the_log_file_and_reloads():
    text = (CONTRIB / "logrotate" / "mrmd-monitor").read_text()
    assert "/var/log/mrmd-monitor/monitor.log {" in text
    assert "copytruncate" not in text.split("{", 1)[1]  # the monitor reopens on HUP
    assert "systemctl reload mrmd-monitor.service" in text
    defaults = (CONTRIB / "default" / "mrmd-monitor").read_text()
    assert "#LOG_FILE=/var/log/mrmd-monitor/monitor.log" in defaults


def test_sample_config_tells_to_keep_stop_timeouts_above_grace():
    sample = (CONTRIB / "monitor.ini").read_text()
    assert "#grace = %s" % DEFAULT_GRACE in sample
