"""Temporal-spatial CNNs for EEG; each maps (batch, n_chans, n_times) to logits."""

from eegsal.models._registry import (
    MODELS,
    build_model,
    get_model_class,
    model_name,
    model_params_for,
    resolve_model,
)
from eegsal.models.deep4 import Deep4Net
from eegsal.models.eegnet import EEGNet
from eegsal.models.shallow import ShallowConvNet

__all__ = [
    "MODELS",
    "Deep4Net",
    "EEGNet",
    "ShallowConvNet",
    "build_model",
    "get_model_class",
    "model_name",
    "model_params_for",
    "resolve_model",
]
