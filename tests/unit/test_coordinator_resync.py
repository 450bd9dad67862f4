"""What a reconnect must not leave behind (issue 18, memory across reconnects).

After a reconnect the sync thread applies the server's state in one step and
lets the coordinator look at the whole map (Coordinator.on_synced). Entries
that peers deleted meanwhile are no longer in the map: they must leave the
coordinator's index, and a run of ours whose entry is gone must be dropped,
or each reconnect under load keeps the runs and entries in flight for good
(a soak of 8 documents stepped up ~6 MB per sync server restart)."""

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
