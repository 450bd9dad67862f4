"""One document's websocket to the sync server: open, read, send, keep
alive, close, and when to try again (capped exponential backoff with
jitter). Secrets in what it logs go through redact.py.

websocket-client opens the connection and sends; reading is ours
(wsframes.py). Every failure ends in :meth:`Connection.lose`, which closes,
tells the owner through ``on_closed`` and schedules the next attempt: the sync
thread's loop opens again once ``next_connect`` has passed.
"""

import logging
import os
import random
import select
import ssl
import threading
import time
from urllib.parse import quote, urlsplit

import websocket
from pycrdt import read_message

from . import redact, wsframes
from .errors import FrameError, SyncAuthRefused

log = logging.getLogger(__name__)

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

# Close codes and HTTP statuses that retrying cannot fix: the server refused us.
CLOSE_POLICY = 1008
_REFUSED_STATUSES = (401, 403)
# While stopping, keep trying to flush within --grace.
_STOPPING_RETRY = 0.5

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


def doc_url(sync_url, doc_name):
    return "%s/%s" % (sync_url.rstrip("/"), quote(doc_name, safe="/"))


def open_websocket(url, *, timeout, header, sslopt):
    ws = websocket.WebSocket(enable_multithread=False, sslopt=sslopt)
    # No redirects: websocket-client would send the Authorization header (and
    # the token in the URL) to wherever the server points.
    ws.connect(url, timeout=timeout, header=header, redirect_limit=0)
    return ws


class Connection:
    """The websocket of one document, owned by its sync thread.

    ``poller`` is the thread's poll object: the socket is registered while
    open. ``connect(url, **options)`` opens a websocket.WebSocket (tests pass
    one that speaks over a socketpair). ``on_closed(broken)`` is called when an
    open connection ends (``broken``: lost, not closed by us)."""

    def __init__(self, *, url, config, doc_name, log, poller, connect=None, on_closed=None):
        self.url = url
        self.config = config
        self.doc_name = doc_name
        self.log = log
        self.mask = _masker(url, config.token)
        self.shown_url = self.mask(url)
        self._open = connect or open_websocket
        self._poller = poller
        self.on_closed = on_closed
        self.ws = None
        self._fd = None
        self._frames = None
        self.backoff = Backoff(cap=config.reconnect_max)
        self.next_connect = 0.0
        self.last_heard = 0.0
        self.last_sent = 0.0
        self.last_heard_wall = None  # read by the status server: a float is safe to share
        self.failures = 0
        self.reconnects = 0
        self.stopping = False

    def configure(self, config):
        """A reloaded configuration (HUP)."""
        self.config = config
        self.backoff.cap = config.reconnect_max
        self.mask = _masker(self.url, config.token)

    @property
    def sock(self):
        return self.ws.sock if self.ws is not None else None

    # -- opening ------------------------------------------------------------------

    def open(self):
        """Try to connect; True when connected. Raises SyncAuthRefused when
        the server refuses the monitor (retrying cannot help)."""
        self._warn_plain_token()
        token = self.config.token
        try:
            sslopt = {"ca_certs": self.config.ca_file} if self.config.ca_file else None
            ws = self._open(_with_token(self.url, token), timeout=self.config.connect_timeout,
                            header=["Authorization: Bearer %s" % token] if token else None,
                            sslopt=sslopt)
        except websocket.WebSocketBadStatusException as exc:
            if exc.status_code in _REFUSED_STATUSES:
                raise SyncAuthRefused(
                    "the sync server refused the monitor for %s (HTTP %d at the handshake): "
                    "check --token" % (self.doc_name, exc.status_code),
                    doc=self.doc_name, url=self.shown_url) from None
            self._failed(exc)
            return False
        except (OSError, websocket.WebSocketException) as exc:
            self._failed(exc)
            return False
        ws.settimeout(self.config.connect_timeout)
        self.ws = ws
        self._frames = wsframes.FrameReader(MAX_RECEIVED_MESSAGE_BYTES)
        self._fd = ws.sock.fileno()
        self._poller.register(self._fd, select.POLLIN)
        self.last_heard = time.monotonic()
        self.log.info("connected to %s", self.shown_url)
        return True

    def healthy(self):
        """The handshake is done: the next failure starts the backoff anew."""
        self.failures = 0
        self.backoff.reset()

    def _retry_delay(self):
        delay = self.backoff.next()
        return min(delay, _STOPPING_RETRY) if self.stopping else delay

    def _failed(self, exc):
        self.failures += 1
        delay = self._retry_delay()
        self.next_connect = time.monotonic() + delay
        level = (logging.WARNING if self.failures in (1, 10) or self.failures % 100 == 0
                 else logging.DEBUG)
        self.log.log(level, "cannot connect to %s (%s); retrying in %.1fs (attempt %d)",
                     self.shown_url, self.mask(str(exc) or type(exc).__name__), delay,
                     self.failures)

    def _warn_plain_token(self):
        if not self.config.token or urlsplit(self.url).scheme != "ws":
            return
        with _plain_token_lock:
            if self.config.sync_url in _plain_token_warned:
                return
            _plain_token_warned.add(self.config.sync_url)
        log.warning("the sync token is sent over unencrypted ws:// to %s: anyone on the path can "
                    "read it; use wss://", redact.mask(self.config.sync_url))

    # -- closing ------------------------------------------------------------------

    def lose(self, reason):
        """The connection broke: close it and schedule the next attempt."""
        if self.ws is None:
            return
        self.log.warning("lost connection to %s: %s", self.shown_url, self.mask(reason))
        self._shut(None, broken=True)
        self.reconnects += 1
        delay = self._retry_delay()
        self.next_connect = time.monotonic() + delay
        self.log.info("reconnecting in %.1fs", delay)

    def close(self, goodbye=None):
        """Close on purpose, after sending ``goodbye`` (bytes) if given."""
        self._shut(goodbye, broken=False)

    def _shut(self, goodbye, broken):
        ws, self.ws = self.ws, None
        if self._fd is not None:
            # Before the socket closes: its number may be reused by another document's.
            self._poller.unregister(self._fd)
            self._fd = None
        if ws is None:
            return
        if self.on_closed is not None:
            self.on_closed(broken)
        if goodbye is not None:
            try:
                ws.send_binary(goodbye)
            except (OSError, websocket.WebSocketException):
                pass
        try:
            ws.close(timeout=1.0)
        except (OSError, websocket.WebSocketException):
            pass

    # -- sending ------------------------------------------------------------------

    def _guard(self, fn, *args):
        try:
            fn(*args)
            self.last_sent = time.monotonic()
            return True
        except (OSError, websocket.WebSocketException) as exc:
            self.lose(str(exc) or type(exc).__name__)
            return False

    def send(self, data):
        """Send one binary message; False (and the connection lost) on failure."""
        return self.ws is not None and self._guard(self.ws.send_binary, data)

    def send_all(self, messages):
        """Send each message in turn, as long as the connection holds."""
        for message in messages:
            if not self.send(message):
                return

    def deadline(self, until):
        """``until``, or earlier when a keepalive or the dead-line check is due."""
        if self.ws is None:
            return until
        return min(until, max(self.last_sent, self.last_heard) + KEEPALIVE,
                   self.last_heard + DEAD_AFTER)

    def keepalive(self, now):
        if self.ws is None:
            return
        if now - self.last_heard >= DEAD_AFTER:
            self.lose("nothing heard from the server for %ds" % DEAD_AFTER)
        elif now - max(self.last_sent, self.last_heard) >= KEEPALIVE:
            self._guard(self.ws.ping)

    # -- reading ------------------------------------------------------------------

    def messages(self, reads=RECEIVE_READS):
        """The data messages already waiting (at most ``reads`` reads), the
        server's pings answered on the way. Stops early once the connection
        is gone (the caller checks ``ws``)."""
        size = RECEIVE_FIRST
        for _ in range(reads):
            sock = self.ws.sock
            try:
                data = sock.recv(size)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return
            except (OSError, ValueError) as exc:
                self.lose(str(exc) or type(exc).__name__)
                return
            if not data:
                self.lose("the server closed the connection without a close frame")
                return
            self.last_heard = time.monotonic()
            self.last_heard_wall = time.time()
            try:
                frames = self._frames.feed(data)
            except FrameError as exc:
                self.log.error("refused what %s sent: %s", self.shown_url, exc)
                self.lose("unreadable frames")
                return
            for opcode, payload in frames:
                if opcode == wsframes.OP_PING:
                    self._guard(self.ws.sock.sendall, wsframes.pong(payload, os.urandom(4)))
                elif opcode == wsframes.OP_CLOSE:
                    self._closed_by_server(payload)
                elif opcode != wsframes.OP_PONG:
                    yield payload
                if self.ws is None:
                    return
            if len(data) < size and not pending(sock):
                return
            if not readable(sock):
                return
            size = RECEIVE_BYTES

    def waiting(self):
        """Bytes wait on the socket (catch_up)."""
        return self.ws is not None and readable(self.ws.sock)

    def _closed_by_server(self, payload):
        code, reason = _close_status(payload)
        if code == CLOSE_POLICY:
            self.close()
            raise SyncAuthRefused(
                "the sync server refused the monitor for %s: %s (close code 1008); check "
                "--token" % (self.doc_name, self.mask(reason) or "policy violation"),
                doc=self.doc_name, url=self.shown_url)
        self.lose("the server closed the connection" +
                  (" (%d %s)" % (code, self.mask(reason)) if code else ""))

    def refused(self, message):
        """The server denied access: the error for its y-protocols auth
        ``message`` (type 2; then 0 = permission denied, with a reason)."""
        reason = ""
        try:
            if len(message) > 1 and message[1] == 0:
                reason = bytes(read_message(message[2:])).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - the reason is only for the log line
            reason = ""
        self.close()
        return SyncAuthRefused("the sync server denied access to %s: %s"
                               % (self.doc_name, self.mask(reason) or "permission denied"),
                               doc=self.doc_name, url=self.shown_url)


def _masker(url, token):
    return redact.Masker(([token] if token else []) + redact.url_secrets(url))


def _with_token(url, token):
    if not token:
        return url
    return "%s%stoken=%s" % (url, "&" if "?" in url else "?", quote(token, safe=""))


def _close_status(data):
    data = bytes(data or b"")
    if len(data) < 2:
        return None, ""
    return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8", "replace")[:200]


def pending(sock):
    """Bytes wait in ``sock``'s TLS buffer."""
    pending_fn = getattr(sock, "pending", None)
    try:
        return bool(pending_fn and pending_fn())
    except OSError:
        return False


def readable(sock):
    """Bytes wait on ``sock``, in its TLS buffer or the kernel's."""
    if pending(sock):
        return True
    poller = select.poll()
    try:
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False
