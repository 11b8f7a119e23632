"""Hypnograms: stage schemes, the files labs export, and a recording's scored epochs.

A hypnogram comes as one of two shapes, and each file format is read into one:

- a *sequence*, one stage per item from the recording's start: text files (one
  stage per line, ``#`` lines are comments, as in YASA's exports), CSV/TSV
  tables without an ``onset`` column, and NumPy arrays (``.npy``, ``.npz``),
  one stage per scored epoch or, with ``hypnogram_sfreq``, one per sample;
- *scored intervals* (onset, duration, stage): the recording's annotations,
  annotation files (Sleep-EDF's ``*-Hypnogram.edf``, MNE's ``-annot.fif``),
  CSV/TSV tables with ``onset`` (and ``duration``) columns, BIDS
  ``*_events.tsv`` (``trial_type``).

Stage codes are read through a declared scheme (:data:`SCHEMES`), so that a
code never means two stages: ``4`` is S4 in Rechtschaffen & Kales and REM in
YASA's integers, and numeric codes are refused until the manifest says which.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import mne
import numpy as np
import pandas as pd

from eegsal._logging import logger

if TYPE_CHECKING:
    from eegsal.data.manifest import Manifest

__all__ = ["DEFAULT_IGNORED_STAGES", "SCHEMES", "read_hypnogram", "stage_at"]

_UNSCORED = {"?": "?", "Sleep stage ?": "?"}
#: AASM (Iber et al., 2007): W, N1, N2, N3 and REM, as names.
_AASM = {
    "W": "W", "Wake": "W", "WAKE": "W", "N1": "N1", "N2": "N2", "N3": "N3",
    "R": "REM", "REM": "REM",
    "Sleep stage W": "W", "Sleep stage N1": "N1", "Sleep stage N2": "N2",
    "Sleep stage N3": "N3", "Sleep stage R": "REM", "Sleep stage REM": "REM",
    **_UNSCORED,
}  # fmt: skip
#: Rechtschaffen & Kales (1968): W, S1-S4, REM and MT (movement time), as names
#: and as Sleep-EDF's hypnograms label them ("Sleep stage 4", "Movement time").
_RK = {
    "W": "W", "Wake": "W", "S1": "S1", "S2": "S2", "S3": "S3", "S4": "S4",
    "R": "REM", "REM": "REM", "MT": "MT", "Movement time": "MT",
    "Sleep stage W": "W", "Sleep stage 1": "S1", "Sleep stage 2": "S2",
    "Sleep stage 3": "S3", "Sleep stage 4": "S4", "Sleep stage R": "REM",
    **_UNSCORED,
}  # fmt: skip
#: YASA (Vallat & Walker, 2021): the integers of ``yasa.Hypnogram.as_int()``
#: (0=W, 1=N1, 2=N2, 3=N3, 4=REM, -1=artefact, -2=unscored) and its names.
_YASA = {
    "0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "REM", "-1": "ART", "-2": "UNS",
    "W": "W", "WAKE": "W", "N1": "N1", "N2": "N2", "N3": "N3", "R": "REM",
    "REM": "REM", "ART": "ART", "UNS": "UNS", **_UNSCORED,
}  # fmt: skip
#: Stage schemes (``epochs.scheme``): the codes a hypnogram may hold -> the
#: scheme's stage labels. Without ``scheme:``, codes are read as AASM names.
SCHEMES = {"aasm": _AASM, "rk": _RK, "yasa": _YASA}
#: Scheme labels (or codes) left out unless ``epochs.ignore_stages`` says
#: otherwise: unscored epochs, movement time, artefacts.
DEFAULT_IGNORED_STAGES = ("?", "MT", "ART", "UNS")
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")
_NUMERIC_HELP = (
    "numeric codes mean different stages in different schemes (4 is S4 in "
    "Rechtschaffen & Kales, REM in YASA's 0=W, 1=N1, 2=N2, 3=N3, 4=REM); declare "
    "the scheme (epochs.scheme: yasa) or map each code with epochs.stages (e.g. "
    "{'0': W, '1': N1})"
)
_RK_HELP = (
    "these are Rechtschaffen & Kales stages; declare epochs.scheme: rk and map "
    "them to AASM with epochs.stages: {S1: N1, S2: N2, S3: N3, S4: N3}"
)
_TABLES = (".csv", ".tsv")
_ARRAYS = (".npy", ".npz")
_ANNOTATIONS = (".edf", ".bdf", ".fif")


class _Context:
    """What a hypnogram's messages name: manifest field, subject, file."""

    def __init__(self, rec: dict, m: Manifest, path: Path | None) -> None:
        self.m, self.rec = m, rec
        self.where = f"{rec['where']}.hypnogram"
        source = path.name if path is not None else "its annotations"
        self.who = f"subject {rec['subject']!r}, {rec['path'].name} ({source})"

    def error(self, problem: str):
        return self.m.error(self.where, f"{self.who}: {problem}")


# ------------------------------------------------------------------ stage codes
def _normalise(codes: pd.Series) -> pd.Series:
    """Strip codes; integral numbers in any spelling (2.0, 2e0) become '2'."""

    def one(code: str) -> str:
        code = code.strip()
        if _NUMBER.fullmatch(code) and float(code) == round(float(code)):
            return str(int(float(code)))
        return code

    codes = codes.astype(str)
    return codes.map({c: one(c) for c in pd.unique(codes)})


def _decode(
    codes: pd.Series, m: Manifest, ctx: _Context, *, intervals: bool, first: dict
) -> dict[str, tuple[str | None, bool]]:
    """Stage (None where ignored) and wakefulness of each code: code -> both.

    ``intervals``: codes come with onsets (annotations, event tables), where
    names that are no stage (arousals, lights off) are other events, skipped;
    in a sequence every item is a stage. ``first`` maps a code to where it
    first appears, for messages.
    """
    ep = m.epochs
    scheme = ep.get("scheme")
    table = SCHEMES[scheme or "aasm"]
    stages = {str(k): str(v) for k, v in (ep.get("stages") or {}).items()}
    ignored = {str(v) for v in ep.get("ignore_stages", DEFAULT_IGNORED_STAGES)}
    decoded: dict[str, tuple[str | None, bool]] = {}
    numeric, rk, unknown, other = [], [], [], []
    for code in pd.unique(codes):
        label = table.get(code)
        if code in stages:
            stage = stages[code]
        elif label is not None and label in stages:
            stage = stages[label]
        elif code in ignored or (label is not None and label in ignored):
            stage = None
        elif label is not None:
            stage = label
        elif _NUMBER.fullmatch(code):
            numeric.append(code)
            continue
        elif scheme is None and code in _RK:
            rk.append(code)
            continue
        elif intervals and not code.lower().startswith("sleep stage"):
            other.append(code)
            decoded[code] = (None, False)
            continue
        else:
            unknown.append(code)
            continue
        decoded[code] = (stage, label == "W" or stage == "W")
    for found, why in (
        (numeric, _NUMERIC_HELP if scheme is None else None),
        (rk, _RK_HELP),
        (unknown, None),
    ):
        if found:
            why = why or (
                f"they are not stages of scheme {scheme or 'aasm'!r} "
                f"({', '.join(sorted(set(table.values()) - {'?'}))}); map them with "
                "epochs.stages or list them in epochs.ignore_stages"
            )
            raise ctx.error(
                f"stage codes {found} (first at {first[found[0]]}) have no "
                f"stage: {why}."
            )
    if other:
        logger.debug("%s: %s are not stages; skipped.", ctx.who, sorted(other))
    return decoded


# ------------------------------------------------------------------ file readers
def _read_lines(path: Path, ctx: _Context) -> tuple[pd.Series, np.ndarray, str]:
    """Text hypnogram: one code per line; ``#`` lines (a header) are comments."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ctx.error(f"cannot read {path}: {err}") from None
    number = np.array([i + 1 for i, line in enumerate(lines)
                       if not line.lstrip().startswith("#")])  # fmt: skip
    codes = pd.Series([lines[i - 1] for i in number], dtype=str)
    return codes, number, "line"


def _read_table(path: Path, ctx: _Context) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",",
                           dtype=str, keep_default_na=False,
                           skip_blank_lines=False)  # fmt: skip
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ctx.error(f"cannot read {path}: {err}") from None


def _read_array(path: Path, ctx: _Context) -> pd.Series:
    """NumPy hypnogram (``.npy``, or ``.npz`` holding ``hypno`` or one array)."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                names = list(data.files)
                if "hypno" not in names and len(names) != 1:
                    raise ctx.error(
                        f"{path.name} holds arrays {names}; name the hypnogram "
                        "'hypno' (as YASA does) or save it alone."
                    )
                data = data["hypno" if "hypno" in names else names[0]]
    except (OSError, ValueError) as err:
        raise ctx.error(f"cannot read {path} as a NumPy array: {err}") from None
    if data.ndim != 1:
        raise ctx.error(
            f"{path.name} holds an array of shape {data.shape}; a hypnogram is "
            "one stage per epoch or per sample (1-D)."
        )
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        first = int(np.flatnonzero(~np.isfinite(data))[0])
        raise ctx.error(
            f"{path.name} holds NaN or infinite stages (first at item {first}); "
            "write a code for each item (e.g. -2, unscored, in YASA's scheme)."
        )
    if data.dtype.kind not in "iuUSf":
        raise ctx.error(f"{path.name}: stages of dtype {data.dtype} are not codes.")
    return pd.Series(data.astype(str), dtype=str)


def _check_blanks(codes: pd.Series, number, unit, length, ctx) -> pd.Series:
    """Refuse blank items inside a sequence (they would shift later stages)."""
    values = codes.astype(str).str.strip().to_numpy()
    filled = np.flatnonzero(values != "")
    codes = codes.iloc[: filled[-1] + 1 if len(filled) else 0]  # trailing blanks
    blank = np.flatnonzero(values[: len(codes)] == "")
    if len(blank):
        where = ", ".join(str(number[i]) for i in blank[:5])
        raise ctx.error(
            f"{len(blank)} blank stages ({unit} {where}); a hypnogram holds one "
            f"stage per {length:g}-s epoch, so a missing one would shift every "
            "later stage by an epoch; write the stage on each blank line ('?' "
            "for an unscored epoch, listed in epochs.ignore_stages)."
        )
    return codes


def _first_places(codes: pd.Series, places) -> dict:
    """Where each code first appears (a line, an item), for messages."""
    index = pd.Series(np.arange(len(codes))).groupby(codes.to_numpy()).min()
    return {code: places(int(i)) for code, i in index.items()}


def _sequence(codes, number, unit, sfreq, duration, ctx, m) -> pd.DataFrame:
    """Scored epochs of a sequence of stages, ``sfreq`` items per second."""
    length = m.epochs["length"]
    first = _first_places(codes, lambda i: f"{unit} {number[i]}")
    decoded = _decode(codes, m, ctx, intervals=False, first=first)
    covered = len(codes) / sfreq
    if abs(covered - duration) >= length:
        per = f"{length:g} s" if np.isclose(sfreq * length, 1) else f"{1 / sfreq:g} s"
        hint = ""
        if np.isclose(sfreq * length, 1) and len(codes) / duration > 2 / length:
            hint = (
                "; if it holds one stage per sample, give their rate as "
                f"hypnogram_sfreq (about {len(codes) / duration:.4g} Hz)"
            )
        raise ctx.error(
            f"{len(codes)} stages of {per} cover {covered / 3600:.2f} h "
            f"but the recording lasts {duration / 3600:.2f} h; trim the "
            f"recording or fix the hypnogram{hint}."
        )
    if np.isclose(sfreq * length, 1):
        onset, per_epoch = np.arange(len(codes)) * length, codes.to_numpy()
    else:
        onset, per_epoch = _per_epoch(codes, sfreq, length, ctx)
    table = pd.DataFrame({
        "onset": onset,
        "stage": [decoded[c][0] for c in per_epoch],
        "wake": [decoded[c][1] for c in per_epoch],
    })  # fmt: skip
    table = table[table["stage"].notna()]
    return table[table["onset"] + length <= duration + 1e-6]


def _per_epoch(codes: pd.Series, sfreq: float, length: float, ctx):
    """Reduce a per-sample hypnogram to the codes of ``length``-s epochs.

    An epoch takes the code of the majority of its samples (ties: the one
    whose samples come first); epochs that span two codes are counted and
    logged. A last, incomplete epoch is left out. Returns the epochs' onsets
    (s) and codes.
    """
    if sfreq * length < 1:
        raise ctx.error(
            f"hypnogram_sfreq {sfreq:g} Hz is one stage per {1 / sfreq:g} s, "
            f"longer than an epoch ({length:g} s); give the rate of its items."
        )
    n_epochs = int(np.floor(len(codes) / (sfreq * length) + 1e-9))
    epoch = np.floor(np.arange(len(codes)) / (sfreq * length) + 1e-9).astype(int)
    keep = epoch < n_epochs
    epoch = epoch[keep]
    key, uniques = pd.factorize(codes.to_numpy()[keep], sort=False)
    counts = np.bincount(epoch * len(uniques) + key,
                         minlength=n_epochs * len(uniques))  # fmt: skip
    counts = counts.reshape(n_epochs, len(uniques))
    pick = counts.argmax(axis=1)
    mixed = np.flatnonzero((counts > 0).sum(axis=1) > 1)
    for k in mixed:  # ties go to the code whose samples come first
        top = np.flatnonzero(counts[k] == counts[k].max())
        if len(top) > 1:
            inside = key[epoch == k]
            pick[k] = inside[np.isin(inside, top)][0]
    if len(mixed):
        logger.warning(
            "%s: %d of %d %g-s epochs span two stages (its stage changes are "
            "not on the %g-s grid from the recording's start; the first in "
            "epoch %d, at %.0f s); each takes the stage of most of its samples.",
            ctx.who, len(mixed), n_epochs, length, length, mixed[0],
            mixed[0] * length,
        )  # fmt: skip
    return np.arange(n_epochs) * length, np.asarray(uniques)[pick]


def _intervals(onset, dur, codes, rows, duration, ctx, m, name) -> pd.DataFrame:
    """Scored epochs of (onset, duration, code) intervals; other events skipped."""
    length = m.epochs["length"]
    first = _first_places(codes, lambda i: rows[i])
    decoded = _decode(codes, m, ctx, intervals=True, first=first)
    out = []
    for start, d, code in zip(onset, dur, codes, strict=True):
        stage, wake = decoded[code]
        if stage is None:
            continue
        for k in range(max(int(round(d / length)), 1)):
            out.append((start + k * length, stage, wake))
    table = pd.DataFrame(out, columns=["onset", "stage", "wake"])
    twice = table[table.duplicated("onset", keep=False)]
    if len(twice):
        at = twice["onset"].iloc[0]
        both = sorted(set(twice.loc[twice["onset"] == at, "stage"]))
        raise ctx.error(
            f"{twice['onset'].nunique()} epochs are scored twice, the first at "
            f"{at:g} s ({' and '.join(both)}): scored intervals overlap; fix "
            "their onsets and durations."
        )
    outside = (table["onset"] < -1e-6) | (table["onset"] + length > duration + 1e-6)
    if outside.any():
        logger.info(
            "%s: %d scored epochs fall outside the recording (%.0f s); dropped.",
            name, int(outside.sum()), duration,
        )  # fmt: skip
        table = table[~outside]
    return table


def _annotations(spec, raw, rec, m, ctx, duration) -> pd.DataFrame:
    if spec == "annotations":
        ann = raw.annotations
        t0 = raw.first_time if ann.orig_time is not None else 0.0
    else:
        try:
            ann = mne.read_annotations(spec)
        except (OSError, ValueError, RuntimeError) as err:
            raise ctx.error(f"cannot read annotations from {spec}: {err}") from None
        meas = raw.info["meas_date"]
        t0 = 0.0
        if ann.orig_time is not None and meas is not None:
            # a separate file may start at another time than the recording
            t0 = (meas - ann.orig_time).total_seconds() + raw.first_time
    codes = pd.Series(ann.description, dtype=str).str.strip()
    rows = [f"annotation {i} ({o:.0f} s)" for i, o in enumerate(ann.onset)]
    return _intervals(ann.onset - t0, ann.duration, codes, rows, duration, ctx, m,
                      rec["path"].name)  # fmt: skip


def _event_table(df, path, rec, m, ctx, duration) -> pd.DataFrame:
    """Read a CSV/TSV of scored intervals: onset, duration (s) and stage."""
    column = next((c for c in ("stage", "trial_type") if c in df), None)
    if column is None:
        raise ctx.error(
            f"{path.name} has onset but no stage column (columns: {list(df)}); "
            "name the stages' column stage (or trial_type, as in BIDS events)."
        )
    onset = pd.to_numeric(df["onset"], errors="coerce").to_numpy(float)
    if "duration" in df:
        dur = pd.to_numeric(df["duration"], errors="coerce").to_numpy(float)
    else:
        dur = np.full(len(df), m.epochs["length"])
    dur = np.where(np.isfinite(dur), dur, m.epochs["length"])  # n/a: one epoch
    bad = np.flatnonzero(~np.isfinite(onset))
    if len(bad):
        rows = ", ".join(str(i + 2) for i in bad[:5])
        raise ctx.error(
            f"{path.name}: {len(bad)} rows have no numeric onset (line {rows}); "
            "give each scored interval's onset in s from the recording's start."
        )
    codes = _normalise(df[column])
    rows = [f"line {i + 2}" for i in range(len(df))]
    return _intervals(onset, dur, codes, rows, duration, ctx, m, rec["path"].name)


def read_hypnogram(rec: dict, raw: mne.io.BaseRaw, m: Manifest) -> pd.DataFrame:
    """Scored epochs of a recording.

    Parameters
    ----------
    rec : dict
        The recording's entry (of :func:`eegsal.data.recordings.expand_recordings`).
    raw : mne.io.Raw
        The recording, as read.
    m : Manifest
        The manifest (its ``epochs.length``, ``scheme``, ``stages``,
        ``ignore_stages``, ``hypnogram_sfreq`` and ``trim_wake``).

    Returns
    -------
    table : DataFrame
        One row per scored epoch inside the recording, in time order:
        ``onset`` (s from the recording's start), ``stage`` and ``wake``
        (whether the epoch is scored awake).
    """
    spec = rec.get("hypnogram")
    path = None if spec in (None, "annotations") else Path(spec)
    ctx = _Context(rec, m, path)
    if spec is None:
        raise ctx.error("no hypnogram: give hypnogram: annotations or a file.")
    duration = raw.n_times / raw.info["sfreq"]
    length = m.epochs["length"]
    sfreq = rec.get("hypnogram_sfreq")
    sfreq = 1.0 / length if sfreq is None else float(sfreq)
    suffix = "" if path is None else path.suffix.lower()
    if path is None or suffix in _ANNOTATIONS:
        table = _annotations(spec, raw, rec, m, ctx, duration)
    elif suffix in _ARRAYS:
        codes = _normalise(_read_array(path, ctx))
        number = np.arange(len(codes))
        table = _sequence(codes, number, "item", sfreq, duration, ctx, m)
    else:
        if suffix in _TABLES:
            df = _read_table(path, ctx)
            if "onset" in df:
                table = _event_table(df, path, rec, m, ctx, duration)
                return _trim_wake(table, rec, m, ctx)
            codes = df["stage"] if "stage" in df else df.iloc[:, 0]
            number, unit = np.arange(len(codes)) + 2, "line"  # below the header
        else:
            codes, number, unit = _read_lines(path, ctx)
        codes = _check_blanks(codes, number, unit, length, ctx)
        number = number[: len(codes)]
        table = _sequence(_normalise(codes), number, unit, sfreq, duration, ctx, m)
    return _trim_wake(table, rec, m, ctx)


def _trim_wake(table: pd.DataFrame, rec: dict, m: Manifest, ctx) -> pd.DataFrame:
    """Keep ``epochs.trim_wake`` minutes of wake around the sleep period.

    The sleep period runs from the first to the end of the last epoch not
    scored awake (Sleep-EDF studies keep 30 min on each side).
    """
    table = table.sort_values("onset", kind="stable").reset_index(drop=True)
    minutes = m.epochs.get("trim_wake")
    if minutes is None or not len(table):
        return table
    length, name = m.epochs["length"], rec["path"].name
    sleep = table.loc[~table["wake"].astype(bool), "onset"]
    if not len(sleep):
        logger.warning(
            "%s: trim_wake: no epoch is scored asleep, so there is no sleep "
            "period to keep wake around; its %d epochs are dropped.",
            ctx.who, len(table),
        )  # fmt: skip
        return table.iloc[:0]
    start = sleep.min() - 60.0 * minutes
    stop = sleep.max() + length + 60.0 * minutes
    onset = table["onset"]
    keep = (onset >= start - 1e-6) & (onset + length <= stop + 1e-6)
    logger.info(
        "%s: trim_wake: kept %g min of wake around the sleep period (%.2f-%.2f "
        "h); dropped %d of %d scored epochs (all wake).",
        name, minutes, sleep.min() / 3600, (sleep.max() + length) / 3600,
        int((~keep).sum()), len(table),
    )  # fmt: skip
    return table[keep].reset_index(drop=True)


def stage_at(hypno: pd.DataFrame, times: np.ndarray, length: float) -> np.ndarray:
    """Return the scored stage at each time (s), '' where none is scored."""
    idx = np.searchsorted(hypno["onset"].to_numpy(), times, side="right") - 1
    ok = (idx >= 0) & (times < hypno["onset"].to_numpy()[np.maximum(idx, 0)] + length)
    stages = hypno["stage"].to_numpy().astype(object)
    return np.where(ok, stages[np.maximum(idx, 0)], "")
