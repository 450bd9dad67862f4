"""/healthz and /metrics of a real monitor (``--status-addr``), through a run,
a sync server outage and the start of a stop."""

import re
import signal
import socket
import urllib.error
import urllib.request

import pytest

from tests.service.helpers import run_cell, write_ini
from tests.support.notebook import FINAL, cell, loop_code, uid
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers.get("Content-Type"), err.read().decode("utf-8")


def samples(text):
    """``{'name{labels}': value}`` of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_healthz_and_metrics(tmp_path, sync_server, own_runtime, doc_name, peer_factory,
                             configured_monitor):
    port = free_port()
    ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name, reconnect_max=1,
                    grace=20)
    monitor = configured_monitor("-c", ini, "--status-addr", port)  # a bare port: loopback
    monitor.wait_for_line("status server listening on http://127.0.0.1:%d" % port)

    assert get(port, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
    code, ctype, text = get(port, "/metrics")
    assert code == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8"
    doc = 'doc="%s"' % doc_name
    values = samples(text)
    assert values["mrmd_monitor_document_connected{%s}" % doc] == 1
    assert 0 <= values["mrmd_monitor_last_sync_age_seconds{%s}" % doc] < 60
    assert get(port, "/nothing")[0] == 404

    browser = peer_factory(sync_server.url, doc_name)
    exec_id, entry = run_cell(browser, own_runtime, "print('x' * 99)")
    assert entry["status"] == "completed"
    wait_until(lambda: samples(get(port, "/metrics")[2]).get("mrmd_monitor_output_bytes_total", 0) >= 100,
               timeout=10, message="output bytes not counted")

    # The sync server goes away: not healthy, naming the document; back: healthy again.
    sync_server.stop()
    status = wait_until(lambda: (lambda r: r[0] == 503 and r)(get(port, "/healthz")), timeout=15,
                        message="/healthz stayed 200 without a sync server")
    assert status[2] == "not synced: %s\n" % doc_name
    assert samples(get(port, "/metrics")[2])["mrmd_monitor_document_connected{%s}" % doc] == 0
    sync_server.start()
    wait_until(lambda: get(port, "/healthz")[0] == 200, timeout=20,
               message="/healthz not 200 after the sync server came back")
    values = samples(get(port, "/metrics")[2])
    assert values["mrmd_monitor_reconnects_total{%s}" % doc] >= 1
    assert values["mrmd_monitor_document_connected{%s}" % doc] == 1

    # Stopping: not healthy any more, and the port is closed at the end.
    monitor.send_signal(signal.SIGTERM)
    assert monitor.wait(timeout=15) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_run_metrics(tmp_path, sync_server, own_runtime, doc_name, peer_factory, configured_monitor):
    port = free_port()
    ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name,
                    status_addr="127.0.0.1:%d" % port)
    configured_monitor("-c", ini)
    browser = peer_factory(sync_server.url, doc_name)

    def metric(name):
        return samples(get(port, "/metrics")[2]).get(name, 0)

    assert run_cell(browser, own_runtime, "print('done')")[1]["status"] == "completed"
    assert run_cell(browser, own_runtime, "1/0")[1]["status"] == "error"
    wait_until(lambda: metric('mrmd_monitor_executions_total{status="error"}') == 1, timeout=10,
               message="the error run was not counted")
    assert metric('mrmd_monitor_executions_total{status="completed"}') == 1
    assert metric("mrmd_monitor_claims_total") == 2

    # A run going on is active; a second one on the same runtime and session waits its turn.
    loop = loop_code('tick', 600, 0.1)
    first, second = "exec-" + uid(), "exec-" + uid()
    browser.set_text(browser.text() + "\n" + cell(loop) + "\n\n" + cell("print('next')") + "\n")
    browser.request(first, loop, own_runtime.url)
    browser.wait_text("tick 2\n", timeout=30)
    browser.request(second, "print('next')", own_runtime.url)
    browser.wait_entry(second, lambda e: e and e.get("queued"), timeout=10)
    wait_until(lambda: metric("mrmd_monitor_active_runs") == 1 and metric("mrmd_monitor_queued_runs") == 1,
               timeout=10, message="active 1 and queued 1 not shown")
    assert browser.cancel(first)
    assert browser.wait_entry(second, FINAL, timeout=30)["status"] == "completed"
    wait_until(lambda: metric("mrmd_monitor_active_runs") == 0 and metric("mrmd_monitor_queued_runs") == 0,
               timeout=10, message="active and queued runs not back to 0")
    assert metric('mrmd_monitor_executions_total{status="cancelled"}') == 1
    assert metric('mrmd_monitor_executions_total{status="completed"}') == 2


def test_metrics_names_match_the_registry(tmp_path, sync_server, doc_name, configured_monitor):
    """Every series on /metrics has HELP and TYPE lines, and the names are the documented ones."""
    from mrmd_monitor.metrics import HELP
    port = free_port()
    ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name,
                    status_addr="127.0.0.1:%d" % port)
    configured_monitor("-c", ini)
    text = get(port, "/metrics")[2]
    names = {re.match(r"[a-z_]+", key).group(0) for key in samples(text)}
    assert names <= set(HELP)
    for name in names:
        assert "# HELP %s " % name in text and "# TYPE %s %s" % (name, HELP[name][0]) in text


def test_a_busy_status_port_stops_the_start(tmp_path, sync_server, doc_name, configured_monitor):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ini = write_ini(tmp_path / "monitor.ini", sync_url=sync_server.url, doc=doc_name)
        monitor = configured_monitor("-c", ini, "--status-addr", "127.0.0.1:%d" % port, wait_ready=False)
        assert monitor.wait(timeout=20) == 1
    line = monitor.wait_for_line("cannot serve /healthz and /metrics on 127.0.0.1:%d" % port)
    assert " ERROR " in line
    assert not any("connected to" in l for l in monitor.lines())
