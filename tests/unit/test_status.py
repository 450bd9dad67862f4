"""The status server: /healthz and /metrics from fake documents, over real HTTP on port 0."""

import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Optional

import pytest

from mrmd_monitor.metrics import Metrics
from mrmd_monitor.status import (
    METRICS_CONTENT_TYPE,
    StatusServer,
    StatusServerError,
    health,
    render_metrics,
    split_address,
)


@dataclass
class FakeDoc:
    doc_name: str
    synced: bool = True
    last_heard_wall: Optional[float] = None


def get(server, path, method="GET"):
    host, port = server.bound
    request = urllib.request.Request("http://%s:%d%s" % (host, port, path), method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers, resp.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read().decode("utf-8")


@pytest.fixture
def serve():
    servers = []

    def start(docs, metrics=None, stopping=lambda: False, now=1000.0):
        server = StatusServer("127.0.0.1:0", metrics or Metrics(), lambda: list(docs),
                              stopping=stopping, clock=lambda: now)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


# ---------------------------------------------------------------- pure parts


def test_split_address():
    assert split_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert split_address("::1:9464") == ("::1", 9464)
    assert split_address("[::1]:80") == ("::1", 80)
    assert split_address(":80") == ("127.0.0.1", 80)


def test_health_needs_every_document_synced():
    assert health([FakeDoc("a"), FakeDoc("b")]) == (True, "ok\n")
    assert health([FakeDoc("a"), FakeDoc("b", synced=False), FakeDoc("c", synced=False)]) == (
        False, "not synced: b, c\n")
    assert health([FakeDoc("a")], stopping=True) == (False, "stopping\n")


def test_metrics_add_per_document_gauges_without_touching_the_registry():
    metrics = Metrics()
    metrics.inc("mrmd_monitor_executions_total", status="completed")
    metrics.inc("mrmd_monitor_executions_total", status="completed")
    metrics.inc("mrmd_monitor_executions_total", status="error")
    metrics.set("mrmd_monitor_active_runs", 1)
    metrics.set("mrmd_monitor_document_connected", 1, doc="b")  # stale value of a sync thread
    before = metrics.snapshot()
    docs = [FakeDoc("a", True, 990.5), FakeDoc("b", False, None)]
    text = render_metrics(metrics, docs, now=1000.0)
    assert metrics.snapshot() == before
    lines = text.splitlines()
    assert 'mrmd_monitor_executions_total{status="completed"} 2' in lines
    assert 'mrmd_monitor_executions_total{status="error"} 1' in lines
    assert "mrmd_monitor_active_runs 1" in lines
    assert 'mrmd_monitor_document_connected{doc="a"} 1' in lines
    assert 'mrmd_monitor_document_connected{doc="b"} 0' in lines  # read now, not the stale 1
    assert 'mrmd_monitor_last_sync_age_seconds{doc="a"} 9.5' in lines
    assert not any(line.startswith('mrmd_monitor_last_sync_age_seconds{doc="b"}') for line in lines)
    assert "# TYPE mrmd_monitor_executions_total counter" in lines
    assert "# TYPE mrmd_monitor_last_sync_age_seconds gauge" in lines
    assert text.endswith("\n")
    # one TYPE line per metric name, always before its samples
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names))


def test_metrics_age_is_never_negative():
    text = render_metrics(Metrics(), [FakeDoc("a", True, 1001.0)], now=1000.0)
    assert 'mrmd_monitor_last_sync_age_seconds{doc="a"} 0' in text.splitlines()


def test_document_names_are_escaped():
    text = render_metrics(Metrics(), [FakeDoc('we"ird\\name', True, None)], now=0.0)
    assert 'mrmd_monitor_document_connected{doc="we\\"ird\\\\name"} 1' in text


# ---------------------------------------------------------------- over HTTP


def test_healthz_200_when_all_synced(serve):
    server = serve([FakeDoc("a"), FakeDoc("b")])
    code, headers, body = get(server, "/healthz")
    assert (code, body) == (200, "ok\n")
    assert headers["Content-Type"].startswith("text/plain")


def test_healthz_503_names_the_documents_not_synced(serve):
    docs = [FakeDoc("a"), FakeDoc("b", synced=False)]
    server = serve(docs)
    assert get(server, "/healthz")[::2] == (503, "not synced: b\n")
    docs[1].synced = True  # read at request time
    assert get(server, "/healthz")[::2] == (200, "ok\n")


def test_healthz_503_while_stopping(serve):
    server = serve([FakeDoc("a")], stopping=lambda: True)
    assert get(server, "/healthz")[::2] == (503, "stopping\n")


def test_metrics_endpoint(serve):
    metrics = Metrics()
    metrics.inc("mrmd_monitor_output_bytes_total", 42)
    server = serve([FakeDoc("a", True, 999.0)], metrics=metrics)
    code, headers, body = get(server, "/metrics?x=1")
    assert code == 200
    assert headers["Content-Type"] == METRICS_CONTENT_TYPE
    assert "mrmd_monitor_output_bytes_total 42\n" in body
    assert 'mrmd_monitor_last_sync_age_seconds{doc="a"} 1\n' in body


def test_head_and_unknown_paths(serve):
    server = serve([FakeDoc("a")])
    code, headers, body = get(server, "/healthz", method="HEAD")
    assert (code, body) == (200, "")
    assert headers["Content-Length"] == "3"
    assert get(server, "/")[0] == 404
    assert get(server, "/metrics/extra")[0] == 404


def test_a_failing_reader_gives_500_and_the_server_goes_on(serve):
    calls = []

    def docs():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [FakeDoc("a")]

    server = StatusServer("127.0.0.1:0", Metrics(), docs)
    server.start()
    try:
        assert get(server, "/healthz")[0] == 500
        assert get(server, "/healthz")[0] == 200
    finally:
        server.stop()


def test_thread_is_named_and_stop_is_idempotent():
    server = StatusServer("127.0.0.1:0", Metrics(), lambda: [])
    server.start()
    assert any(t.name == "status" for t in threading.enumerate())
    server.stop()
    server.stop()
    assert not any(t.name == "status" and t.is_alive() for t in threading.enumerate())


def test_a_busy_address_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = "127.0.0.1:%d" % taken.getsockname()[1]
        server = StatusServer(address, Metrics(), lambda: [])
        with pytest.raises(StatusServerError, match="cannot serve /healthz and /metrics on "
                                                    + address.replace(".", r"\.")):
            server.start()
        server.stop()  # nothing started: still fine


def test_a_route_is_one_row_of_the_table(serve, monkeypatch):
    from mrmd_monitor import status as status_module

    monkeypatch.setitem(status_module.ROUTES, "/hello",
                        lambda server: (200, "text/plain; charset=utf-8", "hi\n", ()))
    server = serve([FakeDoc("a")])
    code, headers, body = get(server, "/hello")
    assert (code, body) == (200, "hi\n")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(server, "/nothing")[0] == 404
