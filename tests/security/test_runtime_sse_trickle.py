"""An output event trickled in tiny reads costs what it carries.

A runtime may send a huge ``content`` string a few bytes at a time. The
splitter looks for the end of the string while the line is still arriving
(so that it can stop holding the line as soon as it has the content); each
read must only look at the bytes it brought, or a 4 MiB string in 24-byte
reads makes the monitor rescan the line 170,000 times.

Cost is counted as the bytes the splitter examines in partial lines
(``SSESplitter.scanned``), not timed: a timed assertion flakes under load.
"""

import pytest

from mrmd_monitor.sse import SSESplitter

MIB = 1024 * 1024
READ = 24


def trickle(body, read=READ):
    splitter = SSESplitter(16 * MIB)
    events = []
    for i in range(0, len(body), read):
        events.extend(splitter.feed(body[i:i + read]))
    return splitter, events


def shapes(n):
    x = b"x" * n
    return {
        "plain": b'event: stdout\ndata: {"content": "' + x + b'"}\n\n',
        # Spaces after the string: while they came, each read decoded the
        # whole line again (the audit's 4 MiB string cost 4.5 s of CPU).
        "spaces after": b'event: stdout\ndata: {"content": "ab"' + b" " * (n // 16) + b"}\n\n",
        "string then spaces": b'event: stdout\ndata: {"content": "' + b"x" * (n // 2 - 200) +
                              b'"' + b" " * (n // 64) + b"}\n\n",
        # an escape cut by every read edge
        "escapes": b'event: stderr\r\ndata: {"content": "' + b'\\\\\\"' * (n // 4) +
                   b'", "accumulated": "zz"}\r\n\r\n',
        "backslashes": b'event: stdout\ndata: {"content": "' + b"\\\\" * (n // 2) + b'"}\n\n',
    }


@pytest.mark.parametrize("shape", sorted(shapes(8)))
def test_a_trickled_output_line_is_scanned_once(shape):
    body = shapes(4 * MIB)[shape]
    splitter, events = trickle(body)
    assert [e.kind for e in events] in (["stdout"], ["stderr"])
    assert len(events[0].data["content"]) in (2, 4 * MIB, 2 * MIB - 200, 2 * MIB, 3 * MIB)
    # Each byte is looked at a small number of times, whatever the read size.
    assert splitter.scanned <= 2 * len(body), (shape, splitter.scanned, len(body))


def test_cost_grows_with_the_size_not_its_square():
    def cost(n):
        return trickle(shapes(n)["spaces after"])[0].scanned
    small, large = cost(MIB // 4), cost(MIB)
    assert large <= 5 * small, (small, large)


def test_the_content_is_the_same_whatever_the_read_size():
    body = (b'event: stdout\ndata: {"content": "a\\"b\\\\' + "é😀".encode() + b'\\u00e9"  ,'
            b' "accumulated": "' + b"y" * 5000 + b'"}\n\n')
    for read in (1, 2, 3, 5, 24, 4096):
        _, events = trickle(body, read)
        assert [(e.kind, e.data) for e in events] == [("stdout", {"content": 'a"b\\é😀é'})]
