"""The worker -> sync thread output buffer: head + latest tail, never a wait."""

import threading

import pytest

from mrmd_monitor.messages import OutputBuffer
from mrmd_monitor.output import PendingOutput


def numbered(first, count, width=10):
    return "".join("%0*d\r\n" % (width - 2, i) for i in range(first, first + count))


def test_below_the_limit_everything_in_order():
    p = PendingOutput(1000)
    p.add("a\r\n")
    p.add("b")
    p.add("c\r\n")
    assert p.held == 7
    assert p.take() == "a\r\nbc\r\n"
    assert p.take() == "" and p.held == 0


def test_over_the_limit_head_notice_and_latest_tail():
    p = PendingOutput(1000)              # head up to 500, tail 500
    for i in range(1000):
        p.add(numbered(i, 1))            # 10 bytes a line
    assert p.held <= 1000 + 10
    text = p.take()
    before, rest = text.split("[mrmd-monitor: ")
    notice, tail = rest.split("]\r\n")
    assert before == numbered(0, 50)
    first_tail = 1000 - tail.count("\r\n")
    assert tail == numbered(first_tail, 1000 - first_tail)
    assert 45 <= 1000 - first_tail <= 50
    left_out = first_tail - 50
    assert notice == ("%d lines (%d bytes) of output left out here: the runtime printed "
                      "faster than the document took it" % (left_out, left_out * 10))
    # A new burst starts from scratch.
    p.add("next\r\n")
    assert p.take() == "next\r\n"


def test_one_endless_line():
    p = PendingOutput(100)
    for _ in range(100):
        p.add("y" * 37)
    p.add("END")
    text = p.take()
    head, rest = text.split("\r\n[mrmd-monitor: ", 1)
    notice, tail = rest.split("]\r\n")
    assert head == "y" * 50
    assert tail == "y" * 47 + "END"
    assert notice.startswith("0 lines (%d bytes)" % (100 * 37 + 3 - 100))


def test_tail_starts_on_a_line_of_its_own_when_it_can():
    p = PendingOutput(100)                # tail: the last 50 characters
    p.add("h" * 20 + "\n")
    p.add("m" * 200)
    p.add("\n" + "t" * 40 + "\n")
    text = p.take()
    assert text.startswith("h" * 20 + "\n[mrmd-monitor: 1 lines (201 bytes) ")
    assert text.endswith("]\r\n" + "t" * 40 + "\n")
    # A line end late in the tail would leave little of it: the tail is kept whole.
    p.add("h" * 20 + "\n")
    p.add("m" * 200)
    p.add("\n" + "t" * 10 + "\n")
    text = p.take()
    assert text.endswith("]\r\n" + "m" * 38 + "\n" + "t" * 10 + "\n")


def test_counts_bytes_of_non_ascii_text():
    p = PendingOutput(40)
    p.add("\u00e9" * 10 + "\n")           # head: 11 characters
    for _ in range(10):
        p.add("\u65e5" * 9 + "\n")       # 28 bytes a line
    p.add("end\n")
    text = p.take()
    assert text.startswith("\u00e9" * 10 + "\n[mrmd-monitor: ")
    notice = text.split("[mrmd-monitor: ")[1].split("]")[0]
    tail = text.split("]\r\n")[1]
    left_out_lines = 11 - tail.count("\n")
    assert notice.startswith("%d lines (%d bytes)" % (left_out_lines, left_out_lines * 28))


def test_memory_bounded_whatever_is_added():
    p = PendingOutput(64 * 1024)
    chunk = numbered(0, 400)
    peak = 0
    for _ in range(5000):                # 20 MB
        p.add(chunk)
        peak = max(peak, p.held)
    assert peak <= 64 * 1024 + len(chunk)


@pytest.mark.parametrize("limit", [0, -1])
def test_rejects_nonsense_limits(limit):
    with pytest.raises(ValueError):
        PendingOutput(limit)


def test_put_reports_when_a_message_is_due():
    buf = OutputBuffer(limit=1000)
    assert buf.put("a") is True           # post OutputReady
    assert buf.put("b") is False          # one is pending already
    assert buf.take() == "ab"
    assert buf.put("c") is True


def test_put_asks_once_more_when_a_big_piece_waits():
    buf = OutputBuffer(limit=1000)          # big: 250 characters
    assert buf.put("a" * 10) is True
    assert buf.put("b" * 200) is False
    assert buf.put("c" * 50) is True       # 260 waiting
    assert buf.put("d" * 300) is False     # asked already
    assert buf.take().startswith("a" * 10 + "b" * 200)
    assert buf.put("e") is True and buf.put("f" * 300) is True


def test_put_never_waits_for_a_take():
    buf = OutputBuffer(limit=1000)
    done = threading.Event()

    def worker():
        for i in range(20000):
            buf.put(numbered(i, 1))
        done.set()

    t = threading.Thread(target=worker, name="test-output-buffer-worker")
    t.start()
    try:
        assert done.wait(30), "put waited for the sync thread"
    finally:
        t.join(30)
    text = buf.take()
    assert text.startswith(numbered(0, 50)) and text.endswith(numbered(19999, 1))


def test_concurrent_takes_see_every_line_in_order_below_the_limit():
    buf = OutputBuffer(limit=1 << 20)
    taken = []
    stop = threading.Event()

    def sync_thread():
        while not stop.is_set():
            taken.append(buf.take())
        taken.append(buf.take())

    t = threading.Thread(target=sync_thread, name="test-output-buffer-sync")
    t.start()
    try:
        for i in range(20000):
            buf.put(numbered(i, 1))
    finally:
        stop.set()
        t.join(30)
    assert "".join(taken) == numbered(0, 20000)


def test_concurrent_takes_keep_order_over_the_limit():
    buf = OutputBuffer(limit=2000)
    taken = []
    stop = threading.Event()

    def sync_thread():
        while not stop.wait(0.001):
            taken.append(buf.take())
        taken.append(buf.take())

    t = threading.Thread(target=sync_thread, name="test-output-buffer-sync")
    t.start()
    try:
        for i in range(50000):
            buf.put(numbered(i, 1))
    finally:
        stop.set()
        t.join(30)
    numbers = [int(line) for line in "".join(taken).split("\r\n")
               if line and not line.startswith("[")]
    assert numbers[0] == 0 and numbers[-1] == 49999
    assert numbers == sorted(set(numbers))
