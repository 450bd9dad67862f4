"""Turn a raw pseudo-terminal stream into the text a person would see.

A runtime's stdout/stderr come from a pty: lines end in ``\\r\\n``, progress
bars redraw with ``\\r``, tracebacks carry ANSI colours. ``TerminalRenderer``
interprets that stream chunk by chunk and remembers the lowest line changed
since the last ``take_changes()``, so the caller can rewrite only the tail of
an output block instead of the whole block.

The model is a terminal of unlimited height with no fixed screen. Where a real
terminal's behaviour depends on a screen size, these choices apply:

* LF moves to column 0 of the next line (a pty's ``onlcr``), so CR LF is just
  a newline. ``\\r`` only moves the cursor; it never erases.
* A column is one code point. Wide characters (CJK, emoji) and combining marks
  each count as one column; they pass through unchanged.
* ``ESC[H`` / ``ESC[f`` rows are relative to a virtual screen of 24 rows whose
  top line is ``max(0, line_count - 24)``; rows are clamped to 1..24. Upward
  moves (``ESC[A``, ``ESC[F``) and ``ESC 8`` stop at that top line, as on a
  terminal, where scrollback is out of the cursor's reach.
* Downward moves (``ESC[B``, ``ESC[E``) create the lines they reach, but move
  at most 24 rows per sequence so a garbage count cannot allocate without
  bound.
* ``ESC[1J`` empties the screen's lines above the cursor (they stay, so line
  indices are stable) and blanks the current line up to the cursor; lines
  above the screen are scrollback, out of its reach as on a terminal.
  ``ESC[2J`` and ``ESC[3J`` clear everything to a single empty line with the
  cursor at 0,0: without a screen there is nothing to keep, and output
  written after a ``clear`` should start at the top of the block.
* ``ESC 7`` / ``ESC 8`` save and restore the cursor; other two-character
  escapes, OSC strings, private modes and unknown CSI finals are dropped.
* SGR (colours, bold, ...) is kept as the mrmd editor's own run keeps it
  (``TerminalBuffer.toAnsi()`` in mrmd-electron 0.5.4, which renders it):
  each character has the style it was written with, and a line is written
  back with the shortest SGR changes from the default style, ending in
  ``ESC[0m`` when a style is still on. The attributes and colours are the
  editor's (1, 2, 3, 4, 7, 9 and their ends, 16 colours, 256 and RGB);
  other SGR codes are ignored, as there.
* A stray ESC followed by a printable character drops both; followed by a
  control character, only the ESC goes and the control still acts.
* C0 controls other than LF, CR, BS, TAB and ESC are dropped. C1 code points
  (U+0080-U+009F) are kept as text: a UTF-8 terminal does not act on them.
* A line is cut at ``max_columns`` (default 4,096, a wide terminal): writes
  past that column are dropped until the cursor comes back (``\\r``, a
  newline, a cursor move), and tabs, padding and erases never extend a line
  past it. The cursor itself may sit past the edge (so that moving back
  left lands where the program expects), clamped at ``_FAR`` so that counts
  stay small numbers.

Everything held is bounded by what it renders: ``size`` is the exact UTF-8
length of ``text()``, kept up to date by every change, so a caller can cap
what the renderer holds in O(1) instead of measuring what was fed to it.
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

from .styles import LineStyles, sgr

__all__ = ["TerminalRenderer", "SCREEN_ROWS", "DEFAULT_COLUMNS", "utf8_len", "plain_ascii",
           "short_lines", "SGR"]

SCREEN_ROWS = 24
DEFAULT_COLUMNS = 4096

# What the loop in feed() takes in one step from where it stands: printable
# text and LF, so that runs of whole lines reach the bulk path in _text.
_RUN = re.compile(r"[^\x00-\x09\x0b-\x1f\x7f]*")
SGR = re.compile(r"\x1b\[[0-9;]*m")
_SGR_PARAMS = re.compile(r"\x1b\[([0-9;]*)m")
# Text, SGR and newlines only (what a program printing in colour sends). One
# character or one SGR per step: unambiguous, so a chunk that does not match
# fails in linear time (a "+" inside the "*" would backtrack exponentially).
_COLOURED = re.compile(r"(?:[^\x00-\x09\x0b-\x1f\x7f]|\x1b\[[0-9;]*m)*")
# Every control but LF (CR LF already folded): text without one is only lines.
_CONTROL_BYTES = bytes([*range(0x00, 0x0a), *range(0x0b, 0x20), 0x7f])
# A progress bar redraws its line from column 0 many times per chunk; the
# whole run of redraws is taken at once, as only what the last ones leave
# is visible.
_REDRAWS = re.compile(r"(?:\r[^\x00-\x1f\x7f]*)+")

# Matched where _RUN stops; group numbers are the dispatch keys (match.lastindex).
_SPECIAL = re.compile(
    r"\x1b\[([0-?]*)([ -/]*)([@-~])"                      # 1-3 CSI params, intermediates, final
    r"|(\x1b\][^\x07\x1b]*(?:\x07|\x1b\\|(?=\x1b[^\\])))"  # 4 OSC; a new ESC aborts it
    r"|\x1b([0-Z\\^-~]|[ -/]+[0-~])"                       # 5 two-character escapes
    r"|(\r)"                                               # 6
    r"|(\x08)"                                             # 7
    r"|(\t)"                                               # 8
    r"|(\x1b)"                                             # 9 ESC that starts nothing known
    r"|([\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]+)"       # 10 controls we drop
)
_CSI, _OSC, _ESC2, _CR, _BS, _TAB, _LONE_ESC, _DROP = 3, 4, 5, 6, 7, 8, 9, 10

# What a sequence cut by a chunk boundary can look like; matched at a lone ESC.
_INCOMPLETE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[ -/]*)\Z")

# An unfinished CSI longer than this is garbage, not a sequence still arriving.
_MAX_PENDING = 256
# Longer counts are clamped before int(), which refuses over 4300 digits;
# every use clamps them far lower anyway.
_MAX_DIGITS = 9
# The farthest the cursor goes past the right edge; far enough that no
# realistic left move comes back from it differently.
_FAR = 10 ** _MAX_DIGITS


# Lines are measured this many at a time, in one join, when many are dropped
# at once: a Python step per line would make a cap over a million empty rows
# cost seconds.
_BLOCK = 512


def utf8_len(text: str) -> int:
    """UTF-8 length; isascii() is O(1) on CPython, so ASCII lines cost nothing."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def plain_ascii(text: str) -> bool:
    """ASCII without any control but LF: only lines of text. Checked as
    bytes, at C speed (a regex or isprintable() looks at each character far
    more slowly)."""
    if not text.isascii():
        return False
    raw = text.encode("ascii")
    return len(raw.translate(None, _CONTROL_BYTES)) == len(raw)


def short_lines(text: str, limit: int) -> bool:
    """True when no line of ``text`` is longer than ``limit`` characters, found
    with a few C-speed searches instead of measuring every line: a longer
    line would hold a whole aligned stretch of ``limit // 2`` characters
    without a newline. False means "maybe": measure."""
    step = limit // 2
    if step < 64:
        return False
    find = text.find
    for start in range(0, len(text) - step + 1, step):
        if find("\n", start, start + step) == -1:
            return False
    return True


def _size_of(lines: List[str]) -> int:
    """UTF-8 bytes of ``lines``, one newline each."""
    return utf8_len("\n".join(lines)) + 1 if lines else 0


def _fit(lines: List[str], stop: int, limit: int) -> Tuple[int, int]:
    """The most leading lines (at most ``stop``) whose size, one newline each,
    stays within ``limit``; returns their count and size."""
    n = total = 0
    while n < stop:
        end = min(n + _BLOCK, stop)
        size = _size_of(lines[n:end])
        if total + size <= limit:
            n, total = end, total + size
            continue
        for line in lines[n:end]:
            size = utf8_len(line) + 1
            if total + size > limit:
                break
            n, total = n + 1, total + size
        break
    return n, total


class TerminalRenderer:
    """Render a pty's output stream into lines, reporting which lines changed."""

    def __init__(self, tab_size: int = 8, max_columns: int = DEFAULT_COLUMNS):
        if tab_size < 1:
            raise ValueError(f"tab_size must be at least 1, not {tab_size!r}")
        if max_columns < 1:
            raise ValueError(f"max_columns must be at least 1, not {max_columns!r}")
        self._tab_size = tab_size
        self._max = max_columns
        self._lines: List[str] = [""]
        self._bytes = 0   # UTF-8 bytes of the lines, newlines not counted
        self._row = 0
        self._col = 0
        self._saved = (0, 0)
        self._pending = ""
        self._dirty: Optional[int] = None
        self._style = None              # the style text is written with (styles.py)
        self._styles = LineStyles()

    # -- public API ---------------------------------------------------------

    def feed(self, data: str) -> None:
        """Interpret raw terminal text.

        Chunks may be cut anywhere, including inside an escape sequence: an
        incomplete sequence is held until the next feed.
        """
        if self._pending:
            data = self._pending + data
            self._pending = ""
        if not data:
            return
        # LF already returns the carriage, so CR LF is LF; folding the pair
        # lets typical output reach _text as whole runs of lines.
        if "\r" in data:
            data = data.replace("\r\n", "\n")
        # The common case, whole lines of text without controls, is split once
        # and appended in bulk (ASCII is checked as bytes); isprintable() is
        # False for every control, so any of them takes the general path below.
        if data.isascii():
            if plain_ascii(data):
                self._text(data)
                return
        else:
            parts = data.split("\n")
            if all(map(str.isprintable, parts)):
                if len(parts) == 1:
                    self._write(data)
                else:
                    self._lines_of(parts, None)
                return
        # Coloured lines (text, SGR and newlines only) from the end of the output.
        first = data.find("\n")
        if first != -1 and "\x1b[" in data and self.at_end() and _COLOURED.fullmatch(data):
            self._general(data[:first + 1])
            self._coloured_lines(data[first + 1:].split("\n"))
            return
        self._general(data)

    def _general(self, data: str) -> None:
        """Any text, one sequence or run of text at a time."""
        run = _RUN.match
        match = _SPECIAL.match
        pos = 0
        end = len(data)
        while True:
            start = run(data, pos).end()
            if start > pos:
                self._text(data[pos:start])
            if start == end:
                return
            m = match(data, start)
            pos = m.end()
            kind = m.lastindex
            if kind == _CSI:
                final = m.group(3)
                if final != "m":
                    self._csi(m.group(1), m.group(2), final)
                elif not m.group(2) and not m.group(1).strip("0123456789;"):
                    # Private (ESC[>4;1m) and colon forms are not SGR for the editor either.
                    self._style = sgr(self._style, m.group(1))
            elif kind == _CR:
                redraws = _REDRAWS.match(data, start)
                pos = redraws.end()
                self._redraw(redraws.group().split("\r")[1:])
            elif kind == _BS:
                if self._col > 0:
                    self._col -= 1
            elif kind == _TAB:
                self._tab()
            elif kind == _ESC2:
                self._escape(m.group(5))
            elif kind == _LONE_ESC:
                if _INCOMPLETE.match(data, start):
                    self._hold(data[start:])
                    return
                # Skip the unrecognised byte too, unless it is a control: a
                # newline must still break the line.
                if " " <= data[pos:pos + 1] != "\x7f":
                    pos += 1
            # _OSC and _DROP: nothing to do.

    def lines(self) -> List[str]:
        """The rendered lines: ``"hi\\n"`` is ``["hi", ""]``, no output is ``[""]``."""
        return self._styles.view(self._lines)

    def text(self) -> str:
        return "\n".join(self.lines())

    def note(self, text: str) -> None:
        """Feed ``text`` in the default style (a line of the monitor's own),
        whatever style the program left on."""
        style, self._style = self._style, None
        self.feed(text)
        self._style = style

    @property
    def line_count(self) -> int:
        return len(self._lines)

    @property
    def size(self) -> int:
        """``len(self.text().encode("utf-8"))``, in O(1)."""
        return self._bytes + self._styles.extra(self._lines) + len(self._lines) - 1

    def take_changes(self) -> Optional[Tuple[int, List[str]]]:
        """Lines changed since the previous call (or since creation).

        Returns ``(first, lines()[first:])``, where ``first`` is the lowest line
        modified, or None if nothing changed. The returned lines replace
        everything from ``first`` to the end, so lines removed by ``ESC[J``
        show up as a shorter tail; when lines were only removed, ``first`` is
        ``line_count`` and the tail is empty. Rewriting a line with the text it
        already had is not a change.
        """
        first = self._dirty
        if first is None:
            return None
        self._dirty = None
        return first, self._styles.view(self._lines, first)

    @property
    def cursor_row(self) -> int:
        return self._row

    @property
    def max_columns(self) -> int:
        return self._max

    def at_end(self) -> bool:
        """The cursor is on the last line and no sequence is half read: text
        from here on only appends."""
        return self._row == len(self._lines) - 1 and not self._pending

    def lines_within(self, budget: int) -> int:
        """How many leading lines above the cursor fit in ``budget`` bytes,
        counting each line's newline."""
        lines = self._styles.view(self._lines, 0, self._row) if self._styles else self._lines
        return _fit(lines, self._row, budget)[0]

    def discard_head(self, n: int) -> List[str]:
        """Forget the first ``n`` lines (never the cursor's), returning them.

        Used to keep only the latest tail of an endless output in memory. The
        line numbers of take_changes() shift down by ``n`` accordingly.
        """
        n = max(0, min(n, self._row, len(self._lines) - 1))
        if not n:
            return []
        plain = self._lines[:n]
        dropped = self._styles.view(self._lines, 0, n) if self._styles else plain
        del self._lines[:n]
        self._bytes -= _size_of(plain) - n
        self._styles.discard_head(n)
        self._row -= n
        self._saved = (max(0, self._saved[0] - n), self._saved[1])
        if self._dirty is not None:
            self._dirty = max(0, self._dirty - n)
        return dropped

    def trim_to(self, max_bytes: int, keep: int = SCREEN_ROWS) -> Tuple[int, int]:
        """Forget the oldest lines until ``size <= max_bytes``, keeping the last
        ``keep`` lines (what cursor moves can still reach) and the cursor's.

        Returns how many lines and bytes (their newlines included) went.
        """
        excess = self.size - max_bytes
        if excess <= 0:
            return 0, 0
        stop = max(0, min(self._row, len(self._lines) - max(1, keep)))
        lines = self._styles.view(self._lines, 0, stop + 1) if self._styles else self._lines
        n, freed = _fit(lines, stop, excess - 1)
        if n < stop:
            # The first line that brings the size within max_bytes goes too.
            freed += utf8_len(lines[n]) + 1
            n += 1
        self.discard_head(n)
        return n, freed

    def trim_blank_end(self) -> None:
        """Forget the empty lines at the end but one (the editor's own run
        trims them: ``toAnsi()``), when the output is over."""
        lines = self._lines
        n = len(lines)
        while n > 1 and lines[n - 1] == "" and lines[n - 2] == "":
            n -= 1
        if n < len(lines):
            del lines[n:]
            self._styles.drop_from(n)
            self._row = min(self._row, n - 1)
            self._mark(n)

    # -- text ---------------------------------------------------------------

    def _text(self, seg: str) -> None:
        if "\n" not in seg:
            self._write(seg)
        else:
            parts = seg.split("\n")
            # The lines after the first, newlines not counted: their size when ASCII.
            self._lines_of(parts, len(seg) - len(parts[0]) - (len(parts) - 1)
                           if seg.isascii() else None, short_lines(seg, self._max))

    def _lines_of(self, parts: List[str], ascii_size: Optional[int], short: bool = False) -> None:
        """Text made of ``parts`` joined by newlines, without other controls;
        ``ascii_size``: the size of ``parts[1:]`` when they are ASCII, else
        None; ``short``: no part is longer than max_columns (known already)."""
        ascii = ascii_size is not None
        if parts[0]:
            self._write(parts[0])
        lines = self._lines
        above = len(lines) - 1 - self._row
        if above or self._style is not None:
            if self._style is not None:
                above = len(parts)   # coloured: each line painted as it is written
            # The cursor was moved up: lines overwrite existing ones until it
            # is back on the last line, and the rest is appended in bulk.
            for part in parts[1:above + 1]:
                self._newline()
                if part:
                    self._write(part)
            if len(parts) <= above + 1:
                return
            parts = parts[above:]
            parts[0] = ""   # already written
            ascii_size = None   # some lines went above: the rest is measured below
        new = parts[1:]
        limit = self._max
        if not short and max(map(len, new)) > limit:
            new = [part[:limit] for part in new]
            ascii_size = None
        if ascii_size is not None:
            added = ascii_size
        elif ascii:
            added = sum(map(len, new))
        else:
            added = utf8_len("\n".join(new)) - (len(new) - 1)
        first = len(lines)
        lines.extend(new)
        self._bytes += added
        self._row = len(lines) - 1
        self._col = len(parts[-1])
        self._mark(first)

    def _coloured_lines(self, pieces: List[str]) -> None:
        """Lines of printable text and SGR, the cursor at the start of a new
        last line: each line's characters and colours are built in one go
        (the general path takes a Python step per write and per sequence)."""
        style = self._style
        limit = self._max
        texts, styled = [], []
        for piece in pieces:
            if "\x1b" in piece:
                segments = _SGR_PARAMS.split(piece)
                parts = segments[0::2]
                text = "".join(parts)
                styles: List = []
                for i, part in enumerate(parts):
                    if i:
                        style = sgr(style, segments[2 * i - 1])
                    if part:
                        styles += [style] * len(part)
            else:
                text = piece
                styles = [style] * len(text) if style is not None else []
            texts.append(text[:limit])
            styled.append(styles[:limit] if any(styles) else None)
        lines = self._lines
        row = self._row
        lines[row] = texts[0]
        lines.extend(texts[1:])
        self._bytes += utf8_len("".join(texts))
        for i, styles in enumerate(styled):
            if styles is not None:
                self._styles.set_row(row + i, styles)
        self._row = len(lines) - 1
        self._col = min(len(text), _FAR)
        self._style = style
        self._mark(row)

    def _redraw(self, texts: List[str]) -> None:
        """Write each of ``texts`` from column 0 in turn, at the cost of one
        write: what stays visible is the last text, then whatever an earlier,
        longer one leaves beyond it."""
        last = texts[-1]
        shown, width = last, len(last)
        for text in reversed(texts):
            if len(text) > width:
                shown += text[width:]
                width = len(text)
        self._col = 0
        if shown:
            self._write(shown)
        self._col = len(last)

    def _write(self, text: str) -> None:
        col = self._col
        end = col + len(text)
        self._col = min(end, _FAR)
        limit = self._max
        if col >= limit:
            return
        if end > limit:
            # Cut before building the line: a huge unbroken write costs what is kept.
            text = text[:limit - col]
            end = limit
        row = self._row
        line = self._lines[row]
        n = len(line)
        # The size changes by what is written over what it replaces: measuring
        # only that keeps a long non-ASCII line cheap to write to.
        if col == n:
            new = line + text
            grown = utf8_len(text)
        elif col > n:
            new = line + " " * (col - n) + text
            grown = col - n + utf8_len(text)
        else:
            new = line[:col] + text + line[end:]
            grown = utf8_len(text) - utf8_len(line[col:end])
        painted = self._styles.paint(row, col, end, self._style)
        if new == line and not painted:
            return
        self._set(row, new, grown)

    def _newline(self) -> None:
        self._col = 0
        self._goto_row(self._row + 1)

    def _tab(self) -> None:
        size = self._tab_size
        stop = (self._col // size + 1) * size
        self._col = min(stop, _FAR)
        line = self._lines[self._row]
        width = min(stop, self._max)
        if len(line) < width:
            self._set(self._row, line + " " * (width - len(line)), width - len(line))

    # -- escape sequences ---------------------------------------------------

    def _hold(self, seq: str) -> None:
        if seq[1:2] == "]":
            # An OSC body is dropped anyway; keep only what decides how it ends.
            seq = "\x1b]\x1b" if len(seq) > 2 and seq[-1] == "\x1b" else "\x1b]"
        elif len(seq) > _MAX_PENDING:
            seq = ""
        self._pending = seq

    def _escape(self, code: str) -> None:
        if code == "7":
            self._saved = (self._row, self._col)
        elif code == "8":
            row, col = self._saved
            # The saved line may have been erased or scrolled off the screen since.
            self._row = max(self._top(), min(row, len(self._lines) - 1))
            self._col = col

    def _csi(self, params: str, intermediates: str, final: str) -> None:
        if intermediates or (params and params[0] in "<=>?"):
            return
        args = [_number(p) for p in params.split(";")] if params else []
        first = args[0] if args else 0
        count = first or 1
        if final == "K":
            self._erase_line(first)
        elif final == "A":
            self._row = max(self._top(), self._row - count)
        elif final == "B":
            self._goto_row(self._row + min(count, SCREEN_ROWS))
        elif final == "C":
            self._col = min(self._col + count, _FAR)
        elif final == "D":
            self._col = max(0, self._col - count)
        elif final == "G":
            self._col = count - 1
        elif final == "H" or final == "f":
            row = min(count, SCREEN_ROWS)
            col = args[1] if len(args) > 1 and args[1] else 1
            top = max(0, len(self._lines) - SCREEN_ROWS)
            self._goto_row(top + row - 1)
            self._col = col - 1
        elif final == "J":
            self._erase_display(first)
        elif final == "E":
            self._goto_row(self._row + min(count, SCREEN_ROWS))
            self._col = 0
        elif final == "F":
            self._row = max(self._top(), self._row - count)
            self._col = 0

    def _top(self) -> int:
        """The first row of the screen: the cursor never goes above it, so a
        change is always within the last SCREEN_ROWS lines or new ones, and
        a flush costs what changed, not the whole output."""
        return max(0, len(self._lines) - SCREEN_ROWS)

    def _goto_row(self, row: int) -> None:
        lines = self._lines
        if row >= len(lines):
            first = len(lines)
            lines.extend([""] * (row + 1 - first))
            self._mark(first)
        self._row = row

    def _erase_line(self, mode: int) -> None:
        row, col = self._row, self._col
        line = self._lines[row]
        if mode == 0:
            new, shrunk = line[:col], utf8_len(line[col:])
            self._styles.clip(row, col)
        elif mode == 1:
            blank = min(col + 1, len(line))
            new, shrunk = " " * blank + line[blank:], utf8_len(line[:blank]) - blank
            self._styles.blank(row, blank)
        elif mode == 2:
            new, shrunk = "", utf8_len(line)
            self._styles.drop(row)
        else:
            return
        if new != line:
            self._set(row, new, -shrunk)
        elif self._styles.touch(row):
            self._mark(row)   # the same characters may have lost their colours

    def _erase_display(self, mode: int) -> None:
        lines = self._lines
        if mode == 0:
            self._erase_line(0)
            if len(lines) > self._row + 1:
                self._bytes -= _size_of(lines[self._row + 1:]) - (len(lines) - self._row - 1)
                del lines[self._row + 1:]
                self._styles.drop_from(self._row + 1)
                self._mark(self._row + 1)
        elif mode == 1:
            # Only the screen, as on a terminal: scrollback is out of reach
            # (and a loop over it would make each ESC[1J cost the whole output).
            for i in range(max(0, len(lines) - SCREEN_ROWS), self._row):
                if lines[i]:
                    self._styles.drop(i)
                    self._set(i, "", -utf8_len(lines[i]))
            self._erase_line(1)
        elif mode == 2 or mode == 3:
            if lines != [""]:
                lines[:] = [""]
                self._bytes = 0
                self._styles.clear()
                self._mark(0)
            self._row = self._col = 0

    def _set(self, row: int, new: str, grown: int) -> None:
        """Replace a line whose UTF-8 size changes by ``grown``."""
        self._lines[row] = new
        self._bytes += grown
        if self._styles:
            self._styles.touch(row)
        self._mark(row)

    def _mark(self, row: int) -> None:
        if self._dirty is None or row < self._dirty:
            self._dirty = row


def _number(param: str) -> int:
    """One CSI parameter; empty or unparseable means "default" (0)."""
    if not param.isdigit():
        return 0
    if len(param) > _MAX_DIGITS:
        return 10 ** _MAX_DIGITS
    return int(param)
