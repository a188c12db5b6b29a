"""memtypes: an executable model of guest memory types and DMA coherency on Linux/KVM.

Layers (imports point down only; see DESIGN.md):

    cli -> report -> check -> explore | scenario -> hosts -> linux -> arch

``arch`` imports nothing else of memtypes; ``explore`` imports nothing of ``linux``.
"""

__version__ = "0.1.0"
