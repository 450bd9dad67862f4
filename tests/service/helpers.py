"""Helpers for the service tests (the fixtures are in conftest.py): the
shipped contrib files run against a temporary prefix, log files read with
deadlines, runs requested the way the editor does.

How a contrib file is adapted to a test (``adapt``): only its paths are
replaced (``/usr/local/bin/mrmd-monitor`` by the command of this checkout,
``/etc/mrmd-monitor/monitor.ini`` and ``/var/log/...`` by files under the
test's temporary directory) and, for supervisord, the ``user=`` line is
dropped (switching user needs a user that can read the test's files). Every
other line runs as shipped. ``adapt`` fails when a path it should replace is
missing, so a change in contrib cannot make a test silently test less.
"""

import os
import signal
from pathlib import Path

from tests.support.notebook import run_cell as _run_cell
from tests.support.procs import REPO_ROOT
from tests.support.waiting import wait_until

CONTRIB = REPO_ROOT / "contrib"
SHIPPED_COMMAND = "/usr/local/bin/mrmd-monitor"
SHIPPED_CONFIG = "/etc/mrmd-monitor/monitor.ini"
READY = "monitor ready"


def adapt(text, replacements, drop_prefixes=()):
    """``text`` with each ``old -> new`` of ``replacements`` applied (each must
    occur) and the lines starting with one of ``drop_prefixes`` removed (each
    must match a line)."""
    for old, new in replacements.items():
        assert old in text, "contrib file no longer contains %r" % old
        text = text.replace(old, str(new))
    lines = text.splitlines(keepends=True)
    for prefix in drop_prefixes:
        assert any(line.startswith(prefix) for line in lines), "no line starts with %r" % prefix
        lines = [line for line in lines if not line.startswith(prefix)]
    return "".join(lines)


def clean_env(**extra):
    """The test runner's environment without MRMD_MONITOR_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MRMD_MONITOR_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def write_ini(path, **options):
    """A monitor.ini with section [mrmd-monitor]; ``max_workers=2`` -> ``max-workers = 2``;
    a list value is written one item per indented line."""
    lines = ["[mrmd-monitor]"]
    for key, value in options.items():
        key = key.replace("_", "-")
        if isinstance(value, (list, tuple)):
            lines.append("%s =" % key)
            lines.extend("    %s" % v for v in value)
        else:
            lines.append("%s = %s" % (key, value))
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def read(path):
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def tail(path, n=60):
    lines = read(path).splitlines()[-n:]
    return "--- last %d lines of %s ---\n%s" % (len(lines), path, "\n".join(lines))


def wait_for_log(path, substring, timeout=15.0, count=1):
    """Wait until the file at ``path`` holds ``substring`` (``count`` times); return its text."""
    try:
        return wait_until(lambda: read(path).count(substring) >= count and read(path), timeout=timeout,
                          interval=0.05)
    except AssertionError:
        raise AssertionError("%r did not appear %d time(s) in %s within %.1fs\n%s"
                             % (substring, count, path, timeout, tail(path))) from None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_if_alive(pid):
    if pid and pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_until(lambda: not pid_alive(pid), timeout=5, message="pid %d survived SIGKILL" % pid)


def run_cell(peer, runtime, code, timeout=30):
    """Put the cell into the text, ask for a run as the editor does, wait for the end."""
    return _run_cell(peer, code, runtime.url, timeout=timeout, add_cell=True)
