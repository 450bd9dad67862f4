import json

import pytest

from mrmd_monitor.sse import iter_events


def stream(events, eol="\r\n"):
    out = ""
    for kind, data in events:
        out += "event: %s%sdata: %s%s%s" % (kind, eol, json.dumps(data), eol, eol)
    return out.encode()


def parse(raw, size):
    chunks = [raw[i:i + size] for i in range(0, len(raw), size)]
    got = []
    for ev in iter_events(chunks):
        got.append((ev.event, ev.parsed if ev.parsed is not None else json.loads(ev.data)))
    return got


EVENTS = [("start", {"execId": "e1"}),
          ("stdout", {"content": "héllo 😀\r\n", "accumulated": "héllo 😀\r\n"}),
          ("stderr", {"content": "\x1b[31mwarn\x1b[0m\r\n", "accumulated": "x" * 70000}),
          ("stdout", {"content": "a\nb\"\\", "accumulated": "héllo 😀\r\n" * 3000}),
          ("result", {"success": True, "stdout": "héllo\r\n" * 100}),
          ("done", {})]


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
@pytest.mark.parametrize("size", [3, 7, 64, 4096, 1 << 20])
def test_every_chunking_gives_the_same_events(eol, size):
    got = parse(stream(EVENTS, eol), size)
    expect = [(k, {"content": d["content"]} if k in ("stdout", "stderr") else d)
              for k, d in EVENTS]
    assert got == expect


def test_byte_by_byte():
    small = [(k, dict(d, accumulated="acc") if "accumulated" in d else d) for k, d in EVENTS]
    got = parse(stream(small), 1)
    assert [k for k, _ in got] == [k for k, _ in small]
    assert got[1] == ("stdout", {"content": "héllo 😀\r\n"})


def test_unusual_shapes_take_the_general_path():
    raw = (b"event: stdout\r\ndata: {\"accumulated\": \"x\", \"content\": \"y\"}\r\n\r\n"
           b": a comment\r\n\r\n"
           b"event: stdout\r\ndata: {\"content\": 5}\r\n\r\n"
           b"event: ping\r\ndata: {}\r\n\r\n")
    got = [(e.event, e.parsed, e.data) for e in iter_events([raw])]
    assert got[0] == ("stdout", None, '{"accumulated": "x", "content": "y"}')
    assert got[1] == ("stdout", None, '{"content": 5}')
    assert got[2] == ("ping", None, "{}")


def test_malformed_data_is_passed_on_for_the_caller_to_refuse():
    raw = b"event: stdout\r\ndata: {this is not json\r\n\r\n"
    [ev] = list(iter_events([raw]))
    assert ev.event == "stdout" and ev.parsed is None and ev.data == "{this is not json"


def test_truncated_stream_ends_without_inventing_events():
    raw = stream(EVENTS[:2]) + b"event: result\r\ndata: {\"succ"
    got = [(e.event) for e in iter_events([raw])]
    assert got[:2] == ["start", "stdout"]
