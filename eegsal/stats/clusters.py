"""Cluster-based permutation tests over channels x time (Maris & Oostenveld, 2007)."""

from __future__ import annotations

from dataclasses import dataclass, field

import mne
import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from eegsal._check import check_option, check_random_state
from eegsal._docs import fill_doc
from eegsal._logging import logger, progress, verbose
from eegsal.stats import _reml
from eegsal.stats.lmm import _variables

__all__ = ["ClusterTest", "cluster_test", "two_stage_test"]


@dataclass
class ClusterTest:
    """Observed clusters of one statistic map, with permutation p-values.

    Attributes
    ----------
    name : str
        The tested coefficient or contrast.
    stat : ndarray, shape (n_channels, n_times)
        The observed statistic.
    labels : ndarray of int, shape (n_channels, n_times)
        Cluster of each cell (-1: below threshold), indexing ``clusters``.
    clusters : pandas.DataFrame
        One row per cluster: ``sign, mass, p, n_cells, channels, tmin, tmax``
        (``fmin, fmax`` for spectral maps),
        largest mass first.
    null : ndarray, shape (n_permutations,)
        Largest absolute cluster mass of each permutation.
    threshold : float | dict
        Cluster-forming threshold on ``stat``, or the TFCE settings.
    ch_names : list of str
        Channels.
    times : ndarray
        Times (s).
    p_cells : ndarray, shape (n_channels, n_times) | None
        TFCE only: the permutation p-value of each cell (FWER-corrected by
        the maximum TFCE score of each permutation).
    tfce : ndarray, shape (n_channels, n_times) | None
        TFCE only: the observed scores.
    """

    name: str
    stat: np.ndarray
    labels: np.ndarray
    clusters: pd.DataFrame
    null: np.ndarray
    threshold: float
    ch_names: list = field(repr=False)
    times: np.ndarray = field(repr=False)
    p_cells: np.ndarray | None = field(default=None, repr=False)
    tfce: np.ndarray | None = field(default=None, repr=False)

    def mask(self, alpha: float = 0.05) -> np.ndarray:
        """Cells of the clusters with p < ``alpha``.

        Parameters
        ----------
        alpha : float
            Significance level.

        Returns
        -------
        mask : ndarray of bool, shape (n_channels, n_times)
            Significant cells.
        """
        if self.p_cells is not None:  # TFCE: cell-wise inference
            return self.p_cells < alpha
        keep = self.clusters.index[self.clusters["p"] < alpha].to_numpy()
        return np.isin(self.labels, keep)


def _ch_adjacency(info: mne.Info, n_rows: int, adjacency):
    """Channel adjacency (sparse, n_rows x n_rows)."""
    if adjacency is None:
        if n_rows == 1:
            ch_adj = sparse.csr_array(np.ones((1, 1)))
        else:
            with mne.utils.use_log_level("warning"):  # MNE logs its fallback
                ch_adj, _ = mne.channels.find_ch_adjacency(info, "eeg")
    else:
        ch_adj = sparse.csr_array(adjacency)
        if ch_adj.shape != (n_rows, n_rows):
            raise ValueError(
                f"adjacency must be ({n_rows}, {n_rows}) over channels, "
                f"got {ch_adj.shape}."
            )
    return ch_adj


def _adjacency(info: mne.Info, n_rows: int, n_times: int, adjacency):
    """Channel x time adjacency (cells flattened channel-major)."""
    ch_adj = _ch_adjacency(info, n_rows, adjacency)
    return sparse.csr_array(mne.stats.combine_adjacency(ch_adj, n_times))


def _clusters(stat: np.ndarray, adj, threshold: float, tail: int):
    """Label supra-threshold cells; return labels (flat) and signed masses."""
    labels = np.full(stat.size, -1)
    masses = []
    for sign in (1, -1) if tail == 0 else (tail,):
        cells = np.flatnonzero(sign * stat > threshold)
        if not len(cells):
            continue
        sub = adj[cells][:, cells]
        n, lab = connected_components(sub, directed=False)
        mass = np.bincount(lab, weights=stat[cells], minlength=n)
        labels[cells] = lab + len(masses)
        masses.extend(mass)
    return labels, np.asarray(masses)


def _max_mass(stat, adj, threshold, tail) -> float:
    _, masses = _clusters(stat, adj, threshold, tail)
    return float(np.abs(masses).max()) if len(masses) else 0.0


def _tfce(stat: np.ndarray, adj, tfce: dict, tail: int) -> np.ndarray:
    """Threshold-free cluster enhancement (Smith & Nichols, 2009), signed.

    Each cell scores the sum over thresholds h (from ``start`` by ``step``) of
    ``extent ** e_power * h ** h_power * dh`` for the cluster holding it at h:
    the Riemann sum MNE-Python uses, with the sign of the statistic.
    """
    start, step = float(tfce["start"]), float(tfce["step"])
    e_power, h_power = tfce.get("e_power", 0.5), tfce.get("h_power", 2.0)
    scores = np.zeros(stat.size)
    for sign in (1, -1) if tail == 0 else (tail,):
        x = sign * stat
        heights = np.arange(start, x.max(initial=-np.inf), step)
        for k, h in enumerate(heights):
            cells = np.flatnonzero(x > h)
            if not len(cells):
                break
            _, lab = connected_components(adj[cells][:, cells], directed=False)
            extent = np.bincount(lab)[lab]
            dh = abs(h) if k == 0 else step
            scores[cells] += sign * extent**e_power * abs(h) ** h_power * dh
    return scores


class _NullScorer:
    """Score permuted designs: the maximum cluster mass (or TFCE) of their z-map.

    A picklable callable, so that joblib can send it to other processes or
    to a Dask cluster.
    """

    def __init__(self, Y, codes, suff, gamma0, j, adj, threshold, tfce, tail):
        self.Y, self.codes, self.suff, self.gamma0 = Y, codes, suff, gamma0
        self.j, self.adj, self.threshold, self.tfce, self.tail = (
            j, adj, threshold, tfce, tail,
        )  # fmt: skip

    def z_of(self, design) -> np.ndarray:
        s = _reml.sufficient(design, self.Y, self.codes, yb=self.suff.yb,
                             ywyw=self.suff.ywyw)  # fmt: skip
        beta, se, _ = _reml.estimates(s, self.gamma0)
        return beta[:, self.j] / se[:, self.j]

    def score(self, stat) -> float:  # the statistic whose maximum builds the null
        if self.tfce is not None:
            tf = _tfce(stat, self.adj, self.tfce, self.tail)
            return float(np.abs(tf).max(initial=0.0))
        return _max_mass(stat, self.adj, self.threshold, self.tail)

    def __call__(self, designs) -> np.ndarray:
        return np.array([self.score(self.z_of(d)) for d in designs])


def _perm_p(masses, null) -> np.ndarray:
    return (1 + (null[None, :] >= np.abs(masses)[:, None]).sum(1)) / (1 + len(null))


def _table(labels, masses, p, ch_names, times, n_rows, n_times, span=("tmin", "tmax")):
    rows = []
    lab2 = labels.reshape(n_rows, n_times)
    for k, m in enumerate(masses):
        ch, tt = np.nonzero(lab2 == k)
        rows.append(
            dict(
                sign="+" if m > 0 else "-",
                mass=m,
                p=p[k],
                n_cells=len(ch),
                channels=" ".join(ch_names[c] for c in np.unique(ch)),
                **{span[0]: times[tt.min()], span[1]: times[tt.max()]},
            )
        )
    cols = ["sign", "mass", "p", "n_cells", "channels", *span]
    table = pd.DataFrame(rows, columns=cols)
    order = np.argsort(-np.abs(masses), kind="stable")
    # relabel so that cluster k is row k of the sorted table
    remap = np.full(len(masses) + 1, -1)
    remap[order] = np.arange(len(masses))
    labels = np.where(labels >= 0, remap[labels], -1)
    return table.iloc[order].reset_index(drop=True), labels.reshape(n_rows, n_times)


def strata_of(lmm, name: str) -> tuple[list[str], list[str]]:
    """Variables permuted to test ``name``, and the strata they move within."""
    meta = lmm.attr.metadata
    info = lmm.design.design_info
    j = lmm.coef(name)
    slices = info.term_name_slices
    term = next(
        t for t in info.terms if slices[t.name()].start <= j < slices[t.name()].stop
    )
    tested = sorted({v for f in term.factors for v in _variables(f.code, meta)})
    if not tested:
        raise ValueError(f"{lmm.names[j]!r} involves no metadata column to permute.")
    others = {
        v
        for t in info.terms
        for f in t.factors
        for v in _variables(f.code, meta)
        if v not in tested
    }
    categorical = [
        v for v in sorted(others) if not pd.api.types.is_numeric_dtype(meta[v])
    ]
    numeric = sorted(others - set(categorical))
    if numeric:
        logger.warning(
            "Numeric covariates %s cannot define permutation strata; labels are "
            "permuted within %s only.",
            numeric,
            [lmm.groups, *categorical],
        )
    return tested, [lmm.groups, *categorical]


def permute_within(meta: pd.DataFrame, cols, strata, rng) -> pd.DataFrame:
    """Shuffle the rows of ``cols`` within each stratum (other columns stay)."""
    out = meta.copy()
    idx = np.arange(len(meta))
    perm = idx.copy()
    for rows in meta.groupby(strata, sort=False, observed=True).indices.values():
        perm[rows] = rng.permutation(rows)
    for c in cols:
        out[c] = meta[c].to_numpy()[perm]
    return out


@fill_doc
@verbose
def cluster_test(
    lmm,
    name: str,
    *,
    n_permutations: int = 1000,
    threshold: float | dict | None = None,
    tail: int = 0,
    adjacency=None,
    seed: int | np.random.Generator | None = 0,
    n_jobs: int | None = None,
    verbose: bool | str | int | None = None,
) -> ClusterTest:
    """Cluster-based permutation test of one mixed-model coefficient.

    The labels of the tested variable (e.g. ``content``) are shuffled within
    strata of subject x every other categorical variable of the formula
    (e.g. ``stage``), so each subject keeps its epochs and its stage mix and
    only the content-to-epoch assignment changes. Each permutation refits
    the fixed effects by GLS with every cell's variance ratio held at its
    value in the *null* model (the formula without the tested coefficient):
    the statistic is then exactly the GLS Wald z, and the approximation is
    that the variance ratio is not re-estimated per permutation (as in
    FaST-LMM's permutation scheme). The observed map is computed the same
    way, so observed and permuted statistics are exchangeable under the null.

    Parameters
    ----------
    lmm : LMMResult
        A fit of :func:`eegsal.stats.fit_lmm` (random intercepts).
    name : str
        Coefficient to test (see :meth:`LMMResult.coef`).
    n_permutations : int
        Permutations.
    threshold : float | dict | None
        Cluster-forming threshold on |z|; None uses the two-sided (or
        one-sided, for ``tail`` = ±1) normal quantile of p = 0.05. A dict
        ``{'start': 0, 'step': 0.2}`` (optionally ``e_power``, ``h_power``:
        0.5 and 2) gives threshold-free cluster enhancement (TFCE; Smith &
        Nichols, 2009) instead, with a p-value per cell (``p_cells``).
    tail : int
        0 (two-sided), 1 (positive clusters) or -1 (negative).
    adjacency : array-like | scipy.sparse matrix | None
        Channel adjacency (n_channels, n_channels); None uses
        :func:`mne.channels.find_ch_adjacency` on the channel positions.
        Time points are adjacent to their neighbours.
    seed : int | numpy.random.Generator | None
        Seed of the permutations.
    %(n_jobs)s
    %(verbose)s

    Returns
    -------
    result : ClusterTest
        Clusters of the observed map, largest first, with p-values
        ``(1 + #{permutations with max |mass| >= |mass|}) / (1 + n_permutations)``.

    References
    ----------
    .. [1] Maris E, Oostenveld R (2007). Nonparametric statistical testing of
       EEG- and MEG-data. J Neurosci Methods 164:177-190.
    .. [2] Smith SM, Nichols TE (2009). Threshold-free cluster enhancement.
       NeuroImage 44:83-98.

    Examples
    --------
    >>> ct = lmm.cluster_test("content", n_permutations=1000)  # doctest: +SKIP
    >>> ct.clusters.head()  # doctest: +SKIP
    """
    import patsy
    from scipy import stats

    check_option("tail", tail, (0, 1, -1))
    if lmm.engine != "fast" or lmm.re_formula != "1":
        raise ValueError(
            "cluster_test needs a random-intercept fit of the fast engine; "
            "refit with fit_lmm(..., engine='fast')."
        )
    j = lmm.coef(name)
    coef_name = lmm.names[j]
    tfce = threshold if isinstance(threshold, dict) else None
    if tfce is not None and not {"start", "step"} <= set(tfce):
        raise ValueError(f"threshold as a dict needs 'start' and 'step', got {tfce}.")
    if tfce is not None and (tfce["step"] <= 0 or tfce["start"] < 0):
        raise ValueError(
            f"TFCE needs start >= 0 and step > 0 (on |z|, whatever the tail), "
            f"got {tfce}."
        )
    if threshold is None:
        threshold = float(stats.norm.isf(0.025 if tail == 0 else 0.05))
    attr, meta = lmm.attr, lmm.attr.metadata.reset_index(drop=True)
    n, n_rows, n_times = attr.data.shape
    Y = np.asarray(attr.data, dtype=np.float64).reshape(n, -1)
    if lmm.absolute:
        Y = np.abs(Y)
    codes, _ = pd.factorize(meta[lmm.groups], sort=True)
    X = lmm.design.to_numpy()
    suff = _reml.sufficient(X, Y, codes)
    null = _reml.sufficient(
        np.delete(X, j, axis=1), Y, codes, yb=suff.yb, ywyw=suff.ywyw
    )
    gamma0 = _reml.fit_gamma(null)

    tested, strata = strata_of(lmm, name)
    logger.info(
        "Cluster test of %s: %d permutations of %s within %s, threshold %.3g",
        coef_name,
        n_permutations,
        tested,
        strata,
        threshold,
    )
    adj = _adjacency(attr.info, n_rows, n_times, adjacency)
    scorer = _NullScorer(Y, codes, suff, gamma0, j, adj, threshold, tfce, tail)
    z = scorer.z_of(X)

    rng = check_random_state(seed)
    info = lmm.design.design_info
    # the permutations are drawn here, in order, so that the null does not
    # depend on n_jobs; chunks of them are scored in parallel
    designs = [
        np.asarray(patsy.build_design_matrices([info], perm)[0])
        for perm in (
            permute_within(meta, tested, strata, rng) for _ in range(n_permutations)
        )
    ]
    n_chunks = max(1, min(len(designs), 4 * effective_n_jobs(n_jobs)))
    chunks = [c for c in np.array_split(np.arange(n_permutations), n_chunks) if len(c)]
    # threads by default (NumPy releases the GIL; no copy of the maps per
    # process); a parallel_config backend such as Dask takes precedence
    jobs = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(
        delayed(scorer)([designs[i] for i in c]) for c in chunks
    )
    max_null = (
        np.concatenate(
            list(progress(jobs, desc=f"permutations of {coef_name}", total=len(chunks)))
        )
        if chunks
        else np.empty(0)
    )
    p_cells = scores = None
    if tfce is not None:
        scores = _tfce(z, adj, tfce, tail)
        p_cells = _perm_p(scores, max_null)
        # report the connected regions of significant cells as "clusters"
        sig = np.where(p_cells < 0.05, z, 0.0)
        labels, masses = _clusters(sig, adj, 0.0, tail)
        p_cluster = np.array([p_cells[labels == k].min() for k in range(len(masses))])
        scores, p_cells = (
            scores.reshape(n_rows, n_times),
            p_cells.reshape(n_rows, n_times),
        )
    else:
        labels, masses = _clusters(z, adj, threshold, tail)
        p_cluster = _perm_p(masses, max_null)
    table, labels = _table(
        labels,
        masses,
        p_cluster,
        lmm.ch_names,
        attr.times,
        n_rows,
        n_times,
        # spectral maps: clusters span frequencies
        ("fmin", "fmax")
        if getattr(attr, "domain", "time") == "frequency"
        else ("tmin", "tmax"),
    )
    return ClusterTest(
        name=coef_name,
        stat=z.reshape(n_rows, n_times),
        labels=labels,
        clusters=table,
        null=max_null,
        threshold=threshold,
        ch_names=lmm.ch_names,
        times=attr.times,
        p_cells=p_cells,
        tfce=scores,
    )


@fill_doc
@verbose
def two_stage_test(
    attr,
    contrast: str,
    *,
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

    Each subject's map of ``mean(attr | level b) - mean(attr | level a)`` is
    computed, and :func:`mne.stats.spatio_temporal_cluster_1samp_test` tests
    the maps across subjects (sign-flip permutations, t statistic).

    Parameters
    ----------
    attr : Attributions
        Attributions with metadata columns ``groups`` and the contrasted
        variable.
    contrast : str
        A metadata column with two levels: the map is the second level minus
        the first, in sorted order.
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
    %(verbose)s

    Returns
    -------
    result : ClusterTest
        As for :func:`cluster_test`, with the one-sample t map as ``stat``.
    """
    from scipy import stats

    check_option("tail", tail, (0, 1, -1))
    meta = attr.metadata.reset_index(drop=True)
    levels = sorted(meta[contrast].unique())
    if len(levels) != 2:
        raise ValueError(
            f"{contrast!r} must have two levels for a contrast, has {levels}."
        )
    maps, subjects = [], []
    for subject, rows in meta.groupby(groups, sort=True).indices.items():
        sub = meta.iloc[rows]
        means = []
        for level in levels:
            sel = rows[(sub[contrast] == level).to_numpy()]
            if not len(sel):
                break
            means.append(np.asarray(attr[sel].data, np.float64).mean(0))
        if len(means) == 2:
            maps.append(means[1] - means[0])
            subjects.append(subject)
        else:
            logger.warning(
                "Subject %s lacks one level of %s; skipped.", subject, contrast
            )
    maps = np.stack(maps)  # (subjects, rows, times)
    n_sub, n_rows, n_times = maps.shape
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
        seed=check_random_state(seed),
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
    )
