"""Which epochs a :class:`~eegsal.decoding.DecodingResult` takes.

The identity of the epochs a result was decoded from (to explain each with
the fold model that did not train on it), and whether new epochs fit its
models (channels, sampling rate, length).
:meth:`DecodingResult.check_epochs <eegsal.decoding.DecodingResult.check_epochs>`
and :meth:`DecodingResult.prediction_picks
<eegsal.decoding.DecodingResult.prediction_picks>` call these functions.
"""

from __future__ import annotations

import mne
import numpy as np

from eegsal._check import validate_type
from eegsal._logging import logger

#: Columns of a result's predictions that identify each epoch: MNE's event
#: sample (``epochs.events[:, 0]``) and ``epochs.selection`` (the metadata index).
_IDENTITY = ("mne_event_sample", "mne_selection")


def _identity(epochs: mne.BaseEpochs) -> dict[str, np.ndarray]:
    """Return the identity of each epoch (no data is read: lazy epochs stay lazy)."""
    return {
        _IDENTITY[0]: np.asarray(epochs.events[:, 0], np.int64),
        _IDENTITY[1]: np.asarray(epochs.selection, np.int64),
    }


def check_epochs(result, epochs: mne.BaseEpochs) -> None:
    """Refuse epochs other than those ``result`` was decoded from.

    See :meth:`DecodingResult.check_epochs`.

    Parameters
    ----------
    result : DecodingResult
        The result.
    epochs : mne.Epochs
        The epochs to explain.

    Raises
    ------
    ValueError
        Saying what differs and how to fix it.
    """
    cfg, pred = result.config, result.predictions
    diffs = []
    picks = mne.pick_types(epochs.info, eeg=True)
    names = [epochs.ch_names[i] for i in picks]
    want = list(cfg.get("ch_names", names))
    if names != want:
        if sorted(names) == sorted(want):
            k = int(np.flatnonzero(np.array(names) != np.array(want))[0])
            diffs.append(
                f"their EEG channels are in another order (position {k}: "
                f"{names[k]!r} here, {want[k]!r} in the result); reorder them "
                "with epochs.reorder_channels(result.config['ch_names'])"
            )
        else:
            missing = [c for c in want if c not in names]
            extra = [c for c in names if c not in want]
            diffs.append(
                f"their EEG channels differ (missing {missing}, not in the "
                f"result {extra})"
            )
    sfreq = epochs.info["sfreq"]
    if "sfreq" in cfg and not np.isclose(sfreq, cfg["sfreq"]):
        diffs.append(
            f"they are sampled at {sfreq:g} Hz, the result's at {cfg['sfreq']:g} Hz"
        )
    n_times, tmin = len(epochs.times), float(epochs.times[0])
    if n_times != cfg.get("n_times", n_times) or not np.isclose(
        tmin, cfg.get("tmin", tmin), atol=0.5 / sfreq
    ):
        diffs.append(
            f"their times differ ({n_times} samples from {tmin:g} s; the "
            f"result's: {cfg['n_times']} from {cfg.get('tmin', tmin):g} s)"
        )
    if len(epochs) != len(pred):
        diffs.append(
            f"they are {len(epochs)} epochs, the result was decoded from {len(pred)}"
        )
    elif _IDENTITY[0] in pred:
        diffs += _epoch_diffs(result, epochs)
    else:
        logger.warning(
            "This result does not record which epochs it was decoded from "
            "(saved by an older eegsal): only their number, channels and "
            "sampling are checked. Decode again to have every epoch checked."
        )
    if diffs:
        raise ValueError(
            "These epochs are not the ones the result was decoded from: "
            + "; ".join(diffs)
            + ". Each epoch must be explained by the fold model that did not "
            "train on it: pass the epochs given to decode(), unchanged and in "
            "their order (to explain some of them, pass result.take(idx) with "
            "epochs[idx])."
        )


def _epoch_diffs(result, epochs: mne.BaseEpochs) -> list[str]:
    """List what differs between the epochs and those of the predictions."""
    pred, cfg = result.predictions, result.config
    meta = epochs.metadata
    have = _identity(epochs)
    fields = {
        "event sample": (have[_IDENTITY[0]], pred[_IDENTITY[0]].to_numpy()),
        "selection": (have[_IDENTITY[1]], pred[_IDENTITY[1]].to_numpy()),
    }
    for what, col, ours in (
        ("subject", cfg.get("groups"), cfg.get("groups")),
        ("target", cfg.get("target"), "y_true"),
    ):
        if col is None or ours not in pred:
            continue
        if meta is None or col not in meta:
            return [f"their metadata has no {what} column {col!r}"]
        fields[col] = (
            meta[col].astype(str).to_numpy(),
            pred[ours].astype(str).to_numpy(),
        )
    bad = np.zeros(len(pred), bool)
    for a, b in fields.values():
        bad |= np.asarray(a).astype(str) != np.asarray(b).astype(str)
    if not bad.any():
        return []
    k = int(np.flatnonzero(bad)[0])
    here = ", ".join(f"{f} {a[k]}" for f, (a, _) in fields.items())
    there = ", ".join(f"{f} {b[k]}" for f, (_, b) in fields.items())
    return [
        f"{bad.sum()} of {len(bad)} epochs differ, the first at position {k} "
        f"({here} here; {there} in the result)"
    ]


def prediction_picks(result, epochs: mne.BaseEpochs) -> np.ndarray:
    """Check new epochs against the models; return the channels to read, in order.

    See :meth:`DecodingResult.prediction_picks`.

    Parameters
    ----------
    result : DecodingResult
        The result.
    epochs : mne.Epochs
        New epochs.

    Returns
    -------
    picks : ndarray of int, shape (n_chans,)
        Indices into ``epochs.ch_names`` of the models' channels, in the
        models' order.
    """
    validate_type(epochs, mne.BaseEpochs, "epochs")
    cfg = result.config
    want = list(cfg["ch_names"])
    eeg = [epochs.ch_names[i] for i in mne.pick_types(epochs.info, eeg=True)]
    missing = [c for c in want if c not in eeg]
    if missing:
        raise ValueError(
            f"the epochs lack {len(missing)} of the {len(want)} EEG channels the "
            f"models were trained on: {missing}; the models cannot predict "
            "without them (interpolate them, e.g. epochs.interpolate_bads(), "
            "or decode again on the channels these recordings have)."
        )
    extra = [c for c in eeg if c not in want]
    if extra:
        logger.info(
            "Leaving out %d EEG channel(s) the models were not trained on: %s",
            len(extra),
            extra,
        )
    if [c for c in eeg if c in want] != want:
        logger.info(
            "Reordering the epochs' EEG channels to the models' order "
            "(result.config['ch_names'])"
        )
    sfreq = float(epochs.info["sfreq"])
    if not np.isclose(sfreq, cfg["sfreq"]):
        raise ValueError(
            f"the epochs are sampled at {sfreq:g} Hz but the models at "
            f"{cfg['sfreq']:g} Hz; resample them to {cfg['sfreq']:g} Hz "
            f"(epochs.resample({cfg['sfreq']:g}))."
        )
    n_times, tmin = len(epochs.times), float(epochs.times[0])
    if n_times != cfg["n_times"]:
        span = (cfg["n_times"] - 1) / cfg["sfreq"]
        start = cfg.get("tmin", tmin)
        raise ValueError(
            f"the epochs have {n_times} samples ({tmin:g} to "
            f"{float(epochs.times[-1]):g} s) but the models take "
            f"{cfg['n_times']} ({start:g} to {start + span:g} s in the "
            "training epochs); crop or re-epoch them to that length."
        )
    if "tmin" in cfg and not np.isclose(tmin, cfg["tmin"], atol=0.5 / sfreq):
        logger.warning(
            "The epochs start at %g s, the training epochs at %g s: the models "
            "see another part of each trial.",
            tmin,
            cfg["tmin"],
        )
    return np.array([epochs.ch_names.index(c) for c in want])
