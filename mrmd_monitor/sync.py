"""The sync thread: one per document. It owns the pycrdt Doc, the websocket to
the sync server and the document's Coordinator, and waits in one poll()
over the socket and its mailbox. Nothing else touches the Doc.

Speaks the y-websocket protocol (message 0 = sync, 1 = awareness, 3 = query
awareness) with pycrdt's encoders; reconnects with capped, jittered
exponential backoff, keeping the Doc so that output written while the server
was away is sent on the next handshake.
"""

import collections
import logging
import os
import random
import select
import ssl
import threading
import time
from urllib.parse import quote, quote_plus, unquote, urlsplit

import websocket
from pycrdt import (Awareness, Doc, Map, Text, YMessageType, YSyncMessageType,
                    create_awareness_message, read_message)

from . import __version__, cluster, wsframes
from . import messages as m
from .coordinator import Coordinator
from .errors import FrameError, ProtocolError, SyncAuthRefused, SyncReadOnly, UpdateFormatError
from .logs import context
from .mailbox import Mailbox
from .metrics import Metrics
from .updates import (MAX_VALUE_DEPTH, client_clocks, decode_state_vector, encode_state_vector,
                      parse_update, split_update, write_varuint)

log = logging.getLogger(__name__)

# Our awareness state is renewed at a random point 20 to 24 s after the last
# time it was sent. y-protocols peers (browsers, and the sync server itself,
# which serves the states it holds to every peer that joins) drop a state not
# renewed for 30 s, checking every 3 s; they renew their own at 15 s. The 6 s
# left at the latest point cover our thread's delay under load and the
# server's delivery: a renewal lands long before the 30 s as long as neither
# stalls for 6 s (attaching 1,000 documents takes about 5 s in all). Later
# than y-protocols' 15 s because every renewal costs each document two
# wake-ups (sending it, and the server's echo of it to every connection of
# the room, ours included): one every 22 s on average instead of 15 s is a
# third fewer. The random point spreads a thousand documents' renewals
# instead of sending them in bursts (they connect within a few seconds of
# each other).
#
# Nobody needs the renewals of a monitor alone in a document with nothing to
# run: they only keep our state in the server's copy. So then the monitor
# falls silent (the server drops its state after 30 s) and announces itself
# again as soon as a peer appears (every y-websocket client announces its own
# state when it connects, so it sees ours one round trip later, long before
# any --orphan-timeout) or it has a run. A peer that never sets a state of its
# own does not see a silent monitor. The control document always renews:
# a monitor joining the cluster must see the others as it syncs.
#
# Exactly-once (claims.Claims.acked) needs every monitor that could claim
# concurrently with us to be in sight when our claim is confirmed. A silent
# monitor announces itself before anything it writes (_send_outbox), and when
# it sees us arrive (we announce on connecting); until that answer can have
# come back, for AWARENESS_SETTLE seconds after we synced, we count a monitor
# as present (other_monitors_present), so our claims wait --claim-settle.
AWARENESS_RENEW = (20.0, 24.0)
AWARENESS_SETTLE = 5.0
# A peer whose state has not been renewed for this long is gone (peer_alive),
# even if no removal arrived: three renewals missed by a peer renewing at
# 15 s, almost two by us.
PEER_GONE_AFTER = 45.0
# A websocket ping when the line has been quiet both ways this long: the
# servers we know ping every 30 s (and pongs go out at once), so it is only
# for one that does not.
KEEPALIVE = 40.0
DEAD_AFTER = 65.0           # nothing heard (the server pings every 30 s): reconnect
# Reading the socket: first RECEIVE_FIRST bytes (a ping, an awareness update:
# a buffer this small comes from the heap, where one of RECEIVE_BYTES would be
# mapped and unmapped by malloc at every wake-up), then RECEIVE_BYTES at a time
# while more is waiting, at most RECEIVE_READS reads per wake-up so that the
# mailbox is looked at between them.
RECEIVE_FIRST = 4096
RECEIVE_BYTES = 256 << 10
RECEIVE_READS = 16
# The largest message accepted from the sync server. Peers' updates are relayed
# whole (the npm server takes up to 100 MiB, mrmd-sync 1 MiB), and the first
# step 2 holds the whole document; a larger one ends the connection with one
# log line, since a message cannot be skipped without losing the document's
# history.
MAX_RECEIVED_MESSAGE_BYTES = 256 << 20
MSG_QUERY_AWARENESS = 3
MSG_AUTH = 2

# Browsers pick 32-bit client ids at random. Yjs lets the larger client id win
# when two peers write the same map key at once; a small id therefore makes a
# browser's concurrent write (a cancel, an answer) win over ours, and the
# monitor re-applies its own fields afterwards (Coordinator._reconcile).
CLIENT_ID_RANGE = (1, 1 << 20)

MONITOR_COLOR = "#7c3aed"

# mrmd-sync's maxMessageSize (its websocket maxPayload): a larger message
# closes the connection. --max-message-bytes overrides it.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
# Room for the message's own header (type, subtype, length) under the limit.
_MESSAGE_HEADER = 16

# Close codes and HTTP statuses that retrying cannot fix: the server refused us.
_CLOSE_POLICY = 1008
_REFUSED_STATUSES = (401, 403)

# pycrdt (yrs) recurses natively on nested values, about 1 KB of stack per
# level: incoming values deeper than MAX_VALUE_DEPTH are refused (updates.py),
# and the sync thread gets a stack with room for that depth twice over.
SYNC_STACK_BYTES = 4 << 20
_stack_lock = threading.Lock()

_plain_token_warned = set()
_plain_token_lock = threading.Lock()


class Backoff:
    """Capped exponential backoff with full jitter in its upper half."""

    def __init__(self, initial=0.5, cap=30.0, rng=random.random):
        self.initial = initial
        self.cap = cap
        self.rng = rng
        self.attempt = 0

    def next(self):
        delay = min(self.cap, self.initial * (2 ** self.attempt))
        self.attempt += 1
        return delay * (0.5 + 0.5 * self.rng())

    def reset(self):
        self.attempt = 0


# _awareness_due while nobody needs a renewal: due at once, and checked on
# every pass of the loop (a peer may have appeared, a run started); never a
# poll timeout.
_SILENT = float("-inf")


def renewal_delay(rng=random.random):
    """Seconds from sending our awareness state to renewing it: a random
    point of AWARENESS_RENEW."""
    low, high = AWARENESS_RENEW
    return low + (high - low) * rng()


def doc_url(sync_url, doc_name):
    return "%s/%s" % (sync_url.rstrip("/"), quote(doc_name, safe="/"))


class SyncThread(threading.Thread):
    def __init__(self, *, config, doc_name, pool, on_synced=None, on_exit=None, client_id=None,
                 metrics=None, connect=None, member_id=None, on_members=None,
                 cluster_loads=None, latencies=None, renew_alone=False):
        super().__init__(name="sync:%s" % doc_name, daemon=True)
        self.config = config
        self.doc_name = doc_name
        # Every line about this document's connection carries its name.
        self.log = context(log, doc=doc_name)
        self.url = doc_url(config.sync_url, doc_name)
        self.shown_url = _mask_url(self.url)
        # connect(url, **options) -> a connected websocket.WebSocket; tests pass one
        # that speaks over a socketpair.
        self._open = connect or _open_websocket
        self.mailbox = Mailbox()
        self.doc = Doc(client_id=client_id or random.randrange(*CLIENT_ID_RANGE))
        self.client_id = self.doc.client_id
        self.awareness = Awareness(self.doc)
        self.metrics = metrics if metrics is not None else Metrics()
        # This thread is the coordinator's port to the document (claims.DocPort).
        self.coordinator = Coordinator(self.doc, me=self.client_id, pool=pool, post=self.post,
                                       config=config, port=self, doc_name=doc_name,
                                       metrics=self.metrics, latencies=latencies)
        self._on_synced = on_synced
        self._on_exit = on_exit
        self.leaving = False   # set by the daemon when the document is being detached
        self._ws = None
        # poll(), unlike select(), takes descriptors numbered 1024 and above and
        # costs no descriptor of its own (epoll would: one more per document).
        # One poll object for the thread's life: the mailbox, and the socket
        # while connected.
        self._poller = select.poll()
        self._sock_fd = None
        self._frames = None
        self._synced = False
        self._ever_synced = False
        self._applying_remote = False
        self._outbox = []
        self._changed = set()
        self._probe_seq = 0
        self._probes = collections.deque()  # probes sent on this connection, unanswered
        self._backoff = Backoff(cap=config.reconnect_max)
        self._next_connect = 0.0
        self._last_heard = 0.0
        self._last_sent = 0.0
        self._awareness_due = 0.0
        self._awareness_sent = None   # the last awareness message we sent, to know its echo
        self._renew_alone = renew_alone   # the control document: see AWARENESS_RENEW
        self._synced_at = -AWARENESS_SETTLE
        self._stop_deadline = None
        self._failures = 0
        self.reconnects = 0
        self.crashed = False
        # The error that ended the thread for good (SyncAuthRefused, SyncReadOnly),
        # read by the daemon to choose the exit status.
        self.refused = None
        self._dirty = False         # local changes the server may not have (see _finish_stop)
        self._flush_probe = None
        self._my_clock_sent = None  # our clock when the handshake sent the server our state
        self._write_check = None    # (probe seq, clock the server must then have)
        self._write_checked = False
        self._awareness_fields = {}
        self.last_heard_wall = None  # read by the status server: a float is safe to share
        # pycrdt drops an observer when its shared type object is garbage
        # collected: keep both the type and the subscription.
        self._entries = self.doc.get("executions", type=Map)
        self._text = self.doc.get("content", type=Text)
        # The entries are observed through pycrdt's native observer: its Python
        # MapEvent walks every changed value recursively, so a peer's entry
        # nested 1,000 levels deep would fail every update (RecursionError).
        self._subscriptions = (self.doc.observe(self._on_update),
                               self._entries.integrated.observe(self._on_entries_event),
                               self._text.observe(self._on_text_event))
        # Several monitors (cluster.py): who we are to the others, published in
        # awareness, and who they are here. ``members`` is replaced whole, never
        # mutated (the daemon and the status server read it); None while
        # awareness is flooded (cluster.members_from_states).
        self.member_id = member_id or cluster.new_member_id(config.name)
        self.members = ()
        self._on_members = on_members
        # (entry) -> the cluster's members as published in the control document
        # just before the entry was requested (busy counts as they change), or
        # None: claim_delay's loads.
        self._cluster_loads = cluster_loads
        self._publish_member()

    # -- the only thread-safe entry point ------------------------------------

    def post(self, message):
        self.mailbox.post(message)

    @property
    def synced(self):
        return self._synced

    # -- services for the coordinator (called on this thread) ------------------

    def probe(self):
        """Send a sync step 1; the server answers it after every update it has
        received from us before. Returns its sequence number, or None when not
        connected (the next handshake is the probe then)."""
        if self._ws is None or not self._synced:
            return None
        # The claims the probe is about go first: the server answers a step 1
        # after every update it received before it (the exactly-once argument).
        self._send_outbox()
        if self._ws is None:
            return None
        self._probe_seq += 1
        self._probes.append(self._probe_seq)
        state = self.doc.get_state()
        if not self._write_checked and self._my_clock_sent is not None:
            # The first probe after our own updates on this connection asks the
            # server for them back: a server that drops our updates (a read-only
            # connection) answers without them.
            sv = decode_state_vector(state)
            mine = sv.get(self.client_id, 0)
            if mine > self._my_clock_sent:
                sv[self.client_id] = self._my_clock_sent
                state = encode_state_vector(sv)
                self._write_check = (self._probe_seq, mine)
        self._send(_sync_message(YSyncMessageType.SYNC_STEP1, state))
        return self._probe_seq

    def is_connected(self):
        return self._synced

    def peer_alive(self, client_id):
        """Is a peer with this client id present in awareness (recently renewed)?"""
        if client_id == self.client_id:
            return True
        if client_id not in self.awareness.states:
            return False
        meta = self.awareness.meta.get(client_id) or {}
        last = meta.get("lastUpdated", 0)
        return time.time() * 1000 - last < PEER_GONE_AFTER * 1000

    def is_monitor(self, client_id):
        """Is ``client_id`` a monitor present in awareness (recently renewed)?
        Only a monitor's claim is a lease; a browser that writes one is not."""
        if client_id == self.client_id:
            return True
        state = self.awareness.states.get(client_id)
        if not isinstance(state, dict) or state.get("type") != "monitor":
            return False
        return self.peer_alive(client_id)

    def other_monitors_present(self):
        """Does awareness show any other monitor on this document? Also true
        in our first AWARENESS_SETTLE seconds on it: a silent one may not
        have answered our arrival yet."""
        if time.monotonic() - self._synced_at < AWARENESS_SETTLE:
            return True
        return any(cid != self.client_id and isinstance(state, dict)
                   and state.get("type") == "monitor"
                   for cid, state in self.awareness.states.items())

    # -- several monitors (cluster.py) -----------------------------------------

    def _me(self):
        busy = (self.metrics.get("mrmd_monitor_active_runs")
                + self.metrics.get("mrmd_monitor_queued_runs"))
        return cluster.Member(id=self.member_id, capacity=self.config.max_workers,
                              busy=max(0, int(busy)), version=__version__, name=self.config.name,
                              at=int(time.time() * 1000))

    def _publish_member(self):
        """Our id, capacity and busy count in awareness. In a document the busy
        count goes only with the renewal (every AWARENESS_RENEW): published as
        it changed in every document, its traffic slowed every sync thread. The
        daemon also calls this on the control document as it changes, where
        each monitor reads it as of before a request (cluster.loads_as_of). A document
        being left claims nothing more: it stops being a member here, so the
        others claim at once instead of waiting for it."""
        state = cluster.member_state(self._me()) if self._stop_deadline is None else None
        self.set_awareness_fields(**{cluster.STATE_KEY: state})

    def claim_delay(self, entry):
        """Seconds we let the monitor preferred for this run claim it first
        (claims.DocPort); 0 when we are preferred or see no other monitor."""
        loads = self._cluster_loads(entry) if self._cluster_loads is not None else None
        return cluster.claim_delay(entry.runtime_url, entry.session, self.members, self.member_id,
                                   loads=loads)

    def catch_up(self):
        """Before a backup claim: apply what already waits on the socket (the
        preferred monitor's claim may be there), as every other claim does."""
        if self._ws is not None and _readable(self._ws.sock):
            self._receive_all()

    def _refresh_members(self):
        members = cluster.members_from_states(self.awareness.states, alive=self.peer_alive)
        if members != self.members:
            self.members = members
            if self._on_members is not None:
                self._on_members(self, members)

    def apply_config(self, config):
        """A reloaded configuration (HUP). Only values read at use time change."""
        self.config = config
        self.coordinator.config = config
        self._backoff.cap = config.reconnect_max

    def start(self):
        # threading.stack_size is process-wide: set it only around our own start.
        with _stack_lock:
            old = threading.stack_size(SYNC_STACK_BYTES)
            try:
                super().start()
            finally:
                threading.stack_size(old)

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
            self._close(send_goodbye=False)
            self.mailbox.close()
            self.metrics.remove(doc=self.doc_name)
            if self._on_exit is not None:
                self._on_exit(self)

    def _loop(self):
        self._set_awareness()
        self._poller.register(self.mailbox.fileno(), select.POLLIN)
        while True:
            now = time.monotonic()
            if self._ws is None and now >= self._next_connect and not self._stop_due(now):
                self._connect()
            nxt = self.coordinator.tick()
            now = time.monotonic()
            self._timers(now)
            self._send_outbox()
            if self._stop_deadline is not None and self._finish_stop():
                return
            wake = [now + nxt if nxt is not None else None, self._stop_deadline]
            if self._ws is None:
                wake.append(self._next_connect)
            elif self._awareness_due != _SILENT:
                wake.append(self._awareness_due)
            self._wait(min((w for w in wake if w is not None), default=now + 3600.0))

    def _wait(self, until):
        """Wait until ``until`` (monotonic) for mail or a message from the
        server, and handle what came: the mail first (a new configuration or a
        stop posted before a request arrived applies to it), then the socket.
        The server's pings are answered without returning: a thousand idle
        documents wake for little else, and the loop's round (coordinator,
        timers, outbox) has nothing to do then."""
        while True:
            sock = self._ws.sock if self._ws is not None else None
            deadline = until
            if sock is not None:
                deadline = min(until, max(self._last_sent, self._last_heard) + KEEPALIVE,
                               self._last_heard + DEAD_AFTER)
            if sock is not None and _pending(sock):
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
            if sock is not None and sock.fileno() in ready and self._ws is not None \
                    and self._ws.sock is sock and self._receive_all():
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
        if self._ws is None:
            return
        if now >= self._awareness_due:    # always, while silent
            if self._renewing():
                # A renewal (or an announcement after silence), with our busy
                # count now; it refreshes the members too, which drops those
                # whose renewals stopped.
                self._publish_member()
            else:
                self._awareness_due = _SILENT
        if now - self._last_heard >= DEAD_AFTER:
            self._disconnect("nothing heard from the server for %ds" % DEAD_AFTER)
        elif now - max(self._last_sent, self._last_heard) >= KEEPALIVE:
            self._guard(self._ws.ping)

    def _renewing(self):
        """Does anyone need our awareness renewed (AWARENESS_RENEW)?"""
        return (self._renew_alone or self.coordinator.active() > 0
                or any(cid != self.client_id for cid in self.awareness.states))

    # -- connection ------------------------------------------------------------

    def _connect(self):
        self._warn_plain_token()
        try:
            sslopt = {"ca_certs": self.config.ca_file} if self.config.ca_file else None
            ws = self._open(_with_token(self.url, self.config.token),
                            timeout=self.config.connect_timeout,
                            header=_auth_header(self.config.token), sslopt=sslopt)
        except websocket.WebSocketBadStatusException as exc:
            if exc.status_code in _REFUSED_STATUSES:
                raise SyncAuthRefused(
                    "the sync server refused the monitor for %s (HTTP %d at the handshake): "
                    "check --token" % (self.doc_name, exc.status_code),
                    doc=self.doc_name, url=self.shown_url) from None
            self._connect_failed(exc)
            return
        except (OSError, websocket.WebSocketException) as exc:
            self._connect_failed(exc)
            return
        ws.settimeout(self.config.connect_timeout)
        self._ws = ws
        self._frames = wsframes.FrameReader(MAX_RECEIVED_MESSAGE_BYTES)
        self._sock_fd = ws.sock.fileno()
        self._poller.register(self._sock_fd, select.POLLIN)
        now = time.monotonic()
        self._last_heard = now
        self._my_clock_sent = None
        self._write_check = None
        self._write_checked = False
        self.log.info("connected to %s", self.shown_url)
        self._send(_sync_message(YSyncMessageType.SYNC_STEP1, self.doc.get_state()))
        self._send_awareness()

    def _connect_failed(self, exc):
        self._failures += 1
        delay = self._backoff.next()
        if self._stop_deadline is not None:
            delay = min(delay, 0.5)   # stopping: keep trying to flush within --grace
        self._next_connect = time.monotonic() + delay
        level = logging.WARNING if self._failures in (1, 10) or self._failures % 100 == 0 else logging.DEBUG
        self.log.log(level, "cannot connect to %s (%s); retrying in %.1fs (attempt %d)",
                     self.shown_url, self._redact(str(exc) or type(exc).__name__), delay,
                     self._failures)

    def _warn_plain_token(self):
        if not self.config.token or urlsplit(self.url).scheme != "ws":
            return
        with _plain_token_lock:
            if self.config.sync_url in _plain_token_warned:
                return
            _plain_token_warned.add(self.config.sync_url)
        log.warning("the sync token is sent over unencrypted ws:// to %s: anyone on the path can "
                    "read it; use wss://", _mask_url(self.config.sync_url))

    def _redact(self, text):
        """``text`` without the token or the URL's password, in any form they travel in."""
        return _redact(text, self._secrets())

    def _secrets(self):
        secrets = []
        if self.config.token:
            secrets.append(self.config.token)
        try:
            password = urlsplit(self.url).password
        except ValueError:
            password = None
        if password:
            secrets += [password, unquote(password)]
        return secrets

    def _disconnect(self, reason):
        if self._ws is None:
            return
        self.log.warning("lost connection to %s: %s", self.shown_url, self._redact(reason))
        self._dirty = True   # what we sent last may not have arrived
        self._flush_probe = None
        self._close(send_goodbye=False)
        self._synced = False
        self._probes.clear()
        self.reconnects += 1
        self.metrics.inc("mrmd_monitor_reconnects_total", doc=self.doc_name)
        self.metrics.set("mrmd_monitor_document_connected", 0, doc=self.doc_name)
        delay = self._backoff.next()
        if self._stop_deadline is not None:
            delay = min(delay, 0.5)
        self._next_connect = time.monotonic() + delay
        self.log.info("reconnecting in %.1fs", delay)

    def _close(self, send_goodbye):
        ws, self._ws = self._ws, None
        self._outbox.clear()  # recovered from the state vectors on the next handshake
        if self._sock_fd is not None:
            # Before the socket closes: its number may be reused by another document's.
            self._poller.unregister(self._sock_fd)
            self._sock_fd = None
        if ws is None:
            return
        if send_goodbye:
            try:
                self.awareness.set_local_state(None)
                ws.send_binary(create_awareness_message(
                    self.awareness.encode_awareness_update([self.client_id])))
            except (OSError, websocket.WebSocketException):
                pass
        try:
            ws.close(timeout=1.0)
        except (OSError, websocket.WebSocketException):
            pass

    def _guard(self, fn, *args):
        try:
            fn(*args)
            self._last_sent = time.monotonic()
            return True
        except (OSError, websocket.WebSocketException) as exc:
            self._disconnect(str(exc) or type(exc).__name__)
            return False

    def _send(self, data):
        if self._ws is not None:
            self._guard(self._ws.send_binary, data)

    def _send_update(self, update, subtype=YSyncMessageType.SYNC_UPDATE):
        """Send one Yjs update as one or more messages, each within --max-message-bytes."""
        limit = getattr(self.config, "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES) - _MESSAGE_HEADER
        try:
            pieces = split_update(update, limit)
        except UpdateFormatError as exc:
            # Nothing smaller can carry it; the server will likely close the
            # connection. Said once per update, with the size, so it can be traced.
            self.log.error("an update of %d bytes cannot be cut under --max-message-bytes (%s); "
                           "sending it whole", len(update), exc)
            pieces = [update]
        if len(pieces) > 1:
            self.log.debug("update of %d bytes sent as %d messages", len(update), len(pieces))
        for piece in pieces:
            if self._ws is None:
                return
            self._send(_sync_message(subtype, piece))

    def _send_outbox(self):
        if self._outbox and self._ws is not None and self._awareness_due == _SILENT:
            self._publish_member()   # seen before anything we write (AWARENESS_RENEW)
        while self._outbox and self._ws is not None:
            self._send_update(self._outbox.pop(0))

    # -- incoming --------------------------------------------------------------

    def _receive_all(self, reads=RECEIVE_READS):
        """Apply every message already waiting (at most ``reads`` reads), then
        let the coordinator look at the entries that changed: a claim is never
        decided on a view older than what has already arrived (another
        monitor's claim included). True when a message came or the connection
        ended, False for control frames only."""
        woke = False
        size = RECEIVE_FIRST
        for _ in range(reads):
            sock = self._ws.sock
            try:
                data = sock.recv(size)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except (OSError, ValueError) as exc:
                self._disconnect(str(exc) or type(exc).__name__)
                return True
            if not data:
                self._disconnect("the server closed the connection without a close frame")
                return True
            self._last_heard = time.monotonic()
            self.last_heard_wall = time.time()
            try:
                frames = self._frames.feed(data)
            except FrameError as exc:
                self.log.error("refused what %s sent: %s", self.shown_url, exc)
                self._disconnect("unreadable frames")
                return True
            for opcode, payload in frames:
                woke = self._on_frame(opcode, payload) or woke
                if self._ws is None:
                    return True
            if len(data) < size and not _pending(sock):
                break
            if not _readable(sock):
                break
            size = RECEIVE_BYTES
        if self._synced and self._changed:
            keys, self._changed = list(self._changed), set()
            self.coordinator.on_entries_changed(keys)
        return woke

    def _on_frame(self, opcode, payload):
        """One frame or message from the server; True unless it was a ping or pong."""
        if opcode == wsframes.OP_PING:
            self._guard(self._ws.sock.sendall, wsframes.pong(payload, os.urandom(4)))
            return False
        if opcode == wsframes.OP_PONG:
            return False
        if opcode == wsframes.OP_CLOSE:
            code, reason = _close_status(payload)
            if code == _CLOSE_POLICY:
                self._close(send_goodbye=False)
                raise SyncAuthRefused(
                    "the sync server refused the monitor for %s: %s (close code 1008); check "
                    "--token" % (self.doc_name, self._redact(reason) or "policy violation"),
                    doc=self.doc_name, url=self.shown_url)
            self._disconnect("the server closed the connection" +
                             (" (%d %s)" % (code, self._redact(reason)) if code else ""))
            return True
        try:
            self._handle(payload)
        except ProtocolError as exc:
            self.log.error("undecodable message from %s: %s", self.shown_url, exc)
        return True

    def _handle(self, data):
        if not data:
            return
        kind = data[0]
        if kind == YMessageType.SYNC:
            self._handle_sync(data)
        elif kind == YMessageType.AWARENESS:
            if data == self._awareness_sent:
                # Our own state as we sent it: the server sends every awareness
                # update to all the connections of the room, the sender's too.
                # Applying it would change nothing (same clock).
                return
            try:
                self.awareness.apply_awareness_update(read_message(data[1:]), "remote")
            except Exception as exc:  # noqa: BLE001 - a peer's garbage must not kill us
                raise ProtocolError("bad awareness message: %s" % exc, doc=self.doc_name) from exc
            self._refresh_members()
        elif kind == MSG_QUERY_AWARENESS:
            self._send_awareness()
        elif kind == MSG_AUTH:
            # y-protocols auth message: 0 = permission denied, with a reason
            reason = ""
            try:
                if len(data) > 1 and data[1] == 0:
                    reason = bytes(read_message(data[2:])).decode("utf-8", "replace")
            except Exception:  # noqa: BLE001 - the reason is only for the log line
                reason = ""
            self._close(send_goodbye=False)
            raise SyncAuthRefused("the sync server denied access to %s: %s"
                                  % (self.doc_name, self._redact(reason) or "permission denied"),
                                  doc=self.doc_name, url=self.shown_url)

    def _handle_sync(self, data):
        if len(data) < 2:
            raise ProtocolError("truncated sync message", doc=self.doc_name)
        sub = data[1]
        try:
            payload = read_message(data[2:])
        except Exception as exc:  # noqa: BLE001 - pycrdt raises plain errors on bad bytes
            raise ProtocolError("bad sync message: %s" % exc, doc=self.doc_name) from exc
        if sub == YSyncMessageType.SYNC_STEP1:
            # The server's state vector: answer with what it lacks, cut to size.
            try:
                update = self.doc.get_update(payload)
            except Exception as exc:  # noqa: BLE001
                raise ProtocolError("bad state vector: %s" % exc, doc=self.doc_name) from exc
            self._my_clock_sent = decode_state_vector(self.doc.get_state()).get(self.client_id, 0)
            self._send_update(update, YSyncMessageType.SYNC_STEP2)
            return
        if sub not in (YSyncMessageType.SYNC_STEP2, YSyncMessageType.SYNC_UPDATE):
            raise ProtocolError("unknown sync message type %d" % sub, doc=self.doc_name)
        if payload != b"\x00\x00":
            try:
                # Refuses values nested deeper than pycrdt's recursion can take.
                parse_update(payload, MAX_VALUE_DEPTH)
            except UpdateFormatError as exc:
                raise ProtocolError("refused an update of %d bytes: %s" % (len(payload), exc),
                                    doc=self.doc_name) from None
            self._applying_remote = True
            try:
                self.doc.apply_update(payload)
            except Exception as exc:  # noqa: BLE001 - pycrdt raises plain errors on bad bytes
                raise ProtocolError("bad sync message: %s" % exc, doc=self.doc_name) from exc
            finally:
                self._applying_remote = False
        if sub == YSyncMessageType.SYNC_STEP2 and self._synced and self._probes:
            seq = self._probes.popleft()
            if self._write_check is not None and self._write_check[0] == seq:
                self._check_written(payload)
            if seq == self._flush_probe:
                self._dirty = False
                self._flush_probe = None
            self.coordinator.on_probe_acked(seq)
        if sub == YSyncMessageType.SYNC_STEP2 and not self._synced:
            self._synced = True
            self._synced_at = time.monotonic()
            self.metrics.set("mrmd_monitor_document_connected", 1, doc=self.doc_name)
            self._failures = 0
            self._backoff.reset()
            self.log.info("synced %s", self.doc_name)
            self._changed.clear()
            self.coordinator.on_synced()
            if not self._ever_synced:
                self._ever_synced = True
                if self._on_synced is not None:
                    self._on_synced(self)

    def _check_written(self, answer):
        """The answer to a write-check probe must hold our own updates back."""
        _, expected = self._write_check
        self._write_check = None
        try:
            have = client_clocks(answer).get(self.client_id, self._my_clock_sent)
        except UpdateFormatError:
            return
        if have < expected:
            self._close(send_goodbye=False)
            raise SyncReadOnly(
                "the sync server accepts the monitor on %s but drops its changes (a read-only "
                "connection): the monitor cannot run anything there; give it a token with write "
                "access" % self.doc_name, doc=self.doc_name, url=self.shown_url)
        self._write_checked = True

    # -- doc callbacks (run inside our own transactions and apply_update) -----

    def _on_update(self, event):
        if self._applying_remote:
            return  # never echo a remote update back to the server
        if self._ws is not None:
            self._outbox.append(event.update)
        else:
            self._dirty = True   # sent with the next handshake

    def _on_text_event(self, _event):
        if self._applying_remote:
            self.coordinator.text_epoch += 1  # another peer moved text: positions are stale

    def _on_entries_event(self, event):
        if self._applying_remote:
            self._changed.update(event.keys)

    # -- awareness -------------------------------------------------------------

    def awareness_state(self):
        """This monitor's state in awareness: the one place it is built. Other
        parts add fields with set_awareness_fields (e.g. free capacity)."""
        state = dict(self._awareness_fields)
        state.update({"name": self.config.name, "color": MONITOR_COLOR, "type": "monitor"})
        return state

    def set_awareness_fields(self, **fields):
        """Add or change fields of our awareness state (on this thread, e.g.
        through ``post(Call(...))``); sent at once when connected. ``None``
        removes a field."""
        for key, value in fields.items():
            if value is None:
                self._awareness_fields.pop(key, None)
            else:
                self._awareness_fields[key] = value
        if self._ws is None:
            self._set_awareness()
            return
        self._send_awareness()
        # Our own member may have changed (its busy count, or gone when
        # leaving); the server's echo of it is not applied (_handle).
        self._refresh_members()

    def _set_awareness(self):
        self.awareness.set_local_state(self.awareness_state())

    def _send_awareness(self):
        """Set our state and send it. The clock moves on even when the state
        is the same: this is also the renewal."""
        if self._ws is None:
            return
        self._set_awareness()
        self._awareness_due = time.monotonic() + renewal_delay() if self._renewing() else _SILENT
        self._awareness_sent = create_awareness_message(
            self.awareness.encode_awareness_update([self.client_id]))
        self._send(self._awareness_sent)

    # -- stopping --------------------------------------------------------------

    def _stop_due(self, now):
        return self._stop_deadline is not None and now >= self._stop_deadline

    def _begin_stop(self, msg):
        first = self._stop_deadline is None
        self._stop_deadline = msg.deadline if first else min(self._stop_deadline, msg.deadline)
        if first and self._ws is None:
            self._next_connect = min(self._next_connect, time.monotonic())
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
        if self._dirty and time.monotonic() < self._stop_deadline:
            # Changes made while the connection was down (or in flight when it
            # broke): reconnect and have the server confirm them before leaving.
            if self._ws is not None and self._synced and self._flush_probe is None:
                self._flush_probe = self.probe()
            return False
        if self._ws is None:
            self.log.warning("stopping while disconnected from %s: the last changes could not "
                             "be sent", self.shown_url)
        self._close(send_goodbye=True)
        self.log.info("closed %s", self.doc_name)
        return True


def _readable(sock):
    """Bytes wait on ``sock``, in its TLS buffer or the kernel's."""
    if _pending(sock):
        return True
    poller = select.poll()
    try:
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


def _open_websocket(url, *, timeout, header, sslopt):
    ws = websocket.WebSocket(enable_multithread=False, sslopt=sslopt)
    # No redirects: websocket-client would send the Authorization header (and
    # the token in the URL) to wherever the server points.
    ws.connect(url, timeout=timeout, header=header, redirect_limit=0)
    return ws


def _sync_message(subtype, payload):
    out = bytearray([YMessageType.SYNC, subtype])
    write_varuint(out, len(payload))
    out += payload
    return bytes(out)


def _close_status(data):
    data = bytes(data or b"")
    if len(data) < 2:
        return None, ""
    return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8", "replace")[:200]


def _with_token(url, token):
    if not token:
        return url
    return "%s%stoken=%s" % (url, "&" if "?" in url else "?", quote(token, safe=""))


def _auth_header(token):
    return ["Authorization: Bearer %s" % token] if token else None


def _redact(text, secrets):
    """Mask each secret raw and in the quoted forms URLs and headers carry."""
    if isinstance(secrets, str):
        secrets = [secrets]
    forms = set()
    for secret in secrets or ():
        if secret:
            forms.update((secret, quote(secret, safe=""), quote_plus(secret), quote(secret)))
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= 1:
            text = text.replace(form, "***")
    return text


def _mask_url(url):
    """The URL with any password in it replaced by ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    return _redact(url, [password, unquote(password)])


def _pending(sock):
    pending = getattr(sock, "pending", None)
    try:
        return bool(pending and pending())
    except OSError:
        return False
