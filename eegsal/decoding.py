"""Decoders trained with subject-grouped cross-validation, and their results."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import recall_score, roc_auc_score
from sklearn.model_selection import (
    BaseCrossValidator,
    GroupKFold,
    GroupShuffleSplit,
    LeaveOneGroupOut,
)
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier
from skorch.callbacks import EarlyStopping, LRScheduler
from skorch.helper import predefined_split
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR

from eegsal._check import check_option, check_range, validate_type
from eegsal._docs import fill_doc
from eegsal._io import atomic_path
from eegsal._logging import logger, progress, verbose
from eegsal.alignment import (
    ALIGNMENTS,
    AlignedSource,
    SubjectAlignment,
    align,
    fit_alignment,
)
from eegsal.data.reader import (
    BatchDataset,
    BatchLoader,
    EpochsReader,
    channel_moments,
    read_rows,
    take,
)
from eegsal.guidance import GuidedTrainingMixin, check_guidance
from eegsal.models import build_model, model_name, model_params_for

__all__ = ["DecodingResult", "EEGDecoder", "Ensemble", "decode", "get_device"]


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``device``: ``'auto'`` is CUDA when present, else the CPU.

    Parameters
    ----------
    device : str | torch.device
        ``'auto'``, ``'cpu'``, ``'cuda'``, ``'cuda:1'``...

    Returns
    -------
    device : torch.device
        The device.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was requested but CUDA is not available; "
            "use device='auto' or 'cpu'."
        )
    return device


class Standardize(nn.Module):
    """Per-channel standardization with statistics fitted on training data.

    Being the first layer of the fitted model, it makes the model take EEG in
    µV, so that gradients and attributions are per µV of input.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        super().__init__()
        self.register_buffer(
            "mean", torch.as_tensor(mean, dtype=torch.float32)[:, None]
        )
        self.register_buffer(
            "scale", torch.as_tensor(scale, dtype=torch.float32)[:, None]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (x - self.mean) / self.scale


class Ensemble(nn.Module):
    """Models of one fold trained with different seeds, as one model.

    Its output is the log of the members' mean softmax probability, which
    softmax turns back into that mean: the ensemble's "logits" give exactly
    the probabilities (and the predictions) that :func:`decode` reports.
    :func:`eegsal.attribute` explains an ensemble by the mean of its members'
    maps instead (see there).

    Parameters
    ----------
    members : list of torch.nn.Module
        Models mapping ``(batch, n_chans, n_times)`` to logits
        ``(batch, n_classes)``.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        logp = torch.stack([m(x).float().log_softmax(-1) for m in self.members])
        return torch.logsumexp(logp, 0) - np.log(len(self.members))


def members_of(model: nn.Module) -> list[nn.Module]:
    """Return the members of an :class:`Ensemble`, or ``[model]``.

    Parameters
    ----------
    model : torch.nn.Module
        A model or an ensemble.

    Returns
    -------
    members : list of torch.nn.Module
        The models whose outputs it averages.
    """
    return list(model.members) if isinstance(model, Ensemble) else [model]


def behind_alignment(model: nn.Module, alignment: SubjectAlignment) -> nn.Module:
    """Put a subject's alignment in front of a model (of each member of an ensemble).

    Parameters
    ----------
    model : torch.nn.Module
        A fitted model that takes aligned epochs.
    alignment : SubjectAlignment
        The subject's fixed alignment layer.

    Returns
    -------
    model : torch.nn.Module
        ``Sequential(alignment, model)`` (an :class:`Ensemble` of such), taking
        the subject's epochs in µV.
    """
    if isinstance(model, Ensemble):
        return Ensemble([nn.Sequential(alignment, m) for m in model.members])
    return nn.Sequential(alignment, model)


def input_mean(model: nn.Module) -> np.ndarray | None:
    """Return the training data's channel means in the model's input space (µV).

    Read from the fitted model's standardizing layer, mapped back through a
    subject alignment in front of it; None for a model without one.

    Parameters
    ----------
    model : torch.nn.Module
        A fitted decoder module.

    Returns
    -------
    mean : ndarray, shape (n_chans,) | None
        µV.
    """
    if not isinstance(model, nn.Sequential) or not len(model):
        return None
    first = model[0]
    if isinstance(first, Standardize):
        return first.mean.detach().cpu().numpy()[:, 0]
    if isinstance(first, SubjectAlignment) and len(model) > 1:
        inner = input_mean(model[1])
        return None if inner is None else first.input_mean(inner).astype(np.float32)
    return None


def _as_source(X):
    """Epochs as an array or an :class:`~eegsal.data.reader.EpochsReader`."""
    if isinstance(X, mne.BaseEpochs):
        return EpochsReader(X)
    if isinstance(X, EpochsReader):
        return X
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3:
        raise ValueError(
            f"X must be epochs of shape (n_epochs, n_channels, n_times), got an "
            f"array of shape {X.shape}."
        )
    return X


def _build_module(
    model: str | Callable[..., nn.Module],
    n_chans: int,
    n_times: int,
    n_classes: int,
    model_params: dict,
) -> nn.Sequential:
    net = build_model(model, n_chans, n_times, n_classes, model_params)
    return nn.Sequential(Standardize(np.zeros(n_chans), np.ones(n_chans)), net)


class _StopTraining(KeyboardInterrupt):
    """Early stopping's signal to end training.

    skorch ends training on any KeyboardInterrupt and keeps the model; only
    this one is meant so.
    """


class _Interrupted(BaseException):
    """A user's Ctrl-C during training, carried past skorch's handler."""


class _Net(NeuralNetClassifier):
    """skorch classifier that autocasts to bfloat16 on CUDA (mixed precision).

    skorch's ``partial_fit`` swallows ``KeyboardInterrupt`` and keeps the
    half-trained model (its early stopping ends training that way). Here only
    eegsal's early stopping (:class:`_StopTraining`) ends training quietly; a
    user's Ctrl-C leaves ``fit`` as ``KeyboardInterrupt``, so that no
    half-trained model is ever kept or saved.
    """

    def fit_loop(self, X, y=None, **fit_params):  # noqa: D102
        try:
            return super().fit_loop(X, y, **fit_params)
        except _StopTraining:
            raise
        except KeyboardInterrupt as err:
            raise _Interrupted from err

    def fit(self, X, y=None, **fit_params):  # noqa: D102
        try:
            return super().fit(X, y, **fit_params)
        except _Interrupted:
            raise KeyboardInterrupt("training interrupted") from None

    def infer(self, x, **fit_params):  # noqa: D102
        device = torch.device(self.device)
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return super().infer(x, **fit_params).float()
        return super().infer(x, **fit_params)


class _GuidedNet(GuidedTrainingMixin, _Net):
    """skorch classifier trained with the explanation terms of eegsal.guidance."""


class _EarlyStopping(EarlyStopping):
    """skorch's early stopping that never stops before ``min_epochs``."""

    def __init__(self, *args, min_epochs: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.min_epochs = min_epochs

    def on_epoch_end(self, net, **kwargs):  # noqa: D102
        try:
            super().on_epoch_end(net, **kwargs)
        except KeyboardInterrupt:  # skorch's signal to stop training
            if len(net.history) >= self.min_epochs:
                raise _StopTraining from None
            self.misses_ -= 1  # stay one miss short of stopping


class EEGDecoder(ClassifierMixin, BaseEstimator):
    """A CNN classifier of EEG epochs, trained through skorch.

    The fitted model (``module_``) takes epochs in µV of shape
    ``(batch, n_chans, n_times)``; its first layer standardizes each channel
    with the mean and standard deviation of the training data (no information
    from test data leaks into it).

    Parameters
    ----------
    model : str | type | callable
        Registered model name (see :data:`eegsal.models.MODELS`), or any
        :class:`torch.nn.Module` class or factory called as
        ``model(n_chans, n_times, n_classes, **model_params)`` (a class whose
        signature names ``n_outputs``, as braindecode's, gets keywords
        ``n_chans=, n_times=, n_outputs=``). It must map
        ``(batch, n_chans, n_times)`` to logits ``(batch, n_classes)``.
    model_params : dict | None
        Keyword arguments of the model class.
    sfreq : float | None
        Sampling rate of ``X`` (Hz). Given to the model as ``sfreq`` when its
        signature has one (eegsal's models set their kernels in seconds with
        it; None: their published rates), and used by ``cutout_s``.
    max_epochs : int
        Maximum number of training epochs.
    batch_size : int
        Mini-batch size.
    lr : float
        Learning rate of AdamW.
    weight_decay : float
        Weight decay of AdamW.
    patience : int
        Early stopping: epochs without improvement of the validation loss.
    min_epochs : int
        Early stopping never stops before this many epochs (CNNs on EEG often
        sit on a loss plateau for their first epochs). The weights of the best
        validation epoch are restored at the end.
    lr_schedule : str | None
        None: constant learning rate; ``'cosine'``: cosine annealing over
        ``max_epochs`` (as braindecode's examples). Annealing suits long
        training; with few epochs it can leave EEGNet on its initial loss plateau
        (on the simulator, 4-fold balanced accuracy fell from 0.95 to 0.61 with
        25 epochs), hence the constant default.
    valid_size : float
        Share of the training *groups* (subjects) held out for early stopping;
        0 trains for ``max_epochs`` with no validation split.
    class_weight : str | None
        ``'balanced'`` weights the loss by inverse class frequency.
    device : str
        ``'auto'`` (CUDA when present), ``'cpu'`` or ``'cuda'``.
    seed : int
        Seed of weights, shuffling and the validation split.
    rrr_mask : array-like of bool | None
        Cells whose input gradient is penalized ("right for the right
        reasons", Ross et al., 2017): shape (n_channels, n_times), or one
        mask per training epoch (n_epochs, n_channels, n_times); see
        :func:`eegsal.guidance.make_mask`.
    rrr_weight : float
        Weight of that penalty (0: off). The gradient is taken with respect
        to the standardized input; on the simulator, 100-1000 moves the maps
        (``'gradient'``) and 10 unlearns a planted shortcut
        (``'counterfactual'``).
    rrr_method : str
        ``'gradient'``: Ross et al.'s penalty on the input gradient in the
        mask; ``'counterfactual'``: a penalty on the change of the output
        when the masked cells are swapped with another epoch's, which cannot
        be met by flattening the gradient (see :mod:`eegsal.guidance`).
    keep_mask : array-like of bool | None
        Cells where the reasons should lie, shape (n_channels, n_times).
    keep_weight : float
        Weight of the penalty ``1 - share of the squared gradient in keep_mask``.
    augment : str | dict | None
        ``'saliency_cutout'`` (remove each example's most salient patch) or
        ``'cutout'`` (a random patch); or a dict of transforms and their
        parameters, applied to each training batch (seeded by ``seed``; see
        :mod:`eegsal.augmentation`), e.g. ``{"time_shift": {"p": 0.5,
        "max_s": 0.2}, "sign_flip": {"p": 0.5}, "mixup": {"alpha": 0.4}}``;
        the dict may hold ``'cutout'`` or ``'saliency_cutout'`` (with no
        parameters: ``cutout`` gives the patch) too. None: no augmentation.
        Augmentation acts on the network's input: the aligned epochs when
        ``align`` is set.
    cutout : tuple of int
        CutOut patch: (channels, samples).
    cutout_s : float | None
        CutOut patch length in seconds (needs ``sfreq``); when given it
        replaces the samples of ``cutout``, which then gives the channels only.
    consistency_weight : float
        Weight of the explanation-consistency penalty (0: off).
    consistency_noise : float
        Noise of the perturbed copy, in standard deviations of each channel.
    consistency_shift : int
        Time shift (samples) of the perturbed copy.
    align : str | None
        Per-subject alignment of the epochs, computed from each subject's own
        unlabeled epochs (see :mod:`eegsal.alignment`): ``'euclidean'``
        (He & Wu, 2019; each subject's mean spatial covariance whitened to the
        identity) or ``'standardize'`` (each channel z-scored with the
        subject's mean and standard deviation). :meth:`fit` and
        :meth:`predict_proba` then need ``groups``; a subject predicted is
        aligned with its own epochs, all of them, without labels, which makes
        prediction *transductive* for the test subject. The network
        (``module_``) takes aligned epochs; :class:`DecodingResult` puts each
        subject's alignment in front of it as a fixed linear layer to explain
        it per electrode. None: no alignment.
    n_seeds : int
        Train this many networks, with seeds ``seed``, ``seed + 1``, ...
        (weights, shuffling, validation split, augmentation), and average
        their probabilities; ``module_`` is then an :class:`Ensemble`.
    ch_names : list of str | None
        Channel names of ``X``, needed by the ``channel_symmetry``
        augmentation (:func:`decode` passes them).
    teacher : array-like | torch.nn.Module | None
        Knowledge distillation (Hinton et al., 2015): a teacher's logits for
        each epoch of ``X``, shape (n_epochs, n_classes), columns in the
        order of ``classes_`` (log-probabilities do as well: they are logits
        up to a constant per epoch, which the softmax ignores); or a model
        taking µV ``(batch, n_chans, n_times)`` to logits, run on ``X``
        (in-sample for a teacher trained on ``X``: :func:`decode` with
        ``teacher=result`` uses the teacher's out-of-fold logits instead).
        The loss is then ``(1 - distill_weight) x cross-entropy +
        distill_weight x T^2 x KL(teacher at T || student at T)``
        (:func:`eegsal.guidance.distillation_loss`), on the training batches;
        early stopping watches the cross-entropy of the validation subjects.
        Augmented epochs keep the teacher targets of the epoch they came
        from. None: no distillation.
    distill_temperature : float
        ``T`` (> 0) of the soft targets.
    distill_weight : float
        Share of the soft term, in [0, 1] (0: plain training).

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted network (an :class:`Ensemble` when ``n_seeds > 1``),
        taking µV, or aligned epochs when ``align`` is set.
    alignment_ : dict | None
        ``{subject: (matrix, offset)}`` of the training subjects
        (:func:`eegsal.alignment.fit_alignment`).

    Notes
    -----
    The guidance terms are described in :mod:`eegsal.guidance`.

    References
    ----------
    .. [1] He H, Wu D (2019). Transfer learning for brain-computer interfaces:
       a Euclidean space data alignment approach. IEEE Trans Biomed Eng 67(2),
       399-410.
    .. [2] Hinton G, Vinyals O, Dean J (2015). Distilling the knowledge in a
       neural network. arXiv:1503.02531.
    """

    def __init__(
        self,
        model: str | Callable[..., nn.Module] = "eegnet",
        *,
        model_params: dict | None = None,
        sfreq: float | None = None,
        max_epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 15,
        min_epochs: int = 20,
        lr_schedule: str | None = None,
        valid_size: float = 0.2,
        class_weight: str | None = "balanced",
        device: str = "auto",
        seed: int = 0,
        rrr_mask=None,
        rrr_weight: float = 0.0,
        rrr_method: str = "gradient",
        keep_mask=None,
        keep_weight: float = 0.0,
        augment: str | dict | None = None,
        cutout: tuple[int, int] = (4, 50),
        cutout_s: float | None = None,
        consistency_weight: float = 0.0,
        consistency_noise: float = 0.1,
        consistency_shift: int = 0,
        align: str | None = None,
        n_seeds: int = 1,
        ch_names: list[str] | None = None,
        teacher: np.ndarray | nn.Module | None = None,
        distill_temperature: float = 4.0,
        distill_weight: float = 0.5,
    ):
        self.model = model
        self.model_params = model_params
        self.sfreq = sfreq
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.min_epochs = min_epochs
        self.lr_schedule = lr_schedule
        self.valid_size = valid_size
        self.class_weight = class_weight
        self.device = device
        self.seed = seed
        self.rrr_mask = rrr_mask
        self.rrr_weight = rrr_weight
        self.rrr_method = rrr_method
        self.keep_mask = keep_mask
        self.keep_weight = keep_weight
        self.augment = augment
        self.cutout = cutout
        self.cutout_s = cutout_s
        self.consistency_weight = consistency_weight
        self.consistency_noise = consistency_noise
        self.consistency_shift = consistency_shift
        self.align = align
        self.n_seeds = n_seeds
        self.ch_names = ch_names
        self.teacher = teacher
        self.distill_temperature = distill_temperature
        self.distill_weight = distill_weight

    @fill_doc
    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None):
        """Train on epochs ``X`` (n_epochs, n_chans, n_times) in µV with labels ``y``.

        Parameters
        ----------
        %(X_uv)s
        y : array-like, shape (n_epochs,)
            Class labels.
        groups : array-like, shape (n_epochs,) | None
            Subject of each epoch; the validation split holds out whole
            groups, and ``align`` aligns each group with its own epochs.

        Returns
        -------
        self : EEGDecoder
            The fitted decoder.
        """
        X = _as_source(X)
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"X holds {len(X)} epochs but y has {len(y)} labels.")
        if not isinstance(self.n_seeds, int | np.integer) or self.n_seeds < 1:
            raise ValueError(f"n_seeds must be an int >= 1, got {self.n_seeds!r}.")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.teacher_logits_ = self._teacher_logits(X)
        self.alignment_ = None
        if self.align is not None:
            check_option("align", self.align, ALIGNMENTS)
            if groups is None:
                raise ValueError(
                    f"align={self.align!r} aligns each subject with its own epochs: "
                    "pass groups= (the subject of each epoch) to fit."
                )
            self.alignment_ = fit_alignment(
                X, groups, self.align, batch_size=self.batch_size
            )
            X = AlignedSource(X, groups, self.alignment_)
        self.model_params_ = model_params_for(self.model, self.model_params, self.sfreq)
        self.nets_ = [
            self._fit_one(X, y_idx, groups, int(self.seed) + m)
            for m in range(int(self.n_seeds))
        ]
        self.net_ = self.nets_[0]
        modules = [net.module_.eval() for net in self.nets_]
        self.module_ = modules[0] if len(modules) == 1 else Ensemble(modules).eval()
        trained = [len(net.history) for net in self.nets_]
        self.n_epochs_trained_ = trained[0] if len(trained) == 1 else trained
        return self

    def _teacher_logits(self, X) -> np.ndarray | None:
        """Return the teacher's logits of each epoch of ``X`` (µV), or None."""
        if self.teacher is None:
            return None
        check_range(self.distill_temperature, "distill_temperature", 0.0, None,
                    low_closed=False)  # fmt: skip
        check_range(self.distill_weight, "distill_weight", 0.0, 1.0)
        if isinstance(self.teacher, nn.Module):
            teacher = self.teacher.cpu().eval()
            with torch.no_grad():
                logits = np.concatenate([
                    teacher(torch.from_numpy(read_rows(X, rows))).float().numpy()
                    for rows in np.array_split(
                        np.arange(len(X)), max(1, -(-len(X) // self.batch_size)))
                ])  # fmt: skip
        else:
            logits = np.asarray(self.teacher, dtype=np.float32)
        want = (len(X), len(self.classes_))
        if logits.shape != want:
            raise ValueError(
                f"teacher gives logits of shape {logits.shape}; the epochs and "
                f"classes need {want} (n_epochs, n_classes), columns in the order "
                f"of {list(self.classes_)}."
            )
        if not np.isfinite(logits).all():
            bad = int((~np.isfinite(logits)).any(1).sum())
            raise ValueError(
                f"teacher logits are not finite for {bad}"
                " epochs (e.g. epochs the teacher never tested); leave them out."
            )
        return logits.astype(np.float32)

    def _fit_one(self, X, y_idx, groups, seed: int) -> _Net:
        """Train one network with ``seed``; return its skorch net."""
        device = get_device(self.device)
        torch.manual_seed(seed)
        module = _build_module(
            self.model, X.shape[1], X.shape[2], len(self.classes_), self.model_params_
        )
        train, valid = self._split(y_idx, groups, seed)
        mean, std = channel_moments(X, train, batch_size=self.batch_size)
        module[0].mean.copy_(torch.from_numpy(mean[:, None]))
        module[0].scale.copy_(torch.from_numpy(std[:, None] + 1e-6))
        weight = None
        if self.class_weight == "balanced":
            counts = np.bincount(y_idx[train], minlength=len(self.classes_))
            weight = torch.tensor(
                len(train) / (len(self.classes_) * np.maximum(counts, 1)),
                dtype=torch.float32,
            )
        callbacks = []
        if self.lr_schedule is not None:
            check_option("lr_schedule", self.lr_schedule, ("cosine",))
            callbacks.append(
                LRScheduler(CosineAnnealingLR, T_max=max(self.max_epochs, 1))
            )
        split = False
        if valid is not None:
            split = predefined_split(BatchDataset(X, valid, y_idx[valid]))
            callbacks.append(
                _EarlyStopping(
                    patience=self.patience,
                    min_epochs=self.min_epochs,
                    load_best=True,
                    sink=logger.debug,
                )
            )
        guidance = check_guidance(self, X.shape[1], X.shape[2], seed=seed)
        guided = bool(
            guidance["rrr_weight"] or guidance["keep_weight"] or guidance["augment"]
            or guidance["consistency_weight"] or guidance["augmenter"] is not None
            or self.teacher_logits_ is not None
        )  # fmt: skip
        masks = None
        if guidance["per_epoch"]:
            masks = np.asarray(self.rrr_mask, dtype=np.float32)
            if masks.shape != X.shape:
                raise ValueError(
                    f"rrr_mask has shape {masks.shape}; one mask per epoch of X "
                    f"needs {X.shape}."
                )
        for key in ("rrr_mask", "keep_mask"):
            if guidance[key] is not None:
                guidance[key] = guidance[key].to(device)
        net = (_GuidedNet if guided else _Net)(
            module,
            criterion=nn.CrossEntropyLoss,
            criterion__weight=weight,
            classes=list(range(len(self.classes_))),
            optimizer=torch.optim.AdamW,
            lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train=BatchLoader,
            iterator_valid=BatchLoader,
            iterator_train__shuffle=True,
            train_split=split,
            callbacks=callbacks,
            device=str(device),
            verbose=0,
        )
        net.guidance = guidance
        net.fit(BatchDataset(X, train, y_idx[train], masks, self.teacher_logits_), None)
        return net

    def _split(self, y_idx, groups, seed: int | None = None):
        idx = np.arange(len(y_idx))
        if self.valid_size == 0:
            return idx, None
        check_range(self.valid_size, "valid_size", 0.0, 1.0, high_closed=False)
        groups = idx if groups is None else np.asarray(groups)
        if np.unique(groups).size < 2:
            return idx, None
        seed = self.seed if seed is None else seed
        splitter = GroupShuffleSplit(1, test_size=self.valid_size, random_state=seed)
        train, valid = next(splitter.split(idx, y_idx, groups))
        return train, valid

    @fill_doc
    def predict_proba(
        self, X: np.ndarray, groups: np.ndarray | None = None
    ) -> np.ndarray:
        """Class probabilities, shape (n_epochs, n_classes).

        Parameters
        ----------
        %(X_uv)s
        groups : array-like, shape (n_epochs,) | None
            Subject of each epoch; needed with ``align``, which aligns each
            subject with its own epochs in ``X`` (no labels; transductive).

        Returns
        -------
        proba : ndarray, shape (n_epochs, n_classes)
            Probabilities, columns in the order of ``classes_``; with
            ``n_seeds > 1`` the mean of the members' probabilities.
        """
        check_is_fitted(self, "module_")
        X = _as_source(X)
        if self.alignment_ is not None:
            if groups is None:
                raise ValueError(
                    f"This decoder aligns each subject (align={self.align!r}): pass "
                    "groups= (the subject of each epoch) to predict."
                )
            own = fit_alignment(X, groups, self.align, batch_size=self.batch_size)
            X = AlignedSource(X, groups, own)
        data = BatchDataset(X, np.arange(len(X)))
        return np.mean([net.predict_proba(data) for net in self.nets_], axis=0)

    @fill_doc
    def predict(self, X: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """Predicted class labels, shape (n_epochs,).

        Parameters
        ----------
        %(X_uv)s
        groups : array-like, shape (n_epochs,) | None
            Subject of each epoch (needed with ``align``).

        Returns
        -------
        y : ndarray, shape (n_epochs,)
            Labels from ``classes_``.
        """
        return self.classes_[self.predict_proba(X, groups).argmax(axis=1)]


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


#: Columns of a result's predictions that identify each epoch: MNE's event
#: sample (``epochs.events[:, 0]``) and ``epochs.selection`` (the metadata index).
_IDENTITY = ("mne_event_sample", "mne_selection")


def _identity(epochs: mne.BaseEpochs) -> dict[str, np.ndarray]:
    """Return the identity of each epoch (no data is read: lazy epochs stay lazy)."""
    return {
        _IDENTITY[0]: np.asarray(epochs.events[:, 0], np.int64),
        _IDENTITY[1]: np.asarray(epochs.selection, np.int64),
    }


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
        cfg, pred = self.config, self.predictions
        diffs = []
        picks = mne.pick_types(epochs.info, eeg=True)
        names = [epochs.ch_names[i] for i in picks]
        want = list(cfg.get("ch_names", names))
        if names != want:
            if sorted(names) == sorted(want):
                k = int(np.flatnonzero(np.array(names) != np.array(want))[0])
                diffs.append(
                    f"their EEG channels are in another order (position {k}: "
                    f"{names[k]!r} here, {want[k]!r} in the result); reorder them "
                    "with epochs.reorder_channels(result.config['ch_names'])"
                )
            else:
                missing = [c for c in want if c not in names]
                extra = [c for c in names if c not in want]
                diffs.append(
                    f"their EEG channels differ (missing {missing}, not in the "
                    f"result {extra})"
                )
        sfreq = epochs.info["sfreq"]
        if "sfreq" in cfg and not np.isclose(sfreq, cfg["sfreq"]):
            diffs.append(
                f"they are sampled at {sfreq:g} Hz, the result's at {cfg['sfreq']:g} Hz"
            )
        n_times, tmin = len(epochs.times), float(epochs.times[0])
        if n_times != cfg.get("n_times", n_times) or not np.isclose(
            tmin, cfg.get("tmin", tmin), atol=0.5 / sfreq
        ):
            diffs.append(
                f"their times differ ({n_times} samples from {tmin:g} s; the "
                f"result's: {cfg['n_times']} from {cfg.get('tmin', tmin):g} s)"
            )
        if len(epochs) != len(pred):
            diffs.append(
                f"they are {len(epochs)} epochs, the result was decoded from "
                f"{len(pred)}"
            )
        elif _IDENTITY[0] in pred:
            diffs += self._epoch_diffs(epochs)
        else:
            logger.warning(
                "This result does not record which epochs it was decoded from "
                "(saved by an older eegsal): only their number, channels and "
                "sampling are checked. Decode again to have every epoch checked."
            )
        if diffs:
            raise ValueError(
                "These epochs are not the ones the result was decoded from: "
                + "; ".join(diffs)
                + ". Each epoch must be explained by the fold model that did not "
                "train on it: pass the epochs given to decode(), unchanged and in "
                "their order (to explain some of them, pass result.take(idx) with "
                "epochs[idx])."
            )

    def _epoch_diffs(self, epochs: mne.BaseEpochs) -> list[str]:
        """List what differs between the epochs and those of the predictions."""
        pred, cfg = self.predictions, self.config
        meta = epochs.metadata
        have = _identity(epochs)
        fields = {
            "event sample": (have[_IDENTITY[0]], pred[_IDENTITY[0]].to_numpy()),
            "selection": (have[_IDENTITY[1]], pred[_IDENTITY[1]].to_numpy()),
        }
        for what, col, ours in (
            ("subject", cfg.get("groups"), cfg.get("groups")),
            ("target", cfg.get("target"), "y_true"),
        ):
            if col is None or ours not in pred:
                continue
            if meta is None or col not in meta:
                return [f"their metadata has no {what} column {col!r}"]
            fields[col] = (
                meta[col].astype(str).to_numpy(),
                pred[ours].astype(str).to_numpy(),
            )
        bad = np.zeros(len(pred), bool)
        for a, b in fields.values():
            bad |= np.asarray(a).astype(str) != np.asarray(b).astype(str)
        if not bad.any():
            return []
        k = int(np.flatnonzero(bad)[0])
        here = ", ".join(f"{f} {a[k]}" for f, (a, _) in fields.items())
        there = ", ".join(f"{f} {b[k]}" for f, (_, b) in fields.items())
        return [
            f"{bad.sum()} of {len(bad)} epochs differ, the first at position {k} "
            f"({here} here; {there} in the result)"
        ]

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
        validate_type(epochs, mne.BaseEpochs, "epochs")
        cfg = self.config
        want = list(cfg["ch_names"])
        eeg = [epochs.ch_names[i] for i in mne.pick_types(epochs.info, eeg=True)]
        missing = [c for c in want if c not in eeg]
        if missing:
            raise ValueError(
                f"the epochs lack {len(missing)} of the {len(want)} EEG channels the "
                f"models were trained on: {missing}; the models cannot predict "
                "without them (interpolate them, e.g. epochs.interpolate_bads(), "
                "or decode again on the channels these recordings have)."
            )
        extra = [c for c in eeg if c not in want]
        if extra:
            logger.info(
                "Leaving out %d EEG channel(s) the models were not trained on: %s",
                len(extra),
                extra,
            )
        if [c for c in eeg if c in want] != want:
            logger.info(
                "Reordering the epochs' EEG channels to the models' order "
                "(result.config['ch_names'])"
            )
        sfreq = float(epochs.info["sfreq"])
        if not np.isclose(sfreq, cfg["sfreq"]):
            raise ValueError(
                f"the epochs are sampled at {sfreq:g} Hz but the models at "
                f"{cfg['sfreq']:g} Hz; resample them to {cfg['sfreq']:g} Hz "
                f"(epochs.resample({cfg['sfreq']:g}))."
            )
        n_times, tmin = len(epochs.times), float(epochs.times[0])
        if n_times != cfg["n_times"]:
            span = (cfg["n_times"] - 1) / cfg["sfreq"]
            start = cfg.get("tmin", tmin)
            raise ValueError(
                f"the epochs have {n_times} samples ({tmin:g} to "
                f"{float(epochs.times[-1]):g} s) but the models take "
                f"{cfg['n_times']} ({start:g} to {start + span:g} s in the "
                "training epochs); crop or re-epoch them to that length."
            )
        if "tmin" in cfg and not np.isclose(tmin, cfg["tmin"], atol=0.5 / sfreq):
            logger.warning(
                "The epochs start at %g s, the training epochs at %g s: the models "
                "see another part of each trial.",
                tmin,
                cfg["tmin"],
            )
        return np.array([epochs.ch_names.index(c) for c in want])

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
        path = Path(path)
        if (path / "config.json").exists() and not overwrite:
            raise FileExistsError(
                f"{path} holds a result already; pass overwrite=True."
            )
        path.mkdir(parents=True, exist_ok=True)
        named = [(f"fold-{k}.pt", m) for k, m in enumerate(self.models)]
        if self.refit_model is not None:
            named.append(("refit.pt", self.refit_model))
        if self.alignment is not None:  # one (matrix, offset) per subject
            subjects = sorted(self.alignment)
            named.append(("alignment.pt", {
                "matrix": torch.from_numpy(
                    np.stack([self.alignment[s][0] for s in subjects])),
                "offset": torch.from_numpy(
                    np.stack([self.alignment[s][1] for s in subjects])),
            }))  # fmt: skip
        for fname, model in named:  # state dicts: tensors only, no pickled code
            state = model if isinstance(model, dict) else model.state_dict()
            with atomic_path(path / fname) as tmp:
                torch.save(state, tmp)
        with atomic_path(path / "predictions.csv") as tmp:
            self.predictions.to_csv(tmp, index=False)
        with atomic_path(path / "scores.csv") as tmp:
            self.scores.to_csv(tmp, index=False)
        config = dict(
            self.config,
            classes=[str(c) for c in self.classes],
            refit=self.refit_model is not None,
            alignment_subjects=None
            if self.alignment is None
            else sorted(self.alignment),
        )
        with atomic_path(path / "config.json") as tmp:  # written last: marks it whole
            Path(tmp).write_text(json.dumps(config, indent=2, default=_to_json))

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
        path = Path(path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"{path} holds no saved DecodingResult (no config.json)."
            )
        try:
            config = json.loads((path / "config.json").read_text())
        except ValueError as err:
            raise ValueError(
                f"{path / 'config.json'}: damaged ({err}); decode again."
            ) from None
        classes = np.array(config.pop("classes"))
        custom = bool(config.get("custom_model", False))
        if custom and model is None:
            raise ValueError(
                f"{path} holds the weights of {config['model']}, a model given as a "
                "class or factory; its code is not saved: pass it, "
                f"DecodingResult.load({str(path)!r}, model="
                f"{config['model'].rsplit('.', 1)[-1]})."
            )
        if not custom and model is not None:
            raise ValueError(
                f"{path} holds the registered model {config['model']!r}; load it "
                "without model=."
            )
        spec = model if custom else config["model"]
        if custom and model_name(model) != config["model"]:
            logger.info(
                "Loading the weights of %s into %s", config["model"], model_name(model)
            )

        def build() -> nn.Module:
            return _build_module(
                spec,
                config["n_chans"],
                config["n_times"],
                len(classes),
                config["model_params"],
            )

        def read(fname):
            try:
                state = torch.load(fname, weights_only=True, map_location="cpu")
            except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise ValueError(
                    f"{fname}: not a model file eegsal wrote, or damaged ({first}); "
                    "decode again."
                ) from None
            return state

        n_seeds = int(config.get("n_seeds", 1))

        def rebuild(fname: str) -> nn.Module:
            module = (
                build() if n_seeds == 1 else Ensemble([build() for _ in range(n_seeds)])
            )
            module.load_state_dict(read(path / fname))
            return module.eval()

        models = [rebuild(f"fold-{k}.pt") for k in range(config["n_folds"])]
        refit_model = rebuild("refit.pt") if config.get("refit") else None
        alignment = None
        subjects = config.pop("alignment_subjects", None)
        if subjects is not None:
            state = read(path / "alignment.pt")
            alignment = {
                s: (state["matrix"][i].numpy(), state["offset"][i].numpy())
                for i, s in enumerate(subjects)
            }
        predictions = pd.read_csv(path / "predictions.csv")
        predictions["y_true"] = predictions["y_true"].astype(str)
        predictions["y_pred"] = predictions["y_pred"].astype(str)
        scores = pd.read_csv(path / "scores.csv")
        return cls(
            predictions,
            scores,
            models,
            classes,
            config,
            model=spec,
            refit_model=refit_model,
            alignment=alignment,
        )


def _fit_fold(base, X, y, g, train, test, classes, per_epoch_mask, teacher=None):
    """Train one fold's decoder; return its test probabilities and CPU module."""
    clf = clone(base)
    if per_epoch_mask is not None:  # one mask per epoch: the fold's own
        clf.set_params(rrr_mask=per_epoch_mask[train])
    if teacher is not None:  # the teacher's logits of the training epochs only
        clf.set_params(teacher=teacher[train])
    clf = clf.fit(take(X, train), y[train], groups=g[train])
    # a fold's training set may miss a class: map its columns to all classes
    p = np.zeros((len(test), len(classes)))
    p[:, np.searchsorted(classes, clf.classes_)] = clf.predict_proba(
        take(X, test), groups=g[test]
    )
    return p, clf.module_.cpu(), clf.n_epochs_trained_


def _teacher_logits(teacher, epochs: mne.BaseEpochs, classes: np.ndarray):
    """Return the out-of-fold logits of a teacher result, one row per epoch."""
    if not isinstance(teacher, DecodingResult):
        raise TypeError(
            "decode(teacher=...) takes the DecodingResult of the teacher, decoded "
            f"from the same epochs; got {type(teacher).__name__}."
        )
    teacher.check_epochs(epochs)
    if not np.array_equal(np.asarray(teacher.classes, str), classes):
        raise ValueError(
            f"The teacher decoded classes {list(teacher.classes)}, the student "
            f"decodes {list(classes)}: distillation needs the same classes."
        )
    if (teacher.predictions["fold"] < 0).any():
        raise ValueError(
            "The teacher tested no fold on some epochs (fold -1), so it has no "
            "out-of-fold targets for them; decode the teacher with a cv that "
            "tests every epoch."
        )
    proba = teacher.predictions[[f"proba_{c}" for c in teacher.classes]].to_numpy()
    # log-probabilities are logits up to a constant per epoch (softmax ignores it)
    return np.log(np.clip(proba.astype(np.float64), 1e-12, None)).astype(np.float32)


def _to_json(value):
    """Arrays (e.g. guidance masks) in a result's config, as nested lists."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _make_cv(cv, groups):
    n_groups = np.unique(groups).size
    if isinstance(cv, str):
        if cv != "loso":
            raise ValueError(f"cv must be an int, 'loso' or a splitter, got {cv!r}.")
        return LeaveOneGroupOut()
    if isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        if not 2 <= cv <= n_groups:
            raise ValueError(
                f"cv={cv} folds need between 2 and the number of groups ({n_groups})."
            )
        return GroupKFold(n_splits=int(cv))
    if isinstance(cv, BaseCrossValidator) or hasattr(cv, "split"):
        return cv
    raise TypeError(f"cv must be an int, 'loso' or an sklearn splitter, got {cv!r}.")


@fill_doc
@verbose
def decode(
    epochs: mne.BaseEpochs,
    target: str = "content",
    *,
    model: str | Callable[..., nn.Module] = "eegnet",
    groups: str = "subject",
    cv: int | str | Any = 5,
    refit: bool = False,
    device: str = "auto",
    seed: int = 0,
    n_jobs: int | None = None,
    verbose: bool | str | int | None = None,
    **decoder_params: Any,
) -> DecodingResult:
    """Decode a metadata column from EEG with subject-grouped cross-validation.

    Every epoch is predicted by the model of the fold in which its subject was
    held out; early stopping uses a validation split of the *training*
    subjects only, so no test subject ever informs training.

    Parameters
    ----------
    epochs : mne.Epochs
        EEG epochs with ``metadata`` holding ``target`` and ``groups``.
        Epochs read with ``preload=False`` are read batch by batch in every
        fold, so that studies larger than memory can be decoded.
    target : str
        Metadata column to decode, e.g. ``'content'`` or ``'stage'``.
    model : str | type | callable
        Registered model name, e.g. ``'eegnet'``, or any
        :class:`torch.nn.Module` class or factory
        ``(n_chans, n_times, n_classes, **model_params) -> nn.Module`` mapping
        ``(batch, n_chans, n_times)`` µV to logits (see :class:`EEGDecoder`).
        A model whose signature has ``sfreq`` gets ``epochs.info['sfreq']``
        (eegsal's models set their kernels and pools in seconds with it).
        Such a model is trained, explained and saved as the registered ones;
        :meth:`DecodingResult.load` then needs it again (``model=``).
        Grad-CAM needs its ``grad_cam_layers`` declared, or a ``layer=``
        whose axes its sizes make unambiguous.
    groups : str
        Metadata column whose values are never split between training and
        testing (the subject).
    cv : int | str | splitter
        int: :class:`~sklearn.model_selection.GroupKFold` with that many folds;
        ``'loso'``: leave one subject out; or any scikit-learn splitter, called
        with ``groups``.
    refit : bool
        Also train one model on all epochs (all subjects; its early stopping
        holds out ``valid_size`` of them), kept as ``result.refit_model``:
        :meth:`DecodingResult.predict` uses it on new recordings. The
        out-of-fold predictions and scores do not change.
    device : str
        ``'auto'`` (CUDA when present), ``'cpu'`` or ``'cuda'``.
    seed : int
        Seed of every random choice in training.
    %(n_jobs)s
    verbose : bool | str | int | None
        Control verbosity of the logging output.
    **decoder_params
        Training settings of :class:`EEGDecoder`: ``model_params``,
        ``max_epochs``, ``batch_size``, ``lr``, ``patience``, ``min_epochs``,
        ``lr_schedule``, ``valid_size``, ``class_weight``... Among them, for
        decoders that must transfer to new subjects (all off by default):
        ``align='euclidean'`` or ``'standardize'`` (each subject aligned with
        its own unlabeled epochs, the held-out subject included: transductive
        for the test subject; the alignments are kept in
        ``result.alignment``), ``augment={...}`` (training augmentation, see
        :mod:`eegsal.augmentation`) and ``n_seeds=`` (each fold an
        :class:`Ensemble` of that many networks trained with seeds ``seed,
        seed + 1, ...``, their probabilities averaged).
        Knowledge distillation (Hinton et al., 2015): ``teacher=result``, the
        :class:`DecodingResult` of a teacher decoded from the same epochs
        (:meth:`DecodingResult.check_epochs`), with ``distill_temperature``
        and ``distill_weight`` (see :class:`EEGDecoder`). The soft targets
        are the teacher's *out-of-fold* predictions: the teacher's
        log-probabilities (``proba_<class>`` of its predictions), which are
        its logits up to a constant per epoch that the softmax at any
        temperature ignores. Leakage is avoided twice over: the student of
        fold ``k`` trains on epochs whose teacher targets came from the
        teacher models that were *tested* on them (never trained on them),
        and only its training epochs' targets are passed to it, so the
        teacher's predictions for the student's test subjects never enter its
        training. The teacher models that made those targets may still have
        trained on the student's test subjects (the teacher's own folds);
        the targets carry no prediction of them, but a strictly nested
        scheme would retrain the teacher inside each student fold.

    Returns
    -------
    result : DecodingResult
        Out-of-fold predictions, per-fold scores and the fitted models.

    Examples
    --------
    >>> epochs, _ = eegsal.simulate.simulate_sleep_study(n_subjects=4)  # doctest: +SKIP
    >>> result = eegsal.decode(epochs, "content", cv=2)  # doctest: +SKIP
    """
    validate_type(epochs, mne.BaseEpochs, "epochs")
    meta = epochs.metadata
    if meta is None:
        raise ValueError(
            "epochs has no metadata; decode() needs the target and group columns "
            "in epochs.metadata (see eegsal.load_manifest)."
        )
    for name, col in (("target", target), ("groups", groups)):
        if col not in meta:
            raise ValueError(
                f"{name}={col!r} is not a metadata column; available: "
                f"{list(meta.columns)}."
            )
    y = meta[target].astype(str).to_numpy()
    if np.unique(y).size < 2:
        raise ValueError(
            f"target {target!r} has a single class {np.unique(y)}; nothing to decode."
        )
    g = meta[groups].to_numpy()
    splitter = _make_cv(cv, g)
    teacher = decoder_params.pop("teacher", None)
    soft = None
    if teacher is not None:
        soft = _teacher_logits(teacher, epochs, np.unique(y))
    if epochs.preload:
        X = epochs.get_data(picks="eeg", units="uV").astype(np.float32)
    else:  # read batch by batch, in each fold (studies larger than memory)
        X = EpochsReader(epochs)
    sfreq = float(epochs.info["sfreq"])
    ch_names = [epochs.ch_names[i] for i in mne.pick_types(epochs.info, eeg=True)]
    base = EEGDecoder(
        model,
        sfreq=sfreq,
        device=device,
        seed=seed,
        **({"ch_names": ch_names} | decoder_params),
    )
    alignment = None
    if base.align is not None:  # each subject from its own epochs, no labels
        alignment = fit_alignment(X, g, base.align, batch_size=base.batch_size)
    per_epoch_mask = None
    if base.rrr_mask is not None and np.ndim(base.rrr_mask) == 3:
        per_epoch_mask = np.asarray(base.rrr_mask, bool)
        if per_epoch_mask.shape != X.shape:
            raise ValueError(
                f"rrr_mask has shape {per_epoch_mask.shape}; one mask per epoch "
                f"needs {X.shape} (epochs x EEG channels x times)."
            )
    model_params = model_params_for(model, base.model_params, sfreq)
    folds = list(splitter.split(X, y, g))
    logger.info(
        "Decoding %r (%s) from %d epochs x %d channels x %d times: %s, %d folds on %s",
        target,
        ", ".join(np.unique(y)),
        *X.shape,
        model_name(model),
        len(folds),
        get_device(device),
    )
    classes = np.unique(y)
    proba = np.full((len(y), len(classes)), np.nan)
    fold_of = np.full(len(y), -1)
    for train, test in folds:
        if np.intersect1d(g[train], g[test]).size:
            raise ValueError(
                f"cv splits group(s) {np.intersect1d(g[train], g[test])} between "
                "training and testing; use a group-aware splitter."
            )
    # one task per fold; joblib runs them in this process (n_jobs=1), in local
    # processes, or on a cluster (joblib.parallel_config(backend="dask"))
    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_fit_fold)(base, X, y, g, train, test, classes, per_epoch_mask, soft)
        for train, test in folds
    )
    models, rows = [], []
    for k, ((train, test), (p, module, n_trained)) in enumerate(
        zip(folds, progress(jobs, desc="CV folds", total=len(folds)), strict=True)
    ):
        proba[test], fold_of[test] = p, k
        models.append(module)
        rows.append(
            dict(
                fold=k,
                n_train=len(train),
                **_scores(y[test], p, classes),
                test_groups=" ".join(map(str, np.unique(g[test]))),
                n_epochs_trained=float(np.mean(n_trained))
                if isinstance(n_trained, list)
                else n_trained,
            )
        )
    tested = fold_of >= 0
    if not tested.all():
        logger.warning(
            "cv tested %d of %d epochs; the other %d have no prediction (fold -1) "
            "and are left out of the scores.",
            tested.sum(),
            len(tested),
            (~tested).sum(),
        )
    predictions = meta.reset_index(drop=True).copy()
    predictions["fold"] = fold_of
    predictions["y_true"] = y
    predictions["y_pred"] = np.where(
        tested, classes[np.nan_to_num(proba).argmax(1)], None
    )
    for i, c in enumerate(classes):
        predictions[f"proba_{c}"] = proba[:, i]
    for col, values in _identity(epochs).items():
        predictions[col] = values
    refit_model = None
    if refit:
        logger.info(
            "Refitting the %s decoder on all %d epochs", model_name(model), len(g)
        )
        clf = clone(base)
        if per_epoch_mask is not None:
            clf.set_params(rrr_mask=per_epoch_mask)
        if soft is not None:
            clf.set_params(teacher=soft)
        refit_model = clf.fit(X, y, groups=g).module_.cpu()
    config = dict(
        target=target,
        groups=groups,
        model=model_name(model),
        model_params=model_params,
        n_chans=X.shape[1],
        n_times=X.shape[2],
        n_folds=len(models),
        seed=seed,
        ch_names=ch_names,
        sfreq=epochs.info["sfreq"],
        tmin=float(epochs.times[0]),
        # the training settings, so that a control can be trained the same way
        decoder_params={k: v for k, v in decoder_params.items() if k != "model_params"},
        refit=refit_model is not None,
        n_seeds=int(base.n_seeds),
        align=base.align,
    )
    if teacher is not None:
        config["teacher"] = dict(model=teacher.config["model"],
                                 target=teacher.config["target"])  # fmt: skip
    if not isinstance(model, str):  # a class or factory: load() needs it again
        config["custom_model"] = True
    result = DecodingResult(
        predictions,
        pd.DataFrame(rows),
        models,
        classes,
        config,
        model=model,
        refit_model=refit_model,
        alignment=alignment,
    )
    logger.info("%r", result)
    return result
