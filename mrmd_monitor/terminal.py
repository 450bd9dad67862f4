"""Turn a raw pseudo-terminal stream into the text a person would see.

A runtime's stdout/stderr come from a pty: lines end in ``\\r\\n``, progress
bars redraw with ``\\r``, tracebacks carry ANSI colours. ``TerminalRenderer``
decodes that stream chunk by chunk (``escapes.py`` says what a sequence is)
and drives a ``Screen`` (``screen.py``: the lines, the cursor, what each
control does, and the lowest line changed since the last ``take_changes()``,
so the caller can rewrite only the tail of an output block).

What the decoder does with the stream:

* LF moves to column 0 of the next line (a pty's ``onlcr``), so CR LF is just
  a newline. ``\\r`` only moves the cursor; it never erases.
* CSI ``A B C D E F G H f`` move the cursor, ``J`` and ``K`` erase, ``m``
  (SGR) sets the style; ``ESC 7`` / ``ESC 8`` save and restore the cursor.
  Other two-character escapes, OSC strings, private modes, colon SGR forms
  and unknown CSI finals are dropped.
* A sequence cut by the end of a chunk is held until the next one, within
  ``escapes.MAX_PENDING`` characters (an OSC body is not held at all).
* A stray ESC followed by a printable character drops both; followed by a
  control character, only the ESC goes and the control still acts.
* C0 controls other than LF, CR, BS, TAB and ESC are dropped. C1 code points
  (U+0080-U+009F) are kept as text: a UTF-8 terminal does not act on them.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from .escapes import (BS, COLOURED, CR, CSI, ESC2, INCOMPLETE, LONE_ESC, REDRAWS, RUN, SGR,
                      SPECIAL, TAB, held, number, plain_ascii, short_lines, utf8_len)
from .screen import DEFAULT_COLUMNS, SCREEN_ROWS, Screen
from .styles import sgr

__all__ = ["TerminalRenderer", "SCREEN_ROWS", "DEFAULT_COLUMNS", "utf8_len", "plain_ascii",
           "short_lines", "SGR"]

# CSI finals that move the cursor by a count (default 1).
_MOVES = {"A": Screen.up, "B": Screen.down, "C": Screen.forward, "D": Screen.back,
          "E": Screen.next_line, "F": Screen.previous_line, "G": Screen.to_column}


class TerminalRenderer:
    """Render a pty's output stream into lines, reporting which lines changed."""

    def __init__(self, tab_size: int = 8, max_columns: int = DEFAULT_COLUMNS):
        self.screen = Screen(tab_size, max_columns)
        self._pending = ""

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
        # lets typical output reach the screen as whole runs of lines.
        if "\r" in data:
            data = data.replace("\r\n", "\n")
        screen = self.screen
        # The common case, whole lines of text without controls, is split once
        # and appended in bulk (ASCII is checked as bytes); isprintable() is
        # False for every control, so any of them takes the general path below.
        if data.isascii():
            if plain_ascii(data):
                screen.write_lines(data)
                return
        else:
            parts = data.split("\n")
            if all(map(str.isprintable, parts)):
                if len(parts) == 1:
                    screen.write(data)
                else:
                    screen.write_parts(parts, None)
                return
        # Coloured lines (text, SGR and newlines only) from the end of the output.
        first = data.find("\n")
        if first != -1 and "\x1b[" in data and self.at_end() and COLOURED.fullmatch(data):
            self._general(data[:first + 1])
            screen.write_coloured(data[first + 1:].split("\n"))
            return
        self._general(data)

    def _general(self, data: str) -> None:
        """Any text, one sequence or run of text at a time."""
        screen = self.screen
        run = RUN.match
        match = SPECIAL.match
        pos = 0
        end = len(data)
        while True:
            start = run(data, pos).end()
            if start > pos:
                screen.write_lines(data[pos:start])
            if start == end:
                return
            m = match(data, start)
            pos = m.end()
            kind = m.lastindex
            if kind == CSI:
                final = m.group(3)
                if final != "m":
                    _csi(screen, m.group(1), m.group(2), final)
                elif not m.group(2) and not m.group(1).strip("0123456789;"):
                    # Private (ESC[>4;1m) and colon forms are not SGR for the editor either.
                    screen.style = sgr(screen.style, m.group(1))
            elif kind == CR:
                redraws = REDRAWS.match(data, start)
                pos = redraws.end()
                screen.redraw(redraws.group().split("\r")[1:])
            elif kind == BS:
                screen.backspace()
            elif kind == TAB:
                screen.tab()
            elif kind == ESC2:
                code = m.group(5)
                if code == "7":
                    screen.save_cursor()
                elif code == "8":
                    screen.restore_cursor()
            elif kind == LONE_ESC:
                if INCOMPLETE.match(data, start):
                    self._pending = held(data[start:])
                    return
                # Skip the unrecognised byte too, unless it is a control: a
                # newline must still break the line.
                if " " <= data[pos:pos + 1] != "\x7f":
                    pos += 1
            # OSC and dropped controls: nothing to do.

    def note(self, text: str) -> None:
        """Feed ``text`` in the default style (a line of the monitor's own),
        whatever style the program left on."""
        screen = self.screen
        style, screen.style = screen.style, None
        self.feed(text)
        screen.style = style

    def at_end(self) -> bool:
        """The cursor is on the last line and no sequence is half read: text
        from here on only appends."""
        return self.screen.on_last_line() and not self._pending

    # -- what the screen shows, and keeping it bounded (screen.py) ------------

    def lines(self) -> List[str]:
        return self.screen.lines()

    def text(self) -> str:
        return self.screen.text()

    @property
    def line_count(self) -> int:
        return self.screen.line_count

    @property
    def size(self) -> int:
        return self.screen.size

    @property
    def cursor_row(self) -> int:
        return self.screen.cursor_row

    @property
    def max_columns(self) -> int:
        return self.screen.max_columns

    def take_changes(self) -> Optional[Tuple[int, List[str]]]:
        return self.screen.take_changes()

    def lines_within(self, budget: int) -> int:
        return self.screen.lines_within(budget)

    def discard_head(self, n: int) -> List[str]:
        return self.screen.discard_head(n)

    def trim_to(self, max_bytes: int, keep: int = SCREEN_ROWS) -> Tuple[int, int]:
        return self.screen.trim_to(max_bytes, keep)

    def trim_blank_end(self) -> None:
        self.screen.trim_blank_end()


def _csi(screen: Screen, params: str, intermediates: str, final: str) -> None:
    """Act on one CSI sequence other than SGR."""
    if intermediates or (params and params[0] in "<=>?"):
        return
    args = [number(p) for p in params.split(";")] if params else []
    first = args[0] if args else 0
    move = _MOVES.get(final)
    if move is not None:
        move(screen, first or 1)
    elif final == "K":
        screen.erase_line(first)
    elif final == "J":
        screen.erase_display(first)
    elif final == "H" or final == "f":
        screen.position(first or 1, args[1] if len(args) > 1 and args[1] else 1)
