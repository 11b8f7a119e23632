"""Training that uses the maps: right for the right reasons, guided CutOut, consistency.

(and knowledge distillation from a teacher's soft targets, which shares the
training step; see :class:`Distillation` and :func:`distillation_loss`)

Three terms a decoder can be trained with (all off by default; see
:class:`eegsal.EEGDecoder`), each built from the input gradient of the
model's log-probabilities with respect to the *standardized* input (the
model's first layer), so that weights do not depend on the data's µV scale.
The first and the third are set by one :class:`Guidance` object,
``EEGDecoder(guidance=Guidance(...))``; the second is a training augmentation:

- **right for the right reasons** (Ross et al., 2017): a penalty
  ``weight * sum((M- * dlogp/dx)^2)`` on gradient inside a ``mask`` ``M-`` of
  irrelevant cells (e.g. frontal channels during REM, or annotated eye
  movements), and optionally ``keep_weight * (1 - share of the squared
  gradient inside M+)``, which rewards reasons inside a ``keep_mask`` ``M+``
  of relevant cells. A network can meet the gradient penalty by flattening
  its input gradient at the training epochs while still deciding by the
  masked cells (gradient masking); ``method="counterfactual"`` closes that
  door: the penalty is ``weight * sum((logp(x) - logp(x'))^2)``, where ``x'``
  is the epoch with its masked cells taken from another epoch of the batch.
  By completeness, ``logp(x) - logp(x')`` is the integrated-gradients
  attribution of the masked cells, summed, on the path from ``x'`` to ``x``:
  the masked cells may hold no evidence *as a whole*, not just at ``x``;
- **saliency-guided CutOut** (one of the training augmentations of
  ``EEGDecoder(augment=)``; the others are in :mod:`eegsal.augmentation`):
  each training example loses the patch of ``cutout`` = (channels, samples),
  or ``cutout_s`` seconds long, where the current model's input x gradient is
  largest (its most salient channels, over its most salient window), set to
  the channel means; ``augment="cutout"`` removes a random patch instead
  (DeVries & Taylor, 2017);
- **explanation consistency**: ``consistency_weight`` times the squared
  difference between the maps (input gradients of the true class's logit)
  of an epoch and of a copy with Gaussian noise (``consistency_noise``
  standard deviations) and/or shifted by ``consistency_shift`` samples,
  relative to the maps' squared norm over the batch. Logits, not
  log-probabilities: the gradient of a confident log-probability vanishes,
  and a ratio to it would reward unconfident models.

:func:`make_mask` builds masks from channel names, time windows or MNE
annotations; :func:`localize_events` (defined in
:mod:`eegsal.attribution.events`, next to the Grad-CAM it uses) turns Grad-CAM
time courses into event onsets and offsets (weakly supervised localization).

This module holds the settings (:class:`Guidance`, :class:`Distillation`,
the deprecated keywords they replace) and the masks; the training step that
uses them, and the loss terms :func:`distillation_loss` and
:func:`explanation_matching_loss`, are defined in ``eegsal._training_terms``
and loaded from here on first use.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Mapping

import mne
import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from eegsal._check import check_option, check_range, validate_type

__all__ = [
    "AUGMENTATIONS",
    "RRR_METHODS",
    "Distillation",
    "Guidance",
    "distillation_loss",  # noqa: F822 (eegsal._training_terms, via __getattr__)
    "explanation_matching_loss",  # noqa: F822 (the same)
    "localize_events",  # noqa: F822 (eegsal.attribution.events, via __getattr__)
    "make_mask",
]

#: What ``augment=`` of :class:`eegsal.EEGDecoder` takes.
AUGMENTATIONS = ("cutout", "saliency_cutout")
#: What ``method=`` of :class:`Guidance` takes.
RRR_METHODS = ("gradient", "counterfactual")


# name -> module that defines it, loaded on first use. localize_events explains
# a decoder: it lives with the attributions it uses, so that the estimator,
# which imports this module, does not import eegsal.attribution. The training
# step and its terms live in eegsal._training_terms, which imports the
# settings objects of this module.
_LAZY = {
    "localize_events": "eegsal.attribution.events",
    **dict.fromkeys(
        [
            "GuidedTrainingMixin",
            "check_guidance",
            "distillation_loss",
            "explanation_matching_loss",
            "std_gradients",
            "_cutout",
            "_held_batchnorm",
            "_rng_state",
            "_set_rng_state",
        ],
        "eegsal._training_terms",
    ),
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'eegsal.guidance' has no attribute {name!r}")


class Guidance(BaseEstimator):
    """How a decoder is trained with its maps: right for the right reasons, consistency.

    The settings of the explanation terms of :class:`eegsal.EEGDecoder`
    (``EEGDecoder(guidance=Guidance(...))``, hence of :func:`eegsal.decode`),
    all off by default. Like a scikit-learn estimator nested in another, its
    parameters are the decoder's too: ``decoder.get_params()`` lists
    ``guidance__weight``, ``guidance__mask``..., which
    ``decoder.set_params(guidance__weight=10.0)``, :func:`sklearn.base.clone`
    and a grid search over ``{"guidance__weight": [...]}`` use. The values are
    checked when the decoder is fitted.

    Parameters
    ----------
    mask : array-like of bool | None
        Cells whose evidence the decoder should not use ("right for the right
        reasons", Ross et al., 2017): shape (n_channels, n_times), the same
        for every epoch, or one mask per training epoch (n_epochs,
        n_channels, n_times), which :func:`eegsal.decode` hands to each fold
        for its training epochs; see :func:`make_mask`. Its channels are
        electrodes: a decoder with ``align='euclidean'`` (whitened channels,
        each a mix of electrodes) refuses it; ``align='standardize'`` keeps
        them.
    weight : float
        Weight (>= 0) of the penalty on ``mask`` (0: off). The gradient is
        taken with respect to the standardized input; on the simulator,
        100-1000 moves the maps (``'gradient'``) and 10 unlearns a planted
        shortcut (``'counterfactual'``).
    method : str
        ``'gradient'``: Ross et al.'s penalty on the input gradient in the
        mask; ``'counterfactual'``: a penalty on the change of the output
        when the masked cells are swapped with another epoch's, which cannot
        be met by flattening the gradient (see :mod:`eegsal.guidance`).
    keep_mask : array-like of bool | None
        Cells where the reasons should lie, shape (n_channels, n_times).
    keep_weight : float
        Weight (>= 0) of the penalty ``1 - share of the squared gradient in
        keep_mask`` (0: off).
    consistency_weight : float
        Weight (>= 0) of the explanation-consistency penalty (0: off).
    consistency_noise : float
        Noise (>= 0) of the perturbed copy, in standard deviations of each
        channel.
    consistency_shift : int
        Time shift (samples) of the perturbed copy, shorter than the epochs.

    See Also
    --------
    Distillation : Training on a teacher's soft targets.
    make_mask : Masks from channel names, time windows or annotations.

    Notes
    -----
    The terms are described in :mod:`eegsal.guidance`; a decoder with no
    ``guidance`` (None) trains as with ``Guidance()``.

    What is not here, and why: saliency-guided CutOut is a training
    augmentation, set with the others by ``EEGDecoder(augment=
    "saliency_cutout", cutout=..., cutout_s=...)``; knowledge distillation
    has its own object, :class:`Distillation`
    (``EEGDecoder(distillation=...)``), because it does not use the maps but
    a teacher's outputs, its teacher is data of the epochs (each fold of
    :func:`eegsal.decode` gets its own training epochs' targets) rather than
    a setting, and it combines freely with any guidance. Keeping them apart
    also keeps every name unambiguous: ``guidance__weight`` and
    ``distillation__weight`` weigh different terms.

    The keywords this object replaces, ``EEGDecoder(rrr_mask=, rrr_weight=,
    rrr_method=, keep_mask=, keep_weight=, consistency_weight=,
    consistency_noise=, consistency_shift=)``, are deprecated since eegsal
    0.1 and will be removed in 0.2; until then they still train the same
    decoder (with a :class:`FutureWarning`).

    References
    ----------
    .. [1] Ross AS, Hughes MC, Doshi-Velez F (2017). Right for the right
       reasons: training differentiable models by constraining their
       explanations. IJCAI, 2662-2670.

    Examples
    --------
    Penalize evidence on the first four channels (e.g. ``make_mask(epochs,
    channels=["Fp1", "Fp2", "F7", "F8"])``), by the counterfactual penalty:

    >>> import numpy as np
    >>> from sklearn.base import clone
    >>> from eegsal.decoding import EEGDecoder
    >>> from eegsal.guidance import Guidance
    >>> mask = np.zeros((19, 200), bool)
    >>> mask[:4] = True
    >>> clf = EEGDecoder(
    ...     guidance=Guidance(mask=mask, weight=10.0, method="counterfactual")
    ... )
    >>> clf.get_params()["guidance__weight"]
    10.0
    >>> clone(clf).set_params(guidance__weight=100.0).guidance.weight
    100.0
    """

    def __init__(
        self,
        *,
        mask: np.ndarray | None = None,
        weight: float = 0.0,
        method: str = "gradient",
        keep_mask: np.ndarray | None = None,
        keep_weight: float = 0.0,
        consistency_weight: float = 0.0,
        consistency_noise: float = 0.1,
        consistency_shift: int = 0,
    ):
        self.mask = mask
        self.weight = weight
        self.method = method
        self.keep_mask = keep_mask
        self.keep_weight = keep_weight
        self.consistency_weight = consistency_weight
        self.consistency_noise = consistency_noise
        self.consistency_shift = consistency_shift

    def _settings(self, n_chans: int, n_times: int) -> dict:
        """Check the values for epochs of this shape; return them ready to use."""
        shape = (n_chans, n_times)
        weights = ("weight", "keep_weight", "consistency_weight", "consistency_noise")
        for name in weights:
            check_range(getattr(self, name), f"Guidance.{name}", 0.0, None)
        check_range(self.consistency_shift, "Guidance.consistency_shift",
                    -(n_times - 1), n_times - 1, integer=True)  # fmt: skip
        check_option("Guidance.method", self.method, RRR_METHODS)
        if self.weight and self.mask is None:
            raise ValueError(
                f"Guidance.weight={self.weight!r} > 0 needs Guidance.mask, the cells "
                "to penalize (eegsal.guidance.make_mask)."
            )
        if self.keep_weight and self.keep_mask is None:
            raise ValueError(
                f"Guidance.keep_weight={self.keep_weight!r} > 0 needs "
                "Guidance.keep_mask, the cells where the reasons should lie."
            )

        def fixed(name, value):
            if value is None:
                return None
            arr = np.asarray(value, dtype=np.float32)
            if arr.shape != shape:
                raise ValueError(
                    f"Guidance.{name} must have shape (n_channels, n_times) = {shape}"
                    + (" (or one such mask per epoch)" if name == "mask" else "")
                    + f", got {arr.shape}."
                )
            return torch.from_numpy(arr)

        per_epoch = self.mask is not None and np.ndim(self.mask) == 3
        return dict(
            rrr_mask=None if per_epoch else fixed("mask", self.mask),
            rrr_weight=float(self.weight),
            rrr_method=self.method,
            keep_mask=fixed("keep_mask", self.keep_mask),
            keep_weight=float(self.keep_weight),
            consistency_weight=float(self.consistency_weight),
            consistency_noise=float(self.consistency_noise),
            consistency_shift=int(self.consistency_shift),
            per_epoch=per_epoch,
        )


class Distillation(BaseEstimator):
    """Knowledge distillation from a teacher's soft targets (Hinton et al., 2015).

    The distillation settings of :class:`eegsal.EEGDecoder`
    (``EEGDecoder(distillation=Distillation(...))``) and of
    :func:`eegsal.decode`. The training loss becomes ``(1 - weight) x
    cross-entropy + weight x T^2 x KL(teacher at T || student at T)``
    (:func:`distillation_loss`, ``T = temperature``), on the training batches;
    early stopping watches the cross-entropy of the validation subjects.
    Augmented epochs keep the teacher targets of the epoch they came from.
    Like :class:`Guidance`, its parameters are the decoder's too
    (``distillation__weight``...).

    Parameters
    ----------
    teacher : array-like | torch.nn.Module | DecodingResult | None
        For :class:`eegsal.EEGDecoder`: a teacher's logits for each epoch of
        ``X``, shape (n_epochs, n_classes), columns in the order of
        ``classes_`` (log-probabilities do as well: they are logits up to a
        constant per epoch, which the softmax ignores); or a model taking µV
        ``(batch, n_chans, n_times)`` to logits, run on ``X`` (in-sample for
        a teacher trained on ``X``). For :func:`eegsal.decode`: the
        :class:`~eegsal.DecodingResult` of a teacher decoded from the same
        epochs, whose *out-of-fold* log-probabilities each fold's student gets
        for its training epochs only. None: no distillation.
    temperature : float
        ``T`` (> 0) of the soft targets; higher values soften both
        distributions.
    weight : float
        Share of the soft term, in [0, 1] (0: plain training).
    explanation_weight : float
        Weight (>= 0) of an explanation-matching term added to the loss:
        ``explanation_weight x mean(1 - cos(student map, teacher map))``
        (:func:`explanation_matching_loss`), the maps being the gradients of
        each model's logit of the epoch's true class with respect to the
        input in µV, the student's on the epoch before any augmentation.
        The cosine, not a squared difference, because a teacher's logits
        need not be on the student's scale: the term asks the student to
        weigh the cells as the teacher does, not to copy its gain. 0: no
        term (and no teacher maps needed).
    maps : array-like | None
        For :class:`eegsal.EEGDecoder` with ``explanation_weight > 0``: the
        teacher's maps, one per epoch of ``X``, shape (n_epochs, n_chans,
        n_times); None with a model as ``teacher``: its in-sample gradients.
        :func:`eegsal.decode` sets them from a teacher result: each epoch's
        saliency map (:func:`eegsal.attribute`, ``target="logit"``,
        ``label="true"``) by the teacher's fold model that was tested on it,
        cut to each fold's training epochs like the logits. The maps are
        held in memory (one float32 map per epoch).

    See Also
    --------
    Guidance : Training with the maps.
    distillation_loss : The loss.
    explanation_matching_loss : The explanation-matching term.

    Notes
    -----
    Distillation is an object of its own, not part of :class:`Guidance`: it
    does not use the maps but a teacher's outputs, its teacher is data (one
    row per epoch, which :func:`eegsal.decode` cuts to each fold's training
    epochs) rather than a setting, and it combines freely with guidance.
    Apart, the two ``weight`` parameters are never confused.

    The keywords it replaces, ``EEGDecoder(teacher=, distill_temperature=,
    distill_weight=)`` and ``decode(teacher=, ...)``, are deprecated since
    eegsal 0.1 and will be removed in 0.2.

    References
    ----------
    .. [1] Hinton G, Vinyals O, Dean J (2015). Distilling the knowledge in a
       neural network. arXiv:1503.02531.

    Examples
    --------
    >>> import numpy as np
    >>> from eegsal.decoding import EEGDecoder
    >>> from eegsal.guidance import Distillation
    >>> logits = np.zeros((100, 2), np.float32)  # the teacher's, one row per epoch
    >>> clf = EEGDecoder(distillation=Distillation(logits, temperature=2.0))
    >>> clf.get_params()["distillation__temperature"]
    2.0

    With :func:`eegsal.decode`, the teacher is a result decoded from the same
    epochs:

    >>> teacher = eegsal.decode(epochs, "content", model="shallow")  # doctest: +SKIP
    >>> student = eegsal.decode(
    ...     epochs, "content", model="eegnet",
    ...     distillation=Distillation(teacher, temperature=4.0, weight=0.5),
    ... )  # doctest: +SKIP
    """

    def __init__(
        self,
        teacher: np.ndarray | nn.Module | None = None,
        *,
        temperature: float = 4.0,
        weight: float = 0.5,
        explanation_weight: float = 0.0,
        maps: np.ndarray | None = None,
    ):
        self.teacher = teacher
        self.temperature = temperature
        self.weight = weight
        self.explanation_weight = explanation_weight
        self.maps = maps

    def _settings(self) -> dict:
        """Check the temperature and the weights; return them as floats."""
        check_range(self.temperature, "Distillation.temperature", 0.0, None,
                    low_closed=False)  # fmt: skip
        check_range(self.weight, "Distillation.weight", 0.0, 1.0)
        check_range(self.explanation_weight, "Distillation.explanation_weight", 0.0)
        return dict(
            distill_temperature=float(self.temperature),
            distill_weight=float(self.weight),
            explanation_weight=float(self.explanation_weight),
        )


#: The keywords of :class:`eegsal.EEGDecoder` and :func:`eegsal.decode` that
#: :class:`Guidance` and :class:`Distillation` replace: old name -> (new
#: parameter, its parameter). Deprecated in 0.1, removed in 0.2.
_DEPRECATED = {
    "rrr_mask": ("guidance", "mask"),
    "rrr_weight": ("guidance", "weight"),
    "rrr_method": ("guidance", "method"),
    "keep_mask": ("guidance", "keep_mask"),
    "keep_weight": ("guidance", "keep_weight"),
    "consistency_weight": ("guidance", "consistency_weight"),
    "consistency_noise": ("guidance", "consistency_noise"),
    "consistency_shift": ("guidance", "consistency_shift"),
    "teacher": ("distillation", "teacher"),
    "distill_temperature": ("distillation", "temperature"),
    "distill_weight": ("distillation", "weight"),
}
_OWNERS = {"guidance": Guidance, "distillation": Distillation}


def _deprecated_params(
    old: dict, where: str, *, nested: bool = False, stacklevel: int = 3
) -> dict[str, dict]:
    """Warn about the deprecated keywords in ``old``; return them by new parameter.

    ``{"guidance": {"weight": 1.0}, ...}``; ``where`` names the call (e.g.
    ``'EEGDecoder'``) in the message, which shows the new form:
    ``guidance=Guidance(weight=...)``, or ``guidance__weight=...`` when
    ``nested`` (set_params).
    """
    unknown = [k for k in old if k not in _DEPRECATED]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(_DEPRECATED), n=1)
        raise TypeError(
            f"{where}() got an unexpected keyword argument {unknown[0]!r}"
            + (f"; did you mean {close[0]!r}?" if close else ".")
        )
    moved: dict[str, dict] = {}
    for name, value in old.items():
        owner, new = _DEPRECATED[name]
        moved.setdefault(owner, {})[new] = value
    if moved:
        if nested:
            new = ", ".join(
                f"{owner}__{key}=..." for owner, kw in moved.items() for key in kw
            )
        else:
            new = ", ".join(
                f"{owner}={_OWNERS[owner].__name__}("
                + ", ".join(f"{key}=..." for key in kw)
                + ")"
                for owner, kw in moved.items()
            )
        classes = ", ".join(_OWNERS[owner].__name__ for owner in sorted(moved))
        warnings.warn(
            f"{where}({', '.join(f'{k}=...' for k in old)}) is deprecated in eegsal "
            f"0.1 and will be removed in 0.2; use {where}({new}) instead "
            f"(from eegsal.guidance import {classes}).",
            FutureWarning,
            stacklevel=stacklevel,
        )
    return moved


def _resolve_deprecated(
    old: dict, guidance, distillation, where: str, *, stacklevel: int = 4
) -> tuple:
    """Return ``(guidance, distillation)`` with the deprecated keywords ``old`` in.

    Objects built from the old keywords; a TypeError when an object is given
    too, since the two forms would set the same values.
    """
    given = {"guidance": guidance, "distillation": distillation}
    for owner in given:
        both = [k for k in old if _DEPRECATED.get(k, ("",))[0] == owner]
        if both and given[owner] is not None:
            raise TypeError(
                f"{where}() got both {owner}= and the deprecated "
                f"{'=, '.join(both)}=; give the settings in "
                f"{owner}={_OWNERS[owner].__name__}(...) only."
            )
    moved = _deprecated_params(old, where, stacklevel=stacklevel)
    for owner, kw in moved.items():
        given[owner] = _OWNERS[owner](**kw)
    return given["guidance"], given["distillation"]


def _as_object(value, owner: str):
    """Return the :class:`Guidance` or :class:`Distillation` of a value (or None).

    ``value`` is the object, a mapping of its parameters, or None.
    """
    cls = _OWNERS[owner]
    if isinstance(value, Mapping):  # e.g. a study config's decode.params.guidance
        names = cls._get_param_names()
        unknown = sorted(set(value) - set(names))
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), names, n=1)
            raise TypeError(
                f"{owner}: {unknown[0]!r} is not a parameter of {cls.__name__}; "
                f"its parameters are {', '.join(names)}."
                + (f" Did you mean {close[0]!r}?" if close else "")
            )
        return cls(**value)
    validate_type(value, (cls, None), owner, f"{cls.__name__}, a mapping or None")
    return value


def make_mask(
    epochs: mne.BaseEpochs,
    *,
    channels: list[str] | None = None,
    tmin: float | None = None,
    tmax: float | None = None,
    annotations: str | list[str] | None = None,
) -> np.ndarray:
    """Build a mask of channel x time cells, for every epoch or for each one.

    Parameters
    ----------
    epochs : mne.Epochs
        The epochs the mask applies to (EEG channels, in order).
    channels : list of str | None
        Channels of the mask; None takes all.
    tmin, tmax : float | None
        Time window of the mask (s, inclusive); None: the epoch's start or end.
    annotations : str | list of str | None
        Descriptions of annotations (e.g. ``'BAD_eye'``): the mask is then
        per epoch, true where an annotation with one of these descriptions
        overlaps the epoch (on ``channels`` only, or on the annotation's own
        channels when it names some and ``channels`` is None).

    Returns
    -------
    mask : ndarray of bool
        True on the cells of the mask: shape (n_channels, n_times), or
        (n_epochs, n_channels, n_times) with ``annotations``.
    """
    picks = mne.pick_types(epochs.info, eeg=True)
    names = [epochs.ch_names[i] for i in picks]
    times = epochs.times
    if channels is not None:
        unknown = sorted(set(channels) - set(names))
        if unknown:
            raise ValueError(
                f"channels {unknown} are not EEG channels of the epochs; they have "
                f"{names}."
            )
    rows = np.ones(len(names), bool) if channels is None else np.isin(names, channels)
    lo = times[0] if tmin is None else tmin
    hi = times[-1] if tmax is None else tmax
    cols = (times >= lo - 1e-9) & (times <= hi + 1e-9)
    if annotations is None:
        return rows[:, None] & cols[None, :]
    wanted = {annotations} if isinstance(annotations, str) else set(annotations)
    mask = np.zeros((len(epochs), len(names), len(times)), bool)
    per_epoch = epochs.get_annotations_per_epoch()
    for e, annots in enumerate(per_epoch):
        for onset, duration, description in annots:
            if description not in wanted:
                continue
            sel = cols & (times >= onset - 1e-9) & (times <= onset + duration + 1e-9)
            mask[e][np.ix_(rows, sel)] = True
    return mask
