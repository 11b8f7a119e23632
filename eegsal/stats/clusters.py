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
from eegsal.stats import _reml, _reml_slopes
from eegsal.stats.lmm import POPULATION, _design, _variables

__all__ = ["ClusterTest", "cluster_test", "two_stage_test"]

RESTRICTED, FREEDMAN_LANE = "restricted shuffle", "Freedman-Lane"


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
    scheme : str
        How the null was drawn: ``'restricted shuffle'`` (the tested labels
        shuffled within strata), ``'Freedman-Lane'`` (the reduced model's
        residuals permuted within strata) or ``'sign flip'`` (per-subject
        contrast maps, :func:`two_stage_test`); also the ``scheme`` column of
        ``clusters``.
    strata : list of str
        Metadata columns whose combinations bound the permutations (for
        ``'sign flip'``: the columns within whose cells the contrasts were
        formed).
    claim : str
        What the test is about: ``'these subjects'`` (a random-intercept
        model: the variation of the effect across subjects is not in the
        statistic) or ``'the population'`` (a random slope of the tested
        term, or the across-subject sign flips of :func:`two_stage_test`);
        also the ``claim`` column of ``clusters``.
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
    scheme: str = "restricted shuffle"
    strata: list = field(default_factory=list)
    claim: str = "these subjects"

    def __repr__(self) -> str:
        n_sig = int((self.clusters["p"] < 0.05).sum())
        within = f" within {' x '.join(self.strata)}" if self.strata else ""
        return (
            f"<ClusterTest | {self.name}, {self.scheme}{within}, claim about "
            f"{self.claim}, {len(self.null)} permutations, "
            f"{len(self.clusters)} clusters ({n_sig} with p < 0.05)>"
        )

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
    """Score permutations: the maximum cluster mass (or TFCE) of their z-map.

    ``Y`` is what each permutation refits: the data under the restricted
    shuffle (column ``j`` of the design follows the permuted labels), the
    reduced model's residuals under Freedman-Lane. Fitting permuted residuals
    ``P r`` against the design ``X`` is the same GLS fit as fitting ``r``
    against the rows of ``X`` permuted by ``P^-1``, because the covariance
    ``I + gamma Z Z'`` is unchanged by permutations within subject; so both
    schemes permute rows of the design and reuse the subject means and
    within-subject sums of squares of ``Y``. A picklable callable, so that
    joblib can send it to other processes or to a Dask cluster.
    """

    def __init__(self, X, Y, codes, gamma0, j, scheme, refit_gamma, adj, threshold,
                 tfce, tail):  # fmt: skip
        self.X, self.Y, self.codes, self.gamma0, self.j = X, Y, codes, gamma0, j
        self.scheme, self.refit_gamma = scheme, refit_gamma
        self.adj, self.threshold, self.tfce, self.tail = adj, threshold, tfce, tail
        s = _reml.sufficient(X[:, :1], Y, codes)
        self.yb, self.ywyw = s.yb, s.ywyw

    def design(self, perm: np.ndarray) -> np.ndarray:
        """Build the design of one permutation (row ``i`` takes row ``perm[i]``)."""
        if self.scheme == FREEDMAN_LANE:
            return self.X[perm]
        design = self.X.copy()
        design[:, self.j] = self.X[perm, self.j]
        return design

    def z_of(self, perm: np.ndarray | None = None) -> np.ndarray:
        """Wald z of coefficient ``j`` per cell, observed (None) or permuted."""
        design = self.X if perm is None else self.design(perm)
        s = _reml.sufficient(design, self.Y, self.codes, yb=self.yb, ywyw=self.ywyw)
        gamma = self.gamma0
        if self.refit_gamma and perm is not None:
            # the reduced model of the permuted data, as gamma0 is of the data
            gamma = _reml.fit_gamma(_reml.drop(s, self.j))
        beta, se, _ = _reml.estimates(s, gamma)
        return beta[:, self.j] / se[:, self.j]

    def score(self, stat) -> float:  # the statistic whose maximum builds the null
        if self.tfce is not None:
            tf = _tfce(stat, self.adj, self.tfce, self.tail)
            return float(np.abs(tf).max(initial=0.0))
        return _max_mass(stat, self.adj, self.threshold, self.tail)

    def __call__(self, perms) -> np.ndarray:
        return np.array([self.score(self.z_of(p)) for p in perms])


class _SlopeNullScorer(_NullScorer):
    """Score permutations of a random-slope fit (:mod:`eegsal.stats._reml_slopes`).

    The random-effects design ``Z`` holds the tested variable, so the
    covariance moves with a permutation: a permutation refits ``Y`` (data or
    reduced-model residuals) against the rows of ``X`` *and* ``Z`` permuted
    together, which for the residuals is the same fit as ``P r`` against
    ``X, Z``. The per-subject cross-products of the design are unchanged by
    permutations within subject; only those with ``Y`` are recomputed.
    ``theta0`` (the variance parameters of the permuted data's model) is
    held, or, with ``refit``, the reduced model is refitted to each
    permutation.
    """

    def __init__(self, X, Z, Y, codes, theta0, j, refit, adj, threshold, tfce,
                 tail):  # fmt: skip
        self.X, self.Z, self.Y, self.codes = X, Z, Y, codes
        self.theta0, self.j, self.refit = theta0, j, refit
        self.adj, self.threshold, self.tfce, self.tail = adj, threshold, tfce, tail

    def z_of(self, perm: np.ndarray | None = None) -> np.ndarray:
        """Wald z of coefficient ``j`` per cell, observed (None) or permuted."""
        X, Z = (self.X, self.Z) if perm is None else (self.X[perm], self.Z[perm])
        s = _reml_slopes.group_sums(X, Z, self.Y, self.codes)
        theta = self.theta0
        if self.refit and perm is not None:
            theta = _reml_slopes.fit_theta(_reml_slopes.drop(s, self.j), start=theta)
        beta, se, _, _ = _reml_slopes.estimates(s, theta)
        return beta[:, self.j] / se[:, self.j]


def _perm_p(masses, null) -> np.ndarray:
    return (1 + (null[None, :] >= np.abs(masses)[:, None]).sum(1)) / (1 + len(null))


def _table(
    labels, masses, p, ch_names, times, n_rows, n_times, span=("tmin", "tmax"),
    scheme="restricted shuffle", claim="these subjects",
):  # fmt: skip
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
                scheme=scheme,
                claim=claim,
            )
        )
    cols = ["sign", "mass", "p", "n_cells", "channels", *span, "scheme", "claim"]
    table = pd.DataFrame(rows, columns=cols)
    order = np.argsort(-np.abs(masses), kind="stable")
    # relabel so that cluster k is row k of the sorted table
    remap = np.full(len(masses) + 1, -1)
    remap[order] = np.arange(len(masses))
    labels = np.where(labels >= 0, remap[labels], -1)
    return table.iloc[order].reset_index(drop=True), labels.reshape(n_rows, n_times)


@dataclass(frozen=True)
class PermutationScheme:
    """How one coefficient is tested by permutation.

    Attributes
    ----------
    name : str
        ``'restricted shuffle'`` or ``'Freedman-Lane'``.
    tested : list of str
        The metadata columns of the tested term.
    strata : list of str
        The columns whose combinations bound the permutations: the subjects
        and every categorical variable of the formula outside the tested term.
    """

    name: str
    tested: list
    strata: list


def permutation_scheme(lmm, name: str) -> PermutationScheme:
    """Choose how a test of coefficient ``name`` permutes: the one place of that choice.

    The null model (the *reduced* model) is the formula without the tested
    coefficient; every other column of the design is a nuisance. Shuffling
    the tested variable within strata of subject x the other categorical
    variables leaves the reduced design unchanged, so under the null the
    epochs of a stratum are exchangeable and the test is exact, when the
    coefficient is the only column of its term, its variables enter no other
    term, and every other variable is categorical (e.g. ``content`` in
    ``content + stage``). Otherwise shuffling labels would move part of the
    reduced model too, and test a broader null: for ``content:C(stage, Sum)``
    it would shuffle content *and* stage, testing "no content, no stage, no
    interaction". Then the residuals of the reduced model are permuted
    within the same strata and added back to its fit (Freedman & Lane,
    1983): that is the case for interactions, for the main effect of a
    variable that also enters an interaction, for one level of a factor with
    more, and beside a numeric covariate.

    Parameters
    ----------
    lmm : LMMResult
        The fitted model.
    name : str
        Coefficient to test (see :meth:`LMMResult.coef`).

    Returns
    -------
    scheme : PermutationScheme
        The scheme, the tested variables and the strata.
    """
    meta = lmm.attr.metadata
    info = lmm.design.design_info
    j = lmm.coef(name)
    slices = info.term_name_slices

    def variables(term) -> set[str]:
        return {v for f in term.factors for v in _variables(f.code, meta)}

    term = next(
        t for t in info.terms if slices[t.name()].start <= j < slices[t.name()].stop
    )
    tested = variables(term)
    if not tested:
        raise ValueError(f"{lmm.names[j]!r} involves no metadata column to permute.")
    elsewhere = set().union(*(variables(t) for t in info.terms if t != term))
    nuisance = elsewhere - tested
    categorical = [
        v for v in sorted(nuisance) if not pd.api.types.is_numeric_dtype(meta[v])
    ]
    sl = slices[term.name()]
    exact = (
        sl.stop - sl.start == 1
        and not tested & elsewhere
        and len(categorical) == len(nuisance)
    )
    return PermutationScheme(
        RESTRICTED if exact else FREEDMAN_LANE,
        sorted(tested),
        [lmm.groups, *categorical],
    )


def _strata_rows(meta: pd.DataFrame, strata) -> list[np.ndarray]:
    return list(meta.groupby(strata, sort=False, observed=True).indices.values())


def _shuffle(n: int, strata_rows, rng) -> np.ndarray:
    """Draw a permutation of ``range(n)`` that moves rows within their stratum."""
    perm = np.arange(n)
    for rows in strata_rows:
        perm[rows] = rng.permutation(rows)
    return perm


def permute_within(meta: pd.DataFrame, cols, strata, rng) -> pd.DataFrame:
    """Shuffle the rows of ``cols`` within each stratum (other columns stay)."""
    out = meta.copy()
    perm = _shuffle(len(meta), _strata_rows(meta, strata), rng)
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
    refit_gamma: bool | None = None,
    seed: int | np.random.Generator | None = 0,
    n_jobs: int | None = None,
    verbose: bool | str | int | None = None,
) -> ClusterTest:
    """Cluster-based permutation test of one mixed-model coefficient.

    The null hypothesis is that the coefficient is zero in the model that
    keeps every other column of the design (the *reduced* model, the formula
    without the tested coefficient). Permutations move epochs only within
    strata of subject x every categorical variable outside the tested term,
    so each subject keeps its epochs, its stage mix and its random intercept.
    :func:`permutation_scheme` chooses between two schemes, recorded in the
    result's ``scheme``:

    - *restricted shuffle*, where it is exact (a one-column main effect whose
      variables enter no other term, beside categorical variables only, e.g.
      ``content`` in ``content + stage``): the tested labels are shuffled
      within the strata. Under the null the epochs of a stratum are
      exchangeable (same subject, same levels of every other variable).
    - *Freedman-Lane* (Freedman & Lane, 1983; Winkler et al., 2014) for
      everything else: interactions, main effects of variables that also
      enter an interaction, one level of a multi-level factor, and models
      with numeric covariates. The reduced model is fitted (GLS at its REML
      variance ratio), its marginal residuals ``Y - X_r beta_r`` (the random
      intercept left in them) are permuted within the strata, added back to
      the reduced fit, and the full model is refitted. This assumes the
      reduced model's residuals exchangeable within a stratum (one variance
      per subject, the random intercept constant in a subject); it is exact
      only asymptotically, and any effect of the reduced model (e.g. a stage
      main effect beside a tested content x stage interaction) leaves the
      test unchanged.

    Each permutation refits the fixed effects by GLS; the statistic is the
    Wald z of the coefficient, observed and permuted alike. The variance
    ratio of each cell is that of the reduced model fitted to the observed
    data, held for every permutation by default (as in FaST-LMM's permutation
    scheme). Under the restricted shuffle that is exact: the reduced design
    does not move, so its REML fit is the same for every permutation. Under
    Freedman-Lane the reduced design moves relative to the permuted
    residuals; holding the ratio is then an approximation, and
    ``refit_gamma=True`` re-estimates it per permutation (the REML fit of the
    reduced model to the permuted data, as for the observed map) at the
    cost of one REML search per permutation: for 1,000 epochs of 20 subjects
    x 2,048 cells, 7 ms a permutation held and 100 ms refitted (the
    restricted shuffle: 5 ms). Held is the default because the permuted
    residuals keep each subject's mean and within-subject spread, which is
    what the ratio measures: on 8 subjects x 30 epochs the two nulls had the
    same 50th and 95th percentiles and gave the same p-values.

    **These subjects or the population.** The result's ``claim`` is the
    model's (:attr:`LMMResult.claim`). With a random intercept only it is
    about *these subjects*: the permutations hold each subject's epochs
    exchangeable, and a content effect that varies by subject (with no
    average effect) makes clusters, as it makes the Wald z too wide (6 null
    maps, 10 subjects x 40 epochs x 400 cells, content slope SD 0.5: all 6
    had a cluster with p < 0.05; 1 of 6 with a random slope). With a random
    slope of the tested term (``fit_lmm(..., re_formula='content')``) the
    statistic is the fitted
    model's random-slope Wald z, approximately N(0, 1) under "no average
    effect in the population", and the claim is about *the population*.
    Permutations within subject then take away every subject's own effect,
    so the permuted data have no slope variance: each permutation refits the
    rows of both designs permuted together, with the variance parameters of
    the reduced model held at its observed fit *but the variance of every
    random effect that moves with the permutation (the tested slope) set to
    zero*. Measured on 30 subjects x 40 epochs x 400 null cells (slope SD
    0.5): the permuted z had SD 1.00, against 1.04 for the observed z;
    holding the observed slope variance instead gave SD 0.56 (a null far too
    narrow, hence anti-conservative), and refitting the reduced model per
    permutation (``refit_gamma=True``, ~100x slower) gave 0.94 (chance slope
    variances in permuted data widen the SE). With few subjects the observed
    z is wider than N(0, 1) (t-like: SD 1.08-1.18 with 10 subjects) and the
    test is then liberal; :func:`two_stage_test` (sign flips of per-subject
    contrasts) is exact for the population there.

    Parameters
    ----------
    lmm : LMMResult
        A fit of :func:`eegsal.stats.fit_lmm` with the fast engine (random
        intercepts, or random slopes).
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
    refit_gamma : bool | None
        Re-estimate the variance parameters of the reduced model for each
        permutation instead of holding them (random intercepts: Freedman-Lane
        only, about 15x slower per permutation; random slopes: about 100x
        slower, see above). None: hold them.
    seed : int | numpy.random.Generator | None
        Seed of the permutations.
    %(n_jobs)s
    %(verbose)s

    Returns
    -------
    result : ClusterTest
        Clusters of the observed map, largest first, with p-values
        ``(1 + #{permutations with max |mass| >= |mass|}) / (1 + n_permutations)``,
        and the ``scheme`` and ``strata`` of the permutations.

    References
    ----------
    .. [1] Maris E, Oostenveld R (2007). Nonparametric statistical testing of
       EEG- and MEG-data. J Neurosci Methods 164:177-190.
    .. [2] Smith SM, Nichols TE (2009). Threshold-free cluster enhancement.
       NeuroImage 44:83-98.
    .. [3] Freedman D, Lane D (1983). A nonstochastic interpretation of
       reported significance levels. J Bus Econ Stat 1:292-298.
    .. [4] Winkler AM, Ridgway GR, Webster MA, Smith SM, Nichols TE (2014).
       Permutation inference for the general linear model. NeuroImage
       92:381-397.

    Examples
    --------
    >>> ct = lmm.cluster_test("content", n_permutations=1000)  # doctest: +SKIP
    >>> ct.clusters.head()  # doctest: +SKIP
    """
    from scipy import stats

    check_option("tail", tail, (0, 1, -1))
    if lmm.engine != "fast":
        raise ValueError(
            "cluster_test needs a fit of the fast engine; refit with "
            "fit_lmm(..., engine='fast')."
        )
    slopes = lmm.gamma is None  # random slopes: lme4's criterion per cell
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
    scheme = permutation_scheme(lmm, name)
    strata_rows = _strata_rows(meta, scheme.strata)
    if slopes:
        Z = _design(lmm.re_formula, meta).to_numpy()
        reduced = _reml_slopes.drop(_reml_slopes.group_sums(X, Z, Y, codes), j)
        theta0 = _reml_slopes.fit_theta(reduced)
        if scheme.name == FREEDMAN_LANE:
            # marginal residuals: the subjects' intercepts and slopes stay in them
            beta_r = _reml_slopes.estimates(reduced, theta0)[0]
            Y = Y - np.delete(X, j, axis=1) @ beta_r.T
        # permutations within strata take away every subject's own effect of
        # the random effects that vary within a stratum (the tested slope):
        # the permuted data's model has no variance for them
        moved = np.array([
            any(np.ptp(Z[rows, k]) > 0 for rows in strata_rows)
            for k in range(Z.shape[1])
        ])  # fmt: skip
        theta0 = theta0.copy()
        theta0[:, np.isin(np.tril_indices(Z.shape[1])[0], np.flatnonzero(moved))] = 0
        if moved.all() and not refit_gamma:
            logger.info("Every random effect moves with the permutations: refitted.")
            refit_gamma = True
    else:
        reduced = _reml.drop(_reml.sufficient(X, Y, codes), j)
        gamma0 = _reml.fit_gamma(reduced)
        if scheme.name == FREEDMAN_LANE:
            # marginal residuals of the reduced model: its random intercepts stay
            # in them and, permuted within subject, stay with their subject
            beta_r, _, _ = _reml.estimates(reduced, gamma0)
            Y = Y - np.delete(X, j, axis=1) @ beta_r.T
    # with a random intercept only, the restricted shuffle leaves the reduced
    # model's fit unchanged: nothing to refit
    refit_gamma = bool(refit_gamma) and (slopes or scheme.name == FREEDMAN_LANE)
    logger.info(
        "Cluster test of %s (claim about %s): %d permutations (%s%s) of %s within "
        "%s, threshold %s",
        coef_name,
        lmm.claim[coef_name],
        n_permutations,
        scheme.name,
        ", variance parameters refitted" if refit_gamma else "",
        "the reduced model's residuals"
        if scheme.name == FREEDMAN_LANE
        else scheme.tested,
        scheme.strata,
        threshold,
    )
    adj = _adjacency(attr.info, n_rows, n_times, adjacency)
    if slopes:
        scorer = _SlopeNullScorer(X, Z, Y, codes, theta0, j, refit_gamma, adj,
                                  threshold, tfce, tail)  # fmt: skip
    else:
        scorer = _NullScorer(X, Y, codes, gamma0, j, scheme.name, refit_gamma, adj,
                             threshold, tfce, tail)  # fmt: skip
    # the observed statistic: the fitted model's Wald z (for random slopes, at
    # its own variance parameters; Freedman-Lane's refit of the residuals
    # gives the same z)
    z = lmm.t[j].ravel() if slopes else scorer.z_of(None)

    rng = check_random_state(seed)
    # the permutations are drawn here, in order, so that the null does not
    # depend on n_jobs; chunks of them are scored in parallel
    perms = [_shuffle(n, strata_rows, rng) for _ in range(n_permutations)]
    n_chunks = max(1, min(len(perms), 4 * effective_n_jobs(n_jobs)))
    chunks = [c for c in np.array_split(np.arange(n_permutations), n_chunks) if len(c)]
    # threads by default (NumPy releases the GIL; no copy of the maps per
    # process); a parallel_config backend such as Dask takes precedence
    jobs = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(
        delayed(scorer)([perms[i] for i in c]) for c in chunks
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
        scheme=scheme.name,
        claim=lmm.claim[coef_name],
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
        scheme=scheme.name,
        strata=list(scheme.strata),
        claim=lmm.claim[coef_name],
    )


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
