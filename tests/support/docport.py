"""The one fake of claims.DocPort (what claims and the coordinator need from a
document's connection): probes numbered as they are sent, and answered when
the test says so; a set of monitors in awareness; a claim delay to play a
backup monitor."""


class FakePort:
    def __init__(self, monitors=(), others=False):
        self.monitors = set(monitors)
        self.others = others          # another monitor is in awareness
        self.connected = True
        self.seq = 0                  # probes sent
        self.acked = 0                # the last one answered (the test's World does that)
        self.auto_ack = True
        self.delay = 0.0              # claim_delay: > 0 plays a backup monitor
        self.caught_up = 0

    def probe(self):
        if not self.connected:
            return None
        self.seq += 1
        return self.seq

    def is_monitor(self, client_id):
        return client_id in self.monitors

    def other_monitors_present(self):
        return self.others

    def is_connected(self):
        return self.connected

    def claim_delay(self, entry):
        return self.delay

    def catch_up(self):
        self.caught_up += 1
