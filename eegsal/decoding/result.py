"""The out-of-fold result of a decoder: predictions, scores, fold models.

:class:`DecodingResult` and its scores; which epochs it takes is checked in
:mod:`eegsal.decoding.checks`, its folder is written and read in
:mod:`eegsal.decoding.files`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import mne
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import recall_score, roc_auc_score
from torch import nn

from eegsal._logging import logger, verbose
from eegsal.alignment import SubjectAlignment, align, fit_alignment
from eegsal.data.reader import EpochsReader
from eegsal.decoding.checks import check_epochs as _check_epochs
from eegsal.decoding.checks import prediction_picks as _prediction_picks
from eegsal.decoding.files import read_result, write_result
from eegsal.decoding.networks import behind_alignment, get_device

__all__ = ["DecodingResult"]


def _scores(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict:
    y_pred = classes[proba.argmax(axis=1)]
    present = np.isin(classes, y_true)
    # balanced accuracy = mean recall over the classes present in y_true (as
    # sklearn defines it), without its warning when a subset holds one class
    bacc = recall_score(y_true, y_pred, labels=classes[present], average="macro")
    out = {"n": len(y_true), "balanced_accuracy": bacc}
    if present.sum() < 2:
        out["roc_auc"] = np.nan
    elif len(classes) == 2:
        out["roc_auc"] = roc_auc_score(y_true == classes[1], proba[:, 1])
    else:
        out["roc_auc"] = roc_auc_score(
            y_true,
            proba[:, present] / proba[:, present].sum(1, keepdims=True),
            labels=classes[present],
            multi_class="ovr",
        )
    return out


class DecodingResult:
    """Out-of-fold predictions, per-fold scores and fitted models of :func:`decode`.

    Attributes
    ----------
    predictions : pandas.DataFrame
        One row per epoch, in the order of the epochs: the metadata, ``fold``
        (the fold in which the epoch was tested; -1 for an epoch that no fold
        tested, whose ``y_pred`` and probabilities are empty), ``y_true``,
        ``y_pred``, ``proba_<class>`` for each class, and the identity of the
        epoch: ``mne_event_sample`` (``epochs.events[:, 0]``) and
        ``mne_selection`` (``epochs.selection``, the metadata's index), which
        :meth:`check_epochs` compares. Scores leave the untested epochs out
        (:meth:`tested_predictions`).
    scores : pandas.DataFrame
        One row per fold: ``fold``, ``n_train``, ``n``, ``test_groups``,
        ``balanced_accuracy``, ``roc_auc``, ``n_epochs_trained``.
    models : list of torch.nn.Module
        The fitted model of each fold, in eval mode; each takes µV.
    classes : ndarray
        Class labels, in the order of the model outputs.
    config : dict
        Everything needed to rebuild the models (model name and parameters,
        ``sfreq`` among them for models that take it; shapes, target, groups)
        and to recognise the epochs (``ch_names``, ``sfreq`` in Hz, ``tmin``
        in s).
    model : str | type | callable
        The registered name, or the class or factory the models were built
        with.
    refit_model : torch.nn.Module | None
        The model refitted on all epochs (``decode(..., refit=True)``), which
        :meth:`predict` prefers; None otherwise.
    alignment : dict | None
        With ``decode(..., align=...)``: ``{str(subject): (matrix, offset)}``,
        each subject's alignment computed from its own epochs (no labels;
        :func:`eegsal.alignment.fit_alignment`). The models then take aligned
        epochs; :meth:`explainers` puts each subject's alignment in front of
        its fold model.
    """

    def __init__(
        self,
        predictions,
        scores,
        models,
        classes,
        config,
        *,
        model: str | Callable[..., nn.Module] | None = None,
        refit_model: nn.Module | None = None,
        alignment: dict | None = None,
    ):
        self.predictions = predictions
        self.scores = scores
        self.models = models
        self.classes = np.asarray(classes)
        self.config = config
        self.model = config.get("model") if model is None else model
        self.refit_model = refit_model
        self.alignment = alignment

    def __repr__(self) -> str:
        ba = self.scores["balanced_accuracy"]
        return (
            f"<DecodingResult | {self.config['target']} "
            f"({', '.join(map(str, self.classes))}) by {self.config['model']}, "
            f"{len(self.models)} folds, balanced accuracy "
            f"{ba.mean():.3f} ± {ba.std(ddof=0):.3f}>"
        )

    def take(self, idx) -> DecodingResult:
        """Return the result of the epochs ``idx`` only, to explain ``epochs[idx]``.

        Parameters
        ----------
        idx : array-like of int | slice
            Positions of the epochs, as given to ``epochs[idx]``.

        Returns
        -------
        result : DecodingResult
            The same models, scores and config; the predictions (and so the
            identity of the epochs) of ``idx``, in that order.
        """
        if isinstance(idx, slice):
            idx = np.arange(len(self.predictions))[idx]
        pred = self.predictions.iloc[np.asarray(idx)].reset_index(drop=True)
        return DecodingResult(
            pred,
            self.scores,
            self.models,
            self.classes,
            self.config,
            model=self.model,
            refit_model=self.refit_model,
            alignment=self.alignment,
        )

    def explainers(self) -> tuple[list[nn.Module], np.ndarray]:
        """Return the model that explains each epoch: its held-out fold's model.

        Without alignment these are :attr:`models` and the ``fold`` column of
        :attr:`predictions`. With alignment, each (fold, subject) gets its
        fold model behind the subject's alignment, a fixed linear layer
        (:class:`~eegsal.alignment.SubjectAlignment`), so that the model takes
        the subject's epochs in µV and its gradients are per electrode.

        Returns
        -------
        models : list of torch.nn.Module
            The models, each taking µV of shape (batch, n_chans, n_times).
        index : ndarray of int, shape (n_epochs,)
            Position in ``models`` of each epoch's model (-1: tested in no fold).
        """
        fold = self.predictions["fold"].to_numpy()
        if self.alignment is None:
            return list(self.models), fold
        subjects = self.predictions[self.config["groups"]].astype(str).to_numpy()
        models, index = [], np.full(len(fold), -1)
        pairs = zip(fold, subjects, strict=True)
        keys = sorted({(int(k), s) for k, s in pairs if k >= 0})
        for k, subject in keys:
            layer = SubjectAlignment(*self.alignment[subject])
            index[(fold == k) & (subjects == subject)] = len(models)
            models.append(behind_alignment(self.models[k], layer))
        return models, index

    def check_epochs(self, epochs: mne.BaseEpochs) -> None:
        """Refuse epochs other than those this result was decoded from.

        Each epoch may only be explained by the model of the fold that did not
        train on it, and each model takes the channels, sampling rate and
        times it was trained on. The result recognises its epochs by their
        number and order (MNE's event sample ``epochs.events[:, 0]`` and
        ``epochs.selection``, the metadata's index, of each), their subject
        and target, the EEG channel names in order, the sampling rate and the
        times. Epochs read lazily (``preload=False``) are recognised without
        reading their data.

        Parameters
        ----------
        epochs : mne.Epochs
            The epochs to explain.

        Raises
        ------
        ValueError
            Saying what differs and how to fix it.
        """
        _check_epochs(self, epochs)

    def prediction_picks(self, epochs: mne.BaseEpochs) -> np.ndarray:
        """Check new epochs against the models; return the channels to read, in order.

        The models take the EEG channels they were trained on, in that order,
        at the same sampling rate and number of samples, in µV. Channels in
        another order are reordered and EEG channels the models do not know
        are left out (both with a logged note); missing channels, another
        sampling rate or another epoch length are refused.

        Parameters
        ----------
        epochs : mne.Epochs
            New epochs.

        Returns
        -------
        picks : ndarray of int, shape (n_chans,)
            Indices into ``epochs.ch_names`` of the models' channels, in the
            models' order.

        Raises
        ------
        ValueError
            Naming what differs and what to do.
        """
        return _prediction_picks(self, epochs)

    @verbose
    def predict_proba(
        self,
        epochs: mne.BaseEpochs,
        *,
        batch_size: int = 64,
        device: str = "auto",
        verbose: bool | str | int | None = None,
    ) -> np.ndarray:
        """Class probabilities of new epochs (e.g. another recording).

        The model refitted on all subjects (``decode(..., refit=True)``,
        :attr:`refit_model`) when the result has one; otherwise the fold models
        as an ensemble, the mean of their softmax probabilities. The epochs
        are checked first (:meth:`prediction_picks`): the same EEG channels
        (reordered when needed), sampling rate and number of samples; data are
        read in µV, batch by batch. A result decoded with ``align`` aligns
        each subject of the new epochs (the ``groups`` column of their
        metadata; all epochs as one subject where it is absent) with that
        subject's own epochs, all of them, without labels.

        Parameters
        ----------
        epochs : mne.Epochs
            New epochs.
        batch_size : int
            Epochs per batch.
        device : str
            ``'auto'`` (CUDA when present), ``'cpu'`` or ``'cuda'``.
        verbose : bool | str | int | None
            Control verbosity of the logging output.

        Returns
        -------
        proba : ndarray, shape (n_epochs, n_classes)
            Probabilities, columns in the order of :attr:`classes`.

        Examples
        --------
        >>> proba = result.predict_proba(new_epochs)  # doctest: +SKIP
        """
        picks = self.prediction_picks(epochs)
        models = self.models if self.refit_model is None else [self.refit_model]
        if not models:
            raise ValueError("This result holds no models to predict with.")
        dev = get_device(device)
        logger.info(
            "Predicting %d epochs with %s on %s",
            len(epochs),
            "the refitted model"
            if self.refit_model is not None
            else f"the mean of {len(models)} fold models",
            dev,
        )
        models = [m.to(dev).eval() for m in models]
        groups = alignment = None
        if self.alignment is not None:
            col, meta = self.config["groups"], epochs.metadata
            if meta is not None and col in meta:
                groups = meta[col].astype(str).to_numpy()
            else:
                logger.info("No %r column: the epochs are aligned as one subject", col)
                groups = np.full(len(epochs), "all")
            alignment = fit_alignment(
                EpochsReader(epochs, picks=picks), groups, self.config["align"]
            )
        proba = np.zeros((len(epochs), len(self.classes)))
        for start in range(0, len(epochs), batch_size):
            idx = np.arange(start, min(start + batch_size, len(epochs)))
            x = epochs.get_data(picks=picks, item=idx, units="uV", verbose=False)
            if alignment is not None:
                x = align(x, groups[idx], alignment)
            x = torch.from_numpy(x.astype(np.float32)).to(dev)
            with torch.no_grad():
                p = sum(m(x).float().softmax(-1) for m in models) / len(models)
            proba[idx] = p.cpu().numpy()
        return proba

    def predict(self, epochs: mne.BaseEpochs, **kwargs) -> np.ndarray:
        """Predicted classes of new epochs: the most probable of :meth:`predict_proba`.

        Parameters
        ----------
        epochs : mne.Epochs
            New epochs.
        **kwargs
            ``batch_size``, ``device``, ``verbose``: as for :meth:`predict_proba`.

        Returns
        -------
        y_pred : ndarray, shape (n_epochs,)
            Labels from :attr:`classes`.
        """
        return self.classes[self.predict_proba(epochs, **kwargs).argmax(axis=1)]

    def tested_predictions(self) -> pd.DataFrame:
        """The rows of ``predictions`` that a fold tested (``fold >= 0``).

        A splitter may leave epochs out of every test fold; they have no
        prediction, and counting them as errors would bias every score. They
        are dropped here, with a logged count, wherever predictions are scored.

        Returns
        -------
        predictions : pandas.DataFrame
            The tested rows, index reset.
        """
        pred = self.predictions
        if "fold" not in pred:
            return pred.reset_index(drop=True)
        tested = pred["fold"].to_numpy() >= 0
        if not tested.all():
            logger.warning(
                "%d of %d epochs of the %s decoder have no out-of-fold prediction "
                "(fold -1: the splitter tested them in no fold); they are left out "
                "of the scores.",
                (~tested).sum(),
                len(pred),
                self.config.get("target", "?"),
            )
        return pred[tested].reset_index(drop=True)

    def score_by(self, column: str) -> pd.DataFrame:
        """Balanced accuracy and ROC AUC of the out-of-fold predictions per value.

        Parameters
        ----------
        column : str
            A column of ``predictions``, e.g. ``'stage'`` or ``'subject'``.

        Returns
        -------
        scores : pandas.DataFrame
            One row per value of ``column``: ``n``, ``balanced_accuracy``,
            ``roc_auc`` (of the tested epochs, :meth:`tested_predictions`).
        """
        if column not in self.predictions:
            raise ValueError(
                f"column {column!r} is not in the predictions; available: "
                f"{list(self.predictions.columns)}."
            )
        pred = self.tested_predictions()
        proba = pred[[f"proba_{c}" for c in self.classes]].to_numpy()
        rows = []
        for value, idx in pred.groupby(column, sort=True).indices.items():
            y = pred["y_true"].to_numpy()[idx]
            rows.append({column: value, **_scores(y, proba[idx], self.classes)})
        return pd.DataFrame(rows)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the result to a folder: JSON config, CSV tables, state dicts.

        Parameters
        ----------
        path : path-like
            Folder to create.
        overwrite : bool
            Replace files of an existing result in ``path``.
        """
        write_result(self, path, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        model: type[nn.Module] | Callable[..., nn.Module] | None = None,
    ) -> DecodingResult:
        """Read a result written by :meth:`save` (no pickles are loaded).

        Parameters
        ----------
        path : path-like
            The folder.
        model : type | callable | None
            For a result of a model given as a class or factory (not a
            registered name): that class or factory again; the folder holds
            its weights (state dicts, read with ``weights_only=True``), never
            its code. None for registered models.

        Returns
        -------
        result : DecodingResult
            The result, with its models rebuilt on the CPU. A result saved
            before models took ``sfreq`` rebuilds with the sample sizes of
            then (the published rates').
        """
        return read_result(cls, path, model=model)
