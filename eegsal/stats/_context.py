"""What the content tests hold fixed: contexts, strata and their scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from eegsal._check import check_range, validate_type


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


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


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
