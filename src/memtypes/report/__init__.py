"""memtypes.report."""
