"""Fixtures of the service tests; the helpers they use are in helpers.py."""

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.service.helpers import READY, clean_env, read
from tests.support.procs import REPO_ROOT, ManagedProcess, Runtime
from tests.support.reports import test_failed

def print_files_if_failed(node, *paths):
    """In a teardown: print the files a failed test leaves (pytest shows them)."""
    if test_failed(node):
        for path in paths:
            print("\n===== %s =====\n%s" % (path, read(path) or "(missing or empty)"))


@pytest.fixture(scope="session")
def monitor_command(tmp_path_factory):
    """The ``mrmd-monitor`` command of this checkout: the console script that
    ``pip install -e .`` put next to the interpreter, else (no script, or one
    installed from another checkout, as in a git worktree sharing a venv) a
    two-line wrapper around ``python -m mrmd_monitor``."""
    script = Path(sys.executable).parent / "mrmd-monitor"
    if script.exists() and _installed_from_here():
        return script
    wrapper = tmp_path_factory.mktemp("bin") / "mrmd-monitor"
    wrapper.write_text("#!/bin/sh\nPYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} exec %s -m mrmd_monitor \"$@\"\n"
                       % (shlex.quote(str(REPO_ROOT)), shlex.quote(sys.executable)))
    wrapper.chmod(0o755)
    return wrapper


def _installed_from_here():
    """Whether the interpreter, run outside this checkout, imports this checkout's package."""
    found = subprocess.run([sys.executable, "-c",
                            "import mrmd_monitor; print(mrmd_monitor.__file__)"],
                           cwd="/", capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    where = Path(found.stdout.strip() or "/").resolve()
    return found.returncode == 0 and REPO_ROOT.resolve() in where.parents


@pytest.fixture
def short_tmp():
    """A short temporary directory (a unix socket path must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="mrmd-svc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def own_runtime(tmp_path):
    """A runtime of this test's own: runs the test abandons (stopped monitors)
    must not print into the next test's output."""
    rt = Runtime(workdir=tmp_path / "rt", log_path=tmp_path / "logs" / "own-runtime.log")
    try:
        rt.start()
        yield rt
    finally:
        rt.stop()


class ConfiguredMonitor(ManagedProcess):
    """The monitor command run with the given arguments (typically ``-c INI``),
    ready at "monitor ready"."""

    name = "monitor"
    ready_timeout = 30.0

    def is_ready(self):
        return any(READY in line for line in self.lines("stderr"))


@pytest.fixture
def configured_monitor(request, tmp_path, monitor_command):
    """``configured_monitor(*args, wait_ready=True, env=None) -> ConfiguredMonitor``;
    stopped in teardown, its log printed when the test failed."""
    started = []

    def make(*args, wait_ready=True, env=None):
        name = "monitor-%d" % (len(started) + 1)
        monitor = ConfiguredMonitor([monitor_command] + [str(a) for a in args], name=name,
                                    cwd=tmp_path, env=clean_env(**(env or {})),
                                    log_path=tmp_path / "logs" / ("%s.log" % name))
        started.append(monitor)
        monitor.start(wait_ready=wait_ready)
        return monitor

    try:
        yield make
    finally:
        for monitor in started:
            monitor.stop()
        if test_failed(request.node):
            for monitor in started:
                print("\n===== %s log (exit code %s) =====\n%s"
                      % (monitor.name, monitor.returncode, monitor.log_text()))
