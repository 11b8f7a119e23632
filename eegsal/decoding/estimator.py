"""The scikit-learn classifier around a braindecode network, trained with skorch."""

from __future__ import annotations

from collections.abc import Callable

import mne
import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GroupShuffleSplit
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier
from skorch.callbacks import EarlyStopping, LRScheduler
from skorch.helper import predefined_split
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR

from eegsal._check import check_option, check_range
from eegsal._docs import fill_doc
from eegsal._logging import logger
from eegsal._training_terms import GuidedTrainingMixin, check_guidance
from eegsal.alignment import ALIGNMENTS, AlignedSource, fit_alignment
from eegsal.data.reader import (
    BatchDataset,
    BatchLoader,
    EpochsReader,
    channel_moments,
)
from eegsal.decoding.networks import Ensemble, _build_module, get_device
from eegsal.decoding.teacher import teacher_logits, teacher_maps
from eegsal.guidance import (
    _DEPRECATED,
    _OWNERS,
    Distillation,
    Guidance,
    _deprecated_params,
    _resolve_deprecated,
)
from eegsal.models import model_params_for

__all__ = ["EEGDecoder"]


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
        it per electrode. The masks of ``guidance`` name electrodes: they
        need ``'standardize'`` (each channel stays its electrode) or no
        alignment. None: no alignment.
    n_seeds : int
        Train this many networks, with seeds ``seed``, ``seed + 1``, ...
        (weights, shuffling, validation split, augmentation), and average
        their probabilities; ``module_`` is then an :class:`Ensemble`.
    ch_names : list of str | None
        Channel names of ``X``, needed by the ``channel_symmetry``
        augmentation (:func:`decode` passes them).
    guidance : Guidance | None
        Training with the maps (:class:`eegsal.guidance.Guidance`): right for
        the right reasons on a mask of irrelevant cells (``weight``,
        ``mask``, ``method``), a reward for reasons in a mask of relevant
        cells (``keep_weight``, ``keep_mask``) and explanation consistency
        (``consistency_weight``, ``consistency_noise``,
        ``consistency_shift``). Its parameters are this decoder's too:
        ``guidance__weight``... (:meth:`get_params`, :meth:`set_params`;
        ``set_params(guidance__weight=...)`` on a decoder with no guidance
        starts from ``Guidance()``). None: no guidance (as ``Guidance()``).
    distillation : Distillation | None
        Knowledge distillation (Hinton et al., 2015) from a teacher's soft
        targets (:class:`eegsal.guidance.Distillation`: ``teacher``, its
        logits of each epoch of ``X`` or a model run on ``X``;
        ``temperature``; ``weight``). In-sample for a teacher trained on
        ``X``: :func:`decode` with ``distillation=Distillation(result)`` uses
        the teacher's out-of-fold logits instead. Its parameters are this
        decoder's too: ``distillation__weight``... None, or a teacher of
        None: no distillation.
    **deprecated
        The keywords that ``guidance`` and ``distillation`` replace, still
        taken until eegsal 0.2 with a :class:`FutureWarning`:
        ``rrr_mask``, ``rrr_weight``, ``rrr_method``, ``keep_mask``,
        ``keep_weight``, ``consistency_weight``, ``consistency_noise`` and
        ``consistency_shift`` (``Guidance(mask=, weight=, method=,
        keep_mask=, keep_weight=, consistency_weight=, consistency_noise=,
        consistency_shift=)``); ``teacher``, ``distill_temperature`` and
        ``distill_weight`` (``Distillation(teacher=, temperature=,
        weight=)``). They build those objects, train the same decoder, and
        are not listed by :meth:`get_params`.

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

    Examples
    --------
    >>> import numpy as np
    >>> from eegsal.decoding import EEGDecoder
    >>> from eegsal.guidance import Guidance
    >>> mask = np.zeros((19, 200), bool)  # e.g. eegsal.guidance.make_mask(...)
    >>> mask[:4] = True
    >>> clf = EEGDecoder(max_epochs=50, guidance=Guidance(mask=mask, weight=10.0))
    >>> clf.set_params(guidance__method="counterfactual").guidance.method
    'counterfactual'
    >>> clf.fit(X, y, groups=subjects)  # doctest: +SKIP
    """

    #: The keywords that ``guidance`` and ``distillation`` replaced (deprecated):
    #: old name -> (new parameter, its parameter).
    _deprecated_params = _DEPRECATED

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
        augment: str | dict | None = None,
        cutout: tuple[int, int] = (4, 50),
        cutout_s: float | None = None,
        align: str | None = None,
        n_seeds: int = 1,
        ch_names: list[str] | None = None,
        guidance: Guidance | None = None,
        distillation: Distillation | None = None,
        **deprecated,
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
        self.augment = augment
        self.cutout = cutout
        self.cutout_s = cutout_s
        self.align = align
        self.n_seeds = n_seeds
        self.ch_names = ch_names
        if deprecated:  # the keywords of before Guidance and Distillation
            guidance, distillation = _resolve_deprecated(
                deprecated, guidance, distillation, "EEGDecoder"
            )
        self.guidance = guidance
        self.distillation = distillation

    def set_params(self, **params):
        """Set the parameters of this decoder, those of its guidance among them.

        Parameters
        ----------
        **params : dict
            Parameters, ``guidance__<name>`` and ``distillation__<name>`` for
            those of :class:`~eegsal.guidance.Guidance` and
            :class:`~eegsal.guidance.Distillation` (on a decoder without one,
            set from the default object). The deprecated keywords
            (``rrr_weight``...) still set them, with a :class:`FutureWarning`.

        Returns
        -------
        self : EEGDecoder
            The decoder.
        """
        old = {k: params.pop(k) for k in list(params) if k in _DEPRECATED}
        moved = _deprecated_params(old, "set_params", nested=True)
        for owner, kw in moved.items():
            params.update({f"{owner}__{key}": value for key, value in kw.items()})
        for owner, cls in _OWNERS.items():
            nested = [k for k in params if k.startswith(f"{owner}__")]
            if nested and params.get(owner, getattr(self, owner)) is None:
                params[owner] = cls()  # nothing to set values on yet
        return super().set_params(**params)

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
        # the training terms' errors before any alignment or teacher is computed
        check_guidance(self, X.shape[1], X.shape[2])
        self.teacher_logits_ = teacher_logits(self, X)
        self.teacher_maps_ = teacher_maps(self, X, y_idx)
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
            or self.teacher_logits_ is not None or self.teacher_maps_ is not None
        )  # fmt: skip
        masks = None
        if guidance["per_epoch"]:
            masks = np.asarray(self.guidance.mask, dtype=np.float32)
            if masks.shape != X.shape:
                raise ValueError(
                    f"Guidance.mask has shape {masks.shape}; one mask per epoch of X "
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
        net.fit(
            BatchDataset(X, train, y_idx[train], masks, self.teacher_logits_,
                         self.teacher_maps_),  # fmt: skip
            None,
        )
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
