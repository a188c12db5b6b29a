"""Variants from the user's own files (``--variants FILE.py``) and from installed packages
(entry-point group ``memtypes.variants``).

A variants file is plain Python that calls :func:`memtypes.linux.kvm.variants.register` with
:class:`~memtypes.linux.kvm.variants.Variant` (KVM) or
:class:`~memtypes.linux.dma.variants.DmaVariant` (VFIO type1 / iommufd) values; see the docstring
of ``memtypes/linux/kvm/variants.py`` for complete examples.  The file is imported under a module
name derived from its absolute path (``memtypes_user_variants_<hash>``), so the functions it
defines pickle by reference and a worker process that loads the same file finds them.

Loading is idempotent per (path, content); every loaded file is recorded with its SHA-256
(:func:`loaded`), for the JSON output and the saved traces.  Any failure -- missing file, syntax
error, an exception while importing, nothing registered, a refused variant -- is one
:class:`~memtypes.errors.InputError` naming the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

from memtypes.errors import InputError

GROUP = "memtypes.variants"

_LOADED: dict[str, str] = {}      # absolute path -> sha256 of the content loaded
_EP_LOADED: list[str] = []        # entry points loaded ("name = module:attr")
_EP_DONE = [False]


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def module_name(path: str | Path) -> str:
    return "memtypes_user_variants_" + hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:12]


def _count() -> int:
    from memtypes.linux.dma import variants as dv
    from memtypes.linux.kvm import variants as kv
    return len(kv.VARIANTS) + len(dv.DMA_VARIANTS)


def _run_registering(source: str, fn) -> int:
    """Run ``fn`` with ``source`` stamped on what it registers; returns how many it registered.
    On any failure what it registered is forgotten and the error re-raised."""
    from memtypes.linux.kvm import variants as kv
    before = _count()
    kv._SOURCE.append(source)
    try:
        fn()
    except BaseException:
        kv.unregister_source(source)
        raise
    finally:
        kv._SOURCE.pop()
    return _count() - before


def _error_text(e: BaseException, path: str = "") -> str:
    if isinstance(e, SyntaxError):
        return f"SyntaxError: {e.msg} (line {e.lineno})"
    if isinstance(e, SystemExit):
        return f"the file called exit({e.code})"
    tb = e.__traceback__
    line = None
    while tb is not None:       # the last frame inside the user's file, if any
        if path and tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return f"{msg} (line {line})" if line else msg


def load_file(path: str | Path, *, where: str = "--variants") -> dict:
    """Import one variants file; returns ``{"path", "sha256"}``."""
    p = Path(path)
    if not p.is_file():
        raise InputError("variants file not found", where=f"{where} {path}",
                         expected="a Python file that registers variants")
    ap = str(p.resolve())
    digest = file_hash(p)
    if ap in _LOADED:
        if _LOADED[ap] == digest:
            return {"path": ap, "sha256": digest}
        raise InputError("this file changed since it was loaded in this process", where=ap)
    name = module_name(ap)
    spec = importlib.util.spec_from_file_location(name, ap)
    if spec is None or spec.loader is None:
        raise InputError("not an importable Python file", where=ap, expected="a .py file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod

    def run() -> None:
        spec.loader.exec_module(mod)  # type: ignore[union-attr]

    try:
        n = _run_registering(ap, run)
    except KeyboardInterrupt:
        sys.modules.pop(name, None)
        raise
    except BaseException as e:  # the user's code: any failure is one line naming the file
        sys.modules.pop(name, None)
        raise InputError(_error_text(e, ap), where=ap) from None
    if n == 0:
        sys.modules.pop(name, None)
        raise InputError("registers no variant", where=ap,
                         expected="register(Variant(...)) or register(DmaVariant(...)) at import")
    _LOADED[ap] = digest
    return {"path": ap, "sha256": digest}


def load_files(paths: Iterable[str | Path] | None, *, where: str = "--variants") -> list[dict]:
    """Load the installed packages' variants (once), then each file in order."""
    load_entry_points()
    return [load_file(p, where=where) for p in (paths or ())]


def load_entry_points() -> None:
    """Import every entry point of the group ``memtypes.variants`` (once per process): the
    object it names is imported (registering on import) and, if callable, called."""
    if _EP_DONE[0]:
        return
    _EP_DONE[0] = True
    from importlib.metadata import entry_points
    try:
        eps = entry_points(group=GROUP)
    except TypeError:  # pragma: no cover - Python < 3.10
        eps = entry_points().get(GROUP, [])  # type: ignore[attr-defined]
    for ep in sorted(eps, key=lambda e: e.name):
        label = f"entry point {ep.name} = {ep.value}"

        def run(ep=ep) -> None:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type(sys)):
                obj()

        try:
            _run_registering(label, run)
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            raise InputError(_error_text(e), where=f"{GROUP} {label}") from None
        _EP_LOADED.append(label)


def loaded() -> list[dict]:
    """Every variants file loaded in this process, in load order: ``{"path", "sha256"}``."""
    return [{"path": p, "sha256": h} for p, h in _LOADED.items()]


def reset() -> None:
    """Forget every user variant and loaded file (tests)."""
    from memtypes.linux.kvm import variants as kv
    kv.unregister_user()
    for p in list(_LOADED):
        sys.modules.pop(module_name(p), None)
    _LOADED.clear()


def verify(recorded: Iterable[dict], *, where: str) -> list[str]:
    """Reload the variants files a trace or report recorded.  A missing file is an
    :class:`InputError`; a file whose content changed is loaded anyway and reported in the
    returned warnings (the replay may then differ from the recorded run)."""
    notes = []
    for rec in recorded or ():
        path = rec.get("path") if isinstance(rec, dict) else rec
        if not isinstance(path, str):
            raise InputError("a variants entry has no path", where=where, field="variant_files",
                             expected="{path: FILE, sha256: HASH}")
        want = rec.get("sha256") if isinstance(rec, dict) else None
        if not Path(path).is_file():
            same = [f["path"] for f in loaded() if want and f["sha256"] == want]
            if same:
                notes.append(f"variants file {path} recorded in this trace is missing: using "
                             f"{same[0]} (same content)")
                continue
            if _LOADED:
                notes.append(f"variants file {path} recorded in this trace is missing: using the "
                             f"variants loaded with --variants")
                continue
            raise InputError(f"the variants file {path} recorded in this trace is missing",
                             where=where, field="variant_files",
                             expected="the file at that path (or pass --variants FILE)")
        got = file_hash(path)
        if want and want != got:
            notes.append(f"variants file {path} changed since the trace was saved "
                         f"(sha256 {want[:12]} then, {got[:12]} now): the replay uses the new content")
        load_file(path, where=where)
    return notes
