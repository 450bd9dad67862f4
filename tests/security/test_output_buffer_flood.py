"""A runtime that prints faster than the document takes it.

The worker reads the runtime at full speed (a runtime that cannot send
buffers what it produces, so holding the stream back only moves the memory
there) and its buffer keeps what the sync thread has not taken as a head and
the latest tail, with one line saying how much was left out.
"""

import threading
import tracemalloc

from mrmd_monitor.messages import OutputBuffer
from mrmd_monitor.output import RunOutput

LIMIT = 1 << 20            # the worker's default buffer
FLOOD = 64 * 1024 * 1024   # what the runtime prints while the sync thread is busy
EVENT = 4096


def flood_lines():
    line = "%08d " + "x" * 90 + "\r\n"            # 101 bytes
    per_event = EVENT // len(line % 0)
    n = 0
    while n * len(line % 0) < FLOOD:
        yield "".join(line % (n + i) for i in range(per_event))
        n += per_event


def test_worker_never_waits_and_memory_stays_bounded():
    buf = OutputBuffer()
    events = list(flood_lines())      # made before measuring: the runtime's bytes, not ours
    done = threading.Event()
    notified = []

    def worker():
        for text in events:
            if buf.put(text):
                notified.append(True)
        done.set()

    tracemalloc.start()
    try:
        t = threading.Thread(target=worker, name="test-flood-worker")
        t.start()
        # Generous: the old buffer made this thread wait for a take that never came.
        finished = done.wait(120)
        t.join(5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert finished, "the worker waited for the sync thread instead of reading on"
    # One OutputReady for the burst, and one more when a big piece waits:
    # never one per event.
    assert notified == [True, True]
    assert peak < 4 * LIMIT             # head + tail + one event, with room for the joins
    text = buf.take()
    assert len(text) < LIMIT + 300

    out = RunOutput(2 * 1024 * 1024)
    out.feed(text)
    out.take_changes()
    lines = out.lines()
    notice = [line for line in lines if line.startswith("[mrmd-monitor:")]
    assert len(notice) == 1 and "of output left out here" in notice[0]
    shown = [line for line in lines if line and not line.startswith("[")]
    numbers = [int(line.split()[0]) for line in shown]
    # In order, the first lines, then a gap, then the latest lines.
    assert numbers[0] == 0 and numbers == sorted(numbers)
    last = (len(events) * (EVENT // 101)) - 1
    assert numbers[-1] == last
    gap = [b - a for a, b in zip(numbers, numbers[1:]) if b - a != 1]
    assert len(gap) == 1
    left_out = gap[0] - 1
    assert "%d lines (%d bytes)" % (left_out, left_out * 101) in notice[0]
