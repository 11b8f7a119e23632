"""Scores within contexts: balanced accuracy and AUC, restricted permutations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from eegsal._check import check_random_state
from eegsal._docs import fill_doc
from eegsal._logging import logger, progress, verbose
from eegsal.stats._context import (
    _ba_by,
    _check_result,
    _column,
    _Context,
    _pooled,
)
from eegsal.stats.permutations import shuffle, strata_rows

if TYPE_CHECKING:  # eegsal.stats imports without torch
    from eegsal.decoding import DecodingResult

__all__ = [
    "holm",
    "within_context_scores",
]


def _ba_many(codes, pred_codes, n_labels, ctx_of, sizes) -> np.ndarray:
    """:func:`_ba_by` and the pooled score of many label permutations at once.

    ``codes`` (P, N) are the permuted label codes (indices into the sorted
    labels), ``pred_codes`` (N,) the predictions' (-1: not a true label),
    ``ctx_of`` (N,) each epoch's context, ``sizes`` (K,) the contexts'
    epochs. Two ``bincount`` calls over (permutation, context, label) give
    every count; returns (P, K + 1): the contexts' scores, then the pooled one.
    """
    n_perm, n_ctx = len(codes), len(sizes)
    idx = ((np.arange(n_perm)[:, None] * n_ctx + ctx_of) * n_labels + codes).ravel()
    size = n_perm * n_ctx * n_labels
    n = np.bincount(idx, minlength=size).reshape(n_perm, n_ctx, n_labels)
    hit = (codes == pred_codes).ravel().astype(float)
    h = np.bincount(idx, hit, size).reshape(n_perm, n_ctx, n_labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        ba = (h / n).mean(-1)
    ba = np.where((n > 0).all(-1), ba, np.nan)
    ok = ~np.isnan(ba)
    w = np.where(ok, sizes, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (np.where(ok, ba, 0.0) * w).sum(1) / w.sum(1)
    return np.column_stack([ba, np.where(ok.any(1), pooled, np.nan)])


def holm(p: np.ndarray | pd.Series) -> np.ndarray:
    """Holm-adjusted p-values of a family of tests; NaN (untested) stays NaN.

    Holm's step-down correction (Holm, 1979) controls the family-wise error
    rate of the defined p-values; an adjusted value below ``alpha`` rejects at
    level ``alpha``. Computed by :func:`statsmodels.stats.multitest.multipletests`.

    Parameters
    ----------
    p : array-like, shape (n_tests,)
        Unadjusted p-values (NaN for a test that could not be run).

    Returns
    -------
    p_holm : ndarray, shape (n_tests,)
        Adjusted p-values.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


class _CellAUC:
    """Area under the ROC curve within subject x context cells, for permutations.

    The probability of the second class is ranked within each cell once; a
    permutation of the labels within cells changes only which ranks are
    summed, so each permuted AUC is one weighted ``bincount``. A context's AUC
    is the mean of its cells' AUCs weighted by the cells' epochs (cells that
    hold one class only are left out); subject offsets and context offsets of
    the probabilities therefore do not enter it.
    """

    def __init__(self, score, positive, cells, contexts):
        n = len(score)
        self.cell = np.empty(n, int)
        self.rank = np.empty(n)
        for c, rows in enumerate(cells):
            self.cell[rows] = c
            self.rank[rows] = stats.rankdata(score[rows])
        self.positive, n_cells = positive, len(cells)
        self.n1 = np.bincount(self.cell, positive(None), n_cells)
        size = np.bincount(self.cell, minlength=n_cells).astype(float)
        self.n0 = size - self.n1
        self.ok = (self.n1 > 0) & (self.n0 > 0)
        # weight of each cell in each context (rows) and in the pooled score
        ctx_of = np.empty(n, int)
        for k, rows in enumerate(contexts):
            ctx_of[rows] = k
        first = np.array([rows[0] for rows in cells])
        w = np.zeros((len(contexts) + 1, n_cells))
        w[ctx_of[first], np.arange(n_cells)] = np.where(self.ok, size, 0.0)
        w[-1] = np.where(self.ok, size, 0.0)
        total = w.sum(1, keepdims=True)
        self.weights = np.divide(w, total, out=np.full_like(w, np.nan),
                                 where=total > 0)  # fmt: skip

    def many(self, pos: np.ndarray) -> np.ndarray:
        """Score P permutations from their positives (P, N): AUCs (P, K + 1)."""
        n_perm, n_cells = len(pos), len(self.n1)
        idx = (np.arange(n_perm)[:, None] * n_cells + self.cell).ravel()
        r1 = np.bincount(idx, (self.rank * pos).ravel(), n_perm * n_cells)
        r1 = r1.reshape(n_perm, n_cells)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (r1 - self.n1 * (self.n1 + 1) / 2) / (self.n1 * self.n0)
        auc = np.where(self.ok, auc, 0.0)
        undefined = np.isnan(self.weights[:, 0])
        return np.array([np.where(undefined, np.nan, self.weights @ a) for a in auc])

    def __call__(self, y) -> np.ndarray:
        pos = self.positive(y)
        r1 = np.bincount(self.cell, self.rank * pos, len(self.n1))
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (r1 - self.n1 * (self.n1 + 1) / 2) / (self.n1 * self.n0)
        auc = np.where(self.ok, auc, 0.0)
        return np.where(np.isnan(self.weights[:, 0]), np.nan, self.weights @ auc)


_PERM_BLOCK = 256  # permutations scored together


@fill_doc
@verbose
def within_context_scores(
    result: DecodingResult,
    context: str | list[str] | None = "stage",
    *,
    covariates: str | list[str] | None = None,
    n_bins: int = 4,
    groups: str = "subject",
    n_permutations: int = 1000,
    return_null: bool = False,
    seed: int | np.random.Generator | None = 0,
    verbose: bool | str | int | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Balanced accuracy within each context, with restricted permutation p-values.

    A decoder that reads only the context (e.g. the sleep stage that
    co-occurs with the content) has no information left once the context is
    held fixed: within each context it scores at chance. The null
    distribution shuffles the true labels within subject x context strata,
    keeping the predictions, so neither the subject nor the context of any
    label moves: the labels are exchangeable within each stratum under the
    null hypothesis that, the context held fixed, the predictions carry no
    information about them. The p-values are about the epochs at hand
    (:func:`across_subjects` speaks for the population of subjects).

    The context may be finer than one column: several categorical columns
    (``context=["stage", "task"]``) and continuous ``covariates`` (depth of
    sleep within a stage as delta power, time of night...), each cut into
    ``n_bins`` quantile bins within each categorical stratum (pooled over
    subjects). A context is then one cell of categories x bins, e.g.
    ``'N2, delta_power q1'``. Bins hold a covariate only roughly fixed: a
    decoder that reads the covariate keeps a little of it within each bin;
    :func:`context_regression` adjusts for it linearly instead.

    Parameters
    ----------
    result : DecodingResult
        Out-of-fold predictions whose table holds ``context``,
        ``covariates`` and ``groups``.
    context : str | list of str | None
        The categorical context column(s) (``'stage'``, task, session...).
    covariates : str | list of str | None
        Continuous context columns (numbers, e.g. ``'delta_power'``), held
        fixed by quantile bins.
    n_bins : int
        Quantile bins of each covariate within each categorical stratum.
    groups : str
        The subject column.
    n_permutations : int
        Permutations.
    return_null : bool
        Also return the permutation scores.
    seed : int | numpy.random.Generator | None
        Seed of the permutations.
    %(verbose)s

    Returns
    -------
    scores : pandas.DataFrame
        One row per context value and a last row ``'all (within-context)'``
        (of the tested epochs: :meth:`DecodingResult.tested_predictions`),
        the mean of the within-context scores weighted by their epochs:
        ``n, balanced_accuracy, null_mean, null_95, p, p_holm``. ``p`` is
        ``(1 + #{null >= observed}) / (1 + n_permutations)``, one-sided;
        ``p_holm`` corrects the per-context p-values for testing every
        context (Holm, 1979; :func:`holm`); on the pooled row, a single
        test, it equals ``p``. ``roc_auc`` is threshold-free: the area under
        the ROC curve of the out-of-fold probability of the second class,
        computed within each subject x context cell and averaged over the
        cells weighted by their epochs, so that a context whose offset pushes
        every prediction to one class (balanced accuracy 0.5) still shows
        content the probabilities rank; ``p_auc`` is its p-value under the
        same permutations (two classes only; NaN otherwise or without
        probabilities). The verdict (:func:`verdict_text`) rests on the
        balanced accuracy.
    null : pandas.DataFrame
        Only with ``return_null``: one row per permutation x row of
        ``scores``: ``permutation``, the context, ``balanced_accuracy``,
        ``roc_auc``.

    Examples
    --------
    >>> eegsal.stats.within_context_scores(result, "stage")  # doctest: +SKIP
    """
    _check_result(result)
    pred = result.tested_predictions()
    y_true = _column(pred, "y_true").astype(str)
    y_pred = _column(pred, "y_pred").astype(str)
    fixed = _Context(pred, context, covariates, n_bins)
    ctx, subj, values = fixed.key, _column(pred, groups), fixed.values
    context = fixed.name
    contexts = [np.flatnonzero(ctx == v) for v in values]
    sizes = np.array([len(r) for r in contexts], float)
    labels = np.unique(y_true)
    strata = strata_rows(
        pd.DataFrame({"group": subj, "context": ctx}), ["group", "context"]
    )
    classes = [str(c) for c in result.classes]
    proba = f"proba_{classes[-1]}" if len(classes) == 2 else None
    auc = None
    if proba in pred and len(labels) == 2:
        auc = _CellAUC(pred[proba].to_numpy(float),
                       lambda y: (y_true if y is None else y) == classes[-1],
                       strata, contexts)  # fmt: skip

    def scores(y):
        ba = _ba_by(y, y_pred, labels, contexts)
        return np.append(ba, _pooled(ba, contexts))

    observed = scores(y_true)
    obs_auc = auc(y_true) if auc else np.full(len(observed), np.nan)
    rng = check_random_state(seed)
    null = np.empty((n_permutations, len(observed)))
    null_auc = np.full((n_permutations, len(observed)), np.nan)
    # the permutations are drawn stratum by stratum, in order, as label codes;
    # blocks of them are scored at once (two bincounts for all of a block)
    codes = np.searchsorted(labels, y_true)
    pred_codes = np.array([np.searchsorted(labels, v) if v in set(labels) else -1
                           for v in y_pred])  # fmt: skip
    ctx_of = np.empty(len(y_true), int)
    for k, rows in enumerate(contexts):
        ctx_of[rows] = k
    positive = np.searchsorted(labels, classes[-1]) if classes[-1] in labels else -1
    block = np.empty((_PERM_BLOCK, len(y_true)), codes.dtype)
    starts = range(0, n_permutations, _PERM_BLOCK)
    for a in progress(starts, desc="within-context permutations (blocks)"):
        perms = block[: min(_PERM_BLOCK, n_permutations - a)]
        for i in range(len(perms)):
            perms[i] = codes[shuffle(len(codes), strata, rng)]
        null[a : a + len(perms)] = _ba_many(perms, pred_codes, len(labels), ctx_of,
                                            sizes)  # fmt: skip
        if auc:
            null_auc[a : a + len(perms)] = auc.many(perms == positive)
    p = (1 + (null >= observed - 1e-12).sum(0)) / (1 + n_permutations)
    p = np.where(np.isnan(observed), np.nan, p)
    p_auc = (1 + (null_auc >= obs_auc - 1e-12).sum(0)) / (1 + n_permutations)
    p_auc = np.where(np.isnan(obs_auc), np.nan, p_auc)
    p_holm = np.append(holm(p[:-1]), p[-1])
    # a context with one class only has no score, observed or permuted
    defined = np.isfinite(null).any(axis=0)
    null_mean, null_95 = np.full(len(observed), np.nan), np.full(len(observed), np.nan)
    null_mean[defined] = np.nanmean(null[:, defined], axis=0)
    null_95[defined] = np.nanpercentile(null[:, defined], 95, axis=0)
    table = pd.DataFrame(
        {
            context: [*map(str, values), "all (within-context)"],
            "n": [*sizes.astype(int), len(y_true)],
            "balanced_accuracy": observed,
            "null_mean": null_mean,
            "null_95": null_95,
            "p": p,
            "p_holm": p_holm,
            "roc_auc": obs_auc,
            "p_auc": p_auc,
        }
    )
    logger.info("Within-%s scores:\n%s", context, table.round(3).to_string(index=False))
    if not return_null:
        return table
    null_table = pd.DataFrame(
        {
            "permutation": np.repeat(np.arange(n_permutations), len(observed)),
            context: np.tile(table[context].to_numpy(), n_permutations),
            "balanced_accuracy": null.ravel(),
            "roc_auc": null_auc.ravel(),
        }
    )
    return table, null_table
