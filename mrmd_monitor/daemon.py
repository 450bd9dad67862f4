"""The main thread: starts the parts in order, turns signals into events, and
stops everything against one deadline.

Signal handlers only enqueue (gunicorn's arbiter does the same); the loop
takes one event at a time and calls ``handle_<event>``: ``handle_term`` and
``handle_int`` stop gracefully (a second one stops at once), ``handle_hup``
reloads the configuration and reopens the log files; the other events come
from the parts (a document synced, discovery's list, a sync thread that
ended) and most go on to the documents followed (fleet.py).

Stopping has one deadline: ``--grace`` for the runs, plus ``STOP_MARGIN`` for
closing streams, writing the last lines, flushing and joining. Every join
after the stop gets what is left of it, so the process is gone within
``grace + STOP_MARGIN`` seconds of the signal (keep the service manager's
stop timeout above that).
"""

import dataclasses
import logging
import queue
import signal
import threading
import time

from . import __version__, cluster, statuspage
from . import messages as m
from .assets import AssetStore
from .config import OPTION_FIELDS, config_file_warning, load_config, shown
from .discovery import Discovery
from .display import DisplayConverter
from .errors import ConfigError, StatusServerError
from .fleet import LOAD_PUBLISH_INTERVAL, Fleet
from .metrics import Metrics
from .mrp import MrpClient
from .options import restart_only_fields
from .plots import PlotKeeper
from .status import StatusServer
from .workers import WorkerPool

log = logging.getLogger(__name__)

EXIT_NO_DOCUMENTS = 2
# The sync server refused the monitor (a missing or wrong --token, or a
# read-only connection): retrying cannot help.
EXIT_SYNC_REFUSED = 3

#: Seconds after the grace period for closing streams, last lines, flushes and joins.
STOP_MARGIN = 5.0
#: Of STOP_MARGIN, what is kept for the pool, discovery and the status server
#: after the sync threads.
_JOIN_RESERVE = 1.5

# Signal -> the event its handler enqueues (handled by ``handle_<event>``).
SIGNAL_EVENTS = {signal.SIGTERM: "term", signal.SIGINT: "int", signal.SIGHUP: "hup"}

# Config fields a HUP cannot change in a running process (``reloadable=False``
# in the option table): the documents and their connections, the pool, the MRP
# client, the asset store and the status server are built once at start. A
# reload keeps their running values and names them in a log line.
RESTART_ONLY = restart_only_fields()
_NOT_COMPARED = ("sources", "config_file")
_OPTION_OF = {field: option for option, field in OPTION_FIELDS}


class Daemon:
    """``argv`` (and ``env``, default os.environ) are what ``config`` was loaded
    from; a HUP loads them again. Without ``argv`` a HUP only reopens the logs."""

    def __init__(self, config, argv=None, env=None, on_ready=None):
        self.config = config
        self._argv = list(argv) if argv is not None else None
        self._env = env
        self._events = queue.SimpleQueue()
        self.discovery = None
        self._exit_code = 0
        self.pool = None
        self.status = None
        self.metrics = Metrics()
        self._stopping = False
        self._stop_deadline = None   # monotonic time by which the process is done
        # Several monitors (cluster.py): our id among them.
        self.member_id = cluster.new_member_id(config.name)
        self.fleet = Fleet(lambda: self.config, lambda: self.pool, self._events.put,
                           stopping=lambda: self._stopping, metrics=self.metrics,
                           member_id=self.member_id, on_ready=on_ready)

    # -- signals ---------------------------------------------------------------

    def _on_signal(self, signum, _frame):
        self._events.put((SIGNAL_EVENTS[signum], signum))

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in SIGNAL_EVENTS:
            old[sig] = signal.signal(sig, self._on_signal)
        return old

    # -- lifecycle -------------------------------------------------------------

    def start(self):
        if self.config.status_addr:
            # First, so that a busy address stops the start before anything connects.
            self.status = StatusServer(self.config.status_addr, self.metrics,
                                       documents=lambda: list(self.fleet.syncs),
                                       stopping=lambda: self._stopping,
                                       assets_dir=self.config.assets_dir,
                                       snapshot=self._status_snapshot).start()
        client = MrpClient(connect_timeout=self.config.connect_timeout,
                           idle_timeout=self.config.idle_timeout,
                           max_event_bytes=self.config.max_event_bytes)
        self.pool = WorkerPool(client, max_workers=self.config.max_workers,
                               share=self.config.worker_share,
                               display=self._display())
        for name in self.config.docs:
            self.fleet.attach(name)
        if self.config.docs:
            log.info("mrmd-monitor started as %r: %s, document(s) %s", self.config.name,
                     self.config.sync_url, ", ".join(self.config.docs))
        else:
            if self.config.replicas:
                self.fleet.attach_control()
            self.discovery = Discovery(lambda: self.config, report=self._on_discovered,
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
            store = AssetStore(self.config.assets_dir, base,
                               max_bytes=self.config.assets_max_bytes,
                               retention=self.config.assets_retention)
            store.prune()  # limits lowered since the last run apply now
        return DisplayConverter(self.config.max_inline_bytes, store,
                                max_display_bytes=self.config.max_display_bytes,
                                plots=PlotKeeper(self.config.project_root, store))

    def _on_discovered(self, names):
        self._events.put(("docs", tuple(names)))

    def _on_discovery_failed(self, error):
        self._events.put(("no-docs", error))

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
        while True:
            try:
                kind, value = self._events.get(timeout=self._wait_time())
            except queue.Empty:
                kind, value = "tick", None
            getattr(self, "handle_" + kind.replace("-", "_"))(value)
            self.fleet.upkeep()
            if self._stopping and not any(s.is_alive() for s in self.fleet.all()):
                break
            if self._stopping and self._remaining() <= _JOIN_RESERVE:
                log.error("sync threads did not stop in time; exiting anyway")
                break
        self.pool.shutdown(timeout=self._remaining())
        if self.discovery is not None:
            self.discovery.stop()
            self.discovery.join(self._remaining())
        if self.status is not None:
            self.status.stop(timeout=self._remaining())
        crashed = any(s.crashed for s in self.fleet.syncs)
        log.info("monitor stopped")
        return 1 if crashed else self._exit_code

    def _wait_time(self):
        if self._stop_deadline is None:
            return LOAD_PUBLISH_INTERVAL if self.fleet.load_moving() else 1.0
        return max(0.0, min(1.0, self._remaining() - _JOIN_RESERVE))

    def _remaining(self, default=2.0):
        """Seconds left of the stop deadline (``default`` before any stop)."""
        if self._stop_deadline is None:
            return default
        return max(0.0, self._stop_deadline - time.monotonic())

    # -- events: each ``handle_<kind>`` runs on the main thread ----------------

    def handle_tick(self, _):
        pass

    def handle_synced(self, name):
        self.fleet.synced(name)

    def handle_docs(self, names):
        if not self._stopping:
            self.fleet.follow(names)

    def handle_no_docs(self, error):
        log.error("%s", error)
        self._exit_code = EXIT_NO_DOCUMENTS
        self._stop(fast=False, why="no documents to watch")

    def handle_refused(self, _sync):
        self._exit_code = EXIT_SYNC_REFUSED
        if not self._stopping:
            self._stop(fast=False, why="the sync server refused the monitor")

    def handle_exited(self, sync):
        """A sync thread ended (its on_exit). Told, not looked for: a scan of a
        thousand threads every second was a third of an idle monitor's CPU."""
        sync.join(min(2.0, self._remaining()))  # it is past its loop: joining is quick
        self.fleet.exited(sync)

    def handle_others(self, _):
        self.fleet.others()

    def handle_members(self, members):
        self.fleet.members_changed(members)

    def handle_term(self, signum):
        self._stop(fast=self._stopping, why=signal.Signals(signum).name)

    handle_int = handle_term

    def handle_hup(self, _signum):
        self._reload()

    def handle_stop(self, fast):
        self._stop(fast=fast or self._stopping, why="requested")

    def _stop(self, fast, why):
        grace = 0.0 if fast else self.config.grace
        runs_deadline = time.monotonic() + grace
        if fast and self._stopping:
            log.warning("second stop signal (%s): stopping now", why)
        else:
            log.info("stopping (%s): running executions may finish within %.1fs", why, grace)
        self._stopping = True
        self._stop_deadline = runs_deadline + STOP_MARGIN
        if self.discovery is not None:
            self.discovery.stop()
        self.pool.stop_starting()
        for s in self.fleet.all():
            s.post(m.Stop(deadline=runs_deadline, reason="the monitor was stopped"))
        return runs_deadline

    def _status_snapshot(self):
        """The status page's data (status server thread): only attributes that
        are replaced whole (members, flags) and the metrics registry."""
        syncs, control = list(self.fleet.syncs), self.fleet.control
        docs = [{"name": s.doc_name, "synced": s.synced, "last_heard_wall": s.last_heard_wall,
                 "runs": len(s.coordinator.runs)} for s in syncs]
        me = {"id": self.member_id, "name": self.config.name, "version": __version__,
              "capacity": self.config.max_workers}
        return statuspage.build_snapshot(
            me=me, metric_values=self.metrics.snapshot(), documents=docs,
            members=self.fleet.members_seen(),
            now=time.time(), replicas=self.config.replicas,
            control_doc=control.doc_name if control is not None else None,
            stopping=self._stopping)

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
        for sync in self.fleet.all():
            sync.post(m.Call(lambda s, c=new: s.apply_config(c)))
        where = new.config_file or "the command line and environment"
        log.info("SIGHUP: configuration reloaded from %s: %s", where,
                 "; ".join(changes) if changes else "nothing changed")
        warning = config_file_warning(new)
        if warning:
            log.warning("SIGHUP: %s", warning)
        if frozen:
            log.warning("SIGHUP: %s cannot change while running; restart the monitor to apply "
                        "the new value(s)", ", ".join(_OPTION_OF.get(f, f) for f in frozen))
        log.info("SIGHUP: log files reopened")


def _change(field, before, after):
    return "%s %s -> %s" % (_OPTION_OF.get(field, field), shown(field, before), shown(field, after))
