"""statuspage.py: one snapshot, rendered as the HTML page and as the terminal table."""

import html.parser
import io
import json

import pytest

from mrmd_monitor import statuspage as sp
from mrmd_monitor.cluster import Member
from mrmd_monitor.metrics import Metrics
from tests.support.local_http import LocalServer, QuietHandler

NOW = 1_800_000_000.0


def snapshot(**over):
    metrics = Metrics()
    metrics.set("mrmd_monitor_active_runs", 2)
    metrics.set("mrmd_monitor_queued_runs", 3)
    metrics.set("mrmd_monitor_queue_depth", 3, runtime="http://127.0.0.1:8000/mrp/v1")
    metrics.set("mrmd_monitor_queue_depth", 0, runtime="http://127.0.0.1:9000/mrp/v1")
    metrics.inc("mrmd_monitor_claims_won_total", 7)
    metrics.inc("mrmd_monitor_claims_lost_total", 1)
    metrics.inc("mrmd_monitor_claims_backed_up_total", 2)
    metrics.inc("mrmd_monitor_executions_total", 5, status="completed")
    metrics.inc("mrmd_monitor_executions_total", 1, status="error")
    args = dict(
        me={"id": "mon-a", "name": "alpha", "version": "0.1.0", "capacity": 8},
        metric_values=metrics.snapshot(),
        documents=[{"name": "b.md", "synced": False, "last_heard_wall": None, "runs": 0},
                   {"name": "a.md", "synced": True, "last_heard_wall": NOW - 2.5, "runs": 4}],
        members=(Member(id="mon-a", capacity=8, busy=5, version="0.1.0", name="alpha"),
                 Member(id="mon-b", capacity=4, busy=0, version="0.1.0", name="beta")),
        now=NOW, replicas=2, control_doc="mrmd-monitors")
    args.update(over)
    return sp.build_snapshot(**args)


def test_build_snapshot():
    snap = snapshot()
    assert json.loads(json.dumps(snap)) == snap  # JSON-able, served as /status.json
    assert snap["monitor"] == {"id": "mon-a", "name": "alpha", "version": "0.1.0",
                               "capacity": 8, "busy": 5}
    assert snap["documents"] == [
        {"name": "a.md", "synced": True, "last_heard_age": 2.5, "runs": 4},
        {"name": "b.md", "synced": False, "last_heard_age": None, "runs": 0}]
    assert snap["cluster"] == [
        {"id": "mon-a", "name": "alpha", "version": "0.1.0", "capacity": 8, "busy": 5, "me": True},
        {"id": "mon-b", "name": "beta", "version": "0.1.0", "capacity": 4, "busy": 0, "me": False}]
    assert snap["runs"] == {"active": 2, "queued": 3}
    # Metrics label a runtime by its origin (metrics.py).
    assert snap["queues"] == [{"runtime": "localhost:8000", "depth": 3}]
    assert snap["claims"] == {"won": 7, "lost": 1, "backed_up": 2}
    assert snap["executions"] == {"completed": 5, "error": 1}
    assert snap["replicas"] == 2 and snap["control_doc"] == "mrmd-monitors"


def test_render_table_exact():
    assert sp.render_table(snapshot()) == """\
monitor    alpha (mon-a), version 0.1.0
runs       2 running, 3 queued, 5 of 8 workers busy
claims     7 won, 1 lost, 2 as a backup
finished   5 completed, 1 error
documents  2 followed, each by 2 monitor(s)

DOCUMENTS
document  synced  last heard  runs
--------  ------  ----------  ----
a.md      yes     2.5s ago    4
b.md      no      -           0

MONITORS IN THE CLUSTER
monitor  name   version  busy / capacity
-------  -----  -------  ---------------  --------
mon-a    alpha  0.1.0    5 / 8            this one
mon-b    beta   0.1.0    0 / 4

QUEUES
runtime         waiting
--------------  -------
localhost:8000  3
"""


def test_empty_snapshot_renders():
    snap = sp.build_snapshot(me={"id": "x"}, metric_values={}, documents=[], members=(), now=NOW)
    text = sp.render_table(snap)
    assert "DOCUMENTS\n(none)" in text and "each by every monitor" in text
    assert "none" in sp.render_html(snap)


class _Page(html.parser.HTMLParser):
    """Cells of each table of the page, by table id."""

    def __init__(self):
        super().__init__()
        self.tables, self._table, self._cell, self.scripts = {}, None, None, 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = dict(attrs)["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[self._table][-1].append(self._cell)
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_render_html_tables():
    page = _Page()
    page.feed(sp.render_html(snapshot()))
    assert page.tables["documents"] == [["document", "synced", "last heard", "runs"],
                                        ["a.md", "yes", "2.5s ago", "4"],
                                        ["b.md", "no", "-", "0"]]
    assert page.tables["cluster"][1] == ["mon-a", "alpha", "0.1.0", "5 / 8", "this one"]
    assert page.tables["queues"][1:] == [["localhost:8000", "3"]]


def test_rows_are_capped():
    docs = [{"name": "d%05d" % i, "synced": True, "last_heard_wall": NOW, "runs": 0}
            for i in range(sp.MAX_ROWS + 7)]
    text = sp.render_table(snapshot(documents=docs))
    assert "... and 7 more" in text
    assert "d%05d" % (sp.MAX_ROWS - 1) in text and "d%05d" % sp.MAX_ROWS not in text


# -- mrmd-monitor status -------------------------------------------------------------

@pytest.fixture
def fake_status_server():
    """A stand-in status server answering /status.json with ``server.body``."""

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            self.answer(200 if self.path == "/status.json" else 404, self.server.body)

    with LocalServer(Handler, "fake-status") as local:
        local.server.body = b"{}"
        yield local.server


def test_status_command_prints_the_table(fake_status_server):
    fake_status_server.body = json.dumps(snapshot()).encode()
    out = io.StringIO()
    addr = "127.0.0.1:%d" % fake_status_server.server_address[1]
    assert sp.status_command(["--status-addr", addr], out=out, env={}) == 0
    assert out.getvalue() == sp.render_table(snapshot())
    out = io.StringIO()
    assert sp.status_command([], out=out, env={sp.STATUS_ENV: addr}) == 0
    assert out.getvalue() == sp.render_table(snapshot())


def test_status_command_reads_the_ini_file(fake_status_server, tmp_path):
    fake_status_server.body = json.dumps(snapshot()).encode()
    ini = tmp_path / "monitor.ini"
    ini.write_text("[mrmd-monitor]\nstatus-addr = 127.0.0.1:%d\n" % fake_status_server.server_address[1])
    out = io.StringIO()
    assert sp.status_command(["-c", str(ini), "--json"], out=out, env={}) == 0
    assert json.loads(out.getvalue()) == snapshot()


def test_status_command_errors(fake_status_server, capsys):
    assert sp.status_command([], out=io.StringIO(), env={}) == 2
    assert "give --status-addr" in capsys.readouterr().err
    from tests.support.ports import free_port
    assert sp.status_command(["--status-addr", str(free_port()), "--timeout", "2"],
                             out=io.StringIO(), env={}) == 1
    assert "cannot read the status of the monitor" in capsys.readouterr().err


def test_the_cli_has_the_status_subcommand(fake_status_server, capsys):
    from mrmd_monitor.cli import main
    fake_status_server.body = json.dumps(snapshot()).encode()
    addr = "127.0.0.1:%d" % fake_status_server.server_address[1]
    assert main(["status", "--status-addr", addr]) == 0
    assert capsys.readouterr().out == sp.render_table(snapshot())


def test_the_status_server_serves_the_page_and_its_data():
    import urllib.request

    from mrmd_monitor.status import StatusServer

    server = StatusServer("127.0.0.1:0", Metrics(), lambda: [], snapshot=snapshot).start()
    try:
        base = "http://127.0.0.1:%d" % server.bound[1]
        with urllib.request.urlopen(base + "/status.json", timeout=10) as answer:
            assert answer.headers["Content-Type"] == "application/json"
            assert json.loads(answer.read()) == snapshot()
        with urllib.request.urlopen(base + "/", timeout=10) as answer:
            assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
            assert answer.read().decode() == sp.render_html(snapshot())
    finally:
        server.stop()
