"""Colours and text attributes (SGR) of the rendered output, kept the way the
mrmd editor keeps them in its own runs (``TerminalBuffer`` and ``toAnsi()``
in mrmd-electron 0.5.4's ``editor/mrmd.iife.js``), so that a block written
by the monitor reads, and renders, the same as one the editor wrote.

A style is ``None`` (the default) or a tuple ``(fg, bg, attributes)``: the
colours as the SGR codes that set them (``(31,)``, ``(38, 5, n)``,
``(38, 2, r, g, b)``), the attributes as a bit mask in the editor's order
(bold, dim, italic, underline, inverse, strikethrough).

``LineStyles`` holds the style of each character of the lines that have
one; the renderer keeps the characters. Pure: no threads, sockets or clocks.
"""

from functools import lru_cache
from itertools import groupby
from typing import Dict, List, Optional, Set, Tuple

from .escapes import MAX_DIGITS, utf8_len

Style = Optional[Tuple[Optional[tuple], Optional[tuple], int]]

# SGR code of each attribute bit, in the order the editor writes them.
_ATTRS = (1, 2, 3, 4, 7, 9)
_SET = {code: 1 << i for i, code in enumerate(_ATTRS)}
_UNSET = {22: _SET[1] | _SET[2], 23: _SET[3], 24: _SET[4], 27: _SET[7], 29: _SET[9]}
_FG = frozenset([*range(30, 38), *range(90, 98)])
_BG = frozenset([*range(40, 48), *range(100, 108)])
RESET = "\x1b[0m"
_MAX_CACHED = 32


def sgr(style: Style, params: str) -> Style:
    """The style after ``ESC [ params m``. Programs repeat a few short ones:
    those are remembered (long ones, which a hostile stream could make
    endless, are not)."""
    if len(params) <= _MAX_CACHED:
        return _sgr_cached(style, params)
    return _sgr(style, params)


@lru_cache(maxsize=4096)
def _sgr_cached(style: Style, params: str) -> Style:
    return _sgr(style, params)


def _sgr(style: Style, params: str) -> Style:
    fg, bg, attrs = style or (None, None, 0)
    codes = [int(p[:MAX_DIGITS]) if p.isdigit() else 0 for p in params.split(";")] \
        if params else [0]
    i, n = 0, len(codes)
    while i < n:
        code = codes[i]
        if code == 0:
            fg, bg, attrs = None, None, 0
        elif code in _SET:
            attrs |= _SET[code]
        elif code in _UNSET:
            attrs &= ~_UNSET[code]
        elif code == 39:
            fg = None
        elif code == 49:
            bg = None
        elif code in _FG:
            fg = (code,)
        elif code in _BG:
            bg = (code,)
        elif code in (38, 48) and i + 2 < n and codes[i + 1] == 5:
            color = (code, 5, codes[i + 2])
            fg, bg = (color, bg) if code == 38 else (fg, color)
            i += 2
        elif code in (38, 48) and i + 4 < n and codes[i + 1] == 2:
            color = (code, 2) + tuple(codes[i + 2:i + 5])
            fg, bg = (color, bg) if code == 38 else (fg, color)
            i += 4
        i += 1
    if fg is None and bg is None and not attrs:
        return None
    return fg, bg, attrs


@lru_cache(maxsize=4096)
def transition(new: Style, old: Style) -> str:
    """The SGR sequence that turns ``old`` into ``new`` (``styleToAnsi``)."""
    nfg, nbg, nattrs = new or (None, None, 0)
    ofg, obg, oattrs = old or (None, None, 0)
    codes: List[int] = []
    if oattrs & ~nattrs or (ofg is not None and nfg is None) or (obg is not None and nbg is None):
        codes.append(0)
        codes.extend(code for code in _ATTRS if nattrs & _SET[code])
        codes.extend(nfg or ())
        codes.extend(nbg or ())
    else:
        codes.extend(code for code in _ATTRS if nattrs & _SET[code] and not oattrs & _SET[code])
        if nfg != ofg and nfg:
            codes.extend(nfg)
        if nbg != obg and nbg:
            codes.extend(nbg)
    if not codes:
        return ""
    return "\x1b[%sm" % ";".join(map(str, codes))


def render(line: str, styles: List[Style]) -> str:
    """``line`` with the SGR changes between its characters' styles, from the
    default style and back to it at the end (``toAnsi()`` for one line).
    One step per run of a style, not per character."""
    parts = []
    cur = None
    pos = 0
    for style, run in groupby(styles[:len(line)]):
        end = pos + len(list(run))
        if style != cur:
            parts.append(transition(style, cur))
            cur = style
        parts.append(line[pos:end])
        pos = end
    if pos < len(line):
        if cur is not None:
            parts.append(RESET)
            cur = None
        parts.append(line[pos:])
    if cur is not None:
        parts.append(RESET)
    return "".join(parts)


class LineStyles:
    """The styles of the renderer's styled lines, by line number, and each
    such line as written back (with its SGR), whose extra bytes ``extra``
    adds up so that the renderer's size stays exact.

    A line is written back lazily (``settle``), once however many writes
    changed it since: a line of a thousand colour changes costs one pass,
    not one per change."""

    def __init__(self):
        self._rows: Dict[int, List[Style]] = {}   # absolute line number -> a style per column
        self._shown: Dict[int, Tuple[str, int]] = {}   # -> (line with SGR, its extra bytes)
        self._stale: Set[int] = set()   # lines changed since they were last written back
        self._base = 0   # absolute number of the renderer's line 0
        self._extra = 0

    def __bool__(self) -> bool:
        return bool(self._rows)

    def paint(self, row: int, col: int, end: int, style: Style) -> bool:
        """Columns ``col:end`` of ``row`` now have ``style``; whether that
        changed anything."""
        key = row + self._base
        styles = self._rows.get(key)
        if styles is None:
            if style is None:
                return False
            styles = self._rows[key] = []
        if len(styles) < end:
            styles.extend([None] * (end - len(styles)))
        new = [style] * (end - col)
        if styles[col:end] == new:
            return False
        styles[col:end] = new
        return True

    def set_row(self, row: int, styles: List[Style]) -> None:
        """``row`` (a new line) has these styles."""
        key = row + self._base
        self._rows[key] = styles
        self._stale.add(key)

    def clip(self, row: int, col: int) -> None:
        """Columns from ``col`` on are gone."""
        styles = self._rows.get(row + self._base)
        if styles is not None:
            del styles[col:]

    def blank(self, row: int, end: int) -> None:
        """Columns before ``end`` are default spaces now."""
        styles = self._rows.get(row + self._base)
        if styles is not None:
            styles[:end] = [None] * min(end, len(styles))

    def touch(self, row: int) -> bool:
        """``row``'s characters changed: write it back before it is next read.
        Whether it is a styled line."""
        if row + self._base in self._rows:
            self._stale.add(row + self._base)
            return True
        return False

    def drop(self, row: int) -> None:
        key = row + self._base
        self._rows.pop(key, None)
        self._stale.discard(key)
        self._forget(key)

    def drop_from(self, row: int) -> None:
        for key in [k for k in self._rows if k >= row + self._base]:
            self.drop(key - self._base)

    def clear(self) -> None:
        self._rows.clear()
        self._shown.clear()
        self._stale.clear()
        self._extra = 0

    def discard_head(self, n: int) -> None:
        """The first ``n`` lines are gone; numbers move down by ``n``."""
        if len(self._rows) < n:
            for key in [k for k in self._rows if k < self._base + n]:
                self.drop(key - self._base)
        else:
            for key in range(self._base, self._base + n):
                if key in self._rows:
                    self.drop(key - self._base)
        self._base += n

    def extra(self, lines: List[str]) -> int:
        """Bytes the SGR sequences add to ``lines`` (the renderer's)."""
        if self._stale:
            self._settle(lines)
        return self._extra

    def view(self, lines: List[str], start: int = 0, stop: Optional[int] = None) -> List[str]:
        """``lines[start:stop]`` as written back."""
        if self._stale:
            self._settle(lines)
        stop = len(lines) if stop is None else stop
        out = lines[start:stop]
        base = self._base + start
        found = self._shown
        if len(out) < len(found):   # a tail (what a flush takes): look up its lines
            for i in range(len(out)):
                if i + base in found:
                    out[i] = found[i + base][0]
            return out
        for key, (shown, _) in found.items():
            if 0 <= key - base < len(out):
                out[key - base] = shown
        return out

    def _settle(self, lines: List[str]) -> None:
        for key in self._stale:
            self._forget(key)
            styles = self._rows.get(key)
            i = key - self._base
            if styles is None or not 0 <= i < len(lines):
                continue
            line = lines[i]
            if not any(styles[:len(line)]):
                del self._rows[key]
                continue
            shown = render(line, styles)
            extra = utf8_len(shown) - utf8_len(line)
            self._shown[key] = (shown, extra)
            self._extra += extra
        self._stale.clear()

    def _forget(self, key: int) -> None:
        found = self._shown.pop(key, None)
        if found is not None:
            self._extra -= found[1]
