"""Epochs read batch by batch, so that decoders train on studies larger than memory.

:class:`EpochsReader` gives the EEG data of an :class:`mne.Epochs` in µV,
reading only the epochs asked for: on epochs read with ``preload=False`` each
access reads them from disk, so training and prediction hold one batch at a
time. Arrays pass through the same functions, so that a decoder sees the same
numbers whichever way its data came.
"""

from __future__ import annotations

import mne
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from eegsal.data.cache import read_epochs

__all__ = ["EpochsReader", "channel_moments", "take"]


class EpochsReader:
    """The EEG data of epochs in µV (float32), read only where indexed.

    Parameters
    ----------
    epochs : mne.Epochs
        Preloaded or not; with ``preload=False`` nothing is read until indexed.
    picks : str | list
        Channels, as in :meth:`mne.Epochs.get_data`.

    Attributes
    ----------
    shape : tuple of int
        (n_epochs, n_channels, n_times).

    Notes
    -----
    A reader pickles (to reach joblib's worker processes) with its epochs'
    file name and rows when they are read lazily; each worker opens the file.

    Examples
    --------
    >>> epochs = mne.read_epochs("study-epo.fif", preload=False)  # doctest: +SKIP
    >>> X = EpochsReader(epochs)  # doctest: +SKIP
    >>> X[[0, 5, 9]].shape  # reads three epochs  # doctest: +SKIP
    (3, 19, 400)
    """

    def __init__(self, epochs: mne.BaseEpochs, picks: str | list = "eeg"):
        if not epochs.preload:  # its length is known once MNE checked each epoch
            epochs.drop_bad(verbose=False)
        self.epochs = epochs
        self.picks = picks
        first = self[[0]] if len(epochs) else np.empty((0, 0, len(epochs.times)))
        self.shape = (len(epochs), first.shape[1], first.shape[2])

    def __len__(self) -> int:  # noqa: D105
        return len(self.epochs)

    def __repr__(self) -> str:  # noqa: D105
        where = "in memory" if self.epochs.preload else "read from disk"
        return f"<EpochsReader | {' x '.join(map(str, self.shape))}, {where}>"

    def __getstate__(self) -> dict:
        """Epochs read lazily travel by their file (open files do not pickle)."""
        state = dict(self.__dict__)
        if self.epochs.preload:
            return state
        fname = getattr(self.epochs, "filename", None)
        if fname is None:
            raise ValueError(
                "epochs read lazily from a Raw cannot be sent to worker processes; "
                "save them (epochs.save) and read them back with preload=False, "
                "load them (epochs.load_data()), or use n_jobs=1."
            )
        fresh = read_epochs(fname, preload=False)
        rows = np.searchsorted(fresh.selection, self.epochs.selection)
        if not np.array_equal(fresh.selection[rows], self.epochs.selection) or not (
            np.array_equal(fresh.times, self.epochs.times)
            and fresh.ch_names == self.epochs.ch_names
            and fresh.baseline == self.epochs.baseline
        ):
            raise ValueError(
                f"these epochs differ from those in {fname} (changed after "
                "reading); load them (epochs.load_data()) or use n_jobs=1."
            )
        state["epochs"] = (str(fname), rows)
        return state

    def __setstate__(self, state: dict) -> None:  # noqa: D105
        if isinstance(state["epochs"], tuple):
            fname, rows = state["epochs"]
            state["epochs"] = read_epochs(fname, preload=False)[rows]
        self.__dict__.update(state)

    def __getitem__(self, item) -> np.ndarray:
        """Epochs ``item`` (indices, in that order) as float32 µV."""
        item = np.atleast_1d(np.arange(len(self))[item])
        data = self.epochs.get_data(
            picks=self.picks, item=item, units="uV", verbose=False
        )
        return np.asarray(data, dtype=np.float32)


def take(source, rows: np.ndarray):
    """Epochs ``rows`` of ``source``: an array, or a reader that reads them later."""
    if isinstance(source, EpochsReader):
        return EpochsReader(source.epochs[np.asarray(rows)], source.picks)
    return source[rows]


def read_rows(source, rows: np.ndarray) -> np.ndarray:
    """Epochs ``rows`` of an array or an :class:`EpochsReader`, as float32."""
    return np.asarray(source[rows], dtype=np.float32)


def channel_moments(
    source, rows: np.ndarray | None = None, *, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over epochs and time, batch by batch.

    Batches are merged with Chan et al.'s pairwise update, in float64, so
    the result does not depend on the batch size beyond rounding and holds for
    any number of epochs in bounded memory.

    Parameters
    ----------
    source : ndarray | EpochsReader
        Epochs, shape (n_epochs, n_channels, n_times).
    rows : ndarray of int | None
        The epochs to use; None: all.
    batch_size : int
        Epochs read at a time.

    Returns
    -------
    mean, std : ndarray, shape (n_channels,)
        Mean and (population) standard deviation of each channel.
    """
    rows = np.arange(len(source)) if rows is None else np.asarray(rows)
    n, mean, m2 = 0, 0.0, 0.0
    for start in range(0, len(rows), batch_size):
        x = read_rows(source, rows[start : start + batch_size]).astype(np.float64)
        nb = x.shape[0] * x.shape[2]
        mb = x.mean(axis=(0, 2))
        m2b = ((x - mb[:, None]) ** 2).sum(axis=(0, 2))
        delta = mb - mean
        total = n + nb
        mean = mean + delta * nb / total
        m2 = m2 + m2b + delta**2 * n * nb / total
        n = total
    return np.asarray(mean), np.sqrt(np.asarray(m2) / n)


class BatchDataset(torch.utils.data.Dataset):
    """Whole batches of epochs: ``dataset[positions]`` reads them at once.

    Parameters
    ----------
    source : ndarray | EpochsReader
        Epochs in µV.
    rows : ndarray of int
        The epochs of this dataset, in ``source``.
    y : ndarray of int | None
        Class index of each row; None gives zeros (prediction).
    masks : ndarray | None
        One guidance mask per epoch of ``source`` (see
        :mod:`eegsal.guidance`); batches are then ``{"X", "mask"}`` dicts.
    teacher : ndarray | None
        A teacher's logits, one row (n_classes,) per epoch of ``source``
        (knowledge distillation); batches then hold them under ``"teacher"``.
    teacher_maps : ndarray | None
        A teacher's maps, one per epoch of ``source``; batches then hold them
        under ``"teacher_map"``.
    """

    def __init__(
        self, source, rows, y=None, masks=None, teacher=None, teacher_maps=None
    ):
        self.source = source
        self.rows = np.asarray(rows)
        self.y = np.zeros(len(self.rows), np.int64) if y is None else np.asarray(y)
        self.masks = masks
        self.teacher = teacher
        self.teacher_maps = teacher_maps

    def __len__(self) -> int:  # noqa: D105
        return len(self.rows)

    def __getitem__(self, positions):  # noqa: D105
        rows = self.rows[positions]
        x = torch.from_numpy(read_rows(self.source, rows))
        extra = {"mask": self.masks, "teacher": self.teacher,
                 "teacher_map": self.teacher_maps}  # fmt: skip
        if any(v is not None for v in extra.values()):
            x = {"X": x}
            for key, values in extra.items():
                if values is not None:
                    x[key] = torch.from_numpy(np.ascontiguousarray(values[rows]))
        return x, torch.from_numpy(self.y[positions].astype(np.int64))


class BatchLoader(DataLoader):
    """A DataLoader whose dataset reads each batch in one call (for skorch).

    Draws the same order as ``DataLoader(dataset, batch_size, shuffle)``.
    """

    def __init__(self, dataset, batch_size: int = 64, shuffle: bool = False, **kw):
        sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        batches = BatchSampler(sampler, batch_size, drop_last=False)
        super().__init__(dataset, batch_size=None, sampler=batches, **kw)
