"""Correlations between a map and the effect of perturbing what it ranks.

Two complementary readings of "the map says how much each cell matters":
:func:`faithfulness_correlation` perturbs random subsets of cells at once
(Bhatt et al., 2020), :func:`monotonicity_correlation` one patch at a time
(Nguyen & Martinez, 2020).
"""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from eegsal._check import check_option, check_random_state
from eegsal._docs import fill_doc
from eegsal._logging import logger, verbose
from eegsal.evaluation.faithfulness import (
    PERTURBATIONS,
    explained_batches,
    patch_cells,
    patch_sums,
    perturbation_reference,
)

__all__ = ["faithfulness_correlation", "monotonicity_correlation"]


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    ac = a - a.mean(1, keepdims=True)
    bc = b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ac * bc).sum(1) / np.sqrt((ac**2).sum(1) * (bc**2).sum(1))


def _one_patch_out(forward, x, ref, cells_of, batch_size, device) -> np.ndarray:
    """Score copies of one epoch ``x``, each with one patch set to ``ref``."""
    import torch

    flat, out = x.reshape(-1), []
    for p0 in range(0, len(cells_of), batch_size):
        cells = cells_of[p0 : p0 + batch_size]
        xs = np.repeat(flat[None], len(cells), axis=0)
        rows = np.broadcast_to(np.arange(len(cells))[:, None], cells.shape)
        ok = cells >= 0
        xs[rows[ok], cells[ok]] = ref[cells[ok]]
        xt = torch.from_numpy(xs.reshape(-1, *x.shape)).to(device)
        out.append(forward(xt).double().cpu().numpy())
    return np.concatenate(out)


def _with_metadata(table: pd.DataFrame, attr) -> pd.DataFrame:
    if attr.metadata is not None:
        table = table.join(attr.metadata.reset_index(drop=True))
    return table


@fill_doc
@verbose
def faithfulness_correlation(
    result_or_model,
    epochs: mne.BaseEpochs,
    attr,
    *,
    n_subsets: int = 100,
    subset_size: int | None = None,
    perturbation: str = "zeros",
    subsets: np.ndarray | None = None,
    batch_size: int = 64,
    seed: int | np.random.Generator | None = 0,
    device: str = "auto",
    verbose: bool | str | int | None = None,
) -> pd.DataFrame:
    """Correlation between a map's mass on random cell subsets and the score they carry.

    For each epoch, ``n_subsets`` random subsets of ``subset_size`` cells are
    replaced by the ``perturbation`` reference; the Pearson correlation
    between the summed attribution of each subset and the drop of the target
    it causes is the epoch's faithfulness correlation (Bhatt et al., 2020).

    Parameters
    ----------
    result_or_model : DecodingResult | torch.nn.Module
        What ``attr`` explains.
    epochs : mne.Epochs
        The explained epochs.
    attr : Attributions
        The maps (channels x time).
    n_subsets : int
        Random subsets per epoch.
    subset_size : int | None
        Cells per subset; None takes 5 % of the map.
    perturbation : str
        ``'zeros'``, ``'mean'``, ``'noise'`` or ``'phase'``.
    subsets : ndarray of int, shape (n_epochs, n_subsets, subset_size) | None
        Exactly these subsets (flat cell indices), e.g. to reproduce another
        tool's draws; None draws them with ``seed``.
    batch_size : int
        Epochs per forward pass.
    %(seed)s
    %(device)s
    %(verbose)s

    Returns
    -------
    table : pandas.DataFrame
        One row per epoch: ``correlation``, with the metadata.

    References
    ----------
    .. [1] Bhatt U, Weller A, Moura JMF (2020). Evaluating and aggregating
       feature-based model explanations. IJCAI.
    """
    import torch

    check_option("perturbation", perturbation, PERTURBATIONS)
    picks = mne.pick_types(epochs.info, eeg=True)
    n, n_cells = len(epochs), len(picks) * len(epochs.times)
    rng = check_random_state(seed)
    size = subset_size or max(1, n_cells // 20)
    if subsets is None:
        draws = [rng.choice(n_cells, size, replace=False) for _ in range(n * n_subsets)]
        subsets = np.stack(draws).reshape(n, n_subsets, size)
    subsets = np.asarray(subsets)
    if subsets.ndim != 3 or len(subsets) != n:
        raise ValueError(
            f"subsets must have shape (n_epochs={n}, n_subsets, subset_size), "
            f"got {subsets.shape}."
        )
    corr = np.full(n, np.nan)
    for forward, b, x, a, cls in explained_batches(
        result_or_model, epochs, attr, batch_size=batch_size, device=device,
        desc="faithfulness correlation",
    ):  # fmt: skip
        dev = cls.device
        ref = perturbation_reference(x, perturbation, rng).reshape(len(b), -1)
        a = a.reshape(len(b), -1)
        flat = x.reshape(len(b), -1)
        rows = np.arange(len(b))[:, None]
        with torch.no_grad():
            xt = torch.from_numpy(x).to(dev)
            y0 = forward(xt).gather(1, cls)[:, 0].double().cpu().numpy()
            drops, sums = [], []
            for r in range(subsets.shape[1]):
                cells = subsets[b, r]
                xs = flat.copy()
                xs[rows, cells] = ref[rows, cells]
                out = forward(torch.from_numpy(xs.reshape(x.shape)).to(dev))
                drops.append(y0 - out.gather(1, cls)[:, 0].double().cpu().numpy())
                sums.append(a[rows, cells].sum(axis=1))
        corr[b] = _rowwise_pearson(np.stack(drops, 1), np.stack(sums, 1))
    table = pd.DataFrame({"epoch": np.arange(n), "correlation": corr})
    return _with_metadata(table, attr)


@fill_doc
@verbose
def monotonicity_correlation(
    result_or_model,
    epochs: mne.BaseEpochs,
    attr,
    *,
    patch: tuple[int, int] = (1, 10),
    perturbation: str = "noise",
    n_samples: int = 5,
    batch_size: int = 256,
    seed: int | np.random.Generator | None = 0,
    device: str = "auto",
    verbose: bool | str | int | None = None,
) -> pd.DataFrame:
    """Rank correlation between a map's mass per patch and the effect of that patch.

    Each patch of ``patch`` = (channels, samples) cells is replaced, alone, by
    the ``perturbation`` reference (``n_samples`` draws for the random ones);
    its effect is the mean squared change of the explained target. The
    Spearman correlation, over patches, between the patch's summed absolute
    attribution and its effect is the epoch's monotonicity correlation
    (Nguyen & Martinez, 2020): 1 when the map orders the patches exactly as
    the model's sensitivity to them does.

    Parameters
    ----------
    result_or_model : DecodingResult | torch.nn.Module
        What ``attr`` explains.
    epochs : mne.Epochs
        The explained epochs.
    attr : Attributions
        The maps (channels x time).
    patch : tuple of int
        Patch size (channels, samples); (1, 1) perturbs single cells (one
        forward pass per cell and epoch: slow on long epochs).
    perturbation : str
        ``'zeros'``, ``'mean'``, ``'noise'`` or ``'phase'`` (see
        :func:`eegsal.evaluation.faithfulness.perturbation_reference`).
    n_samples : int
        Draws of the reference per patch; the deterministic references
        (``'zeros'``, ``'mean'``) use one.
    batch_size : int
        Perturbed copies per forward pass.
    %(seed)s
    %(device)s
    %(verbose)s

    Returns
    -------
    table : pandas.DataFrame
        One row per epoch: ``correlation``, with the metadata.

    References
    ----------
    .. [1] Nguyen A, Martinez MR (2020). On quantitative aspects of model
       interpretability. arXiv:2007.07584.
    """
    import torch

    check_option("perturbation", perturbation, PERTURBATIONS)
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
    picks = mne.pick_types(epochs.info, eeg=True)
    n = len(epochs)
    shape = (1, len(picks), len(epochs.times))
    if attr.data.shape[1:] != shape[1:] or len(attr) != n:
        raise ValueError(
            f"attr has shape {attr.data.shape}; the epochs give "
            f"{(n, *shape[1:])}: pass the explained epochs."
        )
    rng = check_random_state(seed)
    draws = 1 if perturbation in ("zeros", "mean") else n_samples
    cells_of = patch_cells(shape, patch)
    n_patches = len(cells_of)
    logger.info(
        "monotonicity: %d epochs x %d patches of %s x %d draws",
        n, n_patches, patch, draws,
    )  # fmt: skip
    corr = np.full(n, np.nan)
    for forward, b, x, a, cls in explained_batches(
        result_or_model, epochs, attr, batch_size=batch_size, device=device,
        desc="monotonicity correlation",
    ):  # fmt: skip
        dev = cls.device
        mass = patch_sums(np.abs(a), patch)
        effect = np.zeros((len(b), n_patches))
        with torch.no_grad():
            xt = torch.from_numpy(x).to(dev)
            y0 = forward(xt).gather(1, cls)[:, 0].double().cpu().numpy()
            for _ in range(draws):
                ref = perturbation_reference(x, perturbation, rng)
                ref = ref.reshape(len(b), -1)
                for i in range(len(b)):
                    y = _one_patch_out(forward, x[i], ref[i], cells_of, batch_size, dev)
                    effect[i] += (y[:, cls[i, 0]] - y0[i]) ** 2 / draws
        corr[b] = _rowwise_pearson(rankdata(mass, axis=1), rankdata(effect, axis=1))
    table = pd.DataFrame({"epoch": np.arange(n), "correlation": corr})
    return _with_metadata(table, attr)
