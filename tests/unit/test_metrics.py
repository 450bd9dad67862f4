"""metrics.py: the counters the sync threads update and the Prometheus text
the status server serves from them."""

import re

from mrmd_monitor.metrics import FLUSH_BUCKETS, Metrics


def values(text):
    """The exposition's sample lines, without HELP and TYPE."""
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_counters_add_per_label_set_and_gauges_are_set():
    m = Metrics()
    m.set("mrmd_monitor_active_runs", 3)
    for status in ("completed", "error", "completed"):
        m.inc("mrmd_monitor_executions_total", status=status)
    m.inc("mrmd_monitor_active_runs", -1)
    assert m.get("mrmd_monitor_executions_total", status="completed") == 2
    assert m.get("mrmd_monitor_executions_total", status="error") == 1
    assert m.get("mrmd_monitor_executions_total", status="cancelled") == 0
    assert m.get("mrmd_monitor_active_runs") == 2


def test_label_order_does_not_make_a_new_series():
    m = Metrics()
    m.inc("x_total", doc="a", runtime="r")
    m.inc("x_total", runtime="r", doc="a")
    assert m.get("x_total", doc="a", runtime="r") == 2
    assert len(m.snapshot()) == 1


def test_removing_a_document_forgets_only_its_series():
    m = Metrics()
    m.inc("mrmd_monitor_reconnects_total", doc="a.md")
    m.set("mrmd_monitor_document_connected", 1, doc="a.md")
    m.set("mrmd_monitor_document_connected", 1, doc="b.md")
    m.inc("mrmd_monitor_claims_total")
    m.remove(doc="a.md")
    text = m.render_prometheus()
    assert 'doc="a.md"' not in text
    assert sorted(values(text)) == ["mrmd_monitor_claims_total 1",
                                    'mrmd_monitor_document_connected{doc="b.md"} 1']


def test_exposition_has_help_and_type_once_per_family_and_integers_as_integers():
    m = Metrics()
    m.inc("mrmd_monitor_executions_total", status="completed")
    m.inc("mrmd_monitor_executions_total", status="error")
    m.set("mrmd_monitor_last_sync_age_seconds", 0.25, doc="a.md")
    text = m.render_prometheus()
    assert text.count("# TYPE mrmd_monitor_executions_total counter") == 1
    assert text.count("# HELP mrmd_monitor_executions_total ") == 1
    assert "# TYPE mrmd_monitor_last_sync_age_seconds gauge" in text
    assert 'mrmd_monitor_executions_total{status="completed"} 1\n' in text
    assert 'mrmd_monitor_last_sync_age_seconds{doc="a.md"} 0.25\n' in text
    assert text.endswith("\n")


def test_a_name_without_help_is_untyped():
    m = Metrics()
    m.inc("something_new")
    assert "# TYPE something_new untyped" in m.render_prometheus()


def test_label_values_from_outside_are_escaped():
    m = Metrics()
    m.set("mrmd_monitor_document_connected", 1, doc='we"ird\\na\nme')
    text = m.render_prometheus()
    assert 'mrmd_monitor_document_connected{doc="we\\"ird\\\\na\\nme"} 1' in text
    assert len(values(text)) == 1


def test_the_flush_histogram_is_cumulative_with_every_bucket_in_order():
    m = Metrics()
    for value in (0.003, 0.04, 0.04, 7.0):
        m.observe("mrmd_monitor_flush_latency_seconds", value)
    text = m.render_prometheus()
    assert text.count("# TYPE mrmd_monitor_flush_latency_seconds histogram") == 1
    lines = values(text)
    buckets = [re.fullmatch(r'mrmd_monitor_flush_latency_seconds_bucket\{le="([^"]+)"\} (\d+)',
                            line).groups() for line in lines[:-2]]
    bounds = [bound for bound, _ in buckets]
    assert bounds[-1] == "+Inf" and [float(b) for b in bounds[:-1]] == list(FLUSH_BUCKETS)
    counts = dict((bound, int(count)) for bound, count in buckets)
    assert (counts["0.001"], counts["0.005"], counts["0.05"], counts["5.0"]) == (0, 1, 3, 3)
    assert counts["+Inf"] == 4
    assert [c for _, c in sorted((float(b), c) for b, c in counts.items())] == \
        sorted(counts.values())   # cumulative
    total, count = lines[-2:]   # after the buckets: _sum, then _count
    assert total.startswith("mrmd_monitor_flush_latency_seconds_sum ")
    assert abs(float(total.split()[1]) - 7.083) < 1e-9
    assert count == "mrmd_monitor_flush_latency_seconds_count 4"

