"""Family ``mte``: MTE VMs, memslots over allowed and disallowed VMAs, mmap-over after creation,
save/restore of the tags with and without KVM_ARM_MTE_COPY_TAGS.

Built on the passthrough engine (:class:`memtypes.check.families.passthrough.KvmModel`): the same
VMM/guest actions and tag tracking, over RAM-like regions (default anon, shmem, regular file, pmem,
guest_memfd, a vfio-pci BAR), plus:

* ``vmm.set_logging(on)``: KVM_MEM_LOG_DIRTY_PAGES toggled on the slot (a FLAGS_ONLY change,
  through kvm_arch_prepare_memory_region);
* ``vmm.save(with_tags)``: the VMM saves guest memory, with the tags (KVM_ARM_MTE_COPY_TAGS
  FROM_GUEST; in ``mte-rfc-2020`` there is no such ioctl and the VMM reads tags through its own
  mapping, which reads as zero without PROT_MTE) or without them;
* ``vmm.restore(with_tags)``: the VMM restores into fresh pages (stage 2 unmapped), writing the
  saved tags back (KVM_ARM_MTE_COPY_TAGS TO_GUEST, -EBUSY under dirty logging from 6.12) or not.

State: the passthrough state plus ``(saved, restored)``: ``saved`` is ``""`` (nothing saved),
``"-"`` (saved without tags) or two letters (the guest's tags when saved, the tags the VMM got);
``restored``: a restore happened and the guest has not rewritten its tags since.

``tags-survive-save-restore`` holds when, after a restore of tags the VMM believes it saved, the
page's tags equal the guest's tags at save time.

``applies(kernel, variant)``: from 5.14 for mainline (MTE for guests); variants in their eras
(``mte-rfc-2020`` also in <=5.13, where it adds MTE).
"""

from __future__ import annotations

from typing import Any, Mapping

from memtypes.check.family import ERAS, Family
from memtypes.check.families.passthrough import KvmModel
from memtypes.check.families.passthrough import applies as _pt_applies
from memtypes.errors import InputError
from memtypes.explore.model import Property, act
from memtypes.linux.kvm import variants as kvm_variants
from memtypes.linux.kvm.kvm_host import Vm
from memtypes.linux.kvm.guest import mte_copy_tags
from memtypes.linux.kvm.prepare_memory_region import kvm_arch_prepare_memory_region

DEFAULT_HOSTS = ("armv8.0", "grace", "armv8.5-mte")
DEFAULT_REGIONS = ("anon", "shmem", "file", "pmem", "guest-memfd", "vfio-pci-bar")


def applies(kernel: str, variant: str) -> bool:
    if not _pt_applies(kernel, variant):
        return False
    return variant != "mainline" or kernel != "5.13"


class MteModel(KvmModel):
    family = "mte"

    def _init(self, h, slots):
        return (h, False, False, False, slots, "", False)

    def _extra(self, state, vm, feats):
        h, mte, vcpus, acc, slots, saved, restored = state
        if not mte:
            return
        rules = self.rules
        for i, s in enumerate(slots):
            if not s or s[1] not in ("", "L"):
                continue
            r, flags, s2, tags = s
            logging = flags == "L"
            b = self._cur_backing(s)
            nflags = "" if logging else "L"
            res = kvm_arch_prepare_memory_region(rules, feats, vm, "flags_only", self._slot(nflags),
                                                 (b.vma,) if b.vma is not None else ())
            if res.ok:
                yield (act("vmm", "set_logging", slot=i, on=not logging),
                       self._set_slot(state, i, (r, nflags, s2, tags)))
            # save: with the tags (COPY_TAGS FROM_GUEST) or without
            truth = "Z" if tags == "S" else tags
            if rules.mte_copy_tags:
                err, _ = mte_copy_tags(rules, vm, to_guest=False, logging=logging)
                if err is None:
                    got = truth
                    yield act("vmm", "save", slot=i, with_tags=True), state[:5] + (truth + got, restored)
            elif rules.mte_upgrade_any:
                # RFC: no ioctl; the VMM's non-PROT_MTE mapping reads tags as zero
                yield act("vmm", "save", slot=i, with_tags=True), state[:5] + (truth + "Z", restored)
            yield act("vmm", "save", slot=i, with_tags=False), state[:5] + ("-", restored)
            if saved:
                # restore into fresh pages: stage 2 unmapped, tags written back or left stale
                if saved != "-":
                    if rules.mte_copy_tags:
                        err, _ = mte_copy_tags(rules, vm, to_guest=True, logging=logging)
                        if err is not None:
                            continue
                    new = (r, flags, "", saved[1])
                    yield (act("vmm", "restore", slot=i, with_tags=True),
                           self._set_slot(state[:5] + (saved, True), i, new))
                yield (act("vmm", "restore", slot=i, with_tags=False),
                       self._set_slot(state[:5] + ("", False), i, (r, flags, "", "S")))

    def successors(self, state):
        for a, n in super().successors(state):
            if n[6] and (a.name in ("mmap_over", "delete_memslot")
                         or (a.name == "access" and a.arg("s1") == "Tagged")):
                n = n[:6] + (False,)          # the guest rewrote its tags / the memory was replaced
            yield a, n

    def _with(self, state, *, mte=None, vcpus=None, acc=None):
        return super()._with(state, mte=mte, vcpus=vcpus, acc=acc)

    def tags_survive_save_restore(self, state) -> bool:
        saved, restored = state[5], state[6]
        if not restored or len(saved) != 2:
            return True
        return all(not s or s[3] == saved[0] for s in state[4])

    def _build_properties(self):
        props = [p for p in super()._build_properties()
                 if p.name in ("tags-only-on-tag-storage", "tags-sanitised") or p.kind == "sometimes"]
        props.insert(2, Property("tags-survive-save-restore", "always", self.tags_survive_save_restore,
                                 "tags saved by the VMM equal the guest's tags after restore", "MTE for KVM guest"))
        return props

    def _sometimes(self):
        out = super()._sometimes()
        out.append(Property("restore-happened", "sometimes", lambda s: s[6]))
        return out

    def describe(self, state, action, next_state) -> str:
        rules = self.rules
        if action.name in ("save", "restore"):
            if not action.arg("with_tags"):
                return "memory only, no tags" + ("; fresh pages keep stale tags until sanitised"
                                                 if action.name == "restore" else "")
            if not rules.mte_copy_tags:
                return ("no KVM_ARM_MTE_COPY_TAGS in this kernel: the VMM "
                        + ("read the tags through its own non-PROT_MTE mapping (read as zero)"
                           if action.name == "save" else "wrote the tags through its own mapping (ignored)"))
            vm = Vm(mte=state[1], created_vcpus=int(state[2]))
            slot = state[4][action.arg("slot")]
            err, why = mte_copy_tags(rules, vm, to_guest=action.name == "restore", logging=slot[1] == "L")
            return f"KVM_ARM_MTE_COPY_TAGS {'TO' if action.name == 'restore' else 'FROM'}_GUEST: {why.text}"
        if action.name == "set_logging":
            return "KVM_SET_USER_MEMORY_REGION (flags only): dirty logging " + ("on" if action.arg("on") else "off")
        return super().describe(state, action, next_state)

    def format_state(self, state) -> str:
        saved, restored = state[5], state[6]
        return super().format_state(state) + f" saved={saved or 'none'} restored={int(restored)}"


def build(kernel: str, variant: str, params: Mapping[str, Any]) -> MteModel:
    if not applies(kernel, variant):
        raise InputError(f"variant '{variant}' is not modelled for kernel {kernel}", where="mte")
    p = dict(params)
    p.setdefault("regions", list(DEFAULT_REGIONS))
    p.setdefault("hosts", list(DEFAULT_HOSTS))
    return MteModel(kernel, variant, p, default_regions=DEFAULT_REGIONS)


FAMILY = Family(
    name="mte",
    description="MTE VMs: memslots over allowed and disallowed VMAs, mmap-over after creation, tag "
                "sanitising, save/restore with and without KVM_ARM_MTE_COPY_TAGS",
    build=build,
    default_params={"hosts": list(DEFAULT_HOSTS), "regions": list(DEFAULT_REGIONS), "slots": 1},
    variants=tuple(kvm_variants.VARIANTS),
    kernels=ERAS,
    properties=("tags-only-on-tag-storage", "tags-sanitised", "tags-survive-save-restore"),
    applies=applies,
)
