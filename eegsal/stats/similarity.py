"""Do two decoders explain alike: the context to compare with, and map similarity."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from eegsal._check import check_random_state, validate_type

__all__ = [
    "associated_context",
    "explanation_similarity",
]


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
