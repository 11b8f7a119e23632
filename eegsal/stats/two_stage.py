"""Two-stage tests: per-subject contrast maps, then sign flips across subjects."""

from __future__ import annotations

import mne
import numpy as np

from eegsal._check import check_option, check_random_state
from eegsal._docs import fill_doc
from eegsal._logging import logger, verbose
from eegsal.stats.clusters import ClusterTest, _ch_adjacency, _table
from eegsal.stats.lmm import POPULATION

__all__ = ["two_stage_test"]


def _subject_contrasts(attr, contrast: str, groups: str, context: list[str]):
    """Per-subject contrast maps, formed within subject x context cells.

    In each cell holding both levels, the map is ``mean(level b) -
    mean(level a)``; a subject's map is the mean of its cells' maps weighted
    by ``n_a n_b / (n_a + n_b)``, the inverse of the variance factor of a
    difference of means, so that it equals the ``contrast`` coefficient of a
    least-squares fit of ``attr ~ contrast + cell`` on the subject's epochs
    (the context held fixed by a free mean per cell). A cell with one level
    has weight 0 and contributes nothing.

    Returns
    -------
    maps : ndarray, shape (n_subjects, n_rows, n_times)
        Contrast maps of the subjects with at least one cell holding both
        levels.
    subjects : list
        Their ids.
    levels : list
        The two levels, sorted (the map is the second minus the first).
    """
    meta = attr.metadata.reset_index(drop=True)
    levels = sorted(meta[contrast].unique())
    if len(levels) != 2:
        raise ValueError(
            f"{contrast!r} must have two levels for a contrast, has {levels}."
        )
    maps, subjects = [], []
    for subject, rows in meta.groupby(groups, sort=True).indices.items():
        total, weight = 0.0, 0.0
        sub = meta.iloc[rows]
        if context:
            cells = sub.groupby(context, sort=True).indices.values()
        else:
            cells = [np.arange(len(rows))]
        for cell in cells:
            in_cell = rows[cell]
            level = sub[contrast].to_numpy()[cell]
            a, b = in_cell[level == levels[0]], in_cell[level == levels[1]]
            if not len(a) or not len(b):
                continue
            w = len(a) * len(b) / (len(a) + len(b))
            mean_a = np.asarray(attr[a].data, np.float64).mean(0)
            mean_b = np.asarray(attr[b].data, np.float64).mean(0)
            total = total + w * (mean_b - mean_a)
            weight += w
        if weight:
            maps.append(total / weight)
            subjects.append(subject)
        else:
            logger.warning(
                "Subject %s has no %s cell with both levels of %s; skipped.",
                subject,
                " x ".join(context) if context else "epochs",
                contrast,
            )
    maps = np.stack(maps) if maps else np.empty((0, *attr.data.shape[1:]))
    return maps, subjects, levels


@fill_doc
@verbose
def two_stage_test(
    attr,
    contrast: str,
    *,
    context: str | list[str] | None,
    groups: str = "subject",
    n_permutations: int = 1000,
    threshold: float | None = None,
    tail: int = 0,
    adjacency=None,
    seed: int | np.random.Generator | None = 0,
    n_jobs: int | None = None,
    verbose: bool | str | int | None = None,
) -> ClusterTest:
    """Summary-statistics alternative: per-subject contrast maps, then a 1-sample test.

    Stage 1: each subject's map of ``mean(attr | level b) - mean(attr |
    level a)`` is formed *within each cell* of ``context`` (e.g. within N2
    and within REM separately), and the cells' maps are averaged with weights
    ``n_a n_b / (n_a + n_b)``: the subject's ``contrast`` coefficient of a
    least-squares fit with a free mean per context cell. A cell with only one
    level contributes nothing, and a subject with no cell holding both levels
    is left out (logged). So a context that goes with the contrast (flying
    dreams mostly in REM) cannot make a contrast: a pure stage effect is
    removed in every cell. Stage 2:
    :func:`mne.stats.spatio_temporal_cluster_1samp_test` tests the maps across
    subjects (t statistic, sign-flip permutations, clusters).

    The null hypothesis is that in every subject the contrast has no effect
    within any context cell. Sign flips assume the subjects independent and
    each subject's map symmetric about zero under that null; the claim is
    about the population the subjects were drawn from. The weighted mean
    assumes one contrast effect per subject across contexts; where it
    differs between contexts, the test is of its weighted average.

    Parameters
    ----------
    attr : Attributions
        Attributions with metadata columns ``groups``, ``contrast`` and
        ``context``.
    contrast : str
        A metadata column with two levels: the map is the second level minus
        the first, in sorted order.
    context : str | list of str | None
        Column(s) held fixed (e.g. ``'stage'``). Required, as there is no
        model to take it from; ``None`` forms the contrasts over all of each
        subject's epochs, which is valid only when nothing that shapes the
        maps is associated with ``contrast`` within subjects.
    groups : str
        Subject column.
    n_permutations : int
        Sign-flip permutations.
    threshold : float | None
        Cluster-forming threshold on t; None: the two-sided p = 0.05 quantile
        of t with n_subjects - 1 degrees of freedom.
    tail : int
        0, 1 or -1.
    adjacency : array-like | None
        Channel adjacency; None from the channel positions.
    seed : int | numpy.random.Generator | None
        Seed.
    n_jobs : int | None
        Unused (the sign flips run in one process).
    %(verbose)s

    Returns
    -------
    result : ClusterTest
        As for :func:`cluster_test`, with the one-sample t map as ``stat``,
        ``scheme='sign flip'`` and ``strata`` the context column(s).

    References
    ----------
    .. [1] Holmes AP, Friston KJ (1998). Generalisability, random effects and
       population inference. NeuroImage 7:S754.

    Examples
    --------
    >>> two_stage_test(attr, "content", context="stage")  # doctest: +SKIP
    """
    from scipy import stats

    check_option("tail", tail, (0, 1, -1))
    if context is None:
        cols = []
    elif isinstance(context, str):
        cols = [context]
    else:
        cols = list(context)
    missing = [c for c in [groups, contrast, *cols] if c not in attr.metadata]
    if missing:
        raise ValueError(
            f"{missing} not in the metadata (columns: {list(attr.metadata.columns)}); "
            "pass context=None to form the contrasts over all epochs of a subject."
        )
    if context is None:
        logger.info(
            "Contrasts of %s over all epochs of each subject: no context is held "
            "fixed.",
            contrast,
        )
    maps, subjects, levels = _subject_contrasts(attr, contrast, groups, cols)
    if len(subjects) < 2:
        raise ValueError(
            f"{len(subjects)} subject(s) have both levels of {contrast!r} within a "
            f"cell of {cols or 'their epochs'}; need 2+."
        )
    n_sub, n_rows, n_times = maps.shape
    logger.info(
        "Two-stage test of %s: %d subjects' contrasts within %s",
        contrast,
        n_sub,
        " x ".join([groups, *cols]),
    )
    if threshold is None:
        threshold = float(stats.t.isf(0.025 if tail == 0 else 0.05, n_sub - 1))
    ch_adj = _ch_adjacency(attr.info, n_rows, adjacency)
    # MNE wants (observations, times, channels) and the channel adjacency
    t_obs, clusters, pv, h0 = mne.stats.spatio_temporal_cluster_1samp_test(
        maps.transpose(0, 2, 1),
        threshold=threshold if tail == 0 else tail * threshold,
        n_permutations=n_permutations,
        tail=tail,
        adjacency=ch_adj,
        # a RandomState passes through MNE's rng unchanged: the draws of its
        # legacy seed=, without its note to use rng=
        rng=check_random_state(seed),
        out_type="mask",
        verbose=False,
    )
    stat = t_obs.T
    labels = np.full(stat.shape, -1)
    masses = []
    for k, m in enumerate(clusters):
        labels[m.T] = k
        masses.append(stat[m.T].sum())
    table, labels = _table(
        labels.ravel(),
        np.asarray(masses),
        np.asarray(pv),
        attr.ch_names,
        attr.times,
        n_rows,
        n_times,
        # spectral maps: clusters span frequencies
        ("fmin", "fmax")
        if getattr(attr, "domain", "time") == "frequency"
        else ("tmin", "tmax"),
        scheme="sign flip",
        claim=POPULATION,
    )
    return ClusterTest(
        name=f"{contrast}: {levels[1]} - {levels[0]}",
        stat=stat,
        labels=labels,
        clusters=table,
        null=np.abs(h0),
        threshold=threshold,
        ch_names=attr.ch_names,
        times=attr.times,
        scheme="sign flip",
        strata=cols,
        claim=POPULATION,
    )
