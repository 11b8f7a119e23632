"""Why does an EEG decoder decide what it decides? eegsal tells.

Simulate or load EEG epochs, decode a content label with a CNN under
subject-grouped cross-validation, attribute the decisions to channels and time
points, and test whether the decoder reads the content or only its context.

Torch-heavy parts (decoding, attribution, models) are imported on first use, so
``import eegsal`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from eegsal import simulate
from eegsal._logging import set_log_level
from eegsal._version import __version__

# public name -> module that defines it (loaded lazily: these import torch)
_LAZY = {
    "decode": "eegsal.decoding",
    "DecodingResult": "eegsal.decoding",
    "EEGDecoder": "eegsal.decoding",
    "attribute": "eegsal.attribution",
    "Attributions": "eegsal.attribution",
    "read_attributions": "eegsal.attribution",
    "models": "eegsal.models",
    "viz": "eegsal.viz",
    "stats": "eegsal.stats",
    "evaluation": "eegsal.evaluation",
    "load_manifest": "eegsal.data",
}

__all__ = [
    "Attributions",
    "DecodingResult",
    "EEGDecoder",
    "__version__",
    "attribute",
    "decode",
    "evaluation",
    "load_manifest",
    "models",
    "read_attributions",
    "set_log_level",
    "simulate",
    "stats",
    "viz",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__ == f"eegsal.{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'eegsal' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
