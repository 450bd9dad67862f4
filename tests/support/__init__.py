"""Helpers for mrmd-monitor's tests: waiting, ports, managed processes and browser peers."""
