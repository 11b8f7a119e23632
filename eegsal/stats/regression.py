"""The regression of the decoder's logit on the content, the context adjusted for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eegsal._check import check_option, check_random_state
from eegsal._docs import fill_doc
from eegsal._logging import logger, progress, verbose
from eegsal.stats._context import _check_result, _column, _Context
from eegsal.stats.permutations import shuffle, strata_rows

if TYPE_CHECKING:  # eegsal.stats imports without torch
    from eegsal.decoding import DecodingResult

__all__ = [
    "context_regression",
    "out_of_fold_logit",
]


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
    strata = strata_rows(
        pd.DataFrame({"group": subj, "context": fixed.key}), ["group", "context"]
    )
    rng = check_random_state(seed)
    null = np.empty(n_permutations)
    chunk = 100  # permutations refitted at once
    # the residuals of the model without the content: its fit is in the span
    # of the basis, so refitting fit + shuffled residuals needs the residuals only
    shuffled = ry if permute == "residuals" else content
    perms = np.empty((chunk, len(content)))
    for i in progress(range(n_permutations), desc="regression permutations"):
        perms[i % chunk] = shuffled[shuffle(len(shuffled), strata, rng)]
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
