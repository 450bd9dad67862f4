"""Which real sync server and runtime an end-to-end test runs on.

A *stack* is a sync server (the npm y-websocket server or mrmd-sync 0.3.5)
with a Python runtime (mrmd-python 0.4.2 from PyPI or the MRP 0.3.0
mrmd-python). Tests take the ``stack`` fixture (tests/conftest.py) and are
parametrised with ``on_stacks(...)``:

- ``EVERY``: where the runtime matters (output, stdin, errors, cancel, order),
  on both servers and both runtimes (npm server + 0.4.2, mrmd-sync + MRP 0.3.0);
- ``SERVERS``: where only the sync server matters (presence, reconnects,
  concurrent edits, restarts), with mrmd-python 0.4.2 on both servers.

Servers and runtimes are shared per module (a fresh document per test); a
test that restarts its server asks for one of its own (``stack.new_server()``).
"""

import pytest

NPM = "npm-y-websocket"
MRMD_SYNC = "mrmd-sync"
PY042 = "mrmd-python-0.4.2"
MRP3 = "mrp-0.3.0"

#: stack id -> (server, runtime)
STACKS = {
    "npm+py042": (NPM, PY042),
    "mrmd-sync+py042": (MRMD_SYNC, PY042),
    "mrmd-sync+mrp3": (MRMD_SYNC, MRP3),
}
# Each list covers both servers; EVERY also both runtimes. mrmd-sync with 0.4.2
# adds nothing to a runtime scenario that the two others do not already cover,
# and the suite has a time budget.
EVERY = ("npm+py042", "mrmd-sync+mrp3")
SERVERS = ("npm+py042", "mrmd-sync+py042")


def on_stacks(names):
    """Parametrise a test over these stacks (ids as in STACKS)."""
    return pytest.mark.parametrize("stack", list(names), indirect=True)


def expected_output(runtime_kind, text):
    """The block text a runtime's output ``text`` ends up as, per runtime.

    Both Python runtimes print through a pseudo-terminal (``\\r\\n``, which
    the monitor renders as ``\\n``) and show IPython's ``Out[n]:`` lines;
    measured with mrmd-python 0.4.2 and the MRP 0.3.0 runtime on the cells of
    these tests, the blocks are identical. This is the one place to say so
    when a runtime starts to differ.
    """
    if runtime_kind in (PY042, MRP3):
        return text
    raise ValueError("no output expectation for runtime %r" % (runtime_kind,))


class Stack:
    """What a parametrised test runs on: ``server`` (``.url``), ``runtime`` (``.url``)."""

    def __init__(self, name, server, runtime, new_server, new_runtime):
        self.name = name
        self.server_kind, self.runtime_kind = STACKS[name]
        self.server = server
        self.runtime = runtime
        self._new_server = new_server
        self._new_runtime = new_runtime

    def new_server(self):
        """A server of this stack's kind for this test alone (stopped in teardown)."""
        return self._new_server()

    def new_runtime(self):
        """A runtime of this stack's kind for this test alone, for runs the test
        abandons (an interrupt is best effort on both runtimes)."""
        return self._new_runtime()

    def out(self, text):
        return expected_output(self.runtime_kind, text)

    def __repr__(self):
        return "<Stack %s>" % self.name
