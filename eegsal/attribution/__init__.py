"""Attributions of a decoder's decisions to channels and time points."""

from eegsal.attribution.container import Attributions
from eegsal.attribution.io import read_attributions
from eegsal.attribution.methods import METHODS, attribute
from eegsal.attribution.saturation import saturation
from eegsal.attribution.spectral import BANDS, attribute_spectrum

__all__ = [
    "BANDS",
    "METHODS",
    "Attributions",
    "attribute",
    "attribute_spectrum",
    "read_attributions",
    "saturation",
]
