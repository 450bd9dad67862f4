"""Counters and gauges that the sync threads update and the status server reads.

The one piece of state shared between threads besides the mailboxes: plain
numbers under a lock, never a pycrdt object.
"""

import threading
from typing import Dict, Tuple

Key = Tuple[str, Tuple[Tuple[str, str], ...]]

HELP = {
    "mrmd_monitor_executions_total": ("counter", "Executions finished, by final status."),
    "mrmd_monitor_claims_total": ("counter", "Entries this monitor claimed."),
    "mrmd_monitor_active_runs": ("gauge", "Runs streaming from a runtime now."),
    "mrmd_monitor_queued_runs": ("gauge", "Claimed runs waiting for a block or their turn."),
    "mrmd_monitor_output_bytes_total": ("counter", "UTF-8 bytes of output written into documents."),
    "mrmd_monitor_reconnects_total": ("counter", "Reconnects to the sync server, by document."),
    "mrmd_monitor_document_connected": ("gauge", "1 when the document is connected and synced."),
    "mrmd_monitor_last_sync_age_seconds": ("gauge", "Seconds since a message last came from the sync server, by document."),
}


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._values: Dict[Key, float] = {}

    @staticmethod
    def _key(name, labels) -> Key:
        return name, tuple(sorted((k, str(v)) for k, v in labels.items()))

    def inc(self, name, value=1.0, **labels):
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + value

    def set(self, name, value, **labels):
        with self._lock:
            self._values[self._key(name, labels)] = float(value)

    def remove(self, **labels):
        """Forget every series carrying these labels (a document that closed)."""
        want = set((k, str(v)) for k, v in labels.items())
        with self._lock:
            for key in [k for k in self._values if want <= set(k[1])]:
                del self._values[key]

    def get(self, name, **labels):
        with self._lock:
            return self._values.get(self._key(name, labels), 0.0)

    def snapshot(self):
        with self._lock:
            return dict(self._values)

    def render_prometheus(self) -> str:
        """The Prometheus text exposition format."""
        by_name: Dict[str, list] = {}
        for (name, labels), value in sorted(self.snapshot().items()):
            by_name.setdefault(name, []).append((labels, value))
        out = []
        for name, series in by_name.items():
            kind, text = HELP.get(name, ("untyped", name))
            out.append("# HELP %s %s" % (name, text))
            out.append("# TYPE %s %s" % (name, kind))
            for labels, value in series:
                label_text = ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels)
                shown = int(value) if float(value).is_integer() else value
                out.append("%s%s %s" % (name, "{%s}" % label_text if label_text else "", shown))
        return "\n".join(out) + "\n"


def _escape(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
