"""The Attributions container: epochs x channels x times, with metadata."""

from __future__ import annotations

import copy as _copy
from collections.abc import Iterator

import mne
import numpy as np
import pandas as pd

from eegsal._check import picks_to_idx, time_mask
from eegsal._evoked import MapEvoked

__all__ = ["Attributions"]


class Attributions:
    """Per-epoch attribution maps with the channel info, times and metadata.

    Parameters
    ----------
    data : ndarray | h5py.Dataset, shape (n_epochs, n_channels, n_times)
        Attribution values (a.u.); an HDF5 dataset keeps them on disk (see
        :func:`eegsal.read_attributions` with ``preload=False``).
    info : mne.Info
        Channel information (positions for topographic maps).
    times : ndarray, shape (n_times,)
        Time points (s); for spectral maps (``domain='frequency'`` in
        ``params``), the frequencies (Hz), also available as ``freqs``.
    metadata : pandas.DataFrame | None
        One row per epoch.
    method : str
        Attribution method.
    target : str
        What was explained (``'logit'``, ``'probability'``...).
    sign : str
        ``'signed'`` or ``'absolute'``.
    **params
        Further settings to record (label, n_steps, layer...).
    """

    def __init__(
        self,
        data: np.ndarray,
        info: mne.Info,
        times: np.ndarray,
        *,
        metadata: pd.DataFrame | None = None,
        method: str,
        target: str,
        sign: str = "signed",
        **params,
    ):
        if not _is_lazy(data):
            data = np.asarray(data, dtype=np.float32)
        # time-only maps (Grad-CAM after spatial mixing) have one row, no electrodes
        n_rows = len(info["ch_names"]) if params.get("spatially_resolved", True) else 1
        if data.ndim != 3 or data.shape[1:] != (n_rows, len(times)):
            raise ValueError(
                f"data must have shape (n_epochs, {n_rows}, {len(times)}), "
                f"got {data.shape}."
            )
        if metadata is not None and len(metadata) != len(data):
            raise ValueError(
                f"metadata has {len(metadata)} rows for {len(data)} epochs."
            )
        self.data, self.info, self.times = data, info, np.asarray(times)
        self.metadata, self.method, self.target, self.sign = (
            metadata,
            method,
            target,
            sign,
        )
        self.params = params

    @property
    def domain(self) -> str:
        """``'time'`` (channels x times) or ``'frequency'`` (channels x freqs)."""
        return self.params.get("domain", "time")

    @property
    def freqs(self) -> np.ndarray:
        """Frequencies (Hz) of a spectral map (its second axis)."""
        if self.domain != "frequency":
            raise AttributeError("these maps are over time; see .times.")
        return self.times

    def __repr__(self) -> str:
        n, c, t = self.data.shape
        axis, unit = ("freqs", "Hz") if self.domain == "frequency" else ("times", "s")
        return (
            f"<Attributions | {self.method} → {self.target} ({self.sign}), "
            f"{n} epochs × {c} ch × {t} {axis}, "
            f"{self.times[0]:g} – {self.times[-1]:g} {unit}, "
            f"~{self.data.nbytes / 2**20:.1f} MiB>"
        )

    def __len__(self) -> int:
        return len(self.data)

    @property
    def preload(self) -> bool:
        """Whether the maps are in memory (False: read from HDF5 on demand)."""
        return not _is_lazy(self.data)

    def load_data(self) -> Attributions:
        """Read lazily stored maps into memory (in place).

        Returns
        -------
        self : Attributions
            The attributions, now in memory.
        """
        if not self.preload:
            self.data = self.data[()]
        return self

    def iter_blocks(self, idx=None, block_size: int = 256):
        """Yield ``(start, maps)`` over blocks of epochs, reading lazily stored data.

        Parameters
        ----------
        idx : array-like of int | None
            Sorted epoch indices to visit; None visits all.
        block_size : int
            Epochs per block.

        Yields
        ------
        start : int
            Position of the block's first epoch in ``idx``.
        maps : ndarray, shape (n_block, n_rows, n_times)
            The block's maps, in memory.
        """
        idx = np.arange(len(self)) if idx is None else np.asarray(idx)
        for start in range(0, len(idx), block_size):
            sel = idx[start : start + block_size]
            if self.preload:
                yield start, self.data[sel]
            elif len(sel) and sel[-1] - sel[0] == len(sel) - 1:  # contiguous
                yield start, self.data[sel[0] : sel[-1] + 1]
            else:
                yield start, self.data[sel]

    @property
    def ch_names(self) -> list[str]:
        """Channel names."""
        return list(self.info["ch_names"])

    def _epoch_idx(self, item) -> np.ndarray:
        """Return the indices of the epochs ``item`` selects (see __getitem__)."""
        if isinstance(item, str):
            if self.metadata is None:
                raise ValueError("selecting by query needs metadata.")
            # as mne.Epochs does: pandas' query, by the Python engine
            meta = self.metadata.reset_index(drop=True)
            return meta.query(item, engine="python").index.to_numpy()
        return np.atleast_1d(np.arange(len(self))[item])

    def __getitem__(self, item) -> Attributions:
        """Select epochs, as :class:`mne.Epochs` does.

        Parameters
        ----------
        item : int | slice | array-like of int or bool | str
            Epoch indices, a boolean mask, or a query on the metadata
            (``attr["stage == 'REM' and content == 'flying'"]``).

        Returns
        -------
        attr : Attributions
            The selected epochs (an integer selects one, kept as an epoch axis
            of length 1); the metadata rows renumbered from 0.
        """
        idx = self._epoch_idx(item)
        if self.preload:
            data = self.data[idx]
        else:  # HDF5 reads sorted, unique indices; put the order back after
            uniq, inverse = np.unique(idx, return_inverse=True)
            data = self.data[uniq][inverse] if len(uniq) else self.data[:0]
        meta = (
            None
            if self.metadata is None
            else self.metadata.iloc[idx].reset_index(drop=True)
        )
        return Attributions(
            data,
            self.info,
            self.times,
            metadata=meta,
            method=self.method,
            target=self.target,
            sign=self.sign,
            **self.params,
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        """Iterate over epochs, as over :class:`mne.Epochs`: one map at a time.

        Yields
        ------
        data : ndarray, shape (n_rows, n_times)
            One epoch's map (read block by block when stored on disk).
        """
        for _, block in self.iter_blocks():
            yield from block

    def copy(self) -> Attributions:
        """Return a copy (maps, info, metadata and settings are not shared).

        Maps stored on disk (``preload=False``) stay there: the copy reads the
        same file, and ``pick``/``crop`` read what they keep into memory.

        Returns
        -------
        attr : Attributions
            The copy.
        """
        data = self.data if _is_lazy(self.data) else self.data.copy()
        return Attributions(
            data,
            self.info.copy(),
            self.times.copy(),
            metadata=None if self.metadata is None else self.metadata.copy(),
            method=self.method,
            target=self.target,
            sign=self.sign,
            **_copy.deepcopy(self.params),
        )

    def _check_spatial(self, what: str) -> None:
        if not self.params.get("spatially_resolved", True):
            raise ValueError(
                f"{what}: these {self.method} maps are time-only (one row, no "
                "electrode axis); there are no channels to pick."
            )

    def _time_idx(self, tmin, tmax, include_tmax: bool = True) -> np.ndarray:
        if self.domain != "time" and (tmin is not None or tmax is not None):
            raise ValueError(
                "tmin/tmax select times, but these maps are over frequencies "
                "(Hz, see .freqs); select frequencies with a mask on .freqs."
            )
        mask = time_mask(self.times, tmin, tmax, sfreq=self.info["sfreq"],
                         include_tmax=include_tmax)  # fmt: skip
        return np.flatnonzero(mask)

    def _read(self, rows=None, cols=None) -> np.ndarray:
        """Return every epoch's ``rows`` x ``cols``, in memory (a copy).

        Maps on disk are read once, over the span of ``rows`` and ``cols``.
        """
        rows = np.arange(self.data.shape[1]) if rows is None else np.asarray(rows)
        cols = np.arange(self.data.shape[2]) if cols is None else np.asarray(cols)
        if self.preload:
            return self.data[:, rows][:, :, cols]
        if not rows.size or not cols.size:
            return np.zeros((len(self), rows.size, cols.size), np.float32)
        r0, c0 = rows.min(), cols.min()
        span = self.data[:, r0 : rows.max() + 1, c0 : cols.max() + 1]
        return span[:, rows - r0][:, :, cols - c0]

    def get_data(
        self,
        picks=None,
        item=None,
        tmin: float | None = None,
        tmax: float | None = None,
    ) -> np.ndarray:
        """Get the maps as an array, as :meth:`mne.Epochs.get_data` does epochs.

        Parameters
        ----------
        picks : str | array-like of str or int | slice | None
            Channels: names, indices or types, as in MNE; None: all.
        item : int | slice | array-like | str | None
            Epochs, as for :meth:`__getitem__` (a metadata query string too);
            None: all.
        tmin, tmax : float | None
            Times (s) of the first sample and of the sample after the last,
            as in :meth:`mne.Epochs.get_data` (``tmax`` excluded, unlike
            :meth:`crop`); None: the ends.

        Returns
        -------
        data : ndarray, shape (n_epochs, n_channels, n_times)
            A copy of the selected values (a.u.).

        Examples
        --------
        >>> attr.get_data(picks=["O1", "O2"], item="stage == 'REM'")  # doctest: +SKIP
        """
        rows = None
        if picks is not None:
            self._check_spatial("picks")
            rows = picks_to_idx(self.info, picks, none="all", exclude=())
        self._time_idx(tmin, tmax)  # a clear error for maps over frequencies
        # sample indices as mne.Epochs.get_data computes them (time_as_index)
        sfreq, t0 = self.info["sfreq"], self.times[0]
        start = 0 if tmin is None else int((tmin - t0) * sfreq)
        stop = len(self.times) if tmax is None else int((tmax - t0) * sfreq)
        cols = np.arange(len(self.times))[start:stop]
        return (self if item is None else self[item])._read(rows, cols)

    def pick(self, picks, exclude=()) -> Attributions:
        """Keep only some channels (in place), as :meth:`mne.Epochs.pick`.

        Parameters
        ----------
        picks : str | array-like of str or int | slice
            Channels: names, indices or types, as in MNE.
        exclude : str | list of str
            Channels to leave out (``'bads'``: those in ``info['bads']``).

        Returns
        -------
        self : Attributions
            The attributions, modified in place.
        """
        self._check_spatial("pick")
        rows = picks_to_idx(self.info, picks, none="all", exclude=exclude,
                            allow_empty=False)  # fmt: skip
        self.data = self._read(rows=rows)
        self.info = mne.pick_info(self.info, rows)
        return self

    def crop(
        self,
        tmin: float | None = None,
        tmax: float | None = None,
        include_tmax: bool = True,
    ) -> Attributions:
        """Keep only a time window (in place), as :meth:`mne.Epochs.crop`.

        Parameters
        ----------
        tmin, tmax : float | None
            First and last time (s) to keep; None: the ends.
        include_tmax : bool
            Keep the sample at ``tmax``.

        Returns
        -------
        self : Attributions
            The attributions, modified in place.
        """
        cols = self._time_idx(tmin, tmax, include_tmax)
        self.data = self._read(cols=cols)
        self.times = self.times[cols]
        return self

    def average(
        self, by: str | list[str] | None = None, *, absolute: bool = False
    ) -> mne.EvokedArray | dict[str, mne.EvokedArray]:
        """Average over epochs, overall or per value of a metadata column.

        Parameters
        ----------
        by : str | list of str | None
            Metadata column, or columns (one average per combination, keyed
            ``'N2 / flying'``); None averages all epochs.
        absolute : bool
            Average the absolute values (magnitude of the attribution, whatever
            its sign).

        Returns
        -------
        evoked : mne.EvokedArray | dict of str to mne.EvokedArray
            The average (``nave`` epochs), or one per value of ``by``. MNE's
            plots of it show the values as they are, in "a.u.", not µV.
        """
        if by is None:
            return self._evoked(np.arange(len(self)), "all", absolute)
        columns = [by] if isinstance(by, str) else list(by)
        if self.metadata is None or not set(columns) <= set(self.metadata):
            cols = None if self.metadata is None else list(self.metadata.columns)
            raise ValueError(f"by={by!r} is not a metadata column; available: {cols}.")
        groups = self.metadata.groupby(columns, sort=True).indices
        out = {}
        for key, idx in groups.items():
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{c}={v}" for c, v in zip(columns, key, strict=True))
            out[" / ".join(map(str, key))] = self._evoked(idx, label, absolute)
        return out

    def _evoked(self, idx, label, absolute):
        total = np.zeros(self.data.shape[1:], np.float64)
        for _, block in self.iter_blocks(np.sort(idx)):
            total += (np.abs(block) if absolute else block).sum(
                axis=0, dtype=np.float64
            )
        values = (total / max(len(idx), 1)).astype(np.float32)
        comment = (
            f"{self.method} | {'|' if absolute else ''}{label}{'|' if absolute else ''}"
        )
        info = self.info
        if not self.params.get("spatially_resolved", True):
            info = mne.create_info(
                [f"{self.method} (time only)"], info["sfreq"], "misc"
            )
        return MapEvoked(
            values,
            info,
            tmin=self.times[0],
            nave=len(idx),
            comment=comment,
            unit="a.u.",
            verbose=False,
        )

    def to_evoked(self, *, absolute: bool = False) -> mne.EvokedArray:
        """Average of all epochs as an :class:`mne.EvokedArray`.

        Parameters
        ----------
        absolute : bool
            Average absolute values.

        Returns
        -------
        evoked : mne.EvokedArray
            The average; ``evoked.plot()``, ``plot_topomap`` and ``plot_joint``
            show the values as they are, in "a.u." (not µV).

        Examples
        --------
        >>> evoked = attr.to_evoked()  # doctest: +SKIP
        >>> evoked.plot_joint()  # doctest: +SKIP
        """
        return self.average(absolute=absolute)

    def to_data_frame(self) -> pd.DataFrame:
        """Long-form table: one row per epoch x channel x time, with metadata.

        Returns
        -------
        df : pandas.DataFrame
            Columns ``epoch, channel, time, value`` and the metadata columns.
        """
        n, c, t = self.data.shape
        names = self.ch_names if c == len(self.ch_names) else [f"{self.method} (time)"]
        df = pd.DataFrame(
            {
                "epoch": np.repeat(np.arange(n), c * t),
                "channel": np.tile(np.repeat(names, t), n),
                "time": np.tile(self.times, n * c),
                "value": np.asarray(self.data).ravel(),
            }
        )
        if self.metadata is not None:
            df = df.join(self.metadata.reset_index(drop=True), on="epoch")
        return df

    def save(self, fname, *, overwrite: bool = False) -> None:
        """Write to HDF5 (chunked per epoch, atomic); see :func:`read_attributions`.

        Parameters
        ----------
        fname : path-like
            Output file (``.h5``).
        overwrite : bool
            Replace an existing file.
        """
        from eegsal.attribution.io import save_attributions

        save_attributions(self, fname, overwrite=overwrite)

    def plot_image(
        self, *, by: str | list[str] | None = None, absolute: bool = False, **kwargs
    ):
        """Plot the mean attribution as a channels x time image.

        Parameters
        ----------
        by : str | list of str | None
            Metadata column (or columns): one panel per value (combination).
        absolute : bool
            Average absolute values.
        **kwargs
            Passed to :func:`eegsal.viz.plot_image` (``mask``, ``cmap``, ``title``).

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        """
        from eegsal.viz import plot_image

        return plot_image(self, by=by, absolute=absolute, **kwargs)

    def plot_topomap(
        self,
        times,
        *,
        by: str | list[str] | None = None,
        absolute: bool = True,
        **kwargs,
    ):
        """Topographic maps of the average attribution at ``times``.

        Parameters
        ----------
        times : array-like of float
            Times (s) of the maps.
        by : str | list of str | None
            Metadata column (or columns): one row of maps per value (combination).
        absolute : bool
            Map the mean absolute attribution.
        **kwargs
            Passed to :func:`eegsal.viz.plot_topomap`.

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        """
        from eegsal.viz import plot_topomap

        return plot_topomap(self, times, by=by, absolute=absolute, **kwargs)


def _is_lazy(data) -> bool:
    import h5py

    return isinstance(data, h5py.Dataset)
