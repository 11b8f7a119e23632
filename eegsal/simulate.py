"""Ground-truth simulations of sleep studies: scored epochs or a whole night.

The simulator is eegsal's yardstick: every stage of the package (decoding,
attribution, statistics) can be checked against where the content signal was
planted and which stage markers lie where.

Signal model, per epoch (amplitudes are standard deviations at the peak of a
component's topography, in µV, before the subject's gain):

* aperiodic 1/f^chi background on every channel, spatially smoothed over the
  scalp (volume conduction), with a stage-specific exponent chi;
* W: posterior alpha at the subject's individual alpha frequency, eye blinks;
* N1: fronto-central theta (4-7 Hz) and vertex sharp waves at Cz;
* N2: central sleep spindles (12-15 Hz, 0.5-2 s) and fronto-central K-complexes;
* N3: high-amplitude frontal slow waves (0.5-2 Hz);
* REM: central theta, sawtooth-wave trains (2-5 Hz), and rapid eye movements
  whose horizontal EOG leaks into Fp1/Fp2/F7/F8 with opposite polarity left/right;
* the content signal (positive-content epochs of the ``"content"`` and
  ``"both"`` scenarios only): inside ``content_window`` and on exactly the
  ``content_channels``, the delta (1-4 Hz) activity is scaled by
  ``1 - effect`` and beta/gamma activity (20-30 Hz) of ``effect * 10 µV`` is
  added: the posterior "hot zone" of dreaming (Siclari et al., 2017);
* white sensor noise at the requested ``snr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mne
import numpy as np
import pandas as pd
from scipy.signal.windows import tukey

from eegsal._check import check_option, check_random_state, check_range, validate_type
from eegsal._docs import fill_doc
from eegsal._logging import logger, verbose
from eegsal._sleep_signals import (
    HIGH_BAND,
    _bandpass,
    _brain_activity,
    _plant_content,
    _Scalp,
    _sensor_noise,
    _stage_components,
)

__all__ = [
    "FRONTAL",
    "GroundTruth",
    "STAGES",
    "WAVEFORMS",
    "plant_content",
    "plant_shortcut",
    "log_delta_power",
    "relative_delta_power",
    "simulate_night",
    "simulate_sleep_study",
]

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
_YASA_CODES = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM"}
_ANNOT_PREFIX = "Sleep stage "
#: Depth of sleep scales the amplitude of this band (Hz) by exp(DEPTH_GAIN * depth).
DEPTH_BAND = (0.5, 4.0)
DEPTH_GAIN = 0.5
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
# Parameter handling shared by both simulators


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


# ----------------------------------------------------------------------------
# Public simulators


@fill_doc
@verbose
def simulate_sleep_study(
    n_subjects: int = 20,
    n_epochs: int = 100,
    *,
    scenario: str = "content",
    confound: float | None = None,
    effect_size: float = 0.6,
    effect_spread: float = 0.3,
    snr: float = 10.0,
    stages: tuple[str, ...] = STAGES,
    stage_proportions: dict[str, float] | None = None,
    p_content: dict[str, float] | None = None,
    base_rate: float = 0.4,
    depth_confound: float | None = None,
    labels: tuple[str, str] = ("flying", "other"),
    content_channels: list[str] | None = None,
    content_window: tuple[float, float] | None = None,
    subject_spread: float = 1.0,
    montage: str | mne.channels.DigMontage = "colin27_1020",
    ch_names: list[str] | None = None,
    sfreq: float = 100.0,
    epoch_length: float = 4.0,
    seed: int | np.random.Generator | None = 0,
    verbose: bool | str | int | None = None,
) -> tuple[mne.EpochsArray, GroundTruth]:
    """Simulate a sleep study of labelled awakenings with a known ground truth.

    Each subject contributes ``n_epochs`` epochs of EEG, each scored with a
    sleep stage and labelled with a dream content (``labels[0]`` is the
    positive label, e.g. "flying"). See the module docstring for the signal
    model.

    Parameters
    ----------
    n_subjects : int
        Number of subjects.
    n_epochs : int
        Epochs per subject (at least 2 per stage).
    scenario : str
        ``'content'``: a content signal in the positive epochs, labels
        independent of the stage; ``'confound'``: no content signal, labels
        correlated with REM sleep; ``'both'``: both; ``'null'``: neither;
        ``'random_slope'``: a content effect in every subject but none on
        average (each subject's effect is ``effect_size * N(0, 1)``, clipped
        to [-1, 1]; a negative effect puts the content signal in the other
        class), labels independent of the stage: the null hypothesis of a
        claim about the population, not of one about these subjects.
    confound : float | None
        Difference in the probability of the positive label between REM and the
        other stages, in [0, 1] (``P(pos|REM) = b + c(1-b)``,
        ``P(pos|other) = b(1-c)`` with ``b = base_rate``). None: 0.5 for
        ``'confound'``/``'both'``, 0 otherwise.
    effect_size : float
        Content effect in [0, 1]: delta (1-4 Hz) amplitude is scaled by
        ``1 - effect`` and ``effect * 10 µV`` of 20-30 Hz activity is added.
    effect_spread : float
        Standard deviation of the subject's effect, relative to
        ``effect_size`` (a random slope; unused by ``'random_slope'``, where
        ``effect_size`` is that standard deviation).
    snr : float
        Ratio of the RMS of brain activity to the RMS of white sensor noise
        (> 0; ``np.inf`` for no sensor noise).
    stages : tuple of str
        Stages to simulate, among ``'W', 'N1', 'N2', 'N3', 'REM'``.
    stage_proportions : dict | None
        Expected share of each stage (normalized); subjects vary around it.
    p_content : dict | None
        Probability of the positive label per stage; overrides ``confound``.
    base_rate : float
        Probability of the positive label outside the confound.
    depth_confound : float | None
        A confound finer than the stage: the depth of sleep within a stage.
        None (default): no depth. A number ``c``: each epoch has a depth
        ``d ~ N(0, 1)`` within its stage; its 0.5-4 Hz activity, on every
        channel, is scaled by ``exp(0.5 d)`` (deeper sleep, more delta power),
        and the odds of the positive label are multiplied by ``exp(-c d)``
        (``c > 0``: content more likely in lighter sleep, ``c < 0`` in deeper
        sleep; 0: depth varies the EEG but not the content). The metadata
        then has ``depth`` (the latent truth) and two measurements a user
        could make: ``delta_power``, the relative 0.5-4 Hz power (of
        0.5-30 Hz) of a frontal channel (Fz, else the first of F3, F4, Fp1,
        Fp2, else the first channel), by Welch's method
        (:func:`mne.time_frequency.psd_array_welch`), as a scorer reads depth
        (:func:`relative_delta_power`); and ``log_delta_power``, the log
        0.5-4 Hz power averaged over every channel (:func:`log_delta_power`),
        which follows the depth more closely (Spearman 0.8 against 0.6 on
        2-s epochs), as closely as a decoder of all channels can read it.
    labels : tuple of str
        Names of the positive and negative content labels.
    content_channels : list of str | None
        Channels carrying the content signal. None: the posterior hot-zone
        channels among ``ch_names``.
    content_window : tuple of float | None
        Start and end (s) of the content signal within the epoch. None: the
        middle half of the epoch.
    subject_spread : float
        Scales every between-subject variation (gain, alpha frequency,
        spindle frequency, topography jitter, class proportions); 0 makes
        all subjects alike.
    %(montage_ch_names_sfreq)s
    epoch_length : float
        Epoch length (s).
    %(seed)s
    %(verbose)s

    Returns
    -------
    epochs : mne.EpochsArray
        Data in V, ``metadata`` with ``subject``, ``stage``, ``content``,
        ``epoch_in_subject`` (and ``depth``, ``delta_power`` with
        ``depth_confound``); event names ``'<stage>/<content>'``, so that
        ``epochs['REM']`` or ``epochs['flying']`` select.
    truth : GroundTruth
        Masks of the content and stage signals and the parameters.

    References
    ----------
    .. [1] Siclari F et al. (2017). The neural correlates of dreaming.
       Nature Neuroscience 20, 872-878.

    Examples
    --------
    >>> epochs, truth = simulate_sleep_study(n_subjects=2, n_epochs=20)
    >>> sorted(epochs.metadata.columns)
    ['content', 'epoch_in_subject', 'stage', 'subject']
    """
    params = {k: v for k, v in locals().items() if k not in ("verbose",)}
    params["seed"] = seed if not isinstance(seed, np.random.Generator) else "Generator"
    check_range(n_subjects, "n_subjects", 1, integer=True)
    check_range(n_epochs, "n_epochs", 1, integer=True)
    check_range(epoch_length, "epoch_length", 0.0, low_closed=False)
    check_range(subject_spread, "subject_spread", 0.0)
    confound, stages = _check_common(
        scenario, confound, effect_size, effect_spread, snr, sfreq, stages
    )
    if n_epochs < 2 * len(stages):
        raise ValueError(
            f"n_epochs={n_epochs} is too few for {len(stages)} stages: each subject "
            f"needs at least 2 epochs per stage, so n_epochs >= {2 * len(stages)}."
        )
    if len(labels) != 2 or labels[0] == labels[1]:
        raise ValueError(f"labels must be two distinct names, got {labels!r}.")
    if depth_confound is not None:
        check_range(depth_confound, "depth_confound")
    props = _stage_props(stage_proportions, stages)
    p_pos = _p_content(p_content, confound, base_rate, stages)
    info = _make_info(ch_names, sfreq, montage)
    ch_names = info["ch_names"]
    content_chs = _content_channels(content_channels, ch_names)
    n_times = int(round(epoch_length * sfreq))
    times = np.arange(n_times) / sfreq
    window = _content_window(content_window, epoch_length)
    envelope = _envelope(times, window)
    rng = check_random_state(seed)
    # separate streams: with the same seed, scenarios share the background
    # exactly, so "content" minus "null" is the content signal alone
    rng_content, rng_noise = rng.spawn(2)
    if depth_confound is not None:  # its own stream: the rest stays as it was
        (rng_depth,) = rng.spawn(1)
        depth = rng_depth.standard_normal(n_subjects * n_epochs)
    scalp = _Scalp(info)
    subjects = _subjects(
        rng, n_subjects, effect_size, effect_spread, subject_spread,
        signed=scenario == "random_slope",
    )  # fmt: skip
    has_content = scenario in ("content", "both", "random_slope")
    ch_idx = np.array([ch_names.index(c) for c in content_chs])
    logger.info(
        "Simulating %d subjects x %d epochs (%s scenario, confound %.2f), "
        "%d channels, %.1f s at %g Hz",
        n_subjects,
        n_epochs,
        scenario,
        confound,
        len(ch_names),
        epoch_length,
        sfreq,
    )

    data = np.empty((n_subjects * n_epochs, len(ch_names), n_times))
    meta = []
    conc = 20.0 / max(subject_spread, 1e-6)  # Beta concentration of class rates
    for si, subj in enumerate(subjects):
        counts = 2 + rng.multinomial(
            n_epochs - 2 * len(stages), rng.dirichlet(conc * props + 1e-3)
        )
        stage_seq = np.repeat(np.array(stages), counts)
        rng.shuffle(stage_seq)
        p_subj = {
            s: p if p in (0.0, 1.0) else rng.beta(p * conc, (1 - p) * conc)
            for s, p in p_pos.items()
        }
        p_epoch = np.array([p_subj[s] for s in stage_seq])
        if depth_confound is not None:
            d = depth[si * n_epochs : (si + 1) * n_epochs]
            p_epoch = _lighter_sleep_odds(p_epoch, depth_confound, d)
        content = rng.random(n_epochs) < p_epoch
        block = data[si * n_epochs : (si + 1) * n_epochs]
        for stage in stages:
            sel = np.flatnonzero(stage_seq == stage)
            block[sel] = _brain_activity(
                rng, stage, sel.size, n_times, scalp, subj, sfreq
            )
        if depth_confound is not None:
            gain = np.exp(DEPTH_GAIN * d) - 1
            block += gain[:, None, None] * _bandpass(block, sfreq, *DEPTH_BAND)
        for k in range(n_epochs):
            meta.append(
                dict(
                    subject=subj["subject"],
                    stage=str(stage_seq[k]),
                    content=labels[0] if content[k] else labels[1],
                    epoch_in_subject=k,
                )
            )
    _sensor_noise(rng_noise, data, snr)
    metadata = pd.DataFrame(meta)
    if has_content:
        for si, subj in enumerate(subjects):
            rows = si * n_epochs + np.arange(n_epochs)
            # a negative effect (random_slope) puts the signal in the other class
            label = labels[0] if subj["effect"] >= 0 else labels[1]
            pos = rows[metadata["content"].to_numpy()[rows] == label]
            part = data[pos]
            effect = np.full(pos.size, abs(subj["effect"]))
            _plant_content(rng_content, part, ch_idx, envelope, effect, sfreq)
            data[pos] = part
    data *= 1e-6  # µV -> V
    if depth_confound is not None:
        metadata["depth"] = depth
        metadata["delta_power"] = relative_delta_power(data, info)
        metadata["log_delta_power"] = log_delta_power(data, info)
    names = metadata["stage"] + "/" + metadata["content"]
    event_id = {name: i + 1 for i, name in enumerate(sorted(names.unique()))}
    events = np.column_stack(
        [
            np.arange(len(metadata)) * n_times,
            np.zeros(len(metadata), int),
            names.map(event_id).to_numpy(),
        ]
    )
    epochs = mne.EpochsArray(
        data,
        info,
        events=events,
        event_id=event_id,
        tmin=0.0,
        metadata=metadata,
        verbose=False,
    )
    truth = GroundTruth(
        ch_names=list(ch_names),
        times=times,
        content_mask=_content_mask(has_content, ch_idx, envelope, len(ch_names)),
        content_channels=content_chs,
        content_window=window,
        stage_masks=_stage_masks(scalp, stages, n_times, sfreq),
        p_content=p_pos,
        subject_effects=pd.DataFrame(
            [{k: v for k, v in s.items() if k != "jitter"} for s in subjects]
        ),
        params=params,
    )
    return epochs, truth


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
    from mne.time_frequency import psd_array_welch

    names = info["ch_names"]
    ch = next((c for c in ("Fz", "F3", "F4", "Fp1", "Fp2") if c in names), names[0])
    sfreq = info["sfreq"]
    n_fft = min(data.shape[-1], int(4 * sfreq))
    psd, freqs = psd_array_welch(
        data[:, names.index(ch)], sfreq, fmin=0.5, fmax=min(30.0, sfreq / 2),
        n_fft=n_fft, verbose=False,
    )  # fmt: skip
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
    from mne.time_frequency import psd_array_welch

    sfreq = info["sfreq"]
    psd, _ = psd_array_welch(
        data, sfreq, fmin=DEPTH_BAND[0], fmax=DEPTH_BAND[1],
        n_fft=min(data.shape[-1], int(4 * sfreq)), verbose=False,
    )  # fmt: skip
    return np.log(psd.sum(-1)).mean(-1)


def _stage_props(stage_proportions, stages):
    if stage_proportions is None:
        props = np.array([_BASE_PROPORTIONS[s] for s in stages])
    else:
        validate_type(stage_proportions, dict, "stage_proportions")
        missing = [s for s in stages if s not in stage_proportions]
        if missing:
            raise ValueError(f"stage_proportions has no value for stages {missing}.")
        props = np.array([stage_proportions[s] for s in stages], float)
        if (props < 0).any() or props.sum() <= 0:
            raise ValueError(
                "stage_proportions must be non-negative and not all 0, got "
                f"{stage_proportions}."
            )
    return props / props.sum()


def _content_window(content_window, epoch_length):
    if content_window is None:
        return (epoch_length / 4, 3 * epoch_length / 4)
    t0, t1 = (float(v) for v in content_window)
    if not 0 <= t0 < t1 <= epoch_length:
        raise ValueError(
            f"content_window=({t0}, {t1}) must satisfy 0 <= start < end <= "
            f"epoch_length={epoch_length} s."
        )
    return (t0, t1)


def _envelope(times, window):
    """Tukey taper that is exactly zero outside ``window``."""
    inside = (times >= window[0]) & (times < window[1])
    env = np.zeros(times.size)
    if inside.sum():
        env[inside] = tukey(int(inside.sum()) + 2, 0.25)[1:-1]
    return env


def _content_mask(has_content, ch_idx, envelope, n_ch):
    mask = np.zeros((n_ch, envelope.size), bool)
    if has_content:
        mask[np.ix_(ch_idx, np.flatnonzero(envelope > 0))] = True
    return mask


def _stage_masks(scalp, stages, n_times, sfreq):
    mean_subj = dict(iaf=10.0, spindle_freq=13.5, gain=1.0, jitter=np.zeros((4, 3)))
    out = {}
    for stage in stages:
        # each component's channels: its topography at >= half its own peak
        chans = np.zeros(len(scalp.ch_names), bool)
        for topo, _, _ in _stage_components(stage, scalp, mean_subj, sfreq):
            chans |= np.abs(topo) >= 0.5 * np.abs(topo).max()
        out[stage] = np.repeat(chans[:, None], n_times, axis=1)
    return out


def _hypnogram(rng, duration, stage_length):
    """Generate a night of NREM/REM cycles (~90 min), N3 early and REM late."""
    n = int(round(duration / stage_length))
    per_min = 60.0 / stage_length
    seq = ["W"] * int(rng.uniform(5, 15) * per_min)
    cycle = 0
    while len(seq) < n:
        frac = cycle / 4.0
        blocks = [
            ("N1", rng.uniform(2, 6)),
            ("N2", rng.uniform(10, 25)),
            ("N3", max(0.0, rng.uniform(25, 40) * (1 - frac))),
            ("N2", rng.uniform(5, 15)),
            ("REM", rng.uniform(8, 15) + 15 * min(frac, 1.0)),
        ]
        for stage, minutes in blocks:
            seq += [stage] * int(minutes * per_min)
        if rng.random() < 0.5:
            seq += ["W"] * int(rng.uniform(0.5, 3) * per_min)
        cycle += 1
    return np.array(seq[:n])


def _read_hypnogram(hypnogram, stage_length):
    stages = np.asarray(hypnogram)
    if stages.ndim != 1 or stages.size == 0:
        raise ValueError(
            "hypnogram must be a non-empty 1-D sequence of stages, one per "
            f"{stage_length:g} s, got shape {stages.shape}."
        )
    if np.issubdtype(stages.dtype, np.number):
        bad = sorted({float(v) for v in stages if v not in _YASA_CODES})
        if bad:
            raise ValueError(
                f"hypnogram: unknown stage codes {bad}; expected {_YASA_CODES} "
                "(the YASA convention)."
            )
        return np.array([_YASA_CODES[int(v)] for v in stages])
    stages = np.array([str(s) for s in stages])
    bad = sorted(set(stages) - set(STAGES))
    if bad:
        raise ValueError(f"hypnogram: unknown stages {bad}; expected {STAGES}.")
    return stages


@fill_doc
@verbose
def simulate_night(
    duration: float | None = None,
    *,
    hypnogram: np.ndarray | list | None = None,
    stage_length: float = 30.0,
    n_awakenings: int = 10,
    report_window: float = 20.0,
    scenario: str = "content",
    confound: float | None = None,
    effect_size: float = 0.6,
    snr: float = 10.0,
    base_rate: float = 0.4,
    labels: tuple[str, str] = ("flying", "other"),
    content_channels: list[str] | None = None,
    montage: str | mne.channels.DigMontage = "colin27_1020",
    ch_names: list[str] | None = None,
    sfreq: float = 100.0,
    seed: int | np.random.Generator | None = 0,
    verbose: bool | str | int | None = None,
) -> mne.io.RawArray:
    """Simulate one continuous night of EEG with stage scores and dream reports.

    The night follows ``hypnogram`` (or a generated one of NREM/REM cycles).
    ``n_awakenings`` times the sleeper is woken at the end of a scored sleep
    epoch and gives a report (``labels[0]`` or ``labels[1]``); the next
    ``stage_length`` seconds are wake. In the ``'content'`` and ``'both'``
    scenarios, a positive report is preceded by the content signal during
    ``report_window`` seconds.

    Parameters
    ----------
    duration : float | None
        Length of the night (s) when no hypnogram is given (default 8 h).
    hypnogram : array-like | None
        One stage per ``stage_length``: names (``'W', 'N1', 'N2', 'N3',
        'REM'``) or YASA codes (0=W, 1=N1, 2=N2, 3=N3, 4=REM).
    stage_length : float
        Length of a scored epoch (s).
    n_awakenings : int
        Number of provoked awakenings with a content report.
    report_window : float
        Seconds before each awakening that the report refers to (at most
        ``stage_length``).
    scenario, confound, effect_size, snr, base_rate, labels, content_channels : ...
        As in :func:`simulate_sleep_study`.
    %(montage_ch_names_sfreq)s
    %(seed)s
    %(verbose)s

    Returns
    -------
    raw : mne.io.RawArray
        Data in V. Annotations ``'Sleep stage <S>'`` (duration ``stage_length``)
        for every scored epoch, and ``'Awakening/<label>'`` (duration 0) at each
        awakening, whose stage before awakening is the scored epoch that ends there.

    Examples
    --------
    >>> raw = simulate_night(duration=1800, n_awakenings=2)
    >>> raw.annotations.description[0]
    'Sleep stage W'
    """
    check_range(stage_length, "stage_length", 0.0, low_closed=False)
    check_range(n_awakenings, "n_awakenings", 0, integer=True)
    check_range(report_window, "report_window", 0.0, stage_length, low_closed=False)
    confound, stages = _check_common(
        scenario, confound, effect_size, 0.0, snr, sfreq, STAGES
    )
    p_pos = _p_content(None, confound, base_rate, stages)
    rng = check_random_state(seed)
    if hypnogram is None:
        duration = 8 * 3600.0 if duration is None else duration
        check_range(duration, "duration", stage_length)
        hypno = _hypnogram(rng, duration, stage_length)
    else:
        if duration is not None:
            raise ValueError("Give either duration or hypnogram, not both.")
        hypno = _read_hypnogram(hypnogram, stage_length)
    info = _make_info(ch_names, sfreq, montage)
    ch_names = info["ch_names"]
    ch_idx = np.array(
        [ch_names.index(c) for c in _content_channels(content_channels, ch_names)]
    )
    n_seg = hypno.size
    seg = int(round(stage_length * sfreq))

    # awakenings: at the end of sleep epochs whose next epoch exists; not adjacent
    sleep_idx = np.flatnonzero(hypno[:-1] != "W")
    if n_awakenings > sleep_idx.size // 3:
        raise ValueError(
            f"n_awakenings={n_awakenings} is too many for a night with "
            f"{sleep_idx.size} scored sleep epochs; use at most {sleep_idx.size // 3}."
        )
    chosen = []
    for i in rng.permutation(sleep_idx):
        if all(abs(i - j) > 2 for j in chosen):
            chosen.append(int(i))
        if len(chosen) == n_awakenings:
            break
    chosen = sorted(chosen)
    report_stage = hypno[chosen].copy()
    hypno = hypno.copy()
    hypno[np.array(chosen, int) + 1] = "W"  # woken up by the alarm
    reports = rng.random(len(chosen)) < np.array([p_pos[s] for s in report_stage])

    logger.info(
        "Simulating a night of %.1f h (%d scored epochs, %d awakenings)",
        n_seg * stage_length / 3600,
        n_seg,
        len(chosen),
    )
    # every scored epoch is simulated with 1 s of overlap on each side and the
    # segments are cross-faded, so stage changes leave no step in the signal
    pad = int(sfreq)
    scalp = _Scalp(info)
    subj = _subjects(rng, 1, effect_size, 0.0, 1.0)[0]
    data = np.zeros((len(ch_names), n_seg * seg + 2 * pad))
    fade = np.ones(seg + 2 * pad)
    ramp = np.sin(np.linspace(0, np.pi / 2, 2 * pad + 2)[1:-1]) ** 2
    fade[: 2 * pad] = ramp
    fade[-2 * pad :] = ramp[::-1]
    for stage in STAGES:
        idx = np.flatnonzero(hypno == stage)
        for chunk in np.array_split(idx, max(1, idx.size // 200)):
            if chunk.size == 0:
                continue
            x = _brain_activity(
                rng, stage, chunk.size, seg + 2 * pad, scalp, subj, sfreq
            )
            for k, i in enumerate(chunk):
                data[:, i * seg : (i + 1) * seg + 2 * pad] += x[k] * fade
    data = data[:, pad:-pad]
    if scenario in ("content", "both"):
        env = _envelope(
            np.arange(seg) / sfreq, (stage_length - report_window, stage_length)
        )
        for i in np.array(chosen)[reports]:
            part = data[None, :, i * seg : (i + 1) * seg].copy()
            _plant_content(rng, part, ch_idx, env, np.array([subj["effect"]]), sfreq)
            data[:, i * seg : (i + 1) * seg] = part[0]
    _sensor_noise(rng, data, snr)
    raw = mne.io.RawArray(data * 1e-6, info, verbose=False)
    onsets = list(np.arange(n_seg) * stage_length)
    desc = [_ANNOT_PREFIX + s for s in hypno]
    durations = [stage_length] * n_seg
    for i, pos in zip(chosen, reports, strict=True):
        onsets.append((i + 1) * stage_length)
        desc.append("Awakening/" + (labels[0] if pos else labels[1]))
        durations.append(0.0)
    order = np.argsort(onsets, kind="stable")
    raw.set_annotations(
        mne.Annotations(
            np.array(onsets)[order], np.array(durations)[order], np.array(desc)[order]
        )
    )
    return raw


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


#: Waveforms :func:`plant_content` can plant.
WAVEFORMS = ("burst", "erp", "band_power")


def _context_column(meta: pd.DataFrame | None, context: str | None) -> str | None:
    """Return the context column: ``context``, else ``stage`` or ``context``."""
    if context is not None:
        if meta is None or context not in meta:
            have = [] if meta is None else list(meta.columns)
            raise ValueError(
                f"context={context!r} is not a column of epochs.metadata; it has "
                f"{have}."
            )
        return context
    if meta is None:
        return None
    return next((c for c in ("stage", "context") if c in meta), None)


def _positive_rate(meta, n, context, rate, rate_by) -> tuple[np.ndarray, dict]:
    """P(positive label) per epoch, and per context value (the ground truth)."""
    if rate_by is None:
        check_range(rate, "rate", 0.0, 1.0)
        values = sorted(meta[context].astype(str).unique()) if context else ["all"]
        return np.full(n, float(rate)), {v: float(rate) for v in values}
    validate_type(rate_by, dict, "rate_by")
    if context is None:
        raise ValueError(
            "rate_by needs a context column (context=..., or a 'stage' or "
            "'context' column in epochs.metadata); give rate= for one rate."
        )
    ctx = meta[context].astype(str)
    rates = {str(k): v for k, v in rate_by.items()}
    missing = sorted(set(ctx) - set(rates))
    if missing:
        raise ValueError(
            f"rate_by has no rate for {context} {missing}; give one for each of "
            f"{sorted(set(ctx))}."
        )
    for k, v in rates.items():
        check_range(v, f"rate_by[{k!r}]", 0.0, 1.0)
    return ctx.map(rates).to_numpy(float), {
        k: float(rates[k]) for k in sorted(set(ctx))
    }


@fill_doc
@verbose
def plant_content(
    epochs: mne.BaseEpochs,
    *,
    channels: list[str] | tuple[str, ...],
    window: tuple[float, float],
    waveform: str = "burst",
    amplitude: float = 1.0,
    frequency: float = 10.0,
    band: tuple[float, float] = (8.0, 12.0),
    label_column: str = "content",
    labels: tuple[str, str] = ("flying", "other"),
    rate: float = 0.5,
    rate_by: dict[str, float] | None = None,
    context: str | None = None,
    seed: int | np.random.Generator | None = 0,
    verbose: bool | str | int | None = None,
) -> tuple[mne.BaseEpochs, GroundTruth]:
    """Plant a known content signal in your own epochs, and label them.

    Each epoch is labelled ``labels[0]`` (positive) with probability
    ``rate``, or ``rate_by[value]`` for its value of the ``context`` column
    (a confound, as on real data: e.g. dreams of flying more often reported
    from REM sleep), else ``labels[1]``; the positive epochs receive the
    signal, on ``channels`` within ``window`` only. The rest of every epoch,
    and every negative epoch, is left exactly as it was, so whatever a
    decoder finds beyond the context is the planted signal; and the signal
    is in the data's own units: ``amplitude`` is in standard deviations of
    each channel (over all epochs and times), so the same amplitude means
    the same signal-to-noise ratio on any recording.

    Parameters
    ----------
    epochs : mne.Epochs
        The recordings (read lazily or not); they are not modified.
    channels : list of str
        Channels that receive the signal.
    window : tuple of float
        Start and end (s, in the epochs' own times, ``epochs.times``) of the
        signal; it is exactly zero outside ``start <= t < end``.
    waveform : str
        ``'burst'``: an oscillation at ``frequency`` (Hz) with a random
        phase in each epoch, under a Tukey taper (25 % cosine edges);
        ``'erp'``: a smooth positive bump (a Hann window), the same in
        every epoch; ``'band_power'``: the epoch's own ``band`` activity
        (FFT band-pass) within the window, scaled by ``1 + g`` under the
        taper: a multiplicative change of band power.
    amplitude : float
        Size of the signal (>= 0), in standard deviations (SD) of each
        channel over all epochs and times of ``epochs``: the root mean
        square of what is added over the window is ``amplitude`` SD, in
        every positive epoch for ``'burst'`` and ``'erp'``, and over all
        positive epochs together for ``'band_power'`` (whose gain ``g`` is
        one per channel). 0 plants nothing: only the labels are drawn.
    frequency : float
        Frequency of the burst (Hz), below the Nyquist frequency.
    band : tuple of float
        Band (Hz) of ``'band_power'``.
    label_column : str
        Metadata column of the labels (created, or replaced).
    labels : tuple of str
        The positive and the negative label.
    rate : float
        P(positive) of every epoch, in [0, 1], when ``rate_by`` is None.
    rate_by : dict of str to float | None
        P(positive) for each value of the ``context`` column (every value
        present needs one), e.g. ``{'REM': 0.8, 'N2': 0.3}``.
    context : str | None
        The context column of ``rate_by``; None: ``'stage'``, else
        ``'context'``, whichever the metadata has.
    %(seed)s
    %(verbose)s

    Returns
    -------
    epochs : mne.Epochs
        A preloaded copy, with the labels in ``label_column`` and the signal
        added to the positive epochs (V, as the data).
    truth : GroundTruth
        ``content_mask`` (n_channels, n_times): the cells of the signal (all
        False when ``amplitude`` is 0); ``p_content``: P(positive) per
        context value (``'all'`` without a context); ``subject_effects``:
        per subject (when there is a ``subject`` column) the epochs and
        positive epochs; ``params``: the arguments, and ``sd``, each
        channel's SD (V).

    See Also
    --------
    simulate_sleep_study : the same kind of ground truth, on simulated EEG.
    eegsal.pipeline.calibrate : false-claim rate and power on your data.

    Examples
    --------
    >>> planted, truth = plant_content(
    ...     epochs, channels=["O1", "Oz", "O2"], window=(0.5, 1.5),
    ...     waveform="burst", frequency=10.0, amplitude=0.5,
    ...     rate_by={"executed": 0.7, "imagined": 0.3})  # doctest: +SKIP
    """
    params = {k: v for k, v in locals().items() if k not in ("epochs", "verbose")}
    params["seed"] = seed if not isinstance(seed, np.random.Generator) else "Generator"
    validate_type(epochs, mne.BaseEpochs, "epochs")
    check_option("waveform", waveform, WAVEFORMS)
    check_range(amplitude, "amplitude", 0.0)
    if len(labels) != 2 or labels[0] == labels[1]:
        raise ValueError(f"labels must be two distinct names, got {labels!r}.")
    names = list(epochs.ch_names)
    unknown = [c for c in channels if c not in names]
    if unknown or not len(channels):
        raise ValueError(
            f"channels: {unknown or list(channels)} are not channels of the epochs "
            f"(e.g. {names[:5]})."
        )
    chans = [c for c in names if c in set(channels)]
    ch_idx = np.array([names.index(c) for c in chans])
    times = epochs.times
    t0, t1 = (float(v) for v in window)
    envelope = _envelope(times, (t0, t1))
    if not (t0 < t1) or (envelope > 0).sum() < 2:
        raise ValueError(
            f"window=({t0:g}, {t1:g}) s must hold at least 2 samples of the epochs "
            f"({times[0]:g} to {times[-1]:g} s)."
        )
    sfreq = epochs.info["sfreq"]
    if waveform == "burst":
        check_range(
            frequency, "frequency", 0.0, sfreq / 2, low_closed=False, high_closed=False
        )
    if waveform == "band_power" and not 0 <= band[0] < band[1] <= sfreq / 2:
        raise ValueError(
            f"band={tuple(band)} Hz must satisfy 0 <= low < high <= {sfreq / 2:g} "
            "(the Nyquist frequency)."
        )
    meta = epochs.metadata
    n = len(epochs)
    context = _context_column(meta, context)
    p, p_content = _positive_rate(meta, n, context, rate, rate_by)
    rng = check_random_state(seed)
    rng_labels, rng_phase = rng.spawn(2)
    positive = rng_labels.random(n) < p

    out = epochs.copy().load_data()
    data = out.get_data(picks=chans)  # (n_epochs, n_chans, n_times), V
    sd = data.std(axis=(0, 2))
    inside = envelope > 0
    pos = np.flatnonzero(positive)
    added = np.zeros((pos.size, len(chans), times.size))
    if amplitude > 0 and pos.size:
        if waveform == "burst":
            phase = rng_phase.uniform(0, 2 * np.pi, pos.size)
            wave = envelope * np.sin(
                2 * np.pi * frequency * (times - t0) + phase[:, None]
            )
        elif waveform == "erp":
            bump = np.zeros(times.size)
            bump[inside] = tukey(int(inside.sum()) + 2, 1.0)[1:-1]  # Hann
            wave = np.repeat(bump[None], pos.size, axis=0)
        if waveform in ("burst", "erp"):
            wave /= np.sqrt((wave[:, inside] ** 2).mean(axis=1, keepdims=True))
            added = amplitude * sd[None, :, None] * wave[:, None, :]
        else:
            part = _bandpass(data[pos], sfreq, *band) * envelope
            rms = np.sqrt((part[..., inside] ** 2).mean(axis=(0, 2)))
            added = (
                part * (amplitude * sd / np.where(rms > 0, rms, np.inf))[None, :, None]
            )

        def add(x):  # (n_epochs, n_chans, n_times), V
            x[pos] += added
            return x

        out.apply_function(add, picks=chans, channel_wise=False)
    new_meta = (
        pd.DataFrame(index=range(n)) if meta is None else meta.reset_index(drop=True)
    )
    new_meta = new_meta.assign(
        **{label_column: np.where(positive, labels[0], labels[1])}
    )
    with mne.utils.use_log_level("warning"):
        out.metadata = new_meta
    mask = np.zeros((len(names), times.size), bool)
    if amplitude > 0 and pos.size:
        mask[np.ix_(ch_idx, np.flatnonzero(inside))] = True
    if "subject" in new_meta:
        effects = (
            new_meta.assign(n_positive=positive.astype(int), n_epochs=1)
            .groupby("subject", as_index=False)[["n_epochs", "n_positive"]]
            .sum()
            .assign(effect=float(amplitude))
        )
    else:
        effects = pd.DataFrame(
            [dict(n_epochs=n, n_positive=int(positive.sum()), effect=amplitude)]
        )
    params.update(labels=tuple(labels), channels=chans, context=context,
                  sd=dict(zip(chans, sd.tolist(), strict=True)))  # fmt: skip
    logger.info(
        "Planted a %s of %.3g SD on %d channels (%g-%g s) in %d of %d epochs "
        "labelled %r",
        waveform, amplitude, len(chans), t0, t1, pos.size, n, labels[0],
    )  # fmt: skip
    truth = GroundTruth(
        ch_names=names,
        times=times.copy(),
        content_mask=mask,
        content_channels=chans,
        content_window=(t0, t1),
        stage_masks={},
        p_content=p_content,
        subject_effects=effects,
        params=params,
    )
    return out, truth
