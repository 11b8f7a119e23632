"""The verdict: does the content effect hold beyond the context, across subjects."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import balanced_accuracy_score

from eegsal._docs import fill_doc
from eegsal._logging import logger, verbose
from eegsal.stats._context import (
    _and,
    _ba_by,
    _check_result,
    _column,
    _Context,
    _pooled,
)
from eegsal.stats.regression import context_regression
from eegsal.stats.within import holm, within_context_scores

if TYPE_CHECKING:  # eegsal.stats imports without torch
    from eegsal.decoding import DecodingResult

__all__ = [
    "across_subjects",
    "content_verdict",
    "subject_scores",
    "verdict_text",
]


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
    Subjects exactly at 0.5 are left out; up to 16 subjects the p-value is
    exact (all sign flips of the signed ranks, ties given average ranks),
    beyond that SciPy's default.

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
    d = ba - 0.5
    d = d[d != 0]  # subjects exactly at chance carry no sign (zero_method "wilcox")
    if len(ba) >= 2 and len(d):
        # up to 16 subjects, the exact sign-flip distribution of the signed-rank
        # statistic, ties included: SciPy 1.14 would use a normal approximation
        # with ties or zeros (p = 0.09 where the exact p is 0.25), later
        # releases the exact one
        method = stats.PermutationMethod(n_resamples=np.inf) if len(d) <= 16 else "auto"
        p = float(stats.wilcoxon(d, alternative="greater", method=method).pvalue)
    return len(ba), float(ba.mean()) if len(ba) else np.nan, p


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
