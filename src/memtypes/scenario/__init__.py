"""memtypes.scenario."""
