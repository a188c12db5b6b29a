"""Names and number forms for stage-1 bytes and stage-2 MemAttr encodings.

Stage-1 (MAIR_ELx.Attr<n>) values commonly used by Linux guests (arch.md 1.4).  These are
UNVERIFIED: not checked against a kernel source, "widely known" only.  0xF0 is used only when
the guest kernel enables MTE (otherwise that slot is 0xFF).

Stage-2 encodings are KVM's (Linux ``arch/arm64/include/asm/memory.h``, arch.md section 3):
FWB = 0 ``MT_S2_NORMAL`` 1111, ``MT_S2_NORMAL_NC`` 0101, ``MT_S2_DEVICE_nGnRE`` 0001,
``MT_S2_AS_S1`` 1111; FWB = 1 ``MT_S2_FWB_NORMAL`` 0110, ``MT_S2_FWB_NORMAL_NC`` 0101,
``MT_S2_FWB_DEVICE_nGnRE`` 0001, ``MT_S2_FWB_AS_S1`` 0111; and the posted (merge status
UNVERIFIED) NoTagAccess series ``MT_S2_NORMAL_NOTAGACCESS`` 0100,
``MT_S2_FWB_NORMAL_NOTAGACCESS`` 1110.
"""

from __future__ import annotations

from memtypes.arch.reason import Reason

#: arch.md 1.4 / 7: the Linux guest MAIR byte assignments are UNVERIFIED.  Attach this reason
#: wherever a result relies on "the guest uses USUAL_S1" (not to the encodings themselves).
R_LINUX_MAIR = Reason(
    "linux/mair/usual-s1",
    "Linux arch/arm64/mm/proc.S MAIR_EL1_SET and asm/memory.h MT_* indices, guest kernels "
    "5.0-7.1 (values as given by reference arch.md 1.4, widely known but not checked against "
    "the kernel source)",
    "usual Linux guest stage-1 bytes: 0x00 Device-nGnRnE, 0x04 Device-nGnRE, 0x44 Normal NC, "
    "0xFF Normal WB, 0xF0 Tagged (only when the guest kernel enables MTE, else 0xFF)",
    unverified=True)

#: arch.md 3 / 7: the KVM NoTagAccess series (MT_S2_*_NOTAGACCESS) merge status is UNVERIFIED.
R_KVM_NOTAGACCESS_NAMES = Reason(
    "kvm/memory.h/MT_S2_NOTAGACCESS",
    "Linux arch/arm64/include/asm/memory.h, posted NoTagAccess series (Oct 2024 / Jan 2025); "
    "reference arch.md 3",
    "MT_S2_NORMAL_NOTAGACCESS = 0100 and MT_S2_FWB_NORMAL_NOTAGACCESS = 1110 come from a posted "
    "series; whether it is merged upstream is not known",
    unverified=True)

S1_DEVICE_nGnRnE = 0x00
S1_DEVICE_nGnRE = 0x04
S1_NORMAL_NC = 0x44
S1_NORMAL_WB = 0xFF
S1_TAGGED = 0xF0

#: Linux guest MAIR values (arch.md 1.4) - UNVERIFIED, not checked against a source.
USUAL_S1 = {"Device-nGnRnE": S1_DEVICE_nGnRnE, "Device-nGnRE": S1_DEVICE_nGnRE,
            "Normal-NC": S1_NORMAL_NC, "Normal-WB": S1_NORMAL_WB, "Tagged": S1_TAGGED}
USUAL_S1_UNVERIFIED = True

#: stage-1 names accepted by :func:`parse_s1`; ``None`` is "stage 1 disabled" (guest MMU off).
S1_NAMES: dict[str, int | None] = {
    "normal-wb": 0xFF,
    "normal-nc": 0x44,
    "normal-wt": 0xBB,  # iWT oWT RA+WA Non-transient
    "device-ngnrne": 0x00,
    "device-ngnre": 0x04,
    "device-ngre": 0x08,
    "device-gre": 0x0C,
    "tagged": 0xF0,
    "off": None,
    "mmu-off": None,
}

#: stage-2 names with FWB = 0.
S2_NAMES_NOFWB = {
    "s2-normal": 0b1111,
    "s2-nc": 0b0101,
    "s2-device": 0b0001,
    "mt_s2_normal": 0b1111,
    "mt_s2_normal_nc": 0b0101,
    "mt_s2_device_ngnre": 0b0001,
    "mt_s2_as_s1": 0b1111,
    "mt_s2_normal_notagaccess": 0b0100,
}

#: stage-2 names with FWB = 1.
S2_NAMES_FWB = {
    "fwb-normal": 0b0110,
    "fwb-nc": 0b0101,
    "fwb-device": 0b0001,
    "fwb-as-s1": 0b0111,
    "mt_s2_fwb_normal": 0b0110,
    "mt_s2_fwb_normal_nc": 0b0101,
    "mt_s2_fwb_device_ngnre": 0b0001,
    "mt_s2_fwb_as_s1": 0b0111,
    "mt_s2_fwb_normal_notagaccess": 0b1110,
}

S1_FORMS = ("a byte 0..255 as 0x.., 0b.. or decimal, or one of: " + ", ".join(S1_NAMES))
S2_FORMS_NOFWB = ("MemAttr 0..15 as 0x.., 0b.. or decimal, or one of: "
                  + ", ".join(k for k in S2_NAMES_NOFWB if not k.startswith("mt_"))
                  + ", MT_S2_NORMAL, MT_S2_NORMAL_NC, MT_S2_DEVICE_nGnRE, MT_S2_AS_S1, "
                    "MT_S2_NORMAL_NOTAGACCESS")
S2_FORMS_FWB = ("MemAttr 0..15 as 0x.., 0b.. or decimal, or one of: "
                + ", ".join(k for k in S2_NAMES_FWB if not k.startswith("mt_"))
                + ", MT_S2_FWB_NORMAL, MT_S2_FWB_NORMAL_NC, MT_S2_FWB_DEVICE_nGnRE, "
                  "MT_S2_FWB_AS_S1, MT_S2_FWB_NORMAL_NOTAGACCESS")


def s2_name_reasons(text: str) -> tuple[Reason, ...]:
    """UNVERIFIED provenance of a stage-2 *name* (arch.md 7): the MT_S2_*_NOTAGACCESS names."""
    key = text.strip().lower()
    if key in ("mt_s2_normal_notagaccess", "mt_s2_fwb_normal_notagaccess"):
        return (R_KVM_NOTAGACCESS_NAMES,)
    return ()


def parse_number(text: str) -> int | None:
    """``0x..``, ``0b..`` or decimal (underscores allowed); None if it is not a number."""
    t = text.strip().lower().replace("_", "")
    try:
        if t.startswith("0x"):
            return int(t[2:], 16)
        if t.startswith("0b"):
            return int(t[2:], 2)
        if t.isdigit():
            return int(t, 10)
    except ValueError:
        return None
    return None


def parse_s1(text: str) -> int | None:
    """A stage-1 attribute byte from text; None means stage 1 disabled (``off``/``mmu-off``).

    Raises ValueError listing the accepted forms.
    """
    key = text.strip().lower()
    if key in S1_NAMES:
        return S1_NAMES[key]
    n = parse_number(key)
    if n is None:
        raise ValueError(f"not a stage-1 attribute: {text!r}; accepted: {S1_FORMS}")
    if not 0 <= n <= 0xFF:
        raise ValueError(f"stage-1 attribute out of range: {text!r}; accepted: {S1_FORMS}")
    return n


def parse_s2(text: str, *, fwb: bool) -> int:
    """A stage-2 MemAttr[3:0] from text, interpreted with HCR_EL2.FWB = ``fwb``.

    Names belong to one FWB mode; a name of the other mode is an error (it would mean something
    else).  Raises ValueError listing the accepted forms.
    """
    key = text.strip().lower()
    forms = S2_FORMS_FWB if fwb else S2_FORMS_NOFWB
    mine, other = (S2_NAMES_FWB, S2_NAMES_NOFWB) if fwb else (S2_NAMES_NOFWB, S2_NAMES_FWB)
    if key in mine:
        return mine[key]
    if key in other:
        hint = "without --fwb (HCR_EL2.FWB = 0)" if fwb else "with --fwb (HCR_EL2.FWB = 1)"
        raise ValueError(f"{text!r} is a stage-2 name for use {hint}; accepted here: {forms}")
    n = parse_number(key)
    if n is None:
        raise ValueError(f"not a stage-2 MemAttr: {text!r}; accepted: {forms}")
    if not 0 <= n <= 0xF:
        raise ValueError(f"stage-2 MemAttr out of range: {text!r}; accepted: {forms}")
    return n
