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

