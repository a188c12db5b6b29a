"""The pkvm host feature (issue 16): inline and in a host profile file, read by the kernel model."""

from __future__ import annotations

import pytest

from memtypes.errors import InputError
from memtypes.hosts.profile import resolve
from memtypes.linux.kvm.eras import kernel
from memtypes.linux.kvm.explain import explain


def test_inline_pkvm():
    p = resolve("fwb=1,dic=1,mte=1,pkvm=1")
    assert p.features.pkvm and p.features.mte
    assert not resolve("fwb=1,dic=1,mte=1").features.pkvm


def test_profile_file_pkvm(tmp_path):
    f = tmp_path / "pkvm-host.yaml"
    f.write_text("name: pkvm-host\narch: arm64\nfeatures: {fwb: 1, dic: 1, mte: 1, pkvm: 1}\n")
    p = resolve(str(f))
    assert p.name == "pkvm-host" and p.features.pkvm
    # the pKVM rules are reachable from it: 7.x refuses KVM_CAP_ARM_MTE for every guest
    assert explain(kernel("7.3"), p.features, "anon", vm_mte=True).vm_mte == ("error", "-EINVAL")


def test_bad_pkvm_value(tmp_path):
    with pytest.raises(InputError):
        resolve("pkvm=2")
