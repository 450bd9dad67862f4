"""Discovery: /stats read from a small local HTTP server that answers as scripted."""

import json
import logging

import pytest

from mrmd_monitor.config import load_config
from mrmd_monitor.discovery import (
    MAX_STATS_BYTES,
    Discovery,
    fetch_documents,
    parse_stats,
    plan,
    stats_url,
)
from mrmd_monitor.errors import DiscoveryError, NoStatsEndpoint
from tests.support.local_http import LocalServer, QuietHandler
from tests.support.waiting import wait_until


def stats(*names):
    return 200, json.dumps({"documents": [{"name": n} for n in names]}).encode(), {}


class ScriptedStats:
    """Answers /stats with the next scripted answer (the last one repeats)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked = 0
        self.headers = []
        outer = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                outer.headers.append(dict(self.headers))
                outer.asked += 1
                code, body, headers = outer.answers[min(outer.asked, len(outer.answers)) - 1]
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.local = LocalServer(Handler, "test-stats").start()
        self.sync_url = "ws://127.0.0.1:%d" % self.local.port

    def close(self):
        self.local.stop()


@pytest.fixture
def scripted():
    servers = []

    def start(*answers):
        server = ScriptedStats(*answers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


class Recorder:
    def __init__(self):
        self.reports = []
        self.failures = []

    def report(self, names):
        self.reports.append(tuple(names))

    def fail(self, error):
        self.failures.append(error)


@pytest.fixture
def discover():
    started = []

    def start(sync_url, *args):
        config = load_config([sync_url, "--discover-interval", "0.05", "--connect-timeout", "2",
                              *args], env={})
        recorder = Recorder()
        thread = Discovery(lambda: config, report=recorder.report, fail=recorder.fail)
        started.append(thread)
        thread.start()
        return thread, recorder

    yield start
    for thread in started:
        thread.stop()
        thread.join(5)
        assert not thread.is_alive()


# ---------------------------------------------------------------- pure parts


def test_stats_url():
    assert stats_url("ws://h:1") == "http://h:1/stats"
    assert stats_url("wss://h/rooms/") == "https://h/rooms/stats"


def test_parse_stats_keeps_names_once_in_order():
    assert parse_stats({"documents": [{"name": "a"}, "b", {"name": "a"}, {"name": " "}, 3]}) == [
        "a", "b"]
    with pytest.raises(ValueError):
        parse_stats({"docs": []})


def test_plan_attaches_up_to_the_limit_and_keeps_what_it_follows():
    assert plan(["a", "b", "c"], [], 2) == (["a", "b"], [], ["c"])
    # the followed ones stay first: a document does not move because a new one is listed earlier
    assert plan(["x", "a", "b"], ["a", "b"], 2) == ([], [], ["x"])
    assert plan(["x", "b"], ["a", "b"], 2) == (["x"], ["a"], [])
    assert plan([], ["a"], 2) == ([], ["a"], [])


# ---------------------------------------------------------------- over HTTP


def test_fetch_refuses_a_redirect_and_a_huge_answer(scripted):
    moved = scripted((302, b"", {"Location": "http://192.0.2.1/stats"}))
    with pytest.raises(DiscoveryError, match="HTTP 302"):
        fetch_documents(stats_url(moved.sync_url), timeout=2)
    huge = scripted((200, b'{"documents": ["' + b"x" * (MAX_STATS_BYTES + 10) + b'"]}', {}))
    with pytest.raises(DiscoveryError, match="larger than"):
        fetch_documents(stats_url(huge.sync_url), timeout=2)


def test_fetch_sends_the_token_as_a_bearer_header(scripted):
    server = scripted(stats("a"))
    assert fetch_documents(stats_url(server.sync_url), timeout=2, token="t0k") == ["a"]
    assert server.headers[0]["Authorization"] == "Bearer t0k"


def test_no_stats_at_start_fails_with_give_them_with_doc(scripted, discover):
    server = scripted((404, b"not found", {}))
    thread, seen = discover(server.sync_url)
    wait_until(lambda: seen.failures, timeout=10)
    thread.join(5)
    assert isinstance(seen.failures[0], NoStatsEndpoint)
    assert "give them with --doc" in str(seen.failures[0])
    assert seen.reports == []


def test_not_json_at_start_fails_too(scripted, discover):
    server = scripted((200, b"<html>hello</html>", {}))
    thread, seen = discover(server.sync_url)
    wait_until(lambda: seen.failures, timeout=10)
    assert "give them with --doc" in str(seen.failures[0])


@pytest.mark.parametrize("bad", [(404, b"gone", {}), (200, b"not json", {}),
                                 (200, b'{"documents": 3}', {}), (500, b"oops", {})])
def test_a_bad_answer_after_start_is_logged_once_and_the_documents_are_kept(
        scripted, discover, caplog, bad):
    server = scripted(stats("a", "b"), bad, bad, bad, bad, stats("a", "c"))
    with caplog.at_level(logging.INFO, logger="mrmd_monitor.discovery"):
        thread, seen = discover(server.sync_url)
        wait_until(lambda: ("a", "c") in seen.reports, timeout=10)
    assert seen.failures == []
    assert thread.is_alive()
    # nothing reported while the answers were bad: the daemon kept a and b
    assert seen.reports[0] == ("a", "b") and seen.reports[-1] == ("a", "c")
    assert set(seen.reports) == {("a", "b"), ("a", "c")}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "keeping the 2 document(s) already followed" in warnings[0].getMessage()
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_unreachable_at_start_is_retried_not_fatal(discover, caplog):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    thread, seen = discover("ws://127.0.0.1:%d" % port)
    wait_until(lambda: any("retrying" in r.getMessage() for r in caplog.records), timeout=10)
    assert seen.failures == [] and thread.is_alive()


# ---------------------------------------------------------------- the daemon's side


class FakeSync:
    def __init__(self, name):
        self.doc_name = name
        self.leaving = False
        self.posted = []

    def post(self, message):
        self.posted.append(message)


def test_the_daemon_follows_at_most_max_docs_and_says_so_once(caplog):
    from mrmd_monitor.daemon import Daemon

    daemon = Daemon(load_config(["ws://127.0.0.1:1", "--max-docs", "2"], env={}))
    daemon.fleet.attach = lambda name: daemon.fleet.syncs.append(FakeSync(name))
    with caplog.at_level(logging.INFO, logger="mrmd_monitor.fleet"):
        daemon.handle_docs(["a", "b", "c", "d"])
        daemon.handle_docs(["a", "b", "c", "d", "e"])
        assert [s.doc_name for s in daemon.fleet.syncs] == ["a", "b"]
        limit_lines = [r.getMessage() for r in caplog.records if "--max-docs 2 reached" in r.getMessage()]
        assert limit_lines == ["--max-docs 2 reached: following 2 document(s), leaving 2 more the "
                               "server lists alone (first: c)"]
        daemon.handle_docs(["b", "c"])  # a was closed: c takes its place
        assert [s.doc_name for s in daemon.fleet.syncs if not s.leaving] == ["b", "c"]
        assert daemon.fleet.syncs[0].leaving and daemon.fleet.syncs[0].posted
        assert any("every document the server lists is followed again" in r.getMessage()
                   for r in caplog.records)
