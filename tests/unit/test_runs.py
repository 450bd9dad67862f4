"""The run state machine: one checked transition, and the timers it exposes."""

import pytest

from mrmd_monitor import protocol as p
from mrmd_monitor.runs import IllegalMove, Phase, Run, next_deadline, transition


def run(**kw):
    return Run(exec_id="e1", runtime_url="http://127.0.0.1:9", session="s", code="x",
               language="python", cell_id=None, **kw)


def test_every_phase_is_in_the_protocol_table():
    assert {ph.value for ph in Phase} == set(p.RUN_MOVES)


def test_legal_path_and_illegal_moves():
    r = run()
    for to, now in [(Phase.WAITING_BLOCK, 1.0), (Phase.WAITING_TURN, 2.0), (Phase.QUEUED, 3.0),
                    (Phase.RUNNING, 4.0), (Phase.DONE, 5.0)]:
        transition(r, to, now)
        assert r.phase is to and r.since == now
    with pytest.raises(IllegalMove):
        transition(r, Phase.RUNNING, 6.0)
    r2 = run()
    with pytest.raises(IllegalMove):
        transition(r2, Phase.RUNNING, 1.0)   # never started without the pool
    assert r2.phase is Phase.CLAIMED


def test_next_deadline_follows_the_phase():
    r = run(block_deadline=10.0)
    assert r.next_deadline() is None            # claimed, probe not answered
    r.confirm_at = 3.0
    assert r.next_deadline() == 3.0
    transition(r, Phase.WAITING_BLOCK, 3.0)
    assert r.next_deadline() == 10.0
    r.pending, r.next_flush = True, 4.5
    assert r.next_deadline() == 4.5
    other = run(block_deadline=1.0)
    assert next_deadline([r, other], now=2.0) == 2.5   # a claimed run's block wait is not a timer
    assert next_deadline([], now=2.0) is None
    r.next_flush = 1.0
    assert next_deadline([r], now=2.0) == 0.0
