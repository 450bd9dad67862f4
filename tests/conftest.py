"""Shared fixtures: real sync server, runtime, browser peers and monitors, plus a thread-leak check."""

import itertools
import logging
import re
import sys
import threading
import uuid
from pathlib import Path

import pytest

# Make `mrmd_monitor` and `tests.support` importable however pytest is started
# (`pytest` as well as `python -m pytest`, from any directory).
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.support.editor import EditorBrowser
from tests.support.fault_runtime import FaultRuntime
from tests.support.sync_proxy import SyncProxy
from tests.support.peer import BrowserPeer
from tests.support.reports import REPORTS_KEY, test_failed
from tests.support.procs import (
    READER_THREAD_PREFIX,
    BashRuntime,
    MissingNodeModules,
    MissingStack,
    MonitorProcess,
    MrmdSyncServer,
    Mrp3Runtime,
    Runtime,
    SyncServer,
    require_node_modules,
)
from tests.support.stacks import MRP3, NPM, PY042, STACKS, Stack
from tests.support.waiting import wait_until

_MONITORS_KEY = pytest.StashKey[list]()
_PEERS_KEY = pytest.StashKey[list]()
_EDITORS_KEY = pytest.StashKey[list]()


# ---------------------------------------------------------------------- reports
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    if report.failed and report.when in ("setup", "call"):
        # Attach the logs of the processes the test started, as they are at the failure.
        for monitor in item.stash.get(_MONITORS_KEY, []):
            report.sections.append(("monitor log: %s (pid %s)" % (monitor.name, monitor.pid), monitor.log_text()))
        for peer in item.stash.get(_PEERS_KEY, []):
            report.sections.append(("peer log: %s (pid %s)" % (peer.name, peer.pid), peer.tail_text(200)))
        for browser in item.stash.get(_EDITORS_KEY, []):
            report.sections.append(("editor console: %s (pid %s)" % (browser.name, browser.pid), browser.console_tail()))


def _slug(node):
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", node.name)[:60]


def _need_node():
    try:
        require_node_modules()
    except MissingNodeModules as exc:
        pytest.fail(str(exc), pytrace=False)


# ---------------------------------------------------------------------- processes
@pytest.fixture
def sync_server(tmp_path):
    """A fresh npm y-websocket server on a free port (``.url``, ``.port``, ``.restart()``)."""
    _need_node()
    server = SyncServer(log_path=tmp_path / "logs" / "sync-server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def runtime(tmp_path_factory):
    """One mrmd-python for the whole session (``.url`` = ``http://127.0.0.1:P/mrp/v1``).

    It is slow to start: tests share it and isolate themselves with unique MRP
    sessions and variable names.
    """
    base = tmp_path_factory.mktemp("mrmd-python")
    yield from _running(Runtime(workdir=base / "work", log_path=base / "mrmd-python.log"),
                        shared=True)


@pytest.fixture
def own_runtime(tmp_path):
    """A runtime of this test's own, for runs the test abandons: mrmd-python's
    interrupt is best effort (../shared/NOTES.md), and a loop left running there would
    print into the next test's output."""
    yield from _running(Runtime(workdir=tmp_path / "rt",
                                log_path=tmp_path / "logs" / "own-runtime.log"))


def _running(process, shared=False):
    try:
        process.start()
        if shared:
            _shared(process)
        yield process
    finally:
        process.stop()


#: Processes of module and session fixtures: the stack fixture may start them in
#: the middle of a test's setup, and their reader threads are not that test's leak.
_SHARED_PROCESSES = []


def _shared(process):
    _SHARED_PROCESSES.append(process)
    return process


# ---------------------------------------------------------------------- the mrmd stack
def _started(factory):
    """Start what ``factory()`` makes; a part of the stack that is not installed fails the test clearly."""
    try:
        process = factory()
    except (MissingNodeModules, MissingStack) as exc:
        pytest.fail(str(exc), pytrace=False)
    process.start()
    return process


def _new_mrmd_sync(base, **kwargs):
    _need_node()
    return MrmdSyncServer(base / "docs", log_path=base / "mrmd-sync.log", **kwargs)


@pytest.fixture(scope="module")
def module_npm_server(tmp_path_factory):
    """The npm y-websocket server, shared by a module's tests (a fresh document each)."""
    _need_node()
    base = tmp_path_factory.mktemp("npm-server")
    yield from _running(SyncServer(log_path=base / "sync-server.log"), shared=True)


@pytest.fixture(scope="module")
def module_mrmd_sync(tmp_path_factory):
    """mrmd-sync 0.3.5 without Yjs snapshots, shared by a module's tests (``.url``, ``.directory``)."""
    base = tmp_path_factory.mktemp("mrmd-sync")
    server = _shared(_started(lambda: _new_mrmd_sync(base)))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mrmd_sync_factory(tmp_path):
    """``mrmd_sync_factory(persist=False, directory=None, **kw) -> MrmdSyncServer`` (started;
    stopped in teardown). ``directory`` defaults to a fresh one in tmp_path."""
    servers = []

    def make(persist=False, directory=None, **kwargs):
        base = tmp_path / ("mrmd-sync-%d" % (len(servers) + 1))
        base.mkdir()
        if directory is not None:
            kwargs["state_dir"] = kwargs.get("state_dir") or Path(directory).parent / "state"
        server = _started(lambda: MrmdSyncServer(
            directory or base / "docs", log_path=base / "mrmd-sync.log", persist=persist, **kwargs))
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def mrp3_runtime(tmp_path_factory):
    """One MRP 0.3.0 mrmd-python for the whole session (``.url``, ``.health()``)."""
    base = tmp_path_factory.mktemp("mrp3")
    runtime = _shared(_started(lambda: Mrp3Runtime(workdir=base / "work", log_path=base / "mrp3.log")))
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def own_mrp3_runtime(tmp_path):
    """An MRP 0.3.0 runtime of this test's own."""
    runtime = _started(lambda: Mrp3Runtime(workdir=tmp_path / "mrp3",
                                           log_path=tmp_path / "logs" / "own-mrp3.log"))
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def bash_runtime(tmp_path_factory):
    """mrmd-bash 0.1.2, shared by a module's tests."""
    base = tmp_path_factory.mktemp("mrmd-bash")
    runtime = _shared(_started(lambda: BashRuntime(base / "work", log_path=base / "mrmd-bash.log")))
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def stack(request, tmp_path):
    """The sync server and runtime of a parametrised test (tests/support/stacks.py):
    ``@on_stacks(EVERY)`` gives ``stack.server``, ``stack.runtime``, ``stack.out(text)``,
    ``stack.new_server()``, ``stack.new_runtime()``."""
    name = getattr(request, "param", None)
    if name is None:
        pytest.fail("the stack fixture needs @on_stacks(...) on the test", pytrace=False)
    own = []

    def new_server():
        n = len(own) + 1
        if server_kind == NPM:
            _need_node()
            process = SyncServer(log_path=tmp_path / "logs" / ("own-server-%d.log" % n))
            process.start()
        else:
            # As mrmd-sync runs by default, with Yjs snapshots beside its files: restarted
            # without them, it rebuilds each document from its markdown file as new
            # text, and every client that reconnects with the old state doubles it.
            base = tmp_path / ("own-mrmd-sync-%d" % n)
            process = _started(lambda: _new_mrmd_sync(base, persist=True))
        own.append(process)
        return process

    def new_runtime():
        n = len(own) + 1
        workdir, log = tmp_path / ("own-rt-%d" % n), tmp_path / "logs" / ("own-rt-%d.log" % n)
        if runtime_kind == MRP3:
            process = _started(lambda: Mrp3Runtime(workdir=workdir, log_path=log))
        else:
            process = _started(lambda: Runtime(workdir=workdir, log_path=log))
        own.append(process)
        return process

    server_kind, runtime_kind = STACKS[name]
    server = request.getfixturevalue("module_npm_server" if server_kind == NPM else "module_mrmd_sync")
    runtime = request.getfixturevalue("runtime" if runtime_kind == PY042 else "mrp3_runtime")
    try:
        yield Stack(name, server, runtime, new_server, new_runtime)
    finally:
        for process in reversed(own):
            process.stop()


@pytest.fixture
def restore_logging():
    """For tests that call setup_logging: the root logger as it was, afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in saved_handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(saved_level)
    logging.captureWarnings(False)


@pytest.fixture
def proxy(sync_server):
    """``sync_server`` behind a proxy that counts frames and lists its documents
    at /stats as mrmd-sync does (tests/support/sync_proxy.py)."""
    p = SyncProxy(sync_server.port, documents=[]).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def faults():
    """The scripted runtime, for fault injection only (tests/support/fault_runtime.py)."""
    rt = FaultRuntime().start()
    try:
        yield rt
    finally:
        rt.stop()


_doc_counter = itertools.count(1)


@pytest.fixture
def doc_name(request):
    """A document name unique to this test."""
    return "doc-%d-%s-%s" % (next(_doc_counter), _slug(request.node)[:40], uuid.uuid4().hex[:8])


@pytest.fixture
def peer_factory(request, tmp_path):
    """``peer_factory(sync_url, doc, auto_block=True, wait_synced=True, name=None) -> BrowserPeer``.

    Every peer is closed (its process killed if needed) in teardown.
    """
    _need_node()
    peers = request.node.stash.setdefault(_PEERS_KEY, [])

    def make(sync_url, doc, auto_block=True, wait_synced=True, name=None, **kwargs):
        n = len(peers) + 1
        name = name or "peer-%d" % n
        peer = BrowserPeer(sync_url, doc, auto_block=auto_block, wait_synced=False, name=name,
                           log_path=tmp_path / "logs" / ("%s.log" % name), **kwargs)
        peers.append(peer)
        if wait_synced:
            peer.wait_synced()
        return peer

    try:
        yield make
    finally:
        for peer in peers:
            peer.close()


@pytest.fixture(scope="module")
def editor_browser(tmp_path_factory):
    """One headless chromium for the real mrmd editor (tests/support/editor.py),
    shared by a module's tests: each test opens tabs of its own (``editor``)."""
    base = tmp_path_factory.mktemp("editor")
    browser = _shared(_started(lambda: EditorBrowser(log_path=base / "editor-browser.log")))
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def editor(request, editor_browser):
    """``editor(sync_url, doc, runtime_url, monitor=True, project_root=None) -> EditorTab``:
    a tab of the real mrmd editor on ``doc``; every tab is closed in teardown."""
    request.node.stash[_EDITORS_KEY] = [editor_browser]
    tabs = []

    def open_tab(sync_url, doc, runtime_url, monitor=True, project_root=None):
        tab = editor_browser.open(sync_url, doc, runtime_url, monitor=monitor, project_root=project_root)
        tabs.append(tab)
        return tab

    try:
        yield open_tab
    finally:
        for tab in tabs:
            if editor_browser.alive:
                tab.close()


@pytest.fixture
def monitor_factory(request, tmp_path):
    """``monitor_factory(sync_url, docs, extra_args=(), wait_ready=True, env=None) -> MonitorProcess``.

    ``docs`` is a document name or a list of them. Every monitor is stopped in
    teardown (SIGTERM, then SIGKILL after 10 s); when the test failed, each
    monitor's full log is printed (and attached to the failure report).
    """
    monitors = request.node.stash.setdefault(_MONITORS_KEY, [])

    def make(sync_url, docs, extra_args=(), wait_ready=True, env=None, timeout=None):
        name = "monitor-%d" % (len(monitors) + 1)
        monitor = MonitorProcess(sync_url, docs, extra_args=extra_args, env=env, name=name,
                                 log_path=tmp_path / "logs" / ("%s.log" % name))
        monitors.append(monitor)
        monitor.start(wait_ready=wait_ready, timeout=timeout)
        return monitor

    try:
        yield make
    finally:
        for monitor in monitors:
            monitor.stop()
        if test_failed(request.node):
            for monitor in monitors:
                print("\n===== %s log (%s, exit code %s) =====\n%s"
                      % (monitor.name, monitor.log_path, monitor.returncode, monitor.log_text()))


# ---------------------------------------------------------------------- leaks
def _own_threads(before_ids):
    shared = {t.ident for p in _SHARED_PROCESSES for t in p._readers}
    return [t for t in threading.enumerate()
            if t.ident not in before_ids and t.ident not in shared and t.is_alive()
            and (not t.daemon or t.name.startswith(READER_THREAD_PREFIX))]


@pytest.fixture(autouse=True)
def no_thread_leak():
    """Fail a test that leaves threads of its own running.

    Counted: new non-daemon threads, and the (daemon) reader threads of managed
    processes. Threads of session fixtures started before the test don't count.
    """
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = None
    try:
        wait_until(lambda: not _own_threads(before), timeout=5.0, interval=0.05)
    except AssertionError:
        leaked = ", ".join("%s(daemon=%s)" % (t.name, t.daemon) for t in _own_threads(before))
    if leaked:
        pytest.fail("the test left threads running: %s" % leaked, pytrace=False)
