"""The variants docstring and the README show a complete example of each kind: they run."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import memtypes.linux.kvm.variants as kv
from memtypes.arch.features import Features
from memtypes.linux import userfiles
from memtypes.linux.dma import make_env, run
from memtypes.linux.dma import variants as dv
from memtypes.linux.kvm import kernel
from memtypes.linux.kvm.explain import explain

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    userfiles.reset()


def docstring_blocks() -> list[str]:
    doc = kv.__doc__
    blocks = []
    for m in re.finditer(r"::\n\n((?:(?: {4,}.*)?\n)+)", doc):
        blocks.append(textwrap.dedent(m.group(1)))
    return blocks


def readme_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _check_registered(names_kvm, names_dma):
    for n in names_kvm:
        assert kv.VARIANTS[n].source is not None
    for n in names_dma:
        assert dv.DMA_VARIANTS[n].source is not None


def test_docstring_examples_run(tmp_path):
    blocks = docstring_blocks()
    assert len(blocks) == 4
    f = tmp_path / "doc_variants.py"
    f.write_text("\n".join(blocks))
    userfiles.load_files([str(f)])
    _check_registered(["nc-for-platform-too", "fwb-cacheable-uncached"], ["flush-no-unpin", "unpin-always"])
    grace = Features(fwb=True, dic=True)
    assert explain(kernel("6.12+nc-for-platform-too"), grace, "vfio-platform-mmio").fault.s2 == "NC"
    assert explain(kernel("6.17+fwb-cacheable-uncached"), grace, "vfio-pci-bar").fault.s2 == "NORMAL"
    # the DMA ones: the unpin flush gone, or always there
    ops = [("attach", "g"), ("map", 0, 1), ("guest_read", 0), ("dev_write", "g", 0), ("unmap", 0, 1)]
    for name, flushed in (("flush-no-unpin", False), ("unpin-always", True)):
        env = make_env(name, "6.9", groups=[("g", True)], npages=1)
        st = run(env, ops)
        assert any(f[0] == "F@unpin" for f in st[-1].flushes) == flushed


def test_readme_examples_run(tmp_path):
    blocks = readme_blocks()
    assert len(blocks) >= 2
    f = tmp_path / "readme_variants.py"
    f.write_text("\n".join(blocks))
    userfiles.load_files([str(f)])
    assert any(v.source == str(f.resolve()) for v in kv.VARIANTS.values())
    assert any(v.source == str(f.resolve()) for v in dv.DMA_VARIANTS.values())
