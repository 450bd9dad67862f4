"""The reference: a bare SSE reader (stdlib ``http.client``, splits lines, stops at ``done``).

It does the least any client must do with an MRP stream: send the request,
read the body as it arrives and split it into lines until the ``done``
event. It parses no JSON except, with ``stamps``, the ``content`` of output
events, to find the ``T<epoch ms>`` lines that the latency workloads print.

Run as a process (the monitor is one too, so both get a core of their own):
``python sse_reader.py URL CODE [--session S] [--stamps]`` prints one JSON
object: ``elapsed`` (s, request to done), ``events``, ``output_events``,
``bytes`` (body) and, with ``--stamps``, ``latencies_ms``.
"""

import argparse
import http.client
import json
import re
import sys
import time
import uuid
from urllib.parse import urlsplit

READ_SIZE = 65536
STAMP = re.compile(r"T(\d{10,}\.\d+)")
_DECODER = json.JSONDecoder()
_PREFIX = b'data: {"content": '


def read_stream(url, code, session="bench-ref", stamps=False, timeout=600):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    body = json.dumps({"code": code, "storeHistory": False, "execId": "ref-" + uuid.uuid4().hex[:8],
                       "session": session})
    started = time.perf_counter()
    conn.request("POST", parts.path.rstrip("/") + "/execute/stream", body=body,
                 headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError("HTTP %d: %r" % (resp.status, resp.read(300)))
    events = output_events = nbytes = 0
    latencies = []
    pending = []  # pieces of the line being read
    event = None
    done = False
    while not done:
        data = resp.read1(READ_SIZE)
        if not data:
            break
        nbytes += len(data)
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                if start < len(data):
                    pending.append(data[start:])
                break
            if pending:
                pending.append(data[start:nl])
                line = b"".join(pending)
                pending = []
            else:
                line = data[start:nl]
            start = nl + 1
            if line.startswith(b"event: "):
                event = line[7:].strip()
                events += 1
                if event in (b"stdout", b"stderr"):
                    output_events += 1
            elif line.startswith(b"data: "):
                if event == b"done":
                    done = True
                    break
                if stamps and event in (b"stdout", b"stderr") and line.startswith(_PREFIX):
                    now = time.time() * 1000.0
                    text = line.decode("utf-8")
                    content, _ = _DECODER.raw_decode(text, len(_PREFIX))
                    latencies.extend(now - float(m) for m in STAMP.findall(content))
    elapsed = time.perf_counter() - started
    conn.close()
    return {"elapsed": elapsed, "events": events, "output_events": output_events, "bytes": nbytes,
            "latencies_ms": latencies if stamps else None, "done": done}


def main(argv=None):
    p = argparse.ArgumentParser(description="bare SSE reader (benchmark reference)")
    p.add_argument("url")
    p.add_argument("code")
    p.add_argument("--session", default="bench-ref")
    p.add_argument("--stamps", action="store_true")
    args = p.parse_args(argv)
    print(json.dumps(read_stream(args.url, args.code, args.session, args.stamps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
