"""Recordings named by a manifest -> MNE epochs with subject, content and context."""

from __future__ import annotations

import os
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
from eegsal.data.events import read_events
from eegsal.data.hypnograms import read_hypnogram, stage_at
from eegsal.data.manifest import Manifest, read_manifest
from eegsal.data.recordings import _READERS, expand_recordings

__all__ = ["load_manifest"]


#: Warnings of MNE's EDF/BDF reader (mne/io/edf/edf.py, MNE 1.13) that say the
#: data read are not those recorded: the file is shorter (or longer) than its
#: header says, and channels whose header gives no scale (digital or physical
#: min = max), which MNE then scales by a made-up factor.
_TRUNCATED = "Number of records from the header does not match the file size"
_NO_SCALE = (  # MNE's words: 1.13.0 and 1.13.2 word the first differently
    "Scaling factor will not be defined in the following channels:",
    "Scaling factor is not defined in following channels:",
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


def _channel_rates(path: Path) -> dict[str, float]:
    """Return the rate (Hz) of each signal an EDF/BDF header lists, by label.

    EDF+ annotation signals are left out; an unreadable header gives {} (the
    reader then says what is wrong).
    """
    try:
        with open(path, "rb") as fid:
            head = fid.read(256)
            n = int(head[252:256])
            record = float(head[244:252])
            fields = fid.read(n * 256)
        labels = [fields[16 * i : 16 * (i + 1)].decode("latin-1").strip()
                  for i in range(n)]  # fmt: skip
        at = n * (16 + 80 + 8 * 5 + 80)  # label, transducer, 5 numbers, filters
        counts = [int(fields[at + 8 * i : at + 8 * (i + 1)]) for i in range(n)]
    except (OSError, ValueError):
        return {}
    if record <= 0:
        return {}
    return {
        label: count / record
        for label, count in zip(labels, counts, strict=True)
        if label not in ("EDF Annotations", "BDF Annotations")
    }


def _slow_channels(rec: dict, m: Manifest) -> list[str]:
    """Channels of an EDF/BDF sampled slower than its fastest ones, left out.

    MNE reads a file at its highest rate and repeats the samples of slower
    channels (Sleep-EDF's 1-Hz respiration, temperature and event marker),
    which are then no signal at that rate, and setting their type warns about
    units; they are left out, with a logged note, unless picked by name.
    """
    if rec["format"] not in ("edf", "bdf"):
        return []
    rates = _channel_rates(rec["path"])
    if not rates:
        return []
    top = max(rates.values())
    picked = set(m.preprocessing.get("picks") or [])
    slow = {c: r for c, r in rates.items() if r < top and c not in picked}
    if slow:
        listing = ", ".join(f"{c} ({r:g} Hz)" for c, r in slow.items())
        logger.info(
            "%s: channels sampled below %g Hz are left out: %s.",
            rec["path"].name, top, listing,
        )  # fmt: skip
    return list(slow)


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
                kwargs = {}
                slow = _slow_channels(rec, m)
                if slow:
                    kwargs["exclude"] = slow
                raw = _READERS[rec["format"]](
                    path, preload=True, verbose=False, **kwargs
                )
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
        # a unit that follows the type (V -> NA for misc) is what was asked for
        raw.set_channel_types(
            {k: v for k, v in pre["channel_types"].items() if k in raw.ch_names},
            on_unit_change="ignore",
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
        table = read_hypnogram(rec, raw, m).drop(columns="wake")
        table = table.rename(columns={"stage": ep.get("stage_column", "stage")})
        tmin, tmax = 0.0, length - 1.0 / sfreq
    else:
        table = read_events(rec, raw, m)
        tmin, tmax = float(ep["tmin"]), float(ep["tmax"])
        context = ep.get("context")
        if context:
            hypno = read_hypnogram(rec, raw, m)
            mid = table["onset"].to_numpy() + (tmin + tmax) / 2
            table[context] = stage_at(hypno, mid, length)
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


def _event_names(meta: pd.DataFrame, m: Manifest) -> pd.Series:
    """Each epoch's event name, ``'<context>/<content>'``, for MNE's selection.

    The context is the stage (scored epochs) or the column ``epochs.context``
    names, else a ``context`` column (events); the content is the ``content``
    column. Either part is left out where the epochs have no such column, so
    ``epochs["flying"]`` and ``epochs["REM"]`` select by MNE's '/' tags.
    """
    ep = m.epochs
    if ep["mode"] == "scored":
        context = ep.get("stage_column", "stage")
    else:
        context = ep.get("context") or "context"
    cols = [c for c in (context, "content") if c in meta]
    if not cols:  # not reached by a valid manifest
        return pd.Series(["epoch"] * len(meta), index=meta.index)
    names = meta[cols[0]].astype(str)
    for col in cols[1:]:
        names = names + "/" + meta[col].astype(str)
    return names


def _cut_epochs(parts: list, m: Manifest) -> mne.Epochs:
    """Epochs of every part, cut from the parts read lazily (nothing is loaded).

    Their ``event_id`` names are ``'<context>/<content>'`` (:func:`_event_names`).
    """
    raws = [mne.io.read_raw_fif(p["fname"], verbose=False) for p in parts]
    offsets = np.cumsum([0] + [r.n_times for r in raws[:-1]])
    samples = np.concatenate(
        [p["samples"] + off for p, off in zip(parts, offsets, strict=True)]
    )
    raw = mne.concatenate_raws(raws, verbose=False)
    samples += raw.first_samp
    meta = pd.concat([p["meta"] for p in parts], ignore_index=True)
    names = _event_names(meta, m)
    event_id = {name: i + 1 for i, name in enumerate(sorted(names.unique()))}
    codes = names.map(event_id).to_numpy(int)
    events = np.column_stack([samples, np.zeros_like(samples), codes])
    with mne.use_log_level("warning"):
        epochs = mne.Epochs(raw, events, event_id, parts[0]["tmin"],
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
        named groups of ``match:`` and every ``columns:`` entry. The
        ``event_id`` names are ``'<context>/<content>'`` (the stage, or the
        ``epochs.context`` column, else a ``context`` column, and the content;
        the stage alone for scored epochs without a content), as the
        simulator's ``'<stage>/<content>'``: ``epochs["flying"]`` and
        ``epochs["REM"]`` select by MNE's '/' tags.

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
        epochs = _cut_epochs([p[1] for p in parts], m)
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
