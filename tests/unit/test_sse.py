"""The SSE splitter: every chunking gives the same events, each event once as
(kind, data); hostile streams cost bounded time and memory."""

import json
import random
import time
import tracemalloc

import pytest

from mrmd_monitor.errors import EventError, EventTooLarge
from mrmd_monitor.sse import DEFAULT_MAX_EVENT_BYTES, MrpEvent, SSESplitter
from tests.support.fault_runtime import garbage_stream

MIB = 1024 * 1024


def stream(events, eol="\r\n"):
    out = ""
    for kind, data in events:
        out += "event: %s%sdata: %s%s%s" % (kind, eol, json.dumps(data), eol, eol)
    return out.encode()


def iter_events(chunks, max_event_bytes=DEFAULT_MAX_EVENT_BYTES):
    """Every complete event in ``chunks``, as the MRP client reads them."""
    splitter = SSESplitter(max_event_bytes)
    for chunk in chunks:
        if chunk:
            yield from splitter.feed(chunk)


def chunked(raw, size):
    return [raw[i:i + size] for i in range(0, len(raw), size)]


def parse(raw, size, **kw):
    return [tuple(ev) for ev in iter_events(chunked(raw, size), **kw)]


EVENTS = [("start", {"execId": "e1"}),
          ("stdout", {"content": "héllo 😀\r\n", "accumulated": "héllo 😀\r\n"}),
          ("stderr", {"content": "\x1b[31mwarn\x1b[0m\r\n", "accumulated": "x" * 70000}),
          ("stdout", {"content": "a\nb\"\\", "accumulated": "héllo 😀\r\n" * 3000}),
          ("stdout", {"content": "\\\\\"\\", "accumulated": "\\"}),
          ("result", {"success": True, "stdout": "héllo\r\n" * 100}),
          ("done", {})]
EXPECTED = [(k, {"content": d["content"]} if k in ("stdout", "stderr") else d) for k, d in EVENTS]


@pytest.mark.parametrize("eol", ["\r\n", "\n", "\r"])
@pytest.mark.parametrize("size", [1, 3, 7, 64, 4096, 1 << 20])
def test_every_chunking_gives_the_same_events(eol, size):
    assert parse(stream(EVENTS, eol), size) == EXPECTED


def test_events_are_named_tuples_built_once():
    [ev] = list(iter_events([stream([("stdout", {"content": "x"})])]))
    assert isinstance(ev, MrpEvent) and ev.kind == "stdout" and ev.data == {"content": "x"}
    kind, data = ev
    assert (kind, data) == ("stdout", {"content": "x"})


def test_output_shapes():
    content = "x\r\n😀 \"q\" \\ \ufffd é"
    shapes = [
        json.dumps({"content": content, "accumulated": "old" + content}),
        json.dumps({"accumulated": "zz", "content": content}),
        json.dumps({"content": content, "accumulated": "a"}, separators=(",", ":")),
        json.dumps({"content": content}),
        json.dumps({"seq": 4, "content": content}),
    ]
    for shape in shapes:
        raw = ("event: stdout\r\ndata: %s\r\n\r\n" % shape).encode()
        for size in (1, 5, 1000):
            got = parse(raw, size)
            expect = {"content": content, "seq": 4} if '"seq"' in shape else {"content": content}
            assert got == [("stdout", expect)], (shape, size)
    # Keys other than accumulated are kept; what follows accumulated is skipped with it.
    for shape, expect in (('{"content": "c", "stream": "x"}', {"content": "c", "stream": "x"}),
                          ('{"content": "c", "accumulated": "", "stream": "x"}', {"content": "c"})):
        for size in (2, 1000):
            got = parse(("event: stdout\ndata: %s\n\n" % shape).encode(), size)
            assert got == [("stdout", expect)], (shape, size)
    seq = ('event: stdout\r\ndata: {"seq": 12, "content": "a\\n"}\r\n\r\n' * 2).encode()
    assert parse(seq, 1 << 20) == parse(seq, 3) == [("stdout", {"seq": 12, "content": "a\n"})] * 2
    extra = '{"accumulated": "a", "content": "c", "stream": "x"}'
    assert parse(("event: stdout\ndata: %s\n\n" % extra).encode(), 3) == [
        ("stdout", {"content": "c", "stream": "x"})]


def test_unusual_shapes_take_the_general_path():
    raw = (b"event: stdout\r\ndata: {\"accumulated\": \"x\", \"content\": \"y\"}\r\n\r\n"
           b": a comment\r\n\r\n"
           b"event: stdout\r\ndata: {\"content\": 5}\r\n\r\n"
           b"id: 7\r\nretry: 10\r\nevent: ping\r\ndata: {}\r\n\r\n"
           b"event: multi\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n"
           b"event: nodata\r\n\r\n")
    assert parse(raw, 1) == parse(raw, 1 << 20) == [
        ("stdout", {"content": "y"}), ("stdout", {"content": 5}), ("ping", {}),
        ("multi", {"a": 1})]


@pytest.mark.parametrize("bad,words", [
    (b"event: result\r\ndata: {this is not json\r\n\r\n", "'result' event that is not a JSON"),
    (b"event: stdout\r\ndata: {\"content\": \"hi\", \"acc\r\n\r\n", "'stdout' event"),
    (b"event: result\r\ndata: [1, 2]\r\n\r\n", "not a JSON object (list)"),
    (b"event: result\r\ndata: " + b"[" * 100000 + b"\r\n\r\n", "'result' event"),
])
@pytest.mark.parametrize("size", [1, 9, 1 << 20])
def test_malformed_data_is_refused_after_the_events_before_it(bad, words, size):
    raw = stream(EVENTS[:2]) + bad + stream(EVENTS[-1:])
    got = []
    with pytest.raises(EventError) as info:
        for ev in iter_events(chunked(raw, size)):
            got.append(tuple(ev))
    assert got == EXPECTED[:2]
    assert words in str(info.value)


def test_truncated_stream_ends_without_inventing_events():
    raw = stream(EVENTS[:2]) + b"event: result\r\ndata: {\"succ"
    for size in (1, 5, 1 << 20):
        assert parse(raw, size) == EXPECTED[:2]
    # A complete data line without its blank line is not an event either.
    assert parse(stream(EVENTS[:1]) + b"event: result\ndata: {}\n", 3) == EXPECTED[:1]


def test_lone_surrogates_are_replaced():
    raw = stream([("stdout", {"content": "a\ud800b"}), ("error", {"message": "x\udfff"})])
    assert parse(raw, 4) == [("stdout", {"content": "a?b"}), ("error", {"message": "x?"})]
    # Pairs (emoji) are left alone.
    assert parse(stream([("stdout", {"content": "😀"})]), 4) == [("stdout", {"content": "😀"})]


# -- hostile streams: time and memory ------------------------------------------

def _timed_peak(fn):
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        result = fn()
        took = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, took, peak


def _huge_line(kind, prefix, total, chunk=65536):
    yield ("event: %s\n" % kind).encode() + prefix
    piece = b"x" * chunk
    for _ in range(total // chunk):
        yield piece


@pytest.mark.parametrize("kind,prefix", [("result", b'data: {"stdout": 1'),
                                         ("stdout", b'data: {"content": "'),
                                         ("stdout", b"data: ")])
def test_event_over_the_limit_is_refused_early(kind, prefix):
    """16 MiB on one line: refused once 8 MiB are held, never holding more than
    about twice that while deciding (the old splitter took 7.8 s and 172 MB)."""
    def run():
        with pytest.raises(EventTooLarge) as info:
            list(iter_events(_huge_line(kind, prefix, 16 * MIB), 8 * MIB))
        return info.value
    error, took, peak = _timed_peak(run)
    assert "larger than 8388608 bytes" in str(error) and error.kind == kind
    assert took < 5.0, "took %.2f s (under tracemalloc)" % took
    assert peak < 20 * MIB, "peak %.1f MiB" % (peak / MIB)


def test_big_event_under_the_limit_costs_linear_time():
    size = 16 * MIB
    raw = [b'event: stdout\ndata: {"content": "'] + [b"y" * 65536] * (size // 65536) + [b'"}\n\n']
    t0 = time.perf_counter()
    [ev] = list(iter_events(raw, 64 * MIB))
    took = time.perf_counter() - t0
    assert ev == ("stdout", {"content": "y" * size})
    assert took < 3.0, "a 16 MiB event took %.2f s" % took


def test_result_repeating_a_large_output_is_kept_with_its_strings_cut():
    """A result carries the whole output again as ``stdout`` (mrmd-python, MRP
    0.3.0): 16 MiB of it must not fail a run under an 8 MiB limit. Strings
    over 64 KiB are cut while reading, so only the cut copy is held."""
    out = 'x "quoted" \\ é 😀\r\n' * (16 * MIB // 24)
    html = "<td>\"x\"</td>" * 200000   # 2.6 MB of display data: kept whole
    data = json.dumps({"success": True, "stdout": out, "error": None, "executionCount": 3,
                       "displayData": [{"data": {"text/html": html}, "metadata": {}}]})
    raw = ("event: result\r\ndata: %s\r\n\r\n" % data).encode()

    chunks = chunked(raw, 65536)

    def run():
        return [tuple(e) for e in iter_events(chunks, 8 * MIB)]
    got, took, peak = _timed_peak(run)
    [(kind, result)] = got
    assert kind == "result" and result["success"] is True and result["executionCount"] == 3
    assert result["error"] is None
    assert result["displayData"] == [{"data": {"text/html": html}, "metadata": {}}]
    assert result["stdout"].endswith(" [... cut by mrmd-monitor]")
    assert out.startswith(result["stdout"][:-len(" [... cut by mrmd-monitor]")])
    assert 20000 < len(result["stdout"]) < 70000   # 64 KiB of JSON text, escapes included
    assert peak < 16 * MIB, "peak %.1f MiB" % (peak / MIB)
    assert took < 6, "took %.1f s under tracemalloc" % took


def test_small_events_cost_what_they_carry():
    """4 MB of tiny output events in 64 KiB chunks (the old splitter copied the
    rest of the chunk per event: 5.2 s)."""
    one = b'event: stdout\r\ndata: {"content": "line\\r\\n"}\r\n\r\n'
    raw = one * (4 * MIB // len(one))
    chunks = chunked(raw, 65536)
    t0 = time.perf_counter()
    n = sum(1 for _ in iter_events(chunks))
    took = time.perf_counter() - t0
    assert n == len(raw) // len(one)
    assert took < 2.5, "%d small events took %.2f s" % (n, took)


def test_accumulated_is_skipped_without_being_held():
    """mrmd-python 0.4.2's accumulated output may exceed the event limit: it is
    skipped, never held, so it does not count."""
    acc = b"z" * (20 * MIB)
    head = b'event: stdout\ndata: {"content": "tail\\r\\n", "accumulated": "'
    chunks = [head] + chunked(acc, 65536) + [b'"}\n\n', stream([("done", {})])]

    def run():
        return [tuple(e) for e in iter_events(chunks, 1 * MIB)]
    got, took, peak = _timed_peak(run)
    assert got == [("stdout", {"content": "tail\r\n"}), ("done", {})]
    assert peak < 4 * MIB, "peak %.1f MiB" % (peak / MIB)


def test_seeded_fuzz_is_bounded_and_typed():
    """Random splits, missing newlines, huge fields, invalid UTF-8: every event is
    a (str, dict), every refusal an EventError, and the whole run is quick."""
    t0 = time.perf_counter()
    outcomes = {"clean": 0, "refused": 0}
    for seed in range(150):
        rnd = random.Random(seed)
        splitter = SSESplitter(rnd.choice((64 * 1024, 1 * MIB, 8 * MIB)))
        try:
            for chunk in garbage_stream(seed, "fuzz-%d" % seed):
                for kind, data in splitter.feed(chunk):
                    assert isinstance(kind, str) and isinstance(data, dict)
            outcomes["clean"] += 1
        except EventError:
            outcomes["refused"] += 1
    took = time.perf_counter() - t0
    assert outcomes["clean"] and outcomes["refused"], outcomes
    assert took < 20.0, "fuzzing took %.1f s" % took


def test_cut_strings_keep_the_json_valid():
    """Seeded: random strings (quotes, backslashes, escapes, emoji) cut at any
    length and fed in any split still make valid JSON with the rest intact."""
    from mrmd_monitor.jsonbytes import Elider
    rnd = random.Random(7)
    marker = " [... cut by mrmd-monitor]"
    for _ in range(200):
        obj = {"success": True,
               "stdout": "".join(rnd.choice(['a', '"', '\\', '\n', 'é', '😀', '\x01'])
                                 for _ in range(rnd.randint(0, 5000))),
               "error": None, "x": [1, 'y\\"', {"z": "q" * rnd.randint(0, 700)}],
               "w": "\\" * rnd.randint(0, 600), "stderr": "e" * rnd.randint(0, 2000)}
        raw = json.dumps(obj, ensure_ascii=rnd.random() < 0.5).encode()
        keep = rnd.choice((10, 1000, 65536))
        elider = Elider(keep=keep)
        for piece in chunked(raw, rnd.choice((1, 3, 100, 70000))):
            elider.feed(piece)
        back = json.loads(bytes(elider.out).decode("utf-8", "replace"))
        assert back["success"] is True and back["error"] is None
        assert back["x"] == obj["x"]
        assert back["w"] == obj["w"]   # not an output key: kept whole
        for key in ("stdout",):
            value = back[key]
            if value.endswith(marker):
                # A cut may split a character (U+FFFD) or a surrogate pair escape.
                value = value[:-len(marker)].rstrip("\ufffd\ud800\udbff")
                value = "".join(c for c in value if not 0xD800 <= ord(c) <= 0xDFFF)
                assert obj[key].startswith(value) and len(value) <= keep
            else:
                assert value == obj[key]


def test_cut_strings_without_quotes_keep_the_json_valid():
    """Long strings with no quote in a piece take a shortcut (the parity of
    the piece's trailing backslashes): seeded, any split, backslash runs of
    every length around the 64-byte look-back."""
    from mrmd_monitor.jsonbytes import Elider
    rnd = random.Random(11)
    for _ in range(200):
        stdout = "".join(rnd.choice(["a", "\\" * rnd.randint(1, 70), "\n", "é"])
                         for _ in range(rnd.randint(0, 3000)))
        obj = {"stdout": stdout, "w": "\\" * rnd.randint(0, 200), "after": "ok"}
        raw = json.dumps(obj, ensure_ascii=rnd.random() < 0.5).encode()
        keep = rnd.choice((10, 1000, 65536))
        elider = Elider(keep=keep)
        for piece in chunked(raw, rnd.choice((1, 3, 63, 64, 65, 100, 4096))):
            elider.feed(piece)
        back = json.loads(bytes(elider.out).decode("utf-8", "replace"))
        assert back["w"] == obj["w"] and back["after"] == "ok"
        value = back["stdout"]
        if value != stdout:
            marker = " [... cut by mrmd-monitor]"
            assert value.endswith(marker)
            assert stdout.startswith(value[:-len(marker)].rstrip("\ufffd"))
