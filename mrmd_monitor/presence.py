"""Presence: who is in a document, in its awareness, and who we say we are.

This is the one place that says what a monitor is (:func:`is_monitor_state`)
and what a cluster member is (:func:`parse_member`): a monitor's claim is a
lease (claims.py), a member takes part in sharing the work (cluster.py).

Awareness states come from any peer of the sync server: every field is
checked, bounded, and a state that does not fit is not a member. The
y-websocket protocol authenticates no one, so any peer can say it is a
monitor: with a cluster secret (--cluster-secret), a monitor is only a peer
whose member fields carry an HMAC of them and of its client id under the
secret (:func:`signature`); the others count for nothing (no lease, no delay,
no share of the documents). A lone monitor needs no secret.

Our own state is renewed at a random point 20 to 24 s after the last time it
was sent. y-protocols peers (browsers, and the sync server itself, which
serves the states it holds to every peer that joins) drop a state not renewed
for 30 s, checking every 3 s; they renew their own at 15 s. The 6 s left at
the latest point cover our thread's delay under load and the server's
delivery: a renewal lands long before the 30 s as long as neither stalls for
6 s (attaching 1,000 documents takes about 5 s in all). Later than
y-protocols' 15 s because every renewal costs each document two wake-ups
(sending it, and the server's echo of it to every connection of the room,
ours included): one every 22 s on average instead of 15 s is a third fewer.
The random point spreads a thousand documents' renewals instead of sending
them in bursts (they connect within a few seconds of each other).

Nobody needs the renewals of a monitor alone in a document with nothing to
run: they only keep our state in the server's copy. So then the monitor falls
silent (the server drops its state after 30 s) and announces itself again as
soon as a peer appears (every y-websocket client announces its own state when
it connects, so it sees ours one round trip later, long before any
--orphan-timeout) or it has a run. A peer that never sets a state of its own
does not see a silent monitor. The control document always renews: a monitor
joining the cluster must see the others as it syncs.

Exactly-once (claims.Claims.acked) needs every monitor that could claim
concurrently with us to be in sight when our claim is confirmed. A silent
monitor announces itself before anything it writes (the sync thread's
outbox), and when it sees us arrive (we announce on connecting); until that
answer can have come back, for AWARENESS_SETTLE seconds after we synced, we
count a monitor as present (:meth:`Presence.other_monitors_present`), so our
claims wait --claim-settle.

Our member (the cluster's fields: id, capacity, busy count, version): in a
document the busy count goes only with the renewal (every AWARENESS_RENEW):
published as it changed in every document, its traffic slowed every sync
thread. The daemon also publishes it on the control document as it changes,
where each monitor reads it as of before a request (cluster.loads_as_of). A
document being left claims nothing more: it stops being a member there, so
the others claim at once instead of waiting for it.

No threads, sockets or clocks: the sync thread passes the time in.
"""

import collections
import hashlib
import hmac
import json
import math
import random
from typing import Dict, Iterable, Mapping, NamedTuple, Optional, Tuple

from pycrdt import create_awareness_message

from . import cluster
from .cluster import Member
from .errors import ProtocolError, UpdateFormatError
from .updates import _Reader, write_varuint

AWARENESS_RENEW = (20.0, 24.0)
AWARENESS_SETTLE = 5.0
# A peer whose state has not been renewed for this long is gone (peer_alive),
# even if no removal arrived: three renewals missed by a peer renewing at
# 15 s, almost two by us. Its state is forgotten then.
PEER_GONE_AFTER = 45.0
# Awareness states kept per document, and the largest one read. mrmd-sync lets
# 50 connections into a document and a cluster has at most cluster.MAX_MEMBERS
# monitors; an editor's state (name, colour, cursor) is a few hundred bytes.
# Past the cap the oldest state that is not a monitor's makes room; a state
# over the size counts as a peer, never as a monitor. A message's entries past
# the cap are not read.
MAX_STATES = 1024
MAX_STATE_BYTES = 16 << 10

# The original Node monitor's colour: the editor shows a monitor the same
# whichever of the two runs.
MONITOR_COLOR = "#10b981"
MONITOR_TYPE = "monitor"

#: The awareness field that makes a monitor a cluster member.
STATE_KEY = "monitor"
#: In it, the member's proof that it holds the cluster secret.
SIG_KEY = "sig"
_SIGNED = "mrmd-monitor member 1"

# Presence.due while nobody needs a renewal: due at once, and checked on every
# pass of the sync thread's loop (a peer may have appeared, a run started);
# never a poll timeout.
SILENT = float("-inf")


def renewal_delay(rng=random.random):
    """Seconds from sending our awareness state to renewing it: a random
    point of AWARENESS_RENEW."""
    low, high = AWARENESS_RENEW
    return low + (high - low) * rng()


# -- what a monitor and a member are ---------------------------------------------

def is_monitor_state(state) -> bool:
    """Does this awareness state announce a monitor? As the editor's
    isMonitorAvailable() reads it, ``user.type == "monitor"`` (the original
    Node monitor and us), or at the top level, where releases of this monitor
    before the editor's shape put it (a cluster upgraded one by one)."""
    if not isinstance(state, dict):
        return False
    user = state.get("user")
    if isinstance(user, dict) and user.get("type") == MONITOR_TYPE:
        return True
    return state.get("type") == MONITOR_TYPE


def _name(state) -> Optional[str]:
    user = state.get("user")
    name = user.get("name") if isinstance(user, dict) else None
    return state.get("name") if name is None else name


def member_state(member: Member) -> dict:
    """What a monitor puts under :data:`STATE_KEY` in its awareness state."""
    state = {"id": member.id, "capacity": int(member.capacity), "busy": int(member.busy),
             "version": member.version}
    if member.at:
        state["at"] = int(member.at)
    return state


def _count(value, limit) -> Optional[int]:
    # pycrdt hands a browser's JSON numbers back as floats; bools are not counts.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        return None
    number = int(value)
    return number if 0 <= number <= limit else None


def _short_text(value, limit) -> Optional[str]:
    if not isinstance(value, str) or len(value) > limit:
        return None
    return value


def parse_member(state) -> Optional[Member]:
    """The member a monitor's awareness state announces, or None if it is no
    monitor, announces none or does not fit the bounds (a hostile or broken
    peer is simply not a member)."""
    if not is_monitor_state(state):
        return None
    info = state.get(STATE_KEY)
    if not isinstance(info, dict):
        return None
    member_id = _short_text(info.get("id"), cluster.MAX_ID_CHARS)
    capacity = _count(info.get("capacity"), cluster.MAX_CAPACITY)
    busy = _count(info.get("busy"), 1 << 31)
    if not member_id or capacity is None or capacity < 1 or busy is None:
        return None
    version = _short_text(info.get("version"), cluster.MAX_VERSION_CHARS) or ""
    name = _short_text(_name(state), cluster.MAX_NAME_CHARS) or ""
    at = _count(info.get("at"), cluster.MAX_AT) or 0
    return Member(id=member_id, capacity=capacity, busy=busy, version=version, name=name, at=at)


def signature(secret: str, client_id: int, member: Member) -> str:
    """HMAC-SHA256 with the cluster secret over a member's fields and the
    client id it speaks as: a state copied to another client id, or changed
    in any field (its busy count, its capacity), fails. ``at`` (when it was
    published) is in it, so an old state replayed stands out as old."""
    text = json.dumps([_SIGNED, int(client_id), member.id, member.capacity, member.busy,
                       member.version, member.at], separators=(",", ":"))
    return hmac.new(secret.encode("utf-8"), text.encode("ascii"), hashlib.sha256).hexdigest()


def proved(secret: str, client_id: int, state, member: Optional[Member]) -> bool:
    """Does ``state`` (``member`` as parsed from it) carry a valid signature?"""
    sig = state[STATE_KEY].get(SIG_KEY) if member is not None else None
    return isinstance(sig, str) and hmac.compare_digest(sig, signature(secret, client_id, member))


def members_from_states(states: Mapping, alive=None) -> Optional[Tuple[Member, ...]]:
    """The live members among awareness ``states`` (client id -> state),
    sorted by id. ``alive(client_id)``, when given, drops states not renewed
    lately. One id seen under two client ids (a monitor that reconnected before
    the server dropped its old connection) counts once, as the busiest view.

    None when more than :data:`cluster.MAX_MEMBERS` announce themselves, which
    no real cluster does: a peer flooding awareness. No list can be trusted
    then, and every caller falls back to what a lone monitor does (follow every
    document, claim at once), so a flood cannot leave a document unfollowed."""
    return collect_members(parse_member(state) for cid, state in list(states.items())
                           if alive is None or alive(cid))


def collect_members(members: Iterable) -> Optional[Tuple[Member, ...]]:
    """members_from_states over members already parsed (None: not one)."""
    by_id: Dict[str, Member] = {}
    for member in members:
        if member is None:
            continue
        seen = by_id.get(member.id)
        if seen is None or member.busy > seen.busy:
            by_id[member.id] = member
        if len(by_id) > cluster.MAX_MEMBERS:
            return None
    return tuple(by_id[k] for k in sorted(by_id))


# -- one document's awareness ------------------------------------------------------

class _Peer:
    """What we keep of a peer's awareness state: not the state itself."""

    __slots__ = ("clock", "seen", "member")

    def __init__(self, clock, seen, member):
        self.clock = clock
        self.seen = seen          # when it was last updated (monotonic)
        self.member = member      # the cluster member it announces, if any


class Heard(NamedTuple):
    """What an awareness message changed."""

    members: bool = False    # a monitor came, changed or went: read the members again
    reassert: bool = False   # a peer spoke for our client id: send our state now


class Presence:
    """Our state in one document's awareness, its renewal, and the peers'.

    The y-protocols awareness rules (a newer clock wins; a removal at the same
    clock too) on records of what we need, bounded (MAX_STATES,
    MAX_STATE_BYTES, PEER_GONE_AFTER): two dicts ordered by last update, the
    monitors' and the other peers'. Our own client id is ours alone: an update
    for it from the server is never applied, and it has our state sent again
    with a clock above the one it claimed."""

    def __init__(self, client_id, *, name, renew_alone=False, secret=None):
        self.client_id = client_id
        self.name = name
        # The cluster secret: with one, a monitor is a peer that proves it
        # holds it (signature()); unsigned monitors are peers like browsers.
        self._secret = secret
        self.fields = {}
        self.renew_alone = renew_alone   # the control document: see the module's docstring
        self.due = 0.0            # when to renew (monotonic); SILENT: nobody needs it
        self._clock = 0
        self._mine = None         # our own member once our state is set (local/announce)
        self._monitors = collections.OrderedDict()   # client id -> _Peer, oldest update first
        self._others = collections.OrderedDict()
        self._sent = None         # the last message we sent, to know the server's echo of it
        self._synced_at = -AWARENESS_SETTLE
        # The cluster members present, replaced whole, never mutated (the
        # daemon and the status server read it from other threads); None while
        # awareness is flooded (members_from_states).
        self.members = ()

    def __len__(self):
        return len(self._monitors) + len(self._others)

    # -- our state --------------------------------------------------------------

    def state(self) -> dict:
        """This monitor's state in awareness, in the editor's shape: the one
        place it is built. Other parts add fields with set_fields (e.g. the
        cluster member)."""
        state = dict(self.fields)
        state["user"] = {"name": self.name, "color": MONITOR_COLOR, "type": MONITOR_TYPE}
        member = parse_member(state) if self._secret else None
        if member is not None:
            state[STATE_KEY] = dict(state[STATE_KEY],
                                    **{SIG_KEY: signature(self._secret, self.client_id, member)})
        return state

    def set_fields(self, **fields):
        """Add or change fields of our state (taken by the next local() or
        announce()); ``None`` removes a field."""
        for key, value in fields.items():
            if value is None:
                self.fields.pop(key, None)
            else:
                self.fields[key] = value

    def local(self):
        """Take our state as it stands, without sending it (offline)."""
        self._mine = parse_member(self.state())

    @property
    def silent(self) -> bool:
        return self.due == SILENT

    def announce(self, now, renewing, rng=random.random) -> bytes:
        """Our state as a message to send. Its clock moves on even when the
        state is the same: this is also the renewal."""
        self._clock += 1
        state = self.state()
        self._mine = parse_member(state)
        self.due = now + renewal_delay(rng) if renewing else SILENT
        self._sent = self._message(state)
        return self._sent

    def goodbye(self) -> bytes:
        """The message that removes our state (sent when leaving)."""
        self._clock += 1
        self._mine = None
        return self._message(None)

    def _message(self, state):
        text = b"null" if state is None else json.dumps(state, separators=(",", ":")).encode()
        body = bytearray()
        for n in (1, self.client_id, self._clock, len(text)):
            write_varuint(body, n)
        body += text
        return create_awareness_message(bytes(body))

    # -- the peers' -------------------------------------------------------------

    def receive(self, data, now) -> Heard:
        """An awareness message from the server."""
        if data == self._sent:
            # Our own state as we sent it: the server sends every awareness
            # update to all the connections of the room, the sender's too.
            # Applying it would change nothing (same clock).
            return Heard()
        members, reassert = self.expire(now), False
        try:
            reader = _Reader(data, 1)
            reader = _Reader(reader.var_bytes())
            for _ in range(min(reader.varuint(), MAX_STATES)):
                client_id, clock, raw = reader.varuint(), reader.varuint(), reader.var_bytes()
                if client_id == self.client_id:
                    # Peers take a newer clock, or a removal at the same one
                    # (y-protocols); the same clock otherwise is our own
                    # state relayed back, re-encoded by the server. A removal
                    # while we are silent is the server forgetting us, as
                    # silence means it to.
                    removal = raw in _REMOVED
                    if clock > self._clock or (clock == self._clock and removal):
                        self._clock = clock   # our next one goes above it
                        reassert = reassert or not (removal and self.silent)
                    continue
                members = self._heard(client_id, clock, raw, now) or members
        except UpdateFormatError as exc:
            # What came before the garbage stays.
            raise ProtocolError("bad awareness message: %s" % exc) from None
        return Heard(members, reassert)

    def _heard(self, client_id, clock, raw, now):
        """One entry of an awareness update; True when a monitor came, changed
        or went."""
        removal = raw in _REMOVED
        prev = self._monitors.get(client_id)
        was_monitor = prev is not None
        if prev is None:
            prev = self._others.get(client_id)
        if prev is not None and not (prev.clock < clock or (prev.clock == clock and removal)):
            return False
        self._monitors.pop(client_id, None)
        self._others.pop(client_id, None)
        if removal:
            return was_monitor
        state = _read_state(raw)
        monitor = is_monitor_state(state)
        member = parse_member(state) if monitor else None
        if monitor and self._secret and not proved(self._secret, client_id, state, member):
            monitor, member = False, None
        if len(self) >= MAX_STATES:
            if not self._others:
                return was_monitor    # full of monitors: no room
            self._others.popitem(last=False)
        peers = self._monitors if monitor else self._others
        peers[client_id] = _Peer(clock, now, member)
        return monitor or was_monitor

    def expire(self, now) -> bool:
        """Forget the states not updated for PEER_GONE_AFTER; True when a
        monitor's went."""
        went = False
        for peers in (self._monitors, self._others):
            while peers:
                client_id, peer = next(iter(peers.items()))
                if now - peer.seen < PEER_GONE_AFTER:
                    break
                del peers[client_id]
                went = went or peers is self._monitors
        return went

    def needed(self, active_runs) -> bool:
        """Does anyone need our state renewed (see the module's docstring)?"""
        return self.renew_alone or active_runs > 0 or len(self) > 0

    def synced(self, now):
        self._synced_at = now

    def peer_alive(self, client_id, now) -> bool:
        """Is a peer with this client id present (recently renewed)?"""
        if client_id == self.client_id:
            return True
        peer = self._monitors.get(client_id) or self._others.get(client_id)
        return peer is not None and now - peer.seen < PEER_GONE_AFTER

    def is_monitor(self, client_id, now) -> bool:
        """Is ``client_id`` us, or a monitor present (recently renewed)?"""
        if client_id == self.client_id:
            return True
        peer = self._monitors.get(client_id)
        return peer is not None and now - peer.seen < PEER_GONE_AFTER

    def other_monitors_present(self, now) -> bool:
        """Any other monitor here? Also true in our first AWARENESS_SETTLE
        seconds: a silent one may not have answered our arrival yet."""
        return now - self._synced_at < AWARENESS_SETTLE or bool(self._monitors)

    def refresh_members(self, now) -> bool:
        """Read the members again (the monitors' only); True when they changed."""
        self.expire(now)
        members = collect_members([self._mine] + [peer.member for peer in self._monitors.values()])
        if members == self.members:
            return False
        self.members = members
        return True


_REMOVED = (b"", b"null")


def _read_state(raw):
    """A peer's state, or None when it cannot be one of a monitor's (too
    large, too deep, not JSON): then it only counts as a peer present."""
    if len(raw) > MAX_STATE_BYTES:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None
