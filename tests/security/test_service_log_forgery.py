"""Hostile input in the logs: text a peer or a runtime wrote cannot forge a log
line, and the sync token or a URL password never reaches a log in any form.

The formatter tests go through ``setup_logging`` and the real ``logging``
machinery; the end-to-end test has a browser write hostile entries and reads
the monitor's stderr.
"""

import json
import logging
import re
from urllib.parse import quote, quote_plus

import pytest

from mrmd_monitor import logs
from mrmd_monitor.config import describe, load_config

URL = "ws://127.0.0.1:1"
# A text log line as our formatter starts it: "2026-11-29 17:01:02,345 INFO    [..."
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
FORGED = "2026-01-01 00:00:00,000 INFO    [MainThread] mrmd_monitor.daemon: forged"
TOKEN = "s3cr/t+tok=en&x y"


@pytest.fixture
def text_log(tmp_path, restore_logging):
    """setup_logging to a file; returns a function that reads its lines."""
    path = tmp_path / "monitor.log"

    def start(*args, url=URL):
        logs.setup_logging(load_config([url, "--log-file", str(path), *args], env={}))
        return lambda: path.read_text(encoding="utf-8").splitlines()

    return start


def test_a_session_with_a_newline_stays_on_its_log_line(text_log):
    lines = text_log()
    log = logging.getLogger("mrmd_monitor.coordinator")
    log.info("claimed %s (runtime %s, session %s)", "e1", "http://127.0.0.1:1/mrp/v1",
             "a\nINFO forged")
    log.warning("cannot run %s: %s", "e2\r\n" + FORGED, "bad\x1b[2Jurl\u2028" + FORGED)
    got = lines()
    assert len(got) == 2, got
    assert all(RECORD_START.match(line) for line in got), got
    assert got[0].endswith("claimed e1 (runtime http://127.0.0.1:1/mrp/v1, session a\\nINFO forged)")
    assert "e2\\r\\n2026-01-01" in got[1] and "bad\\x1b[2Jurl\\u2028" in got[1]


def test_an_exception_text_from_outside_cannot_start_a_line(text_log):
    lines = text_log()
    log = logging.getLogger("mrmd_monitor.workers")
    try:
        try:
            raise KeyError("inner\n" + FORGED)
        except KeyError as inner:
            raise RuntimeError("the runtime said: boom\n" + FORGED) from inner
    except RuntimeError:
        log.exception("run %s failed", "e3")
    got = lines()
    starts = [line for line in got if RECORD_START.match(line)]
    assert len(starts) == 1 and starts[0].endswith("run e3 failed"), got
    assert any(line == "RuntimeError: the runtime said: boom\\n" + FORGED for line in got), got
    assert "The above exception was the direct cause of the following exception:" in got
    assert not any("forged" in line and not line.startswith(("RuntimeError", "KeyError"))
                   for line in got), got


def test_a_thread_named_after_a_document_is_escaped(text_log):
    import threading

    lines = text_log()
    thread = threading.Thread(target=lambda: logging.getLogger("mrmd_monitor.sync").info("synced"),
                              name="sync:evil\n" + FORGED)
    thread.start()
    thread.join()
    got = lines()
    assert len(got) == 1 and "[sync:evil\\n2026-01-01" in got[0], got


@pytest.mark.parametrize("form", [
    TOKEN,
    quote(TOKEN, safe=""),
    quote(TOKEN),
    quote_plus(TOKEN),
    quote(TOKEN, safe="").lower(),
    json.dumps(TOKEN),
])
def test_the_token_is_masked_in_every_form(text_log, form):
    lines = text_log("--token", TOKEN)
    log = logging.getLogger("mrmd_monitor.sync")
    log.warning("cannot connect to ws://127.0.0.1:1/doc?token=%s: %s", form, "refused")
    try:
        raise OSError("handshake to ws://127.0.0.1:1/doc?x=1&token=%s failed (%s)" % (form, form))
    except OSError as exc:
        log.warning("lost connection: %s", exc)
        log.exception("sync thread crashed")
    text = "\n".join(lines())
    for spelling in (TOKEN, quote(TOKEN, safe=""), quote_plus(TOKEN), form):
        assert spelling not in text, spelling
    assert "***" in text


def test_a_url_password_and_a_bearer_header_are_masked_without_being_configured(text_log):
    lines = text_log()
    log = logging.getLogger("mrmd_monitor.sync")
    log.error("cannot reach %s with %s", "wss://bob:hunter%2F2@sync.example.org/doc",
              "Authorization: Bearer abcdef123456")
    text = "\n".join(lines())
    assert "hunter" not in text and "abcdef123456" not in text
    assert "wss://bob:***@sync.example.org/doc" in text and "Bearer ***" in text


def test_the_sync_url_password_is_a_secret_everywhere(text_log):
    lines = text_log(url="wss://bob:pa%24%24word@sync.example.org")
    logging.getLogger("mrmd_monitor.sync").error("the server said: bad password pa$$word")
    text = "\n".join(lines())
    assert "pa$$word" not in text and "pa%24%24word" not in text


def test_json_lines_mask_and_stay_one_line(tmp_path, restore_logging):
    path = tmp_path / "monitor.json"
    logs.setup_logging(load_config([URL, "--log-format", "json", "--log-file", str(path),
                                    "--token", TOKEN], env={}))
    log = logging.getLogger("mrmd_monitor.coordinator")
    log.info("claimed %s (session %s)", "e1", "a\u2028b\x85c\nd", extra={"doc": "d\u2029x"})
    log.info("token %s", quote(TOKEN, safe=""))
    raw = path.read_text(encoding="utf-8")
    assert len(raw.splitlines()) == 2  # str.splitlines also splits at U+2028, U+2029, U+0085
    first, second = (json.loads(line) for line in raw.split("\n") if line)
    assert first["message"] == "claimed e1 (session a\u2028b\x85c\nd)"  # the value itself is intact
    assert first["doc"] == "d\u2029x"
    assert "***" in second["message"] and quote(TOKEN, safe="") not in raw


def test_the_start_line_masks_a_quoted_token_in_the_sync_url():
    config = load_config(["ws://127.0.0.1:1/?token=%s" % quote(TOKEN, safe="")],
                         env={"MRMD_MONITOR_TOKEN": TOKEN})
    line = describe(config)
    assert quote(TOKEN, safe="") not in line and TOKEN not in line
    assert "token=*** (environment MRMD_MONITOR_TOKEN)" in line


@pytest.mark.e2e
def test_hostile_entries_do_not_forge_monitor_log_lines(sync_server, doc_name, peer_factory,
                                                        monitor_factory, faults):
    token = "tok/" + "é+&="
    monitor = monitor_factory(sync_server.url, doc_name, env={"MRMD_MONITOR_TOKEN": token})
    browser = peer_factory(sync_server.url, doc_name)
    browser.request("ok-1", '{"fault": "ok"}', faults.url, session="a\n" + FORGED)
    browser.request("bad\n" + FORGED, "print(1)", "http://192.0.2.1:1/mrp/v1\n" + FORGED)
    browser.wait_entry("ok-1", ("completed", "error"), timeout=30)
    browser.wait_entry("bad\n" + FORGED, ("error",), timeout=30)
    monitor.wait_for_line("session a\\n2026-01-01", timeout=10)
    lines = monitor.lines("stderr")
    records = [line for line in lines if RECORD_START.match(line)]
    assert not any(line.startswith(FORGED) for line in lines), lines
    assert any("bad\\n2026-01-01" in line for line in records)
    text = "\n".join(lines)
    assert token not in text and quote(token, safe="") not in text
