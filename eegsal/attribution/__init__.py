"""Attributions of a decoder's decisions to channels and time points."""

from eegsal.attribution.container import Attributions
from eegsal.attribution.io import read_attributions
from eegsal.attribution.methods import METHODS, attribute
from eegsal.attribution.saturation import saturation

__all__ = ["METHODS", "Attributions", "attribute", "read_attributions", "saturation"]
