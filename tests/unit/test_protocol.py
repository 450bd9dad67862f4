"""protocol.py: reading entries any peer may write (validation without
recursion, the limits on depth, size and code), the moves the monitor may
make, and what a runtime's result and error may put into an entry."""

import json

import pytest

from mrmd_monitor import protocol as p
from mrmd_monitor.errors import EntryRefused, IllegalTransition

RUNTIME = "http://127.0.0.1:8000/mrp/v1"


def request(**fields):
    """An entry as the mrmd editor writes it (numbers read back as floats)."""
    entry = {"id": "e1", "cellId": "c1", "code": "print(1)", "language": "python",
             "runtimeUrl": RUNTIME, "status": "requested", "requestedBy": 2140036872.0,
             "requestedAt": 1764400000000.0, "claimedBy": None, "outputBlockReady": False,
             "stdinResponse": None, "displayData": []}
    entry.update(fields)
    return entry


def nested(depth, leaf="x"):
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


# ---------------------------------------------------------------- reading an entry


def test_an_editor_request_reads_with_integers_and_defaults():
    entry = p.parse_entry("e1", request())
    assert entry.status == p.REQUESTED and not entry.final
    assert entry.requested_by == 2140036872 and isinstance(entry.requested_by, int)
    assert entry.requested_at == 1764400000000
    assert entry.claimed_by is None and entry.dispatched_at is None
    assert (entry.session, entry.language, entry.cell_id) == ("default", "python", "c1")
    assert entry.output_block_ready is False and entry.problem is None
    assert p.runnable_problem(entry) is None


@pytest.mark.parametrize("exec_id, value", [
    ("e1", "requested"), ("e1", ["requested"]), (7, request()),
    ("e1", request(status="queued")), ("e1", request(status=None))])
def test_what_is_not_an_entry_is_ignored(exec_id, value):
    assert p.parse_entry(exec_id, value) is None


def test_fields_of_the_wrong_type_read_as_absent():
    entry = p.parse_entry("e1", request(code=["print(1)"], runtimeUrl=5, session="",
                                        requestedAt="yesterday", claimedBy=True,
                                        outputBlockReady="yes", dispatchedAt=float("nan"),
                                        stdinResponse={"text": 42}))
    assert entry.code is None and entry.runtime_url is None and entry.session == "default"
    assert entry.requested_at is None and entry.claimed_by is None and entry.dispatched_at is None
    assert entry.output_block_ready is False and entry.stdin_response_text is None
    assert p.runnable_problem(entry) == "the request has no code"


def test_a_stdin_answer_is_read_from_its_text():
    entry = p.parse_entry("e1", request(status="running",
                                        stdinResponse={"text": "Ada\n", "respondedAt": 1.0}))
    assert entry.stdin_response_text == "Ada\n"


@pytest.mark.parametrize("fields, problem", [
    ({"code": None}, "the request has no code"),
    ({"runtimeUrl": ""}, "the request has no runtimeUrl"),
    ({"runtimeUrl": "file:///etc/passwd"}, "runtimeUrl must be an http:// or https:// URL"),
])
def test_a_request_that_cannot_run_says_why(fields, problem):
    assert p.runnable_problem(p.parse_entry("e1", request(**fields))) == problem


@pytest.mark.parametrize("exec_id", ["a`b", "a\nb", "   "])
def test_an_id_that_cannot_mark_a_block_is_not_run(exec_id):
    problem = p.runnable_problem(p.parse_entry(exec_id, request()))
    assert problem == "the execution id cannot be used as an output block marker"


# ---------------------------------------------------------------- limits


def test_code_is_limited_in_utf8_bytes_not_characters():
    assert not p.code_too_large("x" * p.MAX_CODE_BYTES)
    assert p.code_too_large("x" * (p.MAX_CODE_BYTES + 1))
    cjk = "中" * (p.MAX_CODE_BYTES // 3 + 1)   # fewer characters than the limit, more bytes
    assert len(cjk) < p.MAX_CODE_BYTES and p.code_too_large(cjk)
    problem = p.runnable_problem(p.parse_entry("e1", request(code=cjk)))
    assert problem == "the code is larger than %d bytes (UTF-8)" % p.MAX_CODE_BYTES


def test_an_entry_nested_deeper_than_the_limit_is_a_problem_not_a_crash():
    entry = p.parse_entry("e1", request(extra=nested(100_000)))   # far past Python's recursion
    assert entry.problem == "the entry is nested deeper than %d levels" % p.MAX_DEPTH
    assert p.runnable_problem(entry) == entry.problem
    ok = p.parse_entry("e1", request(extra=nested(p.MAX_DEPTH - 2)))
    assert ok.problem is None


def test_an_entry_over_the_size_limit_is_a_problem():
    entry = p.parse_entry("e1", request(displayData=["x" * 4096] * 300))
    assert entry.problem == "the entry is larger than %d bytes" % p.MAX_ENTRY_BYTES
    assert p.runnable_problem(entry) == entry.problem


def test_measure_approximates_the_json_size_and_stops_at_the_first_broken_limit():
    value = {"code": "é" * 100, "list": [1, 2.5, None, True], "nested": {"k": "v"}}
    problem, size = p.measure(value)
    assert problem is None
    assert abs(size - len(json.dumps(value, ensure_ascii=False).encode())) < 64
    problem, size = p.measure(["x" * 1000] * 10_000, max_bytes=5000)   # 10 MB in all
    assert problem == "larger than 5000 bytes" and size < 20_000     # stopped early


def test_a_refused_entry_keeps_what_fits_and_ends_in_error():
    raw = request(code="y = 1\n" * 100_000, extra=nested(1000), requestedAt=5.0)
    out = p.refused_entry(raw, "the entry is nested deeper than 32 levels", now_ms=99)
    assert out["status"] == p.ERROR and out["completedAt"] == 99
    assert out["error"] == {"type": "InvalidRequest", "traceback": [],
                            "message": "the entry is nested deeper than 32 levels; not run"}
    assert out["extra"] is None
    assert out["code"].endswith("# ... (cut by mrmd-monitor)") and len(out["code"]) < 1100
    assert out["requestedAt"] == 5 and isinstance(out["requestedAt"], int)
    assert out["cellId"] == "c1"
    assert p.measure(out)[0] is None


# ---------------------------------------------------------------- moves and values


@pytest.mark.parametrize("old, new", [
    (p.REQUESTED, p.CLAIMED), (p.CLAIMED, p.CLAIMED), (p.CLAIMED, p.REQUESTED),
    (p.READY, p.RUNNING), (p.RUNNING, p.COMPLETED), (p.RUNNING, p.ERROR)])
def test_moves_the_monitor_may_make(old, new):
    p.check_transition(old, new)


@pytest.mark.parametrize("old, new", [
    (p.REQUESTED, p.RUNNING), (p.RUNNING, p.REQUESTED), (p.COMPLETED, p.RUNNING),
    (p.CANCELLED, p.COMPLETED), (p.ERROR, p.CLAIMED), (p.REQUESTED, p.CANCELLED)])
def test_moves_the_monitor_may_not_make(old, new):
    with pytest.raises(IllegalTransition):
        p.check_transition(old, new)


def test_whole_floats_become_integers_again_at_any_depth():
    value = {"a": 1.0, "b": [2.0, 2.5, {"c": -3.0}], "d": float(2 ** 53), "e": True}
    cleaned = p.clean(value)
    assert cleaned == {"a": 1, "b": [2, 2.5, {"c": -3}], "d": float(2 ** 53), "e": True}
    assert type(cleaned["a"]) is int and type(cleaned["b"][2]["c"]) is int
    assert type(cleaned["d"]) is float   # past 2**53 a float is not an exact integer
    with pytest.raises(EntryRefused):
        p.clean(nested(p.MAX_DEPTH + 5))


@pytest.mark.parametrize("value, expected", [
    (3.0, 3), (7, 7), (True, None), ("3", None), (float("inf"), None), (float("nan"), None)])
def test_as_int(value, expected):
    assert p.as_int(value) == expected


def test_a_result_keeps_its_summary_without_the_output():
    result = {"success": True, "stdout": "x" * 1000, "stderr": "", "accumulated": "x",
              "displayData": [{}], "assets": [{}], "executionCount": 3.0, "duration": 12}
    assert p.slim_result(result) == {"success": True, "executionCount": 3.0, "duration": 12}


def test_a_result_past_the_limits_is_replaced_by_a_note():
    slim = p.slim_result({"success": False, "imports": nested(100)})
    assert slim == {"success": False,
                    "omitted": "the runtime's result was nested deeper than %d levels"
                               % p.MAX_RESULT_DEPTH}
    slim = p.slim_result({"success": "yes", "blob": "x" * (p.MAX_RESULT_BYTES + 1)})
    assert slim["success"] is None and "larger than" in slim["omitted"]


def test_a_runtime_error_is_bounded_and_keeps_the_last_traceback_lines():
    err = {"type": "ValueError", "message": "m" * 20_000,
           "traceback": ["frame %d " % i + "t" * 3000 for i in range(200)]}
    out = p.bounded_error(err)
    assert out["type"] == "ValueError" and len(out["message"]) == 8000
    assert p.measure(out, p.MAX_RESULT_DEPTH, p.MAX_RESULT_BYTES)[0] is None
    assert out["traceback"] and out["traceback"][-1].startswith("frame 199 ")
    assert p.bounded_error("boom") == {"type": "Error", "message": "boom", "traceback": []}


def test_runtime_urls_outside_the_allowlist_are_refused():
    loopback = ("localhost", "127.0.0.0/8", "::1")
    assert p.runtime_refused(RUNTIME, loopback) is None
    assert p.runtime_refused("http://10.1.2.3:8000/mrp/v1", loopback)
    assert p.runtime_refused("http://user:pw@127.0.0.1:8000/", loopback)
