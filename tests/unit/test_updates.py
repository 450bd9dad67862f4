"""Cutting Yjs v1 updates (mrmd_monitor/updates.py) made by real pycrdt documents:
every piece is under the limit; the pieces give the same state as the whole
update in pycrdt (in the order they are sent) and in Yjs, the sync server's
and the browsers' library, in any order.

(yrs 0.28 loses structs when some cut updates arrive in reverse order, where
Yjs does not; a websocket keeps the order, so pycrdt peers see them in order.)"""

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from pycrdt import Array, Doc, Map, Text

from mrmd_monitor.errors import UpdateFormatError
from mrmd_monitor.updates import (client_clocks, decode_state_vector, encode_state_vector,
                                  parse_update, split_update)

JS_DIR = Path(__file__).resolve().parents[1] / "js"


def _byte_offset(text, index):
    return len(text[:index].encode("utf-8"))


def _insert(text, index, value):
    """Insert at a code-point index (pycrdt takes UTF-8 byte offsets)."""
    text.insert(_byte_offset(str(text), index), value)


def _delete(text, start, end):
    s = str(text)
    del text[_byte_offset(s, start):_byte_offset(s, end)]


def _snapshot(doc):
    return (str(doc.get("content", type=Text)), doc.get("executions", type=Map).to_py(),
            doc.get("arr", type=Array).to_py(), doc.get_state())


def _fresh_from(updates):
    doc = Doc()
    for update in updates:
        doc.apply_update(update)
    return doc


# Yjs (the sync server and the browsers) applies the pieces in any order.
_YJS_APPLY = """
const Y = require('yjs');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = [];
for (const order of input) {
  const d = new Y.Doc();
  for (const hex of order) Y.applyUpdate(d, Buffer.from(hex, 'hex'));
  out.push({text: d.getText('content').toString(), map: d.getMap('executions').toJSON(),
            arr: d.getArray('arr').toJSON(),
            sv: Buffer.from(Y.encodeStateVector(d)).toString('hex'),
            pending: d.store.pendingStructs !== null || d.store.pendingDs !== null});
}
process.stdout.write(JSON.stringify(out));
"""


def _yjs_states(orders):
    node = shutil.which("node")
    assert node is not None, "node is needed to check the pieces against Yjs"
    assert (JS_DIR / "node_modules" / "yjs").exists(), "run `npm ci` in tests/js"
    done = subprocess.run([node, "-e", _YJS_APPLY], cwd=JS_DIR, capture_output=True, text=True,
                          input=json.dumps([[u.hex() for u in order] for order in orders]),
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _assert_pieces_rebuild(update, limit, seed=0):
    pieces = split_update(update, limit)
    assert pieces, "no pieces"
    assert max(len(p) for p in pieces) <= limit
    # pycrdt, in the order they are sent (the websocket keeps it)
    assert _snapshot(_fresh_from(pieces)) == _snapshot(_fresh_from([update]))
    # Yjs, in any order
    rng = random.Random(seed)
    whole, *states = _yjs_states([[update], pieces, pieces[::-1], rng.sample(pieces, len(pieces))])
    assert not whole["pending"]
    for state in states:
        assert state == whole
    return pieces


def test_small_update_comes_back_unchanged():
    doc = Doc()
    doc.get("content", type=Text).insert(0, "hello")
    update = doc.get_update()
    assert split_update(update, 1 << 20) == [update]


def test_one_huge_insert_is_cut_into_pieces_under_the_limit():
    doc = Doc()
    doc.get("content", type=Text).insert(0, "x" * 1_500_000)
    update = doc.get_update()
    pieces = _assert_pieces_rebuild(update, 1 << 20)
    assert len(pieces) == 2
    pieces = _assert_pieces_rebuild(update, 100_000)
    assert len(pieces) >= 15


def test_multibyte_text_is_never_cut_inside_a_character():
    doc = Doc()
    doc.get("content", type=Text).insert(0, "é😀中a" * 12_000)   # 1-, 2-, 3- and 4-byte characters
    update = doc.get_update()
    for limit in (2048, 10_007):
        pieces = _assert_pieces_rebuild(update, limit)
        assert len(pieces) > 1
        assert str(_fresh_from(pieces).get("content", type=Text)) == "é😀中a" * 12_000


def test_edits_deletes_maps_arrays_and_several_clients():
    rng = random.Random(7)
    a = Doc()
    text = a.get("content", type=Text)
    entries = a.get("executions", type=Map)
    arr = a.get("arr", type=Array)
    _insert(text, 0, "héllo 😀 中文\n" * 6_000)
    for i in range(100):
        s = str(text)
        _insert(text, rng.randrange(len(s)), "ab😀%d" % i)
    _delete(text, 10, 5000)
    _delete(text, 30_000, 30_100)
    entries["e1"] = {"status": "running", "code": "print('ü')" * 500, "displayData": [{"a": [1, 2.5, None, True]}]}
    entries["e2"] = {"nested": {"deeper": {"list": list(range(50))}}}
    arr.extend(list(range(600)))
    b = Doc()
    b.apply_update(a.get_update())
    tb = b.get("content", type=Text)
    _insert(tb, 3, "from b " * 3000)
    b.get("executions", type=Map)["e1"] = {"status": "cancelled"}
    del b.get("executions", type=Map)["e2"]
    update = b.get_update()
    assert len({c for c, _ in parse_update(update)[0]}) == 2
    for seed, limit in enumerate((8192, 30_000, 250_000)):
        _assert_pieces_rebuild(update, limit, seed)


def test_a_large_delete_set_travels_in_pieces():
    doc = Doc()
    text = doc.get("content", type=Text)
    for i in range(1500):
        text.insert(0, "line %05d\n" % i)
    for i in range(0, 3000, 2):     # many separate deleted ranges
        del text[i:i + 1]
    update = doc.get_update()
    runs, delete_set = parse_update(update)
    assert sum(len(r) for _, r in delete_set) > 1000
    pieces = _assert_pieces_rebuild(update, 4096)
    assert len(pieces) > 3


def test_a_diff_against_a_state_vector_is_cut_the_same_way():
    """The resync after an outage: the reply to a sync step 1 is a diff
    against the server's state vector; its pieces complete the server's copy."""
    doc = Doc()
    text = doc.get("content", type=Text)
    _insert(text, 0, "bèfore\n")
    server = Doc()
    server.apply_update(doc.get_update())
    _insert(text, 7, "y" * 700_000)
    _insert(text, 0, "ü" * 10)
    diff = doc.get_update(server.get_state())
    pieces = split_update(diff, 200_000)
    assert len(pieces) >= 4 and max(map(len, pieces)) <= 200_000
    for piece in reversed(pieces):
        server.apply_update(piece)
    assert str(server.get("content", type=Text)) == "ü" * 10 + "bèfore\n" + "y" * 700_000
    assert server.get_state() == doc.get_state()


def test_a_single_value_larger_than_the_limit_is_refused_clearly():
    doc = Doc()
    doc.get("executions", type=Map)["big"] = {"data": "z" * 50_000}
    with pytest.raises(UpdateFormatError, match="cannot be cut"):
        split_update(doc.get_update(), 10_000)


@pytest.mark.parametrize("garbage", [b"\x05", b"\x01\x01\x01\x01\xff", b"\x01\x01\x02\x00\x1f\x00",
                                     b"\x00\x00\x00"])
def test_garbage_is_a_format_error_not_a_crash(garbage):
    with pytest.raises(UpdateFormatError):
        split_update(garbage + b"\x00" * 2000, 1024)


def test_state_vectors_round_trip_and_clocks_are_read_from_updates():
    doc = Doc(client_id=4242)
    doc.get("content", type=Text).insert(0, "abc😀")   # 3 + 2 UTF-16 units
    sv = decode_state_vector(doc.get_state())
    assert sv == {4242: 5}
    assert decode_state_vector(encode_state_vector(sv)) == sv
    assert client_clocks(doc.get_update()) == {4242: 5}


def _nested_entry_update(depth, kind):
    """A map entry holding ``depth`` nested arrays or objects, as lib0 encodes it."""
    inner = bytes([117, 0])
    for _ in range(depth):
        inner = (bytes([117, 1]) if kind == "array" else bytes([118, 1, 1, ord("k")])) + inner
    body = bytearray([1, 1, 0x95, 0x06, 0])              # one client run: 1 struct, client 789, clock 0
    body += bytes([0x28, 1, 1]) + b"m" + bytes([1]) + b"x" + bytes([1]) + inner
    return bytes(body) + b"\x00"


@pytest.mark.parametrize("kind", ["array", "object"])
def test_values_nested_past_the_limit_are_refused_before_pycrdt_sees_them(kind):
    ok = _nested_entry_update(100, kind)
    parse_update(ok, max_depth=200)
    doc = Doc()
    doc.apply_update(ok)
    assert "x" in doc.get("m", type=Map)
    with pytest.raises(UpdateFormatError, match="nested deeper than 200"):
        parse_update(_nested_entry_update(300, kind), max_depth=200)
    # the default limit, far past Python's recursion limit, without a RecursionError
    with pytest.raises(UpdateFormatError, match="nested deeper"):
        parse_update(_nested_entry_update(100_000, kind))
