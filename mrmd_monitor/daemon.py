"""The main thread: starts the parts in order, turns signals into events, and
stops everything against one deadline.

Signal handlers only enqueue; the loop below does the work: TERM/INT stop
gracefully (a second one stops at once), HUP reloads the configuration and
reopens the log files.
"""

import dataclasses
import logging
import queue
import signal
import threading
import time

from . import messages as m
from .config import OPTION_FIELDS, load_config
from .discovery import Discovery
from .display import AssetStore, DisplayConverter
from .errors import ConfigError
from .metrics import Metrics
from .mrp import MrpClient
from .status import StatusServer, StatusServerError
from .sync import SyncThread
from .workers import WorkerPool

log = logging.getLogger(__name__)

EXIT_NO_DOCUMENTS = 2

# Config fields a HUP cannot change in a running process: the documents and
# their connections, the pool, the MRP client and the status server are built
# once at start. A reload keeps their running values and names them in a log line.
RESTART_ONLY = ("sync_url", "docs", "name", "max_workers", "connect_timeout", "idle_timeout",
                "status_addr", "max_event_bytes")
_NOT_COMPARED = ("sources", "config_file")
_SECRET_FIELDS = ("token",)
_OPTION_OF = {field: option for option, field in OPTION_FIELDS}


class Daemon:
    """``argv`` (and ``env``, default os.environ) are what ``config`` was loaded
    from; a HUP loads them again. Without ``argv`` a HUP only reopens the logs."""

    def __init__(self, config, argv=None, env=None):
        self.config = config
        self._argv = list(argv) if argv is not None else None
        self._env = env
        self._events = queue.SimpleQueue()
        self.discovery = None
        self._exit_code = 0
        self._announced = False
        self.pool = None
        self.status = None
        self.metrics = Metrics()
        self.syncs = []
        self._ready_docs = set()
        self._stopping = False

    # -- signals ---------------------------------------------------------------

    def _on_signal(self, signum, _frame):
        self._events.put(("signal", signum))

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            old[sig] = signal.signal(sig, self._on_signal)
        return old

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        if self.config.status_addr:
            # First, so that a busy address stops the start before anything connects.
            self.status = StatusServer(self.config.status_addr, self.metrics,
                                       documents=lambda: list(self.syncs),
                                       stopping=lambda: self._stopping,
                                       assets_dir=self.config.assets_dir).start()
        client = MrpClient(connect_timeout=self.config.connect_timeout,
                           idle_timeout=self.config.idle_timeout,
                           max_event_bytes=self.config.max_event_bytes)
        self.pool = WorkerPool(client, max_workers=self.config.max_workers,
                               display=self._display())
        for name in self.config.docs:
            self._attach(name)
        if self.config.docs:
            log.info("mrmd-monitor started as %r: %s, document(s) %s", self.config.name,
                     self.config.sync_url, ", ".join(self.config.docs))
        else:
            self.discovery = Discovery(self.config, report=self._on_discovered,
                                       fail=self._on_discovery_failed)
            self.discovery.start()
            log.info("mrmd-monitor started as %r: %s, following every document listed at %s",
                     self.config.name, self.config.sync_url, self.discovery.url)

    def _display(self):
        store = None
        if self.config.assets_dir:
            base = None
            if self.status is not None:
                host, port = self.status.bound[:2]
                base = "http://%s:%d/assets" % (host if ":" not in host else "[%s]" % host, port)
            store = AssetStore(self.config.assets_dir, base)
        return DisplayConverter(self.config.max_inline_bytes, store)

    def _attach(self, name):
        sync = SyncThread(config=self.config, doc_name=name, pool=self.pool,
                          on_synced=self._on_synced, on_exit=self._on_sync_exit,
                          metrics=self.metrics)
        self.syncs.append(sync)
        sync.start()
        return sync

    def _on_discovered(self, names):
        self._events.put(("docs", tuple(names)))

    def _on_discovery_failed(self, error):
        self._events.put(("no-docs", error))

    def _on_sync_exit(self, sync):
        self._events.put(("exited", sync))

    def _follow(self, names):
        """Attach to documents the server lists, detach from those it no longer does."""
        current = {s.doc_name: s for s in self.syncs if not s.leaving}
        for name in names:
            if name not in current:
                log.info("document %s appeared on the server: attaching", name)
                self._attach(name)
        for name, sync in current.items():
            if name not in names:
                log.info("document %s is no longer listed by the server: detaching", name)
                sync.leaving = True
                sync.post(m.Stop(deadline=time.monotonic() + self.config.grace,
                                 reason="the document was closed on the server"))
        if not self._announced and not self.syncs:
            self._announce()

    def _announce(self):
        self._announced = True
        log.info("monitor ready: watching %d document(s)", len(self.syncs))

    def _on_synced(self, sync):
        self._events.put(("synced", sync.doc_name))

    def request_stop(self, fast=False):
        self._events.put(("stop", fast))

    def run(self):
        old = self._install_signals()
        try:
            try:
                self.start()
            except StatusServerError as exc:
                log.error("%s", exc)
                return 1
            return self._serve()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _serve(self):
        deadline = None
        while True:
            timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                kind, value = self._events.get(timeout=timeout)
            except queue.Empty:
                kind, value = "tick", None
            if kind == "synced":
                self._ready_docs.add(value)
                if not self._announced and all(s.doc_name in self._ready_docs for s in self.syncs):
                    self._announce()
            elif kind == "docs" and not self._stopping:
                self._follow(value)
            elif kind == "no-docs":
                log.error("%s", value)
                self._exit_code = EXIT_NO_DOCUMENTS
                deadline = self._stop(fast=False, why="no documents to watch")
            elif kind == "exited":
                value.join(2.0)   # it is past its loop: joining is quick
                if value.leaving and not value.crashed:
                    self.syncs.remove(value)
                    self._ready_docs.discard(value.doc_name)
            elif kind == "signal":
                if value == signal.SIGHUP:
                    self._reload()
                else:
                    deadline = self._stop(fast=self._stopping, why=signal.Signals(value).name)
            elif kind == "stop":
                deadline = self._stop(fast=value or self._stopping, why="requested")
            if self._stopping and not any(s.is_alive() for s in self.syncs):
                break
            if self._stopping and deadline is not None and time.monotonic() > deadline + 5.0:
                log.error("sync threads did not stop in time; exiting anyway")
                break
            for s in self.syncs:
                if not s.is_alive() and s.crashed and not self._stopping:
                    log.error("sync thread %s died; stopping the monitor", s.name)
                    deadline = self._stop(fast=False, why="a sync thread died")
        self.pool.shutdown(timeout=2.0)
        if self.discovery is not None:
            self.discovery.stop()
            self.discovery.join(self.config.connect_timeout + 1)
        if self.status is not None:
            self.status.stop()
        crashed = any(s.crashed for s in self.syncs)
        log.info("monitor stopped")
        return 1 if crashed else self._exit_code

    def _stop(self, fast, why):
        grace = 0.0 if fast else self.config.grace
        deadline = time.monotonic() + grace
        if fast and self._stopping:
            log.warning("second stop signal (%s): stopping now", why)
        else:
            log.info("stopping (%s): running executions may finish within %.1fs", why, grace)
        self._stopping = True
        if self.discovery is not None:
            self.discovery.stop()
        self.pool.stop_starting()
        for s in self.syncs:
            s.post(m.Stop(deadline=deadline, reason="the monitor was stopped"))
        return deadline

    def _reload(self):
        """HUP: load the configuration again, apply what can change live (log
        level and format, limits, allowlist, timers), reopen the log files."""
        try:
            self._reload_config()
        except Exception:  # noqa: BLE001 - a failed reload must not end the monitor
            log.exception("SIGHUP: reload failed; still running with the previous configuration")

    def _reload_config(self):
        from .logs import reopen_logs, setup_logging

        if self._argv is None:
            reopen_logs()
            log.info("SIGHUP: log files reopened (no command line to reload the configuration from)")
            return
        old = self.config
        try:
            new = load_config(self._argv, self._env)
        except ConfigError as exc:
            reopen_logs()
            log.error("SIGHUP: configuration not reloaded, still running with the previous one: %s", exc)
            log.info("SIGHUP: log files reopened")
            return
        frozen = [f for f in RESTART_ONLY if getattr(new, f) != getattr(old, f)]
        new = dataclasses.replace(new, **{f: getattr(old, f) for f in RESTART_ONLY})
        try:
            setup_logging(new)  # a new handler: the log file is opened again
        except ConfigError as exc:
            new = dataclasses.replace(new, log_file=old.log_file, log_level=old.log_level,
                                      log_format=old.log_format)
            reopen_logs()
            log.error("SIGHUP: %s; keeping the previous log settings", exc)
        changes = [_change(f, getattr(old, f), getattr(new, f))
                   for f in (x.name for x in dataclasses.fields(new))
                   if f not in _NOT_COMPARED and getattr(new, f) != getattr(old, f)]
        self.config = new
        for sync in self.syncs:
            sync.post(m.Call(lambda s, c=new: s.apply_config(c)))
        where = new.config_file or "the command line and environment"
        log.info("SIGHUP: configuration reloaded from %s: %s", where,
                 "; ".join(changes) if changes else "nothing changed")
        if frozen:
            log.warning("SIGHUP: %s cannot change while running; restart the monitor to apply "
                        "the new value(s)", ", ".join(_OPTION_OF.get(f, f) for f in frozen))
        log.info("SIGHUP: log files reopened")


def _shown(field, value):
    if field in _SECRET_FIELDS and value:
        return "***"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def _change(field, before, after):
    return "%s %s -> %s" % (_OPTION_OF.get(field, field), _shown(field, before), _shown(field, after))
