"""Atomic file writes: a crash never leaves a half-written file that looks whole."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
