"""The mailbox: a queue whose descriptor poll() can wait on, with eventfd and
with the pipe fallback."""

import os
import select
import threading

import pytest

from mrmd_monitor.mailbox import Mailbox

KINDS = [pytest.param(True, id="eventfd"), pytest.param(False, id="pipe")]


def readable(box, timeout=0.0):
    poller = select.poll()
    poller.register(box.fileno(), select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


@pytest.fixture(params=KINDS)
def box(request):
    if request.param and not hasattr(os, "eventfd"):
        pytest.skip("no eventfd on this system")
    mailbox = Mailbox(use_eventfd=request.param)
    yield mailbox
    mailbox.close()


def test_post_wakes_and_drain_returns_in_order(box):
    assert not readable(box)
    assert box.drain() == []
    for i in range(5):
        box.post(i)
    assert readable(box)
    assert box.drain() == [0, 1, 2, 3, 4]
    assert not readable(box), "a drained mailbox must not stay readable"
    assert box.empty()


def test_bounded_drain_keeps_the_rest_readable(box):
    for i in range(10):
        box.post(i)
    assert box.drain(max_n=4) == [0, 1, 2, 3]
    assert readable(box), "messages are left: poll() must return again"
    assert box.drain(max_n=4) == [4, 5, 6, 7]
    assert box.drain(max_n=4) == [8, 9]
    assert not readable(box)


def test_many_posts_from_threads_lose_nothing(box):
    n_threads, per_thread = 8, 2000   # far more wake-ups than a pipe buffer holds

    def worker(k):
        for i in range(per_thread):
            box.post((k, i))

    threads = [threading.Thread(target=worker, args=(k,), name="poster-%d" % k) for k in range(n_threads)]
    for t in threads:
        t.start()
    got = []
    while len(got) < n_threads * per_thread:
        assert readable(box, timeout=10), "a posted message did not wake the reader"
        got += box.drain(500)
    for t in threads:
        t.join(10)
    assert sorted(got) == sorted((k, i) for k in range(n_threads) for i in range(per_thread))
    for k in range(n_threads):   # each thread's messages in its order
        assert [i for kk, i in got if kk == k] == list(range(per_thread))


def test_a_wait_wakes_on_a_post_from_another_thread(box):
    t = threading.Timer(0.05, box.post, args=("late",))
    t.start()
    try:
        assert readable(box, timeout=10)
        assert box.drain() == ["late"]
    finally:
        t.join()


def test_descriptors_counted_and_close_is_idempotent(box):
    expected = 1 if box._eventfd else 2
    assert box.descriptors() == expected
    fd = box.fileno()
    box.close()
    box.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    box.post("after close")      # never raises: a worker may post during shutdown


def test_a_post_after_close_never_writes_into_a_reused_descriptor(box):
    fd = box.fileno()
    r, w = os.pipe()
    box.close()
    os.dup2(w, fd)            # the number is reused: now it is this pipe's write end
    try:
        os.set_blocking(r, False)
        box.post("late")
        with pytest.raises(BlockingIOError):
            os.read(r, 10)    # nothing was written into somebody else's descriptor
    finally:
        for d in {r, w, fd}:
            os.close(d)
