"""A planted shortcut: an eye-movement-like artifact on the epochs of one label.

:func:`plant_shortcut` makes a perfect, easy predictor of a label where it is
planted, to check whether a decoder reads the brain signal or the artifact.
"""

from __future__ import annotations

import mne
import numpy as np

#: Frontopolar and frontal electrodes, where eye movements show up.
FRONTAL = ("Fp1", "Fp2", "F7", "F8")


def plant_shortcut(
    epochs: mne.BaseEpochs,
    *,
    column: str = "content",
    value: str | None = None,
    subjects=None,
    channels: tuple[str, ...] = FRONTAL,
    window: tuple[float, float] = (0.5, 1.5),
    amplitude: float = 40.0,
) -> mne.BaseEpochs:
    """Add an eye-movement-like artifact to the epochs of one label: a shortcut.

    The artifact is a half-sine bump of ``amplitude`` µV over ``window`` on
    ``channels`` (frontal, as REM eye movements), in exactly the epochs whose
    ``column`` equals ``value`` (of the given ``subjects``): a perfect,
    easy predictor of the label where planted, absent elsewhere. Decoders
    trained where it is planted and tested where it is not show whether they
    read the brain signal or the artifact.

    Parameters
    ----------
    epochs : mne.Epochs
        Simulated epochs (preloaded); they are not modified.
    column : str
        Metadata column of the label.
    value : str | None
        The label that carries the artifact; default the first sorted value.
    subjects : list | None
        ``subject`` values whose epochs get it; None: all.
    channels : tuple of str
        Channels of the artifact.
    window : tuple of float
        Start and end (s) of the bump within the epoch.
    amplitude : float
        Peak amplitude (µV).

    Returns
    -------
    epochs : mne.Epochs
        A copy with the artifact, and a boolean metadata column ``shortcut``.
    """
    meta = epochs.metadata
    if meta is None or column not in meta:
        raise ValueError(f"epochs.metadata has no column {column!r}.")
    value = sorted(meta[column].astype(str).unique())[0] if value is None else value
    hit = (meta[column].astype(str) == str(value)).to_numpy().copy()
    if subjects is not None:
        hit &= meta["subject"].isin(list(subjects)).to_numpy()
    unknown = sorted(set(channels) - set(epochs.ch_names))
    if unknown:
        raise ValueError(f"channels {unknown} are not in the epochs.")
    out = epochs.copy()
    t = out.times
    t0, t1 = window
    inside = (t >= t0) & (t <= t1)
    bump = np.where(inside, np.sin(np.pi * (t - t0) / (t1 - t0)), 0.0)

    def add(x):  # (n_epochs, n_channels, n_times), V
        x[hit] += amplitude * 1e-6 * bump
        return x

    out.apply_function(add, picks=list(channels), channel_wise=False)
    with mne.utils.use_log_level("warning"):
        out.metadata = meta.assign(shortcut=hit)
    return out
