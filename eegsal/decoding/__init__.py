"""Decoders trained with subject-grouped cross-validation, and their results."""

from eegsal.decoding.cv import decode
from eegsal.decoding.estimator import EEGDecoder
from eegsal.decoding.networks import Ensemble, get_device
from eegsal.decoding.result import DecodingResult

__all__ = ["DecodingResult", "EEGDecoder", "Ensemble", "decode", "get_device"]
