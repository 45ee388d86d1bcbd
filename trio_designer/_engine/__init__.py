"""Trio drivers: row-group workers, slot pools and the handoff, the sync baseline."""
