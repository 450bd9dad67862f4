"""Runtime URLs written by peers cannot grow /metrics without bound.

``mrmd_monitor_queue_depth`` is labelled by runtime. Every URL spelling a
peer wrote used to stay a series forever, at 0 once its runs were gone.
The label is the runtime's canonical origin, a runtime gauge back at 0 is
dropped, and at most MAX_RUNTIME_SERIES series per metric are shown, the
rest summed under ``runtime="other"``."""

import re

from mrmd_monitor.metrics import MAX_RUNTIME_SERIES, Metrics

DEPTH = "mrmd_monitor_queue_depth"


def series(text, name=DEPTH):
    return re.findall(r"^%s\{([^}]*)\} (\S+)$" % name, text, re.M)


def test_a_runtime_spelt_many_ways_is_one_series():
    metrics = Metrics()
    for url in ("http://127.0.0.1:9/mrp/v1", "HTTP://LOCALHOST:9/mrp/v1/", "http://[::1]:9/x",
                "http://localhost.:9"):
        metrics.inc(DEPTH, runtime=url)
    assert series(metrics.render_prometheus()) == [('runtime="localhost:9"', "4")]
    assert metrics.get(DEPTH, runtime="http://localhost:9/mrp/v1") == 4


def test_runtimes_whose_runs_are_gone_leave_no_series():
    metrics = Metrics()
    for port in range(1, 2001):
        url = "http://127.0.0.1:%d/mrp/v1" % port
        metrics.inc(DEPTH, runtime=url)
        metrics.inc(DEPTH, -1, runtime=url)
    assert series(metrics.render_prometheus()) == []
    assert len(metrics.snapshot()) == 0


def test_many_live_runtimes_are_bounded_and_the_sum_is_kept():
    metrics = Metrics()
    for port in range(1, 501):
        metrics.inc(DEPTH, port % 3 + 1, runtime="http://127.0.0.1:%d/mrp/v1" % port)
    shown = series(metrics.render_prometheus())
    assert len(shown) == MAX_RUNTIME_SERIES
    assert ('runtime="other"', shown[-1][1]) in shown
    assert sum(int(v) for _, v in shown) == sum(port % 3 + 1 for port in range(1, 501))
    # What the status server copies into its own view stays bounded too.
    view = Metrics()
    for (name, labels), value in metrics.snapshot().items():
        view.set(name, value, **dict(labels))
    assert series(view.render_prometheus()) == shown
