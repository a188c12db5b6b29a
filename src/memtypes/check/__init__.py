"""memtypes.check."""
