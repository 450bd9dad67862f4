"""What one run shows in its output block: the terminal rendering of its
stdout and stderr, capped so that a run printing forever keeps the document
(and the monitor's memory) bounded.

Below the cap the block is the rendered output. Past it, the block keeps the
head, one line saying how much was left out, and the latest tail; lines that
scroll out of the tail are dropped from memory as they go. The cap counts
what the renderer holds (its exact UTF-8 size), never what was fed to it: a
few bytes of escape sequences can draw thousands of columns.

``PendingOutput`` is the stage before: raw output a worker has read and the
document has not taken yet, bounded the same way (head, a line saying what
was left out, latest tail). Pure: no threads, sockets or clocks.
"""

from collections import deque
from typing import List, Optional, Tuple

from .terminal import (DEFAULT_COLUMNS, SCREEN_ROWS, SGR, TerminalRenderer, plain_ascii,
                       short_lines, utf8_len)

DEFAULT_TAIL_BYTES = 64 * 1024
# Input is rendered this much at a time when there is a cap, so that one
# step adds at most ~FEED_SLICE / 10 lines of max_columns each (ESC [ 4095 C
# x CR LF is 10 characters) before the cap is checked again.
FEED_SLICE = 4096
# Past the cap, a chunk longer than this many tails is not rendered whole
# (RunOutput._skip_hidden).
_SKIP_FACTOR = 3
# Past the cap the tail is trimmed back to tail_bytes once it has grown by
# this factor, so trimming costs O(1) per byte rendered.
_TRIM_SLACK = 2


class RunOutput:
    """The rendered output of one run, within ``max_bytes`` (0: no cap) as a
    head, a notice line and the latest ``tail_bytes``, rendered on a terminal
    ``max_columns`` wide."""

    def __init__(self, max_bytes: int = 0, tail_bytes: Optional[int] = None,
                 max_columns: int = DEFAULT_COLUMNS):
        self.renderer = TerminalRenderer(max_columns=max_columns)
        self.max_bytes = max_bytes
        if tail_bytes is None:
            tail_bytes = min(DEFAULT_TAIL_BYTES, max_bytes // 4)
        self.tail_bytes = tail_bytes
        self.head: Optional[List[str]] = None   # frozen once the cap is reached
        self.omitted_lines = 0
        self.omitted_bytes = 0
        # Set when the cap is reached: the first line the block may no longer
        # hold as written (lines above it were flushed and have not changed).
        self._rewrite_from: Optional[int] = None
        self._trimmed = False   # since the last take_changes

    @property
    def capped(self) -> bool:
        return self.head is not None

    def feed(self, data: str) -> None:
        renderer = self.renderer
        if not self.max_bytes:
            renderer.feed(data)
            return
        if self.head is not None and len(data) > _SKIP_FACTOR * self.tail_bytes:
            data = self._skip_hidden(data)
        for start in range(0, len(data), FEED_SLICE):
            renderer.feed(data[start:start + FEED_SLICE])
            if self.head is None:
                if renderer.size > self.max_bytes:
                    self._cap()
            elif renderer.size > _TRIM_SLACK * self.tail_bytes:
                # Trim as we go, not only when the block is written: between
                # two writes a fast runtime can print far more than the tail holds.
                self._trimmed |= self._trim_tail()

    def _skip_hidden(self, data: str) -> str:
        """Past the cap, the lines of a long chunk that its own later lines
        push out of the tail are counted, not rendered: only plain lines
        (ASCII, no control but newlines, none wider than max_columns) after
        the cursor's, so that rendering them would only have appended them.
        Returns what is left to render."""
        renderer = self.renderer
        if not renderer.at_end():
            return data
        if "\r" in data:
            data = data.replace("\r\n", "\n")
        first = data.find("\n")
        if first == -1 or not plain_ascii(data) or not short_lines(data, renderer.max_columns):
            return data
        tail = self.tail_bytes
        cut = data.rfind("\n", first + 1, len(data) - 2 * tail)
        if cut == -1:
            return data
        rest = data[cut + 1:]
        # The rest must push every line before it out of the tail on its own.
        if rest.rfind("\n") + 1 <= tail or rest.count("\n") <= SCREEN_ROWS:
            return data
        renderer.feed(data[:first + 1])   # ends the cursor's line
        hidden = data[first + 1:cut + 1]  # whole lines, each with its newline
        self.omitted_lines += hidden.count("\n")
        self.omitted_bytes += len(hidden)
        self._trimmed = True
        return rest

    def note(self, text: str) -> None:
        """A line of the monitor's own, in the default style."""
        self.renderer.note(text)

    def finish(self, err: Optional[dict] = None) -> bool:
        """The end of the run, written as the editor's own run writes it: the
        empty lines at the end trimmed, and for an error a last line
        ``[Error: <message>]``. Before it, the error's traceback when the
        runtime did not print it (the editor shows only the message; a
        traceback says more). Returns whether the output changed."""
        before = self.renderer.line_count
        self.renderer.trim_blank_end()
        changed = self.renderer.line_count != before
        if err is None:
            return changed
        plain = SGR.sub("", self.text())
        headline = "%s: %s" % (err.get("type"), err.get("message"))
        body = ""
        lines = [t.rstrip("\n") for t in err.get("traceback") or [] if isinstance(t, str)]
        if lines and not (err.get("message") and headline in plain):
            body = "\n".join(lines)
            if headline not in body:
                body += "\n" + headline
            body += "\n"
        message = err.get("message") or err.get("type") or "Error"
        # The editor appends "\n[Error: ...]" to its output with the empty
        # lines at its end trimmed: after output, the line follows its last
        # line; after none, the block starts with an empty line.
        if body or plain:
            lead = "" if not plain or plain.endswith("\n") else "\n"
        else:
            lead = "\n"
        self.note("%s%s[Error: %s]\n" % (lead, body, message))
        return True

    def lines(self) -> List[str]:
        if self.head is None:
            return self.renderer.lines()
        return self.head + [self.notice()] + self.renderer.lines()

    def text(self) -> str:
        return "\n".join(self.lines())

    def notice(self) -> str:
        return ("[mrmd-monitor: output over %d bytes; %d lines (%d bytes) left out here, "
                "the latest output follows]" % (self.max_bytes, self.omitted_lines,
                                                self.omitted_bytes))

    def take_changes(self) -> Optional[Tuple[int, List[str]]]:
        """Like TerminalRenderer.take_changes, on the lines of the block."""
        if self.head is None:
            return self.renderer.take_changes()
        trimmed = self._trim_tail() | self._trimmed
        self._trimmed = False
        change = self.renderer.take_changes()
        if change is None and not trimmed:
            return None
        if self._rewrite_from is not None:
            first, self._rewrite_from = self._rewrite_from, None
            return first, self.head[first:] + [self.notice()] + self.renderer.lines()
        # The notice line changes with every trim: rewrite from it on; the
        # block's diff keeps the actual edit to what differs.
        return len(self.head), [self.notice()] + self.renderer.lines()

    def _cap(self):
        renderer = self.renderer
        if renderer.cursor_row == 0:
            # Nothing complete to freeze yet; the cursor's line alone is at
            # most max_columns wide.
            return
        budget = self.max_bytes - self.tail_bytes
        n = renderer.lines_within(budget)
        # Lines above the first changed one are in the block as they are:
        # the block changes from there on, not from its first line (which
        # would rewrite, and diff, the whole head).
        change = renderer.take_changes()
        unchanged = renderer.line_count if change is None else change[0]
        if n:
            head = renderer.discard_head(n)
        else:
            # One enormous first line: keep a cut of it so the head says something.
            [line] = renderer.discard_head(1)
            raw = line.encode("utf-8")
            cut = raw[:budget].decode("utf-8", "ignore")
            head = [cut]
            self.omitted_bytes += len(raw) - len(cut.encode("utf-8"))
            unchanged = 0   # the first line itself was cut
        self.head = head
        self._trim_tail()
        self._trimmed = True
        self._rewrite_from = min(unchanged, len(head))

    def _trim_tail(self) -> bool:
        """Drop lines from the top of the tail until it fits, keeping a screen's
        worth for cursor movement if that fits too. Returns whether anything
        was dropped."""
        renderer = self.renderer
        lines, size = renderer.trim_to(self.tail_bytes)
        if renderer.size > self.tail_bytes:
            # A screen of wide lines is larger than the tail: the cap wins
            # over cursor moves into lines already gone.
            more_lines, more_size = renderer.trim_to(self.tail_bytes, keep=1)
            lines += more_lines
            size += more_size
        self.omitted_lines += lines
        self.omitted_bytes += size
        return lines > 0


class PendingOutput:
    """Raw output read from a runtime that the document has not taken yet.

    A runtime that prints faster than the document takes its output must not
    be held back (it would buffer what it prints itself, mrmd-python 0.4.2
    with an ever-growing ``accumulated`` in every event) nor make us hold
    everything. Up to ``limit`` characters everything is kept; past it, the
    first half is kept as the head, then the latest text as the tail, and
    ``take()`` puts one line between them saying how much was left out.
    Cuts fall on line ends where there are any, so the lines left out are
    whole. Pure: the caller provides the locking.
    """

    def __init__(self, limit: int = 1 << 20):
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        self.limit = limit
        self._head_max = limit // 2
        self._tail_max = limit - self._head_max
        self._reset()

    def _reset(self):
        self._parts = deque()       # everything, or once over the limit the tail
        self._size = 0
        self._head: Optional[str] = None
        self._left_bytes = 0
        self._left_lines = 0

    @property
    def held(self) -> int:
        """Characters held (a bound on memory, with the head)."""
        return self._size + (len(self._head) if self._head is not None else 0)

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._head is None:
            if self._size > self.limit:
                self._split()
        elif self._size > self._tail_max:
            self._trim()

    def take(self) -> str:
        """Everything pending, in order, and start afresh."""
        tail = "".join(self._parts)
        head = self._head
        if head is None:
            self._reset()
            return tail
        # Start the tail on a line of its own when a line ends early in it.
        cut = tail.find("\n", 0, len(tail) // 2)
        if cut >= 0:
            self._leave_out(tail[:cut + 1])
            tail = tail[cut + 1:]
        notice = ("[mrmd-monitor: %d lines (%d bytes) of output left out here: the runtime "
                  "printed faster than the document took it]\r\n"
                  % (self._left_lines, self._left_bytes))
        self._reset()
        return head + ("" if head.endswith("\n") else "\r\n") + notice + tail

    def _split(self):
        text = "".join(self._parts)
        end = text.rfind("\n", 0, self._head_max) + 1 or self._head_max
        self._head = text[:end]
        self._parts = deque([text[end:]])
        self._size = len(text) - end
        self._trim()

    def _trim(self):
        parts = self._parts
        while self._size > self._tail_max:
            first = parts[0]
            excess = self._size - self._tail_max
            if len(first) <= excess:
                parts.popleft()
                self._leave_out(first)
                self._size -= len(first)
            else:
                parts[0] = first[excess:]
                self._leave_out(first[:excess])
                self._size -= excess

    def _leave_out(self, text: str) -> None:
        self._left_bytes += utf8_len(text)
        self._left_lines += text.count("\n")
