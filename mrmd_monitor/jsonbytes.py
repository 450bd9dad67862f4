"""JSON text as bytes, looked at without parsing it whole: where a string
ends (:func:`closing_quote`, resumable across pieces), one string literal
decoded (:func:`decode_string`), lone surrogates replaced (:func:`scrub`),
and a long text copied with some strings cut (:class:`Elider`). Linear in
the bytes looked at; used by the SSE splitter (:mod:`.sse`) on what a
runtime sends.

Pure: no sockets, threads or clocks.
"""

from json.decoder import scanstring
from typing import Optional

#: How much of a cut string is kept.
ELIDE_STRING_BYTES = 64 * 1024
_ELIDED = b" [... cut by mrmd-monitor]"
#: The strings that may be cut: output the monitor has already streamed.
CUT_KEYS = frozenset((b"stdout", b"stderr", b"accumulated"))
_BACKSLASH = 0x5C


class Elider:
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
            close, escaped = closing_quote(data, i, self.escaped)
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
            trim_escape(self.out, self.body)


def trim_escape(out, lo):
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


def closing_quote(data, i, escaped):
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
def elide(value) -> bytes:
    elider = Elider()
    elider.feed(value)
    return bytes(elider.out)


def decode_string(buf, start=0, end=None) -> Optional[str]:
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
    return scrub(value) if not value.isascii() and may_hold_surrogates(text) else value


def may_hold_surrogates(text: str) -> bool:
    # Only a \uD800-\uDFFF escape can make one; emoji (pairs) pass the check below.
    return "\\ud" in text or "\\uD" in text


def scrub(value):
    """``value`` without lone surrogates (JSON allows them; UTF-8 and Yjs do not)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
