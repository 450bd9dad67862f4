"""The optional status server: ``/healthz`` and ``/metrics`` on ``--status-addr``.

It runs on its own thread (``status``, plus one short-lived thread per
request) and reads only what is safe to read from another thread: the
:class:`~mrmd_monitor.metrics.Metrics` registry (numbers under a lock) and,
for each document, a sync thread's ``doc_name``, ``synced`` (a bool) and
``last_heard_wall`` (a float epoch or None). It never touches a pycrdt object
and never posts anything: scraping cannot disturb a run.

``health(documents, stopping)`` and ``render_metrics(metrics, documents,
now)`` are plain functions; the HTTP part only serves what they return.
"""

import logging
import mimetypes
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .errors import MonitorError
from .metrics import Metrics

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"

#: Seconds a client may take to send its request before the connection is dropped.
REQUEST_TIMEOUT = 5.0


class StatusServerError(MonitorError):
    """The status server could not listen on its address."""

    def __init__(self, message, *, address=None):
        super().__init__(message)
        self.address = address


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
    timeout = REQUEST_TIMEOUT  # applies to reading the request

    def do_GET(self):
        self._answer(send_body=True)

    def do_HEAD(self):
        self._answer(send_body=False)

    def _answer(self, send_body):
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                ok, text = owner.health()
                code, ctype = (200 if ok else 503), TEXT_CONTENT_TYPE
            elif path == "/metrics":
                code, ctype, text = 200, METRICS_CONTENT_TYPE, owner.metrics_text()
            elif path.startswith("/assets/") and owner.asset(path[len("/assets/"):]) is not None:
                code, (ctype, text) = 200, owner.asset(path[len("/assets/"):])
            else:
                code, ctype, text = 404, TEXT_CONTENT_TYPE, "not found: try /healthz or /metrics\n"
        except Exception:  # noqa: BLE001 - a scrape must never take the monitor down
            log.exception("status request %s failed", path)
            code, ctype, text = 500, TEXT_CONTENT_TYPE, "internal error\n"
        body = text if isinstance(text, bytes) else text.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, fmt, *args):  # the default writes to stderr
        log.debug("status: %s %s", self.address_string(), fmt % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, owner, family):
        self.address_family = family
        self.owner = owner
        super().__init__(address, _Handler)


_ASSET_NAME = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{1,10}$")


class StatusServer:
    """Serves ``/healthz`` and ``/metrics`` on a thread named ``status``.

    ``documents`` is a callable returning the current sync threads (or any
    objects with ``doc_name``, ``synced`` and ``last_heard_wall``);
    ``stopping`` a callable returning True once shutdown has begun.
    ``start()`` raises StatusServerError when the address cannot be bound;
    ``stop()`` is idempotent.
    """

    def __init__(self, address, metrics, documents, stopping=lambda: False, clock=time.time,
                 assets_dir=None):
        self.address = address
        self.assets_dir = assets_dir
        self.metrics = metrics
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
        """``(content type, bytes)`` of a stored rich output, or None. Only
        names the asset store makes (a hash and an extension) are served."""
        if not self.assets_dir or not _ASSET_NAME.match(name):
            return None
        try:
            with open(os.path.join(self.assets_dir, name), "rb") as f:
                data = f.read()
        except OSError:
            return None
        return mimetypes.guess_type(name)[0] or "application/octet-stream", data

    # -- lifecycle -------------------------------------------------------------

    @property
    def bound(self):
        """``(host, port)`` actually listened on (the port is real when 0 was asked)."""
        return self._server.server_address[:2] if self._server is not None else None

    def start(self):
        host, port = split_address(self.address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            server = _Server((host, port), self, family)
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
            self._server.serve_forever(poll_interval=0.5)
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
