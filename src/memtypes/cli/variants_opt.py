"""The ``--variants FILE.py`` option shared by the commands that take a kernel."""

from __future__ import annotations

from typing import List, Optional

import typer

HELP = ("A Python file registering kernel or DMA variants (see memtypes/linux/kvm/variants.py); "
        "repeatable.  Installed packages' variants (entry points memtypes.variants) load too.")


def option():
    return typer.Option(None, "--variants", metavar="FILE.py", help=HELP)


def load(files: Optional[List[str]]) -> list[dict]:
    """Load the files (and the packages' entry points): ``[{path, sha256}]`` of the files."""
    from memtypes.linux import userfiles
    return userfiles.load_files(files or ())


def print_json(doc: dict, files: list[dict]) -> None:
    """Print ``doc`` as the command's JSON, with the variant files it used (if any)."""
    import json
    if files:
        doc["variant_files"] = files
    print(json.dumps(doc, indent=2, sort_keys=False))
