"""Hostile clients of the status server and hostile files in the assets dir.

The status server may listen on more than loopback, and the assets it serves
are rich outputs a notebook produced: untrusted content. Each test is the
attack, then what the operator (or the browser) gets.
"""

import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from mrmd_monitor.assets import AssetStore
from mrmd_monitor.errors import AssetRejected
from mrmd_monitor.metrics import Metrics
from mrmd_monitor.status import MAX_CONNECTIONS, StatusServer
from tests.support.waiting import wait_until

NAME = "0123456789abcdef0123456789abcdef"


def get(server, path):
    host, port = server.bound
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (host, port, path), timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


@pytest.fixture
def status():
    servers = []

    def start(**kwargs):
        server = StatusServer("127.0.0.1:0", Metrics(), lambda: [], **kwargs).start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def test_slow_clients_hold_a_bounded_number_of_threads_and_only_until_the_deadline(status):
    server = status(request_deadline=3.0)
    host, port = server.bound
    clients = []
    stop = threading.Event()
    peak = [0]

    def sample():  # the most threads the process had while the clients were at it
        while not stop.wait(0.01):
            peak[0] = max(peak[0], threading.active_count())

    def trickle():  # one header byte every 0.3 s per client: no single read ever times out
        while not stop.wait(0.3):
            for sock in list(clients):
                try:
                    sock.send(b"X")
                except OSError:
                    pass

    helpers = [threading.Thread(target=sample, name="test-sample"),
               threading.Thread(target=trickle, name="test-trickle")]
    for helper in helpers:
        helper.start()
    baseline = threading.active_count()  # the test's threads, the helpers and the accept thread
    try:
        for _ in range(150):
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            clients.append(sock)
        wait_until(lambda: peak[0] > baseline, timeout=10)
        # The deadline frees every slot although the clients are still sending.
        wait_until(lambda: threading.active_count() <= baseline, timeout=20)
        # 150 slow clients held at most MAX_CONNECTIONS handler threads at any time.
        assert peak[0] - baseline <= MAX_CONNECTIONS, peak[0] - baseline
        code, _, body = get(server, "/healthz")
        assert (code, body) == (200, b"ok\n")
    finally:
        stop.set()
        for helper in helpers:
            helper.join()
        for sock in clients:
            sock.close()


def test_a_client_over_the_limit_gets_503_at_once(status):
    server = status(request_deadline=30.0, max_connections=2)
    host, port = server.bound
    holders = [socket.create_connection((host, port), timeout=5) for _ in range(2)]
    try:
        for sock in holders:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        wait_until(lambda: sum(t.name.startswith("status-conn") for t in threading.enumerate()) == 2,
                   timeout=10)
        started = time.monotonic()
        code, headers, _ = get(server, "/healthz")
        assert code == 503 and time.monotonic() - started < 5
        assert headers["X-Content-Type-Options"] == "nosniff"
    finally:
        for sock in holders:
            sock.close()
    wait_until(lambda: get(server, "/healthz")[0] == 200, timeout=10)


def test_every_answer_says_nosniff(status, tmp_path):
    server = status(assets_dir=str(tmp_path))
    (tmp_path / (NAME + ".png")).write_bytes(b"\x89PNG")
    for path in ("/healthz", "/metrics", "/nothing", "/assets/" + NAME + ".png", "/assets/x"):
        _, headers, _ = get(server, path)
        assert headers["X-Content-Type-Options"] == "nosniff", path


@pytest.mark.parametrize("ext, ctype", [(".html", "text/html"), (".svg", "image/svg+xml"),
                                        (".png", "image/png")])
def test_assets_are_sandboxed(status, tmp_path, ext, ctype):
    (tmp_path / (NAME + ext)).write_bytes(b"<script>alert(document.cookie)</script>")
    server = status(assets_dir=str(tmp_path))
    code, headers, body = get(server, "/assets/" + NAME + ext)
    assert code == 200 and headers["Content-Type"].startswith(ctype)
    assert headers["Content-Security-Policy"] == "sandbox"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_symlink_in_the_assets_dir_is_not_followed(status, tmp_path):
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("operator secret")
    assets = tmp_path / "assets"
    assets.mkdir()
    os.symlink(secret, assets / (NAME + ".txt"))
    server = status(assets_dir=str(assets))
    code, _, body = get(server, "/assets/" + NAME + ".txt")
    assert code == 404 and b"operator secret" not in body


def test_a_fifo_in_the_assets_dir_does_not_hang_the_server(status, tmp_path):
    os.mkfifo(tmp_path / (NAME + ".txt"))
    server = status(assets_dir=str(tmp_path), request_deadline=30.0)
    started = time.monotonic()
    assert get(server, "/assets/" + NAME + ".txt")[0] == 404
    assert time.monotonic() - started < 5


def test_storing_an_asset_never_writes_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    assets = tmp_path / "assets"
    assets.mkdir()
    store = AssetStore(str(assets))
    data = "<b>big</b>" * 10
    import hashlib

    name = hashlib.sha256(data.encode()).hexdigest()[:32] + ".html"
    for planted in (name + ".tmp", ".tmp-" + name):  # the old fixed temp name, and a guess
        os.symlink(victim, assets / planted)
    stored, _ = store.put("text/html", data)
    assert stored == name
    assert victim.read_text() == "keep me"
    assert (assets / name).read_text() == data and not (assets / name).is_symlink()


def test_the_assets_dir_is_kept_under_its_quota_oldest_first(tmp_path):
    store = AssetStore(str(tmp_path), max_bytes=3000)
    names = []
    for i in range(6):
        name, _ = store.put("text/html", ("%d" % i) * 1000)
        names.append(name)
        os.utime(tmp_path / name, (1000 + i, 1000 + i))  # a clear age order
    kept = sorted(os.listdir(tmp_path))
    assert kept == sorted(names[-3:])
    assert sum(os.path.getsize(tmp_path / n) for n in kept) <= 3000


def test_an_asset_larger_than_the_quota_is_refused(tmp_path):
    store = AssetStore(str(tmp_path), max_bytes=100)
    with pytest.raises(AssetRejected, match="larger than --assets-max-bytes"):
        store.put("text/html", "x" * 101)
    assert os.listdir(tmp_path) == []


def test_old_assets_are_removed_after_the_retention(tmp_path):
    clock = [10_000.0]
    store = AssetStore(str(tmp_path), retention=3600, clock=lambda: clock[0])
    old, _ = store.put("text/html", "old" * 10)
    os.utime(tmp_path / old, (clock[0] - 4000, clock[0] - 4000))
    new, _ = store.put("text/html", "new" * 10)
    assert os.listdir(tmp_path) == [new]


def test_a_large_asset_is_sent_whole_and_head_gives_its_length(status, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 7)
    (tmp_path / (NAME + ".png")).write_bytes(data)
    server = status(assets_dir=str(tmp_path))
    code, headers, body = get(server, "/assets/" + NAME + ".png")
    assert code == 200 and body == data and headers["Content-Length"] == str(len(data))
    host, port = server.bound
    request = urllib.request.Request("http://%s:%d/assets/%s.png" % (host, port, NAME),
                                     method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["Content-Length"] == str(len(data)) and resp.read() == b""
