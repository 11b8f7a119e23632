"""Attributions in HDF5: chunked per epoch, with info, times, metadata and settings."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import h5py
import mne
import numpy as np
import pandas as pd

from eegsal._io import atomic_path

__all__ = ["read_attributions", "save_attributions"]

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
    fname = Path(fname)
    if fname.exists() and not overwrite:
        raise FileExistsError(f"{fname} exists; pass overwrite=True to replace it.")
    n, c, t = attr.data.shape
    with atomic_path(fname) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = _FORMAT
        f.attrs["version"] = _VERSION
        f.create_dataset("data", data=attr.data, chunks=(1, c, t) if n else None)
        f.create_dataset("times", data=attr.times)
        f.create_dataset("info", data=np.void(_info_to_bytes(attr.info)))
        settings = dict(method=attr.method, target=attr.target, sign=attr.sign)
        f.attrs["settings"] = json.dumps(settings)
        f.attrs["params"] = json.dumps(attr.params, default=str)
        if attr.metadata is not None:
            f.attrs["metadata"] = attr.metadata.to_json(orient="table", index=False)


def read_attributions(fname: str | os.PathLike):
    """Read attributions written by :meth:`Attributions.save`.

    Parameters
    ----------
    fname : path-like
        The HDF5 file.

    Returns
    -------
    attr : Attributions
        The attributions, identical to those saved.
    """
    from eegsal.attribution.container import Attributions

    fname = Path(fname)
    if not fname.exists():
        raise FileNotFoundError(f"{fname} does not exist.")
    with h5py.File(fname, "r") as f:
        if f.attrs.get("format") != _FORMAT:
            raise ValueError(f"{fname} is not an eegsal attributions file.")
        data = f["data"][()]
        times = f["times"][()]
        info = _info_from_bytes(f["info"][()].tobytes())
        settings = json.loads(f.attrs["settings"])
        params = json.loads(f.attrs["params"])
        meta = f.attrs.get("metadata")
    metadata = None if meta is None else pd.read_json(io.StringIO(meta), orient="table")
    return Attributions(data, info, times, metadata=metadata, **settings, **params)
