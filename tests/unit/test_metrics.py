"""metrics.py: the counters the sync threads update and the Prometheus text
the status server serves from them."""

import re

from mrmd_monitor.metrics import FLUSH_BUCKETS, Metrics


def series(text):
    """``name{labels}`` -> value, from the exposition format."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found


def test_counters_add_per_label_set_and_gauges_are_set():
    m = Metrics()
    m.inc("mrmd_monitor_executions_total", status="completed")
    m.inc("mrmd_monitor_executions_total", status="completed")
    m.inc("mrmd_monitor_executions_total", status="error")
    m.set("mrmd_monitor_active_runs", 3)
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
    assert series(text) == {'mrmd_monitor_document_connected{doc="b.md"}': 1,
                            "mrmd_monitor_claims_total": 1}


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
    assert len([l for l in text.splitlines() if not l.startswith("#")]) == 1


def test_the_flush_histogram_is_cumulative_with_every_bucket_in_order():
    m = Metrics()
    for value in (0.003, 0.04, 0.04, 7.0):
        m.observe("mrmd_monitor_flush_latency_seconds", value)
    text = m.render_prometheus()
    assert text.count("# TYPE mrmd_monitor_flush_latency_seconds histogram") == 1
    got = series(text)
    buckets = [(k, v) for k, v in got.items() if "_bucket" in k]
    bounds = [re.search(r'le="([^"]+)"', k).group(1) for k, _ in buckets]
    assert len(bounds) == len(FLUSH_BUCKETS) + 1 and bounds[-1] == "+Inf"
    assert [float(b) for b in bounds[:-1]] == sorted(FLUSH_BUCKETS)
    by_bound = dict(zip(bounds, (v for _, v in buckets)))
    assert by_bound["0.001"] == 0 and by_bound["0.005"] == 1 and by_bound["0.05"] == 3
    assert by_bound["5.0"] == 3 and by_bound["+Inf"] == 4
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)   # cumulative
    assert got["mrmd_monitor_flush_latency_seconds_count"] == 4
    assert abs(got["mrmd_monitor_flush_latency_seconds_sum"] - 7.083) < 1e-9
    # _bucket lines come first, then _sum and _count.
    names = [l.split("{")[0].split(" ")[0] for l in text.splitlines() if not l.startswith("#")]
    assert names[-2:] == ["mrmd_monitor_flush_latency_seconds_sum",
                          "mrmd_monitor_flush_latency_seconds_count"]

