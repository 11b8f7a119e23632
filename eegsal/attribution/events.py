"""Weakly supervised event localization from Grad-CAM time courses.

A decoder trained on epoch labels only says *where* in each epoch the
evidence for its label lies: :func:`localize_events` grows an event around the
peak of each epoch's Grad-CAM time course and returns MNE annotations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mne
import numpy as np

from eegsal._docs import fill_doc
from eegsal._logging import verbose
from eegsal.attribution.methods import attribute

if TYPE_CHECKING:
    from torch import nn

    from eegsal.decoding.result import DecodingResult

__all__ = ["localize_events"]


@fill_doc
@verbose
def localize_events(
    result_or_model: DecodingResult | nn.Module,
    epochs: mne.BaseEpochs,
    *,
    label: str | int = "predicted",
    layer: str | None = None,
    threshold: float = 0.5,
    smooth: float = 0.2,
    min_duration: float = 0.0,
    description: str | None = None,
    device: str = "auto",
    verbose: bool | str | int | None = None,
) -> mne.Annotations:
    """Find the event that carries each epoch's label, from Grad-CAM time courses.

    Weakly supervised: the model was trained on epoch labels only. Each
    epoch's Grad-CAM time course (at a layer after the spatial convolution,
    the model's default) is smoothed by a moving average of ``smooth``
    seconds (the smoothness prior), seeded at its peak, and grown in both
    directions while it stays above ``threshold`` times the peak.

    Parameters
    ----------
    result_or_model : DecodingResult | torch.nn.Module
        The decoder (each epoch explained by its held-out fold model).
    epochs : mne.Epochs
        The epochs.
    label : str | int
        The class whose evidence is localized (as in :func:`eegsal.attribute`).
    layer : str | None
        Grad-CAM layer; None: the model's default.
    threshold : float
        Share of the peak that bounds the event.
    smooth : float
        Width (s) of the moving average before growing.
    min_duration : float
        Events shorter than this (s) are dropped.
    description : str | None
        Description of the annotations; default ``'event'``.
    %(device)s
    %(verbose)s

    Returns
    -------
    annotations : mne.Annotations
        One per epoch with an event; onsets in seconds from the first
        epoch's event, as in ``epochs.events`` (``event sample / sfreq +
        start within the epoch``), with an ``epoch`` index in ``extras``.
    """
    attr = attribute(
        result_or_model,
        epochs,
        method="gradcam",
        layer=layer,
        label=label,
        device=device,
        verbose=False,
    )
    cam = np.asarray(attr.data, np.float64)
    cam = cam.reshape(len(epochs), -1, cam.shape[-1]).mean(1)  # (n, times)
    sfreq = epochs.info["sfreq"]
    k = max(1, int(round(smooth * sfreq)))
    kernel = np.ones(k) / k
    onsets, durations, extras = [], [], []
    first = epochs.events[0, 0] if len(epochs.events) else 0
    for e, course in enumerate(cam):
        s = np.convolve(np.clip(course, 0, None), kernel, mode="same")
        peak = int(np.argmax(s))
        if s[peak] <= 0:
            continue
        above = s >= threshold * s[peak]
        lo = peak
        while lo > 0 and above[lo - 1]:
            lo -= 1
        hi = peak
        while hi < len(s) - 1 and above[hi + 1]:
            hi += 1
        start, stop = epochs.times[lo], epochs.times[hi]
        if stop - start + 1 / sfreq < min_duration:
            continue
        onsets.append((epochs.events[e, 0] - first) / sfreq + start)
        durations.append(stop - start + 1 / sfreq)
        extras.append({"epoch": e, "start": float(start), "stop": float(stop)})
    return mne.Annotations(onsets, durations, description or "event", extras=extras)
