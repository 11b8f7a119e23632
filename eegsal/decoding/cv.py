"""Subject-grouped cross-validation of a decoder on epochs: :func:`decode`."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import mne
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import BaseCrossValidator, GroupKFold, LeaveOneGroupOut
from torch import nn

from eegsal._check import validate_type
from eegsal._docs import fill_doc
from eegsal._logging import logger, progress, verbose
from eegsal.alignment import fit_alignment
from eegsal.augmentation import TRANSFER_AUGMENT
from eegsal.data.reader import EpochsReader, take
from eegsal.decoding.checks import _identity
from eegsal.decoding.estimator import EEGDecoder
from eegsal.decoding.networks import get_device
from eegsal.decoding.result import DecodingResult, _scores
from eegsal.guidance import _DEPRECATED, _as_object, _resolve_deprecated
from eegsal.models import model_name, model_params_for

__all__ = ["TRANSFER_DECODER", "decode"]

#: :func:`decode` keywords of the decoder measured across subjects on the real
#: motor EEG (``benchmarks/bench_motor_decoding.py``, README; described in
#: ``docs/api.rst``), its training budget included. Copy it
#: (``TRANSFER_DECODER | {...}``) to change a value.
TRANSFER_DECODER: dict[str, Any] = {
    "model": "shallow",
    "model_params": {"filter_s": 0.31, "pool_s": None},
    "lr": 6.25e-4,
    "align": "euclidean",
    "augment": TRANSFER_AUGMENT,
    "max_epochs": 30,
    "patience": 10,
    "min_epochs": 10,
}


def _fit_fold(
    base, X, y, g, train, test, classes, per_epoch_mask, teacher=None, maps=None
):
    """Train one fold's decoder; return its test probabilities and CPU module."""
    clf = clone(base)
    if per_epoch_mask is not None:  # one mask per epoch: the fold's own
        clf.set_params(guidance__mask=per_epoch_mask[train])
    if teacher is not None:  # the teacher's logits of the training epochs only
        clf.set_params(distillation__teacher=teacher[train])
    if maps is not None:  # and its maps of them
        clf.set_params(distillation__maps=maps[train])
    clf = clf.fit(take(X, train), y[train], groups=g[train])
    # a fold's training set may miss a class: map its columns to all classes
    p = np.zeros((len(test), len(classes)))
    p[:, np.searchsorted(classes, clf.classes_)] = clf.predict_proba(
        take(X, test), groups=g[test]
    )
    return p, clf.module_.cpu(), clf.n_epochs_trained_


def _teacher_maps(teacher, epochs: mne.BaseEpochs, device: str) -> np.ndarray:
    """Each epoch's saliency map by the teacher's fold model tested on it.

    The gradient of the logit of the epoch's true class with respect to the
    input in µV (:func:`eegsal.attribute`, ``method="saliency"``,
    ``target="logit"``, ``label="true"``): out-of-fold, as the logits are.
    Held in memory, one float32 map per epoch (a study larger than memory
    cannot match explanations yet).
    """
    from eegsal.attribution import attribute

    attr = attribute(teacher, epochs, method="saliency", target="logit",
                     label="true", device=device, verbose=False)  # fmt: skip
    return np.asarray(attr.data, dtype=np.float32)


def _teacher_logits(teacher, epochs: mne.BaseEpochs, classes: np.ndarray):
    """Return the out-of-fold logits of a teacher result, one row per epoch."""
    if not isinstance(teacher, DecodingResult):
        raise TypeError(
            "decode(distillation=Distillation(teacher)) takes the DecodingResult "
            "of the teacher, decoded from the same epochs; got "
            f"{type(teacher).__name__}."
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
        seed + 1, ...``, their probabilities averaged);
        :data:`TRANSFER_DECODER` holds the combination measured across
        subjects on real motor EEG.
        Training with the maps: ``guidance=Guidance(...)``
        (:class:`eegsal.guidance.Guidance`, or a mapping of its parameters,
        as a study config's ``decode.params.guidance`` gives them); a
        ``mask`` with one mask per epoch gives each fold those of its
        training epochs. Masks name electrodes: ``align='euclidean'``
        refuses them.
        Knowledge distillation (Hinton et al., 2015):
        ``distillation=Distillation(result, temperature=4.0, weight=0.5)``
        (:class:`eegsal.guidance.Distillation`), ``result`` the
        :class:`DecodingResult` of a teacher decoded from the same epochs
        (:meth:`DecodingResult.check_epochs`). The soft targets
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
        scheme would retrain the teacher inside each student fold
        (``analyses/distillation.py --nested`` does; on the real motor data
        the distilled student then scored 0.561, against 0.614 here).
        The keywords that ``guidance`` and ``distillation`` replace
        (``rrr_mask=``, ``rrr_weight=``..., ``teacher=``,
        ``distill_temperature=``, ``distill_weight=``; see
        :class:`EEGDecoder`) are taken until eegsal 0.2, with a
        :class:`FutureWarning`.

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
    guidance = _as_object(decoder_params.pop("guidance", None), "guidance")
    distillation = _as_object(decoder_params.pop("distillation", None), "distillation")
    old = {k: decoder_params.pop(k) for k in list(decoder_params) if k in _DEPRECATED}
    if old:  # the keywords of before Guidance and Distillation
        guidance, distillation = _resolve_deprecated(
            old, guidance, distillation, "decode", stacklevel=5
        )
    teacher = soft = teacher_maps = None
    if distillation is not None:
        teacher = distillation.teacher
        if distillation.maps is not None:
            raise ValueError(
                "decode(distillation=Distillation(maps=...)): decode computes the "
                "teacher's maps itself, out of fold, from the teacher result; leave "
                "maps out (it is for EEGDecoder, one map per epoch of X)."
            )
        # each fold gets its training epochs' out-of-fold targets (_fit_fold)
        distillation = type(distillation)(
            **(distillation.get_params(deep=False) | {"teacher": None, "maps": None})
        )
        if teacher is not None:
            soft = _teacher_logits(teacher, epochs, np.unique(y))
            if distillation.explanation_weight:
                teacher_maps = _teacher_maps(teacher, epochs, device)
    for name, value in (("guidance", guidance), ("distillation", distillation)):
        if value is not None:
            decoder_params[name] = value
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
    if guidance is not None and np.ndim(guidance.mask) == 3:
        per_epoch_mask = np.asarray(guidance.mask, bool)
        if per_epoch_mask.shape != X.shape:
            raise ValueError(
                f"Guidance.mask has shape {per_epoch_mask.shape}; one mask per epoch "
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
        delayed(_fit_fold)(base, X, y, g, train, test, classes, per_epoch_mask, soft,
                           teacher_maps)  # fmt: skip
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
            clf.set_params(guidance__mask=per_epoch_mask)
        if soft is not None:
            clf.set_params(distillation__teacher=soft)
        if teacher_maps is not None:
            clf.set_params(distillation__maps=teacher_maps)
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
        # (guidance and distillation as mappings; the teacher is config["teacher"])
        # (copies: editing result.config leaves the caller's dicts, e.g. a
        # TRANSFER_DECODER's augment, as they were)
        decoder_params={
            k: v.get_params(deep=False)
            if k in ("guidance", "distillation")
            else copy.deepcopy(v) if isinstance(v, dict) else v
            for k, v in decoder_params.items()
            if k != "model_params"
        },
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
