"""What a reconnect must not leave behind.

After a reconnect the sync thread applies the server's state in one step and
lets the coordinator look at the whole map (Coordinator.on_synced). Entries
that peers deleted meanwhile are no longer in the map: they must leave the
coordinator's index, and a run of ours whose entry is gone must be dropped,
or each reconnect under load keeps the runs and entries in flight for good
(a soak of 8 documents stepped up ~6 MB per sync server restart)."""

from mrmd_monitor import messages as m
from tests.unit.test_coordinator import World


def resync_after_outage(world, change):
    """The browser changes the map while we are away; we get it all at once,
    as the sync step 2 of a reconnect, and look again at every entry."""
    world.to_browser()
    change()
    world.applying = True
    world.mon.apply_update(world.br.get_update(world.mon.get_state()))
    world.applying = False
    world.co.on_synced()


def test_entries_deleted_while_away_leave_the_index_and_their_runs_are_dropped():
    world = World()
    world.br_text += "```python\nprint('hi')\n```\n"
    world.to_monitor()
    world.request("claimed-then-deleted")
    world.br_map["finished"] = {"status": "completed", "completedAt": 1_700_000_000_000}
    world.to_monitor()
    assert "claimed-then-deleted" in world.co.runs
    assert {"claimed-then-deleted", "finished"} <= set(world.co.entries.index)

    def delete_both():
        del world.br_map["claimed-then-deleted"]
        del world.br_map["finished"]

    resync_after_outage(world, delete_both)
    assert world.co.runs == {}
    assert world.co.entries.index == {}
    assert "claimed-then-deleted" in world.pool.names("cancel")


def test_many_reconnects_under_load_keep_nothing_of_the_runs_gone():
    world = World()
    world.br_text += "```python\nprint('hi')\n```\n"
    world.to_monitor()
    for round_ in range(20):
        for i in range(5):
            world.request("r%d-%d" % (round_, i), session="s%d" % i)

        def delete_round(round_=round_):
            for i in range(5):
                del world.br_map["r%d-%d" % (round_, i)]

        resync_after_outage(world, delete_round)
    assert len(world.co.runs) == 0 and len(world.co.entries.index) == 0


def test_a_browsers_offline_ready_that_wins_over_our_end_never_runs_the_cell_again():
    """The soak benchmark's double run: the monitor made the block itself, ran
    the cell and wrote ``completed`` while the browser, cut off, wrote
    ``ready`` from its stale copy (claimed by us). After the reconnect the
    browser's write wins the conflict (its client id is larger): the entry
    shows ``ready`` in our name for a run we no longer hold. It used to be
    taken over after --orphan-timeout and run a second time; now the end we
    wrote is put back and nothing runs again."""
    world = World()
    world.br_text += "```python\nprint('hi')\n```\n"
    world.to_monitor()
    world.request("e1")
    world.clock.t += 2
    world.tick()                       # no block from the browser: the monitor makes it
    world.to_browser()
    stale = dict(world.br_map["e1"])   # the browser's copy, claimed by us
    world.co.on_message(m.RunStarted("e1"))
    world.co.on_message(m.RunFinished("e1", result={"success": True, "executionCount": 1}))
    assert not world.co.runs and world.pool.names("submit") == ["e1"]

    def browser_writes_ready_offline():
        world.br_map["e1"] = {**stale, "status": "ready", "outputBlockReady": True}

    resync_after_outage(world, browser_writes_ready_offline)
    for _ in range(5):                 # well past --orphan-timeout
        world.clock.t += 30
        world.tick()
    entry = world.entry("e1")
    assert entry["status"] == "completed", entry
    assert entry["result"] == {"success": True, "executionCount": 1}
    assert world.pool.names("submit") == ["e1"]
