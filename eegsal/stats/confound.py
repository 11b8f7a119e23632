"""Decoding-level controls: does the decoder read the content or the context."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import balanced_accuracy_score

from eegsal._check import (
    check_option,
    check_random_state,
    check_range,
    validate_type,
)
from eegsal._docs import fill_doc
from eegsal._logging import logger, progress, verbose

if TYPE_CHECKING:  # eegsal.stats imports without torch
    from eegsal.decoding import DecodingResult

__all__ = [
    "across_subjects",
    "associated_context",
    "content_verdict",
    "context_regression",
    "explanation_similarity",
    "holm",
    "out_of_fold_logit",
    "subject_scores",
    "verdict_text",
    "within_context_scores",
]


def _check_result(result, name: str = "result") -> None:
    from eegsal.decoding import DecodingResult

    validate_type(result, DecodingResult, name)


def _column(pred: pd.DataFrame, name: str) -> np.ndarray:
    if name not in pred:
        raise ValueError(
            f"{name!r} is not a column of the result's predictions; have "
            f"{list(pred.columns)}."
        )
    return pred[name].to_numpy()


def _names(value: str | list[str] | tuple[str, ...] | None, what: str) -> list[str]:
    if value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) and n for n in names):
        raise TypeError(
            f"{what} must be a column name or a list of them, got {value!r}."
        )
    return names


def _quantile_bins(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-count bins of ``x``, 0 to ``n_bins - 1`` (ties share a bin)."""
    rank = stats.rankdata(x, method="min") - 1
    return np.minimum(rank * n_bins // len(x), n_bins - 1).astype(int)


class _Context:
    """What is held fixed: categorical columns x quantile bins of covariates.

    ``key`` is each epoch's context: the column's own values for a single
    categorical column without covariates (as eegsal always had), else a
    label such as ``'N2, delta_power q1'``; ``values`` are the contexts in
    order (categories sorted, then bins from low to high); ``name`` is the
    column name of the tables (``'stage'``, ``'stage x delta_power'``).
    The bins are quantiles of each covariate within each categorical
    stratum, pooled over subjects.
    """

    def __init__(self, pred: pd.DataFrame, context, covariates, n_bins: int):
        cats = _names(context, "context")
        covs = _names(covariates, "covariates")
        if not cats and not covs:
            raise ValueError("Give a context column, covariates, or both.")
        check_range(n_bins, "n_bins", 1, integer=True)
        self.columns, self.covariates, self.n_bins = cats, covs, n_bins
        self.name = " x ".join(cats + covs)
        if len(cats) == 1 and not covs:
            self.key = _column(pred, cats[0])
            self.values = sorted(pd.unique(self.key), key=str)
            return
        n = len(pred)
        parts = [_column(pred, c).astype(str) for c in cats]
        cat = np.array([", ".join(t) for t in zip(*parts, strict=True)] if cats
                       else [""] * n, dtype=object)  # fmt: skip
        self.cov = np.empty((n, len(covs)))
        for j, c in enumerate(covs):
            x = _column(pred, c)
            if not np.issubdtype(np.asarray(x).dtype, np.number):
                raise ValueError(
                    f"covariates: {c!r} must be numeric (a continuous measure such "
                    f"as delta power), got values like {x[:3].tolist()}; put "
                    "categorical columns in context."
                )
            x = x.astype(float)
            if not np.isfinite(x).all():
                raise ValueError(
                    f"covariates: {c!r} has {int((~np.isfinite(x)).sum())} missing "
                    "or infinite values; fill or drop those epochs first."
                )
            self.cov[:, j] = x
        self.cat = cat
        bins = np.zeros((n, len(covs)), int)
        for v in pd.unique(cat):
            rows = np.flatnonzero(cat == v)
            for j in range(len(covs)):
                bins[rows, j] = _quantile_bins(self.cov[rows, j], n_bins)
        labels = [
            ", ".join(
                ([cat[i]] if cats else [])
                + [f"{c} q{b + 1}" for c, b in zip(covs, bins[i], strict=True)]
            )
            for i in range(n)
        ]
        self.key = np.array(labels, dtype=object)
        order = {
            k: (c, tuple(b)) for k, c, b in zip(labels, cat, bins.tolist(), strict=True)
        }
        self.values = sorted(order, key=order.get)  # categories, then bins

    def words(self) -> str:
        """Say what is held fixed: ``'stage and delta_power'``."""
        return _and(self.columns + self.covariates)


def _strata(*cols: np.ndarray) -> list[np.ndarray]:
    keys = pd.MultiIndex.from_arrays([pd.Index(c) for c in cols])
    return list(
        pd.Series(np.arange(len(keys))).groupby(keys, sort=False).indices.values()
    )


def _ba_by(y_true, y_pred, labels, contexts) -> np.ndarray:
    """Balanced accuracy within each context (NaN where a class is missing).

    The mean recall over ``labels``, as ``balanced_accuracy_score`` computes
    it, by counting: 50x faster, which the permutation loops need.
    """
    n_labels = len(labels)
    codes = np.searchsorted(labels, y_true)
    hit = (y_true == y_pred).astype(float)
    out = np.full(len(contexts), np.nan)
    for k, rows in enumerate(contexts):
        n = np.bincount(codes[rows], minlength=n_labels)
        if (n > 0).all():
            out[k] = (np.bincount(codes[rows], hit[rows], n_labels) / n).mean()
    return out


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


def _pooled(ba: np.ndarray, contexts: list[np.ndarray]) -> float:
    """Mean of the defined within-context scores, weighted by their epochs."""
    ok = ~np.isnan(ba)
    sizes = np.array([len(r) for r in contexts], float)
    return float(np.average(ba[ok], weights=sizes[ok])) if ok.any() else np.nan


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
    strata = _strata(subj, ctx)
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
    # rng.shuffle of each stratum's slice of one buffer draws what
    # rng.permutation(rows) draws, stratum by stratum, without its overhead
    flat = np.concatenate(strata)
    buf = flat.copy()
    bounds = np.cumsum([0, *map(len, strata)])
    views = [buf[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    starts = range(0, n_permutations, _PERM_BLOCK)
    for a in progress(starts, desc="within-context permutations (blocks)"):
        perms = block[: min(_PERM_BLOCK, n_permutations - a)]
        for i in range(len(perms)):
            buf[:] = flat
            for view in views:
                rng.shuffle(view)
            perms[i, flat] = codes[buf]
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


def out_of_fold_logit(result: DecodingResult) -> np.ndarray:
    """Return the decoder's out-of-fold log-odds of the second class, per epoch.

    ``log(p_2 / p_1)`` from the predictions' ``proba_<class>`` columns of a
    two-class decoder (probabilities clipped to [1e-6, 1 - 1e-6]), in the
    order of :meth:`DecodingResult.tested_predictions`.

    Parameters
    ----------
    result : DecodingResult
        A two-class decoder's out-of-fold predictions with probabilities.

    Returns
    -------
    logit : ndarray, shape (n_tested,)
        Log-odds of ``result.classes[1]``.
    """
    _check_result(result)
    classes = [str(c) for c in result.classes]
    pred = result.tested_predictions()
    cols = [f"proba_{c}" for c in classes]
    if len(classes) != 2 or any(c not in pred for c in cols):
        raise ValueError(
            "The regression on the decoder's logit needs a two-class decoder with "
            f"probabilities (columns {cols}); this one has classes {classes} and "
            f"columns {list(pred.columns)}."
        )
    p = np.clip(pred[cols].to_numpy(float), 1e-6, 1 - 1e-6)
    return np.log(p[:, 1]) - np.log(p[:, 0])


def _dummies(values: np.ndarray, drop_first: bool) -> np.ndarray:
    codes, uniques = pd.factorize(values, sort=True)
    out = np.zeros((len(values), len(uniques)))
    out[np.arange(len(values)), codes] = 1.0
    return out[:, 1:] if drop_first else out


def _t_statistics(y: np.ndarray, x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """OLS t of ``x`` in ``y ~ x + Z``, by Frisch-Waugh-Lovell, row by row.

    ``y`` and ``x`` are (n,) or (n_sets, n), broadcast against each other;
    ``basis`` is an orthonormal basis of the columns of Z, shape (n, k).
    """
    y, x = np.atleast_2d(y), np.atleast_2d(x)
    ry = y - (y @ basis) @ basis.T
    rx = x - (x @ basis) @ basis.T
    rx, ry = np.broadcast_arrays(rx, ry)
    sxx = np.einsum("ij,ij->i", rx, rx)
    sxy = np.einsum("ij,ij->i", rx, ry)
    syy = np.einsum("ij,ij->i", ry, ry)
    beta = sxy / sxx
    df = y.shape[-1] - basis.shape[1] - 1
    return beta / np.sqrt(np.maximum(syy - beta**2 * sxx, 0) / df / sxx)


@fill_doc
@verbose
def context_regression(
    result: DecodingResult,
    context: str | list[str] | None = "stage",
    *,
    covariates: str | list[str] | None = None,
    n_bins: int = 4,
    groups: str = "subject",
    permute: str = "residuals",
    n_permutations: int = 1000,
    return_null: bool = False,
    seed: int | np.random.Generator | None = 0,
    verbose: bool | str | int | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Test whether the decoder's logit follows the content, the context adjusted for.

    The out-of-fold logit of a two-class decoder (:func:`out_of_fold_logit`)
    is regressed by ordinary least squares on the content (1 for the second
    class) and the context: ``logit ~ content + C(subject) + C(context...) +
    C(context...):covariates``, the subjects as fixed effects (one intercept
    each), each categorical context column as dummies, each continuous
    covariate as a linear term with its own slope within each categorical
    stratum (delta power means another depth in N2 than in N3). A decoder
    that reads only the context, or a covariate linearly within each
    stratum, leaves a content coefficient near 0.

    The content coefficient's t is tested against its permutation null,
    permuting within subject x context strata (the strata of
    :func:`within_context_scores`: categories x ``n_bins`` quantile bins of
    each covariate), the model refitted each time:

    * ``permute='residuals'`` (Freedman & Lane, 1983; Winkler et al., 2014):
      the residuals of the logit from the model without the content are
      shuffled and added back to its fit. Exchangeable under the null
      hypothesis: the logit's deviations from what the subject and context
      predict, which then carry nothing about the content. It stays valid
      when the content itself varies with a covariate within a bin (content
      more frequent in lighter sleep), as long as the linear terms capture
      how the logit follows the covariate.
    * ``permute='content'``: the content labels are shuffled. Exchangeable
      under the null: the labels within each stratum. A covariate that
      moves the content within a bin breaks that exchangeability (the
      permuted labels lose their relation to it, the observed ones keep
      it), so this null can be off; it is the permutation of
      :func:`within_context_scores`, kept for comparison.

    The p-value is about the epochs at hand.

    Parameters
    ----------
    result : DecodingResult
        Out-of-fold predictions of a two-class decoder, with probabilities.
    context : str | list of str | None
        Categorical context column(s).
    covariates : str | list of str | None
        Continuous context columns (e.g. ``'delta_power'``).
    n_bins : int
        Quantile bins of each covariate for the permutation strata.
    groups : str
        The subject column.
    permute : str
        What is shuffled within strata: ``'residuals'`` (Freedman-Lane) or
        ``'content'``.
    n_permutations : int
        Permutations.
    return_null : bool
        Also return the permutation t values.
    seed : int | numpy.random.Generator | None
        Seed of the permutations.
    %(verbose)s

    Returns
    -------
    regression : pandas.DataFrame
        One row: ``term`` (e.g. ``'content = other'``), ``adjusted_for``,
        ``n``, ``estimate`` (the content coefficient, in log-odds of the
        second class), ``se``, ``t``, ``df`` (the OLS ones, as
        ``statsmodels.OLS`` gives them), ``null_mean`` and ``null_95`` (of
        the permuted t) and ``p``: ``(1 + #{t_null >= t}) / (1 +
        n_permutations)``, one-sided (the decoder's logit rises with the
        content).
    null : ndarray, shape (n_permutations,)
        Only with ``return_null``: the permuted t values.

    References
    ----------
    .. [1] Freedman D, Lane D (1983). A nonstochastic interpretation of
       reported significance levels. J Bus Econ Stat 1, 292-298.
    .. [2] Winkler AM, Ridgway GR, Webster MA, Smith SM, Nichols TE (2014).
       Permutation inference for the general linear model. NeuroImage 92,
       381-397.

    Examples
    --------
    >>> eegsal.stats.context_regression(result, "stage",
    ...                                 covariates="delta_power")  # doctest: +SKIP
    """
    _check_result(result)
    check_option("permute", permute, ("residuals", "content"))
    logit = out_of_fold_logit(result)
    pred = result.tested_predictions()
    fixed = _Context(pred, context, covariates, n_bins)
    subj = _column(pred, groups)
    second = str(result.classes[-1])
    content = (_column(pred, "y_true").astype(str) == second).astype(float)
    columns = [_dummies(subj, drop_first=False)]
    columns += [_dummies(_column(pred, c).astype(str), True) for c in fixed.columns]
    for v in pd.unique(fixed.cat) if fixed.covariates else []:
        rows = fixed.cat == v  # a slope of each covariate within each category
        columns.append(np.where(rows[:, None], fixed.cov - fixed.cov[rows].mean(0), 0))
    design = np.column_stack(columns)
    u, sv, _ = np.linalg.svd(design, full_matrices=False)
    basis = u[:, sv > sv[0] * len(sv) * np.finfo(float).eps]
    if len(logit) - basis.shape[1] - 1 < 1:
        raise ValueError(
            f"{len(logit)} epochs are too few to adjust for {basis.shape[1]} "
            "subject and context terms."
        )
    observed = float(_t_statistics(logit, content, basis)[0])
    ry = logit - basis @ (basis.T @ logit)
    rx = content - basis @ (basis.T @ content)
    estimate = float(rx @ ry / (rx @ rx))
    strata = _strata(subj, fixed.key)
    rng = check_random_state(seed)
    null = np.empty(n_permutations)
    chunk = 100  # permutations refitted at once
    # the residuals of the model without the content: its fit is in the span
    # of the basis, so refitting fit + shuffled residuals needs the residuals only
    shuffled = ry if permute == "residuals" else content
    perms = np.empty((chunk, len(content)))
    for i in progress(range(n_permutations), desc="regression permutations"):
        for rows in strata:
            perms[i % chunk, rows] = shuffled[rng.permutation(rows)]
        if i % chunk == chunk - 1 or i == n_permutations - 1:
            done = i % chunk + 1
            y, x = (perms[:done], content) if permute == "residuals" else (
                logit, perms[:done])  # fmt: skip
            null[i + 1 - done : i + 1] = _t_statistics(y, x, basis)
    p = (1 + (null >= observed - 1e-12).sum()) / (1 + n_permutations)
    within = f" within {' x '.join(fixed.columns)}" if fixed.columns else ""
    linear = [f"{c} (linear{within})" for c in fixed.covariates]
    adjusted = " + ".join([f"{groups} (fixed)", *fixed.columns, *linear])
    table = pd.DataFrame(
        [
            dict(
                term=f"{result.config.get('target', 'content')} = {second}",
                adjusted_for=adjusted,
                n=len(logit),
                estimate=estimate,
                se=estimate / observed if observed else np.nan,
                t=observed,
                df=len(logit) - basis.shape[1] - 1,
                null_mean=float(np.mean(null)),
                null_95=float(np.percentile(null, 95)),
                p=p,
            )
        ]
    )
    logger.info("Content coefficient on the logit:\n%s",
                table.round(3).to_string(index=False))  # fmt: skip
    return (table, null) if return_null else table


def subject_scores(
    result: DecodingResult,
    context: str | list[str] | None = "stage",
    *,
    covariates: str | list[str] | None = None,
    n_bins: int = 4,
    groups: str = "subject",
) -> pd.DataFrame:
    """Each subject's balanced accuracy within contexts, pooled over contexts.

    Parameters
    ----------
    result : DecodingResult
        Out-of-fold predictions whose table holds ``context``,
        ``covariates`` and ``groups``.
    context : str | list of str | None
        The categorical context column(s).
    covariates : str | list of str | None
        Continuous context columns, held fixed by quantile bins (the bins of
        :func:`within_context_scores`: within categorical strata, pooled over
        subjects).
    n_bins : int
        Quantile bins of each covariate.
    groups : str
        The subject column.

    Returns
    -------
    scores : pandas.DataFrame
        One row per subject: ``groups``, ``n`` (epochs) and
        ``balanced_accuracy`` (the within-context scores of the subject,
        weighted by their epochs; NaN when no context holds both classes).
    """
    _check_result(result)
    pred = result.tested_predictions()
    y_true = _column(pred, "y_true").astype(str)
    y_pred = _column(pred, "y_pred").astype(str)
    ctx = _Context(pred, context, covariates, n_bins).key
    subj = _column(pred, groups)
    labels = np.unique(y_true)
    rows = []
    for s in pd.unique(subj):
        idx = np.flatnonzero(subj == s)
        ctxs = [idx[ctx[idx] == v] for v in pd.unique(ctx[idx])]
        ba = _pooled(_ba_by(y_true, y_pred, labels, ctxs), ctxs)
        rows.append({groups: s, "n": len(idx), "balanced_accuracy": ba})
    return pd.DataFrame(rows)


def across_subjects(subjects: pd.DataFrame) -> tuple[int, float, float]:
    """Test each subject's within-context score against chance, over subjects.

    The one-sided Wilcoxon signed-rank test of the subjects' balanced
    accuracies against 0.5: the subjects are the units, so the claim is
    about the population they were drawn from, not about the epochs at hand.

    Parameters
    ----------
    subjects : pandas.DataFrame
        :func:`subject_scores` (its ``balanced_accuracy`` column; NaN rows,
        subjects with no context holding both classes, are left out).

    Returns
    -------
    n : int
        Subjects with a score.
    mean : float
        Their mean balanced accuracy (NaN without any).
    p : float
        One-sided p-value (NaN with fewer than 2 subjects, or when every
        subject scores exactly 0.5).
    """
    ba = subjects["balanced_accuracy"].dropna().to_numpy(float)
    p = np.nan
    if len(ba) >= 2 and np.any(ba != 0.5):
        p = float(stats.wilcoxon(ba - 0.5, alternative="greater").pvalue)
    return len(ba), float(ba.mean()) if len(ba) else np.nan, p


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def verdict_text(
    within: pd.DataFrame,
    subjects: pd.DataFrame,
    *,
    target: str = "content",
    context: str = "stage",
    alpha: float = 0.05,
    overall: float | None = None,
    regression: pd.DataFrame | None = None,
) -> str:
    """Say in plain words whether the decoder reads more than the context.

    The one wording of the verdict, used by :func:`content_verdict` (its
    ``reading``), the study report and ``summary.txt`` (which ``eegsal run``
    prints). The effect *holds* only when every test rejects at ``alpha``:
    the within-context score pooled over contexts (restricted permutations,
    :func:`within_context_scores`), the across-subject test
    (:func:`across_subjects`) and, when given, the content coefficient of
    the regression on the decoder's logit (:func:`context_regression`).
    Single contexts are named when their p-value, Holm-corrected for testing
    every context, is below ``alpha``.

    Parameters
    ----------
    within : pandas.DataFrame
        :func:`within_context_scores` (its last row pooled); tables without a
        ``p_holm`` column (written by an older eegsal) are corrected here.
    subjects : pandas.DataFrame
        :func:`subject_scores`.
    target, context : str
        The decoded column and the context column (for a context of several
        columns, their names joined by ``' x '``: ``'stage x delta_power'``,
        the column name of ``within``).
    alpha : float
        Significance level of every test.
    overall : float | None
        The decoder's balanced accuracy ignoring the context; when it is
        within the permutation null too, the verdict says there is no
        content information at all (rather than blaming the context).
    regression : pandas.DataFrame | None
        :func:`context_regression`, when the study ran it.

    Returns
    -------
    text : str
        One or two sentences, e.g. "The content effect holds within REM
        (Holm-corrected over 5 stages, p < 0.05), in 7 of 8 subjects ...".

    Examples
    --------
    >>> eegsal.stats.verdict_text(within, subjects)  # doctest: +SKIP
    """
    pooled = within.iloc[-1]
    per = within.iloc[:-1]
    p_holm = per["p_holm"] if "p_holm" in per else holm(per["p"])
    p_holm = np.asarray(p_holm, float)
    holds = per.loc[p_holm < alpha, context].astype(str).tolist()
    n_tested = int(np.isfinite(p_holm).sum())
    n, _, p_subj = across_subjects(subjects)
    n_above = int((subjects["balanced_accuracy"].dropna() > 0.5).sum())
    parts = context.split(" x ")
    held = _and(parts) if len(parts) > 1 else context
    plural = f"{context}s" if len(parts) == 1 else f"{context} strata"
    one = context if len(parts) == 1 else "stratum"
    fixed = (
        f"balanced accuracy {pooled['balanced_accuracy']:.2f} with the {held} "
        f"held fixed (p = {pooled['p']:.2g})"
    )
    reg_ok = True
    if regression is not None:
        r = regression.iloc[0]
        reg_ok = bool(r["p"] < alpha)
        fixed += (
            f"; content coefficient {r['estimate']:.2f} on the decoder's logit "
            f"adjusted for {held} (t = {r['t']:.2f}, permutation p = {r['p']:.2g})"
        )
    test = f"p = {p_subj:.2g}" if np.isfinite(p_subj) else "not computable"
    subj = f"{n_above} of {n} subjects above chance (Wilcoxon across subjects {test})"
    if pooled["p"] < alpha and p_subj < alpha and reg_ok:
        corrected = f"Holm-corrected over {n_tested} {plural}, p < {alpha:g}"
        if not holds:
            where = f"pooled over {plural} (in no single {one} alone, {corrected})"
        elif len(holds) == n_tested:
            where = f"within every {one} ({_and(holds)}; {corrected})"
        else:
            where = f"within {_and(holds)} ({corrected})"
        return (
            f"The {target} effect holds {where}, in {subj}: {fixed}. The decoder "
            f"reads more than the {held}."
        )
    if pooled["p"] < alpha and p_subj < alpha:
        return (
            f"No evidence of {target} beyond the {held}: {fixed}; {n_above} of {n} "
            f"subjects above chance. The score within {plural} may come from what "
            f"is left of the {held} within them."
        )
    if pooled["p"] < alpha:
        return (
            f"No consistent {target} effect across subjects: {fixed}, but "
            f"{subj}; the score may rest on a few subjects."
        )
    if overall is not None and overall <= pooled["null_95"]:
        return (
            f"No evidence of {target} at all: balanced accuracy {overall:.2f} "
            f"overall and {pooled['balanced_accuracy']:.2f} with the {held} "
            f"held fixed (p = {pooled['p']:.2g}; {n_above} of {n} subjects above "
            "chance)."
        )
    return (
        f"No evidence of {target} beyond the {held}: {fixed}; {n_above} of {n} "
        f"subjects above chance. The decoder's score may come from the {held} "
        "alone."
    )


@fill_doc
@verbose
def content_verdict(
    result: DecodingResult,
    context: str | list[str] | None = "stage",
    *,
    covariates: str | list[str] | None = None,
    n_bins: int = 4,
    groups: str = "subject",
    n_permutations: int = 1000,
    alpha: float = 0.05,
    context_result: DecodingResult | None = None,
    within: pd.DataFrame | None = None,
    regression: bool | pd.DataFrame | None = None,
    seed: int | np.random.Generator | None = 0,
    verbose: bool | str | int | None = None,
) -> pd.DataFrame:
    """One table that says whether the content effect holds beyond the context.

    Rows: the decoder's overall balanced accuracy; its score within each
    context and pooled within contexts (:func:`within_context_scores`); and
    across subjects, each subject's within-context balanced accuracy tested
    against 0.5 with a one-sided Wilcoxon signed-rank test over subjects
    (:func:`across_subjects`); with covariates, the content coefficient of
    the decoder's logit adjusted for the context (:func:`context_regression`).
    The effect holds when every test rejects (:func:`verdict_text`).

    Parameters
    ----------
    result : DecodingResult
        Out-of-fold predictions.
    context : str | list of str | None
        The categorical context column(s).
    covariates : str | list of str | None
        Continuous context columns, held fixed by ``n_bins`` quantile bins
        within each categorical stratum (see :func:`within_context_scores`).
    n_bins : int
        Quantile bins of each covariate.
    groups : str
        The subject column.
    n_permutations : int
        Permutations of the within-context test.
    alpha : float
        Significance level of the ``holds`` column and of the verdict.
    context_result : DecodingResult | None
        A decoder of the context itself (``eegsal.decode(epochs, "stage")``),
        trained with the same folds: its score says how much a decoder could
        get from the context alone (first row, no p-value).
    within : pandas.DataFrame | None
        The table of :func:`within_context_scores` for ``result``, if already
        computed (``n_permutations`` and ``seed`` are then unused).
    regression : bool | pandas.DataFrame | None
        Run :func:`context_regression` (True), or its table if already
        computed; None: run it when ``covariates`` are given and the
        predictions have probabilities. Its row and p-value then enter the
        verdict.
    seed : int | numpy.random.Generator | None
        Seed.
    %(verbose)s

    Returns
    -------
    verdict : pandas.DataFrame
        ``test, n, balanced_accuracy, p, p_holm, holds, reading``. ``p_holm``
        is set on the single-context rows only: their p-values Holm-corrected
        for testing every context, and their ``holds`` reads it; the other
        rows' ``holds`` reads ``p``. ``reading``, on the last row, is the
        verdict in words (:func:`verdict_text`).

    Examples
    --------
    >>> eegsal.stats.content_verdict(result, "stage",
    ...                              covariates="delta_power")  # doctest: +SKIP
    """
    _check_result(result)
    kw = dict(covariates=covariates, n_bins=n_bins, groups=groups)
    if within is None:
        within = within_context_scores(
            result, context, n_permutations=n_permutations, seed=seed, **kw
        )
    pred = result.tested_predictions()
    name = _Context(pred, context, covariates, n_bins).name
    if regression is None:
        classes = [str(c) for c in result.classes]
        has_proba = all(f"proba_{c}" in pred for c in classes)
        regression = bool(covariates) and len(classes) == 2 and has_proba
    if regression is True:
        regression = context_regression(
            result, context, n_permutations=n_permutations, seed=seed, **kw
        )
    elif regression is False:
        regression = None
    y_true = _column(pred, "y_true").astype(str)
    y_pred = _column(pred, "y_pred").astype(str)
    subjects = subject_scores(result, context, **kw)
    n_subj, mean_subj, p_subj = across_subjects(subjects)
    overall = balanced_accuracy_score(y_true, y_pred)
    per_holm = (
        within["p_holm"].iloc[:-1] if "p_holm" in within else holm(within["p"][:-1])
    )
    rows = [
        dict(
            test="overall (ignores the context)",
            n=len(y_true),
            balanced_accuracy=overall,
            p=np.nan,
            p_holm=np.nan,
        )
    ]
    for (_, r), q in zip(within.iloc[:-1].iterrows(), per_holm, strict=True):
        rows.append(
            dict(
                test=f"within {name} = {r[name]}",
                n=r["n"],
                balanced_accuracy=r["balanced_accuracy"],
                p=r["p"],
                p_holm=q,
            )
        )
    pooled = within.iloc[-1]
    rows.append(
        dict(
            test=f"within {name} = {pooled[name]}",
            n=pooled["n"],
            balanced_accuracy=pooled["balanced_accuracy"],
            p=pooled["p"],
            p_holm=np.nan,
        )
    )
    rows.append(
        dict(
            test=f"across subjects (within-{name}, Wilcoxon > 0.5)",
            n=n_subj,
            balanced_accuracy=mean_subj,
            p=p_subj,
            p_holm=np.nan,
        )
    )
    if regression is not None:
        r = regression.iloc[0]
        rows.insert(
            -1,
            dict(
                test=f"content coefficient on the logit, adjusted for "
                f"{r['adjusted_for']} (t = {r['t']:.2f})",
                n=r["n"],
                balanced_accuracy=np.nan,
                p=r["p"],
                p_holm=np.nan,
            ),
        )
    if context_result is not None:
        _check_result(context_result, "context_result")
        cpred = context_result.tested_predictions()
        rows.insert(
            0,
            dict(
                test=f"{name} decodability ({context_result.config['target']})",
                n=len(cpred),
                balanced_accuracy=balanced_accuracy_score(
                    cpred["y_true"].astype(str), cpred["y_pred"].astype(str)
                ),
                p=np.nan,
                p_holm=np.nan,
            ),
        )
    table = pd.DataFrame(rows)
    table["holds"] = np.where(
        table["p_holm"].notna(), table["p_holm"] < alpha, table["p"] < alpha
    )
    reading = verdict_text(
        within,
        subjects,
        target=result.config.get("target", "content"),
        context=name,
        alpha=alpha,
        overall=overall,
        regression=regression,
    )
    table["reading"] = ""
    table.loc[table.index[-1], "reading"] = reading
    logger.info("Verdict: %s", reading)
    return table


def associated_context(
    metadata: pd.DataFrame, target: str, context: str, value: str
) -> tuple[str, pd.DataFrame]:
    """Find the context value that goes most with one class of the target.

    From the target x context table of ``metadata``: the context value with
    the highest share of epochs of class ``value``, ``P(value | context)``
    (ties: the context with more epochs). A stage decoder's maps of that
    value are what the content maps of ``value`` should be compared with:
    if the content decoder reads the confound, its maps look like them.

    Parameters
    ----------
    metadata : pandas.DataFrame
        One row per epoch, with ``target`` and ``context`` columns.
    target, context : str
        The decoded column and the context column.
    value : str
        The explained class of the target (e.g. ``'flying'``).

    Returns
    -------
    best : str
        The context value with the highest ``P(value | context)``.
    table : pandas.DataFrame
        One row per context value: ``context``, ``n``, ``n_<value>`` and
        ``p_<value>``, the share; sorted by that share, highest first.

    Examples
    --------
    >>> eegsal.stats.associated_context(epochs.metadata, "content", "stage",
    ...                                 "flying")  # doctest: +SKIP
    ('REM', ...)
    """
    for col in (target, context):
        if col not in metadata:
            raise ValueError(
                f"{col!r} is not a column of the metadata; have "
                f"{list(metadata.columns)}."
            )
    hit = metadata[target].astype(str) == str(value)
    if not hit.any():
        raise ValueError(
            f"{value!r} is not a class of {target!r}; its classes are "
            f"{sorted(metadata[target].astype(str).unique())}."
        )
    ctx = metadata[context].astype(str)
    table = (
        pd.DataFrame({context: ctx, "n": 1, f"n_{value}": hit.astype(int)})
        .groupby(context, as_index=False)
        .sum()
    )
    table[f"p_{value}"] = table[f"n_{value}"] / table["n"]
    table = table.sort_values([f"p_{value}", "n"], ascending=False, kind="stable")
    table = table.reset_index(drop=True)
    return str(table[context].iloc[0]), table


def explanation_similarity(
    attr_a,
    attr_b,
    *,
    by: str = "subject",
    absolute: bool = True,
    n_boot: int = 2000,
    seed: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """How alike two decoders' explanations are, per subject, with bootstrap CIs.

    For each subject, the mean attribution maps of ``attr_a`` (e.g. the
    content decoder) and ``attr_b`` (e.g. a stage decoder) on the same epochs
    are compared: the Pearson correlation of their channel profiles (mean
    over time: *spatial*), of their time courses (mean over channels:
    *temporal*) and of the whole maps (*map*).

    Parameters
    ----------
    attr_a, attr_b : Attributions
        Maps of the same epochs (same channels and times).
    by : str
        Metadata column of the units of the bootstrap (subjects).
    absolute : bool
        Compare magnitudes (mean ``|attribution|``), the usual question "do they
        look at the same places"; False compares signed maps.
    n_boot : int
        Bootstrap resamples of the subjects.
    seed : int | numpy.random.Generator | None
        Seed of the bootstrap.

    Returns
    -------
    similarity : pandas.DataFrame
        One row per subject and a last row ``'mean'`` with columns
        ``spatial, temporal, map`` and, on the last row, their 95 %
        percentile bootstrap intervals (``*_ci_low``, ``*_ci_high``).

    Examples
    --------
    >>> eegsal.stats.explanation_similarity(attr_content, attr_stage)  # doctest: +SKIP
    """
    from eegsal.attribution.container import Attributions

    validate_type(attr_a, Attributions, "attr_a")
    validate_type(attr_b, Attributions, "attr_b")
    if attr_a.data.shape != attr_b.data.shape:
        raise ValueError(
            f"attr_a and attr_b must explain the same epochs, channels and times; "
            f"shapes {attr_a.data.shape} and {attr_b.data.shape}."
        )
    ea = attr_a.average(by=by, absolute=absolute)
    eb = attr_b.average(by=by, absolute=absolute)
    rows = []
    for unit in ea:
        a, b = ea[unit].data, eb[unit].data
        rows.append(
            {
                by: unit,
                "spatial": stats.pearsonr(a.mean(1), b.mean(1))[0],
                "temporal": stats.pearsonr(a.mean(0), b.mean(0))[0],
                "map": stats.pearsonr(a.ravel(), b.ravel())[0],
            }
        )
    table = pd.DataFrame(rows)
    rng = check_random_state(seed)
    values = table[["spatial", "temporal", "map"]].to_numpy()
    boot = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
    names = ["spatial", "temporal", "map"]
    summary = {by: "mean", **dict(zip(names, values.mean(0), strict=True))}
    for k, name in enumerate(["spatial", "temporal", "map"]):
        summary[f"{name}_ci_low"], summary[f"{name}_ci_high"] = np.percentile(
            boot[:, k], [2.5, 97.5]
        )
    return pd.concat([table, pd.DataFrame([summary])], ignore_index=True)
