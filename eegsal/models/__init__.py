"""Temporal-spatial CNNs for EEG; each maps (batch, n_chans, n_times) to logits."""

from eegsal.models._registry import MODELS, get_model_class
from eegsal.models.eegnet import EEGNet

__all__ = ["MODELS", "EEGNet", "get_model_class"]
