"""Server-sent events from an MRP runtime, split in one pass.

:class:`SSESplitter` turns byte chunks into ``MrpEvent(kind, data)`` values,
``data`` being the event's JSON object, each event built once. Its costs:

* every byte is scanned once for line ends: a partial line is kept with the
  knowledge that it holds none, and only new bytes are searched;
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
  are cut to 64 KiB while reading (a ``result`` repeats the whole output).

Malformed data raises :class:`EventError` naming the event. An event left
incomplete when the stream ends is dropped, as the SSE grammar says.

Pure: no sockets, threads or clocks.
"""

import json
import re
from json.decoder import scanstring
from typing import Iterator, List, NamedTuple, Optional

from .errors import EventError, EventTooLarge

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
_CR, _LF, _BACKSLASH, _CLOSE, _COMMA = 0x0D, 0x0A, 0x5C, 0x7D, 0x2C


#: A data line of an event other than stdout/stderr longer than this is
#: copied with its ``stdout``/``stderr``/``accumulated`` strings cut to
#: ELIDE_STRING_BYTES (a ``result`` repeats the whole output as ``stdout``,
#: which the monitor does not keep): only the copy is held and counts
#: against the limit; other strings (display data) are kept whole.
ELIDE_AFTER = 1024 * 1024
ELIDE_STRING_BYTES = 64 * 1024
_ELIDED = b" [... cut by mrmd-monitor]"
#: The strings that may be cut: output the monitor has already streamed.
CUT_KEYS = frozenset((b"stdout", b"stderr", b"accumulated"))


class _Elider:
    """Copies JSON text, piece by piece, keeping at most ``keep`` bytes of each
    string that is the value of a key in ``CUT_KEYS`` (cut on an escape
    boundary); every other string is kept whole. Linear in time: a string's
    closing quote is found with C-speed ``bytes`` calls on a window that doubles."""

    def __init__(self, keep: int = ELIDE_STRING_BYTES) -> None:
        self.keep = keep
        self.out = bytearray()
        self.in_string = False
        self.length = 0          # bytes of the current string seen so far
        self.escaped = False     # the previous piece ended inside an escape (a lone backslash)
        self.body = 0            # where the current string's body starts in ``out``
        self.cut = False         # the current string may be cut
        self.trimmed = False     # the current string was cut (and its last escape mended)
        self.key = False         # the last string was a key in CUT_KEYS, maybe followed by ":"
        self.colon = False       # ... and the ":" has come

    def feed(self, data) -> None:
        i, n = 0, len(data)
        while i < n:
            if not self.in_string:
                q = data.find(b'"', i)
                if self.key:
                    self._between(data[i:q if q != -1 else n])
                if q == -1:
                    self.out += data[i:]
                    return
                self.out += data[i:q + 1]
                self.cut = self.key and self.colon
                self.key = False
                self.in_string, self.length, self.escaped = True, 0, False
                self.body, self.trimmed = len(self.out), False
                i = q + 1
                continue
            close, escaped = _closing_quote(data, i, self.escaped)
            end = close if close != -1 else n
            self._string_piece(data, i, end)
            if close == -1:
                self.escaped = escaped
                return
            if self.trimmed:
                self.out += _ELIDED
            self.key = self.length <= 16 and bytes(self.out[self.body:]) in CUT_KEYS
            self.colon = False
            self.out += b'"'
            self.in_string = False
            i = close + 1

    def _between(self, gap) -> None:
        """Bytes between a string that may be a key and the next string."""
        rest = gap.strip(b" \t")
        if not rest:
            return
        if rest == b":" and not self.colon:
            self.colon = True
        else:
            self.key = False

    def _string_piece(self, data, start, end) -> None:
        if not self.cut:
            self.out += data[start:end]
            self.length += end - start
            return
        room = self.keep - self.length
        self.length += end - start
        if room > 0:
            self.out += data[start:end] if end - start <= room else data[start:start + room]
        if self.length > self.keep and not self.trimmed:
            self.trimmed = True
            _trim_escape(self.out, self.body)


def _trim_escape(out, lo):
    """Drop an escape cut short at the end of ``out`` (a lone backslash, or
    ``\\u`` with fewer than four digits); the string's body starts at ``lo``."""
    b = len(out) - 1
    while b >= lo and out[b] == _BACKSLASH:
        b -= 1
    if (len(out) - 1 - b) % 2 == 1:
        del out[-1]
        return
    u = out.rfind(b"\\u", max(lo, len(out) - 5))
    if u != -1 and u + 6 > len(out):
        k = u - 1
        while k >= lo and out[k] == _BACKSLASH:
            k -= 1
        if (u - 1 - k) % 2 == 0:
            del out[u:]


def _closing_quote(data, i, escaped):
    """(index of the quote closing a JSON string, or -1; whether ``data`` ends
    inside an escape), searching from ``i`` inside the string. Escape pairs
    are blanked out (``\\\\`` then ``\\"``, left to right as JSON reads them),
    so the first quote left is the closing one."""
    n = len(data)
    start = i + 1 if escaped else i
    if data.find(b'"', start) == -1:
        # No quote at all (a long string going by): only whether the piece
        # ends inside an escape matters, which the parity of its trailing
        # backslashes says (the byte before them ends no escape).
        tail = data[max(start, n - 64):n]
        run = len(tail) - len(tail.rstrip(b"\\"))
        if run < len(tail) or n - 64 <= start:
            return -1, run % 2 == 1
    window = 256
    while True:
        stop = min(n, start + window)
        blanked = data[start:stop].replace(b"\\\\", b"__").replace(b'\\"', b"__")
        q = blanked.find(b'"')
        if q != -1:
            return start + q, False
        if stop == n:
            return -1, blanked.endswith(b"\\")
        window *= 2   # searched again from ``start``: a pair cut by the edge is seen whole
def _elide(value) -> bytes:
    elider = _Elider()
    elider.feed(value)
    return bytes(elider.out)


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


def _decode_string(buf, start=0, end=None) -> Optional[str]:
    """The JSON string literal (quotes included) at ``buf[start:end]`` as
    str, or None if invalid."""
    with memoryview(buf) as view:   # decoded without an intermediate copy
        text = str(view[start:end], "utf-8", "replace")
    try:
        value, end = scanstring(text, 1)
    except ValueError:
        return None
    if end != len(text):
        return None
    # An ASCII value holds no surrogate (isascii() is O(1)): the text is not searched.
    return _scrub(value) if not value.isascii() and _may_hold_surrogates(text) else value


def _may_hold_surrogates(text: str) -> bool:
    # Only a \uD800-\uDFFF escape can make one; emoji (pairs) pass the check below.
    return "\\ud" in text or "\\uD" in text


def _scrub(value):
    """``value`` without lone surrogates (JSON allows them; UTF-8 and Yjs do not)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


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
    if _may_hold_surrogates(text):
        try:
            data = _scrub(data)
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
        self._elider: Optional[_Elider] = None   # a long data line, copied with strings cut
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
                        content = _decode_string(chunk, start - 1, k - 1)
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
                value = _elide(value)
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
        close, _ = _closing_quote(buf, quote + 1, False)
        if close == -1 or close >= end:
            return False
        content = _decode_string(buf, quote, close + 1)
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
            self._elider = _Elider()
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
            close, self._qesc = _closing_quote(tail, self._qpos, self._qesc)
            self.scanned += n - self._qpos
            if close == -1:
                self._qpos = n
                return
            quote = _FAST_DATA.match(tail).end() - 1
            self._qcontent = _decode_string(tail, quote, close + 1)
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
