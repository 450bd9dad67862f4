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
    """(index, length) of the first event boundary at or after ``start``."""
    best = (-1, 0)
    for sep in _BOUNDARIES:
        i = buf.find(sep, start)
        if i != -1 and (best[0] == -1 or i < best[0]):
            best = (i, len(sep))
    return best


def _general(raw: bytes) -> Iterator[Event]:
    for ev in sseclient.SSEClient([raw + b"\n\n"]).events():
        yield Event(ev.event, ev.data)


def _finished(kind, content, last_byte):
    """The fast-path event once its end is seen: well formed only if its
    JSON object closes there."""
    if last_byte == ord("}"):
        return Event(kind, parsed={"content": content})
    return Event(kind, data='{"content": ... (the event data is cut off)')


def iter_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    buf = bytearray()
    skipping = None   # (kind, content) of the output event whose rest is being skipped
    tail = b""
    for chunk in chunks:
        if skipping:
            window = tail + chunk
            i, n = _boundary(window)
            if i == -1:
                tail = window[-4:]
                continue
            yield _finished(skipping[0], skipping[1], window[i - 1] if i else None)
            skipping = None
            buf = bytearray(window[i + n:])
        else:
            buf += chunk
        while buf:
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
                    i, n = _boundary(buf, start)
                    if i == -1:
                        skipping, tail = (kind, content), bytes(buf[-4:])
                        buf = bytearray()
                        break
                    yield _finished(kind, content, buf[i - 1])
                    del buf[:i + n]
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
    if buf.strip() and not skipping:
        yield from _general(bytes(buf))
