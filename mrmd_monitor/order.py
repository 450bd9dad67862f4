"""Who runs next on a (runtime, session).

Cells depend on each other: mrmd-python runs concurrent requests in parallel,
so a runtime and session must run a notebook's cells one at a time, in the
order they were requested, whichever monitor runs them. This module decides
that order once, for this monitor's runs and for the runs other monitors hold,
and its answer is what the entry's ``queuePosition`` says. The pool only runs
what it is given.

Pure: no threads, sockets or clocks.
"""

from typing import Callable, Dict, Iterable, List, Optional, Tuple

from . import document
from . import protocol as p
from .runs import Phase, Run

Key = Tuple[str, str]


def entry_key(entry: p.Entry) -> Key:
    return entry.runtime_url.rstrip("/"), entry.session


class RunOrder:
    def __init__(self, me: int, lease_holder: Callable[[int], bool]):
        self.me = me
        self.lease_holder = lease_holder
        self.version = 0             # bumped by anything that may move a turn
        self._foreign_version = -1
        self._foreign: Dict[Key, List[Tuple[tuple, str]]] = {}

    def changed(self):
        self.version += 1

    def ahead(self, run: Run, runs: Iterable[Run], entries: Dict[str, p.Entry]) -> List[str]:
        """Ids of the unfinished runs that go before ``run`` on its runtime and
        session, ours and other monitors', in the one order every monitor
        uses (``run_order``): two orders, one for ours and one for theirs,
        let two monitors each wait for the other's run."""
        mine = [(r.order, r.exec_id) for r in runs
                if r is not run and r.key == run.key and r.phase is not Phase.DONE
                and r.order < run.order]
        theirs = [(order, key) for order, key in self._foreign_runs(entries).get(run.key, ())
                  if order < run.order]
        return [key for _, key in sorted(mine + theirs)]

    def first_in_line(self, entry: p.Entry, runs: Iterable[Run],
                      entries: Dict[str, p.Entry]) -> bool:
        """Is nothing, ours or another monitor's, before this held entry?"""
        key, order = entry_key(entry), run_order(entry)
        if any(r.key == key and r.order < order for r in runs):
            return False
        queue = self._foreign_runs(entries).get(key, ())
        return not queue or queue[0][0] >= order

    def _foreign_runs(self, entries):
        """Other monitors' unfinished runs by (runtime, session), in request
        order; rebuilt only when something changed since the last look."""
        if self._foreign_version != self.version:
            index: Dict[Key, list] = {}
            for key, e in entries.items():
                if (e.problem is not None or e.status not in (p.CLAIMED, p.READY, p.RUNNING)
                        or e.claimed_by in (None, self.me) or not e.runtime_url
                        or not self.lease_holder(e.claimed_by)):
                    continue
                index.setdefault(entry_key(e), []).append((run_order(e), key))
            for queue in index.values():
                queue.sort()
            self._foreign = index
            self._foreign_version = self.version
        return self._foreign


def run_order(entry: p.Entry, notebook_order: Optional[int] = None) -> Tuple[int, int, str]:
    """The place of a run among the runs of its runtime and session, the same
    on every monitor: requested first, then (same millisecond) higher in the
    notebook as its claimant saw it (``notebookOrder``), then the id."""
    if notebook_order is None:
        notebook_order = entry.notebook_order or 0
    return entry.requested_at or 0, notebook_order, entry.exec_id


class CellIndex:
    """``document.find_cell``'s answers for a whole batch of entries from one
    pass over the text: a text of many cells and many requests cost their
    sum, not their product."""

    def __init__(self, text: str):
        self._ids: Dict[str, document.Cell] = {}
        self._code: Dict[Tuple[str, str], document.Cell] = {}
        self._any: Dict[str, document.Cell] = {}
        for cell, info, body in document.iter_cells(text):
            if info.startswith(("output:", "stdin:")):
                continue
            words = info.replace("{", " ").replace("}", " ").replace("#", " ").replace("=", " ")
            words = words.split()
            for word in words:
                self._ids.setdefault(word, cell)
            self._code.setdefault((body, words[0] if words else ""), cell)
            self._any.setdefault(body, cell)

    def find(self, code: str, language: str, cell_id: Optional[str] = None):
        if cell_id and cell_id in self._ids:
            return self._ids[cell_id]
        code = code.rstrip("\n")
        return self._code.get((code, language)) if language else self._any.get(code)


def request_order(entries, read_text: Callable[[], str]):
    """Sort key for requests claimed together: ``run_order``, with each cell's
    place in the notebook as this monitor sees it now (written into the claim
    as ``notebookOrder``). Milliseconds tie when a browser runs several cells
    at once ("run all"): their order in the notebook, top to bottom, decides
    then. An entry that already has its place (a run taken over) keeps it."""
    missing = [e for e in entries if e.notebook_order is None]
    where = {}
    if missing:
        text = read_text()
        cells = CellIndex(text)
        for e in missing:
            cell = cells.find(e.code or "", e.language, e.cell_id)
            where[e.exec_id] = cell.start if cell is not None else len(text)
    return lambda e: run_order(e, where.get(e.exec_id))
