"""The main thread: starts the parts in order, turns signals into events, and
stops everything against one deadline.

Signal handlers only enqueue; the loop below does the work.
"""

import logging
import queue
import signal
import threading
import time

from . import messages as m
from .metrics import Metrics
from .mrp import MrpClient
from .sync import SyncThread
from .workers import WorkerPool

log = logging.getLogger(__name__)

DEFAULT_DOC = "default"


class Daemon:
    def __init__(self, config):
        self.config = config
        self.docs = tuple(config.docs) or (DEFAULT_DOC,)
        self._events = queue.SimpleQueue()
        self.pool = None
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
        if not self.config.docs:
            log.info("no --doc given: watching the document %r", DEFAULT_DOC)
        client = MrpClient(connect_timeout=self.config.connect_timeout,
                           idle_timeout=self.config.idle_timeout)
        self.pool = WorkerPool(client, max_workers=self.config.max_workers)
        for name in self.docs:
            sync = SyncThread(config=self.config, doc_name=name, pool=self.pool,
                              on_synced=self._on_synced, metrics=self.metrics)
            self.syncs.append(sync)
            sync.start()
        log.info("mrmd-monitor started as %r: %s, document(s) %s", self.config.name,
                 self.config.sync_url, ", ".join(self.docs))

    def _on_synced(self, sync):
        self._events.put(("synced", sync.doc_name))

    def request_stop(self, fast=False):
        self._events.put(("stop", fast))

    def run(self):
        old = self._install_signals()
        try:
            self.start()
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
                if len(self._ready_docs) == len(self.syncs):
                    log.info("monitor ready: watching %d document(s)", len(self.syncs))
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
        crashed = any(s.crashed for s in self.syncs)
        log.info("monitor stopped")
        return 1 if crashed else 0

    def _stop(self, fast, why):
        grace = 0.0 if fast else self.config.grace
        deadline = time.monotonic() + grace
        if fast and self._stopping:
            log.warning("second stop signal (%s): stopping now", why)
        else:
            log.info("stopping (%s): running executions may finish within %.1fs", why, grace)
        self._stopping = True
        self.pool.stop_starting()
        for s in self.syncs:
            s.post(m.Stop(deadline=deadline, reason="the monitor was stopped"))
        return deadline

    def _reload(self):
        from .logs import reopen_logs
        reopen_logs()
        log.info("SIGHUP: log files reopened")
