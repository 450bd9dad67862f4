"""Reading an HTTP response body as it arrives, without trusting its sender.

:func:`iter_body` yields what has arrived (a runtime's stream is split as
it comes, not when a buffer fills); a chunked body is taken out of its
framing here (:class:`ChunkedBody`, pure); :func:`read_limited` reads at
most a given number of bytes. A body compressed although ``identity`` was
asked is decoded by urllib3, which bounds each read from 2.6.0 on (the
version setup.cfg pins).
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import requests
from urllib3.exceptions import ProtocolError

#: Longest chunk size line of a chunked body (with its extensions).
MAX_CHUNK_LINE = 4096


def iter_body(response: requests.Response, size: int) -> Iterator[bytes]:
    """The body as it arrives, in pieces of at most ``size`` bytes.

    A chunked body (what runtimes stream) is read from the connection's
    buffered reader as it comes, up to ``size`` bytes a read, and taken out
    of its chunks here (:class:`ChunkedBody`): ``read1`` through urllib3 and
    http.client stops at the end of each HTTP chunk, so a runtime that sends
    one chunk per event would cost a read, a dozen Python calls and a turn at
    the GIL per event. Other bodies go through ``response.raw.read1``, which
    returns whatever has arrived. ``response.iter_content(size)`` is the
    fallback for urllib3 versions without ``read1`` (before 2.3): on a body
    without chunked encoding it waits until ``size`` bytes have arrived.
    """
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.iter_content(size)
        return
    # We ask for identity; decode only if the server compressed anyway.
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    decode = encoding not in ("", "identity")
    raw_read1 = None if decode else _chunked_reader(response)
    if raw_read1 is not None:
        body = ChunkedBody()
        while not body.done:
            data = raw_read1(size)
            if not data:
                raise ProtocolError("Response ended prematurely")
            payload = body.feed(data)
            if payload:
                yield payload
        return
    while True:
        data = read1(size, decode_content=decode)
        if not data:
            return
        yield data


def _chunked_reader(response: requests.Response) -> Optional[Callable[[int], bytes]]:
    """``read1`` of the buffered reader under a chunked response whose body
    nobody has read yet (http.client's ``fp``), or None."""
    fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
    conn = getattr(response.raw, "_fp", None)
    if (fp is None or not getattr(conn, "chunked", False) or getattr(conn, "chunk_left", None) is not None
            or not hasattr(fp, "read1")):
        return None
    return fp.read1


class ChunkedBody:
    """The payload of a chunked HTTP body, from its raw bytes in pieces cut
    anywhere. Pure; malformed framing raises ``ProtocolError`` (urllib3's
    error for the same). Trailers after the last chunk are not read: the
    connection is never reused."""

    def __init__(self) -> None:
        self.done = False
        self._left = 0              # payload bytes left in the current chunk
        self._after_data = False    # the CRLF that ends a chunk's payload comes next
        self._line = bytearray()    # a size line (or a chunk's CRLF) not complete yet

    def feed(self, data) -> bytes:
        out = []
        i, n = 0, len(data)
        while i < n and not self.done:
            if self._left:
                take = min(self._left, n - i)
                out.append(data[i:i + take])
                i += take
                self._left -= take
                if not self._left:
                    self._after_data = True
                continue
            nl = data.find(b"\n", i)
            if nl == -1:
                self._line += data[i:]
                if len(self._line) > MAX_CHUNK_LINE:
                    raise ProtocolError("a chunk size line longer than %d bytes" % MAX_CHUNK_LINE)
                break
            if self._line:
                self._line += data[i:nl]
                line, self._line = bytes(self._line), bytearray()
            else:
                line = data[i:nl]
            i = nl + 1
            if len(line) > MAX_CHUNK_LINE:
                raise ProtocolError("a chunk size line longer than %d bytes" % MAX_CHUNK_LINE)
            if self._after_data:
                if line not in (b"", b"\r"):
                    raise ProtocolError("a chunk longer than its size")
                self._after_data = False
                continue
            self._size_line(line)
        return out[0] if len(out) == 1 else b"".join(out)

    def _size_line(self, line) -> None:
        digits = line.split(b";", 1)[0].strip(b" \t\r")
        if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
            raise ProtocolError("a chunk size that is not a hex number: %r" % bytes(line[:40]))
        size = int(digits, 16)
        if size == 0:
            self.done = True
        self._left = size


def read_limited(response: requests.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of a streaming response's body (the rest is
    never read: a hostile server cannot make us hold more)."""
    out = bytearray()
    for piece in iter_body(response, min(65536, limit + 1)):
        out += piece
        if len(out) > limit:
            break
    return bytes(out[:limit + 1])
