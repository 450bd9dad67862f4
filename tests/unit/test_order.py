"""Who runs next on a runtime and session: ours and other monitors' in one
order (requestedAt, notebookOrder, id), and only live monitors count."""

from mrmd_monitor import protocol as p
from mrmd_monitor.order import RunOrder, run_order
from mrmd_monitor.runs import Phase, Run, transition

ME = 7
URL = "http://127.0.0.1:9/mrp/v1"


def run(exec_id, order, session="s"):
    return Run(exec_id=exec_id, runtime_url=URL, session=session, code="x", language="python",
               cell_id=None, requested_at=order[0], order=order + (exec_id,))


def entry(key, **value):
    return p.parse_entry(key, {"runtimeUrl": URL + "/", "session": "s", "code": "x", **value})


def test_ours_and_theirs_in_request_order():
    monitors = {ME, 42}
    order = RunOrder(ME, lambda cid: cid in monitors)
    a, b, c = run("a", (10, 0)), run("b", (20, 1)), run("c", (30, 2), session="other")
    entries = {"t1": entry("t1", status="running", claimedBy=42, requestedAt=5),
               "t2": entry("t2", status="ready", claimedBy=42, requestedAt=25),
               "fake": entry("fake", status="running", claimedBy=3_000_000_000, requestedAt=1),
               "done": entry("done", status="completed", claimedBy=42, requestedAt=1)}
    runs = [a, b, c]
    assert order.ahead(a, runs, entries) == ["t1"]
    assert order.ahead(b, runs, entries) == ["t1", "a"]
    assert order.ahead(c, runs, entries) == []
    transition(a, Phase.DONE, 0.0)
    assert order.ahead(b, runs, entries) == ["t1"]
    # The index of other monitors' runs is rebuilt only when told something changed.
    monitors.discard(42)
    assert order.ahead(b, runs, entries) == ["t1"]
    order.changed()
    assert order.ahead(b, runs, entries) == []


def test_two_monitors_never_wait_for_each_other():
    """Three cells requested in the same millisecond, claimed by two monitors in
    another order than the notebook's (x045 first): every monitor places every
    run by what its claimant wrote (notebookOrder), so the waits of both
    monitors follow one order and never go round in a cycle. With our runs in
    claim order and theirs by id, x043 waited for x045 (ours, claimed first),
    x045 for x044 (theirs, smaller id) and x044 for x043."""
    t = 1_700_000_000_000
    places = {"x043": 10, "x044": 20, "x045": 30}
    claimant = {"x043": ME, "x045": ME, "x044": 42}
    entries = {k: entry(k, status="ready", claimedBy=claimant[k], requestedAt=t,
                        notebookOrder=places[k]) for k in places}
    waits = {}
    for me in (ME, 42):
        order = RunOrder(me, lambda cid: cid in (ME, 42))
        runs = [Run(exec_id=k, runtime_url=URL, session="s", code="x", language="python",
                    cell_id=None, requested_at=t, order=run_order(entries[k]))
                for k in ("x045", "x043", "x044") if claimant[k] == me]   # in claim order
        waits.update({r.exec_id: order.ahead(r, runs, entries) for r in runs})
    assert waits == {"x043": [], "x044": ["x043"], "x045": ["x043", "x044"]}


def test_a_run_taken_over_keeps_the_place_its_claimant_wrote():
    from mrmd_monitor.order import request_order
    t = 1_700_000_000_000
    kept = entry("kept", status="ready", claimedBy=42, requestedAt=t, notebookOrder=0)
    new = entry("new", status="requested", requestedAt=t)
    text = "intro\n\n```python\nx\n```\n"      # the cell of both is at offset 7
    order = request_order([kept, new], lambda: text)
    assert order(kept) == (t, 0, "kept")        # 0 as written, not looked up again
    assert order(new) == (t, 7, "new")
