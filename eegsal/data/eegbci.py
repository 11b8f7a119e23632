"""The PhysioNet EEG Motor Movement/Imagery dataset as labelled epochs."""

from __future__ import annotations

import os
from collections.abc import Sequence

import mne
import numpy as np
import pandas as pd
from mne.datasets import eegbci

from eegsal._check import check_option
from eegsal._logging import logger, progress, verbose

__all__ = ["SENSORIMOTOR", "load_eegbci"]

#: runs with left/right fist tasks: executed (3, 7, 11) and imagined (4, 8, 12)
EXECUTED_RUNS = (3, 7, 11)
IMAGINED_RUNS = (4, 8, 12)
_EVENTS = {"T0": "rest", "T1": "left", "T2": "right"}
#: the 21 fronto-centro-parietal channels over the sensorimotor cortices
SENSORIMOTOR = (
    "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "C5", "C3", "C1", "Cz", "C2",
    "C4", "C6", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6",
)  # fmt: skip


@verbose
def load_eegbci(
    path: str | os.PathLike,
    subjects: Sequence[int] = tuple(range(1, 9)),
    runs: Sequence[int] = EXECUTED_RUNS + IMAGINED_RUNS,
    *,
    contrast: str = "left_right",
    tmin: float = 0.5,
    tmax: float = 2.5,
    l_freq: float | None = 7.0,
    h_freq: float | None = 30.0,
    picks: Sequence[str] | None = None,
    sfreq: float | None = None,
    verbose: bool | str | int | None = None,
) -> mne.Epochs:
    """Load left/right fist runs of EEGBCI as epochs with metadata.

    Files are read from ``path`` in the layout of
    :func:`mne.datasets.eegbci.load_data` (the folder holding
    ``MNE-eegbci-data/``); missing files are downloaded by MNE.

    Parameters
    ----------
    path : path-like
        Folder that holds (or will hold) ``MNE-eegbci-data/``.
    subjects : sequence of int
        Subject numbers (1-109).
    runs : sequence of int
        Runs among 3, 7, 11 (executed) and 4, 8, 12 (imagined left/right fist).
    contrast : str
        ``'left_right'``: content ``'left'``/``'right'`` (T1/T2, rest dropped);
        ``'movement_rest'``: content ``'movement'`` (T1 or T2) vs ``'rest'`` (T0).
    tmin, tmax : float
        Epoch window relative to each cue (s).
    l_freq, h_freq : float | None
        Band-pass edges (Hz) applied to the continuous data, or None.
    picks : sequence of str | None
        Channels to keep (standardized names such as ``'C3'``); None keeps all 64.
    sfreq : float | None
        Resample the continuous data to this rate (Hz) after filtering; None
        keeps 160 Hz.
    verbose : bool | str | int | None
        Control verbosity of the logging output.

    Returns
    -------
    epochs : mne.Epochs
        EEG channels (standardized names, 10-05 montage), with
        metadata ``subject``, ``run``, ``context`` (``'executed'`` or
        ``'imagined'``), ``event`` (T0/T1/T2) and ``content``.

    References
    ----------
    .. [1] Schalk G et al. (2004). BCI2000: a general-purpose brain-computer
       interface system. IEEE Trans Biomed Eng 51, 1034-1043.
    """
    check_option("contrast", contrast, ("left_right", "movement_rest"))
    bad = sorted(set(runs) - set(EXECUTED_RUNS + IMAGINED_RUNS))
    if bad:
        raise ValueError(
            f"runs {bad} are not left/right fist runs; use runs among "
            f"{EXECUTED_RUNS} (executed) and {IMAGINED_RUNS} (imagined)."
        )
    montage = mne.channels.make_standard_montage("colin27_1005")
    parts = []
    for subject in progress(list(subjects), desc="EEGBCI subjects"):
        files = eegbci.load_data(subject, list(runs), path=path, update_path=False)
        for run, fname in zip(runs, files, strict=True):
            raw = mne.io.read_raw_edf(fname, preload=True, verbose=False)
            eegbci.standardize(raw)
            raw.set_montage(montage)
            if picks is not None:
                raw.pick(list(picks))
            if l_freq is not None or h_freq is not None:
                raw.filter(l_freq, h_freq, verbose=False)
            if sfreq is not None:
                raw.resample(sfreq, verbose=False)
            codes = {"T0": 1, "T1": 2, "T2": 3}
            events, _ = mne.events_from_annotations(raw, codes, verbose=False)
            keep = dict(codes)
            if contrast == "left_right":
                keep.pop("T0", None)
            ep = mne.Epochs(
                raw, events, keep, tmin, tmax, baseline=None, preload=True,
                on_missing="ignore", verbose=False,
            )  # fmt: skip
            code_to_name = {v: k for k, v in keep.items()}
            names = np.array([code_to_name[c] for c in ep.events[:, 2]])
            labels = np.array([_EVENTS[n] for n in names])
            if contrast == "movement_rest":
                labels = np.where(names == "T0", "rest", "movement")
            with mne.use_log_level("warning"):
                ep.metadata = pd.DataFrame(
                    {
                        "subject": f"S{subject:03d}",
                        "run": run,
                        "context": "executed" if run in EXECUTED_RUNS else "imagined",
                        "event": names,
                        "content": labels,
                    }
                )
            ep.set_annotations(None)  # concatenate_epochs cannot merge them
            parts.append(ep)
    epochs = mne.concatenate_epochs(parts, verbose=False)
    logger.info(
        "Loaded %d EEGBCI epochs (%s) from %d subjects",
        len(epochs), contrast, len(subjects),
    )  # fmt: skip
    return epochs
