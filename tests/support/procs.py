"""Real processes for end-to-end tests: the y-websocket server, mrmd-python, the monitor.

Every process is started in its own session (process group), its stdout and
stderr are read by two reader threads into a bounded list of lines (and,
optionally, a log file), and ``stop()`` always ends it: terminate, wait, kill
the whole group, join the readers.
"""

import collections
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .ports import free_port, port_open
from .waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
JS_DIR = REPO_ROOT / "tests" / "js"
NODE_MODULES = JS_DIR / "node_modules"
SERVER_SCRIPT = NODE_MODULES / "@y" / "websocket-server" / "src" / "server.js"
PEER_SCRIPT = JS_DIR / "peer.mjs"
#: Where tests/setup.sh installs the rest of the mrmd stack (ignored by git).
STACK_DIR = REPO_ROOT / "tests" / ".work"
MRMD_SYNC_DIR = STACK_DIR / "mrmd-sync"
MRP3_PYTHON = STACK_DIR / "mrp3" / "bin" / "mrmd-python"
MRMD_BASH = STACK_DIR / "bash" / "bin" / "mrmd-bash"

#: Reader threads are named with this prefix (the thread-leak check knows it).
READER_THREAD_PREFIX = "managed-proc:"


class ProcessFailed(AssertionError):
    """A managed process exited early or never became ready."""


class MissingNodeModules(RuntimeError):
    """tests/js/node_modules has not been installed."""


class MissingStack(RuntimeError):
    """A part of the mrmd stack that tests/setup.sh installs under tests/.work is missing."""


def require_stack(path, what):
    """Raise MissingStack unless ``path`` (installed by tests/setup.sh) exists."""
    if not Path(path).exists():
        raise MissingStack("%s is not installed (missing %s): run `bash tests/setup.sh`"
                           % (what, path))


def require_node_modules():
    """Raise MissingNodeModules unless the npm packages of tests/js are installed."""
    missing = [p for p in (SERVER_SCRIPT, NODE_MODULES / "yjs", NODE_MODULES / "y-websocket", NODE_MODULES / "ws")
               if not p.exists()]
    if missing:
        raise MissingNodeModules(
            "the JavaScript test dependencies are not installed (missing %s): run `npm ci` in %s"
            % (", ".join(str(p) for p in missing), JS_DIR)
        )


def node_executable():
    node = shutil.which("node")
    if node is None:
        raise MissingNodeModules("`node` is not on PATH: the browser-side tests need Node.js 18 or later")
    return node


class ManagedProcess:
    """A subprocess whose output is captured line by line.

    ``argv``/``cwd``/``env`` are passed to ``subprocess.Popen``. With
    ``stdin=True`` the process gets a pipe on stdin (``self.proc.stdin``).
    ``log_path``: every captured line is also written there, prefixed with its
    stream. ``max_lines``: how many lines are kept in memory.
    ``max_line_chars``: longer lines are recorded (in memory and in the log)
    shortened; ``on_line`` still gets them whole.

    Subclasses override ``is_ready()`` (polled by ``start()``) and may
    override ``on_line(stream, line)``.
    """

    name = "process"
    ready_timeout = 30.0
    #: signal sent first by stop(); a process that ignores it is killed after the timeout
    stop_signal = signal.SIGTERM

    def __init__(self, argv, *, name=None, cwd=None, env=None, stdin=False, log_path=None, max_lines=5000,
                 max_line_chars=None):
        self.argv = [str(a) for a in argv]
        if name is not None:
            self.name = name
        self.cwd = str(cwd) if cwd is not None else None
        self.env = env
        self.use_stdin = stdin
        self.log_path = Path(log_path) if log_path is not None else None
        self.max_line_chars = max_line_chars
        self.proc = None
        self._lines = collections.deque(maxlen=max_lines)
        self._cond = threading.Condition()
        self._readers = []
        self._log_file = None
        self._starts = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait_ready=True, timeout=None):
        if self.alive:
            raise RuntimeError("%s is already running" % self.name)
        self._starts += 1
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "a", encoding="utf-8", errors="replace")
            self._log_file.write("=== start #%d: %s\n" % (self._starts, " ".join(self.argv)))
            self._log_file.flush()
        self._record("meta", "start #%d: %s" % (self._starts, " ".join(self.argv)))
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.PIPE if self.use_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._readers = [
            self._start_reader(self.proc.stdout, "stdout"),
            self._start_reader(self.proc.stderr, "stderr"),
        ]
        if wait_ready:
            try:
                self.wait_ready(timeout if timeout is not None else self.ready_timeout)
            except BaseException:
                self.stop()
                raise
        return self

    def is_ready(self):
        """Readiness condition polled by wait_ready(); the default is "started"."""
        return True

    def wait_ready(self, timeout=None):
        timeout = self.ready_timeout if timeout is None else timeout

        def ready_or_dead():
            if self.proc.poll() is not None:
                return "exited"
            return "ready" if self.is_ready() else None

        try:
            state = wait_until(ready_or_dead, timeout=timeout, interval=0.05,
                               message="%s did not become ready" % self.name)
        except AssertionError as exc:
            raise ProcessFailed("%s\n%s" % (exc, self.tail_text())) from None
        if state == "exited":
            self._join_readers(2.0)
            raise ProcessFailed("%s exited with code %s before it was ready\n%s"
                                % (self.name, self.proc.returncode, self.tail_text()))

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self):
        return self.proc.poll() if self.proc is not None else None

    def wait(self, timeout=10.0):
        """Wait for the process to exit by itself; return its exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ProcessFailed("%s did not exit within %.1fs\n%s" % (self.name, timeout, self.tail_text())) from None
        self._join_readers(5.0)
        return code

    def send_signal(self, sig):
        if self.alive:
            self.proc.send_signal(sig)

    def stop(self, timeout=10.0):
        """End the process (idempotent): signal, wait up to ``timeout``, kill the group, join readers."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._record("meta", "did not stop within %.1fs after %s: killing"
                             % (timeout, signal.Signals(self.stop_signal).name))
        # Kill whatever is left in the process group (the process itself if it
        # ignored the signal, and any children it started).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass
        self._join_readers(5.0)
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        self._record("meta", "exited with code %s" % proc.returncode)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return proc.returncode

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ output
    def _start_reader(self, pipe, stream):
        thread = threading.Thread(
            target=self._read, args=(pipe, stream),
            name="%s%s:%s" % (READER_THREAD_PREFIX, self.name, stream), daemon=True,
        )
        thread.start()
        return thread

    def _read(self, pipe, stream):
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                limit = self.max_line_chars
                if limit is not None and len(line) > limit:
                    self._record(stream, "%s ...[%d chars]" % (line[:limit], len(line)))
                else:
                    self._record(stream, line)
                try:
                    self.on_line(stream, line)
                except Exception as exc:  # a parsing bug must not kill the reader
                    self._record("meta", "on_line failed: %r" % (exc,))
        except (OSError, ValueError):
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass
            self.on_eof(stream)

    def _join_readers(self, timeout):
        deadline = time.monotonic() + timeout
        for t in self._readers:
            t.join(max(0.0, deadline - time.monotonic()))

    def _record(self, stream, line):
        with self._cond:
            self._lines.append((stream, line))
            if self._log_file is not None:
                try:
                    self._log_file.write("[%s] %s\n" % (stream, line))
                    self._log_file.flush()
                except (OSError, ValueError):
                    pass
            self._cond.notify_all()

    def on_line(self, stream, line):
        """Called by a reader thread for every line (after it is recorded)."""

    def on_eof(self, stream):
        """Called by a reader thread when its pipe closes."""
        with self._cond:
            self._cond.notify_all()

    def lines(self, stream=None):
        with self._cond:
            return [l for s, l in self._lines if stream is None or s == stream]

    def log_text(self):
        """Everything captured so far, one ``[stream] line`` per line."""
        with self._cond:
            return "\n".join("[%s] %s" % (s, l) for s, l in self._lines)

    def tail_text(self, n=60):
        with self._cond:
            tail = list(self._lines)[-n:]
        where = " (full log: %s)" % self.log_path if self.log_path else ""
        return "--- last %d lines of %s%s ---\n%s" % (
            len(tail), self.name, where, "\n".join("[%s] %s" % (s, l) for s, l in tail))

    def wait_for_line(self, substring, timeout=10.0, stream=None):
        """Wait for a captured line containing ``substring``; return it.

        Lines seen before the call count. Raises ProcessFailed when the process
        exits (and its output is drained) or the timeout passes first.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for s, line in self._lines:
                    if substring in line and (stream is None or s == stream) and s != "meta":
                        return line
                drained = self.proc is not None and self.proc.poll() is not None and not any(
                    t.is_alive() for t in self._readers)
                remaining = deadline - time.monotonic()
                if drained or remaining <= 0:
                    why = "exited (code %s)" % self.proc.returncode if drained else "timed out after %.1fs" % timeout
                    raise ProcessFailed("%s %s before printing %r\n%s" % (self.name, why, substring, self._tail_locked()))
                self._cond.wait(min(remaining, 0.2))

    def _tail_locked(self, n=60):
        tail = list(self._lines)[-n:]
        return "--- last %d lines of %s ---\n%s" % (len(tail), self.name, "\n".join("[%s] %s" % t for t in tail))

    def __repr__(self):
        return "<%s %s pid=%s>" % (type(self).__name__, self.name, self.pid)


# ---------------------------------------------------------------------- the sync server
class SyncServer(ManagedProcess):
    """The npm y-websocket server (``@y/websocket-server``), documents in memory."""

    name = "sync-server"
    kind = "npm-y-websocket"
    ready_timeout = 20.0

    def __init__(self, port=None, log_path=None, env=None):
        require_node_modules()
        self.port = port or free_port()
        full_env = dict(os.environ if env is None else env)
        full_env.update({"HOST": "127.0.0.1", "PORT": str(self.port)})
        full_env.pop("YPERSISTENCE", None)  # keep documents in memory
        super().__init__([node_executable(), SERVER_SCRIPT], cwd=JS_DIR, env=full_env, log_path=log_path)

    @property
    def url(self):
        return "ws://127.0.0.1:%d" % self.port

    def is_ready(self):
        return port_open(self.port)

    def restart(self, down_for=0.0):
        """Stop the server (all documents are lost) and start it again on the same port.

        ``down_for``: seconds to stay down between stop and start.
        """
        self.stop()
        wait_until(lambda: not port_open(self.port), timeout=10, message="port %d still open after stop" % self.port)
        if down_for:
            time.sleep(down_for)  # deliberate outage for fault tests
        return self.start()


# ---------------------------------------------------------------------- the MRP runtime
def find_mrmd_python():
    """The mrmd-python script next to this interpreter, else on PATH."""
    here = Path(sys.executable).parent / "mrmd-python"
    if here.exists():
        return str(here)
    found = shutil.which("mrmd-python")
    if found is None:
        raise ProcessFailed("mrmd-python is neither next to %s nor on PATH (pip install mrmd-python)" % sys.executable)
    return found


@functools.lru_cache(maxsize=None)
def mrmd_python_options(executable):
    """The set of ``--options`` that ``mrmd-python --help`` lists."""
    try:
        out = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(word.rstrip(",") for word in out.split() if word.startswith("--"))


class Runtime(ManagedProcess):
    """mrmd-python in the foreground on a free port, in a fresh working directory.

    ``--managed`` is passed when available: it keeps the runtime out of the
    ``~/.mrmd/runtimes`` registry (and skips the "runtime already running"
    check, which would make a second runtime with the default id exit at once).
    A managed mrmd-python ignores SIGTERM and SIGINT, so stop() kills it.
    """

    name = "mrmd-python"
    ready_timeout = 90.0

    #: what the suite calls this runtime in test ids and tests/README.md
    kind = "mrmd-python-0.4.2"

    def __init__(self, workdir=None, port=None, log_path=None, env=None, executable=None):
        self.port = port or free_port()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="mrmd-python-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        exe = str(executable) if executable is not None else find_mrmd_python()
        options = mrmd_python_options(exe)
        argv = [exe, "--foreground", "--host", "127.0.0.1", "--port", str(self.port)]
        if "--managed" in options:
            argv.append("--managed")
            self.stop_signal = signal.SIGKILL
        if "--id" in options:
            argv += ["--id", "mrmd-monitor-tests-%d" % self.port]
        if "--cwd" in options:
            argv += ["--cwd", str(self.workdir)]
        self.assets_dir = None
        if "--assets-dir" in options:
            self.assets_dir = self.workdir / "assets"
            self.assets_dir.mkdir(exist_ok=True)
            argv += ["--assets-dir", str(self.assets_dir)]
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONUNBUFFERED"] = "1"
        super().__init__(argv, cwd=self.workdir, env=full_env, log_path=log_path)

    @property
    def url(self):
        return "http://127.0.0.1:%d/mrp/v1" % self.port

    def is_ready(self):
        try:
            with urllib.request.urlopen(self.url + "/capabilities", timeout=2) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def stop(self, timeout=10.0):
        code = super().stop(timeout)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return code


class Mrp3Runtime(Runtime):
    """The MRP 0.3.0 mrmd-python (vendored; tests/.work/mrp3), ``--foreground --managed``.

    Its own virtualenv: its package name and version clash with PyPI's 0.4.2.
    It runs cells in a kernel process it starts for the virtualenv it detects;
    VIRTUAL_ENV is dropped so that this is its own (the test runner's .venv
    holds mrmd-python 0.4.2). Stopping kills the process group, kernel included.
    """

    name = "mrp3-python"
    kind = "mrp-0.3.0"

    def __init__(self, workdir=None, port=None, log_path=None, env=None):
        require_stack(MRP3_PYTHON, "the MRP 0.3.0 runtime")
        full_env = dict(os.environ if env is None else env)
        full_env.pop("VIRTUAL_ENV", None)
        super().__init__(workdir=workdir, port=port, log_path=log_path, env=full_env,
                         executable=MRP3_PYTHON)

    def health(self):
        """``GET /health``: ``{status, state, currentExecId, ...}``."""
        import json
        with urllib.request.urlopen(self.url + "/health", timeout=5) as resp:
            return json.loads(resp.read())


class BashRuntime(ManagedProcess):
    """mrmd-bash 0.1.2 (tests/.work/bash) on a free port, in a fresh working directory."""

    name = "mrmd-bash"
    kind = "mrmd-bash-0.1.2"
    ready_timeout = 60.0

    def __init__(self, workdir, port=None, log_path=None, env=None):
        require_stack(MRMD_BASH, "mrmd-bash")
        self.port = port or free_port()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ if env is None else env)
        full_env.pop("VIRTUAL_ENV", None)
        argv = [str(MRMD_BASH), "--host", "127.0.0.1", "--port", str(self.port),
                "--cwd", str(self.workdir), "--log-level", "warning"]
        super().__init__(argv, cwd=self.workdir, env=full_env, log_path=log_path)

    url = Runtime.url
    is_ready = Runtime.is_ready   # both MRP runtimes: ready when /capabilities answers


# ---------------------------------------------------------------------- mrmd-sync
class MrmdSyncServer(ManagedProcess):
    """mrmd-sync 0.3.5 (vendored; tests/.work/mrmd-sync): ``node bin/cli.js --port P DIR``.

    ``persist=False`` passes ``--no-persist`` (no Yjs snapshots; the markdown
    files are still written into ``directory``). Its pid lock and snapshots
    live under ``$TMPDIR/mrmd-sync-<hash of DIR>``: ``state_dir`` is passed as
    TMPDIR so that they stay inside the test's temporary directory, and a
    restart from the same ``directory`` finds them again.
    ``script``: run this node script instead of the CLI (the library with an
    auth hook, tests/js/mrmd_sync_auth.mjs); it gets ``--port P DIR`` too.
    """

    name = "mrmd-sync"
    kind = "mrmd-sync-0.3.5"
    ready_timeout = 30.0

    def __init__(self, directory, port=None, log_path=None, env=None, persist=False,
                 extra_args=(), script=None, state_dir=None):
        require_stack(MRMD_SYNC_DIR / "node_modules" / "yjs", "mrmd-sync")
        self.port = port or free_port()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(state_dir) if state_dir else self.directory.parent / (
            self.directory.name + "-state")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ if env is None else env)
        full_env["TMPDIR"] = str(self.state_dir)
        full_env["MRMD_SYNC_DIR"] = str(MRMD_SYNC_DIR)
        argv = [node_executable(), str(script or MRMD_SYNC_DIR / "bin" / "cli.js"),
                "--port", str(self.port)]
        if not persist:
            argv.append("--no-persist")
        argv += list(extra_args) + [str(self.directory)]
        super().__init__(argv, cwd=MRMD_SYNC_DIR, env=full_env, log_path=log_path,
                         max_line_chars=2000)

    @property
    def url(self):
        return "ws://127.0.0.1:%d" % self.port

    @property
    def http_url(self):
        return "http://127.0.0.1:%d" % self.port

    def is_ready(self):
        try:
            with urllib.request.urlopen(self.http_url + "/health", timeout=2) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def stats(self):
        import json
        with urllib.request.urlopen(self.http_url + "/stats", timeout=5) as resp:
            return json.loads(resp.read())

    def restart(self, down_for=0.0):
        """Stop the server (gracefully: it flushes its files) and start it again on
        the same port and directory. Without persistence the documents are lost."""
        self.stop()
        wait_until(lambda: not port_open(self.port), timeout=10, message="port %d still open after stop" % self.port)
        if down_for:
            time.sleep(down_for)  # deliberate outage for fault tests
        return self.start()


# ---------------------------------------------------------------------- the monitor
class MonitorProcess(ManagedProcess):
    """``python -m mrmd_monitor`` against one sync server, ready at "monitor ready".

    The child's environment drops every ``MRMD_MONITOR_*`` variable of the
    test runner (so a developer's settings cannot leak in); pass ``env`` to set
    some on purpose.
    """

    name = "monitor"
    ready_timeout = 30.0
    READY_PHRASE = "monitor ready"

    def __init__(self, sync_url, docs, extra_args=(), log_path=None, env=None, name=None, cwd=None):
        """``cwd``: where ``python -m mrmd_monitor`` finds the package (default:
        this checkout; a benchmark passes another commit's tree)."""
        if isinstance(docs, str):
            docs = [docs]
        argv = [sys.executable, "-m", "mrmd_monitor", "--log-level", "debug"]
        for doc in docs:
            argv += ["--doc", doc]
        argv += list(extra_args)
        argv.append(sync_url)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MRMD_MONITOR_")}
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.sync_url = sync_url
        self.docs = list(docs)
        super().__init__(argv, cwd=cwd or REPO_ROOT, env=full_env, log_path=log_path, name=name)

    def is_ready(self):
        return any(self.READY_PHRASE in line for line in self.lines("stderr"))
