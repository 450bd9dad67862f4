"""A /stats answer listing tens of thousands of names costs what it carries.

mrmd-sync's /stats is read every --discover-interval. Its names are kept
once each, in order: the duplicate check must not compare each name with
every name before it (40,000 names took 7.4 s per poll), and no more than
MAX_LISTED names are read at all. Cost is counted as name comparisons, not
timed."""

from mrmd_monitor.discovery import MAX_LISTED, parse_stats


class Name(str):
    """A document name that counts the equality tests made on it."""

    compared = 0

    def __eq__(self, other):
        Name.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_forty_thousand_names_cost_linear_work():
    Name.compared = 0
    payload = {"documents": [{"name": Name("doc-%05d.md" % i)} for i in range(40_000)]}
    names = parse_stats(payload)
    assert Name.compared <= 2 * 40_000
    assert names == ["doc-%05d.md" % i for i in range(min(40_000, MAX_LISTED))]


def test_the_names_read_are_bounded_and_duplicates_do_not_count():
    payload = {"documents": ["dup.md"] * 50_000 + ["n%d" % i for i in range(3 * MAX_LISTED)]}
    names = parse_stats(payload)
    assert len(names) == MAX_LISTED
    assert names[:2] == ["dup.md", "n0"] and names[-1] == "n%d" % (MAX_LISTED - 2)
