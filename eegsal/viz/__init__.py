"""Figures of attributions: topographic maps over time, channel x time images."""

from eegsal.viz.maps import plot_image
from eegsal.viz.topomap import plot_topomap

__all__ = ["plot_image", "plot_topomap"]
