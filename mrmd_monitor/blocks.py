"""Output blocks in the document's text: placed after their cell, flushed with
the smallest edit, kept in place while other peers type.

Each block's content start is remembered (code points and UTF-8 bytes) and
moved along with our own edits; an edit by another peer (``epoch``, bumped
by the sync thread) makes it stale, and the block is found again by its
marker line, which survives any remote edit that leaves the marker alone.
pycrdt's StickyIndex is not used: it panics on float positions and counts
UTF-16 units (both measured with pycrdt 0.14.13), and the marker is what browsers go by anyway.

Works on one pycrdt Doc and its Text on the sync thread; no threads, sockets
or clocks.
"""

import logging
from typing import Dict, Tuple

from .document import (Edit, byte_len, byte_offset, content_edit, duplicate_blocks, edit_at,
                       fence_edits, fence_for, find_block, find_cell, image_lines_edit,
                       image_refs, image_target, place_block, rewrite_edit)
from .logs import context

log = logging.getLogger(__name__)

# One Yjs update per transaction: big inserts are split so that no message
# comes near the sync server's 1 MiB limit.
MAX_INSERT_CHARS = 128 * 1024


class Blocks:
    def __init__(self, doc, text, *, doc_name="", on_written=None):
        self.doc = doc
        self.text = text
        self.doc_name = doc_name
        # This module's logger with the document's name; a run's lines add its exec_id.
        self.log = context(log, doc=doc_name)
        self.on_written = on_written or (lambda nbytes: None)
        self.epoch = 0   # bumped by the sync thread when another peer edits the text
        # exec id -> ((code points, bytes) of the content start, epoch it is valid in)
        self._where: Dict[str, Tuple[Tuple[int, int], int]] = {}

    def prepare(self, run):
        """An empty block for ``run``: the browser's, emptied of a previous
        run's output, or a new one after its cell."""
        text = str(self.text)
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
        text = self._without_duplicates(run.exec_id, str(self.text))
        block = find_block(text, run.exec_id)
        if block is None:
            self.log.bind(exec_id=run.exec_id).warning(
                "output block of %s is gone: recreating it", run.exec_id)
            self._create(run, text)
            text = str(self.text)
            block = find_block(text, run.exec_id)
            run.content.reset()
            self._where.pop(run.exec_id, None)
            if block is None:
                return
        if block.fence < run.content.fence:
            for edit in fence_edits(text, block, run.content.fence):
                self.apply(edit)
            text = str(self.text)
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
        return str(self.text)

    def forget(self, exec_id):
        self._where.pop(exec_id, None)

    def append_notice(self, exec_id, line):
        """A last line in a block that is not ours to stream into (an orphan)."""
        text = str(self.text)
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
        text = str(self.text)
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
        at, insert = edit.at, edit.insert
        with self.doc.transaction():
            if edit.delete:
                del self.text[at:at + edit.delete]
            if insert:
                piece, insert = insert[:MAX_INSERT_CHARS], insert[MAX_INSERT_CHARS:]
                self.text.insert(at, piece)
                at += byte_len(piece)
        while insert:
            piece, insert = insert[:MAX_INSERT_CHARS], insert[MAX_INSERT_CHARS:]
            with self.doc.transaction():
                self.text.insert(at, piece)
            at += byte_len(piece)
        inserted = byte_len(edit.insert)
        if inserted:
            self.on_written(inserted)
        # Blocks after the edit move with it.
        moved = len(edit.insert) - edit.delete_chars, inserted - edit.delete
        for exec_id, ((chars, nbytes), epoch) in list(self._where.items()):
            if nbytes > edit.at:
                self._where[exec_id] = ((chars + moved[0], nbytes + moved[1]), epoch)
