"""The built-in families checked by ``memtypes check``: one module per family, each exposing
``FAMILY = Family(...)`` (see :mod:`memtypes.check.family`); :mod:`memtypes.check.registry`
imports them in a fixed order."""
