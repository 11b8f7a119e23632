"""Curves and score panels: faithfulness, sanity checks, content versus context.

One colour per method or measure, from the colour-blind-safe palette of
Okabe & Ito (2008); chance levels are grey.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from eegsal.viz._text import axes_title_width, suptitle, wrap

__all__ = [
    "PALETTE",
    "plot_faithfulness",
    "plot_randomization",
    "plot_similarity",
    "plot_subject_scores",
    "plot_within_context",
]

#: Okabe-Ito colours (colour-blind safe), black last.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
_CHANCE = "0.55"


def _mean_sem(curves: pd.DataFrame, ordering: str) -> pd.DataFrame:
    rows = curves[curves["ordering"] == ordering]
    return rows.groupby("fraction")["score"].agg(["mean", "sem"])


def plot_faithfulness(curves: dict, *, title: str | None = None) -> Figure:
    """Plot deletion and insertion curves of several methods, with chance.

    Parameters
    ----------
    curves : dict of str to list of FaithfulnessCurves
        Per method, its curves (one :class:`~eegsal.evaluation.FaithfulnessCurves`
        per kind, ``'deletion'`` and/or ``'insertion'``). Each kind gets one
        panel: the mean curve of every method (± SEM over epochs, AUC in the
        legend) and, dashed grey, the random ordering of the first method.
    title : str | None
        Figure title.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure.
    """
    kinds = sorted({fc.kind for fcs in curves.values() for fc in fcs})
    if not kinds:
        raise ValueError("curves holds no FaithfulnessCurves to plot.")
    fig, axes = plt.subplots(
        1,
        len(kinds),
        figsize=(4.6 * len(kinds), 3.4),
        layout="constrained",
        squeeze=False,
    )
    for ax, kind in zip(axes[0], kinds, strict=True):
        chance = None
        for k, (method, fcs) in enumerate(curves.items()):
            fc = next((f for f in fcs if f.kind == kind), None)
            if fc is None:
                continue
            stats = _mean_sem(fc.curves, "attribution")
            auc = fc.auc["auc_attribution"].mean()
            color = PALETTE[k % len(PALETTE)]
            ax.plot(
                stats.index,
                stats["mean"],
                color=color,
                label=f"{method} (AUC {auc:.3g})",
            )
            ax.fill_between(
                stats.index,
                stats["mean"] - stats["sem"],
                stats["mean"] + stats["sem"],
                color=color,
                alpha=0.2,
                linewidth=0,
            )
            if chance is None and (fc.curves["ordering"] == "random").any():
                chance = fc
        if chance is not None:
            stats = _mean_sem(chance.curves, "random")
            auc = chance.auc["auc_random"].mean()
            ax.plot(
                stats.index,
                stats["mean"],
                "--",
                color=_CHANCE,
                label=f"random order (AUC {auc:.3g})",
            )
        verb = "removed" if kind == "deletion" else "restored"
        ax.set(
            xlabel=f"fraction of channel x time patches {verb}",
            ylabel=f"model output ({chance.params['target'] if chance else ''})",
            title=f"{kind}: {'lower' if kind == 'deletion' else 'higher'} "
            "is more faithful",
        )
        ax.legend(fontsize=7.5, frameon=False)
    if title:
        suptitle(fig, title)
    return fig


def plot_randomization(tables: dict, *, title: str | None = None) -> Figure:
    """Plot the cascading randomization test of several methods.

    Parameters
    ----------
    tables : dict of str to pandas.DataFrame
        Per method, the table of :func:`eegsal.evaluation.randomization_test`.
    title : str | None
        Figure title.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Rank correlation with the trained model's maps (median and
        interquartile range over epochs) as layers are randomized from the
        output down.
    """
    fig, ax = plt.subplots(figsize=(5.2, 3.4), layout="constrained")
    layers = None
    for k, (method, table) in enumerate(tables.items()):
        color = PALETTE[k % len(PALETTE)]
        x = np.arange(len(table))
        flag = " (flagged)" if table["flagged"].any() else ""
        ax.plot(x, table["spearman"], "o-", color=color, label=f"{method}{flag}")
        ax.fill_between(
            x, table["q25"], table["q75"], color=color, alpha=0.2, linewidth=0
        )
        # the model's own layer names (without the input standardization's
        # Sequential index)
        layers = [re.sub(r"^\d+\.", "", str(n)) for n in table["layer"]]
    ax.axhline(0, color=_CHANCE, linewidth=0.8)
    ax.set_xticks(np.arange(len(layers)), layers, rotation=35, ha="right", fontsize=8)
    ax.set(
        xlabel="randomized down to layer",
        ylim=(-0.2, 1.05),
        ylabel="Spearman ρ with the trained maps",
        title=wrap(
            title or "Model randomization: faithful maps fall to 0",
            axes_title_width(fig),
            12,
        ),
    )
    ax.legend(fontsize=8, frameon=False)
    return fig


def plot_within_context(
    scores: pd.DataFrame, null: pd.DataFrame, context: str = "stage"
) -> Figure:
    """Plot within-context balanced accuracy against its permutation null.

    Parameters
    ----------
    scores, null : pandas.DataFrame
        The tables of :func:`eegsal.stats.within_context_scores` with
        ``return_null=True``.
    context : str
        The context column.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One violin per context (the null), the observed score as a dot with
        its p-value (Holm-corrected over the contexts for single contexts,
        ``p_Holm``; plain for the pooled score).
    """
    names = scores[context].astype(str).tolist()
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2.2, 3.4), layout="constrained")
    groups = [
        null.loc[null[context].astype(str) == n, "balanced_accuracy"].dropna()
        for n in names
    ]
    pos = [k for k, g in enumerate(groups) if len(g)]
    if pos:
        parts = ax.violinplot(
            [groups[k] for k in pos], positions=pos, showextrema=False
        )
        for body in parts["bodies"]:
            body.set_facecolor(_CHANCE)
            body.set_alpha(0.5)
    # single contexts: Holm-corrected for testing each (tables of an older
    # eegsal have no p_holm: their raw p is shown, labelled as such)
    p_shown = scores["p_holm"] if "p_holm" in scores else scores["p"]
    label = "p_Holm" if "p_holm" in scores else "p"
    for k, row in enumerate(scores.itertuples()):
        last = k == len(scores) - 1
        p, name = (row.p, "p") if last else (p_shown.iloc[k], label)
        color = PALETTE[0] if p < 0.05 else PALETTE[5]
        ax.plot(k, row.balanced_accuracy, "o", color=color, markersize=7)
        if np.isfinite(row.balanced_accuracy):
            ax.annotate(
                f"{name}={p:.2g}",
                (k, row.balanced_accuracy),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=7.5,
            )
    ax.axhline(0.5, color=_CHANCE, linewidth=0.8, linestyle="--")
    ax.set_xticks(
        np.arange(len(names)),
        [n.replace(" (within-", "\n(within-") for n in names],
        fontsize=8,
    )
    ax.margins(y=0.12)  # room for the p-values above the highest dot
    ax.set(
        ylabel="balanced accuracy",
        xlabel=context,
        title=f"Content decoded within each {context}\n(grey: permutation "
        f"null, labels shuffled within subject x {context})",
    )
    note = wrap(_null_note(context), fig.get_size_inches()[0], 7.5)
    fig.supxlabel(note, fontsize=7.5, color="0.3")
    return fig


def _null_note(context: str) -> str:
    """Say why a within-context null can sit above chance."""
    return (
        f"A null above 0.5: shuffling within subject x {context} keeps each "
        "stratum's label mix, and with few epochs per stratum the predictions "
        "agree with that mix by chance; compare each dot with its own violin."
    )


def plot_subject_scores(
    scores: pd.DataFrame, *, groups: str = "subject", context: str = "stage"
) -> Figure:
    """Plot each subject's within-context balanced accuracy.

    Parameters
    ----------
    scores : pandas.DataFrame
        The table of :func:`eegsal.stats.subject_scores`.
    groups : str
        The subject column.
    context : str
        The context column (for the labels).

    Returns
    -------
    fig : matplotlib.figure.Figure
        One dot per subject, sorted, with chance at 0.5.
    """
    table = scores.dropna(subset=["balanced_accuracy"])
    table = table.sort_values("balanced_accuracy")
    fig, ax = plt.subplots(figsize=(5.0, 0.22 * len(table) + 1.6), layout="constrained")
    y = np.arange(len(table))
    above = table["balanced_accuracy"].to_numpy() > 0.5
    ax.scatter(
        table["balanced_accuracy"],
        y,
        c=np.where(above, PALETTE[0], PALETTE[5]),
        zorder=3,
    )
    ax.axvline(0.5, color=_CHANCE, linestyle="--", linewidth=0.8)
    ax.set_yticks(y, table[groups].astype(str), fontsize=7.5)
    ax.set(
        xlabel=f"balanced accuracy within {context}",
        ylabel=groups,
        title=f"{above.sum()} of {len(table)} subjects above chance",
    )
    return fig


def plot_similarity(
    table: pd.DataFrame,
    *,
    by: str = "subject",
    names: tuple[str, str] = ("content", "context"),
) -> Figure:
    """Plot how alike the content and context decoders' explanations are.

    Parameters
    ----------
    table : pandas.DataFrame
        The table of :func:`eegsal.stats.explanation_similarity`.
    by : str
        Its unit column.
    names : tuple of str
        What the two decoders decode, for the title.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Per measure (spatial, temporal, whole map), the subjects' Pearson
        correlations and their mean with its bootstrap 95 % interval.
    """
    measures = ["spatial", "temporal", "map"]
    units = table[table[by].astype(str) != "mean"]
    mean = table[table[by].astype(str) == "mean"].iloc[0]
    fig, ax = plt.subplots(figsize=(4.6, 3.4), layout="constrained")
    rng = np.random.default_rng(0)
    for k, name in enumerate(measures):
        jitter = rng.uniform(-0.12, 0.12, len(units))
        ax.scatter(k + jitter, units[name], color=PALETTE[k], alpha=0.6, s=16)
        lo, hi = mean[f"{name}_ci_low"], mean[f"{name}_ci_high"]
        ax.errorbar(
            k + 0.3,
            mean[name],
            yerr=[[mean[name] - lo], [hi - mean[name]]],
            fmt="s",
            color="black",
            capsize=3,
        )
    ax.axhline(0, color=_CHANCE, linewidth=0.8)
    ax.set_xticks(
        range(3), ["spatial\n(channels)", "temporal\n(time course)", "whole map"]
    )
    ax.set(
        ylim=(-1.05, 1.05),
        xlabel="part of the maps compared",
        ylabel=f"Pearson r, per {by}",
        title=wrap(
            f"{names[0]} vs {names[1]} decoder: alike explanations?",
            axes_title_width(fig),
            12,
        ),
    )
    return fig
