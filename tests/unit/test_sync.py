"""The sync loop (mrmd_monitor/sync.py) against a fake y-sync server on the
other end of a socketpair: handshake, remote and local updates, the message
size limit (local inserts and the resync after a reconnect), refusal by the
server, hostile updates, a stop while disconnected, descriptors numbered past
1024, and secrets kept out of log lines."""

import base64
import hashlib
import json
import logging
import os
import queue
import resource
import select
import socket
import threading
import time

import pytest
import websocket
from pycrdt import Doc, Map, Text

from mrmd_monitor import messages as m
from mrmd_monitor.config import Config
from mrmd_monitor.errors import SyncAuthRefused
from mrmd_monitor import connection, presence
from mrmd_monitor.connection import open_websocket
from mrmd_monitor.presence import renewal_delay
from mrmd_monitor.redact import mask
from mrmd_monitor.sync import SyncThread
from mrmd_monitor.updates import MAX_VALUE_DEPTH, write_varuint
from tests.support.waiting import wait_until

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(payload, opcode=0x2):
    out = bytearray([0x80 | opcode])
    n = len(payload)
    if n < 126:
        out.append(n)
    elif n < 65536:
        out += bytes([126]) + n.to_bytes(2, "big")
    else:
        out += bytes([127]) + n.to_bytes(8, "big")
    return bytes(out) + payload


def _sync_msg(subtype, payload):
    out = bytearray([0, subtype])
    write_varuint(out, len(payload))
    return bytes(out) + payload


def _read_payload(data):
    """The varUint8Array after a sync message's two type bytes."""
    n, shift, pos = 0, 0, 2
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return data[pos:pos + n]


class FakeServer:
    """The server end of a socketpair: the websocket handshake, then y-sync
    like the y-websocket server (its own step 1 first, step 2 answers,
    updates applied to its own Doc). Records every message it receives."""

    def __init__(self, sock, doc=None, on_connect=None):
        self.sock = sock
        self.doc = doc or Doc()
        self.received = []          # (opcode, payload)
        self.request = b""
        self.closed = threading.Event()
        self._on_connect = on_connect
        self._lock = threading.Lock()
        # The test reads the Doc while this thread applies updates: a pycrdt Doc is not
        # for two threads at once.
        self._doc_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="fake-sync-server", daemon=True)
        self.thread.start()

    # -- wire
    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def _recv_frame(self):
        b0, b1 = self._recv_exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self._recv_exact(2), "big")
        elif n == 127:
            n = int.from_bytes(self._recv_exact(8), "big")
        mask = self._recv_exact(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytearray(self._recv_exact(n))
        for i in range(n):
            data[i] ^= mask[i % 4]
        return b0 & 0x0F, bytes(data)

    def send(self, payload, opcode=0x2):
        with self._lock:
            self.sock.sendall(_frame(payload, opcode))

    def close_with(self, code, reason):
        self.send(code.to_bytes(2, "big") + reason.encode(), opcode=0x8)

    def drop(self):
        """The connection breaks (no close frame)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # -- protocol
    def _run(self):
        try:
            while b"\r\n\r\n" not in self.request:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return
                self.request += chunk
            key = [line.split(b":", 1)[1].strip() for line in self.request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key + _GUID.encode()).digest())
            self.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            if self._on_connect is not None:
                self._on_connect(self)
            with self._doc_lock:
                state = self.doc.get_state()
            self.send(_sync_msg(0, state))
            while True:
                opcode, data = self._recv_frame()
                self.received.append((opcode, data))
                if opcode == 0x8:
                    return
                if opcode == 0x9:
                    self.send(data, opcode=0xA)
                    continue
                if opcode != 0x2 or not data or data[0] != 0:
                    continue
                payload = _read_payload(data)
                with self._doc_lock:
                    if data[1] == 0:
                        reply = _sync_msg(1, self.doc.get_update(payload))
                    else:
                        reply = None
                        self.doc.apply_update(payload)
                if reply is not None:
                    self.send(reply)
        except (OSError, ConnectionError, IndexError):
            pass
        finally:
            self.closed.set()

    def sync_messages(self):
        return [d for op, d in self.received if op == 0x2 and d and d[0] == 0]

    def text(self):
        with self._doc_lock:
            return str(self.doc.get("content", type=Text))


class Connector:
    """The SyncThread's ``connect``: each call makes a socketpair and a FakeServer
    (or raises, while ``refuse`` is set)."""

    def __init__(self, make_doc=None, on_connect=None):
        self.servers = []
        self.refuse = threading.Event()
        self.calls = []
        self._make_doc = make_doc
        self._on_connect = on_connect
        self._pairs = []

    def __call__(self, url, *, timeout, header, sslopt):
        self.calls.append((url, header))
        if self.refuse.is_set():
            raise ConnectionRefusedError(111, "Connection refused")
        a, b = socket.socketpair()
        self._pairs.append((a, b))
        server = FakeServer(b, self._make_doc() if self._make_doc else None, self._on_connect)
        self.servers.append(server)
        ws = websocket.WebSocket(enable_multithread=False)
        ws.connect("ws://127.0.0.1/doc", socket=a, timeout=timeout, header=header)
        return ws

    @property
    def server(self):
        return self.servers[-1]

    def close(self):
        for a, b in self._pairs:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass
        for server in self.servers:
            server.thread.join(5)


class NoPool:
    def __getattr__(self, name):
        raise AssertionError("no run is expected in these tests (pool.%s)" % name)


@pytest.fixture
def make_sync():
    started = []

    def make(connector, sync_options=None, **config):
        cfg = Config(sync_url="ws://127.0.0.1:9", docs=("doc",), reconnect_max=0.2, grace=5.0,
                     **config)
        exited = threading.Event()
        sync = SyncThread(config=cfg, doc_name="doc", pool=NoPool(), connect=connector,
                          on_exit=lambda s: exited.set(), **(sync_options or {}))
        sync.exited = exited
        started.append((sync, connector))
        sync.start()
        return sync

    yield make
    for sync, connector in started:
        if sync.is_alive():
            sync.post(m.Stop(deadline=time.monotonic()))
            sync.join(10)
        connector.close()
        assert not sync.is_alive(), "the sync thread did not stop"


def call(sync, fn, timeout=10):
    """Run ``fn(sync)`` on the sync thread and return its result."""
    box = queue.Queue()
    sync.post(m.Call(lambda s: box.put(fn(s))))
    return box.get(timeout=timeout)


def text_of(sync):
    return call(sync, lambda s: str(s.doc.get("content", type=Text)))


def insert(sync, value, at=0):
    def do(s):
        s.doc.get("content", type=Text).insert(at, value)
    call(sync, do)


# -- the loop ------------------------------------------------------------------

def test_handshake_then_updates_both_ways(make_sync):
    server_doc = Doc()
    server_doc.get("content", type=Text).insert(0, "from the server ü\n")
    connector = Connector(make_doc=lambda: server_doc)
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10, message="no sync")
    assert text_of(sync) == "from the server ü\n"
    insert(sync, "monitor 😀 ")
    wait_until(lambda: connector.server.text() == "monitor 😀 from the server ü\n", timeout=10)
    # a remote update while connected
    with connector.server._doc_lock:
        before = server_doc.get_state()
        server_doc.get("notes", type=Map)["k"] = {"v": [1, "ü"]}
        update = server_doc.get_update(before)
    connector.server.send(_sync_msg(2, update))
    wait_until(lambda: call(sync, lambda s: s.doc.get("notes", type=Map).to_py())
               == {"k": {"v": [1.0, "ü"]}}, timeout=10)
    # awareness went out, with our state
    assert any(d[0] == 1 for op, d in connector.server.received if op == 0x2 and d)


def test_a_large_local_insert_goes_out_in_messages_under_the_limit(make_sync):
    connector = Connector()
    sync = make_sync(connector, max_message_bytes=64 * 1024)
    wait_until(lambda: sync.synced, timeout=10)
    big = "".join("line %06d ÿ 中\n" % i for i in range(20000))    # ~360 KB
    insert(sync, big)
    wait_until(lambda: connector.server.text() == big, timeout=20, message="the server lacks the insert")
    sizes = [len(d) for d in connector.server.sync_messages()]
    assert max(sizes) <= 64 * 1024
    assert sum(1 for s in sizes if s > 30_000) >= 5, sizes


def test_the_resync_after_an_outage_is_cut_too(make_sync):
    connector = Connector()          # every connection: a server that lost everything
    sync = make_sync(connector, max_message_bytes=32 * 1024)
    wait_until(lambda: sync.synced, timeout=10)
    first = connector.server
    insert(sync, "before\n")
    wait_until(lambda: first.text() == "before\n", timeout=10)
    connector.refuse.set()
    first.drop()
    wait_until(lambda: not sync.synced, timeout=10)
    big = "x" * 200_000 + "\n"
    insert(sync, big, at=len("before\n"))
    connector.refuse.clear()
    wait_until(lambda: len(connector.servers) >= 2 and sync.synced, timeout=15)
    second = connector.server
    wait_until(lambda: second.text() == "before\n" + big, timeout=20)
    assert max(len(d) for d in second.sync_messages()) <= 32 * 1024
    assert len([d for d in second.sync_messages() if d[1] == 1]) >= 6   # step 2, in pieces


def test_close_1008_ends_the_thread_with_a_typed_error_and_no_token(make_sync, caplog):
    token = "s3cret/+&="
    connector = Connector(on_connect=lambda server: server.close_with(1008, "Unauthorized"))
    with caplog.at_level(logging.INFO, logger="mrmd_monitor.sync"):
        sync = make_sync(connector, token=token)
        assert sync.exited.wait(10), "the thread did not end"
    assert isinstance(sync.refused, SyncAuthRefused)
    assert "Unauthorized" in str(sync.refused) and "--token" in str(sync.refused)
    assert not sync.crashed
    assert len(connector.calls) == 1, "it must not retry"
    url, header = connector.calls[0]
    assert header == ["Authorization: Bearer %s" % token]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    for form in (token, "s3cret%2F%2B%26%3D", "s3cret/%2B&="):
        assert form not in caplog.text


def test_a_value_nested_too_deep_is_refused_and_the_loop_goes_on(make_sync, caplog):
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    inner = bytes([117, 0])
    deep = bytes([117, 1]) * 100_000 + inner       # would overflow pycrdt's native stack
    body = bytearray([1, 1, 0x95, 0x06, 0, 0x28, 1, 1]) + b"m" + bytes([1]) + b"x" + bytes([1])
    update = bytes(body) + deep + b"\x00"
    with caplog.at_level(logging.ERROR, logger="mrmd_monitor.sync"):
        connector.server.send(_sync_msg(2, update))
        other = Doc()
        other.get("content", type=Text).insert(0, "still alive")
        connector.server.send(_sync_msg(2, other.get_update()))
        wait_until(lambda: text_of(sync) == "still alive", timeout=10)
    assert sync.is_alive() and not sync.crashed
    assert "nested deeper than" in caplog.text


def test_stop_while_disconnected_reconnects_and_flushes_within_grace(make_sync):
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    connector.refuse.set()
    connector.server.drop()
    wait_until(lambda: not sync.synced, timeout=10)
    insert(sync, "written while the server was away\n")
    n = len(connector.servers)
    sync.post(m.Stop(deadline=time.monotonic() + 8.0))
    time.sleep(0.3)      # deliberately stopping while still refused
    assert sync.is_alive(), "it gave up without trying to flush"
    connector.refuse.clear()
    assert sync.exited.wait(10), "the thread did not finish"
    assert len(connector.servers) == n + 1
    assert connector.server.text() == "written while the server was away\n"


def test_descriptors_numbered_past_1024(make_sync):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        assert hard >= 1200, "this test needs RLIMIT_NOFILE >= 1200 (hard limit %d)" % hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    held = []
    try:
        while True:
            fd = socket.socket()
            held.append(fd)
            if fd.fileno() > 1030:
                break
        connector = Connector()
        sync = make_sync(connector)
        wait_until(lambda: sync.synced, timeout=10, message="no sync with descriptors past 1024")
        assert sync.mailbox.fileno() > 1024
        insert(sync, "past 1024\n")
        wait_until(lambda: connector.server.text() == "past 1024\n", timeout=10)
        assert sync.is_alive() and not sync.crashed
    finally:
        for s in held:
            s.close()
        if soft < 1200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_sync_thread_gets_its_own_stack_size(make_sync):
    before = threading.stack_size()
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    assert threading.stack_size() == before
    # a value nested to the limit of what is accepted, converted on the sync thread
    depth = MAX_VALUE_DEPTH - 2
    value = []
    for _ in range(depth):
        value = [value]
    other = Doc()
    other.get("m", type=Map)["deep"] = value
    connector.server.send(_sync_msg(2, other.get_update()))

    def convert(s):
        if "deep" not in s.doc.get("m", type=Map):
            return None
        converted = s.doc.get("m", type=Map).to_py()["deep"]
        try:
            json.dumps(converted)
        except RecursionError:
            pass
        n = 0
        while converted:
            converted = converted[0]
            n += 1
        return n

    assert wait_until(lambda: call(sync, convert), timeout=20) == depth
    assert sync.is_alive() and not sync.crashed


# -- secrets and redirects -----------------------------------------------------------

def test_redact_masks_every_form_of_a_secret():
    token = "a b/c+d&e=f"
    text = "raw %s quoted %s plus %s" % (token, "a%20b%2Fc%2Bd%26e%3Df", "a+b%2Fc%2Bd%26e%3Df")
    assert mask(text, [token]) == "raw *** quoted *** plus ***"
    assert mask("ws://user:p%40ss@host:1/doc") == "ws://user:***@host:1/doc"
    assert mask("ws://host:1/doc") == "ws://host:1/doc"


def test_websocket_redirects_are_not_followed():
    """A redirect to another host must not get the Authorization header."""
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(1)
    target.settimeout(0.5)
    redirector = socket.socket()
    redirector.bind(("127.0.0.1", 0))
    redirector.listen(1)
    port = target.getsockname()[1]

    def answer():
        conn, _ = redirector.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:%d/elsewhere\r\n"
                         b"Content-Length: 0\r\n\r\n" % port)

    t = threading.Thread(target=answer, name="redirector")
    t.start()
    try:
        with pytest.raises(websocket.WebSocketException):
            open_websocket("ws://127.0.0.1:%d/doc" % redirector.getsockname()[1], timeout=5,
                            header=["Authorization: Bearer tok"], sslopt=None)
        with pytest.raises(socket.timeout):
            target.accept()     # nobody came
    finally:
        t.join(5)
        target.close()
        redirector.close()


def test_awareness_state_is_extensible(make_sync):
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    call(sync, lambda s: s.set_awareness_fields(capacity=3))
    state = call(sync, lambda s: s.presence.state())
    assert state["user"]["type"] == "monitor" and state["capacity"] == 3
    call(sync, lambda s: s.set_awareness_fields(capacity=None))
    assert "capacity" not in call(sync, lambda s: s.presence.state())


# -- awareness renewals ----------------------------------------------------------

def _awareness_sent(server):
    return [d for op, d in server.received if op == 0x2 and d and d[0] == 1]


def _peer_awareness(client_id, clock, state):
    """A y-websocket awareness message for one peer (``state`` None: it left)."""
    body = bytearray()
    write_varuint(body, 1)
    write_varuint(body, client_id)
    write_varuint(body, clock)
    text = json.dumps(state).encode()
    write_varuint(body, len(text))
    body += text
    out = bytearray([1])
    write_varuint(out, len(body))
    return bytes(out + body)


def test_a_renewal_comes_20_to_24_s_after_the_last_one():
    """6 s of margin before y-protocols peers (and the server) drop a state at 30 s."""
    assert renewal_delay(rng=lambda: 0.0) == 20.0
    assert renewal_delay(rng=lambda: 0.999999) < 24.0
    assert 30.0 - presence.AWARENESS_RENEW[1] >= 6.0
    assert connection.KEEPALIVE > presence.AWARENESS_RENEW[1]


def test_who_needs_our_renewals():
    """Another peer in awareness, a run of ours, or the control document."""
    cfg = Config(sync_url="ws://127.0.0.1:9", docs=("doc",))
    alone = SyncThread(config=cfg, doc_name="doc", pool=NoPool())
    assert not alone._renewing()
    alone.coordinator.runs["x"] = object()
    assert alone._renewing()
    other = SyncThread(config=cfg, doc_name="doc", pool=NoPool())
    other.presence.receive(_peer_awareness(999_999_999, 1, {"name": "b"}), 0.0)
    assert other._renewing()
    assert SyncThread(config=cfg, doc_name="doc", pool=NoPool(), renew_alone=True)._renewing()


def test_alone_the_monitor_falls_silent_and_announces_itself_when_a_peer_appears(make_sync,
                                                                                monkeypatch):
    monkeypatch.setattr(presence, "AWARENESS_RENEW", (0.1, 0.2))
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    wait_until(lambda: call(sync, lambda s: s.presence.due) == float("-inf"), timeout=10,
               message="still renewing while alone")
    sent = len(_awareness_sent(connector.server))
    assert sent >= 1     # the announcement on connecting
    connector.server.send(_peer_awareness(999_999_999, 1, {"name": "browser"}))
    wait_until(lambda: len(_awareness_sent(connector.server)) >= sent + 3, timeout=10,
               message="no announcement and renewals once a peer appeared")
    last = _awareness_sent(connector.server)[-1]
    assert b'"type":"monitor"' in last
    connector.server.send(_peer_awareness(999_999_999, 2, None))       # the browser leaves
    wait_until(lambda: call(sync, lambda s: s.presence.due) == float("-inf"), timeout=10,
               message="still renewing after the peer left")


def test_a_silent_monitor_announces_itself_before_anything_it_writes(make_sync, monkeypatch):
    """Presence before claims, on the same ordered connection (claims.Claims.acked)."""
    monkeypatch.setattr(presence, "AWARENESS_RENEW", (0.1, 0.2))
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    wait_until(lambda: call(sync, lambda s: s.presence.due) == float("-inf"), timeout=10)
    silent_at = len(connector.server.received)
    insert(sync, "written while alone\n")
    wait_until(lambda: connector.server.text() == "written while alone\n", timeout=10)
    after = [d[0] for op, d in connector.server.received[silent_at:] if op == 0x2 and d]
    assert after[0] == 1, after    # awareness first, then the update


def test_a_monitor_just_synced_counts_a_silent_one_as_present(make_sync, monkeypatch):
    """Until a silent monitor can have answered our arrival, our claims settle."""
    monkeypatch.setattr(presence, "AWARENESS_SETTLE", 3.0)
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    assert call(sync, lambda s: s.other_monitors_present())
    wait_until(lambda: not call(sync, lambda s: s.other_monitors_present()), timeout=10)


def test_the_control_document_renews_even_alone(make_sync, monkeypatch):
    monkeypatch.setattr(presence, "AWARENESS_RENEW", (0.1, 0.2))
    connector = Connector()
    sync = make_sync(connector, sync_options={"renew_alone": True})
    wait_until(lambda: sync.synced, timeout=10)
    wait_until(lambda: len(_awareness_sent(connector.server)) >= 4, timeout=10,
               message="the control document stopped renewing")


def test_the_servers_echo_of_our_own_state_is_not_applied(make_sync, monkeypatch):
    """The server sends every awareness update to the whole room, ours back to us."""
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced and _awareness_sent(connector.server), timeout=10)
    applied = []

    def spy(s):
        real = s.presence._heard
        s.presence._heard = lambda client_id, *rest: (applied.append(client_id),
                                                       real(client_id, *rest))[1]
    call(sync, spy)
    connector.server.send(_awareness_sent(connector.server)[-1])    # the echo
    connector.server.send(_peer_awareness(999_999_999, 1, {"name": "browser"}))
    wait_until(lambda: call(sync, lambda s: s.peer_alive(999_999_999)), timeout=10)
    assert applied == [999_999_999]      # the browser's, not the echo


def _open_fds():
    """Open descriptors (without the one listdir used for the listing)."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        out.add(int(name))
    return out


def test_a_document_costs_two_descriptors(make_sync):
    """Its websocket and its mailbox (an eventfd); the socketpair's server end is the test's."""
    before = _open_fds()
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    new = _open_fds() - before
    ws_fd = call(sync, lambda s: s.conn.sock.fileno())
    expected = {ws_fd, connector.server.sock.fileno(), sync.mailbox.fileno()}
    if sync.mailbox.descriptors() == 2:
        expected.add(sync.mailbox._wfd)
    assert new == expected
    assert sync.mailbox.descriptors() == (1 if hasattr(os, "eventfd") else 2)


def test_secrets_stay_out_of_the_log_when_connecting_fails(make_sync, caplog):
    token = "t0k/+&=en"
    connector = Connector()
    connector.refuse.set()

    def refuse_loudly(url, **kw):
        connector.calls.append((url, kw.get("header")))
        raise ConnectionRefusedError(111, "refused by %s with header %s" % (url, kw.get("header")))

    with caplog.at_level(logging.DEBUG, logger="mrmd_monitor.sync"):
        cfg = Config(sync_url="ws://user:p%40ss@127.0.0.1:9", docs=("doc",), reconnect_max=0.2,
                     token=token)
        sync = SyncThread(config=cfg, doc_name="doc", pool=NoPool(), connect=refuse_loudly)
        sync.start()
        try:
            wait_until(lambda: len(connector.calls) >= 2, timeout=10)
        finally:
            sync.post(m.Stop(deadline=time.monotonic()))
            sync.join(10)
    assert not sync.is_alive()
    assert "unencrypted ws://" in caplog.text
    assert "cannot connect to ws://user:***@127.0.0.1:9/doc" in caplog.text
    for form in (token, "t0k%2F%2B%26%3Den", "t0k/%2B&=en", "p%40ss", "p@ss"):
        assert form not in caplog.text, form


# -- frames from the server (wsframes.py) --------------------------------------

def test_the_servers_pings_are_answered_with_their_payload(make_sync):
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    for payload in (b"", b"are you there?"):
        connector.server.send(payload, opcode=0x9)
        wait_until(lambda: (0xA, payload) in connector.server.received, timeout=10,
                   message="no pong for %r" % payload)
    assert sync.synced and len(connector.servers) == 1


def test_a_message_in_fragments_with_a_ping_between_them_is_applied(make_sync):
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    other = Doc()
    other.get("content", type=Text).insert(0, "in three pieces ü\n")
    message = _sync_msg(2, other.get_update())
    a, b, c = message[:5], message[5:9], message[9:]
    server = connector.server
    with server._lock:
        server.sock.sendall(bytes([0x02, len(a)]) + a + bytes([0x89, 1]) + b"p"
                            + bytes([0x00, len(b)]) + b + _frame(c, opcode=0x0))
    wait_until(lambda: text_of(sync) == "in three pieces ü\n", timeout=10)
    wait_until(lambda: (0xA, b"p") in server.received, timeout=10, message="no pong")


def test_a_message_over_the_limit_ends_the_connection_at_its_header(make_sync, caplog):
    """A frame declaring 2**40 bytes is refused as soon as its header is in,
    with one log line; the monitor reconnects. (websocket-client waited for the
    payload until --connect-timeout, holding whatever came.)"""
    connector = Connector()
    with caplog.at_level(logging.INFO, logger="mrmd_monitor.sync"):
        sync = make_sync(connector, connect_timeout=60.0)
        wait_until(lambda: sync.synced, timeout=10)
        first = connector.server
        with first._lock:
            first.sock.sendall(bytes([0x82, 127]) + (1 << 40).to_bytes(8, "big") + b"\0" * 1000)
        wait_until(lambda: len(connector.servers) == 2 and sync.synced, timeout=10,
                   message="the monitor did not drop the connection and come back")
    refused = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(refused) == 1
    assert ("a message of more than %d bytes" % connection.MAX_RECEIVED_MESSAGE_BYTES
            in refused[0].getMessage())
    assert not sync.crashed


def test_a_masked_frame_from_the_server_is_refused(make_sync, caplog):
    connector = Connector()
    with caplog.at_level(logging.ERROR, logger="mrmd_monitor.sync"):
        sync = make_sync(connector)
        wait_until(lambda: sync.synced, timeout=10)
        with connector.server._lock:
            connector.server.sock.sendall(bytes([0x82, 0x81]) + b"\1\2\3\4" + b"x")
        wait_until(lambda: len(connector.servers) == 2 and sync.synced, timeout=10)
    assert "a masked frame" in caplog.text


def test_mail_posted_before_a_message_arrives_is_handled_first(make_sync):
    """A reloaded configuration (HUP) posted before a browser's request
    arrives applies to that request: when both wait, the mail goes first."""
    connector = Connector()
    sync = make_sync(connector)
    wait_until(lambda: sync.synced, timeout=10)
    holding, release, seen = threading.Event(), threading.Event(), queue.Queue()

    def hold(s):
        holding.set()
        release.wait(10)
    sync.post(m.Call(hold))
    assert holding.wait(10)
    # While the thread is busy: first the mail, then the server's message.
    sync.post(m.Call(lambda s: seen.put(str(s.doc.get("content", type=Text)))))
    other = Doc()
    other.get("content", type=Text).insert(0, "a request\n")
    connector.server.send(_sync_msg(2, other.get_update()))
    ours = connector._pairs[-1][0]
    wait_until(lambda: select.select([ours], [], [], 0)[0], timeout=10)   # it waits on our socket
    release.set()
    assert seen.get(timeout=10) == ""
    wait_until(lambda: text_of(sync) == "a request\n", timeout=10)


def test_an_awareness_update_for_our_own_client_id_is_answered_with_ours(make_sync):
    """The server relays an update for any client id: a peer speaking for us
    with a higher clock must neither change our members nor stand for long
    in the others' view."""
    from tests.unit.test_presence import decode
    connector = Connector()
    sync = make_sync(connector, sync_options={"member_id": "us-1"})
    wait_until(lambda: sync.synced and _awareness_sent(connector.server), timeout=10)
    call(sync, lambda s: s._publish_member())
    assert [mb.id for mb in sync.members] == ["us-1"]
    sent = len(_awareness_sent(connector.server))
    connector.server.send(_peer_awareness(sync.client_id, 1000, {"user": {"name": "evil"}}))
    wait_until(lambda: len(_awareness_sent(connector.server)) > sent, timeout=5,
               message="our state was not said again")
    (cid, clock, state), = decode(_awareness_sent(connector.server)[-1])
    assert cid == sync.client_id and clock > 1000 and state["user"]["type"] == "monitor"
    assert [mb.id for mb in call(sync, lambda s: s.members)] == ["us-1"]
