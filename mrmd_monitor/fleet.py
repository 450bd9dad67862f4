"""The documents the daemon follows: one sync thread each, attached and
detached as the server lists them (at most --max-docs; with --replicas R, our
share), a new thread for one that died, the ready line once every document has
synced, and, with several monitors, the control document and its members.

Its methods run on the main thread (daemon.py calls them from its
``handle_<event>``); the sync threads only put events on the daemon's queue.
"""

import logging
import time

from . import cluster
from . import messages as m
from .claims import Latencies
from .discovery import plan
from .logs import context
from .sync import SyncThread

log = logging.getLogger(__name__)

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


class Fleet:
    """``config`` and ``pool`` are read when a thread is attached (a HUP
    replaces the config; the pool is built after the fleet); ``post_event``
    puts ``(kind, value)`` on the daemon's queue; ``stopping`` says whether
    the daemon is stopping; ``on_ready`` is called once every document has
    synced."""

    def __init__(self, config, pool, post_event, stopping, metrics, member_id, on_ready=None):
        self._config = config
        self._pool = pool
        self._post = post_event
        self._stopping = stopping
        self.metrics = metrics
        self.member_id = member_id
        self._on_ready = on_ready
        self.syncs = []
        self._ready_docs = set()
        self._announced = False
        self._capped = False   # --max-docs left listed documents alone (logged once)
        # Several monitors (cluster.py): the control document (with --replicas
        # R), the members seen there, the documents last listed.
        self.control = None
        self.members = ()
        self._control_synced = False
        self._sharded = False   # an assignment has been applied once
        self._listed = None
        self._load_history = {}    # member id -> its recent states (cluster.remember)
        self.latencies = Latencies()  # round trips and claim delays, all documents
        self._load_sent = 0        # the busy count last published in the control document
        self._load_sent_at = 0.0
        self._crashes = {}         # document -> how many of its sync threads died

    def all(self):
        """Every sync thread, the control document's included."""
        return self.syncs + ([self.control] if self.control is not None else [])

    # -- attaching and detaching -------------------------------------------------

    def attach(self, name, start_delay=0.0):
        sync = SyncThread(config=self._config(), doc_name=name, pool=self._pool(),
                          on_synced=self._on_synced, on_exit=self._on_sync_exit,
                          metrics=self.metrics, member_id=self.member_id,
                          cluster_loads=self._cluster_loads, on_members=self._on_doc_members,
                          latencies=self.latencies, start_delay=start_delay)
        self.syncs.append(sync)
        sync.start()
        self.metrics.set("mrmd_monitor_documents_attached", len(self.syncs))
        return sync

    def _on_synced(self, sync):
        self._post(("synced", sync.doc_name))

    def _on_sync_exit(self, sync):
        if getattr(sync, "refused", None) is not None:
            self._post(("refused", sync))
        self._post(("exited", sync))

    def follow(self, names):
        """Attach to documents the server lists (at most --max-docs), detach
        from those it no longer does. With --replicas R, only our share of them."""
        config = self._config()
        known, self._listed = set(self._listed or ()), tuple(names)
        moving = bool(config.replicas) and self._sharded  # a move, not a first look
        names = self._assigned(names)
        current = {s.doc_name: s for s in self.syncs if not s.leaving}
        attach, detach, left_out = plan(names, list(current), config.max_docs)
        for name in attach:
            if name in known and moving:
                context(log, doc=name).info("document %s moved to this monitor: attaching", name)
                self.metrics.inc("mrmd_monitor_documents_moved_total", direction="in")
            else:
                context(log, doc=name).info("document %s appeared on the server: attaching", name)
            self.attach(name)
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
            sync.post(m.Stop(deadline=time.monotonic() + config.grace,
                             reason="the document was closed on the server"))
        if left_out and not self._capped:
            log.warning("--max-docs %d reached: following %d document(s), leaving %d more the "
                        "server lists alone (first: %s)", config.max_docs,
                        len(current) - len(detach) + len(attach), len(left_out), left_out[0])
        elif not left_out and self._capped:
            log.info("every document the server lists is followed again (--max-docs %d)",
                     config.max_docs)
        self._capped = bool(left_out)
        if not self._announced and not self.syncs and (self._sharded or not self._sharding()):
            self._announce()

    def exited(self, sync):
        """A sync thread ended (already joined): a crashed one gets a new
        thread, one being left is dropped."""
        if sync.crashed and not self._stopping() and not sync.leaving:
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
            self.attach_control(start_delay=delay)
            return
        if sync in self.syncs:
            self.syncs.remove(sync)
        self._ready_docs.discard(sync.doc_name)
        self.attach(sync.doc_name, start_delay=delay)

    # -- the ready line ------------------------------------------------------------

    def synced(self, name):
        self._ready_docs.add(name)
        if not self._announced and self._all_ready():
            self._announce()

    def _announce(self):
        self._announced = True
        log.info("monitor ready: watching %d document(s)", len(self.syncs))
        if self._on_ready is not None:
            self._on_ready()

    def _all_ready(self):
        # A document being left (moved, closed) may never sync: not waited for.
        # A control document joined is waited for: the loads come from it.
        return (all(s.leaving or s.doc_name in self._ready_docs for s in self.syncs)
                and (self.control is None or self._control_synced))

    # -- several monitors share the documents (cluster.py) ----------------------

    def _sharding(self):
        return self.control is not None and bool(self._config().replicas)

    def attach_control(self, start_delay=0.0):
        """Join the control document, where the monitors following /stats see
        each other (with --replicas R, from the start; with all, once another
        monitor shows in one of our documents): their members and busy counts
        there share the documents and bound each one's load. Runs asked for
        there are not claimed."""
        config = self._config()
        name = config.control_doc
        if not name or self.control is not None:
            return
        self.control = SyncThread(
            config=config, doc_name=name, pool=self._pool(), metrics=self.metrics,
            member_id=self.member_id, renew_alone=True, start_delay=start_delay,
            on_exit=self._on_sync_exit, on_synced=lambda s: self._post(("members", None)),
            on_members=lambda s, members: self._post(("members", members)))
        self.control.coordinator.stop_claiming()
        self.control.start()
        log.info("joined the control document %s as %s", name, self.member_id)

    def others(self):
        """Another monitor shows in one of our documents (--replicas all)."""
        if self.control is None and not self._stopping() and not self._config().docs:
            self.attach_control()

    def members_changed(self, members):
        """The monitors in the control document changed (or it synced: None)."""
        if members is None:
            self._control_synced = True
            members = self.control.members if self.control is not None else ()
        ids = lambda ms: None if ms is None else tuple(mb.id for mb in ms)  # noqa: E731
        changed = members is None or ids(members) != ids(self.members)
        if members is None and self.members is not None:
            log.warning("more than %d peers announce themselves as monitors in %s: trusting "
                        "none of them; every document is followed until that stops",
                        cluster.MAX_MEMBERS, self._config().control_doc)
        elif members is not None and changed:
            log.info("monitors in the cluster: %d (%s)", len(members),
                     ", ".join(mb.id for mb in members))
        self.members = members
        self._load_history = cluster.remember(self._load_history, members)
        if not self._announced and self.syncs and self._all_ready():
            self._announce()  # the control document was the last one we waited for
        self.metrics.set("mrmd_monitor_cluster_members", len(members or ()))
        if ((changed or not self._sharded) and self._listed is not None and not self._stopping()
                and self._sharding()):
            self.follow(self._listed)

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

    def load_moving(self):
        """Whether our busy count is to be published again soon."""
        return self.control is not None and (self._load_sent or self._busy() != self._load_sent)

    def _on_doc_members(self, _sync, members):
        """A document's members changed (its sync thread): with --replicas all,
        the first other monitor seen makes us join the control document (a
        lone monitor opens no more than its documents)."""
        if self.control is None and members and len(members) > 1:
            self._post(("others", None))

    def upkeep(self):
        """Our busy count to the control document as it changes (at most every
        LOAD_PUBLISH_INTERVAL)."""
        if self._stopping() or self.control is None:
            return
        now = time.monotonic()
        busy = self._busy()
        if busy != self._load_sent and now - self._load_sent_at >= LOAD_PUBLISH_INTERVAL:
            self._load_sent, self._load_sent_at = busy, now
            self.control.post(m.Call(lambda s: s._publish_member()))  # noqa: SLF001

    def _assigned(self, names):
        """The documents this monitor follows among those the server lists."""
        config = self._config()
        names = [n for n in names if n != config.control_doc]
        if not self._sharding():
            return names
        if not self._control_synced:
            return []  # the others are not known yet: attaching everything would churn
        self._sharded = True
        return cluster.followed(names, self.members, self.member_id, config.replicas)

    def members_seen(self):
        """The monitors for the status page (status server thread): those of
        the control document, or without one those seen in our documents."""
        if self.control is not None:
            return self.members or ()
        seen = {}
        for s in list(self.syncs):
            for mb in s.members or ():
                seen[mb.id] = mb
        return tuple(seen[k] for k in sorted(seen))
