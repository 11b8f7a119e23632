"""Events of a recording and the windows around them."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pandas as pd

from eegsal._logging import logger
from eegsal.data.manifest import Manifest

__all__ = ["read_events"]


def _labelled(values: np.ndarray, labels: dict, ignore: set, m: Manifest, message):
    """Mask of the events with a label; unmapped values not ignored are an error.

    ``message(unknown)`` words the error for the kind of event source.
    """
    unknown = sorted({str(v) for v in values} - set(labels) - ignore)
    if unknown:
        raise m.error("epochs.labels", message(unknown))
    return np.isin(values, list(labels))


def read_events(rec: dict, raw: mne.io.BaseRaw, m: Manifest) -> pd.DataFrame:
    """Events of one recording: ``onset`` (s from its start) and ``content``."""
    ep, path = m.epochs, rec["path"]
    labels = {str(k): v for k, v in ep["labels"].items()}
    ignore = {str(v) for v in ep.get("ignore_labels") or []}
    source = rec.get("events") or "annotations"
    sfreq = raw.info["sfreq"]
    if source == "annotations":
        ann = raw.annotations
        t0 = raw.first_time if ann.orig_time is not None else 0.0
        keep = np.isin(ann.description, list(labels))
        onset = ann.onset[keep] - t0
        names = ann.description[keep]
        other = sorted(set(ann.description[~keep]))
        if other:
            logger.debug("%s: annotations %s are not events here.", path.name, other)
    elif source == "stim":
        stim = ep.get("stim_channel")
        try:
            found = mne.find_events(raw, stim_channel=stim, verbose=False)
        except ValueError as err:
            raise m.error("epochs.stim_channel", f"{path.name}: {err}") from None
        codes = found[:, 2].astype(str)
        keep = _labelled(codes, labels, ignore, m, lambda u: (
            f"{path.name}: trigger codes {u} have no label; map them under "
            "epochs.labels or list them in ignore_labels."
        ))  # fmt: skip
        onset = (found[keep, 0] - raw.first_samp) / sfreq
        names = codes[keep]
    else:
        table_path = Path(source)
        try:
            table = pd.read_csv(table_path)
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise m.error(
                f"{rec['where']}.events", f"cannot read {table_path}: {err}"
            ) from None
        missing = {"onset", "label"} - set(table.columns)
        if missing:
            raise m.error(
                f"{rec['where']}.events", f"{table_path.name} lacks columns "
                f"{sorted(missing)} (needs onset in s and label)."
            )  # fmt: skip
        values = table["label"].astype(str).to_numpy()
        keep = _labelled(values, labels, ignore, m, lambda u: (
            f"{table_path.name}: labels {u} have no map; add them to "
            "epochs.labels or list them in epochs.ignore_labels."
        ))  # fmt: skip
        onsets = pd.to_numeric(table["onset"], errors="coerce").to_numpy(float)
        blank = np.flatnonzero(keep & ~np.isfinite(onsets))
        if len(blank):
            rows = ", ".join(str(i + 1) for i in blank[:5])
            raise m.error(
                f"{rec['where']}.events", f"{table_path.name}: {len(blank)} events "
                "have no onset (a blank, NaN or non-numeric value; row "
                f"{rows} below the header); "
                "give each event's onset in s from the recording's start, or "
                "remove its row."
            )  # fmt: skip
        onset = onsets[keep]
        names = values[keep]
    return _inside_recording(
        pd.DataFrame(
            {"onset": onset, "event": names, "content": [labels[n] for n in names]}
        ),
        raw.n_times / sfreq,
        rec,
        m,
    )


def _inside_recording(
    table: pd.DataFrame, duration: float, rec: dict, m: Manifest
) -> pd.DataFrame:
    """Events whose window lies in the recording; the others dropped, or an error.

    Parameters
    ----------
    table : DataFrame
        Events, with ``onset`` (s from the recording's start).
    duration : float
        The recording's length (s).
    rec : dict
        The recording's entry.
    m : Manifest
        The manifest (its ``epochs.tmin``, ``tmax`` and ``on_outside``).

    Returns
    -------
    table : DataFrame
        The events whose window ``[onset + tmin, onset + tmax]`` lies within
        ``[0, duration]``. The others are dropped with a logged count (as
        :class:`mne.Epochs` drops windows past the data), or refused with
        ``epochs.on_outside: raise``.
    """
    ep, name = m.epochs, rec["path"].name
    onset = table["onset"].to_numpy()
    start, stop = onset + ep["tmin"], onset + ep["tmax"]
    bad = (start < 0) | (stop > duration)
    if not bad.any():
        return table
    first = onset[np.flatnonzero(bad)[0]]
    if ep.get("on_outside", "drop") == "raise":
        raise m.error(
            f"{rec['where']}.events", f"{int(bad.sum())} event windows of {name} "
            f"({ep['tmin']:g} to {ep['tmax']:g} s around each event) fall outside "
            f"the recording (0-{duration:.1f} s), the first at {first:.2f} s; fix "
            "the events or epochs.tmin/tmax, or set epochs.on_outside: drop to "
            "leave them out."
        )  # fmt: skip
    logger.warning(
        "%s: %d of %d event windows (%g to %g s around each event) fall outside "
        "the recording (0-%.1f s), the first at %.2f s; dropped.",
        name, int(bad.sum()), len(table), ep["tmin"], ep["tmax"], duration, first,
    )  # fmt: skip
    return table[~bad].reset_index(drop=True)
