"""Cancellable HTTP plumbing: strict URLs, an allowlist, sockets a token can
shut down from another thread, and whole-request deadlines.

Nothing here knows MRP. Everything blocks the calling thread; a
:class:`CancelToken` is the only object shared between threads.
"""

from __future__ import annotations

import fnmatch
import heapq
import ipaddress
import itertools
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .errors import URLRefused  # noqa: F401 - raised here; http.URLRefused is used by callers

log = logging.getLogger(__name__)

MAX_URL_CHARS = 2048
# Underscores are not valid in DNS names but common in container service names.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(r"(?:%s\.)*%s\.?" % (_LABEL, _LABEL))
# Digits, dots and hex: forms like 127.1, 0x7f.1 or 2130706433 that the
# resolver turns into addresses the allowlist would never see as such.
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]*))*\.?")
_PATH = re.compile(r"(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class HttpURL:
    """A URL taken apart and checked. Connections are made to ``base``, built
    from these parts, never to the string that was parsed."""

    scheme: str
    host: str     # lower case; an IPv6 address without brackets
    port: int
    path: str     # "" or "/..." without a trailing slash

    @property
    def netloc(self) -> str:
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%d" % (host, self.port)

    @property
    def base(self) -> str:
        return "%s://%s%s" % (self.scheme, self.netloc, self.path)

    def join(self, suffix: str) -> str:
        return self.base + suffix

    def __str__(self) -> str:
        return self.base


def parse_url(url: Any) -> HttpURL:
    """Check ``url`` and take it apart; raises URLRefused with the reason.

    Refused: anything but http(s), userinfo, backslashes, control characters
    or spaces, a query or fragment, hosts that are not plain names or IP
    addresses, ports out of range.
    """
    if not isinstance(url, str) or not url:
        raise URLRefused("the URL is empty")
    if len(url) > MAX_URL_CHARS:
        raise URLRefused("the URL is longer than %d characters" % MAX_URL_CHARS)
    if _CONTROL.search(url) or any(c.isspace() for c in url):
        raise URLRefused("the URL contains control characters or spaces")
    if "\\" in url:
        raise URLRefused("the URL contains a backslash")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise URLRefused("the URL must start with http:// or https://")
    if "?" in rest or "#" in rest:
        raise URLRefused("the URL must not have a query or a fragment")
    slash = rest.find("/")
    authority, path = (rest, "") if slash == -1 else (rest[:slash], rest[slash:])
    if "@" in authority:
        raise URLRefused("the URL must not carry a user name or password")
    if authority.startswith("["):
        end = authority.find("]")
        if end == -1:
            raise URLRefused("the URL has an unclosed IPv6 address")
        host, port_text = authority[1:end], authority[end + 1:]
        if "%" in host:
            raise URLRefused("the URL's IPv6 address has a zone")
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise URLRefused("the URL's host is not a valid IPv6 address") from None
        if port_text and not port_text.startswith(":"):
            raise URLRefused("the URL's host is malformed")
        port_text = port_text[1:] if port_text else ""
    else:
        host, _, port_text = authority.partition(":")
        host = host.lower()
        if not host.isascii() or not _HOST_NAME.fullmatch(host):
            raise URLRefused("the URL's host is not a valid host name or address")
        if _NUMERIC_HOST.fullmatch(host):
            try:
                host = str(ipaddress.IPv4Address(host.rstrip(".")))
            except ValueError:
                raise URLRefused("the URL's host is not a canonical IPv4 address") from None
    if port_text == "" and ":" in authority.rpartition("]")[2]:
        raise URLRefused("the URL's port is empty")
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            raise URLRefused("the URL's port is not a number from 1 to 65535")
        port = int(port_text)
    else:
        port = 443 if scheme == "https" else 80
    if not _PATH.fullmatch(path):
        raise URLRefused("the URL's path contains characters that are not allowed")
    return HttpURL(scheme, host, port, path.rstrip("/"))


def runtime_origin(url: Any) -> str:
    """The runtime's ``host:port`` as one canonical string, for what must not
    change with the spelling of its URL (a worker share, a metrics label):
    host case, a trailing dot, the path and every loopback or unspecified
    address (``127.0.0.2``, ``::1``, ``0.0.0.0``, ``::ffff:127.0.0.1``, all
    reaching this machine) fold into one. A URL that does not parse is its
    own origin (it is refused before any call)."""
    try:
        parsed = parse_url(url)
    except URLRefused:
        return "invalid:%s" % sanitize(str(url), 80)
    host = parsed.host.rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if host == "localhost" or (address is not None
                               and (address.is_loopback or address.is_unspecified)):
        host = "localhost"
    elif address is not None:
        host = str(address)
    return "%s:%d" % ("[%s]" % host if ":" in host else host, parsed.port)


def refused_by_allowlist(url: HttpURL, patterns) -> Optional[str]:
    """Why ``url`` is not allowed by ``patterns``, or None if one allows it.

    A pattern is a host name (shell wildcards allowed, ``*`` allows any), an
    IP network (``10.0.0.0/8``) or ``host:port``. Names are compared as
    written, never resolved: a name that happens to resolve to an allowed
    address is still refused unless it is listed.
    """
    host = url.host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for pattern in patterns:
        pattern = str(pattern).strip().lower()
        if not pattern:
            continue
        if "/" in pattern:
            try:
                if address is not None and address in ipaddress.ip_network(pattern, strict=False):
                    return None
            except ValueError:
                pass
            continue
        if address is not None:
            try:
                if address == ipaddress.ip_address(pattern.strip("[]")):
                    return None
            except ValueError:
                pass
        if fnmatch.fnmatchcase(host, pattern) or fnmatch.fnmatchcase("%s:%d" % (host, url.port),
                                                                     pattern):
            return None
    return ("runtime host %s is not allowed by this monitor (--allow-runtime %s)"
            % (host, ", ".join(str(p) for p in patterns)))


def url_refused(url: Any, patterns) -> Optional[str]:
    """Why the monitor must not call ``url``: a parse problem or the allowlist."""
    try:
        parsed = parse_url(url)
    except URLRefused as exc:
        return "runtimeUrl refused: %s" % exc
    return refused_by_allowlist(parsed, patterns)


def sanitize(text: str, limit: int = 120) -> str:
    """A short excerpt safe to write anywhere: no control characters, one line."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[:limit] + "..."


# -- cancelling a blocked socket ----------------------------------------------

class CancelToken:
    """Stops one request from any thread.

    The reading thread registers the socket of its live connection;
    ``cancel()`` (the user gave up) or ``expire(reason)`` (a deadline passed)
    sets a flag and shuts that socket down (``SHUT_RDWR``), so that a reader
    blocked in ``recv`` wakes at once. Neither ever blocks: the response is
    closed by its own thread (``response.close()`` can hang on the reader's
    lock). Without a socket, the flag still stops the reader at the next event.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._expired: Optional[str] = None
        self._event = threading.Event()
        self._sock: Any = None
        self._drain = 0.0
        self._drain_handle: Optional[list] = None

    def drain_on_cancel(self, seconds: float) -> None:
        """On the first cancel() of the registered socket, let the reader go on
        reading (and discarding) for up to ``seconds`` before the socket is
        shut down: a server that ties its state to the request (MRP 0.3.0
        stays busy for good when its stream is cut) can then finish cleanly.
        A second cancel(), or any deadline, shuts the socket down at once."""
        with self._lock:
            self._drain = max(0.0, seconds)

    @property
    def draining(self) -> bool:
        """Cancelled, and the reader may still read until the server is done."""
        return self._drain_handle is not None

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` unless stopped first; True if stopped."""
        return self._event.wait(seconds)

    def cancel(self) -> None:
        self._stop(None)

    def expire(self, reason: str) -> None:
        """A deadline passed: stop like cancel(), remembering why."""
        self._stop(reason)

    def _stop(self, reason: Optional[str]) -> None:
        with self._lock:
            if reason is None:
                first = not self._cancelled
                self._cancelled = True
                if first and self._drain > 0 and self._sock is not None:
                    # Draining before stopped: the reader checks stopped, then
                    # draining, without the lock, and one that saw only stopped
                    # closed the stream it was to drain.
                    self._drain_handle = DEADLINES.call_at(time.monotonic() + self._drain,
                                                           self._end_drain)
                    self._event.set()
                    return
            elif not self._cancelled and self._expired is None:
                self._expired = reason
            self._event.set()
            self._cancel_drain()
            sock, self._sock = self._sock, None
            # Under the lock, so the reader cannot hand its connection back
            # for reuse between our read of _sock and the shutdown.
            if sock is not None:
                shutdown_socket(sock)

    def _end_drain(self) -> None:
        with self._lock:
            self._drain_handle = None
            sock, self._sock = self._sock, None
            if sock is not None:
                shutdown_socket(sock)

    def _cancel_drain(self) -> None:
        handle, self._drain_handle = self._drain_handle, None
        if handle is not None:
            DEADLINES.cancel(handle)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def expired(self) -> Optional[str]:
        """The reason given to expire(), unless cancel() came first."""
        return None if self._cancelled else self._expired

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def attach(self, sock: Any) -> None:
        """Register the reader's socket; shut it down at once if already stopped
        (unless the stream is being drained: a cancel that came while the request
        was on its way still lets the runtime end the execution it began)."""
        if sock is None:
            return
        with self._lock:
            if self._event.is_set() and self._drain_handle is None:
                shutdown_socket(sock)
            else:
                self._sock = sock

    def detach(self) -> None:
        with self._lock:
            self._sock = None
            self._cancel_drain()

    # The names older callers used.
    _attach = attach
    _detach = detach


def shutdown_socket(sock: Any) -> None:
    try:
        if isinstance(sock, socket.socket):
            # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops
            # the SSL object under the reader's feet.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError) as exc:  # already closed or never connected
        log.debug("socket shutdown on cancel: %s", exc)


class Deadlines:
    """Calls ``fn()`` at monotonic time ``when`` for every pending deadline,
    from one thread that exists only while some deadline is pending (so an
    idle process, and a test, has no thread left over)."""

    def __init__(self, name: str = "deadlines") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def call_at(self, when: float, fn: Callable[[], None]) -> list:
        """Arm a deadline; returns a handle for cancel()."""
        handle = [when, next(self._seq), fn]
        with self._cond:
            heapq.heappush(self._heap, handle)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return handle

    def cancel(self, handle: list) -> bool:
        """Disarm; False if the deadline has already fired."""
        with self._cond:
            try:
                self._heap.remove(handle)
            except ValueError:
                return False
            heapq.heapify(self._heap)
            self._cond.notify()
            return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        self._thread = None
                        return
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        fn = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(delay)
            try:
                fn()
            except Exception:  # noqa: BLE001 - one bad callback must not stop the others
                log.exception("a deadline callback failed")


DEADLINES = Deadlines()


# -- requests/urllib3 adapters that hand each new socket to a token -------------

# The token of the request this thread is opening, so that the socket can be
# shut down from the moment it connects, before any response header arrives.
_opening = threading.local()


def register_new_socket(sock: Any) -> None:
    token = getattr(_opening, "token", None)
    if token is not None:
        token.attach(sock)


class opening:
    """``with opening(token): session.post(...)``: sockets connected inside
    the block are registered with ``token``."""

    def __init__(self, token: CancelToken) -> None:
        self.token = token

    def __enter__(self):
        _opening.token = self.token
        return self

    def __exit__(self, *exc):
        _opening.token = None


class _CancellableHTTPConnection(HTTPConnection):
    def _new_conn(self):  # the TCP socket, right after connect (before TLS)
        sock = super()._new_conn()
        register_new_socket(sock)
        return sock


class _CancellableHTTPSConnection(HTTPSConnection):
    def _new_conn(self):
        sock = super()._new_conn()
        register_new_socket(sock)
        return sock


class _NoReuse:
    """A connection is never used twice. We ask "Connection: close", but an
    error answer that does not say so itself is read to its end and handed
    back to the pool, where the next attempt would find a socket the server
    has just closed."""

    def _put_conn(self, conn):
        if conn is not None:
            conn.close()   # the pool reconnects it on its next use
        super()._put_conn(conn)


class _CancellableHTTPPool(_NoReuse, HTTPConnectionPool):
    ConnectionCls = _CancellableHTTPConnection


class _CancellableHTTPSPool(_NoReuse, HTTPSConnectionPool):
    ConnectionCls = _CancellableHTTPSConnection


class CancellableAdapter(HTTPAdapter):
    """Opens connections whose socket is handed to the current CancelToken.

    Without it a cancel or a deadline could only act once the response
    headers are in, so a server that accepts and then stalls would hold the
    thread. Proxied requests use the stock classes and are cancellable from
    the headers on.
    """

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CancellableHTTPPool, "https": _CancellableHTTPSPool}


def new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False   # no proxies or netrc from the environment: the URL is the peer
    adapter = CancellableAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def response_socket(response: requests.Response) -> Any:
    """The socket under a streaming ``requests`` response, or None
    (urllib3 2.x: ``response.raw.connection.sock``)."""
    raw = getattr(response, "raw", None)
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    return sock if sock is not None and hasattr(sock, "shutdown") else None
