"""MRP client: run code on a runtime over HTTP + server-sent events.

Everything here blocks the calling thread; nothing is shared between threads
except a :class:`CancelToken`, whose ``cancel()`` any thread may call.

Throughput matters here. mrmd-python sends every ``stdout``/``stderr`` chunk
as ``{"content": ..., "accumulated": <all output so far>}``, so the stream
grows quadratically with the output (50,000 printed lines: 0.1 to 0.6 GB,
depending on how the runtime happens to chunk). Two things keep the client
cheap; client CPU per 100 MB of stream, measured against mrmd-python 0.4.2:

* the body is read as it arrives, up to 64 KiB at a time
  (:func:`_stream_chunks`), not in requests' 128-byte chunks;
* output events are split at the byte level (:mod:`.sse`): only ``content``
  is decoded and the ``accumulated`` bytes are skipped by ``bytes.find``,
  never copied into strings; other events go to sseclient-py. Measured on
  the benchmark's 1.2 GB stream (100,000 lines): sseclient-py on 64 KiB
  chunks with a ``content``-only decode needed 3.2 s against the bare
  ``http.client`` reader's 0.4-0.5 s; see tests/benchmarks for the current
  figure.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError

from .sse import iter_events
from .errors import Cancelled, MrpError, RuntimeHTTPError, RuntimeUnavailable, StreamError

log = logging.getLogger(__name__)

#: Bytes per read handed to the SSE parser.
STREAM_CHUNK_SIZE = 65536
#: Longest excerpt of an unexpected response body quoted in an error message.
BODY_EXCERPT_CHARS = 200
#: How long a refused ``/input`` is retried (see :meth:`MrpClient.send_input`).
INPUT_RETRY_SECONDS = 1.5

OUTPUT_KINDS = frozenset(("stdout", "stderr"))
FINAL_KINDS = frozenset(("result", "error"))

_OUTPUT_PREFIX = '{"content": '
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class MrpEvent:
    """One server-sent event from ``/execute/stream``.

    ``kind`` is the SSE event name (``start``, ``stdout``, ``stderr``,
    ``stdin_request``, ``display``, ``asset``, ``result``, ``error``, ``done``,
    ``ping``; unknown names are passed through). ``data`` is the parsed JSON
    object; for ``stdout``/``stderr`` it never holds ``accumulated``.
    """

    kind: str
    data: dict


class CancelToken:
    """Cancels one stream from any thread.

    The reading thread registers the socket of its live response; ``cancel()``
    sets a flag and shuts that socket down (``SHUT_RDWR``) so that the reader,
    blocked in ``recv``, wakes at once. ``cancel()`` never blocks: it does not
    close the response (``response.close()`` can hang on the reader's lock);
    the reader closes it on its own thread. If no socket could be found, the
    flag alone still stops the reader at the next event.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._event = threading.Event()
        self._sock: Any = None

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` unless cancelled first; True if cancelled."""
        return self._event.wait(seconds)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            self._event.set()
            sock, self._sock = self._sock, None
            # Under the lock, so the reader cannot hand its connection back
            # for reuse between our read of _sock and the shutdown.
            if sock is not None:
                _shutdown_socket(sock)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _attach(self, sock: Any) -> None:
        """Register the reader's socket; shut it down at once if already cancelled."""
        if sock is None:
            return
        with self._lock:
            if self._cancelled:
                _shutdown_socket(sock)
            else:
                self._sock = sock

    def _detach(self) -> None:
        with self._lock:
            self._sock = None


def _shutdown_socket(sock: Any) -> None:
    try:
        if isinstance(sock, socket.socket):
            # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops
            # the SSL object under the reader's feet.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError) as exc:  # already closed or never connected
        log.debug("socket shutdown on cancel: %s", exc)


# The token of the stream this thread is opening, so that the socket can be
# cancelled from the moment it connects, before any response header arrives.
_opening = threading.local()


def _register_new_socket(sock: Any) -> None:
    token = getattr(_opening, "token", None)
    if token is not None:
        token._attach(sock)


class _CancellableHTTPConnection(HTTPConnection):
    def _new_conn(self):  # the TCP socket, right after connect (before TLS)
        sock = super()._new_conn()
        _register_new_socket(sock)
        return sock


class _CancellableHTTPSConnection(HTTPSConnection):
    def _new_conn(self):
        sock = super()._new_conn()
        _register_new_socket(sock)
        return sock


class _NoReuse:
    """A stream's connection is never used twice. We ask "Connection: close",
    but an error answer that does not say so itself is read to its end and
    handed back to the pool, where the next attempt (a 409 retry) would find
    a socket the runtime has just closed."""

    def _put_conn(self, conn):
        if conn is not None:
            conn.close()   # the pool reconnects it on its next use
        super()._put_conn(conn)


class _CancellableHTTPPool(_NoReuse, HTTPConnectionPool):
    ConnectionCls = _CancellableHTTPConnection


class _CancellableHTTPSPool(_NoReuse, HTTPSConnectionPool):
    ConnectionCls = _CancellableHTTPSConnection


class _StreamAdapter(HTTPAdapter):
    """Opens connections whose socket is handed to the current CancelToken.

    Without it a cancel could only act once the response headers are in, so
    a runtime that accepts and then stalls would hold a cancel (and the
    daemon's shutdown) for up to ``idle_timeout``. Proxied requests use the
    stock classes and are cancellable from the headers on.
    """

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CancellableHTTPPool, "https": _CancellableHTTPSPool}


def response_socket(response: requests.Response) -> Any:
    """The socket under a streaming ``requests`` response, or None.

    urllib3 2.x: ``response.raw.connection.sock``; older layouts expose it as
    ``response.raw._connection.sock`` or through http.client's buffered file
    ``response.raw._fp.fp.raw._sock``.
    """
    raw = getattr(response, "raw", None)
    for conn_attr in ("connection", "_connection"):
        sock = getattr(getattr(raw, conn_attr, None), "sock", None)
        if sock is not None and hasattr(sock, "shutdown"):
            return sock
    try:
        sock = raw._fp.fp.raw._sock
    except AttributeError:
        return None
    return sock if hasattr(sock, "shutdown") else None


def decode_output_data(text: str) -> dict:
    """Parse a ``stdout``/``stderr`` event's data, without ``accumulated``.

    Fast path for the runtime's shape ``{"content": "...", "accumulated": "..."}``:
    only the ``content`` string is decoded (json's C scanner, from the value's
    first quote) and the rest of the text is not parsed, so other keys there
    are dropped. Anything else goes through ``json.loads``. Raises ValueError.
    """
    if text.startswith(_OUTPUT_PREFIX):
        try:
            content, end = _DECODER.raw_decode(text, len(_OUTPUT_PREFIX))
        except ValueError:
            content, end = None, 0
        if isinstance(content, str) and text.endswith("}") and text[end:end + 1] in (",", "}"):
            return {"content": content}
    data = _loads_object(text)
    data.pop("accumulated", None)
    return data


def _stream_chunks(response: requests.Response, size: int) -> Iterator[bytes]:
    """The body as it arrives, in pieces of at most ``size`` bytes.

    ``response.raw.read1`` returns whatever has arrived (one HTTP chunk, or
    one ``recv`` on a close-delimited body). ``response.iter_content(size)``
    is as fast on chunked bodies, but on a body without chunked encoding it
    waits until ``size`` bytes have arrived, holding events back; it is only
    the fallback for urllib3 versions without ``read1`` (before 2.3).
    """
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.iter_content(size)
        return
    # We ask for identity; decode only if the server compressed anyway
    # (decoding goes through urllib3's buffer: an extra copy per read).
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    decode = encoding not in ("", "identity")
    while True:
        data = read1(size, decode_content=decode)
        if not data:
            return
        yield data


def _loads_object(text: str) -> dict:
    if not text.strip():
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _excerpt(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _body_excerpt(response: requests.Response) -> str:
    """At most a few KB of a streaming response's body, flattened, for messages."""
    try:
        raw = next(_stream_chunks(response, 4096), b"")
    except Exception as exc:  # noqa: BLE001 - the excerpt is only decoration
        log.debug("could not read the response body: %s", exc)
        return ""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    return _excerpt(raw.decode("utf-8", "replace"))


def _is_timeout(exc: BaseException) -> bool:
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (requests.Timeout, ReadTimeoutError, socket.timeout)):
            return True
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        todo.extend((e.__cause__, e.__context__))
    return False


def _base_url(runtime_url: str) -> str:
    return runtime_url.rstrip("/")


# Answers that mean "not now" rather than "no": the run was not started.
RETRY_STATUSES = (409, 503)
BUSY_RETRIES = 5
MAX_RETRY_AFTER = 30.0


class MrpClient:
    """Blocking client for one or many MRP runtimes, safe to use from many threads.

    Each thread gets its own ``requests.Session`` objects (sessions are not
    thread safe): one for streams, whose connections are never reused, and
    one for short calls. Timeouts: ``connect_timeout`` for every connect;
    ``idle_timeout`` is the longest silence tolerated on an event stream (the
    runtime pings every 60 s); ``request_timeout`` bounds short calls' reads.
    """

    def __init__(self, connect_timeout: float = 10.0, idle_timeout: float = 300.0,
                 request_timeout: float = 30.0) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self._local = threading.local()
        self._sessions_lock = threading.Lock()
        self._sessions: "weakref.WeakSet[requests.Session]" = weakref.WeakSet()

    def _session(self, stream: bool = False) -> requests.Session:
        local = self._local
        name = "stream_session" if stream else "session"
        session = getattr(local, name, None)
        if session is None:
            session = requests.Session()
            if stream:
                adapter = _StreamAdapter()
                session.mount("http://", adapter)
                session.mount("https://", adapter)
            setattr(local, name, session)
            with self._sessions_lock:
                self._sessions.add(session)
        return session

    def close(self) -> None:
        """Close every thread's session. The client stays usable: a later call opens a new one."""
        with self._sessions_lock:
            sessions = list(self._sessions)
            self._sessions = weakref.WeakSet()
            self._local = threading.local()
        for session in sessions:
            try:
                session.close()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.debug("closing a session failed: %s", exc)

    # -- execute -------------------------------------------------------------

    def execute_stream(self, runtime_url: str, *, code: str, session: str, exec_id: str,
                       on_event: Callable[[MrpEvent], None], cancel: CancelToken) -> None:
        """Run ``code``; see _execute_once. A runtime that answers 409 (busy)
        or 503 is asked again, after its ``Retry-After`` when it gives one
        (capped), else with a growing delay, at most BUSY_RETRIES times: it
        has not started the run, so asking again cannot run it twice."""
        for attempt in range(BUSY_RETRIES + 1):
            try:
                return self._execute_once(runtime_url, code=code, session=session,
                                          exec_id=exec_id, on_event=on_event, cancel=cancel)
            except RuntimeHTTPError as exc:
                if exc.status_code not in RETRY_STATUSES or attempt == BUSY_RETRIES:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else 0.5 * 2 ** attempt
                delay = min(max(0.0, delay), MAX_RETRY_AFTER)
                log.info("runtime at %s answered %d for %s; asking again in %.1fs (%d/%d)",
                         runtime_url, exc.status_code, exec_id, delay, attempt + 1, BUSY_RETRIES)
                if cancel.wait(delay):
                    raise Cancelled(f"execution {exec_id} was cancelled", runtime_url=runtime_url,
                                    execution_id=exec_id) from exc

    def _execute_once(self, runtime_url: str, *, code: str, session: str, exec_id: str,
                      on_event: Callable[[MrpEvent], None], cancel: CancelToken) -> None:
        """Run ``code`` and call ``on_event`` for every event, in order, on this thread.

        POSTs ``{code, session, storeHistory: True, execId}`` to
        ``{runtime_url}/execute/stream``. Returns after ``done``, or when the
        stream ends after a ``result``/``error``. No event is delivered once
        ``cancel`` is set. Exceptions raised by ``on_event`` propagate as is.

        Raises:
            Cancelled: ``cancel`` was requested (whatever error that caused).
            RuntimeUnavailable: refused, unreachable, connect timeout, bad URL.
            RuntimeHTTPError: a non-2xx status (message quotes the body).
            StreamError: not ``text/event-stream``; malformed JSON in an
                event; no bytes for ``idle_timeout`` seconds; the stream ended
                (or sent ``done``) without a ``result`` or ``error``.
        """
        url = _base_url(runtime_url) + "/execute/stream"
        where = {"runtime_url": runtime_url, "execution_id": exec_id}
        if cancel.cancelled:
            raise Cancelled(f"execution {exec_id} was cancelled before it started", **where)
        body = {"code": code, "session": session, "storeHistory": True, "execId": exec_id}
        log.debug("POST %s exec_id=%s session=%s (%d chars of code)", url, exec_id, session, len(code))
        http = self._session(stream=True)
        response = None
        try:
            _opening.token = cancel
            try:
                # "Connection: close": a stream's connection is never pooled, so
                # every stream connects anew and its socket reaches the token.
                response = http.post(
                    url, json=body, stream=True,
                    timeout=(self.connect_timeout, self.idle_timeout),
                    headers={"Accept": "text/event-stream", "Accept-Encoding": "identity",
                             "Connection": "close"})
            except requests.RequestException as exc:
                if cancel.cancelled:
                    raise Cancelled(f"execution {exec_id} was cancelled", **where) from exc
                if isinstance(exc, requests.ReadTimeout):
                    raise StreamError(f"runtime at {runtime_url} sent no response headers "
                                      f"within {self.idle_timeout:g} s", **where) from exc
                raise RuntimeUnavailable(f"cannot reach the runtime at {runtime_url}: "
                                         f"{_transport_reason(exc)}", **where) from exc
            finally:
                _opening.token = None
            sock = response_socket(response)
            if sock is None:
                log.debug("no socket found under the response; cancel will act between events")
            cancel._attach(sock)
            self._check_stream_response(response, runtime_url, exec_id, cancel)
            self._read_events(response, runtime_url, exec_id, on_event, cancel)
        finally:
            # Detach first: once the socket is released nobody may shut it down.
            cancel._detach()
            if response is not None:
                response.close()

    def _check_stream_response(self, response, runtime_url, exec_id, cancel) -> None:
        where = {"runtime_url": runtime_url, "execution_id": exec_id,
                 "status_code": response.status_code}
        if not 200 <= response.status_code < 300:
            excerpt = _body_excerpt(response)
            if cancel.cancelled:
                raise Cancelled(f"execution {exec_id} was cancelled", **where)
            error = RuntimeHTTPError(
                f"runtime at {runtime_url} answered HTTP {response.status_code} "
                f"{response.reason or ''}".rstrip() + (f": {excerpt}" if excerpt else ""), **where)
            error.retry_after = _retry_after(response.headers.get("Retry-After"))
            raise error
        ctype = response.headers.get("Content-Type", "")
        if ctype.split(";", 1)[0].strip().lower() != "text/event-stream":
            excerpt = _body_excerpt(response)
            if cancel.cancelled:
                raise Cancelled(f"execution {exec_id} was cancelled", **where)
            raise StreamError(
                f"runtime at {runtime_url} answered {ctype or 'no content type'} instead of "
                f"an event stream" + (f": {excerpt}" if excerpt else ""), **where)

    def _read_events(self, response, runtime_url, exec_id, on_event, cancel) -> None:
        where = {"runtime_url": runtime_url, "execution_id": exec_id}
        events = iter_events(_stream_chunks(response, STREAM_CHUNK_SIZE))
        saw_final = False
        count = 0
        while True:
            try:
                sse = next(events, None)
            except Exception as exc:  # noqa: BLE001 - every read failure becomes a typed error
                if cancel.cancelled:
                    raise Cancelled(f"execution {exec_id} was cancelled", **where) from exc
                if _is_timeout(exc):
                    raise StreamError(f"runtime at {runtime_url} sent nothing for "
                                      f"{self.idle_timeout:g} s", **where) from exc
                raise StreamError(f"lost the connection to the runtime at {runtime_url} in the "
                                  f"middle of the run (did the runtime stop?): "
                                  f"{_transport_reason(exc)}", **where) from exc
            if cancel.cancelled:
                raise Cancelled(f"execution {exec_id} was cancelled", **where)
            if sse is None:
                if saw_final:
                    log.debug("stream for %s ended after its result without done", exec_id)
                    return
                raise StreamError(f"the event stream from {runtime_url} ended before "
                                  f"a result or error ({count} events received)", **where)
            kind = sse.event
            try:
                if sse.parsed is not None:
                    data = sse.parsed
                elif kind in OUTPUT_KINDS:
                    data = decode_output_data(sse.data)
                else:
                    data = _loads_object(sse.data)
            except ValueError as exc:
                raise StreamError(f"runtime at {runtime_url} sent a {kind!r} event that is not "
                                  f"a JSON object ({exc}): {_excerpt(sse.data, 80)}", **where) from exc
            count += 1
            if log.isEnabledFor(logging.DEBUG):
                # Sizes and keys only: output may echo a stdin answer (a password).
                log.debug("event %s for %s: %d chars of data, keys %s", kind, exec_id,
                          len(sse.data), ",".join(sorted(data)))
            on_event(MrpEvent(kind, data))
            if kind in FINAL_KINDS:
                saw_final = True
            elif kind == "done":
                if not saw_final:
                    raise StreamError(f"runtime at {runtime_url} finished execution {exec_id} "
                                      f"without a result or error", **where)
                return

    # -- short calls ---------------------------------------------------------

    def _post_json(self, runtime_url: str, path: str, body: dict, *,
                   exec_id: Optional[str] = None, quote_body: bool = True) -> dict:
        """POST a small JSON body, return the JSON object answered.

        Never logs what it sends. ``quote_body=False`` keeps the answer's body
        out of error messages too (a 422 may echo the request back).
        """
        url = _base_url(runtime_url) + path
        where = {"runtime_url": runtime_url, "execution_id": exec_id}
        try:
            response = self._session().post(
                url, json=body, timeout=(self.connect_timeout, self.request_timeout))
        except requests.RequestException as exc:
            raise RuntimeUnavailable(f"cannot reach the runtime at {runtime_url}: "
                                     f"{_transport_reason(exc)}", **where) from exc
        with response:
            where["status_code"] = response.status_code
            quoted = f": {_excerpt(response.text)}" if quote_body else ""
            if not 200 <= response.status_code < 300:
                raise RuntimeHTTPError(f"runtime at {runtime_url} answered HTTP "
                                       f"{response.status_code} to {path}{quoted}", **where)
            try:
                data = response.json()
            except ValueError as exc:
                raise RuntimeHTTPError(f"runtime at {runtime_url} answered {path} with something "
                                       f"that is not JSON{quoted}", **where) from exc
        if not isinstance(data, dict):
            raise RuntimeHTTPError(f"runtime at {runtime_url} answered {path} with "
                                   f"{type(data).__name__}, not a JSON object", **where)
        return data

    def send_input(self, runtime_url: str, exec_id: str, text: str, *,
                   retry_for: float = INPUT_RETRY_SECONDS) -> bool:
        """Answer a ``stdin_request``: POST ``/input`` ``{exec_id, text}``.

        Returns the runtime's ``accepted``. mrmd-python 0.4.2 sends
        ``stdin_request`` *before* it registers the pending input, so an
        answer sent at once can be refused (measured under CPU load: 9 of 60
        immediate answers) and the run then waits 300 s for nothing. A refusal
        is therefore retried, with backoff, for ``retry_for`` seconds.

        Raises RuntimeUnavailable or RuntimeHTTPError. ``text`` is never
        logged nor put in a message.
        """
        deadline = time.monotonic() + retry_for
        delay = 0.05
        attempt = 1
        while True:
            data = self._post_json(runtime_url, "/input", {"exec_id": exec_id, "text": text},
                                   exec_id=exec_id, quote_body=False)
            accepted = bool(data.get("accepted"))
            log.debug("input for %s on %s: accepted=%s (attempt %d)",
                      exec_id, runtime_url, accepted, attempt)
            remaining = deadline - time.monotonic()
            if accepted or remaining <= 0:
                return accepted
            time.sleep(min(delay, remaining))
            delay *= 2
            attempt += 1

    def interrupt(self, runtime_url: str, session: str, exec_id: Optional[str] = None) -> bool:
        """Ask the runtime to interrupt: POST ``/interrupt`` ``{session, execId}``.

        Best effort: returns the runtime's ``interrupted``, or False (logged)
        if the call failed. Runtimes may keep running anyway.
        """
        body: dict = {"session": session}
        if exec_id is not None:
            body["execId"] = exec_id
        try:
            data = self._post_json(runtime_url, "/interrupt", body, exec_id=exec_id)
        except MrpError as exc:
            log.warning("interrupt of %s failed: %s", exec_id or session, exc)
            return False
        interrupted = bool(data.get("interrupted"))
        log.debug("interrupt of %s on %s: interrupted=%s", exec_id or session, runtime_url, interrupted)
        return interrupted


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime
        import datetime
        when = parsedate_to_datetime(value)
        return (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    except (TypeError, ValueError):
        return None


def _transport_reason(exc: BaseException) -> str:
    """A short reason for a requests/urllib3 failure, without the repr noise."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    text = str(exc)
    for marker, reason in (("Connection refused", "connection refused"),
                           ("Name or service not known", "unknown host"),
                           ("nodename nor servname", "unknown host"),
                           ("No route to host", "no route to host"),
                           ("Network is unreachable", "network unreachable")):
        if marker in text:
            return reason
    return _excerpt(text, 160) or type(exc).__name__
