"""One MRP event stream, for :class:`.mrp.MrpClient`: the response checked,
its events split (:mod:`.sse`) and delivered in order, a cancelled one read
to its end; and the small readers of what a runtime answers (bodies quoted
as short sanitised excerpts, ``Retry-After``, transport failures).

Blocking, on the run's own thread; nothing here opens a connection.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import logging
import socket
from typing import Callable, Optional

import requests
from urllib3.exceptions import ReadTimeoutError

from .errors import EventError, EventTooLarge, MrpError, RuntimeHTTPError, StreamError
from .http import CancelToken, HttpURL, sanitize
from .httpbody import iter_body, read_limited
from .logs import ContextAdapter
from .sse import MrpEvent, SSESplitter

#: Bytes per read handed to the SSE splitter.
STREAM_CHUNK_SIZE = 65536
#: Longest excerpt of an unexpected response body quoted in an error message.
BODY_EXCERPT_CHARS = 120
#: Most seq gaps logged per stream.
MAX_SEQ_GAP_LOGS = 5

FINAL_KINDS = frozenset(("result", "error"))
BUSY_STATUSES = (409, 503)


class Busy(Exception):
    """The runtime did not start our run: it is busy with another one.

    A signal between this module and mrp.py, not an error: execute_stream
    turns it into a wait, or into errors.RuntimeBusy, so it stays here, out
    of errors.py."""

    def __init__(self, status, retry_after, current):
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after
        self.current = current


def is_timeout(exc: BaseException) -> bool:
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


class EventStream:
    """Reading one run's response. ``stopped()`` gives the error for a
    cancelled or expired ``cancel`` token (MrpClient decides its wording)."""

    def __init__(self, url: HttpURL, cancel: CancelToken, where: dict, rlog: ContextAdapter, *,
                 idle_timeout: float, max_event_bytes: int,
                 stopped: Callable[[], MrpError]) -> None:
        self.url = url
        self.cancel = cancel
        self.where = where
        self.rlog = rlog
        self.idle_timeout = idle_timeout
        self.max_event_bytes = max_event_bytes
        self.stopped = stopped

    def check(self, response) -> None:
        """An event stream, or the error its status or content type means."""
        url, cancel, where, rlog = self.url, self.cancel, self.where, self.rlog
        status = response.status_code
        where = dict(where, status_code=status)
        if not 200 <= status < 300:
            try:
                raw = read_limited(response, 4096)
            except Exception as exc:  # noqa: BLE001 - the body is only decoration
                rlog.debug("could not read the response body: %s", exc)
                raw = b""
            if cancel.stopped:
                raise self.stopped()
            if status in BUSY_STATUSES:
                data = json_object(raw) or {}
                current = data.get("currentExecId") or data.get("execId")
                raise Busy(status, retry_after(response.headers.get("Retry-After")),
                           current if isinstance(current, str) else None)
            if 300 <= status < 400:
                raise RuntimeHTTPError("runtime at %s answered with a redirect (HTTP %d), which "
                                       "is never followed" % (url.base, status), **where)
            quoted = excerpt(raw)
            reason = sanitize(response.reason or "", 40)
            raise RuntimeHTTPError(("runtime at %s answered HTTP %d %s" % (url.base, status, reason))
                                   .rstrip() + (": " + quoted if quoted else ""), **where)
        ctype = response.headers.get("Content-Type", "")
        if ctype.split(";", 1)[0].strip().lower() != "text/event-stream":
            try:
                quoted = excerpt(read_limited(response, 4096))
            except Exception as exc:  # noqa: BLE001 - the body is only decoration
                rlog.debug("could not read the response body: %s", exc)
                quoted = ""
            if cancel.stopped:
                raise self.stopped()
            raise StreamError("runtime at %s answered %s instead of an event stream%s" % (
                url.base, sanitize(ctype, 60) or "no content type",
                ": " + quoted if quoted else ""), **where)

    def read(self, response, on_event: Callable[[MrpEvent], None]) -> None:
        """Deliver every event to ``on_event`` until ``done`` (see MrpClient.execute_stream)."""
        url, cancel, where, rlog = self.url, self.cancel, self.where, self.rlog
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
                    raise self.stopped() from exc
                if is_timeout(exc):
                    raise StreamError("runtime at %s sent nothing for %g s" % (
                        url.base, self.idle_timeout), **where) from exc
                raise StreamError("lost the connection to the runtime at %s in the middle of "
                                  "the run (did the runtime stop?): %s" % (
                                      url.base, transport_reason(exc)), **where) from exc
            if cancel.stopped:
                if cancel.draining and chunk is not None:
                    self._drain(chunks, splitter, chunk)
                raise self.stopped()
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
                                      "stopped" % (url.base, event_error(exc)), **where) from None
                except EventError as exc:
                    raise StreamError("runtime at %s sent %s" % (url.base, event_error(exc)),
                                      **where) from None
                if event is None:
                    break
                if cancel.stopped:
                    if cancel.draining and event.kind != "done":
                        self._drain(chunks, splitter, b"", events)
                    raise self.stopped()
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

    def _drain(self, chunks, splitter, chunk, pending=()) -> None:
        """Read a cancelled stream to its ``done`` (delivering nothing), so that
        the runtime ends the execution; returns when it did, or when the
        drain deadline (a socket shutdown) or anything else ends the stream."""
        url, where, rlog = self.url, self.where, self.rlog
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


def json_object(raw: bytes) -> Optional[dict]:
    try:
        data = json.loads(raw.decode("utf-8", "replace")) if raw else None
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def excerpt(raw: bytes, limit: int = BODY_EXCERPT_CHARS) -> str:
    return sanitize(raw[:4 * limit].decode("utf-8", "replace"), limit)


def event_error(exc: EventError) -> str:
    return sanitize(str(exc), 200)


def retry_after(value: Optional[str]) -> Optional[float]:
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


def transport_reason(exc: BaseException) -> str:
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
    if is_timeout(exc):
        return "timed out"
    return sanitize(text, 160) or type(exc).__name__
