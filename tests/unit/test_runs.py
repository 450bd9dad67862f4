"""The run state machine: one checked transition, and the timers it exposes."""

import pytest

from mrmd_monitor import protocol as p
from mrmd_monitor.metrics import Metrics
from mrmd_monitor.runs import (UNSTARTED, IllegalMove, Phase, Run, begin, next_deadline,
                               transition)


def run(**kw):
    return Run(exec_id="e1", runtime_url="http://127.0.0.1:9", session="s", code="x",
               language="python", cell_id=None, **kw)


def test_every_phase_is_in_the_protocol_table():
    assert {ph.value for ph in Phase} == set(p.RUN_MOVES)


def test_legal_path_and_illegal_moves():
    r = run()
    for to, now in [(Phase.WAITING_BLOCK, 1.0), (Phase.WAITING_TURN, 2.0), (Phase.QUEUED, 3.0),
                    (Phase.DISPATCHED, 3.5), (Phase.RUNNING, 4.0), (Phase.DONE, 5.0)]:
        transition(r, to, now)
        assert r.phase is to and r.since == now
    with pytest.raises(IllegalMove):
        transition(r, Phase.RUNNING, 6.0)
    r2 = run()
    with pytest.raises(IllegalMove):
        transition(r2, Phase.RUNNING, 1.0)   # never started without the pool
    assert r2.phase is Phase.CLAIMED
    assert Phase.DISPATCHED not in UNSTARTED   # it may be running: never handed back


def test_phase_gauges_move_with_the_transitions():
    metrics = Metrics()
    a, b = run(), run()
    begin(a, metrics)
    begin(b, metrics)
    assert metrics.get("mrmd_monitor_queued_runs") == 2
    for to in (Phase.WAITING_TURN, Phase.QUEUED, Phase.DISPATCHED, Phase.RUNNING):
        transition(a, to, 1.0, metrics=metrics)
    assert metrics.get("mrmd_monitor_queued_runs") == 1
    assert metrics.get("mrmd_monitor_active_runs") == 1
    transition(a, Phase.DONE, 2.0, metrics=metrics, status="completed")
    transition(b, Phase.DONE, 2.0, metrics=metrics)
    assert metrics.get("mrmd_monitor_queued_runs") == 0
    assert metrics.get("mrmd_monitor_active_runs") == 0
    assert metrics.get("mrmd_monitor_queue_depth", runtime=a.runtime_url) == 0
    assert metrics.get("mrmd_monitor_executions_total", status="completed") == 1


def test_next_deadline_is_the_block_wait():
    r = run(block_deadline=10.0)
    assert r.next_deadline() is None            # claimed: claims.py keeps that timer
    transition(r, Phase.WAITING_BLOCK, 3.0)
    assert r.next_deadline() == 10.0
    other = run(block_deadline=1.0)
    assert next_deadline([r, other], now=2.0) == 8.0   # a claimed run's block wait is not a timer
    assert next_deadline([], now=2.0) is None
    assert next_deadline([r], now=12.0) == 0.0
