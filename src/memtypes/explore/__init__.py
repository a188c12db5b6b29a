"""memtypes.explore."""
