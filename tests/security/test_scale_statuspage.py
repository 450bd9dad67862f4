"""Hostile text on the status page and in ``mrmd-monitor status`` (issue 13):
document names come from the sync server, member names and ids from any
peer's awareness, and the status answer from whatever listens on the address."""

import io

import pytest

from mrmd_monitor import statuspage as sp
from mrmd_monitor.cluster import Member
from tests.support.local_http import LocalServer, QuietHandler
from tests.unit.test_statuspage import NOW, _Page, snapshot

HOSTILE = "<script>alert(1)</script>\x1b[2J\x1b]0;owned\x07\r\nx" + "y" * 5000


def hostile_snapshot():
    return snapshot(
        documents=[{"name": HOSTILE, "synced": True, "last_heard_wall": NOW, "runs": 1}],
        members=(Member(id=HOSTILE[:128], capacity=1, busy=0, version="\x1b[31m", name=HOSTILE),))


def test_hostile_names_cannot_inject_html():
    page_text = sp.render_html(hostile_snapshot())
    assert "<script>" not in page_text
    page = _Page()
    page.feed(page_text)
    assert page.scripts == 0
    shown = page.tables["documents"][1][0]
    assert shown.startswith("<script>alert(1)</script>?[2J?]0;owned??")
    assert len(shown) == sp.MAX_CELL_CHARS


def test_hostile_names_cannot_reach_the_terminal():
    text = sp.render_table(hostile_snapshot())
    assert all(ch == "\n" or ch.isprintable() for ch in text)
    assert max(len(line) for line in text.splitlines()) < 4 * sp.MAX_CELL_CHARS


@pytest.mark.parametrize("snap", [None, [], "x", {"documents": "abc", "cluster": [1, None],
                                                   "queues": {"a": 1}, "monitor": 3,
                                                   "runs": [], "executions": "no"}])
def test_garbage_snapshot_still_renders(snap):
    assert "DOCUMENTS" in sp.render_table(snap)
    assert "<table" in sp.render_html(snap)


@pytest.fixture
def hostile_status_server():
    """Whatever listens on the status address, answering ``server.body``."""

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            self.answer(200, self.server.body)

    with LocalServer(Handler, "hostile-status") as local:
        yield local.server


@pytest.mark.parametrize("body", [b"[" * 100_000, b"<html>", b"\xff\xfe", b"x" * 100])
def test_status_command_survives_a_broken_answer(hostile_status_server, body, capsys):
    hostile_status_server.body = body
    addr = "127.0.0.1:%d" % hostile_status_server.server_address[1]
    assert sp.status_command(["--status-addr", addr], out=io.StringIO(), env={}) == 1
    assert "cannot read the status of the monitor" in capsys.readouterr().err


def test_status_command_prints_no_terminal_escape_from_the_answer(hostile_status_server):
    import json
    hostile_status_server.body = json.dumps(hostile_snapshot()).encode()
    out = io.StringIO()
    addr = "127.0.0.1:%d" % hostile_status_server.server_address[1]
    assert sp.status_command(["--status-addr", addr], out=out, env={}) == 0
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
