"""A TCP proxy in front of the real y-websocket server, on 127.0.0.1.

It stands in for what the npm server lacks or hides: mrmd-sync's ``/stats``
(the documents it lists are set by the test), and a view of the traffic:
every request head (to check a token is sent), and the size of every
websocket frame a client sends (to check no update nears the 1 MiB limit).
"""

import json
import socket
import struct
import threading

from .ports import free_port


class SyncProxy:
    def __init__(self, upstream_port, documents=None, tls=None):
        self.upstream_port = upstream_port
        self.documents = documents        # None: no /stats (404), like the npm server
        self.blocked = set()              # document paths whose connections are dropped
        self.tls = tls                    # an ssl.SSLContext: serve wss:// instead of ws://
        self.heads = []                   # request heads, decoded
        self.frame_sizes = []             # payload sizes of client-to-server frames
        self.client_bytes = 0
        self._lock = threading.Lock()
        self._threads = []
        self._socks = []
        self._closed = False
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.url = "%s://%s:%d" % ("wss" if tls else "ws", "localhost" if tls else "127.0.0.1",
                                   self.port)
        t = threading.Thread(target=self._accept, name="sync-proxy", daemon=True)
        self._threads.append(t)

    def start(self):
        self._threads[0].start()
        return self

    def stop(self):
        self._closed = True
        try:
            # close() alone does not wake a thread blocked in accept(); shutdown() does.
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.listener.close()
        except OSError:
            pass
        self.cut()
        for t in list(self._threads):
            t.join(5)

    def cut(self):
        """Drop every connection made so far; the proxy keeps listening (with
        ``blocked``, a document's clients then stay away until it is cleared)."""
        with self._lock:
            socks, self._socks = list(self._socks), []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def max_frame(self):
        with self._lock:
            return max(self.frame_sizes, default=0)

    def _track(self, s):
        with self._lock:
            self._socks.append(s)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, name="sync-proxy-conn", daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._track(client)
            self._spawn(self._serve, client)

    def _serve(self, client):
        if self.tls is not None:
            try:
                client.settimeout(5)
                client = self.tls.wrap_socket(client, server_side=True)
                client.settimeout(None)
            except (OSError, ValueError):
                client.close()   # e.g. the client did not trust our certificate
                return
            self._track(client)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    client.close()
                    return
                head += chunk
        except OSError:
            return
        text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        with self._lock:
            self.heads.append(text)
        path = text.split(" ")[1] if " " in text else "/"
        if path.split("?")[0].lstrip("/") in self.blocked:
            client.close()
            return
        if path.split("?")[0] == "/stats":
            if self.documents is None:
                body, status = b"not found", "404 Not Found"
            else:
                body = json.dumps({"documents": [{"name": d} for d in self.documents]}).encode()
                status = "200 OK"
            client.sendall(("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: "
                            "%d\r\nConnection: close\r\n\r\n" % (status, len(body))).encode() + body)
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        upstream.sendall(head)
        self._spawn(self._pump, upstream, client, False)
        self._pump(client, upstream, True, head.split(b"\r\n\r\n", 1)[1])

    def _pump(self, src, dst, from_client, pending=b""):
        frames = _FrameCounter(self) if from_client else None
        if frames and pending:
            frames.feed(pending)
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if frames:
                    frames.feed(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _FrameCounter:
    """Reads websocket frame headers out of a client's byte stream."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.buf = b""
        self.skip = 0

    def feed(self, data):
        with self.proxy._lock:
            self.proxy.client_bytes += len(data)
        if self.skip:
            n = min(self.skip, len(data))
            self.skip -= n
            data = data[n:]
        self.buf += data
        while True:
            b = self.buf
            if len(b) < 2:
                return
            length = b[1] & 0x7F
            pos = 2
            if length == 126:
                if len(b) < 4:
                    return
                length = struct.unpack(">H", b[2:4])[0]
                pos = 4
            elif length == 127:
                if len(b) < 10:
                    return
                length = struct.unpack(">Q", b[2:10])[0]
                pos = 10
            if b[1] & 0x80:
                pos += 4
            if len(b) < pos:
                return
            with self.proxy._lock:
                self.proxy.frame_sizes.append(length)
            rest = b[pos:]
            if len(rest) >= length:
                self.buf = rest[length:]
            else:
                self.skip = length - len(rest)
                self.buf = b""
                return
