"""The sync thread: one per document. It owns the pycrdt Doc, the websocket to
the sync server and the document's Coordinator, and waits in one select()
over the socket and its mailbox. Nothing else touches the Doc.

Speaks the y-websocket protocol (message 0 = sync, 1 = awareness, 3 = query
awareness) with pycrdt's encoders; reconnects with capped, jittered
exponential backoff, keeping the Doc so that output written while the server
was away is sent on the next handshake.
"""

import collections
import logging
import random
import select
import threading
import time
from urllib.parse import quote

import websocket
from pycrdt import (Awareness, Doc, Map, Text, YMessageType, YSyncMessageType,
                    create_awareness_message, create_sync_message,
                    create_update_message, handle_sync_message, read_message)

from . import messages as m
from .coordinator import Coordinator
from .errors import ProtocolError
from .mailbox import Mailbox
from .metrics import Metrics

log = logging.getLogger(__name__)

AWARENESS_RENEW = 15.0      # y-protocols drops a peer after 30 s without a renewal
KEEPALIVE = 20.0            # websocket ping when the line has been quiet this long
DEAD_AFTER = 65.0           # nothing heard (the server pings every 30 s): reconnect
MSG_QUERY_AWARENESS = 3
MSG_AUTH = 2

# Browsers pick 32-bit client ids at random. Yjs lets the larger client id win
# when two peers write the same map key at once; a small id therefore makes a
# browser's concurrent write (a cancel, an answer) win over ours, and the
# monitor re-applies its own fields afterwards (Coordinator._reconcile).
CLIENT_ID_RANGE = (1, 1 << 20)

MONITOR_COLOR = "#7c3aed"


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


def doc_url(sync_url, doc_name):
    return "%s/%s" % (sync_url.rstrip("/"), quote(doc_name, safe="/"))


class SyncThread(threading.Thread):
    def __init__(self, *, config, doc_name, pool, on_synced=None, on_exit=None, client_id=None,
                 metrics=None):
        super().__init__(name="sync:%s" % doc_name, daemon=True)
        self.config = config
        self.doc_name = doc_name
        self.url = doc_url(config.sync_url, doc_name)
        self.mailbox = Mailbox()
        self.doc = Doc(client_id=client_id or random.randrange(*CLIENT_ID_RANGE))
        self.client_id = self.doc.client_id
        self.awareness = Awareness(self.doc)
        self.metrics = metrics if metrics is not None else Metrics()
        # This thread is the coordinator's port to the document (claims.DocPort).
        self.coordinator = Coordinator(self.doc, me=self.client_id, pool=pool, post=self.post,
                                       config=config, port=self, doc_name=doc_name,
                                       metrics=self.metrics)
        self._on_synced = on_synced
        self._on_exit = on_exit
        self.leaving = False   # set by the daemon when the document is being detached
        self._ws = None
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
        self._stop_deadline = None
        self._failures = 0
        self.reconnects = 0
        self.crashed = False
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
        self._send(create_sync_message(self.doc))
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
        return time.time() * 1000 - last < 2 * AWARENESS_RENEW * 1000 + 15000

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
        """Does awareness show any other monitor on this document?"""
        return any(cid != self.client_id and isinstance(state, dict)
                   and state.get("type") == "monitor"
                   for cid, state in self.awareness.states.items())

    def apply_config(self, config):
        """A reloaded configuration (HUP). Only values read at use time change."""
        self.config = config
        self.coordinator.config = config
        self._backoff.cap = config.reconnect_max

    # -- main loop -------------------------------------------------------------

    def run(self):
        try:
            self._loop()
        except BaseException:  # noqa: B902 - log, never die silently
            self.crashed = True
            log.exception("sync thread for %s crashed", self.doc_name, extra={"doc": self.doc_name})
        finally:
            self._close(send_goodbye=False)
            self.mailbox.close()
            self.metrics.remove(doc=self.doc_name)
            if self._on_exit is not None:
                self._on_exit(self)

    def _loop(self):
        self._set_awareness()
        while True:
            now = time.monotonic()
            if self._ws is None and now >= self._next_connect and not self._stop_due(now):
                self._connect()
            waits = [self.coordinator.tick()]
            now = time.monotonic()
            if self._ws is None:
                waits.append(self._next_connect - now)
            else:
                waits.append(self._awareness_due - now)
                waits.append(self._last_sent + KEEPALIVE - now)
                waits.append(self._last_heard + DEAD_AFTER - now)
            if self._stop_deadline is not None:
                waits.append(self._stop_deadline - now)
            timeout = max(0.0, min(w for w in waits if w is not None))
            readers = [self.mailbox]
            if self._ws is not None:
                readers.append(self._ws.sock)
            if self._ws is not None and _pending(self._ws.sock):
                ready = [self._ws.sock]
            else:
                ready, _, _ = select.select(readers, [], [], timeout)
            if self._ws is not None and self._ws.sock in ready:
                self._receive_all()
            if self.mailbox in ready:
                for msg in self.mailbox.drain(500):
                    self._dispatch(msg)
            self.coordinator.tick()
            self._timers(time.monotonic())
            self._send_outbox()
            if self._stop_deadline is not None and self._finish_stop():
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
        if now >= self._awareness_due:
            self._send_awareness()
        if now - self._last_heard >= DEAD_AFTER:
            self._disconnect("nothing heard from the server for %ds" % DEAD_AFTER)
        elif now - self._last_sent >= KEEPALIVE:
            self._guard(self._ws.ping)

    # -- connection ------------------------------------------------------------

    def _connect(self):
        try:
            sslopt = {"ca_certs": self.config.ca_file} if self.config.ca_file else None
            ws = websocket.WebSocket(enable_multithread=False, sslopt=sslopt)
            ws.connect(_with_token(self.url, self.config.token),
                       timeout=self.config.connect_timeout,
                       header=_auth_header(self.config.token))
        except (OSError, websocket.WebSocketException) as exc:
            self._failures += 1
            delay = self._backoff.next()
            self._next_connect = time.monotonic() + delay
            level = logging.WARNING if self._failures in (1, 10) or self._failures % 100 == 0 else logging.DEBUG
            log.log(level, "cannot connect to %s (%s); retrying in %.1fs (attempt %d)",
                    self.url, _redact(str(exc), self.config.token), delay, self._failures,
                    extra={"doc": self.doc_name})
            return
        ws.settimeout(self.config.connect_timeout)
        self._ws = ws
        now = time.monotonic()
        self._last_heard = now
        log.info("connected to %s", self.url, extra={"doc": self.doc_name})
        self._send(create_sync_message(self.doc))
        self._send_awareness()

    def _disconnect(self, reason):
        if self._ws is None:
            return
        log.warning("lost connection to %s: %s", self.url, reason, extra={"doc": self.doc_name})
        self._close(send_goodbye=False)
        self._synced = False
        self._probes.clear()
        self.reconnects += 1
        self.metrics.inc("mrmd_monitor_reconnects_total", doc=self.doc_name)
        self.metrics.set("mrmd_monitor_document_connected", 0, doc=self.doc_name)
        delay = self._backoff.next()
        self._next_connect = time.monotonic() + delay
        log.info("reconnecting in %.1fs", delay, extra={"doc": self.doc_name})

    def _close(self, send_goodbye):
        ws, self._ws = self._ws, None
        self._outbox.clear()  # recovered from the state vectors on the next handshake
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

    def _send_outbox(self):
        while self._outbox and self._ws is not None:
            data = self._outbox.pop(0)
            self._send(data)

    # -- incoming --------------------------------------------------------------

    def _receive_all(self, limit=200):
        """Apply every frame already waiting, then let the coordinator look at
        the entries that changed: a claim is never decided on a view older
        than what has already arrived (another monitor's claim included)."""
        for _ in range(limit):
            self._receive()
            if self._ws is None or not _readable(self._ws.sock):
                break
        if self._synced and self._changed:
            keys, self._changed = list(self._changed), set()
            self.coordinator.on_entries_changed(keys)

    def _receive(self):
        try:
            opcode, frame = self._ws.recv_data_frame(True)
        except (OSError, websocket.WebSocketException) as exc:
            self._disconnect(str(exc) or type(exc).__name__)
            return
        self._last_heard = time.monotonic()
        self.last_heard_wall = time.time()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self._disconnect("the server closed the connection")
            return
        if opcode not in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT):
            return
        data = frame.data if isinstance(frame.data, bytes) else bytes(frame.data)
        try:
            self._handle(data)
        except ProtocolError as exc:
            log.error("undecodable message from %s: %s", self.url, exc, extra={"doc": self.doc_name})

    def _handle(self, data):
        if not data:
            return
        kind = data[0]
        if kind == YMessageType.SYNC:
            self._handle_sync(data)
        elif kind == YMessageType.AWARENESS:
            try:
                self.awareness.apply_awareness_update(read_message(data[1:]), "remote")
            except Exception as exc:  # noqa: BLE001 - a peer's garbage must not kill us
                raise ProtocolError("bad awareness message: %s" % exc, doc=self.doc_name) from exc
        elif kind == MSG_QUERY_AWARENESS:
            self._send_awareness()
        elif kind == MSG_AUTH:
            log.error("the sync server refused access to %s", self.doc_name, extra={"doc": self.doc_name})

    def _handle_sync(self, data):
        if len(data) < 2:
            raise ProtocolError("truncated sync message", doc=self.doc_name)
        sub = data[1]
        self._applying_remote = True
        try:
            reply = handle_sync_message(data[1:], self.doc)
        except Exception as exc:  # noqa: BLE001 - pycrdt raises plain errors on bad bytes
            raise ProtocolError("bad sync message: %s" % exc, doc=self.doc_name) from exc
        finally:
            self._applying_remote = False
        if reply is not None:
            self._send(reply)
        if sub == YSyncMessageType.SYNC_STEP2 and self._synced and self._probes:
            self.coordinator.on_probe_acked(self._probes.popleft())
        if sub == YSyncMessageType.SYNC_STEP2 and not self._synced:
            self._synced = True
            self.metrics.set("mrmd_monitor_document_connected", 1, doc=self.doc_name)
            self._failures = 0
            self._backoff.reset()
            log.info("synced %s", self.doc_name, extra={"doc": self.doc_name})
            self._changed.clear()
            self.coordinator.on_synced()
            if not self._ever_synced:
                self._ever_synced = True
                if self._on_synced is not None:
                    self._on_synced(self)

    # -- doc callbacks (run inside our own transactions and apply_update) -----

    def _on_update(self, event):
        if self._applying_remote:
            return  # never echo a remote update back to the server
        if self._ws is not None:
            self._outbox.append(create_update_message(event.update))

    def _on_text_event(self, _event):
        if self._applying_remote:
            self.coordinator.text_epoch += 1  # another peer moved text: positions are stale

    def _on_entries_event(self, event):
        if self._applying_remote:
            self._changed.update(event.keys)

    # -- awareness -------------------------------------------------------------

    def _set_awareness(self):
        self.awareness.set_local_state({"name": self.config.name, "color": MONITOR_COLOR,
                                        "type": "monitor"})

    def _send_awareness(self):
        if self._ws is None:
            return
        state = self.awareness.get_local_state()
        if state is not None:
            self.awareness.set_local_state(state)  # bumps the clock: a renewal
        self._awareness_due = time.monotonic() + AWARENESS_RENEW
        self._send(create_awareness_message(self.awareness.encode_awareness_update([self.client_id])))

    # -- stopping --------------------------------------------------------------

    def _stop_due(self, now):
        return self._stop_deadline is not None and now >= self._stop_deadline

    def _begin_stop(self, msg):
        first = self._stop_deadline is None
        self._stop_deadline = msg.deadline if first else min(self._stop_deadline, msg.deadline)
        if first:
            self.coordinator.stop_claiming()
            self.coordinator.release_unstarted(msg.reason)
            log.info("stopping: %d run(s) may finish within %.1fs", self.coordinator.active(),
                     max(0.0, msg.deadline - time.monotonic()), extra={"doc": self.doc_name})

    def _finish_stop(self):
        if self.coordinator.active() and time.monotonic() < self._stop_deadline:
            return False
        self.coordinator.flush_all()
        if self.coordinator.active():
            self.coordinator.settle("the monitor was stopped before the run finished")
        self._send_outbox()
        if self._ws is None:
            log.warning("stopping while disconnected from %s: the last changes could not be sent",
                        self.url, extra={"doc": self.doc_name})
        self._close(send_goodbye=True)
        log.info("closed %s", self.doc_name, extra={"doc": self.doc_name})
        return True


def _readable(sock):
    if _pending(sock):
        return True
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(ready)


def _with_token(url, token):
    if not token:
        return url
    return "%s%stoken=%s" % (url, "&" if "?" in url else "?", quote(token, safe=""))


def _auth_header(token):
    return ["Authorization: Bearer %s" % token] if token else None


def _redact(text, token):
    return text.replace(token, "***") if token else text


def _pending(sock):
    pending = getattr(sock, "pending", None)
    try:
        return bool(pending and pending())
    except OSError:
        return False
