"""Output blocks in the markdown text: finding them, placing them after their
cell, and turning a change of rendered output into a minimal edit.

Pure string logic. Positions are code-point indices into ``str(text)``;
``Edit`` carries UTF-8 byte offsets, which is what pycrdt's Text uses for
insert and delete (measured with pycrdt 0.14: reading a slice counts code points): convert only at the very end, with
``byte_offset``.
"""

import posixpath
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

FENCE = "```"
# A zero-width space in front of an output line that would otherwise read as a
# code fence: the editor's cell parser (mrmd-electron 0.5.4 findCodeBlocks)
# closes a block on any line of three or more backticks, whatever the
# opening's length, and a person sees the same characters.
FENCE_ESCAPE = "\u200b"
_FENCE_LINE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
# The editor finds a block by ``(`{3,})output:<id>[^\n]*\n([\s\S]*?)\1``:
# the first equal run of backticks anywhere, mid-line too, closes it. So the
# block's fence is made longer than every run of backticks in its content.
_TICKS = re.compile(r"`{3,}")
_MARKER = re.compile(r"^(`{3,})%s:%s[ \t]*$")


def byte_offset(s: str, index: int) -> int:
    return len(s[:index].encode("utf-8"))


def byte_len(s: str) -> int:
    return len(s.encode("utf-8"))


def escape_line(line: str) -> str:
    if _FENCE_LINE.match(line):
        return FENCE_ESCAPE + line
    return line


def escape_lines(lines: Sequence[str]) -> List[str]:
    """``escape_line`` of each line. A fence needs three backticks or tildes
    in a row: when the lines hold none (one search over them all, at C
    speed), no line needs looking at."""
    joined = "\n".join(lines)
    if "```" not in joined and "~~~" not in joined:
        return list(lines)
    return [escape_line(line) for line in lines]


def fence_for(lines: Sequence[str], at_least: int = 3) -> int:
    """The fence length a block holding ``lines`` needs: longer than any run
    of backticks in them (and than ``at_least``)."""
    joined = "\n".join(lines)
    if "```" not in joined:
        return at_least
    return max(at_least, max(map(len, _TICKS.findall(joined))) + 1)


@dataclass(frozen=True)
class Block:
    marker_start: int    # the first backtick of ```output:<id>
    content_start: int   # just after the marker line's newline
    content_end: int     # start of the closing fence line (== content_start when empty)
    end: int             # just after the closing fence (or len(text) if it is missing)
    closed: bool
    fence: int = 3       # backticks in its opening fence


def fence_edits(text: str, block: Block, length: int) -> List["Edit"]:
    """The edits (last first) that lengthen ``block``'s fences to ``length``
    backticks: after the closing run, and in front of the marker line, so
    that the content and its start (the editor's ``outputPosition``, anchored
    before it) stay put."""
    more = length - block.fence
    if more <= 0:
        return []
    ticks = "`" * more
    edits = []
    if block.closed:
        at = block.content_end + block.fence
        edits.append(Edit(byte_offset(text, at), 0, ticks, at, 0))
    edits.append(Edit(byte_offset(text, block.marker_start), 0, ticks, block.marker_start, 0))
    return edits


def find_block(text: str, exec_id: str, kind: str = "output") -> Optional[Block]:
    """Our block for ``exec_id``: its marker line (a fence of three or more
    backticks, ``kind:exec_id``, nothing else) at the start of a line, closed
    by the next line starting with as many backticks (content lines never
    start with a fence: escape_line)."""
    needle = "%s:%s" % (kind, exec_id)
    marker = re.compile(_MARKER.pattern % (re.escape(kind), re.escape(exec_id)), re.M)
    start = 0
    while True:
        i = text.find(needle, start)
        if i == -1:
            return None
        ticks_start = i
        while ticks_start and text[ticks_start - 1] == "`":
            ticks_start -= 1
        m = marker.match(text, ticks_start) if i - ticks_start >= 3 else None
        if m is not None and (ticks_start == 0 or text[ticks_start - 1] == "\n"):
            break
        start = i + 1
    i = ticks_start
    fence = "`" * len(m.group(1))
    if m.end() == len(text):
        # Marker on the last line, no newline yet: content starts at the end.
        return Block(i, len(text), len(text), len(text), False, len(fence))
    content_start = m.end() + 1
    if text.startswith(fence, content_start):
        close = content_start
    else:
        close = text.find("\n" + fence, content_start - 1)
        close = -1 if close == -1 else close + 1
    if close == -1:
        return Block(i, content_start, len(text), len(text), False, len(fence))
    close_end = text.find("\n", close)
    close_end = len(text) if close_end == -1 else close_end
    return Block(i, content_start, close, close_end, True, len(fence))


def duplicate_blocks(text: str, exec_id: str) -> List[Tuple[int, int]]:
    """Spans (code points, last first) of empty output blocks for ``exec_id``
    after its first one, with the blank lines that set each apart: a browser
    and the monitor can each make the block at the same moment."""
    first = find_block(text, exec_id)
    if first is None:
        return []
    spans = []
    rest = first.end
    while True:
        block = find_block(text[rest:], exec_id)
        if block is None:
            break
        start, end = rest + block.marker_start, rest + block.end
        if block.content_end > block.content_start or not block.closed:
            break
        if text.startswith("\n\n", start - 2) and start - 2 >= first.end:
            start -= 2
        spans.append((start, end))
        rest = end
    return spans[::-1]


@dataclass(frozen=True)
class Cell:
    start: int   # the opening fence
    end: int     # just after the closing fence's backticks


_OPEN_FENCE = re.compile(r"^(`{3,})([^`\n]*)$", re.M)


def iter_cells(text: str):
    """Fenced code blocks, as (Cell, info string, code)."""
    pos = 0
    while True:
        m = _OPEN_FENCE.search(text, pos)
        if not m:
            return
        ticks, info = m.group(1), m.group(2).strip()
        body_start = m.end() + 1
        close_re = re.compile(r"^%s`*[ \t]*$" % ticks, re.M)
        c = close_re.search(text, body_start) if body_start <= len(text) else None
        if not c:
            return
        code = text[body_start:c.start()]
        if code.endswith("\n"):
            code = code[:-1]
        yield Cell(m.start(), c.start() + len(c.group(0).rstrip())), info, code
        pos = c.end()


def find_cell(text: str, code: str, language: str, cell_id: Optional[str] = None) -> Optional[Cell]:
    """The code cell an execution belongs to: the one naming ``cell_id`` in its
    fence line when there is one, else the first whose code and language match."""
    by_code = None
    code = code.rstrip("\n")
    for cell, info, body in iter_cells(text):
        if info.startswith("output:") or info.startswith("stdin:"):
            continue
        words = info.replace("{", " ").replace("}", " ").replace("#", " ").replace("=", " ").split()
        if cell_id and cell_id in words:
            return cell
        lang = words[0] if words else ""
        if by_code is None and body == code and (lang == language or not language):
            by_code = cell
    return by_code


@dataclass(frozen=True)
class Edit:
    """Delete ``delete`` bytes at byte offset ``at``, then insert ``insert`` there.

    ``at_char`` and ``delete_chars`` say the same in code points, so that the
    positions of other blocks can be moved along without reading the text.
    """
    at: int
    delete: int
    insert: str
    at_char: int
    delete_chars: int


def place_block(text: str, exec_id: str, cell: Optional[Cell]) -> Tuple[Edit, int]:
    """The edit that gives ``exec_id`` an empty output block right after its cell,
    replacing an output block that already sits there (a re-run) instead of
    stacking a second one. Without a cell the block goes at the end.

    Returns the edit and the code-point index where the new block's content starts.
    """
    new = "%soutput:%s\n%s" % (FENCE, exec_id, FENCE)
    if cell is None:
        sep = "" if text.endswith("\n\n") or not text else ("\n" if text.endswith("\n") else "\n\n")
        at = len(text)
        return (Edit(byte_len(text), 0, sep + new, at, 0),
                at + len(sep) + len(new) - len(FENCE))
    after = text[cell.end:]
    m = re.match(r"\n\n(`{3,}output:[^\n]*)\n", after)
    if m:
        old_id = m.group(1).lstrip("`")[len("output:"):].strip()
        old = find_block(text, old_id)
        if old is not None and old.marker_start == cell.end + 2:
            start = old.marker_start
            return (Edit(byte_offset(text, start), byte_len(text[start:old.end]), new, start,
                         old.end - start),
                    start + len(new) - len(FENCE))
    at = cell.end
    return Edit(byte_offset(text, at), 0, "\n\n" + new, at, 0), at + 2 + len(new) - len(FENCE)


def common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n
    while lo < hi:  # binary search on slice equality: C speed, O(n log n) worst case
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_suffix_len(a: str, b: str, limit: int) -> int:
    n = min(len(a), len(b), limit)
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:] == b[len(b) - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _render(lines: Sequence[str]) -> str:
    """Lines as block content: each ends in a newline, and so does the last
    one unless it is empty (a block's closing fence needs a line of its own)."""
    if not lines:
        return ""
    body = "\n".join(lines)
    return body + "\n" if lines[-1] else body


@dataclass(frozen=True)
class Change:
    """One flush of a block: where it starts (in the content, as code points
    and as bytes), what goes and what comes."""
    char_offset: int
    byte_offset: int
    removed: str
    inserted: str


class BlockContent:
    """What the monitor has written into one output block, line by line.

    The terminal renderer says which lines changed; this turns that into one
    edit of the block touching only the changed part, so a browser's cursor
    and concurrent typing elsewhere are left alone. Its cost follows the
    changed lines, not the whole output: lengths are kept per line.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        # The fence the content needs (fence_for); it only grows while the
        # run lasts: a longer fence than needed is harmless.
        self.fence = len(FENCE)
        self._lines: List[str] = [""]   # escaped rendered lines
        self._chars: List[int] = [0]
        self._bytes: List[int] = [0]
        self._total_chars = 0           # of the lines themselves, without newlines
        self._total_bytes = 0

    @property
    def text(self) -> str:
        """The content as written (linear: for checks, not for every flush)."""
        return _render(self._lines)

    def apply(self, first: int, new_lines: Sequence[str]) -> Change:
        """Replace lines[first:] with new_lines; the smallest edit that does it."""
        lines = self._lines
        f = min(first, len(lines))
        # From one line earlier: whether the line before gets a newline can change.
        g = max(0, f - 1)
        tail = lines[g:f] + escape_lines(new_lines)
        if not tail and g == 0:
            tail = [""]
        old_tail = _render(lines[g:])
        new_tail = _render(tail)
        tail_chars = sum(self._chars[g:])
        tail_bytes = sum(self._bytes[g:])
        prefix_chars = self._total_chars - tail_chars + g
        prefix_bytes = self._total_bytes - tail_bytes + g
        # Whole lists at C speed: a flush of many lines costs no Python step per line.
        chars = list(map(len, tail))
        sizes = chars if new_tail.isascii() else [len(line.encode("utf-8")) for line in tail]
        del lines[g:], self._chars[g:], self._bytes[g:]
        lines.extend(tail)
        self._chars.extend(chars)
        self._bytes.extend(sizes)
        added_chars = sum(chars)
        self._total_chars += added_chars - tail_chars
        self._total_bytes += (added_chars if sizes is chars else sum(sizes)) - tail_bytes
        cp = common_prefix_len(old_tail, new_tail)
        cs = common_suffix_len(old_tail, new_tail, min(len(old_tail), len(new_tail)) - cp)
        return Change(prefix_chars + cp, prefix_bytes + byte_len(old_tail[:cp]),
                      old_tail[cp:len(old_tail) - cs], new_tail[cp:len(new_tail) - cs])


def content_edit(text: str, block: Block, expected: str, change: Change) -> Optional[Edit]:
    """The edit for one flush, if the block still holds exactly ``expected``
    (what we wrote before this change); None means the block was changed by
    someone else and must be rewritten whole."""
    actual = text[block.content_start:block.content_end]
    if actual != expected:
        return None
    return edit_at(byte_offset(text, block.content_start), block.content_start, change)


def edit_at(start_byte: int, start_char: int, change: Change) -> Edit:
    """The edit for a change, given where the block's content starts."""
    return Edit(start_byte + change.byte_offset, byte_len(change.removed), change.inserted,
                start_char + change.char_offset, len(change.removed))


def rewrite_edit(text: str, block: Block, content: str) -> Edit:
    """Replace the block's whole content (used when someone else changed it,
    or when a re-run starts with the old output still there)."""
    start = byte_offset(text, block.content_start)
    old = text[block.content_start:block.content_end]
    insert = content
    if not block.closed:
        insert = content + "`" * block.fence
    return Edit(start, byte_len(old), insert, block.content_start, len(old))


# Image lines right after a block, as the editor matches them before it
# replaces them with a new run's (mrmd-electron 0.5.4, runCell).
_IMAGE_LINES = re.compile(r"\n*(?:!\[[^\]]*\]\([^)]*\)\n*)+")
# What a link target may not hold as is in ![alt](target).
_LINK_UNSAFE = re.compile(r"[\s()<>\\]")


def image_refs(items) -> List[Tuple[str, str]]:
    """The images of a run, in order, as ``(where, why not)``: where it is
    seen (plots.PlotKeeper's ``imagePath``, relative to the project root, or
    ``imageUrl``), or why it could not be kept (``imageError``)."""
    refs = []
    for item in items:
        if not isinstance(item, dict):
            continue
        ref = item.get("imagePath") or item.get("imageUrl")
        if isinstance(ref, str) and ref:
            refs.append((ref, ""))
        elif isinstance(item.get("imageError"), str):
            refs.append(("", item["imageError"]))
    return refs


def image_target(doc_name: str, ref: str) -> str:
    """The link target of an image: a URL as it is, a path under the project
    root made relative to the notebook's directory (the document's name is
    its path in the project, as mrmd-sync stores it)."""
    if ref.startswith(("http://", "https://")):
        target = ref
    else:
        here = posixpath.dirname(posixpath.normpath("/" + doc_name))
        target = posixpath.relpath(posixpath.normpath("/" + ref), here)
    return _LINK_UNSAFE.sub(lambda m: "%%%02X" % ord(m.group()), target)


def image_lines_edit(text: str, block: Block, images: Sequence[Tuple[str, str]]) -> Optional[Edit]:
    """The edit that shows ``![plot-N](target)`` lines right after ``block``,
    replacing the image lines a previous run left there. ``images`` are
    ``(target, why not)``: an image that could not be kept gets a line with
    no target that says why (the editor's replacement still finds it). Like
    the editor's own run, but the blank lines around them stay as they were:
    one blank line after the block, and what followed it keeps its distance
    (the editor adds a blank line the first time and removes one on a
    re-run)."""
    if not images or not block.closed:
        return None
    lines = "\n".join("![plot-%d%s](%s)" % (i + 1, _alt_note(why), target)
                      for i, (target, why) in enumerate(images))
    at = block.end
    m = _IMAGE_LINES.match(text, at)
    if m:
        end = len(text[at:m.end()].rstrip("\n")) + at
        new = "\n\n" + lines
    else:
        end = at
        new = "\n\n" + lines + ("" if text.startswith("\n", at) else "\n")
    return Edit(byte_offset(text, at), byte_len(text[at:end]), new, at, end - at)


def _alt_note(why: str) -> str:
    if not why:
        return ""
    return " (not shown: %s)" % re.sub(r"[\[\]\s]+", " ", why).strip()[:200]
