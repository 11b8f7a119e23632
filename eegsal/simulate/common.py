"""What the simulators share: constants, the ground truth, parameter checks.

:class:`GroundTruth` (returned by :func:`~eegsal.simulate.simulate_sleep_study`
and :func:`~eegsal.simulate.plant_content`), the stages and channel sets, and
the checks and per-subject draws shared by the simulators of
:mod:`eegsal.simulate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mne
import numpy as np
import pandas as pd
from scipy.signal.windows import tukey

from eegsal._check import check_option, check_range, validate_type
from eegsal.simulate.signals import HIGH_BAND

#: The simulated sleep stages (AASM), in order.
STAGES = ("W", "N1", "N2", "N3", "REM")
#: The classic 19 electrodes of the 10-20 system.
DEFAULT_CH_NAMES = (
    "Fp1",
    "Fp2",
    "F7",
    "F3",
    "Fz",
    "F4",
    "F8",
    "T7",
    "C3",
    "Cz",
    "C4",
    "T8",
    "P7",
    "P3",
    "Pz",
    "P4",
    "P8",
    "O1",
    "O2",
)
#: Parieto-occipital electrodes of the posterior "hot zone" (those present are used).
HOT_ZONE = (
    "P7",
    "P5",
    "P3",
    "P1",
    "Pz",
    "P2",
    "P4",
    "P6",
    "P8",
    "PO7",
    "PO3",
    "POz",
    "PO4",
    "PO8",
    "O1",
    "Oz",
    "O2",
)
SCENARIOS = ("content", "confound", "both", "null", "random_slope")
_BASE_PROPORTIONS = {"W": 0.15, "N1": 0.10, "N2": 0.35, "N3": 0.15, "REM": 0.25}


@dataclass
class GroundTruth:
    """Where the simulated signals live, and the parameters that made them.

    Attributes
    ----------
    ch_names : list of str
        Channel names, in the order of the data.
    times : ndarray, shape (n_times,)
        Epoch time points (s).
    content_mask : ndarray of bool, shape (n_channels, n_times)
        Cells where the content signal is planted (all False in the
        ``"confound"`` and ``"null"`` scenarios, where there is none).
    content_channels : list of str
        Channels of the content signal.
    content_window : tuple of float
        Start and end (s) of the content signal within an epoch.
    stage_masks : dict of str to ndarray of bool, shape (n_channels, n_times)
        For each stage, the cells where its specific activity lives: the
        channels where any of its components (rhythms, graphoelements, eye
        movements) has at least half its peak amplitude, at all times.
    p_content : dict of str to float
        Probability of the positive content label in each stage.
    subject_effects : pandas.DataFrame
        One row per subject: ``subject``, ``gain``, ``iaf`` (Hz),
        ``spindle_freq`` (Hz), ``effect`` (the subject's content effect), and
        ``p_content_scale``.
    params : dict
        Every parameter of the call, for the record.
    """

    ch_names: list[str]
    times: np.ndarray
    content_mask: np.ndarray
    content_channels: list[str]
    content_window: tuple[float, float]
    stage_masks: dict[str, np.ndarray]
    p_content: dict[str, float]
    subject_effects: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        n_cells = int(self.content_mask.sum())
        return (
            f"<GroundTruth | scenario {self.params.get('scenario')!r}, "
            f"content on {len(self.content_channels)} ch x "
            f"{self.content_window[0]:g}-{self.content_window[1]:g} s "
            f"({n_cells} cells), {len(self.subject_effects)} subjects>"
        )


# ----------------------------------------------------------------------------
# Parameter handling shared by the simulators


def _make_info(ch_names, sfreq, montage):
    validate_type(montage, (str, mne.channels.DigMontage), "montage")
    if isinstance(montage, str):
        check_option("montage", montage, mne.channels.get_builtin_montages())
        montage = mne.channels.make_standard_montage(montage)
    if ch_names is None:
        ch_names = list(DEFAULT_CH_NAMES)
    ch_names = list(ch_names)
    if len(ch_names) < 2:
        raise ValueError(f"ch_names must name at least 2 channels, got {ch_names!r}.")
    if len(set(ch_names)) != len(ch_names):
        raise ValueError(f"ch_names has duplicates: {ch_names!r}.")
    known = set(montage.ch_names)
    unknown = [c for c in ch_names if c not in known]
    if unknown:
        raise ValueError(
            f"ch_names: {unknown} not in the montage (e.g. {montage.ch_names[:5]}); "
            "use 10-20/10-05 names such as 'Fp1', 'Cz', 'O2'."
        )
    info = mne.create_info(ch_names, sfreq, "eeg")
    info.set_montage(montage)
    return info


def _check_common(scenario, confound, effect_size, effect_spread, snr, sfreq, stages):
    check_option("scenario", scenario, SCENARIOS)
    if confound is None:
        confound = 0.5 if scenario in ("confound", "both") else 0.0
    check_range(confound, "confound", 0.0, 1.0)
    if scenario in ("content", "null", "random_slope") and confound > 0:
        raise ValueError(
            f"confound={confound} with scenario={scenario!r}: in this scenario the "
            "content label is independent of the stage; use scenario='both' (content "
            "signal and confound) or scenario='confound' (confound only)."
        )
    check_range(effect_size, "effect_size", 0.0, 1.0)
    check_range(effect_spread, "effect_spread", 0.0)
    check_range(snr, "snr", 0.0, low_closed=False)
    check_range(sfreq, "sfreq", 2 * HIGH_BAND[1], low_closed=False)
    stages = tuple(stages)
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages or len(set(stages)) != len(stages):
        raise ValueError(
            f"stages must be distinct values among {STAGES}, got {stages!r}."
        )
    return confound, stages


def _p_content(p_content, confound, base_rate, stages):
    """Probability of the positive label per stage.

    With ``confound`` c and base rate b: P(pos | REM) = b + c (1 - b) and
    P(pos | other stages) = b (1 - c), so c is the difference between them.
    """
    if p_content is None:
        check_range(base_rate, "base_rate", 0.0, 1.0)
        return {
            s: (base_rate + confound * (1 - base_rate))
            if s == "REM"
            else base_rate * (1 - confound)
            for s in stages
        }
    validate_type(p_content, dict, "p_content")
    missing = [s for s in stages if s not in p_content]
    if missing:
        raise ValueError(f"p_content has no probability for stages {missing}.")
    for s in stages:
        check_range(p_content[s], f"p_content[{s!r}]", 0.0, 1.0)
    return {s: float(p_content[s]) for s in stages}


def _content_channels(content_channels, ch_names):
    if content_channels is None:
        chans = [c for c in HOT_ZONE if c in ch_names]
        if not chans:
            raise ValueError(
                "content_channels: none of the posterior hot-zone channels "
                f"{HOT_ZONE} is among ch_names; name the content channels."
            )
        return [c for c in ch_names if c in chans]
    chans = list(content_channels)
    unknown = [c for c in chans if c not in ch_names]
    if unknown or not chans:
        raise ValueError(
            f"content_channels: {unknown or chans} not among ch_names {ch_names}."
        )
    return [c for c in ch_names if c in chans]


def _subjects(
    rng, n_subjects, effect_size, effect_spread, subject_spread, signed=False
):
    """Per-subject parameters (gain, IAF, spindle frequency, content effect).

    ``signed``: the effect is ``effect_size * N(0, 1)`` clipped to [-1, 1]
    (no average effect) instead of ``effect_size * (1 + effect_spread *
    N(0, 1))`` clipped to [0, 1]; the same random draws either way.
    """
    s = subject_spread
    rows = []
    for i in range(n_subjects):
        rows.append(
            dict(
                subject=f"sub-{i + 1:02d}",
                gain=float(np.exp(rng.normal(0, 0.2 * s))),
                iaf=float(np.clip(rng.normal(10.0, 0.8 * s), 8.0, 12.0)),
                spindle_freq=float(np.clip(rng.normal(13.5, 0.5 * s), 12.3, 14.7)),
                effect=_effect(rng.normal(), effect_size, effect_spread, signed),
                jitter=rng.normal(0, 0.01 * s, (4, 3)),
            )
        )
    return rows


def _effect(z, effect_size, effect_spread, signed):
    if signed:
        return float(np.clip(effect_size * z, -1.0, 1.0))
    return float(np.clip(effect_size * (1 + effect_spread * z), 0.0, 1.0))


def _envelope(times, window):
    """Tukey taper that is exactly zero outside ``window``."""
    inside = (times >= window[0]) & (times < window[1])
    env = np.zeros(times.size)
    if inside.sum():
        env[inside] = tukey(int(inside.sum()) + 2, 0.25)[1:-1]
    return env
