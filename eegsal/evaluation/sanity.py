"""Model-parameter randomization (Adebayo et al., 2018): do maps need the model."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

import mne
import numpy as np
import pandas as pd
from scipy import stats

from eegsal._check import check_random_state
from eegsal._docs import fill_doc
from eegsal._logging import logger, progress, verbose

if TYPE_CHECKING:
    from torch import nn

__all__ = ["cascading_randomization", "label_randomization", "randomization_test"]


def _parametrized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules with weights, in forward (definition) order."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if name and not list(m.children()) and any(True for _ in m.parameters(False))
    ]


def cascading_randomization(model: nn.Module, seed=0):
    """Yield ``(layer, model)`` with the layers re-initialized from the top down.

    Each yielded model is a copy in which the named layer and every layer
    after it (towards the output) have fresh random parameters (their own
    ``reset_parameters``), as in Adebayo et al. (2018); batch-norm running
    statistics are reset too. An :class:`~eegsal.decoding.Ensemble` (a fold
    trained with ``n_seeds > 1``) is randomized member by member in step: at
    each step the same layer is re-initialized in every member, so that the
    cascade has as many steps as one member has layers and its last step
    leaves no trained parameter in any member.

    Parameters
    ----------
    model : torch.nn.Module
        A trained model or ensemble (left untouched).
    seed : int | numpy.random.Generator | None
        Seed of the re-initialization.

    Yields
    ------
    layer : str
        The lowest layer randomized so far (named within a member, for an
        ensemble).
    randomized : torch.nn.Module
        The partly randomized copy (in eval mode).

    References
    ----------
    .. [1] Adebayo J et al. (2018). Sanity checks for saliency maps. NeurIPS.
    """
    import torch

    from eegsal.decoding.networks import members_of

    rng = check_random_state(seed)
    randomized = copy.deepcopy(model).eval()
    members = members_of(randomized)
    per_member = [_parametrized_layers(m) for m in members]
    for step in reversed(range(len(per_member[0]))):
        name = per_member[0][step][0]
        for layers in per_member:
            layer = layers[step][1]
            torch.manual_seed(int(rng.integers(2**31)))
            if hasattr(layer, "reset_running_stats"):
                layer.reset_running_stats()
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
            else:  # a layer without its own initializer: Gaussian like its weights
                with torch.no_grad():
                    for p in layer.parameters(False):
                        p.normal_(0, float(p.std()) if p.numel() > 1 else 1.0)
        yield name, copy.deepcopy(randomized).eval()


def _randomized_results(result, seed=0):
    """Yield ``(layer, result)``: ``result`` with its fold models randomized in cascade.

    The first item, ``(None, result)``, holds the trained models (rebuilt
    the same way, as a check of the path); then each step re-initializes one
    more layer of every fold model (of every member of an ensemble). Each
    yielded result keeps the folds and the alignment of ``result``, so that
    :meth:`~eegsal.decoding.DecodingResult.explainers` puts each subject's
    alignment in front of its randomized fold model, as for the trained one.
    """
    from eegsal.decoding import DecodingResult

    def rebuild(models):
        return DecodingResult(result.predictions, result.scores, models,
                              result.classes, result.config, model=result.model,
                              alignment=result.alignment)  # fmt: skip

    yield None, rebuild(list(result.models))
    cascades = [cascading_randomization(m, seed) for m in result.models]
    for step in zip(*cascades, strict=True):
        yield step[0][0], rebuild([m for _, m in step])


class _SameFolds:
    """The folds of an earlier result, as a splitter (group-aware by construction)."""

    def __init__(self, fold: np.ndarray):
        self.fold = fold

    def get_n_splits(self, X=None, y=None, groups=None) -> int:  # noqa: D102
        return int(self.fold.max()) + 1

    def split(self, X=None, y=None, groups=None):  # noqa: D102
        for k in range(self.get_n_splits()):
            yield np.flatnonzero(self.fold != k), np.flatnonzero(self.fold == k)


def _same_model_params(result) -> dict:
    """Return the result's model parameters, so that the control gets its model.

    A result saved before eegsal's models took ``sfreq`` was built with the
    published rates' sample sizes: ``sfreq=None`` keeps them.
    """
    params = dict(result.config["model_params"])
    if isinstance(result.model, str):
        params.setdefault("sfreq", None)
    return params


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of |a| and |b|, per epoch."""
    a = np.abs(a.reshape(len(a), -1))
    b = np.abs(b.reshape(len(b), -1))
    return np.array([stats.spearmanr(x, y)[0] for x, y in zip(a, b, strict=True)])


@fill_doc
@verbose
def randomization_test(
    result_or_model,
    epochs: mne.BaseEpochs,
    *,
    method: str | Callable = "saliency",
    threshold: float = 0.5,
    seed: int | np.random.Generator | None = 0,
    verbose: bool | str | int | None = None,
    **attribute_params,
) -> pd.DataFrame:
    """Cascading model-parameter randomization test of an attribution method.

    The maps of the trained model are compared with those of copies whose
    layers are re-initialized one after another from the output down: a
    method that explains the model must lose its maps as the model loses its
    parameters. Similarity is the Spearman rank correlation of the absolute
    maps, per epoch (Adebayo et al., 2018).

    Parameters
    ----------
    result_or_model : DecodingResult | torch.nn.Module
        The trained decoder. For a result, every fold model is randomized
        and each epoch explained by its randomized fold model, through
        :meth:`~eegsal.decoding.DecodingResult.explainers` as
        :func:`eegsal.attribute` does: a result decoded with ``align`` keeps
        each subject's (fixed) alignment in front of the randomized model.
        A fold ensemble (``n_seeds > 1``) is randomized layer by layer in
        every member at once (:func:`cascading_randomization`).
    epochs : mne.Epochs
        Epochs to explain (a few dozen are enough).
    method : str | callable
        An :func:`eegsal.attribute` method, or a function
        ``f(result_or_model, epochs) -> ndarray (n_epochs, n_channels, n_times)``
        (e.g. to test a map that ignores the model).
    threshold : float
        A method is ``flagged`` when the median rank correlation with all
        layers randomized is still above it.
    %(seed)s
    %(verbose)s
    **attribute_params
        Passed to :func:`eegsal.attribute` (``target``, ``label``...).

    Returns
    -------
    table : pandas.DataFrame
        One row per randomized layer (top first): ``layer, depth, spearman``
        (median over epochs), ``q25, q75``, and ``flagged`` (same on all rows).

    References
    ----------
    .. [1] Adebayo J et al. (2018). Sanity checks for saliency maps. NeurIPS.

    Examples
    --------
    >>> eegsal.evaluation.randomization_test(result, epochs[:50])  # doctest: +SKIP
    """
    from eegsal.attribution import attribute
    from eegsal.decoding import DecodingResult
    from eegsal.decoding.networks import members_of

    def explain(obj):
        if callable(method):
            return np.asarray(method(obj, epochs), dtype=np.float64)
        return attribute(obj, epochs, method=method, seed=0, verbose=False,
                         **attribute_params).data  # fmt: skip

    original = explain(result_or_model)
    if isinstance(result_or_model, DecodingResult):  # explained as attribute() does
        steps = _randomized_results(result_or_model, seed)
        next(steps)  # the trained models: ``original``
    else:
        steps = cascading_randomization(result_or_model, seed)
    is_result = isinstance(result_or_model, DecodingResult)
    models = result_or_model.models if is_result else [result_or_model]
    n_layers = len(_parametrized_layers(members_of(models[0])[0]))
    rows = []
    logger.info("Randomizing %d layers, top down", n_layers)
    for depth, (name, obj) in enumerate(
        progress(steps, desc="cascading randomization", total=n_layers)
    ):
        rho = _spearman_rows(original, explain(obj))
        q25, med, q75 = np.nanpercentile(rho, [25, 50, 75])
        rows.append(dict(layer=name, depth=depth + 1, spearman=med, q25=q25, q75=q75))
    table = pd.DataFrame(rows)
    table["flagged"] = bool(table["spearman"].iloc[-1] > threshold)
    if table["flagged"].iloc[0]:
        logger.warning(
            "The maps survive randomizing every layer (rank correlation %.2f): "
            "they do not explain this model.", table["spearman"].iloc[-1],
        )  # fmt: skip
    return table


@fill_doc
@verbose
def label_randomization(
    result,
    epochs: mne.BaseEpochs,
    *,
    method: str = "saliency",
    seed: int | np.random.Generator | None = 0,
    verbose: bool | str | int | None = None,
    **attribute_params,
) -> pd.DataFrame:
    """Compare the maps with those of the same decoder trained on shuffled labels.

    The target labels are permuted within each subject (every subject keeps
    its class counts), the decoder is retrained with the result's model,
    settings and folds, and both are explained with ``method``. A model that
    learned nothing cannot be explained the same way as one that did: maps
    that stay alike (high rank correlation) describe the data or the
    architecture, not what was learned (Adebayo et al., 2018).

    Parameters
    ----------
    result : DecodingResult
        The decoder trained on the true labels.
    epochs : mne.Epochs
        The epochs it was decoded from.
    method : str
        An :func:`eegsal.attribute` method.
    %(seed)s
    %(verbose)s
    **attribute_params
        Passed to :func:`eegsal.attribute`; ``label`` defaults to class 0
        (the true labels differ between the two decoders).

    Returns
    -------
    table : pandas.DataFrame
        One row per epoch: ``spearman`` (absolute maps of the two
        decoders), ``balanced_accuracy_shuffled`` (out-of-fold, of the
        control) and the metadata.
    """
    from eegsal.attribution import attribute
    from eegsal.decoding import decode

    cfg = result.config
    rng = check_random_state(seed)
    meta = epochs.metadata.reset_index(drop=True)
    shuffled = meta[cfg["target"]].to_numpy().copy()
    for rows in meta.groupby(cfg["groups"], sort=False).indices.values():
        shuffled[rows] = shuffled[rng.permutation(rows)]
    control_epochs = epochs.copy()
    control_epochs.metadata = meta.assign(_shuffled=shuffled)
    folds = _SameFolds(result.predictions["fold"].to_numpy())
    logger.info(
        "Training the %s decoder on labels shuffled within subjects", cfg["model"]
    )
    control = decode(control_epochs, "_shuffled", model=result.model,
                     groups=cfg["groups"], cv=folds, seed=cfg["seed"], verbose=False,
                     model_params=_same_model_params(result),
                     **cfg.get("decoder_params", {}))  # fmt: skip
    attribute_params.setdefault("label", 0)
    a = attribute(result, epochs, method=method, verbose=False, **attribute_params)
    b = attribute(control, control_epochs, method=method, verbose=False,
                  **attribute_params)  # fmt: skip
    table = pd.DataFrame({"spearman": _spearman_rows(a.data, b.data)})
    table["balanced_accuracy_shuffled"] = control.scores["balanced_accuracy"].mean()
    return table.join(meta)
