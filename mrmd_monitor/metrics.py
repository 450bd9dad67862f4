"""Counters and gauges that the sync threads update and the status server reads.

The one piece of state shared between threads besides the mailboxes: plain
numbers under a lock, never a pycrdt object.

A ``runtime`` label comes from a URL any peer writes: it is the runtime's
canonical origin (:func:`.http.runtime_origin`), a runtime gauge back at 0
is dropped, and at most :data:`MAX_RUNTIME_SERIES` series of one metric are
shown, the smallest summed under ``runtime="other"``.
"""

import threading
from typing import Dict, Tuple

from .http import runtime_origin

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
    # scale (cluster.py): several monitors sharing the work
    "mrmd_monitor_claims_won_total": ("counter", "Claims that held: this monitor runs the entry."),
    "mrmd_monitor_claims_lost_total": ("counter", "Claims another monitor won (the run is theirs)."),
    "mrmd_monitor_claims_backed_up_total": ("counter", "Claims made as a backup, after the preferred monitor did not claim in time."),
    "mrmd_monitor_queue_depth": ("gauge", "Runs held by this monitor that have not started, by runtime."),
    "mrmd_monitor_flush_latency_seconds": ("histogram", "From output reaching the sync thread to its write into the document."),
    "mrmd_monitor_documents_attached": ("gauge", "Documents this monitor follows."),
    "mrmd_monitor_documents_moved_total": ("counter", "Documents attached or left because the cluster changed, by direction."),
    "mrmd_monitor_cluster_members": ("gauge", "Monitors present in the control document."),
}

#: Most series of one metric with a ``runtime`` label (``other`` included).
MAX_RUNTIME_SERIES = 32
RUNTIME_LABEL = "runtime"
OTHER_RUNTIMES = "other"

#: Upper bounds (seconds) of the flush latency histogram's buckets.
FLUSH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._values: Dict[Key, float] = {}

    @staticmethod
    def _key(name, labels) -> Key:
        runtime = labels.get(RUNTIME_LABEL)
        if isinstance(runtime, str) and "://" in runtime:   # a URL; else a label already
            labels = dict(labels, runtime=runtime_origin(runtime))
        return name, tuple(sorted((k, str(v)) for k, v in labels.items()))

    def _store(self, key, value):
        """Lock held. A runtime's gauge back at 0 goes: its runtime may never come back."""
        if value == 0 and HELP.get(key[0], ("",))[0] == "gauge" and \
                any(k == RUNTIME_LABEL for k, _ in key[1]):
            self._values.pop(key, None)
        else:
            self._values[key] = value

    def inc(self, name, value=1.0, **labels):
        key = self._key(name, labels)
        with self._lock:
            self._store(key, self._values.get(key, 0.0) + value)

    def set(self, name, value, **labels):
        key = self._key(name, labels)
        with self._lock:
            self._store(key, float(value))

    def observe(self, name, value, buckets=FLUSH_BUCKETS, **labels):
        """One observation of a histogram: cumulative ``_bucket{le}``, ``_sum``, ``_count``."""
        with self._lock:
            for bound in buckets:  # every bucket, empty ones too: scrapers expect them all
                key = self._key(name + "_bucket", dict(labels, le=_number(bound)))
                self._values[key] = self._values.get(key, 0.0) + (1 if value <= bound else 0)
            for suffix, add in (("_bucket", 1), ("_sum", value), ("_count", 1)):
                extra = {"le": "+Inf"} if suffix == "_bucket" else {}
                key = self._key(name + suffix, dict(labels, **extra))
                self._values[key] = self._values.get(key, 0.0) + add

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
        """Every series, runtime ones bounded (see the module's docstring)."""
        with self._lock:
            values = dict(self._values)
        return _fold_runtimes(values)

    def render_prometheus(self) -> str:
        """The Prometheus text exposition format."""
        by_name: Dict[str, list] = {}
        for (name, labels), value in sorted(self.snapshot().items(), key=_exposition_order):
            by_name.setdefault(_family(name), []).append((name, labels, value))
        out = []
        for family, series in by_name.items():
            kind, text = HELP.get(family, ("untyped", family))
            out.append("# HELP %s %s" % (family, text))
            out.append("# TYPE %s %s" % (family, kind))
            for name, labels, value in series:
                label_text = ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels)
                shown = int(value) if float(value).is_integer() else value
                out.append("%s%s %s" % (name, "{%s}" % label_text if label_text else "", shown))
        return "\n".join(out) + "\n"


def _fold_runtimes(values):
    """``values`` with at most MAX_RUNTIME_SERIES runtime series per metric
    (and other labels): the largest kept, the rest summed under ``other``."""
    groups: Dict[tuple, list] = {}
    for key, value in values.items():
        labels = dict(key[1])
        if RUNTIME_LABEL in labels:
            rest = tuple((k, v) for k, v in key[1] if k != RUNTIME_LABEL)
            groups.setdefault((key[0], rest), []).append((value, labels[RUNTIME_LABEL], key))
    for (name, rest), members in groups.items():
        if len(members) <= MAX_RUNTIME_SERIES:
            continue
        members.sort(key=lambda m: (-m[0], m[1]))
        other = 0.0
        for value, _runtime, key in members[MAX_RUNTIME_SERIES - 1:]:
            other += value
            del values[key]
        key = (name, tuple(sorted(rest + ((RUNTIME_LABEL, OTHER_RUNTIMES),))))
        values[key] = values.get(key, 0.0) + other
    return values


def _family(name):
    """A histogram's series (``x_bucket``, ``x_sum``, ``x_count``) belong to ``x``."""
    for suffix in _HISTOGRAM_PARTS:
        base = name[:-len(suffix)]
        if name.endswith(suffix) and HELP.get(base, ("",))[0] == "histogram":
            return base
    return name


def _exposition_order(item):
    # Buckets go in increasing ``le`` (``+Inf`` last), then _sum and _count.
    (name, labels), _ = item
    family = _family(name)
    part = _HISTOGRAM_PARTS.index(name[len(family):]) if name != family else 0
    rest = tuple((k, v) for k, v in labels if k != "le")
    le = dict(labels).get("le")
    return family, rest, part, float(le) if le is not None else 0.0


def _number(bound):
    return repr(float(bound)).rstrip("0").rstrip(".") if bound < 1 else str(float(bound))


def _escape(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
