"""memtypes.hosts."""
