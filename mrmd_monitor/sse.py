"""Server-sent events from an MRP runtime, split in one pass.

:class:`SSESplitter` turns byte chunks into ``MrpEvent(kind, data)`` values,
``data`` being the event's JSON object, each event built once. Its costs:

* every byte is scanned once for line ends: a partial line is kept with the
  knowledge that it holds none, and only new bytes are searched; the end of
  an output line's ``content`` is looked for in the same way, resumed where
  the last read stopped (``scanned`` counts the bytes looked at);
* a line inside a chunk is handled in place (indices into the chunk), so a
  small event costs what it carries, not the size of the chunk around it;
* ``stdout``/``stderr`` data shaped ``{"content": "...", ...}`` (mrmd-python
  0.4.2 adds ``accumulated``, all the output so far, which makes the stream
  grow with the square of the output) has only its ``content`` string
  decoded; when ``accumulated`` follows it, the rest of the line (any keys
  after ``accumulated`` included) is skipped without being held or copied;
* an event may hold at most ``max_event_bytes`` in memory: past that it is
  refused with :class:`EventTooLarge` (skipped bytes are not held, so they
  do not count); in events other than output, ``stdout``/``stderr`` strings
  are cut to 64 KiB while reading (a ``result`` repeats the whole output;
  :mod:`.jsonbytes` holds the byte-level JSON scanning).

Malformed data raises :class:`EventError` naming the event. An event left
incomplete when the stream ends is dropped, as the SSE grammar says.

Pure: no sockets, threads or clocks.
"""

import json
import re
from typing import Iterator, List, NamedTuple, Optional

from .errors import EventError, EventTooLarge
from .jsonbytes import Elider, closing_quote, decode_string, elide, may_hold_surrogates, scrub

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024
OUTPUT_KINDS = frozenset(("stdout", "stderr"))

_FAST_DATA = re.compile(rb'data: ?\{"content": ?"')
# A whole output event of the plain shape, as a runtime without
# ``accumulated`` sends it: taken in one step, without going line by line.
_FAST_EVENT = re.compile(rb'event: ?(stdout|stderr)(\r\n|\n)data: ?\{(?:"seq": ?(\d{1,15}), ?)?'
                         rb'"content": ?"')
_ACCUMULATED = re.compile(rb' ?"accumulated": ?"')
_SPACES = re.compile(rb"[ \t]*")
_KIND_NAMES = {b"stdout": "stdout", b"stderr": "stderr"}
_CR, _LF, _CLOSE, _COMMA = 0x0D, 0x0A, 0x7D, 0x2C


#: A data line of an event other than stdout/stderr longer than this is
#: copied with its ``stdout``/``stderr``/``accumulated`` strings cut to
#: jsonbytes.ELIDE_STRING_BYTES (a ``result`` repeats the whole output as ``stdout``,
#: which the monitor does not keep): only the copy is held and counts
#: against the limit; other strings (display data) are kept whole.
ELIDE_AFTER = 1024 * 1024


class MrpEvent(NamedTuple):
    """One event: its name (``start``, ``stdout``, ``result``, ... unknown
    names pass through) and its data, a JSON object; output events never
    keep ``accumulated``."""

    kind: str
    data: dict


def _line_end(buf, start, end=None):
    """Index of the first CR or LF in ``buf[start:end]``, or -1 (the CR search
    is bounded by the LF found, so no byte is looked at twice)."""
    if end is None:
        end = len(buf)
    j = buf.find(b"\n", start, end)
    i = buf.find(b"\r", start, j if j != -1 else end)
    return i if i != -1 else j


def loads_object(raw, kind) -> dict:
    """The event's data as a JSON object; raises EventError."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else raw
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except RecursionError:
        raise EventError("a %r event whose data is nested too deeply" % kind, kind=kind) from None
    except ValueError as exc:
        raise EventError("a %r event that is not a JSON object (%s)" % (kind, exc),
                         kind=kind) from None
    if not isinstance(data, dict):
        raise EventError("a %r event that is not a JSON object (%s)" % (kind, type(data).__name__),
                         kind=kind)
    if may_hold_surrogates(text):
        try:
            data = scrub(data)
        except RecursionError:
            raise EventError("a %r event whose data is nested too deeply" % kind,
                             kind=kind) from None
    return data


class SSESplitter:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._tail = bytearray()   # a line not ended yet (holds no CR or LF)
        self._new_tail()
        #: Bytes of partial lines examined so far: stays within a small
        #: multiple of the bytes fed, whatever the read sizes (tests check it).
        self.scanned = 0
        self._skip_lf = False      # the last line ended with a CR at a chunk's end
        self._skipping = False     # in the rest of an output data line we have the content of
        self._skip_last = 0        # the last byte of that line seen so far
        self._elider: Optional[Elider] = None   # a long data line, copied with strings cut
        self._reset()

    def _reset(self) -> None:
        self._kind: Optional[str] = None
        self._data: List[bytes] = []
        self._held = 0
        self._fast: Optional[dict] = None

    # -- input -----------------------------------------------------------------

    def feed(self, chunk) -> Iterator[MrpEvent]:
        """The events completed by ``chunk`` (bytes), in order; a generator, so
        that the events before a refused one still reach the caller."""
        n = len(chunk)
        pos = 0
        if self._skip_lf and n:
            self._skip_lf = False
            if chunk[0] == _LF:
                pos = 1
        if self._skipping:
            k = _line_end(chunk, pos)
            if k == -1:
                if n > pos:
                    self._skip_last = chunk[n - 1]
                return
            self._end_skipped_line(chunk[k - 1] if k > pos else self._skip_last)
            pos = self._after_eol(chunk, k)
        if self._elider is not None and pos < n:
            k = _line_end(chunk, pos)
            self._elider.feed(chunk[pos:] if k == -1 else chunk[pos:k])
            if len(self._elider.out) + self._held > self.max_event_bytes:
                self._elider = None
                self._check_size(force=True)
            if k == -1:
                return
            value, self._elider = bytes(self._elider.out), None
            self._held += len(value) + 1
            self._data.append(value)
            pos = self._after_eol(chunk, k)
        if self._tail and pos < n:
            k = _line_end(chunk, pos)
            if k == -1:
                self._tail += chunk[pos:] if pos else chunk
                self._grow_tail()
                return
            self._tail += chunk[pos:k]
            line, self._tail = self._tail, bytearray()
            self._new_tail()
            event = self._line(line, 0, len(line))
            if event is not None:
                yield event
            pos = self._after_eol(chunk, k)
        while pos < n:
            if chunk[pos] == 0x65 and self._kind is None and not self._data:  # "e"
                m = _FAST_EVENT.match(chunk, pos)
                if m is not None:
                    # A JSON string holds no raw CR or LF: the line ends after it.
                    start = m.end()
                    k = _line_end(chunk, start)
                    eol = m.group(2)
                    if k != -1 and chunk[k - 2:k] == b'"}' and chunk.startswith(eol + eol, k):
                        content = decode_string(chunk, start - 1, k - 1)
                        if content is not None:
                            seq = m.group(3)
                            data = {"content": content} if seq is None else \
                                {"seq": int(seq), "content": content}
                            yield MrpEvent(_KIND_NAMES[m.group(1)], data)
                            pos = k + 2 * len(eol)
                            continue
            k = _line_end(chunk, pos)
            if k == -1:
                self._tail += chunk[pos:]
                self._grow_tail()
                break
            event = self._line(chunk, pos, k)
            if event is not None:
                yield event
            pos = self._after_eol(chunk, k)

    def _after_eol(self, chunk, k) -> int:
        if chunk[k] == _CR:
            if k + 1 < len(chunk):
                return k + 2 if chunk[k + 1] == _LF else k + 1
            self._skip_lf = True
        return k + 1

    # -- lines -------------------------------------------------------------------

    def _line(self, buf, start, end) -> Optional[MrpEvent]:
        """Take one line (without its end); the event it completes, if any."""
        if start == end:
            return self._dispatch()
        first = buf[start]
        if first == 0x3A:  # ':' a comment
            return None
        if first == 0x64 and self._kind in OUTPUT_KINDS and self._fast is None and not self._data:
            m = _FAST_DATA.match(buf, start, end)
            if m is not None and self._fast_line(buf, m.end() - 1, end):
                return None
        colon = buf.find(b":", start, end)
        if colon == -1:
            field, value = bytes(buf[start:end]), b""
        else:
            field = bytes(buf[start:colon])
            vstart = colon + 1
            if vstart < end and buf[vstart] == 0x20:
                vstart += 1
            value = bytes(buf[vstart:end])
        if field == b"data":
            if len(value) > ELIDE_AFTER and self._kind not in OUTPUT_KINDS:
                value = elide(value)
            self._held += len(value) + 1
            self._check_size()
            self._data.append(value)
        elif field == b"event":
            self._kind = value.decode("utf-8", "replace")
        # id, retry and unknown fields mean nothing to MRP.
        return None

    def _fast_line(self, buf, quote, end) -> bool:
        """A whole output data line: decode ``content`` only; False if the
        line is not of that shape after all (the general path decides)."""
        close, _ = closing_quote(buf, quote + 1, False)
        if close == -1 or close >= end:
            return False
        content = decode_string(buf, quote, close + 1)
        if content is None:
            return False
        after, pos = _after_content(buf, close + 1, end)
        if after == "close" and _SPACES.match(buf, pos + 1, end).end() == end:
            pass
        elif after == "accumulated" and _last_non_space(buf, quote, end) == _CLOSE:
            pass
        else:
            return False
        self._fast = {"content": content}
        return True

    def _grow_tail(self) -> None:
        """A partial line grew: take an output line's content as soon as it is
        complete (and stop holding the line), or refuse an oversized event."""
        tail = self._tail
        if (self._kind in OUTPUT_KINDS and self._fast is None and not self._data
                and tail[:1] == b"d" and self._qpos != -2 and len(tail) > self._qpos):
            self._seek_content(tail)
            if self._skipping:
                return
        if (len(self._tail) > ELIDE_AFTER and self._kind not in OUTPUT_KINDS
                and self._tail.startswith(b"data:")):
            start = 6 if self._tail[5:6] == b" " else 5
            self._elider = Elider()
            self._elider.feed(bytes(self._tail[start:]))
            self._tail = bytearray()
            self._new_tail()
            if len(self._elider.out) + self._held > self.max_event_bytes:
                self._elider = None
                self._check_size(force=True)
            return
        if len(self._tail) + self._held > self.max_event_bytes:
            self._tail = bytearray()
            self._check_size(force=True)

    def _seek_content(self, tail) -> None:
        """Look for the end of an output line's ``content`` in the bytes the
        tail gained since the last look (each byte is looked at once, however
        small the reads), then at what follows the string."""
        n = len(tail)
        if self._qcontent is None:
            if self._qpos == 0:
                m = _FAST_DATA.match(tail)
                if m is None:
                    if n >= 24:
                        self._qpos = -2   # not the usual shape: the general path decides
                    return
                self._qpos = m.end()
            close, self._qesc = closing_quote(tail, self._qpos, self._qesc)
            self.scanned += n - self._qpos
            if close == -1:
                self._qpos = n
                return
            quote = _FAST_DATA.match(tail).end() - 1
            self._qcontent = decode_string(tail, quote, close + 1)
            self.scanned += close + 1 - quote
            if self._qcontent is None:
                self._qpos = -2
                return
            self._qpos = close + 1
        after, pos = _after_content(tail, self._qpos, n)
        self.scanned += pos - self._qpos + 1
        self._qpos = pos
        if after in ("close", "accumulated"):
            self._fast = {"content": self._qcontent}
            self._skipping = True
            self._skip_last = tail[-1]
            self._tail = bytearray()
            self._new_tail()
        elif after == "other":
            self._qpos = -2

    def _new_tail(self) -> None:
        self._qpos = 0           # where the content search resumes in the tail (-2: never)
        self._qesc = False       # ... and whether it resumes inside an escape
        self._qcontent = None    # the content, once its string has ended

    def _end_skipped_line(self, last) -> None:
        self._skipping = False
        if last != _CLOSE:
            kind = self._kind
            self._reset()
            raise EventError("a %r event that is not a JSON object (its data is cut off)" % kind,
                             kind=kind)

    def _check_size(self, force=False) -> None:
        if force or self._held > self.max_event_bytes:
            kind = self._kind
            self._reset()
            raise EventTooLarge("an event%s larger than %d bytes" % (
                " (%r)" % kind if kind else "", self.max_event_bytes), kind=kind)

    def _dispatch(self) -> Optional[MrpEvent]:
        kind = self._kind or "message"
        if self._fast is not None:
            data = self._fast
        elif self._data:
            raw = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
            self._reset()
            data = loads_object(raw, kind)
            if kind in OUTPUT_KINDS:
                data.pop("accumulated", None)
        else:
            self._reset()   # no data: nothing to dispatch (the SSE grammar)
            return None
        self._reset()
        return MrpEvent(kind, data)


def _after_content(buf, i, end):
    """``(after, pos)``: what follows an output line's content string, which
    ends before ``buf[i]``: ``close`` (the object ends at ``pos``),
    ``accumulated`` (only that key follows: it may be skipped), ``other``
    (the general path must decide) or ``more`` (too little yet; spaces up
    to ``pos`` need not be looked at again)."""
    pos = _SPACES.match(buf, i, end).end()
    if pos == end:
        return "more", pos
    c = buf[pos]
    if c == _CLOSE:
        return "close", pos
    if c != _COMMA:
        return "other", pos
    if end - pos < 20:
        return "more", pos
    return ("accumulated" if _ACCUMULATED.match(buf, pos + 1, end) else "other"), pos


def _last_non_space(buf, start, end):
    i = end - 1
    while i >= start:
        c = buf[i]
        if c not in (0x20, 0x09):
            return c
        i -= 1
    return None
