"""ysync.py: the y-sync session, bytes in and bytes out, with no socket. The
other end is a pycrdt Doc answering the way the y-websocket server does."""

import logging

import pytest
from pycrdt import Doc, Map, Text, read_message

from mrmd_monitor.errors import ProtocolError, SyncReadOnly
from mrmd_monitor.ysync import Session, sync_message

STEP1, STEP2, UPDATE = 0, 1, 2


class Server:
    """The server's half: a Doc, step 2 answers to step 1, updates applied.
    ``drop_writes``: a read-only connection (our updates are not applied)."""

    def __init__(self, drop_writes=False):
        self.doc = Doc()
        self.drop_writes = drop_writes

    def hear(self, message):
        """Our message in; the server's answer (or None)."""
        assert message[0] == 0
        payload = read_message(message[2:])
        if message[1] == STEP1:
            return sync_message(STEP2, self.doc.get_update(payload))
        if not self.drop_writes:
            self.doc.apply_update(payload)
        return None

    def step1(self):
        return sync_message(STEP1, self.doc.get_state())


def session(**kw):
    doc = Doc(client_id=42)
    return Session(doc, doc_name="d", shown_url="ws://127.0.0.1:1/d",
                   log=logging.getLogger("test"), **kw)


def handshake(s, server):
    """Connect and sync as the real exchange goes: both step 1s, both step 2s."""
    answer = server.hear(s.open())
    for reply in s.receive(server.step1()).replies:
        server.hear(reply)
    got = s.receive(answer)
    assert got.synced and s.synced
    return got


def text(doc):
    return str(doc.get("content", type=Text))


def test_a_handshake_both_ways():
    server = Server()
    server.doc.get("content", type=Text).insert(0, "from the server ü\n")
    s = session()
    s.doc.get("content", type=Text).insert(0, "written offline 😀 ")
    assert s.dirty and not s.outbox          # offline: goes with the handshake
    handshake(s, server)
    assert text(s.doc) == text(server.doc)
    assert "written offline 😀 " in text(server.doc)


def test_local_changes_go_to_the_outbox_and_out_cut_under_the_limit():
    server = Server()
    s = session(max_message_bytes=16 * 1024)
    handshake(s, server)
    big = "".join("line %05d ÿ 中\n" % i for i in range(5000))
    s.doc.get("content", type=Text).insert(0, big)
    assert len(s.outbox) == 1
    messages = s.next_out()
    assert not s.outbox and len(messages) > 3
    assert max(len(m) for m in messages) <= 16 * 1024
    for message in messages:
        server.hear(message)
    assert text(server.doc) == big


def test_a_remote_update_is_applied_not_echoed_and_its_entries_are_noted():
    server = Server()
    moved = []
    s = session(on_text_moved=lambda: moved.append(1))
    handshake(s, server)
    before = server.doc.get_state()
    server.doc.get("executions", type=Map)["e1"] = {"status": "requested"}
    server.doc.get("content", type=Text).insert(0, "x")
    got = s.receive(sync_message(UPDATE, server.doc.get_update(before)))
    assert got.replies == [] and not got.synced and got.acked is None
    assert s.outbox == []
    assert s.changed == {"e1"} and moved


def test_a_probe_is_answered_in_order_and_the_outbox_goes_first_by_the_caller():
    server = Server()
    s = session()
    handshake(s, server)
    s.doc.get("executions", type=Map)["e1"] = {"status": "claimed"}
    for message in s.next_out():
        server.hear(message)
    seq1, probe1 = s.probe()
    seq2, probe2 = s.probe()
    assert (seq1, seq2) == (1, 2)
    assert s.receive(server.hear(probe1)).acked == 1
    assert s.receive(server.hear(probe2)).acked == 2


def _write_then_probe(server):
    s = session()
    handshake(s, server)
    s.doc.get("content", type=Text).insert(0, "ours")
    for message in s.next_out():
        server.hear(message)
    _, probe = s.probe()
    return s, server.hear(probe)


def test_a_server_that_drops_our_writes_is_found_by_the_first_probe():
    s, answer = _write_then_probe(Server(drop_writes=True))
    with pytest.raises(SyncReadOnly, match="read-only"):
        s.receive(answer)


def test_a_server_that_keeps_our_writes_passes_the_check():
    s, answer = _write_then_probe(Server())
    assert s.receive(answer).acked == 1


def test_a_broken_connection_leaves_the_session_dirty_until_a_flush_is_confirmed():
    server = Server()
    s = session()
    handshake(s, server)
    s.doc.get("content", type=Text).insert(0, "in flight")
    s.closed(broken=True)
    assert s.dirty and not s.synced and not s.outbox and s.flush() is None
    handshake(s, server)
    seq, probe = s.flush()
    assert s.flush() is None                  # one at a time
    assert s.receive(server.hear(probe)).acked == seq
    assert not s.dirty
    assert text(server.doc) == "in flight"


@pytest.mark.parametrize("message", [
    b"\x00",                                   # truncated
    b"\x00\x07\x00",                           # unknown subtype
    b"\x00\x02\x05abc",                        # payload shorter than said
    sync_message(UPDATE, b"\x01\xff\xff\xff"),  # not an update
])
def test_bytes_we_refuse_raise_a_protocol_error_and_change_nothing(message):
    server = Server()
    s = session()
    handshake(s, server)
    with pytest.raises(ProtocolError):
        s.receive(message)
    assert s.synced and s.outbox == []
