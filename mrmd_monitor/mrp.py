"""MRP client: run code on a runtime over HTTP + server-sent events.

Everything here blocks the calling thread; nothing is shared between threads
except a :class:`CancelToken`, whose ``cancel()`` any thread may call.

Everything a runtime sends is untrusted, and so is the runtime URL (any peer
of a document names it). Hence:

* the URL is parsed strictly once (:func:`.http.parse_url`) and connections
  go to the URL rebuilt from its parts; redirects are never followed;
* before the first code goes to a base URL, ``GET /capabilities`` must show
  an MRP runtime that streams (cached for ``capabilities_ttl`` on success):
  a local web service that is not a runtime never receives a POST;
* every wait has a bound: connect + response headers together within
  ``connect_timeout`` (a runtime trickling header bytes cannot hold a
  worker), each silence on the stream within ``idle_timeout``, the whole run
  within ``max_run_time`` from the first POST, waiting for a busy runtime
  within ``busy_wait``; one event within ``max_event_bytes`` (:mod:`.sse`);
* error texts quote at most a short sanitised excerpt of what came back.

Throughput: the body is read as it arrives, up to 64 KiB at a time, and
split by :mod:`.sse` in one pass, decoding only ``content`` of output events.
"""

from __future__ import annotations

import email.utils
import datetime
import json
import logging
import socket
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Callable, Optional

import requests
from urllib3.exceptions import HTTPError, ReadTimeoutError

from .errors import (Cancelled, EventError, EventTooLarge, MrpError, RunTimedOut, RuntimeBusy,
                     RuntimeHTTPError, RuntimeRefused, RuntimeUnavailable, StreamError,
                     URLRefused)
from .http import (DEADLINES, CancelToken, HttpURL, iter_body, new_session, opening, parse_url,
                   read_limited, response_socket, sanitize)
from .logs import ContextAdapter, context
from .sse import DEFAULT_MAX_EVENT_BYTES, OUTPUT_KINDS, MrpEvent, SSESplitter

__all__ = ["CancelToken", "MrpClient", "MrpEvent", "OUTPUT_KINDS", "FINAL_KINDS"]

log = logging.getLogger(__name__)

#: Bytes per read handed to the SSE splitter.
STREAM_CHUNK_SIZE = 65536
#: Longest excerpt of an unexpected response body quoted in an error message.
BODY_EXCERPT_CHARS = 120
#: Most bytes of a short call's answer that are read at all.
MAX_SHORT_BODY = 64 * 1024
#: How long a refused ``/input`` is retried (see :meth:`MrpClient.send_input`).
INPUT_RETRY_SECONDS = 1.5
#: How long a successful ``/capabilities`` check is trusted.
CAPABILITIES_TTL = 60.0
#: Longest wait for a runtime busy with another execution when no
#: --max-run-time bounds the run.
BUSY_WAIT_SECONDS = 600.0
#: How often ``/health`` is asked while waiting for a busy runtime.
HEALTH_POLL_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
#: How long a cancelled stream is still read (and discarded) on a runtime that
#: stays busy for good when its stream is cut (MRP 0.3.0), so that it can end
#: the execution and take the next one. The runtime is asked to interrupt
#: meanwhile; a second cancel (shutdown) cuts at once.
CANCEL_DRAIN_SECONDS = 30.0
#: Most seq gaps logged per stream.
MAX_SEQ_GAP_LOGS = 5

FINAL_KINDS = frozenset(("result", "error"))
BUSY_STATUSES = (409, 503)

# Why a token expired (CancelToken.expire).
EXPIRED_HEADERS = "headers"
EXPIRED_CALL = "call"
EXPIRED_RUN = "max-run-time"


class _Busy(Exception):
    """The runtime did not start our run: it is busy with another one.

    A signal inside this module, not an error: execute_stream turns it into a
    wait, or into errors.RuntimeBusy, so it stays here, out of errors.py."""

    def __init__(self, status, retry_after, current):
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after
        self.current = current


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


def _run_logger(run_log: Optional[ContextAdapter], exec_id: Optional[str]) -> ContextAdapter:
    """This module's logger with the run's ``doc`` and ``exec_id`` (the
    caller's context, ``run_log``): the lines keep this module's name."""
    if run_log is not None:
        return run_log.on(log)
    return context(log, exec_id=exec_id)


def _parse(runtime_url, exec_id=None) -> HttpURL:
    try:
        return parse_url(runtime_url)
    except URLRefused as exc:
        raise RuntimeRefused("runtimeUrl refused: %s" % exc, runtime_url=runtime_url,
                             execution_id=exec_id) from None


class MrpClient:
    """Blocking client for one or many MRP runtimes, safe to use from many threads.

    Each thread gets its own ``requests.Session`` (sessions are not thread
    safe); no connection is used twice, so each socket reaches its token.
    ``request_timeout`` bounds a short call's reads; with ``connect_timeout``
    it bounds the whole call.
    """

    def __init__(self, connect_timeout: float = 10.0, idle_timeout: float = 300.0,
                 request_timeout: float = 30.0, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
                 capabilities_ttl: float = CAPABILITIES_TTL,
                 busy_wait: float = BUSY_WAIT_SECONDS) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.max_event_bytes = max_event_bytes
        self.capabilities_ttl = capabilities_ttl
        self.busy_wait = busy_wait
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: "weakref.WeakSet[requests.Session]" = weakref.WeakSet()
        self._verified: dict = {}   # base URL -> monotonic time the check stops being trusted

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = new_session()
            self._local.session = session
            with self._lock:
                self._sessions.add(session)
        return session

    def close(self) -> None:
        """Close every thread's session. The client stays usable: a later call opens a new one."""
        with self._lock:
            sessions = list(self._sessions)
            self._sessions = weakref.WeakSet()
            self._local = threading.local()
        for session in sessions:
            try:
                session.close()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.debug("closing a session failed: %s", exc)

    # -- errors ----------------------------------------------------------------

    def _stopped(self, token: CancelToken, url: HttpURL, where: dict, what: str = "") -> MrpError:
        """The error for a token that was cancelled or expired."""
        exec_id = where.get("execution_id")
        if token.cancelled or not token.expired:
            return Cancelled("execution %s was cancelled" % exec_id, **where)
        reason = token.expired
        if reason == EXPIRED_RUN:
            return RunTimedOut("the run took longer than --max-run-time and was stopped", **where)
        if reason == EXPIRED_HEADERS:
            return StreamError("runtime at %s sent no response headers within %g s "
                               "(--connect-timeout)" % (url.base, self.connect_timeout), **where)
        return RuntimeUnavailable("runtime at %s did not answer %s within %g s" % (
            url.base, what or "in time", self.connect_timeout + self.request_timeout), **where)

    @contextmanager
    def _deadline(self, token: CancelToken, seconds: float, reason: str):
        handle = DEADLINES.call_at(time.monotonic() + seconds, lambda: token.expire(reason))
        try:
            yield
        finally:
            DEADLINES.cancel(handle)

    # -- short calls -------------------------------------------------------------

    def _short(self, method: str, url: HttpURL, path: str, body: Optional[dict], *,
               token: Optional[CancelToken] = None, where: dict):
        """One small request, bounded as a whole; returns (status, headers, body bytes).

        Never logs what it sends. Raises RuntimeUnavailable, Cancelled.
        """
        token = token or CancelToken()
        if token.stopped:
            raise self._stopped(token, url, where, path)
        response = None
        try:
            with self._deadline(token, self.connect_timeout + self.request_timeout, EXPIRED_CALL):
                try:
                    with opening(token):
                        response = self._session().request(
                            method, url.join(path), json=body, stream=True, allow_redirects=False,
                            timeout=(self.connect_timeout, self.request_timeout),
                            headers={"Accept-Encoding": "identity", "Connection": "close"})
                    raw = read_limited(response, MAX_SHORT_BODY)
                except (requests.RequestException, OSError, HTTPError) as exc:
                    if token.stopped:
                        raise self._stopped(token, url, where, path) from exc
                    raise RuntimeUnavailable("cannot reach the runtime at %s: %s" % (
                        url.base, _transport_reason(exc)), **where) from exc
            if token.stopped:
                raise self._stopped(token, url, where, path)
            return response.status_code, response.headers, raw
        finally:
            token.detach()
            if response is not None:
                response.close()

    def _short_json(self, method, url, path, body, *, where, token=None, quote=True) -> dict:
        status, _headers, raw = self._short(method, url, path, body, token=token, where=where)
        where = dict(where, status_code=status)
        quoted = ": " + _excerpt(raw) if quote and _excerpt(raw) else ""
        if 300 <= status < 400:
            raise RuntimeHTTPError("runtime at %s answered %s with a redirect (HTTP %d), which "
                                   "is never followed" % (url.base, path, status), **where)
        if not 200 <= status < 300:
            raise RuntimeHTTPError("runtime at %s answered HTTP %d to %s%s" % (
                url.base, status, path, quoted), **where)
        data = _json_object(raw)
        if data is None:
            raise RuntimeHTTPError("runtime at %s answered %s with something that is not a "
                                   "JSON object%s" % (url.base, path, quoted), **where)
        return data

    def check_runtime(self, runtime_url: str, *, exec_id: Optional[str] = None,
                      token: Optional[CancelToken] = None) -> None:
        """Make sure an MRP runtime that streams answers at ``runtime_url``.

        ``GET /capabilities`` must be a JSON object with ``languages`` and a
        true ``features.executeStream``. Raises RuntimeRefused (nothing of
        the foreign answer is quoted), RuntimeUnavailable or Cancelled.
        """
        url = _parse(runtime_url, exec_id)
        now = time.monotonic()
        with self._lock:
            if self._verified.get(url.base, (0.0, False))[0] > now:
                return
        where = {"runtime_url": runtime_url, "execution_id": exec_id}
        status, _headers, raw = self._short("GET", url, "/capabilities", None, token=token,
                                            where=where)
        reason = None
        if 300 <= status < 400:
            reason = "it answered with a redirect (HTTP %d), which is never followed" % status
        elif status != 200:
            reason = "GET /capabilities answered HTTP %d" % status
        else:
            data = _json_object(raw)
            features = data.get("features") if data is not None else None
            if data is None:
                reason = "GET /capabilities did not answer a JSON object"
            elif not isinstance(data.get("languages"), list):
                reason = "its capabilities name no languages"
            elif not isinstance(features, dict) or features.get("executeStream") is not True:
                reason = "its capabilities do not include executeStream"
        if reason is not None:   # logged once, by whoever handles the error
            raise RuntimeRefused("the server at %s is not an MRP runtime the monitor can use: %s"
                                 % (url.base, reason), status_code=status, **where)
        # MRP 0.3.0 (it states a protocolVersion) holds one execution lock per
        # stream and never releases it when the stream is cut.
        drain = data.get("protocolVersion") is not None
        with self._lock:
            self._verified[url.base] = (time.monotonic() + self.capabilities_ttl, drain)
            if len(self._verified) > 1024:   # many URLs over time: forget the expired ones
                self._verified = {k: v for k, v in self._verified.items() if v[0] > now}

    def _drains(self, url: HttpURL) -> bool:
        with self._lock:
            return self._verified.get(url.base, (0.0, False))[1]

    # -- execute -------------------------------------------------------------

    def execute_stream(self, runtime_url: str, *, code: str, session: str, exec_id: str,
                       on_event: Callable[[MrpEvent], None], cancel: CancelToken,
                       max_run_time: float = 0.0,
                       on_busy: Optional[Callable[[str], None]] = None,
                       run_log: Optional[ContextAdapter] = None) -> None:
        """Run ``code`` and call ``on_event`` for every event, in order, on this thread.

        Checks the runtime (:meth:`check_runtime`), then POSTs ``{code,
        session, storeHistory: True, execId}`` to ``/execute/stream``.
        Returns after ``done``, or when the stream ends after a
        ``result``/``error``. No event is delivered once ``cancel`` is set.
        Exceptions raised by ``on_event`` propagate as is.

        A runtime busy with another execution (409, 503) has not started the
        run, so it is asked again once it is free (``/health`` says idle, or
        after a backoff where it has none); ``on_busy(reason)`` is called
        once when the waiting begins. ``max_run_time`` (0: none) counts from
        here and covers the wait. ``run_log`` (logs.context) gives the
        run's ``doc`` and ``exec_id`` to every line logged about it.

        Raises:
            Cancelled: ``cancel`` was requested (whatever error that caused).
            RunTimedOut: ``max_run_time`` passed.
            RuntimeRefused: the URL is refused or not an MRP runtime.
            RuntimeUnavailable: refused, unreachable, connect timeout.
            RuntimeBusy: busy with another execution for longer than ``busy_wait``.
            RuntimeHTTPError: a non-2xx status (a short excerpt of the body).
            StreamError: no headers within ``connect_timeout``; not
                ``text/event-stream``; a malformed or oversized event; no
                bytes for ``idle_timeout``; the stream ended (or sent
                ``done``) without a ``result`` or ``error``.
        """
        url = _parse(runtime_url, exec_id)
        where = {"runtime_url": runtime_url, "execution_id": exec_id}
        rlog = _run_logger(run_log, exec_id)
        if cancel.stopped:
            raise self._stopped(cancel, url, where)
        handle = None
        if max_run_time and max_run_time > 0:
            handle = DEADLINES.call_at(time.monotonic() + max_run_time,
                                       lambda: cancel.expire(EXPIRED_RUN))
        try:
            self.check_runtime(runtime_url, exec_id=exec_id, token=cancel)
            waiting_since = None
            attempt = 0
            while True:
                try:
                    return self._execute_once(url, code=code, session=session, exec_id=exec_id,
                                              on_event=on_event, cancel=cancel, where=where,
                                              rlog=rlog)
                except _Busy as busy:
                    if busy.current and busy.current == exec_id:
                        raise RuntimeHTTPError("runtime at %s says this execution is already "
                                               "running there" % url.base,
                                               status_code=busy.status, **where) from None
                    if waiting_since is None:
                        waiting_since = time.monotonic()
                        rlog.info("runtime at %s is busy with another execution (HTTP %d): %s "
                                  "waits for it", url.base, busy.status, exec_id)
                        if on_busy is not None:
                            on_busy("waiting for the runtime: it is busy with another execution")
                    self._wait_until_free(url, busy, cancel, where, attempt,
                                          waiting_since + self.busy_wait)
                    attempt += 1
        finally:
            if handle is not None:
                DEADLINES.cancel(handle)

    def _wait_until_free(self, url, busy, token, where, attempt, deadline) -> None:
        """Return when the runtime may take our run; raise RuntimeBusy past ``deadline``."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise RuntimeBusy("the runtime at %s stayed busy with another execution for "
                                  "%.0f s; this cell was not run" % (url.base, self.busy_wait),
                                  status_code=busy.status, **where)
            state = self._health_state(url, token, where)
            if state is None:   # no /health: back off
                delay = busy.retry_after if busy.retry_after is not None else 0.5 * 2 ** attempt
                delay = min(max(0.0, delay), MAX_BACKOFF_SECONDS, deadline - now)
            elif state == "idle":
                return
            else:
                delay = min(HEALTH_POLL_SECONDS, deadline - now)
            if token.wait(delay):
                raise self._stopped(token, url, where)
            if state is None:
                return

    def _health_state(self, url, token, where) -> Optional[str]:
        """``/health``'s state (``idle``, ``executing``, ...), or None without one."""
        try:
            status, _headers, raw = self._short("GET", url, "/health", None, token=token,
                                                where=where)
        except RuntimeUnavailable:
            if token.stopped:
                raise
            return None
        data = _json_object(raw) if status == 200 else None
        state = data.get("state") if data is not None else None
        return state if isinstance(state, str) else None

    def _execute_once(self, url: HttpURL, *, code, session, exec_id, on_event, cancel,
                      where, rlog) -> None:
        if cancel.stopped:
            raise self._stopped(cancel, url, where)
        body = {"code": code, "session": session, "storeHistory": True, "execId": exec_id}
        rlog.debug("POST %s/execute/stream exec_id=%s (%d chars of code)", url.base, exec_id,
                   len(code))
        response = None
        cancel.drain_on_cancel(CANCEL_DRAIN_SECONDS if self._drains(url) else 0.0)
        try:
            handle = DEADLINES.call_at(time.monotonic() + self.connect_timeout,
                                       lambda: cancel.expire(EXPIRED_HEADERS))
            try:
                with opening(cancel):
                    # "Connection: close": a stream's connection is never pooled.
                    response = self._session().post(
                        url.join("/execute/stream"), json=body, stream=True,
                        allow_redirects=False, timeout=(self.connect_timeout, self.idle_timeout),
                        headers={"Accept": "text/event-stream", "Accept-Encoding": "identity",
                                 "Connection": "close"})
            except requests.RequestException as exc:
                if cancel.stopped:
                    raise self._stopped(cancel, url, where) from exc
                raise RuntimeUnavailable("cannot reach the runtime at %s: %s" % (
                    url.base, _transport_reason(exc)), **where) from exc
            finally:
                DEADLINES.cancel(handle)
            if cancel.stopped and not cancel.draining:
                raise self._stopped(cancel, url, where)
            sock = response_socket(response)
            if sock is None:
                rlog.debug("no socket found under the response; cancel will act between events")
            cancel.attach(sock)
            self._check_stream_response(response, url, cancel, where, rlog)
            self._read_events(response, url, on_event, cancel, where, rlog)
        finally:
            # Detach first: once the socket is released nobody may shut it down.
            cancel.detach()
            cancel.drain_on_cancel(0.0)   # only a stream is drained, never a short call
            if response is not None:
                response.close()

    def _check_stream_response(self, response, url, cancel, where, rlog) -> None:
        status = response.status_code
        where = dict(where, status_code=status)
        if not 200 <= status < 300:
            try:
                raw = read_limited(response, 4096)
            except Exception as exc:  # noqa: BLE001 - the body is only decoration
                rlog.debug("could not read the response body: %s", exc)
                raw = b""
            if cancel.stopped:
                raise self._stopped(cancel, url, where)
            if status in BUSY_STATUSES:
                data = _json_object(raw) or {}
                current = data.get("currentExecId") or data.get("execId")
                raise _Busy(status, _retry_after(response.headers.get("Retry-After")),
                            current if isinstance(current, str) else None)
            if 300 <= status < 400:
                raise RuntimeHTTPError("runtime at %s answered with a redirect (HTTP %d), which "
                                       "is never followed" % (url.base, status), **where)
            excerpt = _excerpt(raw)
            reason = sanitize(response.reason or "", 40)
            raise RuntimeHTTPError(("runtime at %s answered HTTP %d %s" % (url.base, status, reason))
                                   .rstrip() + (": " + excerpt if excerpt else ""), **where)
        ctype = response.headers.get("Content-Type", "")
        if ctype.split(";", 1)[0].strip().lower() != "text/event-stream":
            try:
                excerpt = _excerpt(read_limited(response, 4096))
            except Exception as exc:  # noqa: BLE001 - the body is only decoration
                rlog.debug("could not read the response body: %s", exc)
                excerpt = ""
            if cancel.stopped:
                raise self._stopped(cancel, url, where)
            raise StreamError("runtime at %s answered %s instead of an event stream%s" % (
                url.base, sanitize(ctype, 60) or "no content type",
                ": " + excerpt if excerpt else ""), **where)

    def _read_events(self, response, url, on_event, cancel, where, rlog) -> None:
        exec_id = where["execution_id"]
        splitter = SSESplitter(self.max_event_bytes)
        chunks = iter_body(response, STREAM_CHUNK_SIZE)
        saw_final = False
        count = 0
        last_seq = None
        gaps = 0
        debug = rlog.isEnabledFor(logging.DEBUG)
        while True:
            try:
                chunk = next(chunks, None)
            except Exception as exc:  # noqa: BLE001 - every read failure becomes a typed error
                if cancel.stopped:
                    raise self._stopped(cancel, url, where) from exc
                if _is_timeout(exc):
                    raise StreamError("runtime at %s sent nothing for %g s" % (
                        url.base, self.idle_timeout), **where) from exc
                raise StreamError("lost the connection to the runtime at %s in the middle of "
                                  "the run (did the runtime stop?): %s" % (
                                      url.base, _transport_reason(exc)), **where) from exc
            if cancel.stopped:
                if cancel.draining and chunk is not None:
                    self._drain(chunks, splitter, chunk, url, where, rlog)
                raise self._stopped(cancel, url, where)
            if chunk is None:
                if saw_final:
                    rlog.debug("stream for %s ended after its result without done", exec_id)
                    return
                raise StreamError("the event stream from %s ended before a result or error "
                                  "(%d events received)" % (url.base, count), **where)
            events = splitter.feed(chunk)
            while True:
                try:
                    event = next(events, None)
                except EventTooLarge as exc:
                    raise StreamError("runtime at %s sent %s (--max-event-bytes); the run was "
                                      "stopped" % (url.base, _event_error(exc)), **where) from None
                except EventError as exc:
                    raise StreamError("runtime at %s sent %s" % (url.base, _event_error(exc)),
                                      **where) from None
                if event is None:
                    break
                if cancel.stopped:
                    if cancel.draining and event.kind != "done":
                        self._drain(chunks, splitter, b"", url, where, rlog, events)
                    raise self._stopped(cancel, url, where)
                count += 1
                kind, data = event
                seq = data.get("seq")
                if type(seq) is int:
                    if last_seq is not None and seq != last_seq + 1 and gaps < MAX_SEQ_GAP_LOGS:
                        gaps += 1
                        rlog.warning("events of %s from %s out of sequence: seq %d after %d",
                                     exec_id, url.base, seq, last_seq)
                    last_seq = seq
                if debug:
                    # Sizes and keys only: output may echo a stdin answer (a password).
                    rlog.debug("event %s for %s: keys %s", sanitize(kind, 40), exec_id,
                               sanitize(",".join(sorted(map(str, data))), 200))
                on_event(event)
                if kind in FINAL_KINDS:
                    saw_final = True
                elif kind == "done":
                    if not saw_final:
                        raise StreamError("runtime at %s finished execution %s without a result "
                                          "or error" % (url.base, exec_id), **where)
                    return

    def _drain(self, chunks, splitter, chunk, url, where, rlog, pending=()) -> None:
        """Read a cancelled stream to its ``done`` (delivering nothing), so that
        the runtime ends the execution; returns when it did, or when the
        drain deadline (a socket shutdown) or anything else ends the stream."""
        rlog.info("%s was cancelled: reading the runtime's stream to its end so that "
                  "%s can take the next run", where["execution_id"], url.base)
        try:
            for kind, _data in pending:   # the rest of the chunk being split
                if kind == "done":
                    return
            while chunk is not None:
                for kind, _data in splitter.feed(chunk):
                    if kind == "done":
                        rlog.debug("the cancelled stream of %s ended", where["execution_id"])
                        return
                chunk = next(chunks, None)
        except Exception as exc:  # noqa: BLE001 - the run is cancelled whatever happened
            rlog.warning("the cancelled stream of %s was cut before the runtime ended it (%s); "
                         "%s may stay busy", where["execution_id"], sanitize(str(exc), 120),
                         url.base)

    # -- input and interrupt -------------------------------------------------

    def send_input(self, runtime_url: str, exec_id: str, text: str, *,
                   retry_for: float = INPUT_RETRY_SECONDS,
                   run_log: Optional[ContextAdapter] = None) -> bool:
        """Answer a ``stdin_request``: POST ``/input`` ``{exec_id, execId, text}``
        (mrmd-python 0.4.2 reads ``exec_id``; MRP 0.3.0 documents ``execId``).

        Returns the runtime's ``accepted``. mrmd-python 0.4.2 sends
        ``stdin_request`` *before* it registers the pending input, so an
        answer sent at once can be refused (measured under CPU load: 9 of 60
        immediate answers) and the run then waits 300 s for nothing. A refusal
        is therefore retried, with backoff, for ``retry_for`` seconds.

        Raises RuntimeUnavailable, RuntimeRefused or RuntimeHTTPError.
        ``text`` is never logged nor put in a message.
        """
        url = _parse(runtime_url, exec_id)
        where = {"runtime_url": runtime_url, "execution_id": exec_id}
        rlog = _run_logger(run_log, exec_id)
        deadline = time.monotonic() + retry_for
        delay = 0.05
        attempt = 1
        while True:
            data = self._short_json("POST", url, "/input",
                                    {"exec_id": exec_id, "execId": exec_id, "text": text},
                                    where=where, quote=False)
            accepted = data.get("accepted") is True
            rlog.debug("input for %s on %s: accepted=%s (attempt %d)", exec_id, url.base,
                       accepted, attempt)
            remaining = deadline - time.monotonic()
            if accepted or remaining <= 0:
                return accepted
            time.sleep(min(delay, remaining))
            delay *= 2
            attempt += 1

    def interrupt_status(self, runtime_url: str, session: str, exec_id: Optional[str] = None,
                         *, run_log: Optional[ContextAdapter] = None) -> tuple:
        """POST ``/interrupt`` ``{session, execId}``: ``(interrupted, reason)``,
        ``reason`` saying why not when ``interrupted`` is False."""
        body: dict = {"session": session}
        if exec_id is not None:
            body["execId"] = exec_id
        where = {"runtime_url": runtime_url, "execution_id": exec_id}
        rlog = _run_logger(run_log, exec_id)
        try:
            url = _parse(runtime_url, exec_id)
            data = self._short_json("POST", url, "/interrupt", body, where=where)
        except MrpError as exc:
            rlog.warning("interrupt of %s failed: %s", exec_id or session, exc)
            return False, "the interrupt request failed: %s" % exc
        interrupted = data.get("interrupted") is True
        rlog.debug("interrupt of %s on %s: interrupted=%s", exec_id or session, url.base,
                   interrupted)
        return interrupted, "" if interrupted else "the runtime answered interrupted: false"

    def interrupt(self, runtime_url: str, session: str, exec_id: Optional[str] = None) -> bool:
        """Best effort: the runtime's ``interrupted``, or False (logged) if the call failed."""
        return self.interrupt_status(runtime_url, session, exec_id)[0]


def _json_object(raw: bytes) -> Optional[dict]:
    try:
        data = json.loads(raw.decode("utf-8", "replace")) if raw else None
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _excerpt(raw: bytes, limit: int = BODY_EXCERPT_CHARS) -> str:
    return sanitize(raw[:4 * limit].decode("utf-8", "replace"), limit)


def _event_error(exc: EventError) -> str:
    return sanitize(str(exc), 200)


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
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
    if _is_timeout(exc):
        return "timed out"
    return sanitize(text, 160) or type(exc).__name__
