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

State: the passthrough columns plus ``saved`` and ``restored``: ``saved`` is ``""`` (nothing saved),
``"-"`` (saved without tags) or two letters (the guest's tags when saved, the tags the VMM got);
``restored``: a restore happened and the guest has not rewritten its tags since.

``tags-survive-save-restore`` holds when, after a restore of tags the VMM believes it saved, the
page's tags equal the guest's tags at save time.

``applies(kernel, variant)``: from 5.14 for mainline (MTE for guests); variants in their eras
(``mte-rfc-2020`` also in <=5.13, where it adds MTE).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

from memtypes.check.family import ERAS, Family, LiveVariants
from memtypes.check.families.passthrough import ACC, BOOL, HOST, MTE, SLOT0, VCPUS, KvmModel
from memtypes.check.families.passthrough import applies as _pt_applies
from memtypes.check.families.passthrough import init_text as _pt_init_text
from memtypes.errors import InputError
from memtypes.explore.table import Clause, Column, Moves, TableProperty
from memtypes.linux.kvm import variants as kvm_variants
from memtypes.linux.kvm.kvm_host import Vm
from memtypes.linux.kvm.guest import mte_copy_tags

DEFAULT_HOSTS = ("armv8.0", "grace", "armv8.5-mte")
DEFAULT_REGIONS = ("anon", "shmem", "file", "pmem", "guest-memfd", "vfio-pci-bar")
SAVED_VALUES = ("", "-") + tuple(a + b for a in "GSZ" for b in "GSZ")


def applies(kernel: str, variant: str) -> bool:
    if not _pt_applies(kernel, variant):
        return False
    return variant != "mainline" or kernel != "5.13"


class MteModel(KvmModel):
    family = "mte"

    @property
    def SAVED(self) -> int:
        return SLOT0 + self.nslots

    @property
    def RESTORED(self) -> int:
        return SLOT0 + self.nslots + 1

    def _extra_columns(self):
        return (Column("saved", SAVED_VALUES), Column("restored", BOOL))

    def __init__(self, kernel: str, variant: str, params: Mapping[str, Any], **kw) -> None:
        super().__init__(kernel, variant, params, **kw)
        self._copy_tags = functools.lru_cache(maxsize=None)(self._copy_tags_of)

    def _copy_tags_of(self, mte: bool, vcpus: bool, to_guest: bool, logging: bool):
        """KVM_ARM_MTE_COPY_TAGS as the kernel answers it: ``(errno or None, reason)``."""
        return mte_copy_tags(self.rules, Vm(mte=mte, created_vcpus=int(vcpus)), to_guest=to_guest, logging=logging)

    def _init(self, h):
        return super()._init(h) + ("", False)

    def _groups(self):
        base = super()._groups()
        sv, rs = self.SAVED, self.RESTORED
        out = [g for g in base if g.table != "slot"]
        for i, c in enumerate(self.SLOTS):
            out.append(Moves(f"slot{i}", (HOST, MTE, VCPUS, ACC, c, rs), (VCPUS, ACC, c, rs),
                             functools.partial(self._mte_slot_moves, i), table="slot"))
        for i, c in enumerate(self.SLOTS):
            out.append(Moves(f"tags{i}", (HOST, MTE, VCPUS, c, sv, rs), (c, sv, rs),
                             functools.partial(self._tag_moves, i), table="tags"))
        return tuple(out)

    def _mte_slot_moves(self, i, vals):
        """The passthrough moves of slot ``i``; ``restored`` is cleared when the guest rewrote its
        tags or the memory was replaced."""
        h, mte, vcpus, acc, s, restored = vals
        out = []
        for a, w in self._slot_moves(i, (h, mte, vcpus, acc, s)):
            if w == (vcpus, acc, s):
                continue                      # changes nothing in the VM
            rewritten = a.name in ("mmap_over", "delete_memslot") or (a.name == "access" and a.arg("s1") == "Tagged")
            out.append((a, w + (restored and not rewritten,)))
        return out

    def _tag_moves(self, i, vals):
        """Dirty logging, save and restore of slot ``i``: ``(action, (slot, saved, restored))``."""
        h, mte, vcpus, s, saved, restored = vals
        if not mte or not s or s[1] not in ("", "L"):
            return []
        rules = self.rules
        out = []
        r, flags, s2, tags = s
        logging = flags == "L"
        nflags = "" if logging else "L"
        if self._prepare(h, mte, vcpus, "flags_only", r, nflags).ok:
            out.append((self._act("vmm", "set_logging", slot=i, on=not logging), ((r, nflags, s2, tags), saved, restored)))
        # save: with the tags (COPY_TAGS FROM_GUEST) or without
        truth = "Z" if tags == "S" else tags
        if rules.mte_copy_tags:
            if self._copy_tags(mte, vcpus, False, logging)[0] is None:
                out.append((self._act("vmm", "save", slot=i, with_tags=True), (s, truth + truth, restored)))
        elif rules.mte_upgrade_any:
            # RFC: no ioctl; the VMM's non-PROT_MTE mapping reads tags as zero
            out.append((self._act("vmm", "save", slot=i, with_tags=True), (s, truth + "Z", restored)))
        out.append((self._act("vmm", "save", slot=i, with_tags=False), (s, "-", restored)))
        if saved:
            # restore into fresh pages: stage 2 unmapped, tags written back or left stale
            if saved != "-":
                if rules.mte_copy_tags:
                    if self._copy_tags(mte, vcpus, True, logging)[0] is not None:
                        return out
                out.append((self._act("vmm", "restore", slot=i, with_tags=True), ((r, flags, "", saved[1]), saved, True)))
            out.append((self._act("vmm", "restore", slot=i, with_tags=False), ((r, flags, "", "S"), "", False)))
        return out

    @staticmethod
    def _survived(saved, restored, s) -> bool:
        return not restored or len(saved) != 2 or not s or s[3] == saved[0]

    def _build_properties(self):
        props = [p for p in super()._build_properties()
                 if p.name in ("tags-only-on-tag-storage", "tags-sanitised") or p.kind == "sometimes"]
        props.insert(2, TableProperty(
            "tags-survive-save-restore", "always", self._per_slot((self.SAVED, self.RESTORED), self._survived),
            "tags saved by the VMM equal the guest's tags after restore", "MTE for KVM guest"))
        return props

    def _sometimes(self):
        out = super()._sometimes()
        out.append(TableProperty("restore-happened", "sometimes", (Clause((self.RESTORED,), bool),)))
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
            slot = state[SLOT0 + action.arg("slot")]
            err, why = mte_copy_tags(rules, vm, to_guest=action.name == "restore", logging=slot[1] == "L")
            way = "TO_GUEST" if action.name == "restore" else "FROM_GUEST"
            text = why.text if why.text.startswith(way) else f"{way}: {why.text}"
            return f"KVM_ARM_MTE_COPY_TAGS {text}"
        if action.name == "set_logging":
            return "KVM_SET_USER_MEMORY_REGION (flags only): dirty logging " + ("on" if action.arg("on") else "off")
        return super().describe(state, action, next_state)

    def format_state(self, state) -> str:
        saved, restored = state[self.SAVED], state[self.RESTORED]
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
    variants=LiveVariants((), kvm_variants.names),
    init_text=_pt_init_text,
    kernels=ERAS,
    properties=("tags-only-on-tag-storage", "tags-sanitised", "tags-survive-save-restore"),
    applies=applies,
    bench_params={"slots": 4},
)
