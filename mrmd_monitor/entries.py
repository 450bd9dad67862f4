"""The one writer of Y.Map('executions'): the parsed index of every entry,
the checked write, refusals and deletes.

Every write is of the whole entry (browsers expect complete objects), with
the monitor's changes on top, and only when the move of its status is one
the monitor may make (protocol.check_transition): an illegal move is a bug
or a race lost to a browser, and is logged as such, never written. An
entry that breaks a limit is refused: it ends in ``error`` saying why, cut
to what fits. Runs on the document's sync thread.
"""

import json
import logging
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional

from pycrdt import Map

from . import protocol as p
from .logs import context

log = logging.getLogger(__name__)

# The ends we wrote, kept per document for the last this many runs, each
# without its rich output past END_DISPLAY_BYTES: enough to put an end back
# that a browser's older write replaced, bounded whatever the peers write.
ENDS_KEPT = 256
END_DISPLAY_BYTES = 64 * 1024


class Entries:
    def __init__(self, doc, *, now_ms: Callable[[], int], on_change: Callable[[], None],
                 on_refused: Callable[[str], None] = lambda exec_id: None, doc_name: str = ""):
        self.doc = doc
        self.map = doc.get("executions", type=Map)
        self.now_ms = now_ms
        # Anything that changes an entry may move a turn or make a sweep due.
        self.on_change = on_change
        # A refused entry is never run: a run of it stops (the coordinator's).
        self.on_refused = on_refused
        self.log = context(log, doc=doc_name)
        # Every entry, parsed once per change (remote or ours).
        self.index: Dict[str, p.Entry] = {}
        self._ends: "OrderedDict[str, dict]" = OrderedDict()

    def keys(self) -> List[str]:
        return list(self.map.keys())

    def get(self, key) -> Optional[p.Entry]:
        return self.index.get(key)

    def raw(self, key):
        return self.map.get(key)

    def reindex(self, key) -> Optional[p.Entry]:
        """Parse the entry as the map holds it now (None: not an entry)."""
        entry = p.parse_entry(key, self.map.get(key))
        if entry is None:
            self.index.pop(key, None)
        else:
            self.index[key] = entry
        self.on_change()
        return entry

    def write(self, exec_id: str, changes: dict, *, keep_answer: bool = False) -> bool:
        """Write the whole entry with ``changes`` on top, if the move is legal.
        ``keep_answer``: a stdin answer in the entry is one we asked for; any
        other is never written back (it may be a password), it is cleared."""
        raw = self.map.get(exec_id)
        if not isinstance(raw, dict):
            return False
        current, new = raw.get("status"), changes.get("status")
        if new is not None and new != current:
            try:
                p.check_transition(current, new)
            except p.IllegalTransition as exc:
                self.log.bind(exec_id=exec_id).warning("illegal move of %s not written: %s",
                                                       exec_id, exc)
                return False
        if (not keep_answer and raw.get("stdinResponse") is not None
                and "stdinResponse" not in changes):
            self.log.bind(exec_id=exec_id).info(
                "clearing a stdin answer in %s that no request asked for", exec_id)
            changes = {**changes, "stdinResponse": None}
        try:
            value = p.updated(raw, changes)
        except p.EntryRefused as exc:
            self.refuse(exec_id, str(exc))
            return False
        fitted = p.fitted(value)
        if fitted is None:
            self.refuse(exec_id, "the entry would be larger than %d bytes" % p.MAX_WRITE_BYTES)
            return False
        if fitted is not value:
            self.log.bind(exec_id=exec_id).warning(
                "rich output of %s cut: the entry would pass the sync server's message limit",
                exec_id)
        self._set(exec_id, fitted)
        if new in p.FINAL:
            self._keep_end(exec_id, changes)
        return True

    def _keep_end(self, exec_id, changes):
        if len(json.dumps(changes.get("displayData", []), default=str)) > END_DISPLAY_BYTES:
            changes = {k: v for k, v in changes.items() if k != "displayData"}
        self._ends[exec_id] = changes
        self._ends.move_to_end(exec_id)
        while len(self._ends) > ENDS_KEPT:
            self._ends.popitem(last=False)

    def restore_end(self, exec_id: str) -> bool:
        """Write again the end of a run that ended here, which an entry shows
        unfinished: a browser's write made offline from its older copy (its
        ``ready``) can win the conflict over our final status after a
        reconnect. Never run again what already ran."""
        changes = self._ends.get(exec_id)
        if changes is None:
            return False
        self.log.bind(exec_id=exec_id).warning(
            "%s shows %s after it ended here (an older write won): its end is written again",
            exec_id, self.index[exec_id].status if exec_id in self.index else "?")
        return self.write(exec_id, changes)

    def refuse(self, exec_id: str, problem: str) -> bool:
        """An entry that breaks a limit ends in ``error`` with the reason; it is
        never run, and never walked by code that recurses."""
        self.on_refused(exec_id)
        raw = self.map.get(exec_id)
        if not isinstance(raw, dict) or raw.get("status") in p.FINAL:
            return False
        self.log.bind(exec_id=exec_id).warning("refusing entry %s: %s", exec_id, problem)
        self._set(exec_id, p.refused_entry(raw, problem, self.now_ms()))
        return True

    def _set(self, exec_id, value):
        self.map[exec_id] = value
        self.reindex(exec_id)

    def delete(self, keys: Iterable[str]):
        """Deleting is idempotent: several monitors may do it at once."""
        keys = list(keys)
        if not keys:
            return
        with self.doc.transaction():
            for key in keys:
                if key in self.map:
                    del self.map[key]
                self.index.pop(key, None)
        self.on_change()

    def end(self, exec_id: str, kind: str, message: str, **changes) -> bool:
        """End an entry in ``error`` of type ``kind`` saying ``message``."""
        return self.write(exec_id, {"status": p.ERROR, "completedAt": self.now_ms(),
                                    "error": p.error_value(kind, message), **changes})

    def retire(self, keep, retention: float) -> int:
        """Delete finished entries past ``retention`` seconds (0: kept forever),
        but none in ``keep`` (runs of ours). Returns how many went."""
        if not retention:
            return 0
        now_ms, limit = self.now_ms(), retention * 1000
        out = []
        for key, entry in self.index.items():
            if key in keep or not entry.final:
                continue
            done = p.as_int(entry.raw.get("completedAt"))
            if done is not None and now_ms - done > limit:
                out.append(key)
        self.delete(out)
        if out:
            self.log.info("removed %d finished entr%s older than --retention %.0fs", len(out),
                          "y" if len(out) == 1 else "ies", retention)
        return len(out)
