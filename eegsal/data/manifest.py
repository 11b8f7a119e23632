"""Dataset manifests: the schema, and its validation with messages that help.

A manifest is a YAML file (read with ``yaml.safe_load``) or a dict. Its keys
are described in ``data_manifests/README.md``; every value is checked here,
once, and a problem raises :class:`ManifestError` naming the manifest, the
field (``recordings[2].hypnogram``), what was found and what to do.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from eegsal._config_io import check_known, did_you_mean, load_yaml, mapping

__all__ = ["Manifest", "ManifestError", "read_manifest"]

_TOP = {
    "name",
    "description",
    "root",
    "source",
    "simulate",
    "recordings",
    "preprocessing",
    "epochs",
}
_RECORDING = {"path", "glob", "bids", "match", "include", "subject", "format",
              "hypnogram", "hypnogram_sfreq", "events", "columns",
              "allow_truncated"}  # fmt: skip
_BIDS = {"root", "task", "subjects", "sessions", "runs", "datatype"}
_PREPROCESSING = {"rename", "channel_types", "exclude", "picks", "montage",
                  "reference", "l_freq", "h_freq", "notch", "sfreq"}  # fmt: skip
_EPOCHS = {"mode", "length", "hypnogram", "hypnogram_sfreq", "scheme", "stages",
           "ignore_stages", "stage_column", "trim_wake", "events", "stim_channel",
           "labels", "ignore_labels", "label_column", "context", "tmin", "tmax",
           "on_outside"}  # fmt: skip
#: what ``epochs.on_outside`` may say about event windows outside a recording
ON_OUTSIDE = ("drop", "raise")
FORMATS = {
    ".edf": "edf",
    ".bdf": "bdf",
    ".fif": "fif",
    ".fif.gz": "fif",
    ".vhdr": "brainvision",
    ".set": "eeglab",
}


class ManifestError(ValueError):
    """A manifest, or the data it points to, is not what eegsal can load.

    The message names the manifest, the field, the problem and the fix.
    """


#: The checks shared with study configs (:mod:`eegsal._config_io`), raising
#: ManifestError: ``_mapping(value, where, origin)`` and
#: ``_unknown(keys, allowed, where, origin)``.
_mapping = partial(mapping, error=ManifestError)
_unknown = partial(check_known, error=ManifestError)


@dataclass
class Manifest:
    """A validated manifest.

    Attributes
    ----------
    name : str
        Dataset name (names the cache files).
    source : str
        ``'files'`` (recordings) or ``'simulate'`` (the built-in simulator).
    root : pathlib.Path | None
        Folder the recording paths are relative to.
    recordings : list of dict
        Recording entries (``path`` or ``glob`` + ``match``...).
    preprocessing : dict
        Channel and filter settings.
    epochs : dict
        Epoching settings.
    simulate : dict
        Keyword arguments of :func:`eegsal.simulate.simulate_sleep_study`.
    origin : str
        Where the manifest came from (its file, or ``'<dict>'``), for messages.
    raw : dict
        The manifest as given.
    """

    name: str
    source: str
    root: Path | None
    recordings: list[dict]
    preprocessing: dict
    epochs: dict
    simulate: dict
    origin: str
    raw: dict = field(repr=False)

    def error(self, where: str, problem: str) -> ManifestError:
        """Build a :class:`ManifestError` for field ``where``."""
        return ManifestError(f"{self.origin}: {where}: {problem}")


#: A dataset name becomes a file and folder name in the cache: letters, digits,
#: ``.``, ``_`` and ``-``, starting with a letter or digit, at most 64 characters.
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(value, where: str, origin: str, error=None) -> str:
    """Return ``value`` if it is a safe file name (a slug), else raise.

    Names name files and folders (the cache entry of a dataset), so they may
    not hold path separators, ``..`` or start with a dot.
    """
    text = str(value)
    if not _SLUG.fullmatch(text) or ".." in text:
        raise (error or ManifestError)(
            f"{origin}: {where}: {text!r} is not a valid name; use 1-64 letters, "
            "digits, '.', '_' or '-', starting with a letter or digit (no path "
            "separators, no '..'), e.g. 'sleep-edf_cassette'."
        )
    return text


#: what to write instead of a wrong number, by field
_NUMBER_FIX = {
    "preprocessing.l_freq": "give the high-pass edge in Hz (e.g. 0.5), or leave "
    "l_freq out for no high-pass",
    "preprocessing.h_freq": "give the low-pass edge in Hz (e.g. 40), or leave "
    "h_freq out for no low-pass",
    "preprocessing.notch": "give the line frequency in Hz (50 or 60), or leave "
    "notch out",
    "preprocessing.sfreq": "give the sampling rate to resample to in Hz (e.g. "
    "100), or leave sfreq out to keep the recordings' own",
    "epochs.length": "give the scored epoch length in s (e.g. 30)",
    "epochs.hypnogram_sfreq": "give the rate of a per-sample hypnogram in Hz "
    "(e.g. 100), or leave it out for one stage per epoch",
    "epochs.trim_wake": "give the minutes of wake to keep before and after the "
    "sleep period (30 for Sleep-EDF), or leave trim_wake out to keep all",
    "epochs.tmin": "give the window's start in s relative to each event (e.g. -2)",
    "epochs.tmax": "give the window's end in s relative to each event (e.g. 0)",
}


def _number(value, where, origin, *, positive=False, allow_none=True):
    if value is None and allow_none:
        return None
    fix = _NUMBER_FIX.get(where, "give a number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ManifestError(
            f"{origin}: {where}: expected a number, got {value!r}; {fix}."
        )
    if not math.isfinite(value):
        raise ManifestError(
            f"{origin}: {where}: expected a finite number, got {value!r}; {fix}."
        )
    if positive and value <= 0:
        raise ManifestError(f"{origin}: {where}: must be > 0, got {value!r}; {fix}.")
    return float(value)


def _check_montage(name, origin: str) -> None:
    """Refuse a montage name MNE does not ship, suggesting the closest one."""
    import mne

    builtin = mne.channels.get_builtin_montages()
    if isinstance(name, str) and name in builtin:
        return
    text = str(name)
    renamed = "colin27_" + text.removeprefix("standard_")
    if text.startswith("standard_") and renamed in builtin:
        # MNE 1.13 renamed the 10-20 templates; the old names go in MNE 1.14
        hint = f" It was renamed in MNE 1.13: write {renamed!r}."
    else:
        lower = {b.lower(): b for b in builtin}
        close = difflib.get_close_matches(text.lower(), sorted(lower), n=1)
        hint = f" Did you mean {lower[close[0]]!r}?" if close else ""
    raise ManifestError(
        f"{origin}: preprocessing.montage: {name!r} is not an MNE built-in montage; "
        f"use one of mne.channels.get_builtin_montages() (e.g. 'colin27_1005'), or "
        f"leave montage out.{hint}"
    )


def read_manifest(
    manifest: str | os.PathLike | dict, root: str | os.PathLike | None = None
) -> Manifest:
    """Read and validate a manifest.

    Parameters
    ----------
    manifest : path-like | dict
        A YAML file or its content.
    root : path-like | None
        Data root; overrides the ``EEGSAL_DATA`` environment variable, which
        overrides the manifest's ``root`` (relative to the manifest file).

    Returns
    -------
    manifest : Manifest
        The validated manifest.
    """
    raw, origin, path = load_yaml(manifest, "manifest", ManifestError)
    base = Path.cwd() if path is None else path.parent
    _unknown(raw, _TOP, "", origin)
    source = raw.get("source", "files")
    if source not in ("files", "simulate"):
        raise ManifestError(
            f"{origin}: source: {source!r} is not 'files' or 'simulate'."
        )
    if raw.get("name") is not None:
        name = check_name(raw["name"], "name", origin)
    else:  # the file's stem, made a slug
        stem = Path(origin).stem if origin != "<dict>" else ""
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-_")[:64] or "data"
    simulate = _mapping(raw.get("simulate"), "simulate", origin)
    given_root = root or os.environ.get("EEGSAL_DATA") or raw.get("root")
    data_root = None
    if given_root is not None:
        data_root = Path(os.path.expanduser(str(given_root)))
        if (
            not data_root.is_absolute()
            and root is None
            and "EEGSAL_DATA" not in os.environ
        ):
            data_root = (base / data_root).resolve()
    recordings = raw.get("recordings") or []
    if isinstance(recordings, dict):
        recordings = [recordings]
    if source == "files":
        if not recordings:
            raise ManifestError(
                f"{origin}: recordings: none given; list files (path: ...) or a "
                "pattern (glob: ...)."
            )
        if data_root is None:
            raise ManifestError(
                f"{origin}: root: no data root; set root: in the manifest, the "
                "EEGSAL_DATA environment variable, or pass root=."
            )
        if not data_root.is_dir():
            raise ManifestError(
                f"{origin}: root: {data_root} is not a folder; fix root: or pass "
                "root= / set EEGSAL_DATA to where the data are."
            )
    for i, rec in enumerate(recordings):
        where = f"recordings[{i}]"
        rec = _mapping(rec, where, origin)
        _unknown(rec, _RECORDING, f"{where}.", origin)
        if sum(k in rec for k in ("path", "glob", "bids")) != 1:
            raise ManifestError(
                f"{origin}: {where}: give exactly one of path: (a file), glob: "
                "(a pattern) or bids: (a BIDS dataset)."
            )
        if "bids" in rec:
            _unknown(_mapping(rec["bids"], f"{where}.bids", origin), _BIDS,
                     f"{where}.bids.", origin)  # fmt: skip
        if "format" in rec and rec["format"] not in set(FORMATS.values()):
            raise ManifestError(
                f"{origin}: {where}.format: {rec['format']!r} is not one of "
                f"{sorted(set(FORMATS.values()))}."
            )
        if not isinstance(rec.get("allow_truncated", False), bool):
            raise ManifestError(
                f"{origin}: {where}.allow_truncated: expected true or false, got "
                f"{rec['allow_truncated']!r}; write true to read files shorter "
                "than their header says."
            )
        _number(rec.get("hypnogram_sfreq"), f"{where}.hypnogram_sfreq", origin,
                positive=True)  # fmt: skip
        _mapping(rec.get("include"), f"{where}.include", origin)
        _mapping(rec.get("columns"), f"{where}.columns", origin)
        recordings[i] = rec
    pre = _mapping(raw.get("preprocessing"), "preprocessing", origin)
    _unknown(pre, _PREPROCESSING, "preprocessing.", origin)
    for key in ("l_freq", "h_freq", "sfreq", "notch"):
        _number(pre.get(key), f"preprocessing.{key}", origin, positive=True)
    l_freq, h_freq = pre.get("l_freq"), pre.get("h_freq")
    if l_freq is not None and h_freq is not None and l_freq >= h_freq:
        raise ManifestError(
            f"{origin}: preprocessing.l_freq: the high-pass edge ({l_freq:g} Hz) "
            f"is not below the low-pass edge h_freq ({h_freq:g} Hz), which MNE "
            "would apply as a band-stop filter; give l_freq < h_freq for a "
            "band-pass (a line-noise stop band is preprocessing.notch)."
        )
    if pre.get("montage") is not None:
        _check_montage(pre["montage"], origin)
    ep = _mapping(raw.get("epochs"), "epochs", origin)
    _unknown(ep, _EPOCHS, "epochs.", origin)
    mode = ep.get("mode", "scored" if "hypnogram" in ep else "events")
    if source == "files" and mode not in ("scored", "events"):
        raise ManifestError(
            f"{origin}: epochs.mode: {mode!r} is not 'scored' (fixed windows on a "
            "hypnogram) or 'events' (windows around events)."
        )
    ep["mode"] = mode
    ep["length"] = _number(
        ep.get("length", 30.0), "epochs.length", origin, positive=True
    )
    if mode == "events" and source == "files":
        for key in ("tmin", "tmax"):
            if key not in ep:
                raise ManifestError(
                    f"{origin}: epochs.{key}: required for event-locked windows (s, "
                    "relative to each event)."
                )
            _number(ep[key], f"epochs.{key}", origin, allow_none=False)
        if ep["tmax"] <= ep["tmin"]:
            raise ManifestError(
                f"{origin}: epochs.tmax ({ep['tmax']}) must be after tmin "
                f"({ep['tmin']}); give the window's start as tmin and its end as "
                "tmax (s relative to each event), e.g. tmin: -2, tmax: 0."
            )
        if not _mapping(ep.get("labels"), "epochs.labels", origin):
            raise ManifestError(
                f"{origin}: epochs.labels: map event names (or codes) to content "
                "labels, e.g. {T1: left, T2: right}."
            )
    if ep.get("on_outside", "drop") not in ON_OUTSIDE:
        raise ManifestError(
            f"{origin}: epochs.on_outside: {ep['on_outside']!r} is not 'drop' "
            "(leave out event windows that fall outside their recording, with a "
            "logged count) or 'raise' (refuse them)."
        )
    _check_stages(ep, mode, origin)
    return Manifest(
        name=name,
        source=source,
        root=data_root,
        recordings=recordings,
        preprocessing=pre,
        epochs=ep,
        simulate=simulate,
        origin=origin,
        raw=raw,
    )


def _check_stages(ep: dict, mode: str, origin: str) -> None:
    """Check the stage fields of ``epochs``: scheme, stages, trim_wake."""
    from eegsal.data.hypnograms import SCHEMES

    scheme = ep.get("scheme")
    if scheme is not None and scheme not in SCHEMES:
        hint = did_you_mean(str(scheme).lower(), SCHEMES)
        raise ManifestError(
            f"{origin}: epochs.scheme: {scheme!r} is not a stage scheme; use aasm "
            "(W, N1, N2, N3, R/REM), rk (Rechtschaffen & Kales: W, S1-S4, REM, "
            "MT; Sleep-EDF's 'Sleep stage 4') or yasa (YASA's integers 0=W, 1=N1, "
            f"2=N2, 3=N3, 4=REM).{hint}"
        )
    stages = _mapping(ep.get("stages"), "epochs.stages", origin)
    odd = {k: v for k, v in stages.items() if not isinstance(v, str | int)}
    if odd:
        raise ManifestError(
            f"{origin}: epochs.stages: {odd} map codes to no stage name; write "
            "code: stage pairs, e.g. {S3: N3, S4: N3}."
        )
    ignored = ep.get("ignore_stages")
    if ignored is not None and not isinstance(ignored, list | tuple):
        raise ManifestError(
            f"{origin}: epochs.ignore_stages: expected a list of stage codes, got "
            f"{ignored!r}; e.g. ['?', MT]."
        )
    _number(ep.get("hypnogram_sfreq"), "epochs.hypnogram_sfreq", origin,
            positive=True)  # fmt: skip
    minutes = _number(ep.get("trim_wake"), "epochs.trim_wake", origin)
    if minutes is not None and minutes < 0:
        raise ManifestError(
            f"{origin}: epochs.trim_wake: must be >= 0 min, got {minutes:g}; "
            f"{_NUMBER_FIX['epochs.trim_wake']}."
        )
    if minutes is not None and mode != "scored":
        raise ManifestError(
            f"{origin}: epochs.trim_wake: trims scored epochs (mode: scored); "
            "event-locked windows keep every event. Remove trim_wake, or set "
            "mode: scored."
        )


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
