"""A cache of preprocessed epochs, keyed by what produced them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import mne

from eegsal._io import atomic_dir
from eegsal._logging import logger
from eegsal._version import __version__
from eegsal.data.manifest import check_name

__all__ = ["cache_key", "cache_path", "read_cached", "save_epochs", "write_cached"]


def default_cache_dir() -> Path:
    """``$EEGSAL_CACHE``, else ``$XDG_CACHE_HOME/eegsal`` (``~/.cache/eegsal``)."""
    if os.environ.get("EEGSAL_CACHE"):
        return Path(os.environ["EEGSAL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "eegsal"


#: The layout of a cached epochs file; raised when what is cached changes (2:
#: ``event_id`` names ``'<context>/<content>'``, no longer one ``'epoch'``), so
#: that an entry written before is rebuilt, not served as it was.
CACHE_FORMAT = 2


def cache_key(manifest, recordings: list[dict]) -> str:
    """Hash of the manifest's settings and of every file it reads.

    Files enter by their path relative to the data root, size and
    modification time, so editing a recording, a hypnogram or the manifest
    invalidates the cached epochs; moving the data root does not. The
    versions of eegsal and MNE and :data:`CACHE_FORMAT` enter too.
    """
    files = []
    for rec in recordings:
        for key in ("path", "hypnogram", "events"):
            value = rec.get(key)
            if isinstance(value, Path):
                stat = value.stat()
                rel = value.relative_to(manifest.root).as_posix()
                files.append((rel, stat.st_size, stat.st_mtime_ns))
    settings = {
        k: v for k, v in manifest.raw.items() if k not in ("description", "root")
    }
    payload = dict(
        settings=settings,
        files=files,
        eegsal=__version__,
        mne=mne.__version__,
        format=CACHE_FORMAT,
    )
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


#: Smallest size (bytes) of each part of a saved epochs file. Saving epochs
#: read lazily holds one part in memory at a time (about three copies of it,
#: in MNE's writer); as MNE writes at most 100 parts, studies over 5.6 GiB get
#: parts of 1/90 of their size.
SPLIT_SIZE = 64 * 2**20


def cache_path(name: str, key: str, cache_dir=None) -> Path:
    """Return where the epochs for ``key`` are cached, in a folder of their own.

    The folder holds the file and its split parts (``-epo-1.fif``...), which
    name each other, so it is written whole and renamed into place.
    """
    check_name(name, "name", "cache", error=ValueError)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"{name}-{key[:16]}" / f"{name}-epo.fif"


def _remove_entry(entry: Path, cache_dir: Path) -> None:
    """Remove one cache entry, only if it is a folder directly inside the cache.

    Every removal eegsal makes is confined to the cache folder: the entry's
    resolved path must be a child of the resolved cache folder and hold only
    the files eegsal writes there (``*-epo.fif`` and its split parts).
    """
    parent, target = cache_dir.resolve(), entry.resolve()
    if target.parent != parent or entry.is_symlink():
        raise FileExistsError(
            f"Refusing to remove {entry}: it is not an entry of the cache folder "
            f"{cache_dir} (a link, or outside it); remove it by hand, or use "
            "another cache (EEGSAL_CACHE or cache_dir=)."
        )
    stray = [p.name for p in target.iterdir() if not p.name.endswith(".fif")]
    if stray:
        raise FileExistsError(
            f"Refusing to remove the cache entry {entry}: it holds files eegsal "
            f"did not write ({stray[:3]}); remove it by hand."
        )
    shutil.rmtree(target)


def read_epochs(path, *, preload: bool = True) -> mne.Epochs:
    """:func:`mne.read_epochs`, quiet about MNE's metadata reader vs pandas 3.1."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The inplace keyword", Warning)
        return mne.read_epochs(path, preload=preload, verbose=False)


def read_cached(
    name: str, key: str, cache_dir=None, *, preload: bool = True
) -> mne.Epochs | None:
    """Return the cached epochs for ``key`` (lazily unless ``preload``), or None."""
    path = cache_path(name, key, cache_dir)
    if not path.is_file():
        return None
    try:
        return read_epochs(path, preload=preload)
    except (OSError, ValueError, RuntimeError) as err:  # damaged: rebuild it
        logger.warning("Ignoring the unreadable cache file %s (%s).", path, err)
        return None


def _save_parts(epochs: mne.BaseEpochs, fname: Path) -> None:
    """Save in float64, in parts of SPLIT_SIZE or 1/90 of the epochs (MNE: <= 100)."""
    n_bytes = len(epochs.events) * len(epochs.ch_names) * len(epochs.times) * 8
    split = max(SPLIT_SIZE, -(-n_bytes // 90))
    epochs.save(fname, fmt="double", split_size=split, verbose=False)


def save_epochs(epochs: mne.BaseEpochs, fname: str | os.PathLike) -> None:
    """Save epochs in float64, in split parts for large ones, atomically.

    Everything is written in a temporary folder beside ``fname``; the parts
    (``-epo-1.fif``..., which MNE finds by name in the same folder) are moved
    into place first and the main file last, so that a crash never leaves a
    main file without its parts. Lazy epochs are read one part at a time.

    Parameters
    ----------
    epochs : mne.Epochs
        The epochs, preloaded or not.
    fname : path-like
        The file, ending in ``-epo.fif``.
    """
    fname = Path(fname)
    fname.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".", dir=fname.parent) as tmp:
        _save_parts(epochs, Path(tmp) / fname.name)
        for part in sorted(Path(tmp).iterdir()):
            if part.name != fname.name:
                os.replace(part, fname.parent / part.name)
        os.replace(Path(tmp) / fname.name, fname)


def write_cached(epochs: mne.Epochs, name: str, key: str, cache_dir=None) -> Path:
    """Write ``epochs`` (float64, exactly) to the cache, atomically.

    ``epochs`` may be lazy (``preload=False``): MNE then reads one split part
    (:data:`SPLIT_SIZE`, or 1/90 of the study) at a time while writing.
    """
    path = cache_path(name, key, cache_dir)
    if path.parent.exists():  # a damaged entry (read_cached failed on it)
        _remove_entry(path.parent, path.parent.parent)
    with atomic_dir(path.parent) as tmp:
        _save_parts(epochs, tmp / path.name)
    logger.info("Cached the epochs in %s", path)
    return path
