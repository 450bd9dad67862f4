"""Websocket frames from the sync server, cut into messages. Pure: the sync
thread reads whatever bytes its socket holds and feeds them here.

websocket-client still opens the connection and sends our messages; reading
is ours because an idle document wakes for little else than the server's ping
every 30 s, and websocket-client spends two or three system calls and a few
dozen Python calls on each frame and its pong: with a thousand documents that
was most of the monitor's idle CPU (tests/benchmarks/README.md, "A thousand
documents").

Server frames are never masked and no extension is agreed (RFC 6455 5.1,
5.2): anything else is refused, as is a message larger than the limit, before
its payload is held.
"""

from .errors import FrameError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_DATA = (OP_TEXT, OP_BINARY)
_CONTROL = (OP_CLOSE, OP_PING, OP_PONG)
_MAX_CONTROL = 125
# Fragments of one message: empty ones add nothing to its size, so they are
# counted too. Servers we know never fragment what they send.
MAX_FRAGMENTS = 1 << 12


class FrameReader:
    """Bytes in, complete frames out: ``(opcode, payload)`` for every control
    frame and every whole message (fragments joined, under the first
    fragment's opcode)."""

    def __init__(self, max_message_bytes):
        self.max_message_bytes = max_message_bytes
        self._buf = bytearray()
        self._parts = []        # fragments of the message in progress
        self._parts_bytes = 0
        self._opcode = None     # its opcode, None between messages

    def feed(self, data):
        buf = self._buf
        buf += data
        out = []
        pos, end = 0, len(buf)
        view = memoryview(buf)
        try:
            while end - pos >= 2:
                b0, b1 = buf[pos], buf[pos + 1]
                if b0 & 0x70:
                    raise FrameError("a frame with reserved bits set (no extension was agreed)")
                if b1 & 0x80:
                    raise FrameError("a masked frame (a server's frames are never masked)")
                opcode, fin, length, head = b0 & 0x0F, b0 & 0x80, b1 & 0x7F, 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length, head = int.from_bytes(view[pos + 2:pos + 4], "big"), 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    length, head = int.from_bytes(view[pos + 2:pos + 10], "big"), 10
                self._check(opcode, fin, length)
                stop = pos + head + length
                if stop > end:
                    break
                payload = bytes(view[pos + head:stop])
                pos = stop
                if opcode >= 0x8 or (fin and opcode != OP_CONTINUATION):
                    out.append((opcode, payload))
                else:
                    if opcode != OP_CONTINUATION:
                        self._opcode = opcode
                    self._parts.append(payload)
                    self._parts_bytes += length
                    if fin:
                        out.append((self._opcode, b"".join(self._parts)))
                        self._parts, self._parts_bytes, self._opcode = [], 0, None
        finally:
            view.release()
        del buf[:pos]
        return out

    def _check(self, opcode, fin, length):
        if opcode >= 0x8:
            if opcode not in _CONTROL:
                raise FrameError("a frame with the unknown opcode %d" % opcode)
            if not fin or length > _MAX_CONTROL:
                raise FrameError("a control frame (opcode %d) that is fragmented or longer than "
                                 "%d bytes" % (opcode, _MAX_CONTROL))
            return
        if opcode == OP_CONTINUATION:
            if self._opcode is None:
                raise FrameError("a continuation frame outside a message")
            if len(self._parts) >= MAX_FRAGMENTS:
                raise FrameError("a message in more than %d fragments" % MAX_FRAGMENTS)
        elif opcode in _DATA:
            if self._opcode is not None:
                raise FrameError("a new message inside a fragmented one")
        else:
            raise FrameError("a frame with the unknown opcode %d" % opcode)
        if self._parts_bytes + length > self.max_message_bytes:
            raise FrameError("a message of more than %d bytes (at least %d)"
                             % (self.max_message_bytes, self._parts_bytes + length))


def pong(payload, mask):
    """A client's pong frame answering a ping with ``payload`` (at most 125
    bytes), masked with the 4 bytes of ``mask`` as a client must."""
    n = len(payload)
    if n > _MAX_CONTROL:
        raise ValueError("a control frame carries at most %d bytes" % _MAX_CONTROL)
    head = bytes((0x80 | OP_PONG, 0x80 | n)) + mask
    if not n:
        return head
    key = (mask * (n // 4 + 1))[:n]
    return head + (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
