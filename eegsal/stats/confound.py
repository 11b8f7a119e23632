"""Decoding-level controls: does the decoder read the content or the context."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import balanced_accuracy_score

from eegsal._check import check_random_state, validate_type
from eegsal._docs import fill_doc
from eegsal._logging import logger, progress, verbose
from eegsal.decoding import DecodingResult

__all__ = ["content_verdict", "explanation_similarity", "within_context_scores"]


def _column(pred: pd.DataFrame, name: str) -> np.ndarray:
    if name not in pred:
        raise ValueError(
            f"{name!r} is not a column of the result's predictions; have "
            f"{list(pred.columns)}."
        )
    return pred[name].to_numpy()


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


def _pooled(ba: np.ndarray, contexts: list[np.ndarray]) -> float:
    """Mean of the defined within-context scores, weighted by their epochs."""
    ok = ~np.isnan(ba)
    sizes = np.array([len(r) for r in contexts], float)
    return float(np.average(ba[ok], weights=sizes[ok])) if ok.any() else np.nan


@fill_doc
@verbose
def within_context_scores(
    result: DecodingResult,
    context: str = "stage",
    *,
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
    label moves.

    Parameters
    ----------
    result : DecodingResult
        Out-of-fold predictions whose table holds ``context`` and ``groups``.
    context : str
        The context column (``'stage'``, task, session...).
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
        ``n, balanced_accuracy, null_mean, null_95, p``. ``p`` is
        ``(1 + #{null >= observed}) / (1 + n_permutations)``, one-sided.
    null : pandas.DataFrame
        Only with ``return_null``: one row per permutation x row of
        ``scores``: ``permutation``, the context, ``balanced_accuracy``.

    Examples
    --------
    >>> eegsal.stats.within_context_scores(result, "stage")  # doctest: +SKIP
    """
    validate_type(result, DecodingResult, "result")
    pred = result.tested_predictions()
    y_true = _column(pred, "y_true").astype(str)
    y_pred = _column(pred, "y_pred").astype(str)
    ctx, subj = _column(pred, context), _column(pred, groups)
    values = sorted(pd.unique(ctx), key=str)
    contexts = [np.flatnonzero(ctx == v) for v in values]
    sizes = np.array([len(r) for r in contexts], float)
    labels = np.unique(y_true)
    strata = _strata(subj, ctx)

    def scores(y):
        ba = _ba_by(y, y_pred, labels, contexts)
        return np.append(ba, _pooled(ba, contexts))

    observed = scores(y_true)
    rng = check_random_state(seed)
    null = np.empty((n_permutations, len(observed)))
    perm = y_true.copy()
    for i in progress(range(n_permutations), desc="within-context permutations"):
        for rows in strata:
            perm[rows] = y_true[rng.permutation(rows)]
        null[i] = scores(perm)
    p = (1 + (null >= observed - 1e-12).sum(0)) / (1 + n_permutations)
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
            "p": np.where(np.isnan(observed), np.nan, p),
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
        }
    )
    return table, null_table


def subject_scores(
    result: DecodingResult, context: str = "stage", *, groups: str = "subject"
) -> pd.DataFrame:
    """Each subject's balanced accuracy within contexts, pooled over contexts.

    Parameters
    ----------
    result : DecodingResult
        Out-of-fold predictions whose table holds ``context`` and ``groups``.
    context : str
        The context column.
    groups : str
        The subject column.

    Returns
    -------
    scores : pandas.DataFrame
        One row per subject: ``groups``, ``n`` (epochs) and
        ``balanced_accuracy`` (the within-context scores of the subject,
        weighted by their epochs; NaN when no context holds both classes).
    """
    validate_type(result, DecodingResult, "result")
    pred = result.tested_predictions()
    y_true = _column(pred, "y_true").astype(str)
    y_pred = _column(pred, "y_pred").astype(str)
    ctx, subj = _column(pred, context), _column(pred, groups)
    labels = np.unique(y_true)
    rows = []
    for s in pd.unique(subj):
        idx = np.flatnonzero(subj == s)
        ctxs = [idx[ctx[idx] == v] for v in pd.unique(ctx[idx])]
        ba = _pooled(_ba_by(y_true, y_pred, labels, ctxs), ctxs)
        rows.append({groups: s, "n": len(idx), "balanced_accuracy": ba})
    return pd.DataFrame(rows)


@fill_doc
@verbose
def content_verdict(
    result: DecodingResult,
    context: str = "stage",
    *,
    groups: str = "subject",
    n_permutations: int = 1000,
    alpha: float = 0.05,
    context_result: DecodingResult | None = None,
    within: pd.DataFrame | None = None,
    seed: int | np.random.Generator | None = 0,
    verbose: bool | str | int | None = None,
) -> pd.DataFrame:
    """One table that says whether the content effect holds beyond the context.

    Rows: the decoder's overall balanced accuracy; its score within each
    context and pooled within contexts (:func:`within_context_scores`); and
    across subjects, each subject's within-context balanced accuracy tested
    against 0.5 with a one-sided Wilcoxon signed-rank test over subjects.

    Parameters
    ----------
    result : DecodingResult
        Out-of-fold predictions.
    context : str
        The context column.
    groups : str
        The subject column.
    n_permutations : int
        Permutations of the within-context test.
    alpha : float
        Significance level of the ``holds`` column.
    context_result : DecodingResult | None
        A decoder of the context itself (``eegsal.decode(epochs, "stage")``),
        trained with the same folds: its score says how much a decoder could
        get from the context alone (first row, no p-value).
    within : pandas.DataFrame | None
        The table of :func:`within_context_scores` for ``result``, if already
        computed (``n_permutations`` and ``seed`` are then unused).
    seed : int | numpy.random.Generator | None
        Seed.
    %(verbose)s

    Returns
    -------
    verdict : pandas.DataFrame
        ``test, n, balanced_accuracy, p, holds, reading``, where ``reading``
        spells out the conclusion.
    """
    if within is None:
        within = within_context_scores(
            result, context, groups=groups, n_permutations=n_permutations, seed=seed
        )
    pred = result.tested_predictions()
    y_true = _column(pred, "y_true").astype(str)
    y_pred = _column(pred, "y_pred").astype(str)
    per_subject = subject_scores(result, context, groups=groups)["balanced_accuracy"]
    per_subject = per_subject.dropna().to_numpy()
    if len(per_subject) >= 2 and np.any(per_subject != 0.5):
        p_subj = stats.wilcoxon(per_subject - 0.5, alternative="greater").pvalue
    else:
        p_subj = np.nan
    rows = [
        dict(
            test="overall (ignores the context)",
            n=len(y_true),
            balanced_accuracy=balanced_accuracy_score(y_true, y_pred),
            p=np.nan,
        )
    ]
    for _, r in within.iterrows():
        rows.append(
            dict(
                test=f"within {context} = {r[context]}",
                n=r["n"],
                balanced_accuracy=r["balanced_accuracy"],
                p=r["p"],
            )
        )
    rows.append(
        dict(
            test=f"across subjects (within-{context}, Wilcoxon > 0.5)",
            n=len(per_subject),
            balanced_accuracy=per_subject.mean() if len(per_subject) else np.nan,
            p=p_subj,
        )
    )
    if context_result is not None:
        validate_type(context_result, DecodingResult, "context_result")
        pred = context_result.tested_predictions()
        rows.insert(
            0,
            dict(
                test=f"{context} decodability ({context_result.config['target']})",
                n=len(pred),
                balanced_accuracy=balanced_accuracy_score(
                    pred["y_true"].astype(str), pred["y_pred"].astype(str)
                ),
                p=np.nan,
            ),
        )
    table = pd.DataFrame(rows)
    table["holds"] = table["p"] < alpha
    pooled = within.iloc[-1]
    if pooled["p"] < alpha and p_subj < alpha:
        reading = (
            f"content is decoded within {context} (balanced accuracy "
            f"{pooled['balanced_accuracy']:.3f}, p = {pooled['p']:.3g}) and across "
            f"subjects (p = {p_subj:.3g}): the decoder reads more than the {context}"
        )
    elif pooled["p"] < alpha:
        reading = (
            f"content is decoded within {context} (p = {pooled['p']:.3g}) but not "
            f"consistently across subjects (p = {p_subj:.3g})"
        )
    else:
        reading = (
            f"no content information once the {context} is held fixed (balanced "
            f"accuracy {pooled['balanced_accuracy']:.3f}, p = {pooled['p']:.3g}): "
            f"the decoder's score may come from the {context} alone"
        )
    table["reading"] = ""
    table.loc[table.index[-1], "reading"] = reading
    logger.info("Verdict: %s", reading)
    return table


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
        Compare magnitudes (mean |attribution|), the usual question "do they
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
