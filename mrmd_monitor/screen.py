"""The lines a person sees and the cursor that writes them, which the decoder
in ``terminal.py`` drives: a terminal of unlimited height with no fixed
screen. Pure; where a real terminal depends on a screen size, these apply:

* A newline moves to column 0 of the next line (a pty's ``onlcr``); ``\\r``
  only moves the cursor, it never erases.
* A column is one code point. Wide characters (CJK, emoji) and combining marks
  each count as one column; they pass through unchanged.
* ``position`` rows (``ESC[H``) are relative to a virtual screen of 24 rows
  whose top line is ``max(0, line_count - 24)``; rows are clamped to 1..24.
  Upward moves and ``restore_cursor`` stop at that top line, as on a
  terminal, where scrollback is out of the cursor's reach.
* Downward moves create the lines they reach, but move at most 24 rows at
  a time so a garbage count cannot allocate without bound.
* ``erase_display(1)`` empties the screen's lines above the cursor (they
  stay, so line indices are stable; scrollback is out of its reach) and
  blanks the current line up to the cursor. ``erase_display(2)`` and ``(3)``
  clear everything to one empty line with the cursor at 0,0: without a
  screen there is nothing to keep, and output written after a ``clear``
  should start at the top of the block.
* SGR (colours, bold, ...) is kept as the mrmd editor's own run keeps it
  (``TerminalBuffer.toAnsi()`` in mrmd-electron 0.5.4, which renders it):
  each character has the style it was written with (``style``), and a line
  is written back with the shortest SGR changes from the default style,
  ending in ``ESC[0m`` when a style is still on (``styles.py``).
* A line is cut at ``max_columns`` (default 4,096, a wide terminal): writes
  past that column are dropped until the cursor comes back (``\\r``, a
  newline, a cursor move), and tabs, padding and erases never extend a line
  past it. The cursor itself may sit past the edge (so that moving back
  left lands where the program expects), clamped at ``FAR`` so that counts
  stay small numbers.

Everything held is bounded by what it shows: ``size`` is the exact UTF-8
length of ``text()``, kept up to date by every change, so a caller can cap
what the screen holds in O(1) instead of measuring what was written to it.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from .escapes import MAX_DIGITS, SGR_PARAMS, short_lines, utf8_len
from .styles import LineStyles, sgr

__all__ = ["Screen", "Lines", "SCREEN_ROWS", "DEFAULT_COLUMNS"]

SCREEN_ROWS = 24
DEFAULT_COLUMNS = 4096

# The farthest the cursor goes past the right edge; far enough that no
# realistic left move comes back from it differently.
FAR = 10 ** MAX_DIGITS

# Lines are measured this many at a time, in one join, when many are dropped
# at once: a Python step per line would make a cap over a million empty rows
# cost seconds.
_BLOCK = 512


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


class Lines:
    """The rendered lines with their styles, their UTF-8 size and the lowest
    line changed since the last ``take_changes()``: what a caller reads."""

    def __init__(self):
        self._lines: List[str] = [""]
        self._bytes = 0   # UTF-8 bytes of the lines, newlines not counted
        self._dirty: Optional[int] = None
        self._styles = LineStyles()

    def lines(self) -> List[str]:
        """The rendered lines: ``"hi\\n"`` is ``["hi", ""]``, no output is ``[""]``."""
        return self._styles.view(self._lines)

    def text(self) -> str:
        return "\n".join(self.lines())

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

    def _cut(self, n: int) -> None:
        """Forget the lines from ``n`` on."""
        lines = self._lines
        if len(lines) > n:
            self._bytes -= _size_of(lines[n:]) - (len(lines) - n)
            del lines[n:]
            self._styles.drop_from(n)
            self._mark(n)


class Screen(Lines):
    """The lines and a cursor over them: every operation a terminal does."""

    def __init__(self, tab_size: int = 8, max_columns: int = DEFAULT_COLUMNS):
        if tab_size < 1:
            raise ValueError(f"tab_size must be at least 1, not {tab_size!r}")
        if max_columns < 1:
            raise ValueError(f"max_columns must be at least 1, not {max_columns!r}")
        super().__init__()
        self._tab_size = tab_size
        self._max = max_columns
        self._row = 0
        self._col = 0
        self._saved = (0, 0)
        self.style = None   # the style text is written with (styles.py)

    @property
    def cursor_row(self) -> int:
        return self._row

    @property
    def max_columns(self) -> int:
        return self._max

    def on_last_line(self) -> bool:
        return self._row == len(self._lines) - 1

    # -- keeping memory bounded ---------------------------------------------

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
        self._cut(n)
        self._row = min(self._row, n - 1)

    # -- text ---------------------------------------------------------------

    def write_lines(self, seg: str) -> None:
        """Text with newlines but no other control."""
        if "\n" not in seg:
            self.write(seg)
        else:
            parts = seg.split("\n")
            # The lines after the first, newlines not counted: their size when ASCII.
            self.write_parts(parts, len(seg) - len(parts[0]) - (len(parts) - 1)
                             if seg.isascii() else None, short_lines(seg, self._max))

    def write_parts(self, parts: List[str], ascii_size: Optional[int], short: bool = False) -> None:
        """Text made of ``parts`` joined by newlines, without other controls;
        ``ascii_size``: the size of ``parts[1:]`` when they are ASCII, else
        None; ``short``: no part is longer than max_columns (known already)."""
        ascii = ascii_size is not None
        if parts[0]:
            self.write(parts[0])
        lines = self._lines
        above = len(lines) - 1 - self._row
        if above or self.style is not None:
            if self.style is not None:
                above = len(parts)   # coloured: each line painted as it is written
            # The cursor was moved up: lines overwrite existing ones until it
            # is back on the last line, and the rest is appended in bulk.
            for part in parts[1:above + 1]:
                self.newline()
                if part:
                    self.write(part)
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

    def write_coloured(self, pieces: List[str]) -> None:
        """Lines of printable text and SGR, the cursor at the start of a new
        last line: each line's characters and colours are built in one go
        (the general path takes a Python step per write and per sequence)."""
        style = self.style
        limit = self._max
        texts, styled = [], []
        for piece in pieces:
            if "\x1b" in piece:
                segments = SGR_PARAMS.split(piece)
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
        self._col = min(len(text), FAR)
        self.style = style
        self._mark(row)

    def redraw(self, texts: List[str]) -> None:
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
            self.write(shown)
        self._col = len(last)

    def write(self, text: str) -> None:
        """Text without any control, from the cursor on."""
        col = self._col
        end = col + len(text)
        self._col = min(end, FAR)
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
        painted = self._styles.paint(row, col, end, self.style)
        if new == line and not painted:
            return
        self._set(row, new, grown)

    def newline(self) -> None:
        self._col = 0
        self._goto_row(self._row + 1)

    def tab(self) -> None:
        size = self._tab_size
        stop = (self._col // size + 1) * size
        self._col = min(stop, FAR)
        line = self._lines[self._row]
        width = min(stop, self._max)
        if len(line) < width:
            self._set(self._row, line + " " * (width - len(line)), width - len(line))

    # -- cursor -------------------------------------------------------------

    def backspace(self) -> None:
        if self._col > 0:
            self._col -= 1

    def save_cursor(self) -> None:
        self._saved = (self._row, self._col)

    def restore_cursor(self) -> None:
        row, col = self._saved
        # The saved line may have been erased or scrolled off the screen since.
        self._row = max(self._top(), min(row, len(self._lines) - 1))
        self._col = col

    def up(self, n: int) -> None:
        # _top() written out: a move costs one Python call, as before the split.
        self._row = max(0, len(self._lines) - SCREEN_ROWS, self._row - n)

    def down(self, n: int) -> None:
        row = self._row + min(n, SCREEN_ROWS)
        if row < len(self._lines):
            self._row = row
        else:
            self._goto_row(row)

    def forward(self, n: int) -> None:
        self._col = min(self._col + n, FAR)

    def back(self, n: int) -> None:
        self._col = max(0, self._col - n)

    def to_column(self, n: int) -> None:
        """To column ``n``, counted from 1."""
        self._col = n - 1

    def next_line(self, n: int) -> None:
        self.down(n)
        self._col = 0

    def previous_line(self, n: int) -> None:
        self.up(n)
        self._col = 0

    def position(self, row: int, col: int) -> None:
        """To ``row`` of the screen and ``col``, both counted from 1."""
        self._goto_row(self._top() + min(row, SCREEN_ROWS) - 1)
        self._col = col - 1

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

    # -- erasing ------------------------------------------------------------

    def erase_line(self, mode: int) -> None:
        """0: from the cursor on; 1: up to the cursor; 2: the whole line."""
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

    def erase_display(self, mode: int) -> None:
        """0: from the cursor on; 1: the screen up to the cursor; 2, 3: all."""
        lines = self._lines
        if mode == 0:
            self.erase_line(0)
            self._cut(self._row + 1)
        elif mode == 1:
            # Only the screen, as on a terminal: scrollback is out of reach
            # (and a loop over it would make each ESC[1J cost the whole output).
            for i in range(self._top(), self._row):
                if lines[i]:
                    self._styles.drop(i)
                    self._set(i, "", -utf8_len(lines[i]))
            self.erase_line(1)
        elif mode == 2 or mode == 3:
            if lines != [""]:
                lines[:] = [""]
                self._bytes = 0
                self._styles.clear()
                self._mark(0)
            self._row = self._col = 0
