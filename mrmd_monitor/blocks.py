"""Output blocks in the document's text: placed after their cell, flushed with
the smallest edit, kept in place while other peers type.

Each block's content start is remembered (code points and UTF-8 bytes) and
moved along with our own edits; an edit by another peer (``epoch``, bumped
by the sync thread) makes it stale, and the block is found again by its
marker line, which survives any remote edit that leaves the marker alone.
pycrdt's StickyIndex is not used: it panics on float positions and counts
UTF-16 units (both measured with pycrdt 0.14.13), and the marker is what browsers go by anyway.

Blocks also keep each run's flush record: whether output waits, when it is
written next (a burst at most once per --flush-interval, past the output cap
once a second), whether the block is ready and whether the run waits for
input. The text is reached through a small port (:class:`TextPort`;
:class:`YText` over pycrdt on the sync thread); no threads, sockets or clocks.
"""

import logging
from typing import Dict, Optional, Protocol, Tuple

from .document import (Edit, byte_len, byte_offset, content_edit, duplicate_blocks, edit_at,
                       fence_edits, fence_for, find_block, find_cell, image_lines_edit,
                       image_refs, image_target, place_block, rewrite_edit)
from .logs import context

log = logging.getLogger(__name__)

# One Yjs update per transaction: big inserts are split so that no message
# comes near the sync server's 1 MiB limit.
MAX_INSERT_CHARS = 128 * 1024
# Past the output cap only the tail moves: it is rewritten at most this often.
CAPPED_FLUSH_INTERVAL = 1.0


class TextPort(Protocol):
    """The document's text as blocks see it."""

    def read(self) -> str:
        """The whole text now."""

    def edit(self, at: int, delete: int, insert: str) -> None:
        """Delete ``delete`` UTF-8 bytes at byte offset ``at``, then insert there."""


class YText:
    """:class:`TextPort` over a pycrdt Text (on the document's sync thread)."""

    def __init__(self, doc, text):
        self.doc = doc
        self.text = text

    def read(self):
        return str(self.text)

    def edit(self, at, delete, insert):
        # One Yjs update per transaction: a big insert goes in pieces.
        with self.doc.transaction():
            if delete:
                del self.text[at:at + delete]
            if insert:
                piece, insert = insert[:MAX_INSERT_CHARS], insert[MAX_INSERT_CHARS:]
                self.text.insert(at, piece)
                at += byte_len(piece)
        while insert:
            piece, insert = insert[:MAX_INSERT_CHARS], insert[MAX_INSERT_CHARS:]
            with self.doc.transaction():
                self.text.insert(at, piece)
            at += byte_len(piece)


class Flush:
    """One run's block and flush bookkeeping (changed only by :class:`Blocks`)."""

    __slots__ = ("pending", "pending_since", "next_flush", "last_flush", "waiting",
                 "display_dirty", "block_ready", "awaiting_stdin")

    def __init__(self):
        self.pending = False
        self.pending_since: Optional[float] = None   # for the flush latency histogram
        self.next_flush = 0.0
        self.last_flush = float("-inf")
        # Past the cap, the worker's buffer whose output waits for the next flush.
        self.waiting = None
        self.display_dirty = False
        self.block_ready = False       # a browser made the output block
        self.awaiting_stdin = False    # the runtime asked for input; no answer forwarded yet


_NEW = Flush()


class Blocks:
    def __init__(self, text: TextPort, *, doc_name="", on_written=None, flush_interval=0.05):
        self.text = text
        self.doc_name = doc_name
        # This module's logger with the document's name; a run's lines add its exec_id.
        self.log = context(log, doc=doc_name)
        self.on_written = on_written or (lambda nbytes: None)
        self.flush_interval = flush_interval   # --flush-interval (reloadable)
        self.epoch = 0   # bumped by the sync thread when another peer edits the text
        # exec id -> ((code points, bytes) of the content start, epoch it is valid in)
        self._where: Dict[str, Tuple[Tuple[int, int], int]] = {}
        self._flush: Dict[str, Flush] = {}

    # -- the flush record -------------------------------------------------------

    def state(self, exec_id) -> Flush:
        """The run's record, to read (a run without one reads as a new one)."""
        return self._flush.get(exec_id) or _NEW

    def _rec(self, exec_id) -> Flush:
        rec = self._flush.get(exec_id)
        if rec is None:
            rec = self._flush[exec_id] = Flush()
        return rec

    def set_block_ready(self, exec_id, ready=True):
        self._rec(exec_id).block_ready = ready

    def set_awaiting_stdin(self, exec_id, waiting):
        self._rec(exec_id).awaiting_stdin = waiting

    def ready(self, run, buffer, now):
        """Output waits in a worker's ``buffer`` (messages.OutputReady)."""
        rec = self._rec(run.exec_id)
        if rec.waiting is not None and rec.waiting is not buffer:
            self._take_waiting(run, rec)
        if run.output.capped and buffer.held < buffer.big:
            # Past the cap only the latest tail is written, once a second: the
            # output waits in the worker's buffer until the flush (or until a
            # big piece is there), and is rendered in one piece, whose lines
            # that scroll out of the tail are only counted.
            rec.waiting = buffer
            self._schedule(rec, now, max(self.flush_interval, CAPPED_FLUSH_INTERVAL))
        else:
            self.feed(run, buffer.take(), now)

    def feed(self, run, text, now):
        if not text:
            return
        run.output.feed(text)
        # Past the output cap only the tail moves: rewriting it once a second
        # is plenty, and keeps the bytes sent bounded.
        self._schedule(self._rec(run.exec_id), now,
                       max(self.flush_interval, CAPPED_FLUSH_INTERVAL) if run.output.capped
                       else self.flush_interval)

    def add_display(self, run, items, now):
        """Rich output items, already within the run's budget (display.DisplayBudget,
        kept by the worker), reach the entry with the next flush: a burst of
        displays is one write, not one each."""
        run.display.extend(item for item in items if isinstance(item, dict))
        rec = self._rec(run.exec_id)
        rec.display_dirty = True
        self._schedule(rec, now, self.flush_interval)

    def take_display(self, exec_id) -> bool:
        """Whether displays wait for the entry; they are the caller's to write now."""
        rec = self._rec(exec_id)
        dirty, rec.display_dirty = rec.display_dirty, False
        return dirty

    @staticmethod
    def _schedule(rec, now, interval):
        # Output after a quiet spell shows at once (the sync loop calls tick()
        # right after draining its mailbox); a burst is written at most once
        # per flush interval, whatever arrived in between.
        if not rec.pending:
            rec.pending = True
            rec.pending_since = now
            rec.next_flush = max(now, rec.last_flush + interval)

    @staticmethod
    def _take_waiting(run, rec):
        waiting, rec.waiting = rec.waiting, None
        text = waiting.take()
        if text:
            run.output.feed(text)

    def due(self, exec_id, now) -> bool:
        rec = self._flush.get(exec_id)
        return rec is not None and rec.pending and now >= rec.next_flush

    def pending(self, exec_id) -> bool:
        rec = self._flush.get(exec_id)
        return rec is not None and rec.pending

    def next_deadline(self, now) -> Optional[float]:
        due = [rec.next_flush for rec in self._flush.values() if rec.pending]
        return max(0.0, min(due) - now) if due else None

    def flush(self, run, now) -> Tuple[Optional[float], bool]:
        """Write the run's output that waits. Returns ``(seconds it waited or
        None, whether displays wait for the entry)``."""
        rec = self._rec(run.exec_id)
        if rec.waiting is not None:
            self._take_waiting(run, rec)
        waited = None
        if rec.pending_since is not None:
            waited, rec.pending_since = now - rec.pending_since, None
        rec.pending = False
        display = self.take_display(run.exec_id)
        change = run.output.take_changes()
        if change is not None:
            rec.last_flush = now
            self.write(run, *change)
        return waited, display

    # -- the text -----------------------------------------------------------------

    def prepare(self, run):
        """An empty block for ``run``: the browser's, emptied of a previous
        run's output, or a new one after its cell."""
        text = self.text.read()
        block = find_block(text, run.exec_id)
        if block is None:
            self._create(run, text)
        elif block.content_end > block.content_start:
            # A re-run in a reused block: the old output goes when the new run starts.
            self.apply(rewrite_edit(text, block, ""))
        run.content.reset()
        self._where.pop(run.exec_id, None)

    def write(self, run, first, lines):
        """Show the run's changed lines (``lines`` from line ``first`` on)."""
        where = self._where.get(run.exec_id)
        fence = fence_for(lines, run.content.fence)
        if fence > run.content.fence:
            # Rare (output with ``` in it): the fences grow first, found afresh.
            run.content.fence, where = fence, None
        if where is not None and where[1] == self.epoch:
            chars, nbytes = where[0]
            self.apply(edit_at(nbytes, chars, run.content.apply(first, lines)))
            return
        text = self._without_duplicates(run.exec_id, self.text.read())
        block = find_block(text, run.exec_id)
        if block is None:
            self.log.bind(exec_id=run.exec_id).warning(
                "output block of %s is gone: recreating it", run.exec_id)
            self._create(run, text)
            text = self.text.read()
            block = find_block(text, run.exec_id)
            run.content.reset()
            self._where.pop(run.exec_id, None)
            if block is None:
                return
        if block.fence < run.content.fence:
            for edit in fence_edits(text, block, run.content.fence):
                self.apply(edit)
            text = self.text.read()
            block = find_block(text, run.exec_id)
        old = run.content.text
        diff = run.content.apply(first, lines)
        edit = content_edit(text, block, old, diff)
        if edit is None:
            self.log.bind(exec_id=run.exec_id).debug(
                "block of %s was edited by someone else: rewriting it", run.exec_id)
            edit = rewrite_edit(text, block, run.content.text)
        self._where[run.exec_id] = ((block.content_start, byte_offset(text, block.content_start)),
                                    self.epoch)
        self.apply(edit)

    def _without_duplicates(self, exec_id, text):
        """Remove empty second blocks of the run (made by a browser while we
        made ours); the text as it is afterwards."""
        spans = duplicate_blocks(text, exec_id)
        if not spans:
            return text
        self.log.bind(exec_id=exec_id).info(
            "removing %d duplicate output block(s) of %s", len(spans), exec_id)
        for start, end in spans:   # last first: earlier offsets stay valid
            self.apply(Edit(byte_offset(text, start), byte_len(text[start:end]), "", start,
                            end - start))
        return self.text.read()

    def forget(self, exec_id):
        self._where.pop(exec_id, None)
        self._flush.pop(exec_id, None)

    def append_notice(self, exec_id, line):
        """A last line in a block that is not ours to stream into (an orphan)."""
        text = self.text.read()
        block = find_block(text, exec_id)
        if block is None:
            return
        content = text[block.content_start:block.content_end]
        sep = "" if not content or content.endswith("\n") else "\n"
        self.apply(Edit(byte_offset(text, block.content_end), 0, sep + line + "\n",
                        block.content_end, 0))

    def put_images(self, exec_id, items):
        """Image lines after the block for the run's images (display items
        that plots.PlotKeeper kept), as the editor's own run shows them."""
        refs = image_refs(items)
        if not refs:
            return
        text = self.text.read()
        block = find_block(text, exec_id)
        edit = None if block is None else image_lines_edit(
            text, block, [(image_target(self.doc_name, ref) if ref else "", why)
                          for ref, why in refs])
        if edit is not None:
            self.apply(edit)

    def _create(self, run, text):
        cell = find_cell(text, run.code, run.language, run.cell_id)
        if cell is None:
            self.log.bind(exec_id=run.exec_id).warning(
                "no cell with the code of %s in the document: output block goes at the end",
                run.exec_id)
        edit, _ = place_block(text, run.exec_id, cell)
        self.apply(edit)

    def apply(self, edit: Edit):
        if not edit.delete and not edit.insert:
            return
        self.text.edit(edit.at, edit.delete, edit.insert)
        inserted = byte_len(edit.insert)
        if inserted:
            self.on_written(inserted)
        # Blocks after the edit move with it.
        moved = len(edit.insert) - edit.delete_chars, inserted - edit.delete
        for exec_id, ((chars, nbytes), epoch) in list(self._where.items()):
            if nbytes > edit.at:
                self._where[exec_id] = ((chars + moved[0], nbytes + moved[1]), epoch)
