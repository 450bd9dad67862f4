"""logs.py: the per-document / per-run logger, escaping and masking helpers."""

import json
import logging

from mrmd_monitor import logs
from mrmd_monitor.config import load_config
from mrmd_monitor.redact import escape, forms, mask, url_secrets


def test_context_adds_doc_and_exec_id_to_json_lines(tmp_path, restore_logging):
    path = tmp_path / "m.json"
    logs.setup_logging(load_config(["ws://127.0.0.1:1", "--log-format", "json",
                                    "--log-file", str(path)], env={}))
    doc_log = logs.context(logging.getLogger("mrmd_monitor.sync"), doc="a.md")
    run_log = doc_log.bind(exec_id="e1")
    doc_log.info("synced")
    run_log.info("%s running", "e1")
    run_log.info("override", extra={"exec_id": "e2"})
    first, second, third = (json.loads(line) for line in path.read_text().splitlines())
    assert first["doc"] == "a.md" and "exec_id" not in first
    assert (second["doc"], second["exec_id"], second["message"]) == ("a.md", "e1", "e1 running")
    assert third["exec_id"] == "e2"
    assert logs.context(run_log, doc="b.md").extra == {"doc": "b.md", "exec_id": "e1"}


def test_escape_keeps_printable_text_and_shows_controls():
    assert escape("plain é 中 😀") == "plain é 中 😀"
    assert escape("a\nb\rc\td\x00e\x1bf\x7fg\x9bh\u2028i\u202ej") == \
        "a\\nb\\rc\\td\\x00e\\x1bf\\x7fg\\x9bh\\u2028i\\u202ej"


def test_mask_every_form_and_nothing_else():
    secret = "p@ss w/rd+1"
    for form in forms(secret):
        assert mask("x %s y" % form, [secret]) == "x *** y"
    assert mask("nothing secret here", [secret]) == "nothing secret here"
    assert mask("http://127.0.0.1:8080/a@b", []) == "http://127.0.0.1:8080/a@b"  # a port is no password
    assert mask("ws://h/doc?room=1&token=abc&x=2", []) == "ws://h/doc?room=1&token=***&x=2"
    assert url_secrets("wss://u:p%40w@h/?token=t%2F1") == ["p%40w", "p@w", "t%2F1", "t/1"]


def test_odd_records_still_format_on_one_line(tmp_path, restore_logging):
    from decimal import Decimal

    path = tmp_path / "m.log"
    logs.setup_logging(load_config(["ws://127.0.0.1:1", "--log-file", str(path)], env={}))
    log = logging.getLogger("mrmd_monitor.odd")
    log.warning("%d items", Decimal(3))               # a number type the escaping wraps
    log.warning("%(a)s and %(b)d", {"a": "x\ny", "b": 2})  # mapping arguments
    log.warning(ValueError("v\nw"))                  # a message that is not a string
    lines = path.read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["3 items", "x\\ny and 2", "v\\nw"]


def test_masking_never_breaks_a_json_line(tmp_path, restore_logging):
    path = tmp_path / "m.json"
    logs.setup_logging(load_config(["ws://127.0.0.1:1", "--log-format", "json",
                                    "--log-file", str(path), "--token", 'q"t\\k\\'], env={}))
    log = logging.getLogger("mrmd_monitor.odd")
    for text in ('ws://h/?token=abc"x', 'Bearer abc"def', 'http://u:p"w@h/', 'http://u:p\\w@h/',
                 'token q"t\\k\\', 'a "?key=v\\" b', 'q"t\\k\\\\" end'):
        log.warning("%s", text, extra={"doc": text})
    for line in path.read_text().splitlines():
        record = json.loads(line)  # still valid JSON
        assert 'q"t\\k' not in record["message"] and "q\\\"t" not in line


def _json_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_runs_lines_carry_doc_and_exec_id_from_claim_to_runtime(tmp_path, restore_logging):
    """The sync thread's lines about a run, and the pool's and the MRP
    client's, all name the document and the run in --log-format json."""
    from mrmd_monitor import messages as m
    from mrmd_monitor.coordinator import Coordinator
    from mrmd_monitor.display import DisplayConverter
    from mrmd_monitor.mrp import MrpClient
    from mrmd_monitor.runner import Runner
    from mrmd_monitor.messages import RunJob
    from tests.unit.test_coordinator import CELL, ME, World

    path = tmp_path / "m.json"
    logs.setup_logging(load_config(["ws://127.0.0.1:1", "--log-format", "json",
                                    "--log-file", str(path)], env={}))
    w = World()
    # The World's coordinator has no document name: the same one, named.
    w.co = Coordinator(w.mon, me=ME, pool=w.pool, post=w.posted.append, config=w.co.config,
                       port=w.port, clock=w.clock, now_ms=w.co.now_ms, doc_name="notes/a.md")
    w.br_text += CELL
    w.to_monitor()
    w.start_run("e1")
    w.co.on_message(m.RunFinished("e1", result={"success": True}))

    # The pool side: an interrupt the runtime cannot take (nothing listens on port 9).
    job = RunJob(exec_id="e1", runtime_url="http://127.0.0.1:9/mrp/v1", session="s",
                 code="x", post=lambda msg: None, doc="notes/a.md")
    client = MrpClient(connect_timeout=2, request_timeout=2)
    try:
        Runner(client, DisplayConverter(1 << 20)).interrupt(job)
    finally:
        client.close()

    lines = {(r["logger"], r["message"]): r for r in _json_lines(path)}
    for logger, message in [
            ("mrmd_monitor.coordinator", "claimed e1 (runtime http://127.0.0.1:9/mrp/v1, session s)"),
            ("mrmd_monitor.coordinator", "e1 running"),
            ("mrmd_monitor.coordinator", "e1 completed")]:
        record = lines[(logger, message)]
        assert (record["doc"], record["exec_id"]) == ("notes/a.md", "e1"), record
    mrp = [r for (logger, msg), r in lines.items()
           if logger == "mrmd_monitor.mrp" and msg.startswith("interrupt of e1 failed")]
    assert mrp and (mrp[0]["doc"], mrp[0]["exec_id"]) == ("notes/a.md", "e1")
    assert mrp[0]["level"] == "warning"


def _longest_line_bytes(text):
    return max(len(line.encode("utf-8")) for line in text.splitlines())


def test_a_huge_peer_value_never_makes_a_line_a_launcher_cannot_read(tmp_path, restore_logging):
    # mrmd 0.10.1 reads the monitor's output with asyncio's 64 KiB line limit: one
    # longer line and it stops reading the pipe (and never stops the monitor).
    secret = "s3cr3t-token"
    for fmt in ("text", "json"):
        path = tmp_path / ("m." + fmt)
        logs.setup_logging(load_config(["ws://127.0.0.1:1", "--log-format", fmt,
                                        "--log-file", str(path), "--token", secret], env={}))
        huge_id = "e" * 70_000
        log = logs.context(logging.getLogger("mrmd_monitor.coordinator"), doc="d" * 70_000)
        log.bind(exec_id=huge_id).warning("refused %s: %s", huge_id, "\x01" * 70_000)
        log.warning(f"f-string {huge_id} {secret} " + "中" * 70_000)
        try:
            raise ValueError("x" * 200_000)
        except ValueError:
            log.exception("failed %s", "😀" * 70_000)
        text = path.read_text(encoding="utf-8")
        assert _longest_line_bytes(text) < 60_000, fmt
        assert "characters cut" in text and secret not in text, fmt
        assert "f-string eeee" in text, fmt  # the head of each line stays
