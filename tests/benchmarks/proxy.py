"""A TCP proxy on 127.0.0.1 that counts what a websocket client sends.

Put between the monitor and the sync server, it sees every websocket frame
the monitor sends. Client frames are masked; the proxy unmasks only the first
bytes of each payload to classify the y-websocket message (``0`` sync: step 1,
step 2 or update; ``1`` awareness) and counts wire bytes and payload bytes per
kind. Forwarding is byte for byte.
"""

import select
import socket
import threading

KINDS = {(0, 0): "sync-step1", (0, 1): "sync-step2", (0, 2): "sync-update"}


class FrameCounter:
    """Streaming parser of client-to-server websocket frames (after the HTTP upgrade)."""

    def __init__(self):
        self.buf = bytearray()
        self.in_headers = True
        self.skip = 0  # payload bytes of the current frame still to pass
        self.kind = None
        self.wire = 0
        self.payload = {}  # kind -> payload bytes
        self.frames = {}  # kind -> frame count

    def feed(self, data):
        self.wire += len(data)
        if self.skip >= len(data) and not self.in_headers and not self.buf:
            self.skip -= len(data)
            return
        self.buf += data
        while True:
            if self.in_headers:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                del self.buf[:end + 4]
                self.in_headers = False
                continue
            if self.skip:
                n = min(self.skip, len(self.buf))
                del self.buf[:n]
                self.skip -= n
                if self.skip:
                    return
            if len(self.buf) < 2:
                return
            b0, b1 = self.buf[0], self.buf[1]
            masked, length, pos = b1 & 0x80, b1 & 0x7F, 2
            if length == 126:
                if len(self.buf) < 4:
                    return
                length, pos = int.from_bytes(self.buf[2:4], "big"), 4
            elif length == 127:
                if len(self.buf) < 10:
                    return
                length, pos = int.from_bytes(self.buf[2:10], "big"), 10
            mask = b"\0\0\0\0"
            if masked:
                if len(self.buf) < pos + 4:
                    return
                mask, pos = bytes(self.buf[pos:pos + 4]), pos + 4
            need = min(length, 2)
            if len(self.buf) < pos + need:
                return
            head = bytes(b ^ mask[i % 4] for i, b in enumerate(self.buf[pos:pos + need]))
            opcode = b0 & 0x0F
            if opcode in (1, 2):
                t = head[0] if head else -1
                self.kind = KINDS.get((t, head[1] if len(head) > 1 else -1),
                                      "awareness" if t == 1 else "other")
            elif opcode == 0:
                pass  # continuation: same kind as the frame it continues
            else:
                self.kind = "control"
            self.payload[self.kind] = self.payload.get(self.kind, 0) + length
            self.frames[self.kind] = self.frames.get(self.kind, 0) + 1
            del self.buf[:pos]
            self.skip = length

    def snapshot(self):
        return {"wire": self.wire, "payload": dict(self.payload), "frames": dict(self.frames)}


class CountingProxy:
    """Forwards 127.0.0.1:<port> to ``target``; counts client-to-server frames of all connections."""

    def __init__(self, target_port, host="127.0.0.1"):
        self.target = (host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._counters = []
        self._to_server_bytes = 0
        self._threads = []
        self._socks = []
        self._stop = threading.Event()

    @property
    def url(self):
        return "ws://127.0.0.1:%d" % self.port

    def start(self):
        t = threading.Thread(target=self._accept, name="bench-proxy", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.listener], [], [], 0.2)
            if not r:
                continue
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            counter = FrameCounter()
            with self._lock:
                self._counters.append(counter)
                self._socks += [client, server]
            t = threading.Thread(target=self._pump, args=(client, server, counter), name="bench-proxy-conn",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, client, server, counter):
        socks = [client, server]
        try:
            while not self._stop.is_set():
                r, _, _ = select.select(socks, [], [], 0.2)
                for s in r:
                    data = s.recv(262144)
                    if not data:
                        return
                    if s is client:
                        with self._lock:
                            counter.feed(data)
                        server.sendall(data)
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass

    def snapshot(self):
        """Totals over every connection so far: wire bytes, payload bytes and frames per kind."""
        with self._lock:
            total = {"wire": 0, "payload": {}, "frames": {}}
            for c in self._counters:
                snap = c.snapshot()
                total["wire"] += snap["wire"]
                for key in ("payload", "frames"):
                    for k, v in snap[key].items():
                        total[key][k] = total[key].get(k, 0) + v
            return total

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.listener.close()
