"""A known content signal planted in one's own epochs, with drawn labels.

:func:`plant_content` (a burst, an ERP or a band-power change, in the data's
own units), and how it draws the positive label per context value.
"""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
from scipy.signal.windows import tukey

from eegsal._check import check_option, check_random_state, check_range, validate_type
from eegsal._docs import fill_doc
from eegsal._logging import logger, verbose
from eegsal.simulate.common import GroundTruth, _envelope
from eegsal.simulate.signals import _bandpass

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
