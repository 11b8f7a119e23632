"""The API reference lists every public name (no Sphinx build: docs/api.rst is read)."""

from __future__ import annotations

import importlib
import pkgutil
import re
import types
from pathlib import Path

import eegsal

API = Path(__file__).resolve().parents[1] / "docs" / "api.rst"
# values whose identity says nothing (equal strings and numbers may be one object)
_PLAIN = (str, bytes, int, float, bool, type(None))


def _public_modules() -> list[types.ModuleType]:
    """Eegsal and its subpackages and modules whose names have no leading ``_``.

    The modules inside a subpackage (``eegsal.data.cache``) hold its
    implementation; what the subpackage offers is its ``__init__``'s ``__all__``.
    """
    names = [i.name for i in pkgutil.iter_modules(eegsal.__path__)]
    return [eegsal] + [
        importlib.import_module(f"eegsal.{n}") for n in names if not n.startswith("_")
    ]


def _public_names() -> list[tuple[str, str]]:
    return [
        (module.__name__, name)
        for module in _public_modules()
        for name in getattr(module, "__all__", ())
    ]


def _api_reference() -> tuple[set[str], set[str]]:
    """Qualified names api.rst documents, and the modules it has sections for."""
    names, modules, module, in_summary = set(), set(), "eegsal", False
    for line in API.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"\.\. currentmodule:: (\S+)$", line):
            module, in_summary = m[1], False
            modules.add(module)
        elif re.match(r"\.\. autosummary::", line):
            in_summary = True
        elif m := re.match(r"\.\. auto(?:data|function|class):: (\S+)$", line):
            names.add(m[1] if m[1].startswith("eegsal.") else f"{module}.{m[1]}")
            in_summary = False
        elif in_summary and (m := re.match(r" {3}~?([A-Za-z_][\w.]*)\s*$", line)):
            names.add(m[1] if m[1].startswith("eegsal.") else f"{module}.{m[1]}")
        elif line.strip() and not line.startswith(" "):
            in_summary = False
    return names, modules


def _resolve(qualname: str):
    module, _, attr = qualname.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def test_the_reader_finds_the_reference():
    names, modules = _api_reference()
    assert {"eegsal.decode", "eegsal.stats.fit_lmm", "eegsal.simulate.STAGES"} <= names
    assert {"eegsal", "eegsal.stats", "eegsal.viz"} <= modules


def test_every_documented_name_exists():
    names, modules = _api_reference()
    for qualname in sorted(names):
        _resolve(qualname)  # AttributeError or ImportError names the stale entry
    for module in modules:
        importlib.import_module(module)


def test_every_public_name_is_in_the_api_reference():
    names, modules = _api_reference()
    documented = [_resolve(q) for q in names]
    missing = []
    for module, name in _public_names():
        obj = getattr(importlib.import_module(module), name)
        if isinstance(obj, types.ModuleType):
            found = obj.__name__ in modules
        elif isinstance(obj, _PLAIN):
            found = f"{module}.{name}" in names
        else:  # a re-export counts where it is documented under another name
            found = f"{module}.{name}" in names or any(d is obj for d in documented)
        if not found:
            missing.append(f"{module}.{name}")
    assert not missing, (
        f"public names missing from {API.name} (add them to an autosummary or an "
        f"autodata there): {', '.join(missing)}"
    )
