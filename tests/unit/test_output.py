from mrmd_monitor.output import RunOutput
from mrmd_monitor.terminal import TerminalRenderer


def test_below_cap_is_plain_rendering():
    o = RunOutput(max_bytes=1000)
    o.feed("a\r\nb\r\n")
    assert o.take_changes() == (0, ["a", "b", ""])
    assert not o.capped


def test_cap_keeps_head_notice_and_latest_tail():
    o = RunOutput(max_bytes=10_000, tail_bytes=2_000)
    for i in range(5000):
        o.feed("line %d\r\n" % i)
        if i % 97 == 0:
            o.take_changes()
    o.take_changes()
    lines = o.lines()
    assert o.capped
    notice = [i for i, l in enumerate(lines) if l.startswith("[mrmd-monitor: output over")]
    assert len(notice) == 1
    head, tail = lines[:notice[0]], lines[notice[0] + 1:]
    assert head == ["line %d" % i for i in range(len(head))]
    assert tail[-2:] == ["line 4999", ""]
    first_tail = int(tail[0].split()[1])
    assert tail[:-1] == ["line %d" % i for i in range(first_tail, 5000)]
    assert o.omitted_lines == first_tail - len(head)
    assert "%d lines" % o.omitted_lines in lines[notice[0]]
    assert len(o.text().encode()) <= 10_000 + 200
    # Memory: only the tail is kept by the renderer.
    assert o.renderer.line_count < 300


def test_endless_output_stays_bounded():
    o = RunOutput(max_bytes=20_000, tail_bytes=4_000)
    chunk = "".join("x" * 50 + "\r\n" for _ in range(80))
    for _ in range(2000):  # ~8 MB
        o.feed(chunk)
        o.take_changes()
    assert len(o.text().encode()) < 21_000
    assert o.renderer.line_count <= 200


def test_progress_bar_in_tail_still_collapses():
    o = RunOutput(max_bytes=2_000, tail_bytes=500)
    for i in range(400):
        o.feed("row %d\r\n" % i)
    for i in range(1000):
        o.feed("\r%d%%" % (i % 101))
    o.take_changes()
    assert o.lines()[-1] == "100%" or o.lines()[-1].endswith("%")
    assert sum(1 for l in o.lines() if l.endswith("%")) == 1


def test_one_enormous_line():
    o = RunOutput(max_bytes=1_000, tail_bytes=200)
    o.feed("y" * 5_000 + "\r\nend\r\n")
    o.take_changes()
    assert o.capped
    assert len(o.text().encode()) < 1_300
    assert o.lines()[-2:] == ["end", ""]


def test_unlimited_when_zero():
    o = RunOutput(max_bytes=0)
    o.feed("z\r\n" * 100_000)
    o.take_changes()
    assert not o.capped and o.renderer.line_count == 100_001


def test_discard_head_keeps_cursor_line_and_shifts_changes():
    r = TerminalRenderer()
    r.feed("a\nb\nc\nd")
    r.take_changes()
    assert r.discard_head(2) == ["a", "b"]
    r.feed("!")
    assert r.take_changes() == (1, ["d!"])
    assert r.discard_head(99) == ["c"]  # never the cursor's line
    assert r.lines() == ["d!"]


def test_cap_counts_what_is_rendered_not_what_is_fed():
    o = RunOutput(max_bytes=10_000, tail_bytes=2_000, max_columns=1_000)
    o.feed("\x1b[990Cx\r\n" * 30)        # 300 bytes in, 30 KB drawn
    assert o.capped
    o.take_changes()
    assert len(o.text().encode()) <= 10_000 + 200


def test_cap_waits_for_a_complete_line():
    # Nothing can be frozen as the head while the only line is still being
    # written; the line itself is bounded by the columns.
    o = RunOutput(max_bytes=100, tail_bytes=20, max_columns=500)
    o.feed("y" * 10_000)
    assert not o.capped and o.text() == "y" * 500
    o.feed("\r\nnext\r\n")
    o.take_changes()
    assert o.capped and o.lines()[0] == "y" * 80 and o.lines()[-2:] == ["next", ""]


def test_a_screen_of_wide_lines_is_trimmed_to_the_tail():
    o = RunOutput(max_bytes=20_000, tail_bytes=2_000, max_columns=1_000)
    for i in range(100):
        o.feed("%03d" % i + "w" * 997 + "\r\n")
    o.take_changes()
    assert o.capped
    assert o.renderer.size <= 2_000
    assert o.lines()[-1] == "" and o.lines()[-2].startswith("099")


def test_reaching_the_cap_rewrites_the_block_from_what_changed_not_from_its_first_line():
    from mrmd_monitor.document import BlockContent
    for flush_every in (1, 7, 50, 10_000):
        o = RunOutput(max_bytes=10_000, tail_bytes=2_000)
        block = BlockContent()
        firsts = []
        for i in range(3000):
            o.feed("line %d\r\n" % i if i % 11 else "line %d é😀\r\n" % i)
            if i % flush_every == 0:
                change = o.take_changes()
                if change is not None:
                    block.apply(*change)
                    firsts.append(change[0])
        change = o.take_changes()
        if change is not None:
            block.apply(*change)
        assert o.capped
        # The block holds exactly what the output shows.
        assert block.text == o.text() + ("\n" if o.lines()[-1] else "")
        if flush_every < 10_000:
            # Once flushed, the head is never written again.
            assert min(firsts[1:]) > 0


def test_past_the_cap_a_long_chunk_shows_what_small_pieces_show():
    """Lines a long chunk pushes out of the tail are counted without being
    rendered: the block (head, notice with its counts, tail) is the same as
    when the same output comes in small pieces, which are all rendered."""
    import random
    rnd = random.Random(3)
    for case in range(12):
        text = "".join("%d %s\r\n" % (i, "y" * rnd.randint(0, 120)) for i in range(30_000))
        if case % 3 == 1:
            text += "\x1b[2Aup\r\n" + "z\r\n" * 10          # a cursor move at the end
        if case % 3 == 2:
            text = text[:len(text) // 2] + "\t" + text[len(text) // 2:]   # a control inside
        big, small = (RunOutput(max_bytes=50_000, tail_bytes=5_000) for _ in range(2))
        at = 0
        while at < len(text):
            n = rnd.choice((1, 700, 30_000, 200_000))
            big.feed(text[at:at + n])
            at += n
        for i in range(0, len(text), 997):
            small.feed(text[i:i + 997])
        assert big.take_changes() == small.take_changes()
        assert (big.omitted_lines, big.omitted_bytes) == (small.omitted_lines, small.omitted_bytes)
        assert big.lines() == small.lines()
