"""A y-sync session over one pycrdt Doc: bytes in, bytes out.

The sync thread hands it each sync message from the server (message type 0:
step 1, step 2, update) and sends the messages it returns; the session never
touches a socket, a thread or a clock, so every rule below is tested by
feeding it bytes (tests/unit/test_ysync.py).

What it keeps for one connection:

- the outbox: our own updates, in the order they were made, sent by the
  thread cut under --max-message-bytes;
- probes: a sync step 1 the server answers after every update it received
  from us before it (claims.Claims.acked, the exactly-once argument); their
  answers come back in order, so a queue of sequence numbers is enough;
- the write check: the first probe after our own updates asks the server for
  them back, and a server that answers without them drops what we write (a
  read-only connection);
- the entries the server changed, for the coordinator to look at;
- dirty: changes the server may not have (made while disconnected, or in
  flight when the connection broke), which a stop waits to see confirmed.
"""

import collections
from typing import List, NamedTuple, Optional

from pycrdt import Map, Text, YMessageType, YSyncMessageType, read_message

from .errors import ProtocolError, SyncReadOnly, UpdateFormatError
from .updates import (MAX_VALUE_DEPTH, client_clocks, decode_state_vector, encode_state_vector,
                      parse_update, split_update, write_varuint)

# mrmd-sync's maxMessageSize (its websocket maxPayload): a larger message
# closes the connection. --max-message-bytes overrides it.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
# Room for the message's own header (type, subtype, length) under the limit.
_MESSAGE_HEADER = 16
_EMPTY_UPDATE = b"\x00\x00"


class Received(NamedTuple):
    """What one sync message from the server meant."""

    replies: List[bytes]          # to send back, in order
    synced: bool = False          # the first step 2 of this connection
    acked: Optional[int] = None   # the probe this step 2 answered


def sync_message(subtype, payload):
    out = bytearray([YMessageType.SYNC, subtype])
    write_varuint(out, len(payload))
    out += payload
    return bytes(out)


class Session:
    """One document's y-sync state across its connections (the Doc is kept
    between them, so output written while the server was away goes out with
    the next handshake)."""

    def __init__(self, doc, *, doc_name, shown_url, log,
                 max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES, on_text_moved=None):
        self.doc = doc
        self.client_id = doc.client_id
        self.doc_name = doc_name
        self.shown_url = shown_url
        self.log = log
        self.max_message_bytes = max_message_bytes
        self.online = False           # a connection is open
        self.synced = False           # ... and its handshake is done
        self.applying_remote = False  # inside apply_update: doc events are the server's
        self.outbox = []
        self.dirty = False
        self.flush_probe = None
        self._probe_seq = 0
        self._probes = collections.deque()   # probes sent on this connection, unanswered
        self._my_clock_sent = None   # our clock when the handshake sent the server our state
        self._write_check = None     # (probe seq, clock the server must then have)
        self._write_checked = False
        self.changed = set()          # keys of Y.Map('executions') changed by the server
        self._on_text_moved = on_text_moved
        # pycrdt drops an observer when its shared type object is garbage
        # collected: keep both the type and the subscription.
        self._entries = doc.get("executions", type=Map)
        self._text = doc.get("content", type=Text)
        # The entries are observed through pycrdt's native observer: its Python
        # MapEvent walks every changed value recursively, so a peer's entry
        # nested 1,000 levels deep would fail every update (RecursionError).
        self._subscriptions = (doc.observe(self._on_update),
                               self._entries.integrated.observe(self._on_entries_event),
                               self._text.observe(self._on_text_event))

    # -- the connection's life ------------------------------------------------

    def open(self):
        """A new connection: our step 1 (the server answers with what we lack)."""
        self.online = True
        self._my_clock_sent = None
        self._write_check = None
        self._write_checked = False
        return sync_message(YSyncMessageType.SYNC_STEP1, self.doc.get_state())

    def closed(self, broken):
        """The connection ended. ``broken``: what we sent last may not have
        arrived. The outbox is recovered from the state vectors on the next
        handshake."""
        self.online = False
        self.synced = False
        self.outbox.clear()
        self._probes.clear()
        if broken:
            self.dirty = True
            self.flush_probe = None

    # -- outgoing -------------------------------------------------------------

    def pieces(self, update, subtype=YSyncMessageType.SYNC_UPDATE):
        """One Yjs update as one or more messages, each within --max-message-bytes."""
        limit = self.max_message_bytes - _MESSAGE_HEADER
        try:
            parts = split_update(update, limit)
        except UpdateFormatError as exc:
            # Nothing smaller can carry it; the server will likely close the
            # connection. Said once per update, with the size, so it can be traced.
            self.log.error("an update of %d bytes cannot be cut under --max-message-bytes (%s); "
                           "sending it whole", len(update), exc)
            parts = [update]
        if len(parts) > 1:
            self.log.debug("update of %d bytes sent as %d messages", len(update), len(parts))
        return [sync_message(subtype, part) for part in parts]

    def next_out(self):
        """The messages of the oldest update in the outbox (removed from it)."""
        return self.pieces(self.outbox.pop(0))

    def probe(self):
        """(sequence number, our step 1). Send the outbox first: the server
        answers a step 1 after every update it received before it."""
        self._probe_seq += 1
        self._probes.append(self._probe_seq)
        state = self.doc.get_state()
        if not self._write_checked and self._my_clock_sent is not None:
            # The first probe after our own updates on this connection asks the
            # server for them back: a server that drops our updates (a read-only
            # connection) answers without them.
            sv = decode_state_vector(state)
            mine = sv.get(self.client_id, 0)
            if mine > self._my_clock_sent:
                sv[self.client_id] = self._my_clock_sent
                state = encode_state_vector(sv)
                self._write_check = (self._probe_seq, mine)
        return self._probe_seq, sync_message(YSyncMessageType.SYNC_STEP1, state)

    def flush(self):
        """A probe confirming everything sent so far, when changes may not
        have arrived and none is asked yet: (seq, message) or None."""
        if not (self.dirty and self.synced and self.flush_probe is None):
            return None
        seq, message = self.probe()
        self.flush_probe = seq
        return seq, message

    # -- incoming -------------------------------------------------------------

    def receive(self, data) -> Received:
        """A sync message (type 0) from the server. Raises ProtocolError for
        bytes we refuse (the connection goes on), SyncReadOnly when the server
        drops what we write."""
        if len(data) < 2:
            raise ProtocolError("truncated sync message", doc=self.doc_name)
        sub = data[1]
        try:
            payload = read_message(data[2:])
        except Exception as exc:  # noqa: BLE001 - pycrdt raises plain errors on bad bytes
            raise ProtocolError("bad sync message: %s" % exc, doc=self.doc_name) from exc
        if sub == YSyncMessageType.SYNC_STEP1:
            # The server's state vector: answer with what it lacks, cut to size.
            try:
                update = self.doc.get_update(payload)
            except Exception as exc:  # noqa: BLE001
                raise ProtocolError("bad state vector: %s" % exc, doc=self.doc_name) from exc
            self._my_clock_sent = decode_state_vector(self.doc.get_state()).get(self.client_id, 0)
            return Received(self.pieces(update, YSyncMessageType.SYNC_STEP2))
        if sub not in (YSyncMessageType.SYNC_STEP2, YSyncMessageType.SYNC_UPDATE):
            raise ProtocolError("unknown sync message type %d" % sub, doc=self.doc_name)
        if payload != _EMPTY_UPDATE:
            self._apply(payload)
        if sub != YSyncMessageType.SYNC_STEP2:
            return Received([])
        if not self.synced:
            self.synced = True
            return Received([], synced=True)
        if not self._probes:
            return Received([])
        seq = self._probes.popleft()
        if self._write_check is not None and self._write_check[0] == seq:
            self._check_written(payload)
        if seq == self.flush_probe:
            self.dirty = False
            self.flush_probe = None
        return Received([], acked=seq)

    def _apply(self, payload):
        try:
            # Refuses values nested deeper than pycrdt's recursion can take.
            parse_update(payload, MAX_VALUE_DEPTH)
        except UpdateFormatError as exc:
            raise ProtocolError("refused an update of %d bytes: %s" % (len(payload), exc),
                                doc=self.doc_name) from None
        self.applying_remote = True
        try:
            self.doc.apply_update(payload)
        except Exception as exc:  # noqa: BLE001 - pycrdt raises plain errors on bad bytes
            raise ProtocolError("bad sync message: %s" % exc, doc=self.doc_name) from exc
        finally:
            self.applying_remote = False

    def _check_written(self, answer):
        """The answer to a write-check probe must hold our own updates back."""
        _, expected = self._write_check
        self._write_check = None
        try:
            have = client_clocks(answer).get(self.client_id, self._my_clock_sent)
        except UpdateFormatError:
            return
        if have < expected:
            raise SyncReadOnly(
                "the sync server accepts the monitor on %s but drops its changes (a read-only "
                "connection): the monitor cannot run anything there; give it a token with write "
                "access" % self.doc_name, doc=self.doc_name, url=self.shown_url)
        self._write_checked = True

    # -- the Doc's own changes ------------------------------------------------

    def _on_update(self, event):
        if self.applying_remote:
            return  # never echo a remote update back to the server
        if self.online:
            self.outbox.append(event.update)
        else:
            self.dirty = True   # sent with the next handshake

    def _on_text_event(self, _event):
        if self.applying_remote and self._on_text_moved is not None:
            self._on_text_moved()

    def _on_entries_event(self, event):
        if self.applying_remote:
            self.changed.update(event.keys)
