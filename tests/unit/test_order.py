"""Who runs next on a runtime and session: ours in claim order, other
monitors' in request order, and only live monitors count."""

from mrmd_monitor import protocol as p
from mrmd_monitor.order import RunOrder
from mrmd_monitor.runs import Phase, Run, transition

ME = 7
URL = "http://127.0.0.1:9/mrp/v1"


def run(exec_id, order, session="s"):
    return Run(exec_id=exec_id, runtime_url=URL, session=session, code="x", language="python",
               cell_id=None, requested_at=order[0], order=order)


def entry(key, **value):
    return p.parse_entry(key, {"runtimeUrl": URL + "/", "session": "s", "code": "x", **value})


def test_ours_in_claim_order_and_theirs_in_request_order():
    monitors = {ME, 42}
    order = RunOrder(ME, lambda cid: cid in monitors)
    a, b, c = run("a", (10, 0)), run("b", (20, 1)), run("c", (30, 2), session="other")
    entries = {"t1": entry("t1", status="running", claimedBy=42, requestedAt=5),
               "t2": entry("t2", status="ready", claimedBy=42, requestedAt=25),
               "fake": entry("fake", status="running", claimedBy=3_000_000_000, requestedAt=1),
               "done": entry("done", status="completed", claimedBy=42, requestedAt=1)}
    runs = [a, b, c]
    assert order.ahead(a, runs, entries) == ["t1"]
    assert order.ahead(b, runs, entries) == ["a", "t1"]
    assert order.ahead(c, runs, entries) == []
    transition(a, Phase.DONE, 0.0)
    assert order.ahead(b, runs, entries) == ["t1"]
    # The index of other monitors' runs is rebuilt only when told something changed.
    monitors.discard(42)
    assert order.ahead(b, runs, entries) == ["t1"]
    order.changed()
    assert order.ahead(b, runs, entries) == []
