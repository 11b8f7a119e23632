"""Recordings named by a manifest -> MNE epochs with subject, content and context."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

import mne
import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from eegsal._docs import fill_doc
from eegsal._logging import logger, progress, verbose
from eegsal.data.cache import (
    cache_key,
    cache_path,
    read_cached,
    read_epochs,
    write_cached,
)
from eegsal.data.manifest import FORMATS, Manifest, _as_list, read_manifest

__all__ = ["load_manifest"]

_READERS = {
    "edf": mne.io.read_raw_edf,
    "bdf": mne.io.read_raw_bdf,
    "fif": mne.io.read_raw_fif,
    "brainvision": mne.io.read_raw_brainvision,
    "eeglab": mne.io.read_raw_eeglab,
}
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


# --------------------------------------------------------------------- recordings
def _format_of(path: Path, rec: dict) -> str:
    if "format" in rec:
        return rec["format"]
    name = path.name.lower()
    for ext, fmt in sorted(FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(ext):
            return fmt
    return ""


def _inside(root: Path, path: Path, m: Manifest, where: str) -> Path:
    full = (root / path).resolve()
    if Path(path).is_absolute() or not full.is_relative_to(root.resolve()):
        raise m.error(
            where,
            f"{path} lies outside the data root {root}; manifests name files "
            "relative to the root (move the file under it, or change root).",
        )
    return full


#: Longest ``match:`` pattern accepted (characters).
MAX_MATCH_LENGTH = 300


def _compile_match(pattern: str, m: Manifest, where: str) -> re.Pattern:
    """Compile a ``match:`` regex, refusing patterns that can backtrack for ever.

    A repeated group that holds another repetition or alternatives
    (``(a+)+``, ``(a|aa)+``) can take exponential time on a non-matching file
    name; such nesting is never needed to pick fields out of file names, so it
    is refused.
    """
    from re import _parser  # the regex parser of the standard library

    if not isinstance(pattern, str) or len(pattern) > MAX_MATCH_LENGTH:
        raise m.error(
            where, f"expected a regular expression of at most {MAX_MATCH_LENGTH} "
            f"characters, got {str(pattern)[:40]!r}."
        )  # fmt: skip
    try:
        compiled = re.compile(pattern)
        tree = _parser.parse(pattern)
    except re.error as err:
        raise m.error(
            where, f"{pattern!r} is not a valid regular expression: {err}."
        ) from None

    repeats = (_parser.MAX_REPEAT, _parser.MIN_REPEAT, _parser.POSSESSIVE_REPEAT)

    def nested(items, inside: bool) -> bool:
        for op, av in items:
            if op in repeats:
                lo, hi, sub = av
                if hi > 1 and inside:
                    return True
                if nested(sub, inside or hi > 1):
                    return True
            elif op is _parser.SUBPATTERN:
                if nested(av[-1], inside):
                    return True
            elif op is _parser.BRANCH:  # alternatives under a repetition: (a|aa)+
                if inside or any(nested(b, inside) for b in av[1]):
                    return True
            elif op in (_parser.ASSERT, _parser.ASSERT_NOT):
                if nested(av[1], inside):
                    return True
        return False

    if nested(tree, False):
        raise m.error(
            where, f"{pattern!r} repeats a group that itself repeats or holds "
            "alternatives (such as (a+)+ or (a|aa)+), which can take exponential "
            "time; write it without the nested repetition, e.g. "
            r"sub-(?P<subject>\d+)_run-(?P<run>\d+)."
        )  # fmt: skip
    return compiled


def _template(value: str, fields: dict, folder: Path, m: Manifest, where: str) -> Path:
    """Resolve a recording's companion file (hypnogram, events table)."""
    try:
        text = str(value).format(**fields)
    except KeyError as err:
        raise m.error(
            where, f"{value!r} uses {{{err.args[0]}}}, which is not a named group "
            f"of match: or a field ({sorted(fields)})."
        ) from None  # fmt: skip
    if Path(text).is_absolute() or ".." in Path(text).parts:
        raise m.error(
            where, f"{text!r} leaves the recording's folder; name companion files "
            "relative to the recording, without '..' or absolute paths."
        )  # fmt: skip
    if any(c in text for c in "*?["):
        hits = sorted(folder.glob(text))
        if len(hits) != 1:
            raise m.error(
                where, f"pattern {text!r} matches {len(hits)} files in {folder} "
                "(need exactly one)."
            )  # fmt: skip
        path = hits[0]
    else:
        path = folder / text
    path = _inside(m.root, path.relative_to(m.root), m, where)
    if not path.is_file():
        raise m.error(where, f"{path} does not exist.")
    return path


def expand_recordings(m: Manifest) -> list[dict]:
    """Resolve the recording entries of a manifest into files and their fields."""
    out = []
    for i, rec in enumerate(m.recordings):
        where = f"recordings[{i}]"
        if "bids" in rec:
            found = _bids_recordings(rec["bids"], m, where)
        elif "path" in rec:
            path = _inside(m.root, Path(rec["path"]), m, f"{where}.path")
            if not path.is_file():
                raise m.error(
                    f"{where}.path", f"{path} does not exist; check the path and root."
                )
            found = [(path, {})]
        else:
            pattern = _compile_match(rec.get("match", r".*"), m, f"{where}.match")
            glob = str(rec["glob"])
            if Path(glob).is_absolute() or ".." in Path(glob).parts:
                raise m.error(
                    f"{where}.glob", f"{glob!r} reaches outside the data root; "
                    "patterns are relative to root, without '..'."
                )  # fmt: skip
            found = []
            for path in sorted(m.root.glob(glob)):
                rel = path.relative_to(m.root).as_posix()
                _inside(m.root, path.relative_to(m.root), m, f"{where}.glob")
                hit = pattern.search(rel)
                if hit is None:
                    continue
                groups = {k: v for k, v in hit.groupdict().items() if v is not None}
                include = rec.get("include") or {}
                if all(
                    str(groups.get(k)) in {str(v) for v in vals}
                    for k, vals in include.items()
                ):
                    found.append((path, groups))
            if not found:
                raise m.error(
                    f"{where}.glob",
                    f"no file under {m.root} matches {rec['glob']!r}"
                    + (f" and match: {rec['match']!r}" if "match" in rec else "")
                    + (" with include:" if rec.get("include") else "")
                    + "; check root and the pattern.",
                )
        for path, groups in found:
            fields = dict(groups, stem=path.stem, name=path.name)
            bids_path = groups.pop("_bids_path", None)
            fmt = "bids" if bids_path is not None else _format_of(path, rec)
            if fmt != "bids" and fmt not in _READERS:
                raise m.error(
                    f"{where}.path",
                    f"{path.name}: unknown format; give format: one of "
                    f"{sorted(_READERS)} (by extension: {sorted(FORMATS)}).",
                )
            subject = rec.get("subject", groups.get("subject"))
            if subject is None:
                raise m.error(
                    f"{where}.subject", "no subject: give subject: or a named group "
                    "(?P<subject>...) in match:."
                )  # fmt: skip
            columns = {}
            for col, spec in (rec.get("columns") or {}).items():
                if isinstance(spec, dict):
                    value = groups.get(spec.get("from"))
                    mapping = {str(k): v for k, v in (spec.get("map") or {}).items()}
                    if str(value) not in mapping:
                        raise m.error(
                            f"{where}.columns.{col}", f"{spec.get('from')}={value!r} "
                            f"({path.name}) has no entry in map: {sorted(mapping)}."
                        )  # fmt: skip
                    columns[col] = mapping[str(value)]
                else:
                    columns[col] = spec
            entry = dict(
                path=path,
                bids_path=bids_path,
                format=fmt,
                subject=str(subject).format(**fields),
                groups=groups,
                columns=columns,
                where=where,
                allow_truncated=rec.get("allow_truncated", False),
            )
            for key in ("hypnogram", "events"):
                spec = rec.get(key, m.epochs.get(key))
                if spec in (None, "annotations", "stim"):
                    entry[key] = spec
                else:
                    entry[key] = _template(
                        spec, fields, path.parent, m, f"{where}.{key}"
                    )
            out.append(entry)
    _check_distinct(out, m)
    return out


def _check_distinct(recs: list[dict], m: Manifest) -> None:
    """Refuse a file that two recording entries (or links) resolve to.

    Read twice, its epochs would count twice, and under two subjects they
    would sit on both sides of a subject-grouped split.
    """
    seen: dict[tuple, dict] = {}
    for rec in recs:
        stat = rec["path"].stat()
        first = seen.setdefault((stat.st_dev, stat.st_ino), rec)
        if first is rec:
            continue
        also = "the same entry" if first["where"] == rec["where"] else first["where"]
        raise m.error(
            rec["where"], f"{rec['path'].name} (subject {rec['subject']!r}) is "
            f"the file {first['path'].name} of {also} (subject "
            f"{first['subject']!r}) again; its epochs would count twice and, "
            "under two subjects, leak across cross-validation folds. List each "
            "file once: remove one entry, or narrow the glob with match: or "
            "include:."
        )  # fmt: skip


def _bids_recordings(spec: dict, m: Manifest, where: str) -> list:
    """EEG recordings of a BIDS dataset (mne-bids), with their entities as fields."""
    try:
        import mne_bids
    except ImportError:
        raise m.error(
            f"{where}.bids", "reading BIDS needs mne-bids: pip install 'eegsal[bids]'."
        ) from None  # fmt: skip
    root = _inside(m.root, Path(str(spec.get("root", "."))), m, f"{where}.bids.root")
    if not (root / "dataset_description.json").is_file():
        raise m.error(
            f"{where}.bids.root", f"{root} is not a BIDS dataset (no "
            "dataset_description.json)."
        )  # fmt: skip

    def as_list(value):
        return None if value is None else [str(x) for x in _as_list(value)]

    paths = mne_bids.find_matching_paths(
        root,
        subjects=as_list(spec.get("subjects")),
        sessions=as_list(spec.get("sessions")),
        tasks=as_list(spec.get("task")),
        runs=as_list(spec.get("runs")),
        datatypes=spec.get("datatype", "eeg"),
        suffixes=spec.get("datatype", "eeg"),
        extensions=[".edf", ".bdf", ".vhdr", ".set", ".fif"],
    )
    if not paths:
        raise m.error(f"{where}.bids", f"no recording in {root} matches {spec}.")
    found = []
    for bp in paths:
        groups = {k: v for k, v in bp.entities.items() if v is not None}
        groups["_bids_path"] = bp
        found.append((bp.fpath, groups))
    return found


#: Warnings of MNE's EDF/BDF reader (mne/io/edf/edf.py, MNE 1.13) that say the
#: data read are not those recorded: the file is shorter (or longer) than its
#: header says, and channels whose header gives no scale (digital or physical
#: min = max), which MNE then scales by a made-up factor.
_TRUNCATED = "Number of records from the header does not match the file size"
_NO_SCALE = (
    "Scaling factor will not be defined in the following channels:",
    "Physical range is not defined in following channels:",
)


def _header_seconds(path: Path) -> float | None:
    """Duration (s) an EDF/BDF header gives: data records x record length."""
    try:
        with open(path, "rb") as fid:
            head = fid.read(252)
        return int(head[236:244]) * float(head[244:252])
    except (OSError, ValueError):
        return None


def _reader_notes(
    caught: list, raw: mne.io.BaseRaw, rec: dict, m: Manifest
) -> set[str]:
    """Turn the reader's warnings about damaged files into errors.

    Parameters
    ----------
    caught : list of warnings.WarningMessage
        What the reader warned while reading ``rec``.
    raw : mne.io.Raw
        The recording as read.
    rec : dict
        The recording's entry (of :func:`expand_recordings`).
    m : Manifest
        The manifest.

    Returns
    -------
    unscaled : set of str
        Channels (their names in the file) whose header gives no scale; they
        are an error unless the manifest leaves them out.
    """
    path, unscaled = rec["path"], set()
    for note in caught:
        text = str(note.message)
        if text.startswith(_TRUNCATED):
            held = raw.n_times / raw.info["sfreq"]
            said = _header_seconds(path)
            what = (
                f"its header says {said:.1f} s but the file holds {held:.1f} s"
                if said is not None
                else f"its header does not match its size ({held:.1f} s read)"
            )
            if not rec.get("allow_truncated", False):
                raise m.error(
                    rec["where"], f"{path.name} is truncated: {what}; repair or "
                    f"replace the file, or set {rec['where']}.allow_truncated: "
                    f"true to read the {held:.1f} s it holds."
                )  # fmt: skip
            logger.warning(
                "%s is truncated: %s; reading those (allow_truncated).",
                path.name, what,
            )  # fmt: skip
        elif text.startswith(_NO_SCALE):
            listed = text.split("\n", 1)[1] if "\n" in text else ""
            unscaled |= {c for c in raw.ch_names if c in listed.split(", ")}
        elif issubclass(note.category, RuntimeWarning):
            # readers' notes on e.g. EDF highpass fields say nothing about the data
            logger.debug("%s: %s", path.name, text)
        else:
            warnings.warn_explicit(
                note.message, note.category, note.filename, note.lineno
            )
    return unscaled


def _read_raw(rec: dict, m: Manifest) -> mne.io.BaseRaw:
    """Read one recording and apply the manifest's preprocessing."""
    pre, path = m.preprocessing, rec["path"]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            if rec["format"] == "bids":
                from mne_bids import read_raw_bids

                raw = read_raw_bids(rec["bids_path"], verbose=False).load_data()
            else:
                raw = _READERS[rec["format"]](path, preload=True, verbose=False)
    except (OSError, ValueError, RuntimeError) as err:
        raise m.error(
            rec["where"], f"cannot read {path} as {rec['format']}: {err}"
        ) from None
    unscaled = _reader_notes(caught, raw, rec, m)
    names = list(raw.ch_names)  # as in the file
    rename = pre.get("rename")
    if rename == "eegbci":
        mne.datasets.eegbci.standardize(raw)
    elif isinstance(rename, dict):
        missing = sorted(set(rename) - set(raw.ch_names))
        if missing:
            raise m.error(
                "preprocessing.rename", f"{path.name} has no channels {missing}."
            )
        raw.rename_channels(rename)
    unscaled = {new for old, new in zip(names, raw.ch_names, strict=True)
                if old in unscaled}  # fmt: skip
    if pre.get("channel_types"):
        raw.set_channel_types(
            {k: v for k, v in pre["channel_types"].items() if k in raw.ch_names}
        )
    drop = [c for c in pre.get("exclude") or [] if c in raw.ch_names]
    if drop:
        raw.drop_channels(drop)
    picks = pre.get("picks")
    if picks:
        missing = [c for c in picks if c not in raw.ch_names]
        if missing:
            raise m.error(
                "preprocessing.picks",
                f"channels {missing} are not in {path.name} (it has "
                f"{raw.ch_names}); fix picks, or rename the channels.",
            )
        raw.pick(list(picks))
    else:
        raw.pick(["eeg", "stim"], exclude=())  # the stim channel serves events only
    eeg = mne.pick_types(raw.info, eeg=True)
    if not len(eeg):
        raise m.error("preprocessing.picks", f"{path.name} has no EEG channel left.")
    unscaled = [c for c in raw.ch_names if c in unscaled]
    if unscaled:
        raise m.error(
            rec["where"], f"{path.name}: the header gives channels {unscaled} "
            "digital or physical min = max, so their scale is unknown (MNE "
            "would read them off by orders of magnitude); repair the header, "
            "or list them under preprocessing.exclude."
        )  # fmt: skip
    data = raw.get_data(picks=eeg)
    nan = [raw.ch_names[eeg[i]] for i in np.flatnonzero(~np.isfinite(data).all(1))]
    if nan:
        raise m.error(
            rec["where"], f"{path.name}: channels {nan} hold NaN or infinite samples; "
            "list them under preprocessing.exclude or repair the file."
        )  # fmt: skip
    flat = [raw.ch_names[eeg[i]] for i in np.flatnonzero(np.ptp(data, axis=1) == 0)]
    if flat:
        raise m.error(
            rec["where"], f"{path.name}: channels {flat} are flat (constant) over the "
            "whole recording; list them under preprocessing.exclude."
        )  # fmt: skip
    if pre.get("montage"):
        try:
            raw.set_montage(pre["montage"], on_missing="raise")
        except ValueError as err:
            raise m.error("preprocessing.montage", f"{path.name}: {err}") from None
    if pre.get("reference"):
        raw.set_eeg_reference(pre["reference"], projection=False, verbose=False)
    if pre.get("l_freq") or pre.get("h_freq"):
        raw.filter(pre.get("l_freq"), pre.get("h_freq"), verbose=False)
    if pre.get("notch"):
        raw.notch_filter(pre["notch"], verbose=False)
    if pre.get("sfreq") and raw.info["sfreq"] != pre["sfreq"]:
        raw.resample(pre["sfreq"], verbose=False)
    return raw


# --------------------------------------------------------------------- hypnograms
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


def _stage_at(hypno: pd.DataFrame, times: np.ndarray, length: float) -> np.ndarray:
    """Return the scored stage at each time (s), '' where none is scored."""
    idx = np.searchsorted(hypno["onset"].to_numpy(), times, side="right") - 1
    ok = (idx >= 0) & (times < hypno["onset"].to_numpy()[np.maximum(idx, 0)] + length)
    stages = hypno["stage"].to_numpy().astype(object)
    return np.where(ok, stages[np.maximum(idx, 0)], "")


# ------------------------------------------------------------------------ events
def _labelled(values: np.ndarray, labels: dict, ignore: set, m: Manifest, message):
    """Mask of the events with a label; unmapped values not ignored are an error.

    ``message(unknown)`` words the error for the kind of event source.
    """
    unknown = sorted({str(v) for v in values} - set(labels) - ignore)
    if unknown:
        raise m.error("epochs.labels", message(unknown))
    return np.isin(values, list(labels))


def _events(rec: dict, raw: mne.io.BaseRaw, m: Manifest) -> pd.DataFrame:
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


# ----------------------------------------------------------------------- loading
def _write_part(rec: dict, m: Manifest, fname: Path) -> dict | None:
    """Read and preprocess one recording; write it to ``fname``; return its epochs.

    The preprocessed recording is saved as a float64 FIF raw (only what the
    epochs read), so that the study's epochs can be cut from all recordings
    read lazily, in bounded memory. Returns the epochs' events (samples in
    the saved file), times and metadata, or None when it holds no epochs.
    """
    raw = _read_raw(rec, m)
    ep, sfreq = m.epochs, raw.info["sfreq"]
    length = ep["length"]
    meta_cols = dict(subject=rec["subject"], recording=rec["path"].name)
    if ep["mode"] == "scored":
        table = read_hypnogram(rec, raw, m)
        table = table.rename(columns={"stage": ep.get("stage_column", "stage")})
        tmin, tmax = 0.0, length - 1.0 / sfreq
    else:
        table = _events(rec, raw, m)
        tmin, tmax = float(ep["tmin"]), float(ep["tmax"])
        context = ep.get("context")
        if context:
            hypno = read_hypnogram(rec, raw, m)
            mid = table["onset"].to_numpy() + (tmin + tmax) / 2
            table[context] = _stage_at(hypno, mid, length)
            if (table[context] == "").any():
                n = int((table[context] == "").sum())
                logger.warning(
                    "%s: %d events fall outside the scored epochs; dropped.",
                    rec["path"].name, n,
                )  # fmt: skip
                table = table[table[context] != ""]
    if not len(table):
        logger.warning("%s: no epochs.", rec["path"].name)
        return None
    stim = mne.pick_types(raw.info, stim=True)
    if len(stim):  # it served the events only
        raw.drop_channels([raw.ch_names[i] for i in stim])
    raw.set_annotations(None)
    samples = np.round(table["onset"].to_numpy() * sfreq).astype(int) + raw.first_samp
    events = np.column_stack([samples, np.zeros_like(samples), np.ones_like(samples)])
    # MNE decides which epochs exist (repeated samples, windows past the end)
    epochs = mne.Epochs(raw, events, {"epoch": 1}, tmin, tmax, baseline=None,
                        preload=False, reject_by_annotation=False,
                        event_repeated="drop", verbose=False)  # fmt: skip
    epochs.drop_bad(verbose=False)
    keep = [i for i, log in enumerate(epochs.drop_log) if not log]
    table = table.iloc[keep]
    if not len(table):
        logger.warning("%s: no epochs.", rec["path"].name)
        return None
    meta = pd.DataFrame(meta_cols, index=range(len(table)))
    meta["onset"] = table["onset"].to_numpy()
    for col in table.columns.drop("onset"):
        meta[col] = table[col].to_numpy()
    for col, value in {**rec["groups"], **rec["columns"]}.items():
        if col not in meta:
            meta[col] = value
    for ch in raw.info["chs"]:  # data are in SI units: parts share calibrations
        ch["cal"], ch["range"] = 1.0, 1.0  # (which concatenate_raws requires)
    raw.save(fname, fmt="double", overwrite=True, verbose=False)
    return dict(
        fname=fname,
        samples=epochs.events[:, 0] - raw.first_samp,
        tmin=tmin,
        tmax=tmax,
        meta=meta,
        sfreq=sfreq,
        ch_names=raw.ch_names,
    )


def _cut_epochs(parts: list) -> mne.Epochs:
    """Epochs of every part, cut from the parts read lazily (nothing is loaded)."""
    raws = [mne.io.read_raw_fif(p["fname"], verbose=False) for p in parts]
    offsets = np.cumsum([0] + [r.n_times for r in raws[:-1]])
    samples = np.concatenate(
        [p["samples"] + off for p, off in zip(parts, offsets, strict=True)]
    )
    raw = mne.concatenate_raws(raws, verbose=False)
    samples += raw.first_samp
    events = np.column_stack([samples, np.zeros_like(samples), np.ones_like(samples)])
    meta = pd.concat([p["meta"] for p in parts], ignore_index=True)
    with mne.use_log_level("warning"):
        epochs = mne.Epochs(raw, events, {"epoch": 1}, parts[0]["tmin"],
                            parts[0]["tmax"], baseline=None, preload=False,
                            reject_by_annotation=False, metadata=meta)  # fmt: skip
    epochs.set_annotations(None)  # the boundaries between recordings
    return epochs.drop_bad(verbose=False)  # drops nothing; reads one epoch at a time


def _check_compatible(parts: list, m: Manifest) -> None:
    sfreqs = {p[0]["path"].name: p[1]["sfreq"] for p in parts}
    if len(set(sfreqs.values())) > 1:
        seen = {}
        for name, sf in sfreqs.items():
            seen.setdefault(sf, name)
        listing = ", ".join(f"{sf:g} Hz ({name})" for sf, name in seen.items())
        raise m.error(
            "preprocessing.sfreq", f"recordings have different sampling rates: "
            f"{listing}; set preprocessing.sfreq to resample them to one rate."
        )  # fmt: skip
    first = parts[0][1]["ch_names"]
    for rec, part in parts[1:]:
        if part["ch_names"] != first:
            diff = sorted(set(first) ^ set(part["ch_names"]))
            raise m.error(
                "preprocessing.picks", f"{rec['path'].name} and "
                f"{parts[0][0]['path'].name} have different channels ({diff[:8]}); "
                "list the common ones under preprocessing.picks."
            )  # fmt: skip


@fill_doc
@verbose
def load_manifest(
    manifest: str | os.PathLike | dict,
    root: str | os.PathLike | None = None,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    preload: bool = True,
    n_jobs: int | None = None,
    verbose: bool | str | int | None = None,
) -> mne.Epochs:
    """Load the epochs a dataset manifest describes.

    Parameters
    ----------
    manifest : path-like | dict
        A YAML manifest (see ``data_manifests/README.md``) or its content.
    root : path-like | None
        Data root; overrides the ``EEGSAL_DATA`` environment variable, which
        overrides the manifest's ``root:``.
    cache : bool
        Reuse (and write) preprocessed epochs in ``cache_dir``, keyed by a
        hash of the manifest's settings and of every file's path, size and
        modification time: a second load skips reading and filtering.
    cache_dir : path-like | None
        Where cached ``-epo.fif`` files live; default ``$EEGSAL_CACHE`` or
        ``~/.cache/eegsal``.
    preload : bool
        False returns the cached epochs read lazily (``mne.read_epochs(...,
        preload=False)``), for studies larger than memory: each recording is
        read and preprocessed on its own, and the cache file is written in
        parts of 64 MiB (:data:`eegsal.data.cache.SPLIT_SIZE`; 1/90 of the
        study over 5.6 GiB), so memory holds one recording, or one part, at a
        time. :func:`eegsal.decode` and
        :func:`eegsal.attribute` read such epochs batch by batch.
    %(n_jobs)s
        Each task reads and preprocesses one recording.
    %(verbose)s

    Returns
    -------
    epochs : mne.Epochs
        With ``metadata`` columns ``subject``, ``recording`` (file name),
        ``onset`` (s from the recording's start), the content (``content``,
        event-locked windows), the stage (``stage``, scored epochs, or the
        column named by ``epochs.context``), ``event`` (the event's name), the
        named groups of ``match:`` and every ``columns:`` entry.

    Examples
    --------
    >>> epochs = eegsal.load_manifest("eegmmidb_motor.yaml")  # doctest: +SKIP
    >>> epochs.metadata.groupby(["subject", "content"]).size()  # doctest: +SKIP
    """
    m = read_manifest(manifest, root)
    if m.source == "simulate":
        from eegsal.simulate import simulate_sleep_study

        try:
            epochs, _ = simulate_sleep_study(**m.simulate, verbose=False)
        except (TypeError, ValueError) as err:
            raise m.error("simulate", str(err)) from None
        return epochs
    if not preload and not cache:
        raise ValueError(
            "preload=False reads the epochs lazily from the cache file; it needs "
            "cache=True."
        )
    recs = expand_recordings(m)
    key = None
    if cache:
        key = cache_key(m, recs)
        hit = read_cached(m.name, key, cache_dir, preload=preload)
        if hit is not None:
            logger.info("Loaded %d epochs of %s from the cache.", len(hit), m.name)
            return hit
        folder = cache_path(m.name, key, cache_dir).parent.parent
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = None
    # each recording is preprocessed and written as a part, in its own task;
    # the epochs are then cut from the parts read lazily, in bounded memory
    with tempfile.TemporaryDirectory(prefix=".parts-", dir=folder) as tmp:
        jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_write_part)(rec, m, Path(tmp) / f"part-{k:05d}_raw.fif")
            for k, rec in enumerate(recs)
        )
        parts = [
            (rec, part)
            for rec, part in zip(
                recs,
                progress(jobs, desc=f"reading {m.name}", total=len(recs)),
                strict=True,
            )
            if part is not None
        ]
        if not parts:
            raise m.error("epochs", "no epochs in any recording; check labels/stages.")
        _check_compatible(parts, m)
        epochs = _cut_epochs([p[1] for p in parts])
        _report(epochs, m)
        if not cache:
            with mne.use_log_level("warning"):
                return epochs.load_data()
        path = write_cached(epochs, m.name, key, cache_dir)
    return read_epochs(path, preload=preload)


def _report(epochs: mne.Epochs, m: Manifest) -> None:
    meta = epochs.metadata
    label = "content" if "content" in meta else None
    if label is not None:
        per = meta.groupby("subject")[label].nunique()
        one = per.index[per < meta[label].nunique()].tolist()
        if one:
            # kept: subject-grouped decoding handles them, but within-subject
            # contrasts (two_stage_test, per-subject scores) cannot use them
            logger.warning(
                "%s: subjects %s have one %s class only; kept, but they add "
                "nothing to within-subject contrasts.",
                m.origin, one, label,
            )  # fmt: skip
    logger.info(
        "Loaded %d epochs of %s from %d subjects (%g Hz, %d channels)",
        len(epochs), m.name, meta["subject"].nunique(), epochs.info["sfreq"],
        len(epochs.ch_names),
    )  # fmt: skip
