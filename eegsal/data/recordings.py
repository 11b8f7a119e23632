"""Recording entries of a manifest -> files, subjects and companion files."""

from __future__ import annotations

import re
from pathlib import Path

import mne

from eegsal.data.manifest import FORMATS, Manifest, _as_list

__all__ = ["expand_recordings"]

_READERS = {
    "edf": mne.io.read_raw_edf,
    "bdf": mne.io.read_raw_bdf,
    "fif": mne.io.read_raw_fif,
    "brainvision": mne.io.read_raw_brainvision,
    "eeglab": mne.io.read_raw_eeglab,
}


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
                hypnogram_sfreq=rec.get(
                    "hypnogram_sfreq", m.epochs.get("hypnogram_sfreq")
                ),
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
