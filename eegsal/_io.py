"""Atomic file writes: a crash never leaves a half-written file that looks whole.

Temporary files and folders are named ``.STEM.XXXXXXXX.tmp-NAME`` and
``.NAME.XXXXXXXX.tmp`` (``XXXXXXXX``: :mod:`tempfile`'s random part), so that
:func:`remove_temporaries` finds those a killed process left, and nothing else.
Written files get the permissions of any new file (``0o666`` less the umask),
not :func:`tempfile.mkstemp`'s private ``0o600``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from eegsal._logging import logger

#: The names of atomic_path's temporary files and atomic_dir's temporary folders.
_TMP_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp-.+")
_TMP_DIR = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def _umask() -> int:
    """Return the process's umask (read without changing it where Linux allows)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same folder (same file system), so the
    final :func:`os.replace` is atomic. On error the temporary file is removed
    and ``path`` is left as it was.

    Parameters
    ----------
    path : path-like
        The file to write.

    Yields
    ------
    tmp : pathlib.Path
        Where to write; its name ends with the name of ``path``, so writers
        that pick a format by extension, or check a naming convention such as
        MNE's ``-epo.fif``, still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp-{path.name}", dir=path.parent
    )
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it, not 0o600
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; rename it onto ``path`` on success.

    For results made of several files that must appear together (e.g. MNE's
    split ``-epo.fif`` parts, which name each other). On error the temporary
    folder is removed. ``path`` must not exist yet.

    Parameters
    ----------
    path : path-like
        The folder to create.

    Yields
    ------
    tmp : pathlib.Path
        The folder to write into.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    )
    tmp.chmod(0o777 & ~_umask())  # as mkdir would create it, not 0o700
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_fname(fname: str | os.PathLike, overwrite: bool) -> Path:
    """Return ``fname`` as a Path; refuse to replace an existing file silently.

    Parameters
    ----------
    fname : path-like
        The file to write.
    overwrite : bool
        Whether replacing an existing file is allowed.

    Returns
    -------
    fname : pathlib.Path
        The path.
    """
    fname = Path(fname)
    if fname.exists() and not overwrite:
        raise FileExistsError(f"{fname} exists; pass overwrite=True to replace it.")
    return fname


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders a killed writer left in ``folder``.

    Only names :func:`atomic_path` and :func:`atomic_dir` make are removed
    (``.STEM.XXXXXXXX.tmp-NAME`` files, ``.NAME.XXXXXXXX.tmp`` folders), and
    the ``.XXXXXXXX`` folders of :func:`eegsal.data.cache.save_epochs` when
    they hold ``.fif`` parts only; links are never followed. Call it only
    while holding the folder's lock (:func:`lock_folder`): a running writer's
    temporaries look the same.

    Parameters
    ----------
    folder : path-like
        The folder, searched with its subfolders.

    Returns
    -------
    removed : list of pathlib.Path
        What was removed.
    """
    removed = []
    for top, dirs, files in os.walk(folder):
        here = Path(top)
        for name in files:
            path = here / name
            if _TMP_FILE.fullmatch(name) and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
        for name in list(dirs):
            path = here / name
            if path.is_symlink():
                continue
            parts = re.fullmatch(r"\.[a-z0-9_]{8}", name) and all(
                p.is_file() and p.name.endswith(".fif") for p in path.iterdir()
            )
            if _TMP_DIR.fullmatch(name) or parts:
                shutil.rmtree(path)
                dirs.remove(name)
                removed.append(path)
    if removed:
        logger.info(
            "Removed %d temporary file(s) an interrupted run left in %s",
            len(removed),
            folder,
        )
    return removed


#: The lock file of an output folder (see :func:`lock_folder`).
LOCK_NAME = ".eegsal.lock"


class FolderInUseError(OSError):
    """Another process holds the lock of an output folder."""


def _owner(lock: Path) -> dict | None:
    """Return the ``{"pid", "host"}`` of a lock file, or None if it holds other."""
    import json

    try:
        owner = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(owner, dict) and isinstance(owner.get("host"), str)
    pid = owner.get("pid") if ok else None
    if isinstance(pid, bool) or not isinstance(pid, int) or pid < 1:
        return None
    return owner


def _alive(pid: int) -> bool:
    """Whether process ``pid`` (> 0) runs on this host."""
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, OSError):
        return False
    return True


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an output folder for one writer; refuse a second one.

    The lock is the file ``FOLDER/.eegsal.lock`` (created exclusively), which
    holds the owner's process id and host name. A lock whose process no
    longer runs on this host (a run that was killed) is taken over with a
    logged warning; a lock of a live process, of another host, or one that
    cannot be read refuses the run. The lock is removed on exit.

    Parameters
    ----------
    folder : path-like
        The folder (created if needed).

    Yields
    ------
    lock : pathlib.Path
        The lock file.
    """
    import json
    import socket

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            owner = _owner(lock)
            if owner is None:
                raise FolderInUseError(
                    f"{folder}: the lock file {lock} does not name its owner; if "
                    "no eegsal run is writing to this folder, delete it."
                ) from None
            stale = owner["host"] == me["host"] and not _alive(owner["pid"])
            if not stale or attempt:
                raise FolderInUseError(
                    f"{folder}: another eegsal run (process {owner['pid']} on "
                    f"{owner['host']}) is writing to this folder; wait for it to "
                    f"end or choose another --out (if that run is gone, delete "
                    f"{lock})."
                ) from None
            logger.warning(
                "Taking over the lock of %s from process %d, which no longer runs "
                "(a killed run).",
                folder,
                owner["pid"],
            )
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield lock
    finally:
        if _owner(lock) == me:
            lock.unlink(missing_ok=True)
