"""Figures: topographic maps, channel x time images, curves and score panels."""

from eegsal.viz.curves import (
    PALETTE,
    plot_faithfulness,
    plot_randomization,
    plot_similarity,
    plot_subject_scores,
    plot_within_context,
)
from eegsal.viz.maps import plot_image
from eegsal.viz.topomap import plot_topomap

__all__ = [
    "PALETTE",
    "plot_faithfulness",
    "plot_image",
    "plot_randomization",
    "plot_similarity",
    "plot_subject_scores",
    "plot_topomap",
    "plot_within_context",
]
