"""DMA coherency: VFIO type1 and iommufd with non-coherent domains, the KVM-VFIO device and x86
KVM's non-coherent DMA handling, under three variants (upstream, the 2024 flush series v1, v1 with
the review applied).  Ground truth: reference/kernel-vfio.md.

Run a sequence::

    from memtypes.linux.dma import make_env, Group, run
    env = make_env("vfio-flush-v1", "6.9", groups=[Group("g1", nc=True)], npages=2)
    for step in run(env, [("attach", "g1"), ("map", 0, 1), ("dev_read", "g1", 0)]):
        print(step.op, step.flushes, step.reads, step.state.nc_count)

Ops (tuples; a trailing dict gives keyword arguments):

* type1: ``attach g [{probe, fail_at}]``, ``detach g``, ``map start n [{fail_at}]``,
  ``unmap start n``, ``release``, ``cc_iommu`` (reports VFIO_DMA_CC_IOMMU as a read),
  ``pin_pages g page`` / ``unpin_pages g page`` (VFIO_PIN_PAGES/UNPIN_PAGES by the emulated
  device of mdev group ``g``; ``dev_read g page`` of an emulated group reads through the CPU);
* iommufd: ``hwpt_alloc ioas hid [{fail, fs}]``, ``hwpt_destroy hid``,
  ``dev_detach dev``, ``dev_attach dev hid`` (attach to an existing hwpt; TV26 upgrade),
  ``ioas_map ioas iova first n [{fail}]``, ``ioas_copy src src_iova n dst dst_iova [{fail}]``,
  ``ioas_unmap ioas iova n``;
* both: ``dev_read dev page|iova``, ``dev_write dev page|iova [v]``, ``guest_read p``,
  ``guest_write p [v]``, ``host_read p``, ``evict p``, ``wbinvd`` (guest WBINVD),
  ``guest_store p v type`` (UC/WC store, PAT per kernel), ``kvm_add f``, ``kvm_del f``.
"""

from __future__ import annotations

from typing import NamedTuple

from memtypes.arch import cache
from memtypes.linux.dma import iommufd, kvm_vfio, type1, x86_kvm
from memtypes.linux.dma import variants
from memtypes.linux.dma.common import FLUSH_FNS, Env, Group, make_env

__all__ = ["Env", "Group", "make_env", "Step", "run", "apply", "bind", "op_parts", "initial", "type1", "iommufd",
           "kvm_vfio", "x86_kvm", "variants", "flushes", "reads", "FLUSH_FNS"]


class Step(NamedTuple):
    op: tuple
    events: tuple
    state: object

    @property
    def flushes(self) -> list:
        return flushes(self.events)

    @property
    def reads(self) -> list:
        return reads(self.events)

    @property
    def errors(self) -> list:
        return [e for e in self.events if e[0] == "err"]


def flushes(events) -> list:
    """``[(fn, pages), ...]`` the flush calls among ``events``, in order."""
    return [e for e in events if e[0] in FLUSH_FNS]


def reads(events) -> list:
    """``[(agent, page, value), ...]`` the values read among ``events``, in order."""
    return [e[1:] for e in events if e[0] == "read"]


def initial(env: Env, backend: str = "type1", init=None, **kw):
    """The initial state of ``backend`` (``type1`` or ``iommufd``)."""
    if backend == "type1":
        return type1.initial(env, init)
    return iommufd.initial(env, init=init, **kw)


def _has_nc(s) -> bool:
    return s.kvm_nc


def apply(env: Env, s, op: tuple):
    """One operation: returns ``(state, events)``."""
    return bind(env, op, "type1" if isinstance(s, type1.T1) else "iommufd")(s)


def op_parts(op: tuple) -> tuple[str, tuple, dict]:
    """``(name, positional arguments, keyword arguments)`` of an op tuple (a trailing dict
    holds the keyword arguments)."""
    if op and isinstance(op[-1], dict):
        return op[0], op[1:-1], op[-1]
    return op[0], op[1:], {}


def bind(env: Env, op: tuple, backend: str = "type1"):
    """Operation ``op`` of ``backend`` resolved once: a function ``state -> (state, events)``
    (the explorer applies each op of its alphabet to many states)."""
    name, args, kw = op_parts(op)
    t1 = backend == "type1"
    mod = type1 if t1 else iommufd
    if name == "guest_read":
        return lambda s: mod.cpu_read(env, s, args[0], "guest")
    if name == "host_read":
        return lambda s: mod.cpu_read(env, s, args[0], "host")
    if name == "guest_write":
        return lambda s: mod.cpu_write(env, s, args[0], *args[1:])
    if name == "evict":
        return lambda s: mod.evict(env, s, args[0])
    if name == "dev_read":
        return lambda s: mod.dev_read(env, s, *args)
    if name == "dev_write":
        return lambda s: mod.dev_write(env, s, *args)
    if name == "kvm_add":
        return lambda s: kvm_vfio.file_add(env, s, args[0])
    if name == "kvm_del":
        return lambda s: kvm_vfio.file_del(env, s, args[0])
    if name == "wbinvd":
        def wbinvd(s):
            lines, ev = x86_kvm.guest_wbinvd(s.lines, _has_nc(s), env.npages)
            return s._replace(lines=lines), ev
        return wbinvd
    if name == "guest_store":
        p, v, typ = args

        def guest_store(s):
            honoured = not x86_kvm.ept_memtype(env.kernel, _has_nc(s))[1]
            nl = x86_kvm.guest_store(s.lines[p], v, honoured, typ)
            return s._replace(lines=s.lines[:p] + (nl,) + s.lines[p + 1:]), ()
        return guest_store
    if t1:
        if name == "cc_iommu":
            return lambda s: (s, (("read", "VFIO_DMA_CC_IOMMU", "", type1.cc_iommu(env, s)),))
        fn = {"attach": type1.attach, "detach": type1.detach, "map": type1.map_dma,
              "unmap": type1.unmap_dma, "release": type1.release,
              "pin_pages": type1.pin_pages, "unpin_pages": type1.unpin_pages}.get(name)
    else:
        fn = {"hwpt_alloc": iommufd.hwpt_alloc, "hwpt_destroy": iommufd.hwpt_destroy,
              "ioas_map": iommufd.ioas_map, "ioas_copy": iommufd.ioas_copy,
              "ioas_unmap": iommufd.ioas_unmap, "dev_attach": iommufd.dev_attach,
              "dev_detach": iommufd.dev_detach}.get(name)
    if fn is None:
        raise ValueError(f"unknown DMA operation {name!r}")
    return lambda s: fn(env, s, *args, **kw)


def run(env: Env, ops, backend: str = "type1", state=None, init=None) -> list:
    """Run ``ops`` from ``state`` (default: the initial state); one :class:`Step` per op."""
    s = state if state is not None else initial(env, backend, init)
    out = []
    for op in ops:
        s, ev = apply(env, s, tuple(op))
        out.append(Step(tuple(op), ev, s))
    return out


def line_of(s, env: Env, name: str) -> str:
    """``dram=.. cache=..`` of a page by name."""
    return cache.fmt(s.lines[env.names.index(name)])
