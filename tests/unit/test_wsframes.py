"""Websocket frames from the sync server (mrmd_monitor/wsframes.py), checked
against frames made by websocket-client's own encoder: whole, byte by byte,
fragmented with pings between the pieces, and every kind of frame a server
must not send."""

import os

import pytest
from websocket import ABNF

from mrmd_monitor import wsframes
from mrmd_monitor.errors import FrameError, ProtocolError
from mrmd_monitor.wsframes import (OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG,
                                   OP_TEXT, FrameReader)


def server_frame(payload, opcode=OP_BINARY, fin=1):
    """A frame as a server sends it (unmasked), by websocket-client's encoder."""
    return ABNF(fin, 0, 0, 0, opcode, 0, payload).format()


def feed_bytewise(reader, data):
    out = []
    for i in range(len(data)):
        out += reader.feed(data[i:i + 1])
    return out


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 300_000])
def test_messages_of_every_length_form(size):
    payload = os.urandom(size)
    assert FrameReader(1 << 20).feed(server_frame(payload)) == [(OP_BINARY, payload)]


def test_several_frames_in_one_read_and_one_frame_over_many():
    reader = FrameReader(1 << 20)
    a, b, c = b"\x00\x01sync", "text ü".encode(), os.urandom(70_000)
    wire = server_frame(a) + server_frame(b, OP_TEXT) + server_frame(b"", OP_PING) + server_frame(c)
    assert reader.feed(wire) == [(OP_BINARY, a), (OP_TEXT, b), (OP_PING, b""), (OP_BINARY, c)]
    assert feed_bytewise(FrameReader(1 << 20), wire[:200]) == [(OP_BINARY, a), (OP_TEXT, b),
                                                               (OP_PING, b"")]


def test_a_fragmented_message_with_pings_between_its_pieces():
    reader = FrameReader(1 << 20)
    wire = (server_frame(b"one ", OP_BINARY, fin=0) + server_frame(b"p1", OP_PING)
            + server_frame(b"two ", OP_CONTINUATION, fin=0) + server_frame(b"", OP_PONG)
            + server_frame(b"three", OP_CONTINUATION))
    assert feed_bytewise(reader, wire) == [(OP_PING, b"p1"), (OP_PONG, b""),
                                           (OP_BINARY, b"one two three")]
    # and the reader is ready for the next message
    assert reader.feed(server_frame(b"next")) == [(OP_BINARY, b"next")]


def test_a_close_frame_carries_its_code_and_reason():
    payload = (1008).to_bytes(2, "big") + b"Unauthorized"
    assert FrameReader(100).feed(server_frame(payload, OP_CLOSE)) == [(OP_CLOSE, payload)]


@pytest.mark.parametrize("wire, why", [
    (ABNF(1, 0, 0, 0, OP_BINARY, 1, b"masked").format(), "masked"),
    (ABNF(1, 1, 0, 0, OP_BINARY, 0, b"x").format(), "reserved bits"),
    (ABNF(1, 0, 0, 1, OP_BINARY, 0, b"x").format(), "reserved bits"),
    (bytes([0x83, 1]) + b"x", "unknown opcode 3"),
    (bytes([0x8B, 1]) + b"x", "unknown opcode 11"),
    (server_frame(b"x" * 126, OP_PING), "fragmented or longer"),
    (server_frame(b"x", OP_PING, fin=0), "fragmented or longer"),
    (server_frame(b"x", OP_CONTINUATION), "continuation frame outside a message"),
    (server_frame(b"a", OP_BINARY, fin=0) + server_frame(b"b", OP_TEXT),
     "a new message inside a fragmented one"),
], ids=["masked", "rsv1", "rsv3", "op3", "op11", "long-ping", "fragmented-ping",
        "lone-continuation", "message-in-message"])
def test_what_a_server_must_not_send_is_refused(wire, why):
    with pytest.raises(FrameError) as info:
        FrameReader(1 << 20).feed(wire)
    assert why in str(info.value)
    assert isinstance(info.value, ProtocolError)


def test_a_message_over_the_limit_is_refused_before_its_payload_is_held():
    reader = FrameReader(1000)
    # Only the header of a frame declaring 2**62 bytes: refused at once.
    with pytest.raises(FrameError, match="more than 1000 bytes"):
        reader.feed(bytes([0x82, 127]) + (1 << 62).to_bytes(8, "big"))
    # Fragments adding up past the limit.
    reader = FrameReader(1000)
    with pytest.raises(FrameError, match="more than 1000 bytes"):
        reader.feed(server_frame(b"x" * 600, OP_BINARY, fin=0)
                    + bytes([0x80, 126]) + (600).to_bytes(2, "big"))
    # Exactly at the limit is fine.
    assert FrameReader(1000).feed(server_frame(b"y" * 1000)) == [(OP_BINARY, b"y" * 1000)]


def test_a_message_in_too_many_fragments_is_refused():
    """Empty fragments add no bytes: without a count, a server could grow the
    list of pieces for ever."""
    reader = FrameReader(1 << 20)
    piece = server_frame(b"", OP_CONTINUATION, fin=0)
    reader.feed(server_frame(b"", OP_BINARY, fin=0) + piece * (wsframes.MAX_FRAGMENTS - 2))
    with pytest.raises(FrameError, match="more than %d fragments" % wsframes.MAX_FRAGMENTS):
        reader.feed(piece * 2)
    # At the limit is fine.
    reader = FrameReader(1 << 20)
    wire = (server_frame(b"a", OP_BINARY, fin=0) + piece * (wsframes.MAX_FRAGMENTS - 2)
            + server_frame(b"z", OP_CONTINUATION))
    assert reader.feed(wire) == [(OP_BINARY, b"az")]


def test_incomplete_frames_wait_for_the_rest():
    reader = FrameReader(1 << 20)
    frame = server_frame(b"z" * 70_000)
    assert reader.feed(frame[:1]) == []
    assert reader.feed(frame[1:9]) == []           # inside the 64-bit length
    assert reader.feed(frame[9:50_000]) == []
    assert reader.feed(frame[50_000:]) == [(OP_BINARY, b"z" * 70_000)]


@pytest.mark.parametrize("payload", [b"", b"a", b"abcd", b"hello, server", bytes(range(125))],
                         ids=["0", "1", "4", "13", "125"])
def test_a_pong_is_the_frame_websocket_client_makes(payload):
    mask = os.urandom(4)
    theirs = ABNF.create_frame(payload, ABNF.OPCODE_PONG)
    theirs.get_mask_key = lambda n: mask
    assert wsframes.pong(payload, mask) == theirs.format()


def test_a_pong_carries_at_most_125_bytes():
    with pytest.raises(ValueError):
        wsframes.pong(b"x" * 126, b"\0\0\0\0")
