"""presence.py: what a monitor is, our state in the editor's shape, and the
peers' states as they arrive (pure: bytes and the time passed in)."""

import json

from mrmd_monitor import presence as p
from mrmd_monitor.cluster import Member
from mrmd_monitor.updates import write_varuint

ME = 1234

#: The original Node monitor's state, exactly as it sends it.
M0_STATE = {"user": {"name": "mrmd-monitor", "color": "#10b981", "type": "monitor"}}
BROWSER = {"user": {"name": "Ada", "color": "#30bced"}, "cursor": None}


def message(*entries):
    """A y-websocket awareness message: entries of (client id, clock, state or None)."""
    body = bytearray()
    write_varuint(body, len(entries))
    for client_id, clock, state in entries:
        write_varuint(body, client_id)
        write_varuint(body, clock)
        text = json.dumps(state).encode() if not isinstance(state, bytes) else state
        write_varuint(body, len(text))
        body += text
    out = bytearray([1])
    write_varuint(out, len(body))
    return bytes(out + body)


def decode(msg):
    """(client id, clock, state) of each entry of an awareness message we sent."""
    pos = 1

    def varuint():
        nonlocal pos
        n, shift = 0, 0
        while True:
            b = msg[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                return n
            shift += 7
    varuint()                      # the payload's length
    out = []
    for _ in range(varuint()):
        cid, clock, n = varuint(), varuint(), varuint()
        out.append((cid, clock, json.loads(msg[pos:pos + n])))
        pos += n
    return out


def presence(**kw):
    return p.Presence(ME, name="mrmd-monitor", **kw)


# -- what a monitor is -------------------------------------------------------------

def test_a_monitor_is_what_the_editor_takes_for_one():
    """The editor's isMonitorAvailable(): state.user.type === 'monitor'."""
    assert p.is_monitor_state(M0_STATE)
    assert p.is_monitor_state({"user": {"type": "monitor"}})
    assert not p.is_monitor_state(BROWSER)
    assert not p.is_monitor_state({"user": "monitor"})
    assert not p.is_monitor_state({"user": {"type": "Monitor"}})
    assert not p.is_monitor_state(None)
    assert not p.is_monitor_state([M0_STATE])


def test_our_state_has_the_editors_shape_and_our_member():
    pr = presence()
    pr.set_fields(monitor=p.member_state(Member(id="a-1", capacity=2, version="9")))
    state = pr.state()
    assert state["user"] == {"name": "mrmd-monitor", "color": p.MONITOR_COLOR, "type": "monitor"}
    assert p.is_monitor_state(state)
    assert p.parse_member(state) == Member(id="a-1", capacity=2, version="9", name="mrmd-monitor")
    sent = decode(pr.announce(0.0, renewing=True))
    assert sent == [(ME, sent[0][1], state)]


def test_the_original_node_monitor_counts_as_a_monitor_but_no_member():
    pr = presence()
    pr.receive(message((77, 1, M0_STATE)), 0.0)
    assert pr.is_monitor(77, 1.0)
    assert pr.other_monitors_present(100.0)
    assert pr.refresh_members(1.0) is False and pr.members == ()   # it shares no work


def test_a_browser_is_no_monitor():
    pr = presence()
    pr.receive(message((78, 1, BROWSER)), 0.0)
    assert pr.peer_alive(78, 1.0) and not pr.is_monitor(78, 1.0)
    assert not pr.other_monitors_present(100.0)


# -- hostile awareness ----------------------------------------------------

def _member(member_id):
    return {"user": {"name": "m", "color": "#000", "type": "monitor"},
            "monitor": {"id": member_id, "capacity": 2, "busy": 0, "version": "1"}}


def test_an_update_for_our_own_client_id_changes_nothing_and_we_say_so_at_once():
    """The server relays updates for any client id: one with a higher clock
    must not overwrite our state, nor remove us from our own members."""
    pr = presence()
    pr.set_fields(monitor=_member("us")["monitor"])
    pr.announce(0.0, renewing=True)
    assert pr.refresh_members(0.0) and [m.id for m in pr.members] == ["us"]
    for clock, forged in ((1000, {"user": {"name": "evil"}}), (2000, None),
                          (3000, _member("them"))):
        heard = pr.receive(message((ME, clock, forged)), 1.0)
        assert heard.reassert and not heard.members
        pr.refresh_members(1.0)
        assert [m.id for m in pr.members] == ["us"]
        assert pr.state()["user"]["name"] == "mrmd-monitor"
        (cid, ours, state), = decode(pr.announce(1.0, renewing=True))
        assert cid == ME and ours > clock and state == pr.state()   # peers take ours again


def test_five_messages_of_100000_client_ids_hold_at_most_the_cap_and_a_cursor_stays_cheap():
    import time
    pr = presence()
    pr.receive(message((5, 1, _member("real"))), 0.0)
    for batch in range(5):
        flood = message(*((10_000_000 + batch * 100_000 + i, 1, {"user": {"name": "x"}})
                          for i in range(100_000)))
        pr.receive(flood, 1.0)
    assert len(pr) <= p.MAX_STATES
    assert pr.is_monitor(5, 2.0)               # a monitor is not pushed out by others
    pr.refresh_members(2.0)
    assert [m.id for m in pr.members] == ["real"]
    move = message((7, 2, {"user": {"name": "Ada"}, "cursor": {"anchor": 3}}))
    renewal = message((5, 2, _member("real")))
    started = time.perf_counter()
    for _ in range(10):
        pr.receive(move, 3.0)
        if pr.receive(renewal, 3.0).members:
            pr.refresh_members(3.0)
    assert (time.perf_counter() - started) / 10 < 0.01


def test_a_state_too_large_or_too_deep_is_no_monitor_and_the_rest_of_the_message_applies():
    pr = presence()
    huge = dict(_member("huge"), pad="x" * (p.MAX_STATE_BYTES + 1))
    deep = b"[" * 100_000 + b"]" * 100_000
    pr.receive(message((11, 1, huge), (12, 1, deep), (13, 1, b"{not json"),
                       (14, 1, _member("fine"))), 0.0)
    assert not pr.is_monitor(11, 1.0) and pr.peer_alive(11, 1.0)
    assert not pr.is_monitor(12, 1.0) and not pr.is_monitor(13, 1.0)
    assert pr.is_monitor(14, 1.0)
    pr.refresh_members(1.0)
    assert [m.id for m in pr.members] == ["fine"]


def test_states_expire_by_their_last_update():
    pr = presence()
    pr.receive(message(*((100 + i, 1, BROWSER) for i in range(10))), 0.0)
    assert len(pr) == 10 and pr.needed(0)
    pr.receive(message((200, 1, BROWSER)), p.PEER_GONE_AFTER + 1.0)
    assert len(pr) == 1
    assert pr.needed(0)
    pr.expire(2 * p.PEER_GONE_AFTER + 2.0)
    assert len(pr) == 0 and not pr.needed(0)


def test_members_are_read_again_only_for_the_clients_that_changed(monkeypatch):
    pr = presence()
    pr.receive(message(*((100 + i, 1, _member("m%02d" % i)) for i in range(20))), 0.0)
    pr.receive(message(*((1000 + i, 1, BROWSER) for i in range(500))), 0.0)
    parsed = []
    real = p.parse_member
    monkeypatch.setattr(p, "parse_member", lambda state: (parsed.append(1), real(state))[1])
    assert not pr.receive(message((1001, 2, BROWSER)), 1.0).members    # a cursor: no monitor
    assert pr.receive(message((105, 2, _member("m05"))), 1.0).members
    assert len(parsed) == 1


def test_the_servers_echo_of_our_state_re_encoded_is_neither_applied_nor_answered():
    """The npm server re-encodes what it relays (JSON.stringify): our echo
    comes back at our clock in other bytes (a non-ASCII name unescaped).
    Answering it would start an endless exchange with our own echo."""
    pr = p.Presence(ME, name="mönitor 中")
    sent = pr.announce(0.0, renewing=True)
    (_, clock, state), = decode(sent)
    echo = message((ME, clock, json.dumps(state, ensure_ascii=False).encode("utf-8")))
    assert echo != sent
    assert pr.receive(echo, 1.0) == p.Heard()
    # ... but a removal at our clock (the server dropping an old connection
    # of ours) is answered: peers take it. Unless we fell silent: then it is
    # the server forgetting us, as silence means it to.
    assert pr.receive(message((ME, clock, None)), 1.0).reassert
    (_, clock, _), = decode(pr.announce(2.0, renewing=False))
    assert not pr.receive(message((ME, clock, None)), 3.0).reassert


# -- membership is proved, not claimed --------------------------------------

SECRET = "s3cret-ü"


def _signed(member_id, client_id, secret=SECRET):
    """The state a monitor holding ``secret`` publishes as ``client_id``."""
    pr = p.Presence(client_id, name="m", secret=secret)
    pr.set_fields(monitor=p.member_state(Member(id=member_id, capacity=2, version="1", at=7)))
    return pr.state()


def test_with_a_secret_only_a_member_signed_for_its_client_id_is_a_monitor():
    pr = presence(secret=SECRET)
    pr.receive(message((21, 1, _signed("good", 21)),
                       (22, 1, _member("unsigned")),
                       (23, 1, M0_STATE),
                       (24, 1, _signed("replayed", 21)),          # signed for 21, sent as 24
                       (25, 1, _signed("wrong-key", 25, secret="other"))), 0.0)
    assert pr.is_monitor(21, 1.0)
    assert [cid for cid in (22, 23, 24, 25) if pr.is_monitor(cid, 1.0)] == []
    assert all(pr.peer_alive(cid, 1.0) for cid in (22, 23, 24, 25))   # peers all the same
    pr.refresh_members(1.0)
    assert [m.id for m in pr.members] == ["good"]


def test_a_signed_member_changed_in_any_field_is_no_monitor():
    for field, value in (("busy", 9), ("capacity", 99), ("id", "other"), ("at", 8),
                         ("version", "2"), ("sig", "0" * 64), ("sig", None)):
        state = _signed("good", 21)
        state["monitor"][field] = value
        pr = presence(secret=SECRET)
        pr.receive(message((21, 1, state)), 0.0)
        assert not pr.is_monitor(21, 1.0), field
        assert not pr.other_monitors_present(100.0), field


def test_our_state_proves_itself_and_without_a_secret_nothing_changes():
    pr = presence(secret=SECRET)
    pr.set_fields(monitor=p.member_state(Member(id="us", capacity=2)))
    assert "sig" in pr.state()["monitor"]
    assert SECRET not in json.dumps(pr.state())
    plain = presence()
    plain.set_fields(monitor=p.member_state(Member(id="us", capacity=2)))
    assert "sig" not in plain.state()["monitor"]
    plain.receive(message((22, 1, _member("unsigned")), (23, 1, M0_STATE)), 0.0)
    assert plain.is_monitor(22, 1.0) and plain.is_monitor(23, 1.0)


def test_63_forged_monitors_take_no_document_from_a_monitor_with_a_secret():
    from mrmd_monitor import cluster
    docs = ["a.md", "b.md", "c.md", "d.md"]

    def followed(secret):
        pr = presence(secret=secret)
        pr.set_fields(monitor=p.member_state(Member(id="real", capacity=8, at=1)))
        pr.announce(0.0, renewing=True)
        pr.receive(message(*((500 + i, 1, _member("fake-%02d" % i)) for i in range(63))), 0.0)
        # ... and one speaking for us, signed or not
        pr.receive(message((ME, 50, _signed("evil", ME))), 0.5)
        pr.refresh_members(1.0)
        return cluster.followed(docs, pr.members, "real", 1)

    assert len(followed(None)) < len(docs)      # the attack, without a secret
    assert followed(SECRET) == docs
