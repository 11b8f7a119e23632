"""The teacher targets of an :class:`~eegsal.decoding.EEGDecoder`'s training epochs.

Knowledge distillation (:class:`eegsal.guidance.Distillation`) trains a
decoder on a teacher's soft targets, and with ``explanation_weight > 0`` on
its maps too. :meth:`EEGDecoder.fit <eegsal.decoding.EEGDecoder.fit>` reads
them here, one row per epoch of ``X``: given as arrays, or computed in-sample
from a teacher model. (:func:`eegsal.decode` instead gives each fold the
out-of-fold targets of a teacher :class:`~eegsal.decoding.DecodingResult`;
see ``eegsal.decoding.cv``.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from eegsal._check import validate_type
from eegsal.data.reader import read_rows
from eegsal.decoding.result import DecodingResult
from eegsal.guidance import Distillation

__all__ = ["teacher_logits", "teacher_maps"]


def _batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Row indices of ``n`` epochs in batches of at most ``batch_size``."""
    return np.array_split(np.arange(n), max(1, -(-n // batch_size)))


def teacher_logits(decoder, X) -> np.ndarray | None:
    """Return the teacher's logits of each epoch of ``X`` (µV), or None.

    Parameters
    ----------
    decoder : EEGDecoder
        The decoder being fitted: its ``distillation``, ``classes_`` (set)
        and ``batch_size``.
    X : EpochsReader | ndarray, shape (n_epochs, n_chans, n_times)
        The training epochs in µV.

    Returns
    -------
    logits : ndarray of float32, shape (n_epochs, n_classes) | None
        The teacher's logits (``Distillation.teacher``, or its model run on
        ``X``); None without a teacher.
    """
    validate_type(decoder.distillation, (Distillation, None), "distillation",
                  "Distillation or None")  # fmt: skip
    teacher = None if decoder.distillation is None else decoder.distillation.teacher
    if teacher is None:
        return None
    decoder.distillation._settings()  # the temperature and the weight
    if isinstance(teacher, DecodingResult):
        raise TypeError(
            "Distillation.teacher of an EEGDecoder takes the teacher's logits "
            "(n_epochs, n_classes) or a model; a DecodingResult goes to "
            "eegsal.decode(..., distillation=Distillation(result)), which gives "
            "each fold the teacher's out-of-fold logits."
        )
    if isinstance(teacher, nn.Module):
        teacher = teacher.cpu().eval()
        with torch.no_grad():
            logits = np.concatenate([
                teacher(torch.from_numpy(read_rows(X, rows))).float().numpy()
                for rows in _batches(len(X), decoder.batch_size)
            ])  # fmt: skip
    else:
        logits = np.asarray(teacher, dtype=np.float32)
    want = (len(X), len(decoder.classes_))
    if logits.shape != want:
        raise ValueError(
            f"Distillation.teacher gives logits of shape {logits.shape}; the "
            "epochs and "
            f"classes need {want} (n_epochs, n_classes), columns in the order "
            f"of {list(decoder.classes_)}."
        )
    if not np.isfinite(logits).all():
        bad = int((~np.isfinite(logits)).any(1).sum())
        raise ValueError(
            f"Distillation.teacher logits are not finite for {bad}"
            " epochs (e.g. epochs the teacher never tested); leave them out."
        )
    return logits.astype(np.float32)


def teacher_maps(decoder, X, y_idx) -> np.ndarray | None:
    """Return the teacher's maps of each epoch of ``X``, or None.

    Needed with ``Distillation.explanation_weight > 0``: the given
    ``maps``, or, with a model as the teacher, its gradients of each
    epoch's true-class logit with respect to the input in µV.

    Parameters
    ----------
    decoder : EEGDecoder
        The decoder being fitted: its ``distillation``, ``align`` and
        ``batch_size``.
    X : EpochsReader | ndarray, shape (n_epochs, n_chans, n_times)
        The training epochs in µV.
    y_idx : ndarray of int, shape (n_epochs,)
        Each epoch's class, as an index into ``decoder.classes_``.

    Returns
    -------
    maps : ndarray of float32, shape (n_epochs, n_chans, n_times) | None
        The teacher's maps; None when ``explanation_weight`` is 0 (or there
        is no distillation).
    """
    d = decoder.distillation
    if d is None or not d.explanation_weight:
        return None
    if decoder.align is not None:
        raise ValueError(
            "Distillation.explanation_weight > 0 compares maps in electrode "
            f"space, which an aligned student (align={decoder.align!r}) does not "
            "take its gradients in; use one or the other."
        )
    if d.maps is not None:
        maps = np.asarray(d.maps, dtype=np.float32)
    elif isinstance(d.teacher, nn.Module):
        teacher = d.teacher.cpu().eval()
        parts = []
        for rows in _batches(len(X), decoder.batch_size):
            x = torch.from_numpy(read_rows(X, rows)).requires_grad_(True)
            logits = teacher(x).float()
            target = torch.from_numpy(y_idx[rows].astype(np.int64))
            (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
            parts.append(grad.numpy())
        maps = np.concatenate(parts).astype(np.float32)
    else:
        raise ValueError(
            "Distillation.explanation_weight > 0 needs the teacher's maps: give "
            "Distillation(maps=...) (one per epoch), a model as the teacher, or "
            "a teacher result to eegsal.decode, which computes them."
        )
    if maps.shape != tuple(X.shape):
        raise ValueError(
            f"Distillation.maps has shape {maps.shape}; one map per epoch of X "
            f"needs {tuple(X.shape)}."
        )
    if not np.isfinite(maps).all():
        raise ValueError("Distillation.maps holds NaN or infinite values.")
    return maps
