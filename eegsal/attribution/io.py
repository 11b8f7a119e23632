"""Attributions in HDF5: chunked per epoch, with info, times, metadata and settings.

Files are written whole (:func:`save_attributions`) or batch by batch while
they are computed (:class:`AttributionsWriter`), and read into memory or
lazily (:func:`read_attributions` with ``preload=False``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import h5py
import mne
import numpy as np
import pandas as pd

from eegsal._io import atomic_path, check_fname

__all__ = ["AttributionsWriter", "read_attributions", "save_attributions"]

_FORMAT = "eegsal-attributions"
_VERSION = 1


def _info_to_bytes(info: mne.Info) -> bytes:
    """Serialize ``info`` exactly, as MNE's own FIF (no pickle)."""
    with tempfile.TemporaryDirectory() as tmp:
        fname = Path(tmp) / "info-info.fif"
        mne.io.write_info(fname, info)
        return fname.read_bytes()


def _info_from_bytes(blob: bytes) -> mne.Info:
    with tempfile.TemporaryDirectory() as tmp:
        fname = Path(tmp) / "info-info.fif"
        fname.write_bytes(blob)
        return mne.io.read_info(fname, verbose=False)


def _create_data(f: h5py.File, shape: tuple[int, int, int], data=None):
    n, c, t = shape
    chunks = (1, c, t) if n else None
    return f.create_dataset("data", shape=shape, dtype="f4", data=data, chunks=chunks)


def _write_header(f, *, info, times, metadata, method, target, sign, params):
    f.attrs["format"] = _FORMAT
    f.attrs["version"] = _VERSION
    f.create_dataset("times", data=times)
    f.create_dataset("info", data=np.void(_info_to_bytes(info)))
    settings = dict(method=method, target=target, sign=sign)
    f.attrs["settings"] = json.dumps(settings)
    f.attrs["params"] = json.dumps(params, default=str)
    if metadata is not None:
        f.attrs["metadata"] = metadata.to_json(orient="table", index=False)


def save_attributions(
    attr, fname: str | os.PathLike, *, overwrite: bool = False
) -> None:
    """Write attributions to an HDF5 file (atomically).

    Parameters
    ----------
    attr : Attributions
        The attributions.
    fname : path-like
        Output file (``.h5``).
    overwrite : bool
        Replace an existing file.
    """
    fname = check_fname(fname, overwrite)
    with atomic_path(fname) as tmp, h5py.File(tmp, "w") as f:
        dset = _create_data(f, attr.data.shape)
        for start, block in attr.iter_blocks():  # bounded memory for lazy data
            dset[start : start + len(block)] = block
        _write_header(
            f,
            info=attr.info,
            times=attr.times,
            metadata=attr.metadata,
            method=attr.method,
            target=attr.target,
            sign=attr.sign,
            params=attr.params,
        )


class AttributionsWriter:
    """Write attribution maps to HDF5 batch by batch, as they are computed.

    The file is built under a temporary name beside ``fname`` and renamed
    when :meth:`finish` is called, so an interrupted run leaves no file that
    looks complete.

    Parameters
    ----------
    fname : path-like
        Output file (``.h5``).
    shape : tuple of int
        (n_epochs, n_rows, n_times) of the whole map.
    overwrite : bool
        Replace an existing file.
    """

    def __init__(self, fname, shape, overwrite: bool = False):
        self.fname = check_fname(fname, overwrite)
        self.shape = tuple(int(s) for s in shape)
        self._ctx = None
        self._file = None

    def __enter__(self) -> AttributionsWriter:
        self._ctx = atomic_path(self.fname)
        tmp = self._ctx.__enter__()
        self._file = h5py.File(tmp, "w")
        self._dset = _create_data(self._file, self.shape)
        return self

    def write(self, idx: np.ndarray, values: np.ndarray) -> None:
        """Store ``values`` (len(idx), n_rows, n_times) at epochs ``idx`` (sorted)."""
        self._dset[np.asarray(idx)] = values

    def finish(self, *, metadata, **header):
        """Write the header, then return the lazily read attributions.

        Returns
        -------
        attr : Attributions
            Backed by the file; see :func:`read_attributions`.
        """
        _write_header(self._file, metadata=metadata, **header)
        self._file.close()
        self._ctx.__exit__(None, None, None)  # the rename
        self._ctx = None
        return read_attributions(self.fname, preload=False)

    def __exit__(self, exc_type, exc, tb):
        if self._ctx is not None:  # failed before finish(): remove the temp file
            self._file.close()
            err = exc or RuntimeError("closed before finish()")
            with contextlib.suppress(BaseException):
                self._ctx.__exit__(type(err), err, tb)
        return False


def read_attributions(fname: str | os.PathLike, *, preload: bool = True):
    """Read attributions written by :meth:`Attributions.save`.

    Parameters
    ----------
    fname : path-like
        The HDF5 file.
    preload : bool
        Read the maps into memory. With False the data stay in the file
        (``attr.data`` is an :class:`h5py.Dataset`): averages and saving
        stream over blocks of epochs, indexing reads only the selected
        epochs, and :meth:`Attributions.load_data` reads them all.

    Returns
    -------
    attr : Attributions
        The attributions, identical to those saved.
    """
    from eegsal.attribution.container import Attributions

    fname = Path(fname)
    if not fname.exists():
        raise FileNotFoundError(f"{fname} does not exist.")
    f = h5py.File(fname, "r")
    try:
        if f.attrs.get("format") != _FORMAT:
            raise ValueError(f"{fname} is not an eegsal attributions file.")
        data = f["data"][()] if preload else f["data"]
        times = f["times"][()]
        info = _info_from_bytes(f["info"][()].tobytes())
        settings = json.loads(f.attrs["settings"])
        params = json.loads(f.attrs["params"])
        meta = f.attrs.get("metadata")
    except BaseException:
        f.close()
        raise
    if preload:
        f.close()
    metadata = None if meta is None else pd.read_json(io.StringIO(meta), orient="table")
    return Attributions(data, info, times, metadata=metadata, **settings, **params)
