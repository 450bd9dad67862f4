"""mrmd-monitor: a headless Yjs peer that runs notebook cells on MRP runtimes."""

__version__ = "0.1.0"
