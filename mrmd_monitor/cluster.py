"""Several monitors sharing the work, each deciding alone from what all of them see.

Every monitor publishes itself in awareness (``{"monitor": {"id", "capacity",
"busy", "version"}}`` beside its name): in each document it follows, and in a
control document on the same sync server that every monitor following
``/stats`` joins. From those states each monitor computes the same answers,
with no coordinator and no new infrastructure:

- which ``R`` of the live monitors follow each listed document
  (:func:`assignment`, rendezvous hashing with bounded loads);
- which monitor should claim a request first (:func:`claim_order`, rendezvous
  hashing of the (runtime, session) pair weighted by capacity over load,
  with bounded loads, the pairs requested at the same moment placed one
  after another), and how long another one waits before it claims as a
  backup (:func:`claim_delay`).

Views differ for a moment while awareness travels; nothing here has to be
exact for correctness: the claim protocol (coordinator.py) keeps every run
exactly-once whoever tries first, and a document followed by one monitor too
many or too few for a moment is harmless.

Who is a member is read from awareness by presence.py (parse_member), within
the bounds below.

Pure: no threads, sockets or clocks.
"""

import functools
import hashlib
import math
import uuid
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

# Bounds on what a peer may make us hold or compute over.
MAX_MEMBERS = 64
MAX_ID_CHARS = 128
MAX_NAME_CHARS = 128
MAX_VERSION_CHARS = 32
MAX_CAPACITY = 10_000
MAX_DOCUMENTS = 10_000
MAX_AT = 1 << 53          # a publication time in ms, as JavaScript numbers hold it
MAX_HISTORY = 64          # states kept per member (loads_as_of)

#: A backup monitor waits this long per monitor ranked before it.
CLAIM_STEP = 0.5

#: Every member's share of the documents stays within these factors of an
#: even split (bounded-load rendezvous, see :func:`_cap`).
BALANCE = (0.75, 1.25)

#: A run's preferred monitor is the first in its rendezvous order whose busy
#: count stays within ``1 + LOAD_SLACK`` times its share (:func:`over_bound`).
LOAD_SLACK = 0.2

#: Loads are taken as published this long before the request was made
#: (:func:`loads_as_of`), and states are kept this long for it.
LOADS_BEFORE_MS = 200
HISTORY_MS = 10_000

#: Requests made within this long of each other are one burst (claim_order);
#: twice LOADS_BEFORE_MS, so that a load the published states cannot show
#: yet is counted in the burst instead.
BURST_MS = 2 * LOADS_BEFORE_MS
#: Most pairs of one burst placed one after another.
MAX_BURST_PAIRS = 64


@dataclass(frozen=True)
class Member:
    """One monitor as it publishes itself."""

    id: str
    capacity: int = 1
    busy: int = 0
    version: str = ""
    name: str = ""
    at: int = 0   # when it published this state (ms, its wall clock); 0: not said

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.busy)


def new_member_id(name: str) -> str:
    """A monitor process's id in the cluster: its name, made unique."""
    return "%s-%s" % (str(name)[:MAX_ID_CHARS - 13], uuid.uuid4().hex[:12])


# -- rendezvous hashing ----------------------------------------------------------

def _unit(key: str, member_id: str) -> float:
    """A number in (0, 1), uniform, the same on every machine and Python."""
    digest = hashlib.blake2b(("%s\0%s" % (key, member_id)).encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0 ** 64


def score(key: str, member_id: str, weight: float = 1.0) -> float:
    """Weighted rendezvous score (higher wins): ``-w / ln(u)`` gives each
    member a share of keys proportional to its weight."""
    return -weight / math.log(_unit(key, member_id))


def ranking(key: str, members: Iterable[Member], weight=None) -> List[Member]:
    """Members from most to least preferred for ``key``."""
    def order(m):
        w = 1.0 if weight is None else float(weight(m))
        return (-score(key, m.id, w), m.id)
    return sorted(members, key=order)


# -- documents -------------------------------------------------------------------

def assignment(docs: Iterable[str], members: Sequence[Member],
               replicas: Optional[int],
               balance: Tuple[float, float] = BALANCE) -> Dict[str, Tuple[str, ...]]:
    """Document -> ids of the members that follow it.

    ``replicas`` None or 0 (or not fewer than the members): every member
    follows every document. Otherwise each document goes to its ``replicas``
    highest-ranked members that are not already at their cap (:func:`_cap`),
    one replica per round; documents are placed in the order of their own hash, so the answer
    depends only on the sets of documents and members, not on listing order."""
    docs = sorted(set(docs))[:MAX_DOCUMENTS]
    ids = [m.id for m in members]
    if not ids:
        return {d: () for d in docs}
    if not replicas or replicas >= len(ids):
        return {d: tuple(ids) for d in docs}
    # One round per replica, each balanced on its own: a single pass over
    # R slots per document can end with the only room left on a member the
    # document already has.
    cap = _cap(len(docs), len(ids), balance)
    chosen = {d: [] for d in docs}
    ranked = {d: ranking(d, members) for d in docs}
    placed = sorted(docs, key=lambda d: _unit(d, ""))
    for _ in range(replicas):
        load = dict.fromkeys(ids, 0)
        for doc in placed:
            free = [m.id for m in ranked[doc] if m.id not in chosen[doc]]
            pick = next((i for i in free if load[i] < cap), free[0])
            chosen[doc].append(pick)
            load[pick] += 1
    result = {d: tuple(chosen[d]) for d in docs}
    return result


def _cap(slots: int, members: int, balance: Tuple[float, float]) -> int:
    """Most documents one member may follow: as high as ``balance[1]`` times
    an even share allows (the higher, the fewer documents move when a member
    joins or leaves), but low enough that the others, filled to it, still
    leave every member at least ``balance[0]`` of an even share."""
    even = slots / members
    low, high = balance
    cap = math.floor(high * even)
    if members > 1:
        cap = min(cap, math.floor((slots - math.ceil(low * even)) / (members - 1)))
    return max(1, cap, math.ceil(even))


def followed(docs: Iterable[str], members: Optional[Sequence[Member]], me: str,
             replicas: Optional[int]) -> List[str]:
    """The documents monitor ``me`` follows. Until it sees itself among the
    members (its own state not published yet) it follows none when sharding;
    with no trustworthy member list (None, a flood) it follows all."""
    docs = list(docs)
    if not replicas or members is None:
        return docs
    if me not in {m.id for m in members}:
        return []
    plan = assignment(docs, members, replicas)
    return [d for d in docs if me in plan.get(d, ())]


# -- loads as of a moment ----------------------------------------------------------

def remember(history: Mapping[str, Tuple[Member, ...]], members: Optional[Sequence[Member]],
             keep_ms: int = HISTORY_MS) -> Dict[str, Tuple[Member, ...]]:
    """The states each live member published lately, oldest first: ``history``
    with ``members``' current states added. A member no longer listed is
    dropped; states older than ``keep_ms`` before a member's newest go, except
    the newest of them (the one in force then). None (a flood): nothing is
    kept, and the order falls back to the members' own states."""
    if members is None:
        return {}
    out = {}
    for member in members:
        states = list(history.get(member.id, ()))
        if not states or member.at > states[-1].at or (member.at == states[-1].at
                                                        and member != states[-1]):
            states = [s for s in states if s.at < member.at] + [member]
        cutoff = states[-1].at - keep_ms
        old = [s for s in states if s.at <= cutoff]
        states = old[-1:] + [s for s in states if s.at > cutoff]
        out[member.id] = tuple(states[-MAX_HISTORY:])
    return out


def loads_as_of(history: Mapping[str, Tuple[Member, ...]], when_ms) -> Tuple[Member, ...]:
    """Each member's state as published at ``when_ms`` (its newest state then,
    or its oldest known one when it published nothing before), sorted by id.

    Monitors take a request's loads as of a moment before it was made: states
    that old have reached every monitor, so each of them answers "who claims
    this first" the same way, however late it looks at the request and
    however the loads moved since (loads as of the moment each one looks made
    monitors under load disagree: several claimed at once, or all waited)."""
    out = []
    for key in sorted(history):
        states = history[key]
        if not states:
            continue
        pick = states[0]
        if when_ms is not None:
            for state in states:
                if state.at <= when_ms:
                    pick = state
        else:
            pick = states[-1]
        out.append(pick)
    return tuple(out)


# -- claims ----------------------------------------------------------------------

def run_key(runtime_url: str, session) -> str:
    """Runs of one runtime and session go to the same monitor while the
    capacities hold, which keeps a notebook's cells in one queue."""
    return "%s\0%s" % ((runtime_url or "").rstrip("/"), session or "")


def burst_keys(requests: Iterable[Tuple[str, str, Optional[int]]], at_ms: Optional[int]
               ) -> Tuple[str, ...]:
    """The burst a request made at ``at_ms`` belongs to: the run keys of the
    requests made in the :data:`BURST_MS` up to that moment (included), whose
    loads the states published before it cannot show yet. Each key once,
    ordered by its first request in that span, then by key: every monitor
    computes the same tuple whatever order it lists the requests in, and
    requests made later do not change it. At most :data:`MAX_BURST_PAIRS`,
    the earliest (a flood of pairs beyond them is ranked as before).

    ``requests``: ``(runtime_url, session, requested_at)`` of the document's
    entries (``requestedAt`` in ms; None is skipped)."""
    if at_ms is None:
        return ()
    since = at_ms - BURST_MS
    first: Dict[str, int] = {}
    for runtime_url, session, when in requests:
        if when is None or not since < when <= at_ms:
            continue
        key = run_key(runtime_url, session)
        if when < first.get(key, when + 1):
            first[key] = when
    return tuple(sorted(first, key=lambda k: (first[k], k))[:MAX_BURST_PAIRS])


def claim_order(runtime_url: str, session, members: Sequence[Member],
                loads: Optional[Sequence[Member]] = None,
                slack: float = LOAD_SLACK, burst: Sequence[str] = ()) -> List[Member]:
    """Who should claim this run, first to last: rendezvous hashing of the
    (runtime, session) pair, each member weighted by its capacity over its
    load (``capacity / (1 + busy)``: a busy or full monitor is first for
    fewer pairs, an idle one for more), and bounded loads: a member whose
    busy count would pass ``1 + slack`` times its share of the cluster's
    (:func:`over_bound`) goes after the ones within it. While loads hold, a
    pair keeps its monitor, which keeps a notebook's cells in one queue.

    Weights, not a hard "full last" rule: loads are seen late (published
    at most every fleet.LOAD_PUBLISH_INTERVAL, taken as of before the request), and the one
    monitor shown with room while the others were full then got every new
    pair until its load caught up.

    Requests made at the same moment all see the same published loads, so
    the hash alone would split them: ``burst`` (:func:`burst_keys`) places
    the pairs of the burst before this one first, one after another, each
    on the first member in its order still under its share of the burst
    so far (``ceil(pairs * capacity / total capacity)``); this pair then
    goes after the members at that cap. Every run of one pair in the burst
    gets the same answer.

    ``members`` are the monitors that can claim here (present in the
    document); ``loads``, when given, the whole cluster's published states
    (the control document's), which replace the counts of the same ids in
    ``members`` and make up the mean. Every monitor computes the same order
    from the same published states."""
    key = run_key(runtime_url, session)
    fresh = {m.id: m for m in loads or ()}
    here = tuple(fresh.get(m.id, m) for m in members)
    cluster = tuple(fresh.values()) + tuple(m for m in here if m.id not in fresh)
    burst = tuple(burst)
    if key not in burst:
        return _bounded(key, here, cluster, slack)
    return list(_burst_order(key, burst[:burst.index(key)], here, cluster, slack))


@functools.lru_cache(maxsize=4096)
def _ranked(key: str, here: Tuple[Member, ...]) -> Tuple[Member, ...]:
    # Every deferred request asks again at each look: the hashes are kept.
    return tuple(ranking(key, here, weight=lambda m: m.capacity / (1.0 + m.busy)))


def _bounded(key, here, cluster, slack) -> List[Member]:
    return sorted(_ranked(key, here), key=lambda m: over_bound(m, cluster, slack))


@functools.lru_cache(maxsize=1024)
def _burst_order(key, before, here, cluster, slack) -> Tuple[Member, ...]:
    over = {m.id: over_bound(m, cluster, slack) for m in here}
    placed = dict.fromkeys(over, 0)
    for other in before + (key,):
        caps = _burst_caps(sum(placed.values()) + 1, here)
        order = sorted(_ranked(other, here),
                       key=lambda m: (over[m.id], placed[m.id] >= caps[m.id]))
        placed[order[0].id] += 1
    return tuple(order)


def _burst_caps(pairs: int, here: Sequence[Member]) -> Dict[str, int]:
    """Most of ``pairs`` each member may take: its share by capacity, rounded
    up (their sum is at least ``pairs``: one member always has room)."""
    total = sum(m.capacity for m in here) or 1
    return {m.id: math.ceil(pairs * m.capacity / total) for m in here}


def over_bound(member: Member, cluster: Sequence[Member], slack: float = LOAD_SLACK) -> bool:
    """Would one more run put ``member`` past ``1 + slack`` times its share
    (by capacity) of the cluster's busy count, that run included? At least
    one member of the cluster is always within its bound."""
    total = sum(m.busy for m in cluster) + 1
    capacity = sum(m.capacity for m in cluster) or 1
    return member.busy + 1 > math.ceil((1.0 + slack) * total * member.capacity / capacity)


def claim_delay(runtime_url: str, session, members: Optional[Sequence[Member]], me: str,
                step: float = CLAIM_STEP, loads: Optional[Sequence[Member]] = None,
                burst: Sequence[str] = ()) -> float:
    """Seconds monitor ``me`` waits before claiming this run: ``step`` per
    member ranked before it (0 for the preferred monitor, or with no other
    member in sight). Two monitors never get the same delay from the same
    view. A backup still claims when the preferred one is gone, busy or does
    not claim in time."""
    if members is None or len(members) <= 1:
        return 0.0
    order = [m.id for m in claim_order(runtime_url, session, members, loads, burst=burst)]
    if me not in order:
        return 0.0  # we do not see ourselves: behave as before, alone
    return order.index(me) * step
