"""Server-Sent Events from an MRP runtime, split fast.

An MRP ``stdout``/``stderr`` event carries ``content`` (the new text) and
``accumulated`` (all the output so far), so the stream grows with the square
of the output: 600 KB printed can be a gigabyte on the wire (NOTES.md). The
output events are therefore taken apart here at the byte level: ``content``
is decoded alone and the rest of the event is skipped with ``bytes.find``,
without ever being copied into a string. Every other event is handed whole
to sseclient-py, which implements the SSE grammar.

Pure: works on any iterable of byte chunks.
"""

import json
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import sseclient

_DECODER = json.JSONDecoder()
# The content of one event is at most 4096 bytes at mrmd-python; as JSON,
# escapes can make it up to 6x longer. A longer one takes the general path.
_CONTENT_WINDOW = 64 * 1024
_BOUNDARIES = (b"\r\n\r\n", b"\n\n", b"\r\r")
_FAST = []
for _kind in ("stdout", "stderr"):
    for _eol in (b"\r\n", b"\n"):
        for _sp in (b" ", b""):
            _FAST.append((b"event:" + _sp + _kind.encode() + _eol + b"data:" + _sp
                          + b'{"content": ', _kind))


@dataclass(frozen=True)
class Event:
    event: str
    data: str = ""               # raw data text (general path)
    parsed: Optional[dict] = None  # already decoded (fast path): {"content": ...}


def _boundary(buf, start=0):
    """(index, length) of the first event boundary at or after ``start``.

    The usual separator is searched first; the others only up to where it
    was found, so that looking for them never rescans the rest of a buffer
    holding many events.
    """
    i = buf.find(b"\r\n\r\n", start)
    end = i if i != -1 else len(buf)
    best = (i, 4) if i != -1 else (-1, 0)
    for sep in (b"\n\n", b"\r\r"):
        j = buf.find(sep, start, end)
        if j != -1 and (best[0] == -1 or j < best[0]):
            best = (j, 2)
            end = j
    return best


def _general(raw: bytes) -> Iterator[Event]:
    for ev in sseclient.SSEClient([raw + b"\n\n"]).events():
        yield Event(ev.event, ev.data)


def _line_end(buf, start=0):
    """Index of the first CR or LF at or after ``start``, or -1 (two memchr
    scans, the second bounded by the first)."""
    j = buf.find(b"\n", start)
    i = buf.find(b"\r", start, j if j != -1 else len(buf))
    return i if i != -1 else j


def _finished(kind, content, last_byte):
    """The fast-path event once its data line has ended: well formed only if
    its JSON object closes there."""
    if last_byte == ord("}"):
        return Event(kind, parsed={"content": content})
    return Event(kind, data='{"content": ... (the event data is cut off)')


def iter_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    buf = bytearray()
    skipping = None   # (kind, content): an output event whose data line is being skipped
    pending = None    # the same, its data line ended: waiting for the blank line
    last = 0          # the last byte seen while skipping
    for chunk in chunks:
        if skipping:
            k = _line_end(chunk)
            if k == -1:
                if chunk:
                    last = chunk[-1]
                continue
            pending = _finished(skipping[0], skipping[1], chunk[k - 1] if k else last)
            skipping = None
            buf = bytearray(chunk[k:])
        else:
            buf += chunk
        while buf:
            if pending is not None:
                i, n = _boundary(buf)
                if i == -1:
                    break
                yield pending
                pending = None
                del buf[:i + n]
                continue
            fast = None
            for prefix, kind in _FAST:
                if buf.startswith(prefix):
                    fast = (prefix, kind)
                    break
            if fast is not None:
                prefix, kind = fast
                start = len(prefix)
                piece = bytes(buf[start:start + _CONTENT_WINDOW]).decode("utf-8", "ignore")
                try:
                    content, _ = _DECODER.raw_decode(piece)
                except ValueError:
                    content = None
                if isinstance(content, str):
                    # A data line cannot hold a raw CR or LF: the first one ends it.
                    k = _line_end(buf, start)
                    if k == -1:
                        skipping, last = (kind, content), buf[-1]
                        buf = bytearray()
                        break
                    pending = _finished(kind, content, buf[k - 1])
                    del buf[:k]
                    continue
                if len(buf) - start < _CONTENT_WINDOW:
                    break  # the content string is not complete yet: read on
                # Not the usual shape after all: the general path decides.
            i, n = _boundary(buf)
            if i == -1:
                break
            raw = bytes(buf[:i])
            del buf[:i + n]
            yield from _general(raw)
    if pending is not None and _boundary(buf)[0] != -1:
        yield pending
    elif buf.strip() and not skipping and pending is None:
        yield from _general(bytes(buf))
