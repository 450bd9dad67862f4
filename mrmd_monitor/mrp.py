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
split by :mod:`.sse` in one pass, decoding only ``content`` of output events
(:mod:`.mrpstream` reads one stream).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Callable, Optional

import requests
from urllib3.exceptions import HTTPError

from .errors import (Cancelled, MrpError, RunTimedOut, RuntimeBusy, RuntimeHTTPError,
                     RuntimeRefused, RuntimeUnavailable, StreamError, URLRefused)
from .http import DEADLINES, CancelToken, HttpURL, new_session, opening, parse_url, response_socket
from .httpbody import read_limited
from .logs import ContextAdapter, context
from .mrpstream import FINAL_KINDS, Busy, EventStream, excerpt, json_object, transport_reason
from .sse import DEFAULT_MAX_EVENT_BYTES, OUTPUT_KINDS, MrpEvent

__all__ = ["CancelToken", "MrpClient", "MrpEvent", "OUTPUT_KINDS", "FINAL_KINDS"]

log = logging.getLogger(__name__)

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

# Why a token expired (CancelToken.expire).
EXPIRED_HEADERS = "headers"
EXPIRED_CALL = "call"
EXPIRED_RUN = "max-run-time"


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


class _Calls:
    """The transport under :class:`MrpClient`: a ``requests.Session`` per
    thread (sessions are not thread safe; no connection is used twice, so
    each socket reaches its token), and small requests bounded as a whole
    (``request_timeout`` bounds the reads, with ``connect_timeout`` the whole
    call), their failures as typed errors."""

    def __init__(self, connect_timeout: float, request_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: "weakref.WeakSet[requests.Session]" = weakref.WeakSet()

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
                        url.base, transport_reason(exc)), **where) from exc
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
        quoted = ": " + excerpt(raw) if quote and excerpt(raw) else ""
        if 300 <= status < 400:
            raise RuntimeHTTPError("runtime at %s answered %s with a redirect (HTTP %d), which "
                                   "is never followed" % (url.base, path, status), **where)
        if not 200 <= status < 300:
            raise RuntimeHTTPError("runtime at %s answered HTTP %d to %s%s" % (
                url.base, status, path, quoted), **where)
        data = json_object(raw)
        if data is None:
            raise RuntimeHTTPError("runtime at %s answered %s with something that is not a "
                                   "JSON object%s" % (url.base, path, quoted), **where)
        return data

class MrpClient(_Calls):
    """Blocking client for one or many MRP runtimes, safe to use from many threads."""

    def __init__(self, connect_timeout: float = 10.0, idle_timeout: float = 300.0,
                 request_timeout: float = 30.0, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
                 capabilities_ttl: float = CAPABILITIES_TTL,
                 busy_wait: float = BUSY_WAIT_SECONDS) -> None:
        super().__init__(connect_timeout, request_timeout)
        self.idle_timeout = idle_timeout
        self.max_event_bytes = max_event_bytes
        self.capabilities_ttl = capabilities_ttl
        self.busy_wait = busy_wait
        self._verified: dict = {}   # base URL -> monotonic time the check stops being trusted

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
            data = json_object(raw)
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
                except Busy as busy:
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
        data = json_object(raw) if status == 200 else None
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
                    url.base, transport_reason(exc)), **where) from exc
            finally:
                DEADLINES.cancel(handle)
            if cancel.stopped and not cancel.draining:
                raise self._stopped(cancel, url, where)
            sock = response_socket(response)
            if sock is None:
                rlog.debug("no socket found under the response; cancel will act between events")
            cancel.attach(sock)
            stream = EventStream(url, cancel, where, rlog, idle_timeout=self.idle_timeout,
                                 max_event_bytes=self.max_event_bytes,
                                 stopped=lambda: self._stopped(cancel, url, where))
            stream.check(response)
            stream.read(response, on_event)
        finally:
            # Detach first: once the socket is released nobody may shut it down.
            cancel.detach()
            cancel.drain_on_cancel(0.0)   # only a stream is drained, never a short call
            if response is not None:
                response.close()

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
