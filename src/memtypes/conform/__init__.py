"""The model against real Linux kernels: real arm64 kernels fetched by package name from
Debian's registry under a private APT configuration (``fetch``), booted as KVM hosts under
``qemu-system-aarch64`` with a small C agent as their init (``initrd``, ``qemu``), the stage-2
descriptors they install read back through QEMU's gdbstub (``gdbstub``), and every
observation compared with what the model predicts for the same kernel and CPU features.
"""
