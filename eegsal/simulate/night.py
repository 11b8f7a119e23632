"""A simulated night: continuous EEG with stage scores and dream reports.

:func:`simulate_night`, and the hypnograms it follows (generated NREM/REM
cycles, or one given as stage names or YASA codes).
"""

from __future__ import annotations

import mne
import numpy as np

from eegsal._check import check_random_state, check_range
from eegsal._docs import fill_doc
from eegsal._logging import logger, verbose
from eegsal.simulate.common import (
    STAGES,
    _check_common,
    _content_channels,
    _envelope,
    _make_info,
    _p_content,
    _subjects,
)
from eegsal.simulate.signals import (
    _brain_activity,
    _plant_content,
    _Scalp,
    _sensor_noise,
)

_YASA_CODES = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM"}
_ANNOT_PREFIX = "Sleep stage "


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
