"""A runtime that compresses its answers although the monitor asks for
``identity`` cannot make it hold more than its limits.

The monitor decodes a compressed body rather than refuse it, so each read
must stay bounded after decompression: urllib3 bounds it from 2.6.0 on
(``max_length`` in every decoder, at most 5 chained encodings), the version
setup.cfg pins. A 256 MiB answer packed into a few hundred KiB is cut at
MAX_SHORT_BODY for a short call and at --max-event-bytes for a stream."""

import gzip
import tracemalloc
import zlib

import pytest

from mrmd_monitor.errors import RuntimeRefused, StreamError
from mrmd_monitor.mrp import CancelToken, MrpClient
from tests.support.local_http import CAPABILITIES, LocalServer, QuietHandler

MIB = 1024 * 1024
UNPACKED = 256 * MIB


def gzipped(head, filler, size):
    """``head`` then ``size`` bytes of ``filler``, gzip-compressed piece by
    piece (the test never holds the unpacked bytes)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [packer.compress(head)]
    piece = filler * MIB
    for _ in range(size // MIB):
        out.append(packer.compress(piece))
    out.append(packer.flush())
    return b"".join(out)


@pytest.fixture(scope="module")
def bombs():
    spaces = gzipped(b"", b" ", UNPACKED)
    line = gzipped(b'event: stdout\ndata: {"content": "', b"x", UNPACKED)
    return {"capabilities": spaces, "capabilities2": gzip.compress(spaces, 9), "stream": line,
            "stream2": gzip.compress(line, 9)}


@pytest.fixture
def bomb_server(bombs):
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.0"
        layers = 1

        def _bomb(self, body, ctype):
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Encoding", ", ".join(["gzip"] * Handler.layers))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass   # the monitor stopped reading: that is the point

        def do_GET(self):
            if Handler.bomb_capabilities:
                self._bomb(bombs["capabilities2" if Handler.layers == 2 else "capabilities"],
                           "application/json")
            else:
                self.answer_json(200, CAPABILITIES)

        def do_POST(self):
            self.read_json()
            self._bomb(bombs["stream2" if Handler.layers == 2 else "stream"],
                       "text/event-stream")

    with LocalServer(Handler, resets_expected=True) as server:
        server.handler = Handler
        yield server


def peak_during(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("layers", [1, 2])
def test_a_packed_capabilities_answer_is_read_to_the_short_limit(bomb_server, layers):
    bomb_server.handler.bomb_capabilities, bomb_server.handler.layers = True, layers
    client = MrpClient(connect_timeout=5, request_timeout=10)
    try:
        def check():
            with pytest.raises(RuntimeRefused, match="not answer a JSON object"):
                client.check_runtime(bomb_server.url)
        assert peak_during(check) < 16 * MIB
    finally:
        client.close()


@pytest.mark.parametrize("layers", [1, 2])
def test_a_packed_event_stream_is_cut_at_max_event_bytes(bomb_server, layers):
    bomb_server.handler.bomb_capabilities, bomb_server.handler.layers = False, layers
    client = MrpClient(connect_timeout=5, request_timeout=10, idle_timeout=10,
                       max_event_bytes=MIB)
    try:
        def run():
            with pytest.raises(StreamError, match="larger than 1048576 bytes"):
                client.execute_stream(bomb_server.url, code="1", session="s", exec_id="bomb",
                                      on_event=lambda e: None, cancel=CancelToken())
        assert peak_during(run) < 16 * MIB
    finally:
        client.close()


def test_setup_cfg_pins_the_urllib3_that_bounds_decompression():
    import configparser
    import pathlib
    cfg = configparser.ConfigParser()
    cfg.read(pathlib.Path(__file__).resolve().parents[2] / "setup.cfg")
    requires = cfg["options"]["install_requires"].split()
    assert "urllib3>=2.6.0" in requires
