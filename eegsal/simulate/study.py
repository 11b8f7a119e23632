"""Simulated sleep studies: scored, labelled epochs of many subjects.

:func:`simulate_sleep_study` and its helpers (stage proportions, content
window and masks, the stage masks of the ground truth).
"""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd

from eegsal._check import check_random_state, check_range, validate_type
from eegsal._docs import fill_doc
from eegsal._logging import logger, verbose
from eegsal.simulate.common import (
    _BASE_PROPORTIONS,
    STAGES,
    GroundTruth,
    _check_common,
    _content_channels,
    _envelope,
    _make_info,
    _p_content,
    _subjects,
)
from eegsal.simulate.depth import (
    DEPTH_BAND,
    DEPTH_GAIN,
    _lighter_sleep_odds,
    log_delta_power,
    relative_delta_power,
)
from eegsal.simulate.signals import (
    _bandpass,
    _brain_activity,
    _plant_content,
    _Scalp,
    _sensor_noise,
    _stage_components,
)


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
    positive label, e.g. "flying"). See the docstring of :mod:`eegsal.simulate`
    for the signal model.

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
        which follows the depth more closely (correlation about 0.8 against
        0.6 with 19 channels and 2-s epochs), about as closely as a decoder of
        all channels can read it. Both are measured on the EEG as simulated,
        content signal included: with a content signal in the study (it
        lowers delta power where planted), holding them fixed also holds
        part of the content effect, as it would in a real recording.
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
