"""Cutting Yjs v1 updates into pieces that each fit in one websocket message.

pycrdt has no API to split an update, and a sync server closes any message
over its limit (mrmd-sync: 1 MiB), so a large insert, a large entry or the
resync after an outage would wedge the document. This module reads the v1
update format just far enough to find struct boundaries:

    update     = varuint n_clients, n_clients x client_run, delete_set
    client_run = varuint n_structs, varuint client, varuint first_clock, structs
    delete_set = varuint n_clients, n x (varuint client, varuint n_ranges,
                 n_ranges x (varuint clock, varuint len))

Every Item encodes its origins as absolute ids, so a run of consecutive
structs of one client, starting at the clock of its first struct, is a valid
update on its own; an Item too large for one message is cut the way Yjs cuts
items (the tail's left origin is the last id of the head). Yjs and yrs keep
pieces whose dependencies have not arrived yet as pending, so the pieces can
be applied in any order; the delete set travels last.

Pure functions over bytes: no pycrdt, no sockets.
"""

from .errors import UpdateFormatError

# Item info byte: low five bits are the content ref, then these flags.
_HAS_ORIGIN = 0x80
_HAS_RIGHT_ORIGIN = 0x40
_HAS_PARENT_SUB = 0x20

_GC = 0
_SKIP = 10
_DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC = 1, 2, 3, 4, 5, 6, 7, 8, 9
_XML_ELEMENT, _XML_HOOK = 3, 5

# Values (map entries, array items) nested deeper than this are refused
# before pycrdt sees them; sync.py sizes its thread stacks for this depth.
MAX_VALUE_DEPTH = 2048

# Reserved per piece for its own framing (client count, run headers, empty
# delete set): generous, so a piece never ends up a few bytes over.
_PIECE_OVERHEAD = 64
_RUN_HEADER = 32


# -- lib0 encoding -------------------------------------------------------------

def write_varuint(out, n):
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)


def _varuint(n):
    out = bytearray()
    write_varuint(out, n)
    return bytes(out)


class _Reader:
    __slots__ = ("buf", "pos", "max_depth")

    def __init__(self, buf, pos=0, max_depth=MAX_VALUE_DEPTH):
        self.buf = buf
        self.pos = pos
        self.max_depth = max_depth

    def byte(self):
        try:
            b = self.buf[self.pos]
        except IndexError:
            raise UpdateFormatError("update ends in the middle of a value") from None
        self.pos += 1
        return b

    def varuint(self):
        n = 0
        shift = 0
        while True:
            b = self.byte()
            n |= (b & 0x7F) << shift
            if b < 0x80:
                return n
            shift += 7
            if shift > 70:
                raise UpdateFormatError("varuint too long")

    def varint(self):
        b = self.byte()
        while b & 0x80:
            b = self.byte()

    def skip(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise UpdateFormatError("update ends in the middle of a value")
        self.pos += n

    def var_bytes(self):
        n = self.varuint()
        start = self.pos
        self.skip(n)
        return self.buf[start:self.pos]

    def skip_var_bytes(self):
        self.skip(self.varuint())

    def any(self):
        """Skip one lib0 'any' value. Iterative, and refused past ``max_depth``
        levels: peers choose the nesting, and yrs recurses on it natively (a deep
        enough value overflows a thread's stack: a crash, not an exception)."""
        # one [values left, is an object] per open level
        pending = [[1, False]]
        while pending:
            top = pending[-1]
            if top[0] == 0:
                pending.pop()
                continue
            top[0] -= 1
            if top[1]:
                self.skip_var_bytes()                # the key of an object entry
            kind = self.byte()
            if kind in (127, 126, 121, 120):        # undefined, null, false, true
                continue
            if kind == 125:                          # varint
                self.varint()
            elif kind == 124:                        # float32
                self.skip(4)
            elif kind in (123, 122):                 # float64, bigint64
                self.skip(8)
            elif kind in (119, 116):                 # string, bytes
                self.skip_var_bytes()
            elif kind in (118, 117):                 # object, array
                if len(pending) >= self.max_depth:
                    raise UpdateFormatError("a value nested deeper than %d levels" % self.max_depth)
                pending.append([self.varuint(), kind == 118])
            else:
                raise UpdateFormatError("unknown value type %d" % kind)


# -- reading an update ---------------------------------------------------------

class _Struct:
    """One struct of a client run: where its bytes are and how to cut it."""
    __slots__ = ("clock", "length", "start", "end", "info", "right", "content_start", "units")

    def __init__(self, clock, length, start, end, info=None, right=None, content_start=None,
                 units=None):
        self.clock = clock
        self.length = length
        self.start = start
        self.end = end
        self.info = info                  # None for GC and Skip
        self.right = right                # encoded right origin (bytes) or None
        self.content_start = content_start
        self.units = units                # splittable content: list of (clock offset, byte start, byte end)


def _read_struct(r, clock):
    start = r.pos
    info = r.byte()
    ref = info & 0x1F
    if ref in (_GC, _SKIP):
        length = r.varuint()
        return _Struct(clock, length, start, r.pos)
    if info & _HAS_ORIGIN:
        r.varuint()
        r.varuint()
    right = None
    if info & _HAS_RIGHT_ORIGIN:
        right_start = r.pos
        r.varuint()
        r.varuint()
        right = bytes(r.buf[right_start:r.pos])
    if not info & (_HAS_ORIGIN | _HAS_RIGHT_ORIGIN):
        if r.varuint() == 1:
            r.skip_var_bytes()            # parent is a root type, by name
        else:
            r.varuint()                   # parent is an item, by id
            r.varuint()
        if info & _HAS_PARENT_SUB:
            r.skip_var_bytes()
    content_start = r.pos
    units = None
    if ref == _DELETED:
        length = r.varuint()
    elif ref == _STRING:
        raw = r.var_bytes()
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise UpdateFormatError("string content is not UTF-8") from None
        length = len(text.encode("utf-16-le")) // 2
        units = ("string", text)
    elif ref in (_JSON, _ANY):
        count = r.varuint()
        offsets = []
        for _ in range(count):
            item_start = r.pos
            if ref == _JSON:
                r.skip_var_bytes()
            else:
                r.any()
            offsets.append((item_start, r.pos))
        length = count
        units = ("list", offsets)
    elif ref == _BINARY:
        r.skip_var_bytes()
        length = 1
    elif ref == _EMBED:
        r.skip_var_bytes()
        length = 1
    elif ref == _FORMAT:
        r.skip_var_bytes()
        r.skip_var_bytes()
        length = 1
    elif ref == _TYPE:
        type_ref = r.varuint()
        if type_ref in (_XML_ELEMENT, _XML_HOOK):
            r.skip_var_bytes()
        length = 1
    elif ref == _DOC:
        r.skip_var_bytes()
        r.any()
        length = 1
    else:
        raise UpdateFormatError("unknown content type %d" % ref)
    return _Struct(clock, length, start, r.pos, info, right, content_start, units)


def parse_update(update, max_depth=MAX_VALUE_DEPTH):
    """``(runs, delete_set)``: runs is a list of ``(client, [structs])``, the delete
    set a list of ``(client, [(clock, length), ...])``. Raises UpdateFormatError,
    also for a value nested deeper than ``max_depth``."""
    buf = memoryview(update)
    r = _Reader(buf, max_depth=max_depth)
    runs = []
    for _ in range(r.varuint()):
        n_structs = r.varuint()
        client = r.varuint()
        clock = r.varuint()
        structs = []
        for _ in range(n_structs):
            s = _read_struct(r, clock)
            clock += s.length
            structs.append(s)
        runs.append((client, structs))
    delete_set = []
    for _ in range(r.varuint()):
        client = r.varuint()
        ranges = [(r.varuint(), r.varuint()) for _ in range(r.varuint())]
        delete_set.append((client, ranges))
    if r.pos != len(buf):
        raise UpdateFormatError("%d trailing bytes after the update" % (len(buf) - r.pos))
    return runs, delete_set


def client_clocks(update):
    """client -> the clock just past the last struct of that client in ``update``."""
    runs, _ = parse_update(update)
    out = {}
    for client, structs in runs:
        if structs:
            last = structs[-1]
            out[client] = max(out.get(client, 0), last.clock + last.length)
    return out


# -- state vectors ---------------------------------------------------------------

def decode_state_vector(data):
    r = _Reader(memoryview(data))
    out = {}
    for _ in range(r.varuint()):
        client = r.varuint()
        out[client] = r.varuint()
    return out


def encode_state_vector(sv):
    out = bytearray()
    write_varuint(out, len(sv))
    for client, clock in sorted(sv.items(), reverse=True):
        write_varuint(out, client)
        write_varuint(out, clock)
    return bytes(out)


# -- cutting ---------------------------------------------------------------------

def _cut_struct(buf, client, s, budget):
    """Cut one Item into encoded structs of at most ``budget`` bytes each:
    a list of ``(clock, length, bytes)``. Raises UpdateFormatError when the
    content cannot be cut (a single value larger than the budget)."""
    if s.units is None:
        raise UpdateFormatError("a single %d-byte struct cannot be cut" % (s.end - s.start))
    head_bytes = bytes(buf[s.start:s.content_start])  # info, origins, parent of the first piece
    ref = s.info & 0x1F
    pieces = []
    offset = 0
    kind, data = s.units
    if kind == "string":
        raw = data.encode("utf-8")
        pos = 0
        while pos < len(raw):
            header = head_bytes if offset == 0 else _tail_header(ref, client, s, offset)
            room = budget - len(header) - 5
            if room <= 16:
                raise UpdateFormatError("budget too small to cut a string")
            end = min(len(raw), pos + room)
            while end < len(raw) and (raw[end] & 0xC0) == 0x80:
                end -= 1            # never cut inside a UTF-8 sequence (a code point)
            chunk = raw[pos:end]
            units = len(chunk.decode("utf-8").encode("utf-16-le")) // 2
            pieces.append((s.clock + offset, units, header + _varuint(len(chunk)) + chunk))
            offset += units
            pos = end
        return pieces
    items = data
    i = 0
    while i < len(items):
        header = head_bytes if offset == 0 else _tail_header(ref, client, s, offset)
        room = budget - len(header) - 5
        j = i
        size = 0
        while j < len(items) and size + (items[j][1] - items[j][0]) <= room:
            size += items[j][1] - items[j][0]
            j += 1
        if j == i:
            raise UpdateFormatError("a single %d-byte value cannot be cut"
                                    % (items[i][1] - items[i][0]))
        body = b"".join(bytes(buf[a:b]) for a, b in items[i:j])
        pieces.append((s.clock + offset, j - i, header + _varuint(j - i) + body))
        offset += j - i
        i = j
    return pieces


def _tail_header(ref, client, s, offset):
    """Header of a cut Item's later piece: left origin = the id just before it,
    the right origin unchanged; the parent follows from the origin."""
    out = bytearray([ref | _HAS_ORIGIN | (_HAS_RIGHT_ORIGIN if s.right is not None else 0)])
    write_varuint(out, client)
    write_varuint(out, s.clock + offset - 1)
    if s.right is not None:
        out += s.right
    return bytes(out)


class _Packer:
    """Greedy packing of client runs into updates of at most ``limit`` bytes."""

    def __init__(self, limit):
        self.limit = limit
        self.pieces = []
        self._runs = []          # runs of the piece being filled: (client, first clock, [bytes])
        self._size = _PIECE_OVERHEAD
        self._clients = set()

    def add(self, client, clock, length, data):
        need = len(data) + (_RUN_HEADER if not self._runs or self._runs[-1][0] != client else 0)
        if self._runs and (self._size + need > self.limit or
                           (client in self._clients and self._runs[-1][0] != client)):
            self.close()
            need = len(data) + _RUN_HEADER
        if not self._runs or self._runs[-1][0] != client:
            self._runs.append([client, clock, []])
            self._clients.add(client)
        self._runs[-1][2].append(data)
        self._size += need

    def close(self, delete_set=b"\x00"):
        if not self._runs and delete_set == b"\x00":
            return
        out = bytearray()
        write_varuint(out, len(self._runs))
        for client, clock, structs in self._runs:
            write_varuint(out, len(structs))
            write_varuint(out, client)
            write_varuint(out, clock)
            for data in structs:
                out += data
        out += delete_set
        self.pieces.append(bytes(out))
        self._runs = []
        self._clients = set()
        self._size = _PIECE_OVERHEAD


def _delete_set_parts(delete_set, limit):
    """The delete set as encoded parts, each at most about ``limit`` bytes."""
    parts = []
    current = []          # (client, [ranges])
    size = 8

    def flush():
        nonlocal current, size
        if current:
            out = bytearray()
            write_varuint(out, len(current))
            for client, ranges in current:
                write_varuint(out, client)
                write_varuint(out, len(ranges))
                for clock, length in ranges:
                    write_varuint(out, clock)
                    write_varuint(out, length)
            parts.append(bytes(out))
        current = []
        size = 8

    for client, ranges in delete_set:
        for clock, length in ranges:
            if size + 40 > limit:
                flush()
            if not current or current[-1][0] != client:
                current.append((client, []))
                size += 20
            current[-1][1].append((clock, length))
            size += 20
    flush()
    return parts


def split_update(update, limit):
    """Cut a v1 update into updates of at most ``limit`` bytes each whose
    union is the same state. An update within the limit comes back as is.
    Raises UpdateFormatError when the bytes are not a v1 update or hold a
    single value too large to cut."""
    update = bytes(update)
    if len(update) <= limit:
        return [update]
    if limit < 1024:
        raise UpdateFormatError("a limit of %d bytes is too small to cut updates" % limit)
    runs, delete_set = parse_update(update)
    buf = memoryview(update)
    budget = limit - _PIECE_OVERHEAD - _RUN_HEADER
    packer = _Packer(limit)
    for client, structs in runs:
        for s in structs:
            if s.end - s.start <= budget:
                packer.add(client, s.clock, s.length, bytes(buf[s.start:s.end]))
            else:
                for clock, length, data in _cut_struct(buf, client, s, budget):
                    packer.add(client, clock, length, data)
    ds_parts = _delete_set_parts(delete_set, limit - _PIECE_OVERHEAD) or [b"\x00"]
    if packer._runs and packer._size + len(ds_parts[0]) <= limit:
        packer.close(ds_parts.pop(0))
    else:
        packer.close()
    for part in ds_parts:
        if part != b"\x00":
            packer.pieces.append(b"\x00" + part)
    return packer.pieces
