"""Per-subject alignment of EEG: Euclidean alignment and per-subject standardization.

Decoders that must generalize to subjects they never saw suffer from each
subject's own spatial covariance (head shape, impedances, montage placement).
Two unsupervised remedies, each computed from a subject's *own unlabeled*
epochs:

- **Euclidean alignment** (He & Wu, 2019): each epoch ``X`` (channels x
  times) of subject ``s`` becomes ``R_s X`` with ``R_s = Rbar_s^{-1/2}``, the
  inverse square root of the subject's mean spatial covariance
  ``Rbar_s = mean_i X_i X_i^T / n_times`` (not centred, as in the paper: the
  epochs are band-passed). The aligned epochs of every subject then have the
  identity as their mean covariance. ``R_s`` is symmetric, so aligned
  channels stay closest to their electrodes; eigenvalues below ``1e-10``
  times the largest (a rank-deficient montage, e.g. average reference) are
  raised to that floor.
- **Standardization**: each channel z-scored with the subject's own mean and
  standard deviation over its epochs and times.

Both are affine maps ``x -> M_s (x - m_s)``, applied by
:class:`SubjectAlignment`, a fixed (untrained) linear layer put in front of a
network, so that gradients flow back through it and maps stay per electrode,
in µV.

The alignment of a test subject is computed from that subject's epochs, all
of them, without labels: it is *transductive* for the test subject (the
decoder sees the test subject's unlabeled data before predicting it), as in
He & Wu (2019).

References
----------
.. [1] He H, Wu D (2019). Transfer learning for brain-computer interfaces: a
   Euclidean space data alignment approach. IEEE Trans Biomed Eng 67(2),
   399-410.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from eegsal._check import check_option
from eegsal.data.reader import channel_moments, read_rows

__all__ = ["ALIGNMENTS", "SubjectAlignment", "align", "fit_alignment"]

ALIGNMENTS = ("euclidean", "standardize")

#: Eigenvalues of a subject's mean covariance are floored at this share of the largest.
EIG_FLOOR = 1e-10


def _mean_covariance(source, rows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Mean of ``X X^T / n_times`` over the epochs ``rows`` (float64)."""
    total = 0.0
    for start in range(0, len(rows), batch_size):
        x = read_rows(source, rows[start : start + batch_size]).astype(np.float64)
        total = total + np.einsum("ect,edt->cd", x, x) / x.shape[2]
    return total / len(rows)


def inverse_sqrtm(cov: np.ndarray) -> np.ndarray:
    """Symmetric inverse square root of a covariance matrix, shape (C, C).

    Parameters
    ----------
    cov : ndarray, shape (n_channels, n_channels)
        Symmetric positive semi-definite matrix.

    Returns
    -------
    root : ndarray, shape (n_channels, n_channels)
        ``V diag(lambda^-1/2) V^T``, eigenvalues floored at ``EIG_FLOOR``
        times the largest.
    """
    lam, vec = np.linalg.eigh((cov + cov.T) / 2)
    lam = np.maximum(lam, EIG_FLOOR * max(lam.max(), np.finfo(float).tiny))
    return (vec / np.sqrt(lam)) @ vec.T


def fit_alignment(
    source, groups: np.ndarray, kind: str, *, batch_size: int = 256
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Compute each group's (subject's) alignment from its own unlabeled epochs.

    Parameters
    ----------
    source : ndarray | EpochsReader
        Epochs in µV, shape (n_epochs, n_channels, n_times).
    groups : array-like, shape (n_epochs,)
        Subject of each epoch.
    kind : str
        ``'euclidean'`` (He & Wu, 2019) or ``'standardize'``.
    batch_size : int
        Epochs read at a time.

    Returns
    -------
    alignment : dict
        ``{str(subject): (matrix, offset)}``: ``matrix`` of shape
        (n_channels, n_channels) and ``offset`` of shape (n_channels,) in µV
        (float64), so that the aligned epoch is ``matrix @ (x - offset[:, None])``.
        For ``'euclidean'`` the offset is zero and the matrix unitless;
        for ``'standardize'`` the matrix is ``diag(1 / std)`` (1/µV).
    """
    check_option("align", kind, ALIGNMENTS)
    groups = np.asarray(groups).astype(str)
    out = {}
    for subject in np.unique(groups):
        rows = np.flatnonzero(groups == subject)
        if kind == "euclidean":
            matrix = inverse_sqrtm(_mean_covariance(source, rows, batch_size))
            offset = np.zeros(matrix.shape[0])
        else:
            offset, std = channel_moments(source, rows, batch_size=batch_size)
            matrix = np.diag(1.0 / np.maximum(std, 1e-12))
        out[str(subject)] = (matrix, np.asarray(offset, np.float64))
    return out


def align(x: np.ndarray, groups: np.ndarray, alignment: dict[str, tuple]) -> np.ndarray:
    """Apply each epoch's subject alignment: ``M_s @ (x - m_s)``.

    Parameters
    ----------
    x : ndarray, shape (n_epochs, n_channels, n_times)
        Epochs in µV.
    groups : array-like, shape (n_epochs,)
        Subject of each epoch (keys of ``alignment``).
    alignment : dict
        As returned by :func:`fit_alignment`.

    Returns
    -------
    aligned : ndarray, shape (n_epochs, n_channels, n_times)
        float32.
    """
    groups = np.asarray(groups).astype(str)
    out = np.empty(x.shape, np.float32)
    for subject in np.unique(groups):
        sel = groups == subject
        matrix, offset = alignment[subject]
        out[sel] = np.einsum("cd,edt->ect", matrix, x[sel] - offset[:, None])
    return out


class AlignedSource:
    """Epochs read from ``source`` and aligned per subject on the fly.

    Parameters
    ----------
    source : ndarray | EpochsReader
        Epochs in µV.
    groups : array-like, shape (n_epochs,)
        Subject of each epoch of ``source``.
    alignment : dict
        As returned by :func:`fit_alignment`.
    """

    def __init__(self, source, groups, alignment: dict):
        self.source = source
        self.groups = np.asarray(groups).astype(str)
        self.alignment = alignment
        self.shape = tuple(source.shape)

    def __len__(self) -> int:  # noqa: D105
        return len(self.source)

    def __getitem__(self, rows) -> np.ndarray:
        """Aligned epochs ``rows`` (indices), float32."""
        rows = np.atleast_1d(np.arange(len(self))[rows])
        return align(read_rows(self.source, rows), self.groups[rows], self.alignment)


class SubjectAlignment(nn.Module):
    """A fixed affine layer ``x -> M (x - m)``: one subject's alignment.

    Put in front of a network trained on aligned epochs, it makes the whole
    model take the subject's epochs in µV, electrode by electrode, so that
    gradients (and every map) are per electrode and per µV.

    Parameters
    ----------
    matrix : array-like, shape (n_channels, n_channels)
        ``M``.
    offset : array-like, shape (n_channels,)
        ``m`` (µV).
    """

    def __init__(self, matrix, offset):
        super().__init__()
        self.register_buffer("matrix", torch.as_tensor(matrix, dtype=torch.float32))
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.matrix @ (x - self.offset[:, None])

    def input_mean(self, aligned_mean: np.ndarray) -> np.ndarray:
        """Return the µV input whose alignment is ``aligned_mean``, shape (n_channels,).

        Parameters
        ----------
        aligned_mean : ndarray, shape (n_channels,)
            A point in the aligned space.

        Returns
        -------
        mean : ndarray, shape (n_channels,)
            ``m + M^-1 aligned_mean`` (µV).
        """
        matrix = self.matrix.detach().cpu().double().numpy()
        offset = self.offset.detach().cpu().double().numpy()
        return offset + np.linalg.solve(matrix, np.asarray(aligned_mean, np.float64))
