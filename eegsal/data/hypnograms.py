"""Hypnograms: stage codes, and the scored epochs of a recording."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pandas as pd

from eegsal._logging import logger
from eegsal.data.manifest import Manifest

__all__ = ["read_hypnogram", "stage_at"]

#: hypnogram codes understood without a ``stages:`` mapping: AASM names, YASA's
#: integers, and the Rechtschaffen & Kales labels of Sleep-EDF (stage 4 -> N3)
DEFAULT_STAGES = {
    "W": "W", "N1": "N1", "N2": "N2", "N3": "N3", "REM": "REM", "R": "REM",
    "0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "REM",
    "Sleep stage W": "W", "Sleep stage 1": "N1", "Sleep stage 2": "N2",
    "Sleep stage 3": "N3", "Sleep stage 4": "N3", "Sleep stage R": "REM",
    "Sleep stage N1": "N1", "Sleep stage N2": "N2", "Sleep stage N3": "N3",
    "Sleep stage REM": "REM",
}  # fmt: skip
DEFAULT_IGNORED_STAGES = ("Sleep stage ?", "Movement time", "-1", "?")


def _stage_map(m: Manifest) -> tuple[dict, set]:
    given = m.epochs.get("stages")
    mapping = {str(k): str(v) for k, v in (given or DEFAULT_STAGES).items()}
    ignored = {str(v) for v in m.epochs.get("ignore_stages", DEFAULT_IGNORED_STAGES)}
    return mapping, ignored


def read_hypnogram(rec: dict, raw: mne.io.BaseRaw, m: Manifest) -> pd.DataFrame:
    """Scored epochs of a recording: ``onset`` (s from its start) and ``stage``."""
    length = m.epochs["length"]
    where = f"{rec['where']}.hypnogram"
    mapping, ignored = _stage_map(m)
    spec = rec.get("hypnogram")
    if spec is None:
        raise m.error(where, "no hypnogram: give hypnogram: annotations or a file.")
    duration = raw.n_times / raw.info["sfreq"]
    if spec == "annotations" or Path(spec).suffix.lower() in (".edf", ".bdf", ".fif"):
        # onsets from the recording's first sample (s)
        if spec == "annotations":
            ann = raw.annotations
            t0 = raw.first_time if ann.orig_time is not None else 0.0
        else:
            ann = mne.read_annotations(spec)
            meas = raw.info["meas_date"]
            t0 = 0.0
            if ann.orig_time is not None and meas is not None:
                # a separate file may start at another time than the recording
                t0 = (meas - ann.orig_time).total_seconds() + raw.first_time
        rows = []
        unknown = set()
        for onset, dur, desc in zip(
            ann.onset, ann.duration, ann.description, strict=True
        ):
            if desc in ignored:
                continue
            if desc not in mapping:
                if desc.lower().startswith("sleep stage"):
                    unknown.add(desc)
                continue  # other annotations (events, reports)
            start = onset - t0
            for k in range(max(int(round(dur / length)), 1)):
                rows.append((start + k * length, mapping[desc]))
        if unknown:
            raise m.error(
                f"epochs.stages ({where})", f"stage codes {sorted(unknown)} have no "
                "mapping; add them to epochs.stages or epochs.ignore_stages."
            )  # fmt: skip
        table = pd.DataFrame(rows, columns=["onset", "stage"])
        outside = (table["onset"] < -1e-6) | (table["onset"] + length > duration + 1e-6)
        if outside.any():
            logger.info(
                "%s: %d scored epochs fall outside the recording (%.0f s); dropped.",
                rec["path"].name, int(outside.sum()), duration,
            )  # fmt: skip
            table = table[~outside]
        return table.reset_index(drop=True)
    # a table: one stage per scored epoch from the recording's start
    path = Path(spec)
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False,
                             skip_blank_lines=False)  # fmt: skip
            codes = df["stage"] if "stage" in df else df.iloc[:, 0]
            first_line = 2  # below the header
        else:
            codes = pd.Series(path.read_text().splitlines(), dtype=str)
            first_line = 1
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise m.error(where, f"cannot read {path}: {err}") from None
    codes = codes.astype(str).str.strip()
    blank = np.flatnonzero(codes.to_numpy() == "")
    filled = np.flatnonzero(codes.to_numpy() != "")
    codes = codes.iloc[: filled[-1] + 1 if len(filled) else 0]  # trailing blanks
    blank = blank[blank < len(codes)]
    if len(blank):
        lines = ", ".join(str(i + first_line) for i in blank[:5])
        raise m.error(
            where, f"{path.name}: {len(blank)} blank stages (line {lines}); a "
            f"hypnogram holds one stage per {length:g}-s epoch, so a missing one "
            "would shift every later stage by an epoch; write the stage on each "
            "blank line ('?' for an unscored epoch, listed in epochs.ignore_stages)."
        )  # fmt: skip
    codes = codes.str.replace(r"\.0$", "", regex=True)  # 2.0 -> 2 (float tables)
    unknown = sorted(set(codes) - set(mapping) - ignored)
    if unknown:
        first = int(np.flatnonzero(codes.isin(unknown))[0])
        raise m.error(
            f"epochs.stages ({where})", f"{path.name}: stage codes {unknown} (first "
            f"at epoch {first}) have no mapping; add them to epochs.stages or "
            "epochs.ignore_stages."
        )  # fmt: skip
    covered = len(codes) * length
    if abs(covered - duration) >= length:
        raise m.error(
            where, f"{len(codes)} stages of {length:g} s cover {covered / 3600:.2f} h "
            f"but {rec['path'].name} lasts {duration / 3600:.2f} h; trim the "
            "recording or fix the hypnogram."
        )  # fmt: skip
    table = pd.DataFrame({"onset": np.arange(len(codes)) * length, "stage": codes})
    table = table[~table["stage"].isin(ignored)]
    table["stage"] = table["stage"].map(mapping)
    table = table[table["onset"] + length <= duration + 1e-6]
    return table.reset_index(drop=True)


def stage_at(hypno: pd.DataFrame, times: np.ndarray, length: float) -> np.ndarray:
    """Return the scored stage at each time (s), '' where none is scored."""
    idx = np.searchsorted(hypno["onset"].to_numpy(), times, side="right") - 1
    ok = (idx >= 0) & (times < hypno["onset"].to_numpy()[np.maximum(idx, 0)] + length)
    stages = hypno["stage"].to_numpy().astype(object)
    return np.where(ok, stages[np.maximum(idx, 0)], "")
