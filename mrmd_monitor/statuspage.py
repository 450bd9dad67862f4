"""What an operator sees at a glance: the status page at ``/`` on
``--status-addr``, its data at ``/status.json``, and ``mrmd-monitor status``,
which prints the same as a table in a terminal.

All three come from one snapshot, a plain JSON-able dict (:func:`build_snapshot`):

    {"monitor": {"id", "name", "version", "capacity", "busy"}, "time", "stopping",
     "replicas", "control_doc",
     "documents": [{"name", "synced", "last_heard_age", "runs"}],
     "cluster": [{"id", "name", "version", "capacity", "busy", "me"}],
     "runs": {"active", "queued"}, "queues": [{"runtime", "depth"}],
     "claims": {"won", "lost", "backed_up"}, "executions": {status: n}}

Document names come from the sync server, cluster members from any peer's
awareness: every string is escaped for HTML, stripped of control characters
for the terminal, and cut to :data:`MAX_CELL_CHARS`; at most
:data:`MAX_ROWS` rows per table are shown. The renderers are pure;
:func:`status_command` is the only part that does I/O.
"""

import argparse
import configparser
import html
import json
import math
import os
import sys
import urllib.error
import urllib.request

MAX_CELL_CHARS = 120
MAX_ROWS = 500
REFRESH_SECONDS = 5


# -- the snapshot ----------------------------------------------------------------

def _metric(values, name, **labels):
    want = tuple(sorted((k, str(v)) for k, v in labels.items()))
    return values.get((name, want), 0.0)


def _by_label(values, name, label):
    out = {}
    for (metric, labels), value in values.items():
        if metric == name:
            key = dict(labels).get(label)
            if key is not None:
                out[key] = out.get(key, 0.0) + value
    return out


def build_snapshot(*, me, metric_values, documents, members, now, replicas=None,
                   control_doc=None, stopping=False):
    """The snapshot dict from plain inputs: ``me`` a dict (id, name, version,
    capacity), ``metric_values`` a :meth:`Metrics.snapshot`, ``documents``
    dicts with ``name``, ``synced``, ``last_heard_wall`` (epoch or None) and
    ``runs``, ``members`` :class:`cluster.Member` objects, ``now`` an epoch."""
    active = int(_metric(metric_values, "mrmd_monitor_active_runs"))
    queued = int(_metric(metric_values, "mrmd_monitor_queued_runs"))
    docs = []
    for d in documents:
        heard = d.get("last_heard_wall")
        docs.append({"name": str(d.get("name")), "synced": bool(d.get("synced")),
                     "last_heard_age": None if heard is None else round(max(0.0, now - heard), 1),
                     "runs": int(d.get("runs") or 0)})
    docs.sort(key=lambda d: d["name"])
    cluster = [{"id": m.id, "name": m.name, "version": m.version, "capacity": m.capacity,
                "busy": m.busy, "me": m.id == me.get("id")} for m in members]
    queues = [{"runtime": rt, "depth": int(n)}
              for rt, n in sorted(_by_label(metric_values, "mrmd_monitor_queue_depth",
                                            "runtime").items()) if n > 0]
    executions = {k: int(v) for k, v in sorted(
        _by_label(metric_values, "mrmd_monitor_executions_total", "status").items())}
    return {
        "monitor": {"id": me.get("id"), "name": me.get("name"), "version": me.get("version"),
                    "capacity": me.get("capacity"), "busy": active + queued},
        "time": now,
        "stopping": bool(stopping),
        "replicas": replicas or None,
        "control_doc": control_doc or None,
        "documents": docs,
        "cluster": cluster,
        "runs": {"active": active, "queued": queued},
        "queues": queues,
        "claims": {"won": int(_metric(metric_values, "mrmd_monitor_claims_won_total")),
                   "lost": int(_metric(metric_values, "mrmd_monitor_claims_lost_total")),
                   "backed_up": int(_metric(metric_values, "mrmd_monitor_claims_backed_up_total"))},
        "executions": executions,
    }


# -- cells -------------------------------------------------------------------------

def _plain(value):
    """A cell's text: no control characters (no terminal escape can get
    through), at most MAX_CELL_CHARS."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        value = ("%.1f" % value) if math.isfinite(value) else "-"
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    if len(text) > MAX_CELL_CHARS:
        text = text[:MAX_CELL_CHARS - 1] + "…"
    return text


def _age(seconds):
    return "-" if seconds is None else "%.1fs ago" % seconds


def _dicts(value):
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _tables(snap):
    """(title, headers, rows, more) for each table, cells already plain text."""
    snap = snap if isinstance(snap, dict) else {}
    docs, members, queues = (_dicts(snap.get(k)) for k in ("documents", "cluster", "queues"))
    out = [
        ("Documents", ("document", "synced", "last heard", "runs"),
         [(_plain(d.get("name")), _plain(d.get("synced")), _age(d.get("last_heard_age")),
           _plain(d.get("runs"))) for d in docs[:MAX_ROWS]], len(docs) - MAX_ROWS),
        ("Monitors in the cluster", ("monitor", "name", "version", "busy / capacity", ""),
         [(_plain(m.get("id")), _plain(m.get("name")), _plain(m.get("version")),
           "%s / %s" % (_plain(m.get("busy")), _plain(m.get("capacity"))),
           "this one" if m.get("me") else "") for m in members[:MAX_ROWS]],
         len(members) - MAX_ROWS),
        ("Queues", ("runtime", "waiting"),
         [(_plain(q.get("runtime")), _plain(q.get("depth"))) for q in queues[:MAX_ROWS]],
         len(queues) - MAX_ROWS),
    ]
    return out


def _summary(snap):
    snap = snap if isinstance(snap, dict) else {}
    me, runs, claims = (snap.get(k) if isinstance(snap.get(k), dict) else {}
                        for k in ("monitor", "runs", "claims"))
    done = snap.get("executions") if isinstance(snap.get("executions"), dict) else {}
    replicas = snap.get("replicas")
    return [
        ("monitor", "%s (%s), version %s%s" % (_plain(me.get("name")), _plain(me.get("id")),
                                               _plain(me.get("version")),
                                               ", stopping" if snap.get("stopping") else "")),
        ("runs", "%s running, %s queued, %s of %s workers busy" % (
            _plain(runs.get("active", 0)), _plain(runs.get("queued", 0)),
            _plain(me.get("busy", 0)), _plain(me.get("capacity")))),
        ("claims", "%s won, %s lost, %s as a backup" % (
            _plain(claims.get("won", 0)), _plain(claims.get("lost", 0)),
            _plain(claims.get("backed_up", 0)))),
        ("finished", ", ".join("%s %s" % (_plain(n), _plain(k)) for k, n in done.items())
         if done else "none yet"),
        ("documents", "%d followed, each by %s" % (
            len(_dicts(snap.get("documents"))),
            "every monitor" if not replicas else "%s monitor(s)" % _plain(replicas))),
    ]


# -- HTML --------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 12px} h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;min-width:40%} th,td{padding:4px 12px;text-align:left;
border-bottom:1px solid #d0d7de} th{background:#f6f8fa} td.num{text-align:right}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0}
dt{font-weight:600} .no{color:#cf222e} .me{font-weight:600} .more{color:#57606a}
"""


def render_html(snap):
    """The read-only status page: a summary, then documents, cluster and queues."""
    esc = html.escape
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<meta http-equiv=\"refresh\" content=\"%d\">" % REFRESH_SECONDS,
             "<title>mrmd-monitor status</title><style>%s</style></head><body>" % _STYLE,
             "<h1>mrmd-monitor</h1><dl id=\"summary\">"]
    for key, value in _summary(snap):
        parts.append("<dt>%s</dt><dd>%s</dd>" % (esc(key), esc(value)))
    parts.append("</dl>")
    idents = ("documents", "cluster", "queues")
    for (title, headers, rows, more), ident in zip(_tables(snap), idents):
        parts.append("<h2>%s</h2><table id=\"%s\"><thead><tr>%s</tr></thead><tbody>" % (
            esc(title), ident, "".join("<th>%s</th>" % esc(h) for h in headers)))
        if not rows:
            parts.append("<tr><td colspan=\"%d\" class=\"more\">none</td></tr>" % len(headers))
        for row in rows:
            cls = ""
            if ident == "cluster" and row[-1]:
                cls = " class=\"me\""
            cells = []
            for h, cell in zip(headers, row):
                klass = " class=\"no\"" if h == "synced" and cell == "no" else ""
                cells.append("<td%s>%s</td>" % (klass, esc(cell)))
            parts.append("<tr%s>%s</tr>" % (cls, "".join(cells)))
        if more > 0:
            parts.append("<tr><td colspan=\"%d\" class=\"more\">and %d more</td></tr>"
                         % (len(headers), more))
        parts.append("</tbody></table>")
    parts.append("<p class=\"more\">Read-only; refreshes every %d s. Data: "
                 "<a href=\"/status.json\">/status.json</a>, "
                 "<a href=\"/metrics\">/metrics</a>.</p></body></html>" % REFRESH_SECONDS)
    return "".join(parts)


# -- terminal ----------------------------------------------------------------------

def _table_text(headers, rows):
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def render_table(snap):
    """The same as the page, as plain text for a terminal."""
    summary = _summary(snap)
    width = max(len(k) for k, _ in summary)
    out = ["%s  %s" % (k.ljust(width), v) for k, v in summary]
    for title, headers, rows, more in _tables(snap):
        out.extend(["", title.upper()])
        if rows:
            out.extend(_table_text(headers, rows))
        else:
            out.append("(none)")
        if more > 0:
            out.append("... and %d more" % more)
    return "\n".join(out) + "\n"


# -- mrmd-monitor status -----------------------------------------------------------

STATUS_ENV = "MRMD_MONITOR_STATUS_ADDR"
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024


def _address_from_file(path):
    parser = configparser.ConfigParser()
    parser.read(path)
    if parser.has_option("mrmd-monitor", "status-addr"):
        return parser.get("mrmd-monitor", "status-addr")
    return None


def fetch_snapshot(address, timeout=5.0):
    """GET /status.json from a running monitor's status server."""
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", address
    host = host.strip("[]") or "127.0.0.1"
    url = "http://%s:%s/status.json" % ("[%s]" % host if ":" in host else host, port)
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http only
        body = response.read(MAX_SNAPSHOT_BYTES + 1)
    if len(body) > MAX_SNAPSHOT_BYTES:
        raise ValueError("the answer from %s is larger than %d bytes" % (url, MAX_SNAPSHOT_BYTES))
    return json.loads(body.decode("utf-8"))


def status_command(argv, out=None, env=None):
    """``mrmd-monitor status [--status-addr HOST:PORT] [-c FILE] [--json]``: exit 0
    and the table, 1 when the monitor cannot be asked, 2 on a usage error."""
    out = out or sys.stdout
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="mrmd-monitor status",
                                     description="Print a running monitor's status as a table.")
    parser.add_argument("--status-addr", metavar="HOST:PORT",
                        help="the monitor's --status-addr (default: $%s, or status-addr in the "
                             "-c file)" % STATUS_ENV)
    parser.add_argument("-c", "--config", metavar="PATH",
                        help="read status-addr from this INI file")
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default: 5)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:
        return int(done.code or 0)
    address = args.status_addr or env.get(STATUS_ENV) or (
        _address_from_file(args.config) if args.config else None)
    if not address:
        sys.stderr.write("mrmd-monitor status: error: give --status-addr (the monitor's "
                         "status server) or %s\n" % STATUS_ENV)
        return 2
    try:
        snap = fetch_snapshot(address.strip(), timeout=args.timeout)
    except (OSError, ValueError, RecursionError, urllib.error.URLError) as exc:
        sys.stderr.write("mrmd-monitor status: cannot read the status of the monitor at %s: %s\n"
                         % (address, " ".join(str(getattr(exc, "reason", exc)).split())))
        return 1
    out.write(json.dumps(snap, indent=2) + "\n" if args.json else render_table(snap))
    return 0
