"""Stage-2 page-table side: MemAttr encodings (``stage2_set_prot_attr``) and the cache
maintenance done when a leaf is installed (``stage2_map_walker_try_leaf``,
``__clean_dcache_guest_page``, ``__invalidate_icache_guest_page``).

Sources: reference/kernel-kvm.md sections 5.1, 5.2, 5.4 (S-pgt, S-mmuh, asm/memory.h)."""

from __future__ import annotations

from memtypes.arch.features import Features
from memtypes.arch.reason import Reason
from memtypes.linux.kvm.kvm_host import S2_DEVICE, S2_NC, S2_NORMAL

MT_S2_NORMAL = 0xF
MT_S2_FWB_NORMAL = 0x6
MT_S2_NORMAL_NC = 0x5
MT_S2_FWB_NORMAL_NC = 0x5
MT_S2_DEVICE_nGnRE = 0x1
MT_S2_FWB_DEVICE_nGnRE = 0x1

_MEMATTR = {
    (S2_NORMAL, False): MT_S2_NORMAL, (S2_NORMAL, True): MT_S2_FWB_NORMAL,
    (S2_NC, False): MT_S2_NORMAL_NC, (S2_NC, True): MT_S2_FWB_NORMAL_NC,
    (S2_DEVICE, False): MT_S2_DEVICE_nGnRE, (S2_DEVICE, True): MT_S2_FWB_DEVICE_nGnRE,
}

R_ENC = {
    (S2_NORMAL, False): Reason("pgtable/memattr/normal", "arch/arm64/include/asm/memory.h MT_S2_NORMAL; "
                               "hyp/pgtable.c stage2_set_prot_attr() (S-pgt)",
                               "Normal WB MemAttr 0b1111 without FWB: the stricter of S1 and S2 wins"),
    (S2_NORMAL, True): Reason("pgtable/memattr/fwb-normal", "asm/memory.h MT_S2_FWB_NORMAL; "
                              "stage2_set_prot_attr() (S-pgt)",
                              "FWB MemAttr 0b0110: forces Normal WB whatever the guest's stage 1 says"),
    (S2_NC, False): Reason("pgtable/memattr/normal-nc", "asm/memory.h MT_S2_NORMAL_NC v6.9 (M-nc)",
                           "Normal-NC MemAttr 0b0101: guest Device stays Device, guest Normal becomes NC"),
    (S2_NC, True): Reason("pgtable/memattr/fwb-normal-nc", "asm/memory.h MT_S2_FWB_NORMAL_NC v6.9 (M-nc)",
                          "FWB MemAttr 0b0101: guest may pick Device-* or NC, never cacheable; same "
                          "value as without FWB"),
    (S2_DEVICE, False): Reason("pgtable/memattr/device", "arch/arm64/include/asm/memory.h MT_S2_DEVICE_nGnRE "
                               "(all versions; S-pgt v6.17)",
                               "Device-nGnRE MemAttr 0b0001 (what a guest S1 nGnRnE becomes is left to the "
                               "arch engine; the reference marks it UNVERIFIED)"),
    (S2_DEVICE, True): Reason("pgtable/memattr/fwb-device", "arch/arm64/include/asm/memory.h "
                              "MT_S2_FWB_DEVICE_nGnRE (all versions with FWB; S-pgt v6.17)",
                              "FWB MemAttr 0b0001: forces Device-nGnRE (same value as without FWB)"),
}


def stage2_memattr(s2: str, fwb: bool) -> int:
    """PAGE_S2_MEMATTR: the MemAttr[3:0] value for a stage-2 type on a host with/without FWB."""
    return _MEMATTR[(s2, fwb)]


# --- cache maintenance when installing a leaf (section 5.4) --------------------------------------
R_CMO_DCLEAN = Reason("pgtable/cmo/dclean", "hyp/pgtable.c stage2_map_walker_try_leaf() -> "
                      "dcache_clean_inval_poc; kvm_mmu.h __clean_dcache_guest_page() (S-pgt, S-mmuh)",
                      "new Normal-cacheable leaf without FWB: D-cache cleaned+invalidated to PoC "
                      "through the linear map")
R_CMO_DCLEAN_INLINE = Reason("kvm/user_mem_abort/clean_dcache", "arch/arm64/kvm/mmu.c user_mem_abort() "
                             "v5.8 (S-5.8)", "<=5.13: clean_dcache_guest_page() called inline for a "
                             "non-device translation fault without FWB")
R_CMO_FWB_SKIP = Reason("pgtable/cmo/fwb-skip", "kvm_mmu.h __clean_dcache_guest_page() (S-mmuh)",
                        "FWB: D-cache clean skipped (the guest always accesses memory cacheable)")
R_CMO_NONCACHEABLE = Reason("pgtable/cmo/none-for-device", "hyp/pgtable.c stage2_pte_cacheable() (S-pgt)",
                            "NC and Device leaves get no D-cache maintenance")
R_CMO_IINVAL = Reason("pgtable/cmo/iinval", "hyp/pgtable.c stage2_map_walker_try_leaf() -> "
                      "icache_inval_pou; kvm_mmu.h __invalidate_icache_guest_page() (S-pgt, S-mmuh)",
                      "executable leaf: I-cache invalidated to PoU")
R_CMO_DIC_SKIP = Reason("pgtable/cmo/dic-noop", "kvm_mmu.h __invalidate_icache_guest_page(); CTR_EL0.DIC "
                        "(S-mmuh)", "DIC: I-cache invalidation is a no-op")
R_CMO_DCLEAN_INLINE_FWB = Reason("kvm/user_mem_abort/clean_dcache-fwb", "arch/arm64/kvm/mmu.c user_mem_abort() "
                                 "v5.8 (S-5.8); kvm_mmu.h __clean_dcache_guest_page()",
                                 "<=5.13: clean_dcache_guest_page() called inline, a no-op with FWB")
R_CMO_IINVAL_INLINE = Reason("kvm/user_mem_abort/invalidate_icache", "arch/arm64/kvm/mmu.c user_mem_abort() "
                             "v5.8 (S-5.8)", "<=5.13: exec fault: invalidate_icache_guest_page() called inline "
                             "(I-cache to PoU)")
R_CMO_PERM = Reason("pgtable/cmo/perm-relax", "hyp/pgtable.c stage2_attr_walker() (S-pgt)",
                    "permission relax: no D-cache maintenance; I-cache invalidated before adding X")


def leaf_cmo(s2: str, x: bool, host: Features, perm: bool, reasons: list, *,
             inline: bool = False) -> tuple[bool, bool]:
    """Which cache maintenance installing (or relaxing) a leaf does: (dclean, iinval).

    ``inline``: <=5.13, where user_mem_abort() itself called clean_dcache_guest_page() on a
    non-device translation fault and invalidate_icache_guest_page() on an exec fault (S-5.8); from
    5.14 the page-table walker does it (S-pgt).  The outcome is the same; the reasons differ."""
    if perm:
        reasons.append(R_CMO_PERM)
        dclean = False
    elif s2 != S2_NORMAL:
        reasons.append(R_CMO_NONCACHEABLE)
        dclean = False
    elif host.fwb:
        reasons.append(R_CMO_DCLEAN_INLINE_FWB if inline else R_CMO_FWB_SKIP)
        dclean = False
    else:
        reasons.append(R_CMO_DCLEAN_INLINE if inline else R_CMO_DCLEAN)
        dclean = True
    iinval = False
    if x:
        if host.dic:
            reasons.append(R_CMO_DIC_SKIP)
        else:
            reasons.append(R_CMO_IINVAL_INLINE if inline else R_CMO_IINVAL)
            iinval = True
    return dclean, iinval
