"""What one run shows in its output block: the terminal rendering of its
stdout and stderr, capped so that a run printing forever keeps the document
(and the monitor's memory) bounded.

Below the cap the block is the rendered output. Past it, the block keeps the
head, one line saying how much was left out, and the latest tail; lines that
scroll out of the tail are dropped from memory as they go. Pure: no threads,
sockets or clocks.
"""

from typing import List, Optional, Tuple

from .terminal import SCREEN_ROWS, TerminalRenderer

DEFAULT_TAIL_BYTES = 64 * 1024


def _size(lines) -> int:
    return sum(len(line.encode("utf-8")) + 1 for line in lines)


class RunOutput:
    def __init__(self, max_bytes: int = 0, tail_bytes: Optional[int] = None):
        self.renderer = TerminalRenderer()
        self.max_bytes = max_bytes
        if tail_bytes is None:
            tail_bytes = min(DEFAULT_TAIL_BYTES, max_bytes // 4)
        self.tail_bytes = tail_bytes
        self.head: Optional[List[str]] = None   # frozen once the cap is reached
        self.omitted_lines = 0
        self.omitted_bytes = 0
        self._fed = 0
        self._next_check = max_bytes
        self._trim_at = 0
        self._force_from_zero = False
        self._trimmed = False   # since the last take_changes

    @property
    def capped(self) -> bool:
        return self.head is not None

    def feed(self, data: str) -> None:
        self.renderer.feed(data)
        self._fed += len(data)
        if self.head is not None:
            # Trim as we go, not only when the block is written: between two
            # writes a fast runtime can print far more than the tail holds.
            if self.renderer.line_count >= self._trim_at:
                self._trimmed |= self._trim_tail()
                self._trim_at = max(2 * self.renderer.line_count, 2 * SCREEN_ROWS)
        elif self.max_bytes and self._fed >= self._next_check:
            # Rendered text is never much larger than what was fed, so the
            # exact (linear) size is only computed once the raw input is big.
            self._next_check = self._fed + max(4096, self.max_bytes // 8)
            if _size(self.renderer.lines()) > self.max_bytes:
                self._cap()

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
        if self._force_from_zero:
            self._force_from_zero = False
            return 0, self.lines()
        # The notice line changes with every trim: rewrite from it on; the
        # block's diff keeps the actual edit to what differs.
        return len(self.head), [self.notice()] + self.renderer.lines()

    def _cap(self):
        budget = self.max_bytes - self.tail_bytes
        lines = self.renderer.lines()
        head, used = [], 0
        for line in lines[:-1]:
            size = len(line.encode("utf-8")) + 1
            if used + size > budget:
                break
            head.append(line)
            used += size
        if not head and lines[:-1]:
            # One enormous first line: keep a cut of it so the head says something.
            first = lines[0].encode("utf-8")[:budget].decode("utf-8", "ignore")
            head = [first]
            self.omitted_bytes += len(lines[0].encode("utf-8")) - len(first.encode("utf-8"))
            self.renderer.discard_head(1)
        else:
            self.renderer.discard_head(len(head))
        self.head = head
        self.renderer.take_changes()
        self._trim_tail()
        # The whole block changes once, from its first line.
        self._trimmed = True
        self._force_from_zero = True

    def _trim_tail(self) -> bool:
        """Drop lines from the top of the tail until it fits, keeping a screen's
        worth for cursor movement. Returns whether anything was dropped."""
        lines = self.renderer.lines()
        excess = _size(lines) - self.tail_bytes
        if excess <= 0:
            return False
        n, freed = 0, 0
        keep = max(1, min(SCREEN_ROWS, len(lines)))
        while freed < excess and n < len(lines) - keep:
            freed += len(lines[n].encode("utf-8")) + 1
            n += 1
        dropped = self.renderer.discard_head(n)
        if not dropped:
            return False
        self.omitted_lines += len(dropped)
        self.omitted_bytes += _size(dropped)
        return True
