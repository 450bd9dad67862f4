"""The sync thread: one per document. It owns the pycrdt Doc, the websocket to
the sync server and the document's Coordinator, and waits in one poll() over
the socket and its mailbox. Nothing else touches the Doc.

Three rooms side by side do the work; the thread dispatches to them:

- ``ysync.Session``: the y-sync protocol (message 0), bytes in, bytes out;
- ``presence.Presence``: awareness (message 1), our state and the peers';
- ``connection.Connection``: the websocket, its keepalive and backoff.

The thread implements the coordinator's port to the document (claims.DocPort).
It waits in poll(), which, unlike select(), takes descriptors numbered 1024
and above and costs no descriptor of its own (epoll would: one more per
document): one poll object for the thread's life, over the mailbox, and the
socket while connected.
"""

import logging
import random
import select
import threading
import time

from pycrdt import Doc, YMessageType

from . import __version__, cluster, presence
from . import messages as m
from .connection import Connection, doc_url, pending
from .coordinator import Coordinator
from .errors import ProtocolError, SyncAuthRefused, SyncReadOnly
from .logs import context
from .mailbox import Mailbox
from .metrics import Metrics
from .options import cluster_secret
from .ysync import DEFAULT_MAX_MESSAGE_BYTES, Session

log = logging.getLogger(__name__)

MSG_QUERY_AWARENESS = 3
MSG_AUTH = 2

# Browsers pick 32-bit client ids at random. Yjs lets the larger client id win
# when two peers write the same map key at once; a small id therefore makes a
# browser's concurrent write (a cancel, an answer) win over ours, and the
# monitor re-applies its own fields afterwards (Coordinator._reconcile).
CLIENT_ID_RANGE = (1, 1 << 20)

# pycrdt (yrs) recurses natively on nested values, about 1 KB of stack per
# level: incoming values deeper than MAX_VALUE_DEPTH are refused (updates.py),
# and the sync thread gets a stack with room for that depth twice over.
SYNC_STACK_BYTES = 4 << 20
_stack_lock = threading.Lock()


class SyncThread(threading.Thread):
    def __init__(self, *, config, doc_name, pool, on_synced=None, on_exit=None, client_id=None,
                 metrics=None, connect=None, member_id=None, on_members=None,
                 cluster_loads=None, latencies=None, renew_alone=False, start_delay=0.0):
        super().__init__(name="sync:%s" % doc_name, daemon=True)
        self.config = config
        self.doc_name = doc_name
        # Every line about this document's connection carries its name.
        self.log = context(log, doc=doc_name)
        self.mailbox = Mailbox()
        self.doc = Doc(client_id=client_id or random.randrange(*CLIENT_ID_RANGE))
        self.client_id = self.doc.client_id
        self.metrics = metrics if metrics is not None else Metrics()
        self._poller = select.poll()
        self.conn = Connection(url=doc_url(config.sync_url, doc_name), config=config,
                               doc_name=doc_name, log=self.log, poller=self._poller,
                               connect=connect, on_closed=self._on_closed)
        self.conn.next_connect = time.monotonic() + start_delay   # a restart (daemon.py)
        self.shown_url = self.conn.shown_url
        self.session = Session(self.doc, doc_name=doc_name, shown_url=self.shown_url,
                               log=self.log, max_message_bytes=_max_message_bytes(config),
                               on_text_moved=self._on_text_moved)
        self.presence = presence.Presence(self.client_id, name=config.name,
                                          renew_alone=renew_alone, secret=cluster_secret(config))
        # This thread is the coordinator's port to the document (claims.DocPort).
        self.coordinator = Coordinator(self.doc, me=self.client_id, pool=pool, post=self.post,
                                       config=config, port=self, doc_name=doc_name,
                                       metrics=self.metrics, latencies=latencies)
        self._on_synced, self._on_exit = on_synced, on_exit
        self.leaving = False   # set by the daemon when the document is being detached
        self._ever_synced = False
        self._stop_deadline = None
        self.crashed = False
        self.refused = None   # SyncAuthRefused or SyncReadOnly: the daemon's exit status
        # Several monitors (cluster.py): who we are to the others; and (entry) ->
        # the control document's members just before its request (claim_delay).
        self.member_id = member_id or cluster.new_member_id(config.name)
        self._on_members, self._cluster_loads = on_members, cluster_loads
        self._publish_member()

    # -- the only thread-safe entry point ------------------------------------

    def post(self, message):
        self.mailbox.post(message)

    @property
    def synced(self):
        return self.session.synced

    @property
    def last_heard_wall(self):
        return self.conn.last_heard_wall

    @property
    def members(self):
        """The cluster members present here (presence.py), replaced whole."""
        return self.presence.members

    # -- the coordinator's port (claims.DocPort), called on this thread --------

    def probe(self):
        """Send a sync step 1, answered after every update we sent before it:
        its sequence number, or None offline (the next handshake is the probe)."""
        if self.conn.ws is None or not self.session.synced:
            return None
        self._send_outbox()   # the claims it is about first (the exactly-once argument)
        if self.conn.ws is None:
            return None
        seq, message = self.session.probe()
        self.conn.send(message)
        return seq

    def is_connected(self):
        return self.session.synced

    def peer_alive(self, client_id):   # recently renewed in awareness
        return self.presence.peer_alive(client_id, time.monotonic())

    def is_monitor(self, client_id):
        """Is ``client_id`` a monitor present here? Only its claim is a lease."""
        return self.presence.is_monitor(client_id, time.monotonic())

    def other_monitors_present(self):
        """Does awareness show any other monitor on this document? (presence.py)"""
        return self.presence.other_monitors_present(time.monotonic())

    def claim_delay(self, entry):
        """Seconds we let the monitor preferred for this run claim it first
        (claims.DocPort); 0 when we are preferred or see no other monitor. The
        pairs requested with it (a burst) are placed one after another."""
        if self.members is None or len(self.members) <= 1:
            return 0.0
        loads = self._cluster_loads(entry) if self._cluster_loads is not None else None
        burst = cluster.burst_keys([(e.runtime_url, e.session, e.requested_at)
                                    for e in self.coordinator.entries.index.values()],
                                   entry.requested_at)
        return cluster.claim_delay(entry.runtime_url, entry.session, self.members,
                                   self.member_id, loads=loads, burst=burst)

    def catch_up(self):
        """Before a backup claim: apply what already waits on the socket (the
        preferred monitor's claim may be there), as every other claim does."""
        if self.conn.waiting():
            self._receive_all()

    # -- presence ----------------------------------------------------------------

    def set_awareness_fields(self, **fields):
        """Our awareness state's fields (None removes one), sent at once when
        connected; on this thread, e.g. through ``post(Call(...))``."""
        self.presence.set_fields(**fields)
        if self.conn.ws is None:
            self.presence.local()
            return
        self._send_awareness()
        self._refresh_members()   # ours may have changed; the server's echo is not applied

    def _send_awareness(self):
        if self.conn.ws is not None:
            self.conn.send(self.presence.announce(time.monotonic(), self._renewing()))

    def _renewing(self):
        return self.presence.needed(self.coordinator.active())

    def _publish_member(self):
        """Our id, capacity and busy count in awareness; none in a document being left."""
        state = None
        if self._stop_deadline is None:
            busy = (self.metrics.get("mrmd_monitor_active_runs")
                    + self.metrics.get("mrmd_monitor_queued_runs"))
            state = presence.member_state(cluster.Member(
                id=self.member_id, capacity=self.config.max_workers, busy=max(0, int(busy)),
                version=__version__, name=self.config.name, at=_now_ms()))
        self.set_awareness_fields(**{presence.STATE_KEY: state})

    def _refresh_members(self):
        if self.presence.refresh_members(time.monotonic()) and self._on_members is not None:
            self._on_members(self, self.presence.members)

    def apply_config(self, config):
        """A reloaded configuration (HUP). Only values read at use time change."""
        self.config = config
        self.coordinator.config = config
        self.conn.configure(config)
        self.session.max_message_bytes = _max_message_bytes(config)

    def start(self):
        _with_stack(super().start)

    # -- main loop -------------------------------------------------------------

    def run(self):
        try:
            self._loop()
        except (SyncAuthRefused, SyncReadOnly) as exc:
            self.refused = exc
            self.log.error("%s", exc)
        except BaseException:  # noqa: B902 - log, never die silently
            self.crashed = True
            self.log.exception("sync thread for %s crashed", self.doc_name)
        finally:
            self.conn.close()
            self.mailbox.close()
            self.metrics.remove(doc=self.doc_name)
            if self._on_exit is not None:
                self._on_exit(self)

    def _loop(self):
        self.presence.local()
        self._poller.register(self.mailbox.fileno(), select.POLLIN)
        while True:
            now = time.monotonic()
            stop_due = self._stop_deadline is not None and now >= self._stop_deadline
            if self.conn.ws is None and now >= self.conn.next_connect and not stop_due:
                self._connect()
            nxt = self.coordinator.tick()
            now = time.monotonic()
            self._timers(now)
            self._send_outbox()
            if self._stop_deadline is not None and self._finish_stop():
                return
            wake = [now + nxt if nxt is not None else None, self._stop_deadline]
            if self.conn.ws is None:
                wake.append(self.conn.next_connect)
            elif not self.presence.silent:
                wake.append(self.presence.due)
            self._wait(min((w for w in wake if w is not None), default=now + 3600.0))

    def _wait(self, until):
        """Wait until ``until`` (monotonic) for mail or a message from the
        server, and handle what came: the mail first (a new configuration or a
        stop posted before a request arrived applies to it), then the socket.
        The server's pings are answered without returning: a thousand idle
        documents wake for little else, and the loop's round (coordinator,
        timers, outbox) has nothing to do then."""
        while True:
            sock = self.conn.sock
            deadline = self.conn.deadline(until)
            if sock is not None and pending(sock):
                ready = (sock.fileno(),)
            else:
                timeout = max(0.0, deadline - time.monotonic())
                try:
                    ready = [fd for fd, _ in self._poller.poll(int(timeout * 1000 + 0.999))]
                except InterruptedError:
                    ready = ()
            if not ready:
                return
            mail = self.mailbox.fileno() in ready
            if mail:
                for msg in self.mailbox.drain(500):
                    self._dispatch(msg)
            if sock is not None and sock.fileno() in ready and self.conn.sock is sock \
                    and self._receive_all():
                return
            if mail or time.monotonic() >= deadline:
                return

    def _dispatch(self, msg):
        if isinstance(msg, m.Stop):
            self._begin_stop(msg)
        elif isinstance(msg, m.Call):
            msg.fn(self)
        else:
            self.coordinator.on_message(msg)

    def _timers(self, now):
        if self.conn.ws is None:
            return
        if now >= self.presence.due:    # always, while silent
            if self._renewing():
                # Also refreshes the members: those whose renewals stopped go.
                self._publish_member()
            else:
                self.presence.due = presence.SILENT
        self.conn.keepalive(now)

    # -- connection ------------------------------------------------------------

    def _connect(self):
        if not self.conn.open():
            return
        self.conn.send(self.session.open())
        self._send_awareness()

    def _on_closed(self, broken):
        self.session.closed(broken)
        if broken:
            self.metrics.inc("mrmd_monitor_reconnects_total", doc=self.doc_name)
            self.metrics.set("mrmd_monitor_document_connected", 0, doc=self.doc_name)

    def _send_outbox(self):
        if self.session.outbox and self.conn.ws is not None and self.presence.silent:
            self._publish_member()   # seen before anything we write (presence.py)
        while self.session.outbox and self.conn.ws is not None:
            self.conn.send_all(self.session.next_out())

    # -- incoming --------------------------------------------------------------

    def _receive_all(self):
        """Apply every message already waiting, then let the coordinator look
        at the entries that changed: a claim is never decided on a view older
        than what has already arrived. False when only pings came."""
        woke = False
        for payload in self.conn.messages():
            woke = True
            try:
                self._handle(payload)
            except ProtocolError as exc:
                self.log.error("undecodable message from %s: %s", self.shown_url, exc)
            if self.conn.ws is None:
                return True
        if self.conn.ws is None:
            return True
        if self.session.synced and self.session.changed:
            keys, self.session.changed = list(self.session.changed), set()
            self.coordinator.on_entries_changed(keys)
        return woke

    def _handle(self, data):
        kind = data[0] if data else None
        if kind == YMessageType.SYNC:
            got = self.session.receive(data)
            self.conn.send_all(got.replies)
            if got.acked is not None:
                self.coordinator.on_probe_acked(got.acked)
            if got.synced:
                self._synced()
        elif kind == YMessageType.AWARENESS:
            heard = self.presence.receive(data, time.monotonic())
            if heard.reassert:
                self._send_awareness()
            if heard.members:
                self._refresh_members()
        elif kind == MSG_QUERY_AWARENESS:
            self._send_awareness()
        elif kind == MSG_AUTH:
            raise self.conn.refused(data)

    def _synced(self):
        self.presence.synced(time.monotonic())
        self.metrics.set("mrmd_monitor_document_connected", 1, doc=self.doc_name)
        self.conn.healthy()
        self.log.info("synced %s", self.doc_name)
        self.session.changed.clear()
        self.coordinator.on_synced()
        if not self._ever_synced:
            self._ever_synced = True
            if self._on_synced is not None:
                self._on_synced(self)

    def _on_text_moved(self):
        self.coordinator.text_epoch += 1  # another peer moved text: positions are stale

    # -- stopping --------------------------------------------------------------

    def _begin_stop(self, msg):
        first = self._stop_deadline is None
        self._stop_deadline = msg.deadline if first else min(self._stop_deadline, msg.deadline)
        self.conn.stopping = True
        if first and self.conn.ws is None:
            self.conn.next_connect = min(self.conn.next_connect, time.monotonic())
        if first:
            self.coordinator.stop_claiming()
            self._publish_member()
            self.coordinator.release_unstarted(msg.reason)
            self.log.info("stopping: %d run(s) may finish within %.1fs", self.coordinator.active(),
                          max(0.0, msg.deadline - time.monotonic()))

    def _finish_stop(self):
        if self.coordinator.active() and time.monotonic() < self._stop_deadline:
            return False
        self.coordinator.flush_all()
        if self.coordinator.active():
            self.coordinator.settle("the monitor was stopped before the run finished")
        self._send_outbox()
        if self.session.dirty and time.monotonic() < self._stop_deadline:
            # Changes made while the connection was down (or in flight when it
            # broke): reconnect and have the server confirm them before leaving.
            if self.conn.ws is not None:
                flush = self.session.flush()
                if flush is not None:
                    self.conn.send(flush[1])
            return False
        if self.conn.ws is None:
            self.log.warning("stopping while disconnected from %s: the last changes could not "
                             "be sent", self.shown_url)
        self.conn.close(goodbye=self.presence.goodbye() if self.conn.ws is not None else None)
        self.log.info("closed %s", self.doc_name)
        return True


def _with_stack(start):
    # threading.stack_size is process-wide: set it only around our own start.
    with _stack_lock:
        old = threading.stack_size(SYNC_STACK_BYTES)
        try:
            start()
        finally:
            threading.stack_size(old)


def _now_ms():
    return int(time.time() * 1000)


def _max_message_bytes(config):
    return getattr(config, "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)
