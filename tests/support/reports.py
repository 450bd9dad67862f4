"""Which phase of a test failed, for teardowns that print logs only then.

The root conftest's ``pytest_runtest_makereport`` hook stores each phase's
report under REPORTS_KEY; ``test_failed`` reads them back.
"""

import pytest

REPORTS_KEY = pytest.StashKey[dict]()


def test_failed(node):
    """Has the setup or call phase of this test failed?"""
    return any(r.failed for r in node.stash.get(REPORTS_KEY, {}).values())


test_failed.__test__ = False  # not a test, despite its name
