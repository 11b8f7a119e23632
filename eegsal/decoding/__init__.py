"""Decoders trained with subject-grouped cross-validation, and their results.

The names are loaded on first use, so that importing a low module
(``eegsal.decoding.networks``, ``eegsal.decoding.result``) does not bring in
the estimator and its training terms (:mod:`eegsal.guidance`).
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_LAZY = {
    "decode": "eegsal.decoding.cv",
    "TRANSFER_DECODER": "eegsal.decoding.cv",
    "EEGDecoder": "eegsal.decoding.estimator",
    "Ensemble": "eegsal.decoding.networks",
    "get_device": "eegsal.decoding.networks",
    "DecodingResult": "eegsal.decoding.result",
}

__all__ = [
    "TRANSFER_DECODER",
    "DecodingResult",
    "EEGDecoder",
    "Ensemble",
    "decode",
    "get_device",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'eegsal.decoding' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
