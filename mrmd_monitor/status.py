"""The optional status server: ``/healthz``, ``/metrics`` and ``/assets/`` on
``--status-addr``.

It runs on its own thread (``status``, which accepts) plus at most
``MAX_CONNECTIONS`` short-lived threads (``status-conn-<n>``), one per open
connection. Every connection has one deadline for the whole request, reading
and answering alike (``REQUEST_DEADLINE``): at the deadline the accept thread
shuts the socket down, which unblocks its thread however slowly the client
trickles bytes. A connection over the limit gets a 503 at once and is closed.

It reads only what is safe to read from another thread: the
:class:`~mrmd_monitor.metrics.Metrics` registry (numbers under a lock) and,
for each document, a sync thread's ``doc_name``, ``synced`` (a bool) and
``last_heard_wall`` (a float epoch or None). It never touches a pycrdt object
and never posts anything: scraping cannot disturb a run.

``health(documents, stopping)`` and ``render_metrics(metrics, documents,
now)`` are plain functions; the routes (:data:`ROUTES`, one row per path)
name what answers each path (a body is text, bytes, or an open file sent in
pieces and closed afterwards). Every answer says ``X-Content-Type-Options:
nosniff``; assets (notebook output, untrusted) also ``Content-Security-Policy:
sandbox``, so an HTML or SVG asset cannot run script in the server's origin.
"""

import itertools
import json
import logging
import os
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .assets import open_asset, read_asset
from .errors import StatusServerError  # noqa: F401 - re-exported: it lived here
from .metrics import Metrics
from .statuspage import render_html

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"

#: Seconds one read of a request may wait (the whole request has REQUEST_DEADLINE).
REQUEST_TIMEOUT = 5.0
#: Seconds a connection may take, from accept to the last byte of the answer.
REQUEST_DEADLINE = 10.0
#: Connections served at once; more get a 503 at once.
MAX_CONNECTIONS = 32
#: Refused connections kept half-closed for a moment so the client reads its 503.
_MAX_LINGERING = 256
_LINGER = 1.0
_CHUNK = 64 * 1024

_SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"))
_ASSET_HEADERS = (("Content-Security-Policy", "sandbox"),)
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"X-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: 5\r\n\r\n"
            b"busy\n")


def split_address(address):
    """``"127.0.0.1:9464"`` -> ``("127.0.0.1", 9464)``; ``"::1:9464"`` -> ``("::1", 9464)``."""
    host, _, port = str(address).rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def health(documents, stopping=False):
    """``(healthy, text)``: healthy when not stopping and every document is synced."""
    if stopping:
        return False, "stopping\n"
    documents = list(documents)
    behind = [d.doc_name for d in documents if not d.synced]
    if behind:
        return False, "not synced: %s\n" % ", ".join(behind)
    return True, "ok\n"


def render_metrics(metrics, documents, now):
    """The Prometheus text: the shared registry plus, per document, whether it is
    connected and synced and how long ago the sync server last spoke (``now`` is
    a ``time.time()`` value; a document that never heard from the server has no
    age series)."""
    view = Metrics()
    for (name, labels), value in metrics.snapshot().items():
        view.set(name, value, **dict(labels))
    for doc in documents:
        view.set("mrmd_monitor_document_connected", 1 if doc.synced else 0, doc=doc.doc_name)
        heard = doc.last_heard_wall
        if heard is not None:
            view.set("mrmd_monitor_last_sync_age_seconds", round(max(0.0, now - heard), 3),
                     doc=doc.doc_name)
    return view.render_prometheus()


class _Handler(BaseHTTPRequestHandler):
    server_version = "mrmd-monitor"
    timeout = REQUEST_TIMEOUT  # each read; the accept thread enforces the whole deadline

    def do_GET(self):
        self._answer(send_body=True)

    def do_HEAD(self):
        self._answer(send_body=False)

    def _answer(self, send_body):
        path = self.path.split("?", 1)[0]
        try:
            code, ctype, body, headers = self.server.owner.answer(path)
        except Exception:  # noqa: BLE001 - a scrape must never take the monitor down
            log.exception("status request %s failed", path)
            code, ctype, body, headers = 500, TEXT_CONTENT_TYPE, "internal error\n", ()
        if isinstance(body, str):
            body = body.encode("utf-8")
        try:
            size = len(body) if isinstance(body, bytes) else os.fstat(body.fileno()).st_size
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(size))
            for name, value in _SECURITY_HEADERS + tuple(headers):
                self.send_header(name, value)
            self.end_headers()
            if not send_body:
                return
            if isinstance(body, bytes):
                self.wfile.write(body)
            else:
                # A file (an asset): sent in pieces, never held whole in memory.
                shutil.copyfileobj(body, self.wfile, _CHUNK)
        finally:
            if not isinstance(body, bytes):
                body.close()

    def send_error(self, code, message=None, explain=None):
        # The stock error page is HTML without our headers: answer in plain text.
        self.close_connection = True
        try:
            self.send_response(code, message)
            body = ("%d %s\n" % (code, message or "")).encode("utf-8", "replace")
            self.send_header("Content-Type", TEXT_CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            for name, value in _SECURITY_HEADERS:
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, fmt, *args):  # the default writes to stderr
        log.debug("status: %s %s", self.address_string(), fmt % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, owner, family, max_connections, deadline):
        self.address_family = family
        self.owner = owner
        self.deadline = deadline
        self._slots = threading.BoundedSemaphore(max_connections)
        self._max_connections = max_connections
        self._active = {}            # socket -> monotonic deadline; guarded by _active_lock
        self._active_lock = threading.Lock()
        self._lingering = []         # (close at, socket): refused, half-closed
        self._numbers = itertools.count(1)
        self._full = False
        super().__init__(address, _Handler)

    # Runs on the accept thread: hands the connection to a thread of its own,
    # or refuses it when every slot is taken.
    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        if self._full:
            self._full = False
            log.info("status server: below %d connections again", self._max_connections)
        with self._active_lock:
            self._active[request] = time.monotonic() + self.deadline
        thread = threading.Thread(target=self._serve_one, args=(request, client_address),
                                  name="status-conn-%d" % next(self._numbers), daemon=True)
        try:
            thread.start()
        except RuntimeError:  # cannot start a thread: the connection is dropped
            self.shutdown_request(request)
            self._slots.release()
            raise

    def _serve_one(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a client that breaks off is routine
            log.debug("status connection from %s ended early", client_address[0], exc_info=True)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def shutdown_request(self, request):
        # Forget it first, under the lock: the deadline check never shuts down
        # a socket that is being closed (its descriptor could be reused).
        with self._active_lock:
            self._active.pop(request, None)
            super().shutdown_request(request)

    def _refuse(self, request):
        if not self._full:
            self._full = True
            log.warning("status server: %d connections open; refusing new ones with 503 until "
                        "one ends (each ends within %.0fs)", self._max_connections, self.deadline)
        try:
            request.setblocking(False)
            try:
                request.recv(65536)  # what has arrived: closing on unread data would reset
            except OSError:
                pass
            request.send(_REFUSAL)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if len(self._lingering) >= _MAX_LINGERING:
            request.close()
        else:
            self._lingering.append((time.monotonic() + _LINGER, request))

    # Called by serve_forever on the accept thread at least every poll interval.
    def service_actions(self):
        now = time.monotonic()
        with self._active_lock:
            for sock, deadline in list(self._active.items()):
                if deadline <= now:
                    self._active.pop(sock, None)
                    try:
                        sock.shutdown(socket.SHUT_RDWR)  # unblocks its thread's read or write
                    except OSError:
                        pass
        if self._lingering:
            keep = []
            for close_at, sock in self._lingering:
                if close_at <= now:
                    sock.close()
                else:
                    keep.append((close_at, sock))
            self._lingering = keep

    def server_close(self):
        super().server_close()
        for _, sock in self._lingering:
            sock.close()
        self._lingering = []
        with self._active_lock:
            for sock in list(self._active):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class StatusServer:
    """Serves :data:`ROUTES` on a thread named ``status``.

    ``documents`` is a callable returning the current sync threads (or any
    objects with ``doc_name``, ``synced`` and ``last_heard_wall``);
    ``stopping`` a callable returning True once shutdown has begun.
    ``start()`` raises StatusServerError when the address cannot be bound;
    ``stop()`` is idempotent.
    """

    def __init__(self, address, metrics, documents, stopping=lambda: False, clock=time.time,
                 assets_dir=None, max_connections=MAX_CONNECTIONS,
                 request_deadline=REQUEST_DEADLINE, snapshot=None):
        self.address = address
        self.snapshot = snapshot  # () -> the status page's dict (statuspage.py), or None
        self.assets_dir = assets_dir
        self.metrics = metrics
        self.max_connections = max_connections
        self.request_deadline = request_deadline
        self._documents = documents
        self._stopping = stopping
        self._clock = clock
        self._server = None
        self._thread = None
        self._lock = threading.Lock()

    # -- what is served ------------------------------------------------------

    def health(self):
        return health(self._documents(), stopping=self._stopping())

    def metrics_text(self):
        return render_metrics(self.metrics, list(self._documents()), self._clock())

    def asset(self, name):
        """``(content type, bytes)`` of a stored rich output, or None."""
        return read_asset(self.assets_dir, name)

    def answer(self, path):
        """``(status, content type, body, extra headers)`` for ``path``."""
        route = ROUTES.get(path)
        if route is not None:
            return route(self)
        for prefix, prefixed in PREFIX_ROUTES:
            if path.startswith(prefix):
                answer = prefixed(self, path[len(prefix):])
                if answer is not None:
                    return answer
        return self._not_found()

    def _answer_health(self):
        ok, text = self.health()
        return (200 if ok else 503), TEXT_CONTENT_TYPE, text, ()

    def _answer_metrics(self):
        return 200, METRICS_CONTENT_TYPE, self.metrics_text(), ()

    def _answer_page(self):
        """The read-only status page (statuspage.py); only with a snapshot."""
        if self.snapshot is None:
            return self._not_found()
        return 200, HTML_CONTENT_TYPE, render_html(self.snapshot()), ()

    def _answer_status_json(self):
        if self.snapshot is None:
            return self._not_found()
        return 200, JSON_CONTENT_TYPE, json.dumps(self.snapshot()), ()

    @staticmethod
    def _not_found():
        return 404, TEXT_CONTENT_TYPE, "not found: try /healthz or /metrics\n", ()

    def _answer_asset(self, name):
        found = open_asset(self.assets_dir, name)
        if found is None:
            return None
        ctype, f, _size = found
        return 200, ctype, f, _ASSET_HEADERS

    # -- lifecycle -------------------------------------------------------------

    @property
    def bound(self):
        """``(host, port)`` actually listened on (the port is real when 0 was asked)."""
        return self._server.server_address[:2] if self._server is not None else None

    def start(self):
        host, port = split_address(self.address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            server = _Server((host, port), self, family, self.max_connections,
                             self.request_deadline)
        except (OSError, OverflowError) as exc:
            raise StatusServerError("cannot serve /healthz and /metrics on %s: %s"
                                    % (self.address, getattr(exc, "strerror", None) or exc),
                                    address=self.address) from None
        with self._lock:
            self._server = server
            self._thread = threading.Thread(target=self._serve, name="status", daemon=True)
            self._thread.start()
        bound_host, bound_port = self.bound
        log.info("status server listening on http://%s:%d (/healthz, /metrics)",
                 "[%s]" % bound_host if ":" in bound_host else bound_host, bound_port)
        return self

    def _serve(self):
        try:
            self._server.serve_forever(poll_interval=0.25)
        except Exception:  # noqa: BLE001 - never die silently
            log.exception("status server crashed")

    def stop(self, timeout=2.0):
        with self._lock:
            server, thread = self._server, self._thread
            self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()  # returns once serve_forever has left its loop
        server.server_close()
        thread.join(timeout)
        log.info("status server stopped")


# What answers each path: one row per path, a method of StatusServer returning
# (status, content type, body, extra headers). PREFIX_ROUTES take the rest of
# the path and may return None for "not found".
ROUTES = {
    "/healthz": StatusServer._answer_health,
    "/metrics": StatusServer._answer_metrics,
    "/": StatusServer._answer_page,
    "/status.json": StatusServer._answer_status_json,
}
PREFIX_ROUTES = (
    ("/assets/", StatusServer._answer_asset),
)
