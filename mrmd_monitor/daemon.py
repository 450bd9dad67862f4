"""The main thread: starts the parts in order, turns signals into events, and
stops everything against one deadline.

Signal handlers only enqueue (gunicorn's arbiter does the same); the loop
takes one event at a time and calls ``handle_<event>``: ``handle_term`` and
``handle_int`` stop gracefully (a second one stops at once), ``handle_hup``
reloads the configuration and reopens the log files; the other events come
from the parts (a document synced, discovery's list, a sync thread that
ended).

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
from .claims import Latencies
from .config import OPTION_FIELDS, config_file_warning, load_config, shown
from .discovery import Discovery, plan
from .display import DisplayConverter
from .errors import ConfigError, StatusServerError
from .logs import context
from .metrics import Metrics
from .mrp import MrpClient
from .options import restart_only_fields
from .plots import PlotKeeper
from .status import StatusServer
from .sync import SyncThread
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
# A document that moved to another monitor (--replicas) is left once the runs
# already going on it have finished: its owner finishes them, up to this long.
# A stop of the monitor shortens it to the stop deadline.
MOVED_GRACE = 7 * 24 * 3600.0

# While runs come and go, our busy count goes to the control document at most
# this often (cluster.claim_order bounds each monitor's load by it); idle, the
# main loop keeps its 1 s wake-up.
LOAD_PUBLISH_INTERVAL = 0.1

# A document whose sync thread died gets a new one at once, then after a
# pause from RESTART_FIRST doubling up to RESTART_MAX while it keeps dying (an
# update that panics pycrdt comes back with every resync).
RESTART_FIRST = 2.0
RESTART_MAX = 60.0

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
        self._on_ready = on_ready   # called once every document has synced
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
        self._capped = False   # --max-docs left listed documents alone (logged once)
        self._stop_deadline = None   # monotonic time by which the process is done
        # Several monitors (cluster.py): our id among them, the control document
        # (with --replicas R), the members seen there, the documents last listed.
        self.member_id = cluster.new_member_id(config.name)
        self.control = None
        self._members = ()
        self._control_synced = False
        self._sharded = False   # an assignment has been applied once
        self._listed = None
        self._load_history = {}    # member id -> its recent states (cluster.remember)
        self.latencies = Latencies()  # round trips and claim delays, all documents
        self._load_sent = 0        # the busy count last published in the control document
        self._load_sent_at = 0.0
        self._crashes = {}         # document -> how many of its sync threads died

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
                                       documents=lambda: list(self.syncs),
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
            self._attach(name)
        if self.config.docs:
            log.info("mrmd-monitor started as %r: %s, document(s) %s", self.config.name,
                     self.config.sync_url, ", ".join(self.config.docs))
        else:
            if self.config.replicas:
                self._attach_control()
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

    def _attach(self, name, start_delay=0.0):
        sync = SyncThread(config=self.config, doc_name=name, pool=self.pool,
                          on_synced=self._on_synced, on_exit=self._on_sync_exit,
                          metrics=self.metrics, member_id=self.member_id,
                          cluster_loads=self._cluster_loads, on_members=self._on_doc_members,
                          latencies=self.latencies, start_delay=start_delay)
        self.syncs.append(sync)
        sync.start()
        self.metrics.set("mrmd_monitor_documents_attached", len(self.syncs))
        return sync

    def _on_discovered(self, names):
        self._events.put(("docs", tuple(names)))

    def _on_discovery_failed(self, error):
        self._events.put(("no-docs", error))

    def _on_sync_exit(self, sync):
        if getattr(sync, "refused", None) is not None:
            self._events.put(("refused", sync))
        self._events.put(("exited", sync))

    def _follow(self, names):
        """Attach to documents the server lists (at most --max-docs), detach
        from those it no longer does. With --replicas R, only our share of them."""
        known, self._listed = set(self._listed or ()), tuple(names)
        moving = bool(self.config.replicas) and self._sharded  # a move, not a first look
        names = self._assigned(names)
        current = {s.doc_name: s for s in self.syncs if not s.leaving}
        attach, detach, left_out = plan(names, list(current), self.config.max_docs)
        for name in attach:
            if name in known and moving:
                context(log, doc=name).info("document %s moved to this monitor: attaching", name)
                self.metrics.inc("mrmd_monitor_documents_moved_total", direction="in")
            else:
                context(log, doc=name).info("document %s appeared on the server: attaching", name)
            self._attach(name)
        for name in detach:
            sync = current[name]
            sync.leaving = True
            if name in self._listed and moving:
                # Now another monitor's: runs going on finish here, the others
                # are handed back (requested) for the new owner.
                context(log, doc=name).info("document %s moved to another monitor: detaching",
                                            name)
                self.metrics.inc("mrmd_monitor_documents_moved_total", direction="out")
                sync.post(m.Stop(deadline=time.monotonic() + MOVED_GRACE,
                                 reason="the document moved to another monitor"))
                continue
            context(log, doc=name).info("document %s is no longer listed by the server: detaching",
                                        name)
            sync.post(m.Stop(deadline=time.monotonic() + self.config.grace,
                             reason="the document was closed on the server"))
        if left_out and not self._capped:
            log.warning("--max-docs %d reached: following %d document(s), leaving %d more the "
                        "server lists alone (first: %s)", self.config.max_docs,
                        len(current) - len(detach) + len(attach), len(left_out), left_out[0])
        elif not left_out and self._capped:
            log.info("every document the server lists is followed again (--max-docs %d)",
                     self.config.max_docs)
        self._capped = bool(left_out)
        if not self._announced and not self.syncs and (self._sharded or not self._sharding()):
            self._announce()

    def _announce(self):
        self._announced = True
        log.info("monitor ready: watching %d document(s)", len(self.syncs))
        if self._on_ready is not None:
            self._on_ready()

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
        while True:
            try:
                kind, value = self._events.get(timeout=self._wait_time())
            except queue.Empty:
                kind, value = "tick", None
            getattr(self, "handle_" + kind.replace("-", "_"))(value)
            self._cluster_upkeep()
            if self._stopping and not any(s.is_alive() for s in self._all_syncs()):
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
        crashed = any(s.crashed for s in self.syncs)
        log.info("monitor stopped")
        return 1 if crashed else self._exit_code

    def _wait_time(self):
        if self._stop_deadline is None:
            return LOAD_PUBLISH_INTERVAL if self._load_moving() else 1.0
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
        self._ready_docs.add(name)
        if not self._announced and self._all_ready():
            self._announce()

    def handle_docs(self, names):
        if not self._stopping:
            self._follow(names)

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
        if sync.crashed and not self._stopping and not sync.leaving:
            self._restart(sync)
            return
        if sync.leaving and not sync.crashed and sync in self.syncs:
            self.syncs.remove(sync)
            self._ready_docs.discard(sync.doc_name)
            self.metrics.set("mrmd_monitor_documents_attached", len(self.syncs))
            if not self._announced and self.syncs and self._all_ready():
                self._announce()  # the last one we waited for moved away

    def _restart(self, sync):
        """A sync thread died (a pycrdt PanicException is a BaseException):
        its document gets a new thread, with a new Doc and client id, after a
        pause that doubles while the document keeps killing its threads; the
        other documents and the daemon go on."""
        crashes = self._crashes[sync.doc_name] = self._crashes.get(sync.doc_name, 0) + 1
        delay = min(RESTART_MAX, RESTART_FIRST * 2 ** (crashes - 1)) if crashes > 1 else 0.0
        context(log, doc=sync.doc_name).error(
            "sync thread %s died; restarting it in %.1fs (%d time(s) so far)",
            sync.name, delay, crashes)
        if sync is self.control:
            self.control = None
            self._attach_control(start_delay=delay)
            return
        if sync in self.syncs:
            self.syncs.remove(sync)
        self._ready_docs.discard(sync.doc_name)
        self._attach(sync.doc_name, start_delay=delay)

    def handle_others(self, _):
        """Another monitor shows in one of our documents (--replicas all)."""
        if self.control is None and not self._stopping and not self.config.docs:
            self._attach_control()

    def handle_members(self, members):
        """The monitors in the control document changed (or it synced: None)."""
        if members is None:
            self._control_synced = True
            members = self.control.members if self.control is not None else ()
        ids = lambda ms: None if ms is None else tuple(mb.id for mb in ms)  # noqa: E731
        changed = members is None or ids(members) != ids(self._members)
        if members is None and self._members is not None:
            log.warning("more than %d peers announce themselves as monitors in %s: trusting "
                        "none of them; every document is followed until that stops",
                        cluster.MAX_MEMBERS, self.config.control_doc)
        elif members is not None and changed:
            log.info("monitors in the cluster: %d (%s)", len(members),
                     ", ".join(mb.id for mb in members))
        self._members = members
        self._load_history = cluster.remember(self._load_history, members)
        if not self._announced and self.syncs and self._all_ready():
            self._announce()  # the control document was the last one we waited for
        self.metrics.set("mrmd_monitor_cluster_members", len(members or ()))
        if ((changed or not self._sharded) and self._listed is not None and not self._stopping
                and self._sharding()):
            self._follow(self._listed)

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
        for s in self._all_syncs():
            s.post(m.Stop(deadline=runs_deadline, reason="the monitor was stopped"))
        return runs_deadline

    # -- several monitors share the documents (cluster.py) ----------------------

    def _all_ready(self):
        # A document being left (moved, closed) may never sync: not waited for.
        # A control document joined is waited for: the loads come from it.
        return (all(s.leaving or s.doc_name in self._ready_docs for s in self.syncs)
                and (self.control is None or self._control_synced))

    def _all_syncs(self):
        return self.syncs + ([self.control] if self.control is not None else [])

    def _sharding(self):
        return self.control is not None and bool(self.config.replicas)

    def _attach_control(self, start_delay=0.0):
        """Join the control document, where the monitors following /stats see
        each other (with --replicas R, from the start; with all, once another
        monitor shows in one of our documents): their members and busy counts
        there share the documents and bound each one's load. Runs asked for
        there are not claimed."""
        name = self.config.control_doc
        if not name or self.control is not None:
            return
        self.control = SyncThread(
            config=self.config, doc_name=name, pool=self.pool, metrics=self.metrics,
            member_id=self.member_id, renew_alone=True, start_delay=start_delay,
            on_exit=self._on_sync_exit, on_synced=lambda s: self._events.put(("members", None)),
            on_members=lambda s, members: self._events.put(("members", members)))
        self.control.coordinator.stop_claiming()
        self.control.start()
        log.info("joined the control document %s as %s", name, self.member_id)

    def _cluster_loads(self, entry):
        """The cluster's members as published in the control document a moment
        before ``entry`` was requested (cluster.loads_as_of), or None without
        a control document. Called on sync threads: the history is replaced
        whole, never mutated."""
        history = self._load_history
        if self.control is None or not history:
            return None
        when = entry.requested_at - cluster.LOADS_BEFORE_MS if entry.requested_at else None
        return cluster.loads_as_of(history, when)

    def _busy(self):
        return int(self.metrics.get("mrmd_monitor_active_runs")
                   + self.metrics.get("mrmd_monitor_queued_runs"))

    def _load_moving(self):
        return self.control is not None and (self._load_sent or self._busy() != self._load_sent)

    def _on_doc_members(self, _sync, members):
        """A document's members changed (its sync thread): with --replicas all,
        the first other monitor seen makes us join the control document (a
        lone monitor opens no more than its documents)."""
        if self.control is None and members and len(members) > 1:
            self._events.put(("others", None))

    def _cluster_upkeep(self):
        """Our busy count to the control document as it changes (at most every
        LOAD_PUBLISH_INTERVAL)."""
        if self._stopping or self.control is None:
            return
        now = time.monotonic()
        busy = self._busy()
        if busy != self._load_sent and now - self._load_sent_at >= LOAD_PUBLISH_INTERVAL:
            self._load_sent, self._load_sent_at = busy, now
            self.control.post(m.Call(lambda s: s._publish_member()))  # noqa: SLF001

    def _assigned(self, names):
        """The documents this monitor follows among those the server lists."""
        names = [n for n in names if n != self.config.control_doc]
        if not self._sharding():
            return names
        if not self._control_synced:
            return []  # the others are not known yet: attaching everything would churn
        self._sharded = True
        return cluster.followed(names, self._members, self.member_id, self.config.replicas)

    def _status_snapshot(self):
        """The status page's data (status server thread): only attributes that
        are replaced whole (members, flags) and the metrics registry."""
        syncs = list(self.syncs)
        members = self._members
        if self.control is None:  # no control document: the monitors seen in our documents
            seen = {}
            for s in syncs:
                for mb in s.members or ():
                    seen[mb.id] = mb
            members = tuple(seen[k] for k in sorted(seen))
        docs = [{"name": s.doc_name, "synced": s.synced, "last_heard_wall": s.last_heard_wall,
                 "runs": len(s.coordinator.runs)} for s in syncs]
        me = {"id": self.member_id, "name": self.config.name, "version": __version__,
              "capacity": self.config.max_workers}
        return statuspage.build_snapshot(
            me=me, metric_values=self.metrics.snapshot(), documents=docs, members=members or (),
            now=time.time(), replicas=self.config.replicas,
            control_doc=self.control.doc_name if self.control is not None else None,
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
        for sync in self._all_syncs():
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
