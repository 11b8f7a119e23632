"""The depth of sleep within a stage: the depth confound and its measures.

:func:`~eegsal.simulate.simulate_sleep_study` (``depth_confound=``) scales
the 0.5-4 Hz activity of an epoch by ``exp(DEPTH_GAIN * depth)`` and the odds
of its positive label by ``exp(-c * depth)``; :func:`relative_delta_power` and
:func:`log_delta_power` measure the depth from the EEG, as a user could.
"""

from __future__ import annotations

import mne
import numpy as np

#: Depth of sleep scales the amplitude of this band (Hz) by exp(DEPTH_GAIN * depth).
DEPTH_BAND = (0.5, 4.0)
DEPTH_GAIN = 0.5


def _lighter_sleep_odds(p, c, depth):
    """P(positive) with its odds multiplied by ``exp(-c * depth)`` (0 and 1 stay)."""
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-p)
    return np.where((p > 0) & (p < 1), 1 / (1 + np.exp(-(logit - c * depth))), p)


def relative_delta_power(data: np.ndarray, info: mne.Info) -> np.ndarray:
    """Relative delta power of a frontal channel, per epoch.

    The 0.5-4 Hz power over the 0.5-30 Hz power of Fz (else the first of F3,
    F4, Fp1, Fp2, else the first channel), from Welch's method
    (:func:`mne.time_frequency.psd_array_welch`, segments of up to 4 s): what
    a sleep scorer measures as the depth of NREM sleep.

    Parameters
    ----------
    data : ndarray, shape (n_epochs, n_channels, n_times)
        Epochs (V).
    info : mne.Info
        Their measurement info.

    Returns
    -------
    delta_power : ndarray, shape (n_epochs,)
        Relative power, in (0, 1).
    """
    names = info["ch_names"]
    ch = next((c for c in ("Fz", "F3", "F4", "Fp1", "Fp2") if c in names), names[0])
    sfreq = info["sfreq"]
    psd, freqs = _welch(data[:, names.index(ch)], sfreq, 0.5, min(30.0, sfreq / 2))
    delta = (freqs >= DEPTH_BAND[0]) & (freqs <= DEPTH_BAND[1])
    return psd[:, delta].sum(-1) / psd.sum(-1)


def log_delta_power(data: np.ndarray, info: mne.Info) -> np.ndarray:
    """Log delta power averaged over channels, per epoch.

    The natural log of the 0.5-4 Hz power (V², summed over Welch's frequency
    bins, :func:`mne.time_frequency.psd_array_welch`, segments of up to 4 s)
    of each channel, averaged over the channels: the depth of sleep as the
    whole montage shows it. A decoder that reads every channel knows the
    depth about as well as this measure, and better than a single channel's
    relative power (:func:`relative_delta_power`); a covariate that measures
    the confound less well than the decoder reads it leaves the confound in
    a test that holds the covariate fixed.

    Parameters
    ----------
    data : ndarray, shape (n_epochs, n_channels, n_times)
        Epochs (V).
    info : mne.Info
        Their measurement info.

    Returns
    -------
    log_delta_power : ndarray, shape (n_epochs,)
        Mean over channels of the log band power.
    """
    psd, _ = _welch(data, info["sfreq"], *DEPTH_BAND)
    return np.log(psd.sum(-1)).mean(-1)


def _welch(x: np.ndarray, sfreq: float, fmin: float, fmax: float):
    """Welch's PSD of ``x`` along its last axis, segments of up to 4 s."""
    from mne.time_frequency import psd_array_welch

    n_fft = min(x.shape[-1], int(4 * sfreq))
    return psd_array_welch(x, sfreq, fmin=fmin, fmax=fmax, n_fft=n_fft,
                           verbose=False)  # fmt: skip
