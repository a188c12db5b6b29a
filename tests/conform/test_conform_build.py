"""The agent is built from its source by memtypes itself (never a committed binary)."""

import shutil

import pytest

from memtypes.conform import build
from memtypes.errors import InputError


def test_agent_source_ships_with_the_package():
    src = build.agent_source().decode()
    assert "KVM_ARM_MTE_COPY_TAGS" in src and "KVM_SET_USER_MEMORY_REGION" in src


def test_build_is_static_arm64_and_cached(tmp_path):
    try:
        build.compiler()
    except InputError as e:
        pytest.skip(f"no arm64 cross compiler here: {e}")   # .ci/run installs gcc-aarch64-linux-gnu
    a = build.build_agent(tmp_path)
    head = a.read_bytes()[:64]
    assert head[:4] == b"\x7fELF" and head[4] == 2          # ELF64
    assert int.from_bytes(head[18:20], "little") == 183     # EM_AARCH64
    assert build.build_agent(tmp_path) == a                 # keyed by the source hash: built once
    assert [p.name for p in tmp_path.iterdir()] == [a.name]  # nothing half-built left behind


def test_missing_compiler_is_one_line(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError) as e:
        build.compiler()
    assert "apt-get install" in e.value.one_line()
