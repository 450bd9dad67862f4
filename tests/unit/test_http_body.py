"""iter_body against a raw HTTP server on 127.0.0.1: a chunked body whose
chunks have all arrived comes as one piece, and a piece never waits for
chunks that have not been sent yet; and ChunkedBody, the chunk framing alone."""

import socket
import threading

import pytest
from urllib3.exceptions import ProtocolError

from mrmd_monitor.http import new_session
from mrmd_monitor.httpbody import ChunkedBody, iter_body

CHUNKS = 50


def _chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def _accept_request(srv):
    """The next connection, once its request head has been read."""
    conn, _ = srv.accept()
    request = b""
    while b"\r\n\r\n" not in request:
        request += conn.recv(4096)
    return conn


class ChunkServer:
    """Sends ``CHUNKS`` small chunks in one write, then holds the end of the
    body until ``release`` is set (or ``hold`` seconds pass)."""

    def __init__(self, hold=10.0):
        self.hold = hold
        self.release = threading.Event()
        self.released_in_time = None
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.payload = [b"event: stdout\r\ndata: {\"content\": \"%d\"}\r\n\r\n" % i
                        for i in range(CHUNKS)]
        self.thread = threading.Thread(target=self._serve, name="chunk-server")
        self.thread.start()

    def _serve(self):
        with _accept_request(self.sock) as conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                         + b"".join(_chunk(p) for p in self.payload))
            self.released_in_time = self.release.wait(self.hold)
            conn.sendall(_chunk(b"event: done\r\ndata: {}\r\n\r\n") + b"0\r\n\r\n")

    def close(self):
        self.release.set()
        self.thread.join(15)
        self.sock.close()


@pytest.fixture
def server():
    s = ChunkServer()
    yield s
    s.close()


def test_chunks_that_have_arrived_come_in_one_piece_without_waiting_for_more(server):
    session = new_session()
    try:
        response = session.get("http://127.0.0.1:%d/stream" % server.port, stream=True,
                               timeout=(5, 15))
        pieces = iter_body(response, 65536)
        first = next(pieces)
        server.release.set()   # only now does the rest of the body go out
        rest = b"".join(pieces)
        response.close()
    finally:
        session.close()
    server.thread.join(15)
    assert server.released_in_time, "iter_body waited for chunks that were not sent yet"
    # One read took every chunk that had arrived (the poll saw the rest waiting);
    # a read per chunk would have given only the first.
    assert first == b"".join(server.payload)
    assert rest == b"event: done\r\ndata: {}\r\n\r\n"


def test_a_piece_stays_within_its_size(server):
    server.release.set()
    session = new_session()
    try:
        response = session.get("http://127.0.0.1:%d/stream" % server.port, stream=True,
                               timeout=(5, 15))
        pieces = list(iter_body(response, 100))
        response.close()
    finally:
        session.close()
    assert max(map(len, pieces)) <= 100
    assert b"".join(pieces) == b"".join(server.payload) + b"event: done\r\ndata: {}\r\n\r\n"


# -- ChunkedBody: the framing alone --------------------------------------------

BODY = (b"4\r\nabcd\r\n" b"A;name=value\r\n0123456789\r\n" b"1\r\n\n\r\n"
        b"0\r\nTrailer: x\r\n\r\n")
PAYLOAD = b"abcd0123456789\n"


@pytest.mark.parametrize("step", [1, 2, 3, 7, len(BODY)])
def test_chunked_body_cut_anywhere_gives_the_same_payload(step):
    body = ChunkedBody()
    out = b"".join(body.feed(BODY[i:i + step]) for i in range(0, len(BODY), step))
    assert out == PAYLOAD
    assert body.done


def test_chunked_body_stops_at_the_last_chunk():
    body = ChunkedBody()
    assert body.feed(b"2\r\nhi\r\n0\r\n\r\nGARBAGE") == b"hi"
    assert body.done


@pytest.mark.parametrize("raw, reason", [
    (b"zz\r\nhi\r\n", "not a hex number"),
    (b"\r\nhi\r\n", "not a hex number"),
    (b"-1\r\n", "not a hex number"),
    (b"1" * 17 + b"\r\n", "not a hex number"),
    (b"2\r\nhello\r\n", "longer than its size"),
    (b"1" + b";" * 5000, "longer than"),
])
def test_chunked_body_refuses_malformed_framing(raw, reason):
    with pytest.raises(ProtocolError, match=reason):
        ChunkedBody().feed(raw)


def test_a_chunked_body_cut_short_is_an_error():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        with _accept_request(srv) as conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunk(b"part"))

    thread = threading.Thread(target=serve, name="cut-server")
    thread.start()
    session = new_session()
    got = []
    try:
        response = session.get("http://127.0.0.1:%d/" % srv.getsockname()[1], stream=True,
                               timeout=(5, 15))
        with pytest.raises(ProtocolError, match="ended prematurely"):
            for piece in iter_body(response, 65536):
                got.append(piece)
        response.close()
    finally:
        session.close()
        thread.join(15)
        srv.close()
    assert b"".join(got) == b"part"
