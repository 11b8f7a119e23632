"""Figures of attributions (topographic maps over time)."""

from eegsal.viz.topomap import plot_topomap

__all__ = ["plot_topomap"]
