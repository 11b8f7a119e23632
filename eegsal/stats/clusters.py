"""Cluster-based permutation tests over channels x time (Maris & Oostenveld, 2007)."""

from __future__ import annotations

from dataclasses import dataclass, field

import mne
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from eegsal._check import check_option, check_random_state
from eegsal._docs import fill_doc
from eegsal._logging import logger, verbose
from eegsal.stats.permutations import (
    FREEDMAN_LANE,
    null_maps,
    permutation_null,
    permutation_scheme,
    strata_rows,
)

__all__ = ["ClusterTest", "cluster_test"]


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


class _MaxScore:
    """The score of one z-map whose maximum builds the null (picklable).

    The largest absolute cluster mass, or with TFCE settings the largest
    absolute TFCE score.
    """

    def __init__(self, adj, threshold, tfce, tail):
        self.adj, self.threshold, self.tfce, self.tail = adj, threshold, tfce, tail

    def __call__(self, stat: np.ndarray) -> float:
        if self.tfce is not None:
            tf = _tfce(stat, self.adj, self.tfce, self.tail)
            return float(np.abs(tf).max(initial=0.0))
        return _max_mass(stat, self.adj, self.threshold, self.tail)


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
    device=None,
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

    **Maps of cross-validated decoders.** The permutations keep the maps and
    move the labels. Maps explained by fold models (``attribute(result,
    epochs)``) depend on labels too: each fold's decoder learned from the
    labels of the other folds' subjects, whose maps are tested beside its
    own, so the subjects' label-map associations can share a term that the
    permutations do not reproduce. In 200 small simulated studies (6
    subjects, a stage confound, no content signal) the test claimed content
    in 19 at alpha = 0.05, above the binomial limit; explaining half the
    subjects by a decoder trained on the other half, which makes the
    permutations exact, claimed it in 10 of 198 (the statistics guide shows
    how; ``stats.split`` in a study).

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

    **On a GPU.** With a random intercept and the variance ratios held (the
    default), each block of 64 permutations is a few matrix products of the
    tested columns' lanes with the data; ``device='cuda'`` (or ``'auto'``)
    runs them with float64 torch tensors on the GPU, where the fit at the
    held ratios is moved once. The z-maps come back to the CPU, where the
    clusters are labelled. The p-values equal those of the CPU path up to
    floating-point error (the sums run in another order), not bit for bit:
    a permuted cluster mass within ~1e-12 of an observed one could count
    differently.

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
        Cluster-forming threshold on ``|z|``; None uses the two-sided (or
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
    device : str | torch.device | None
        Where the permuted z-maps are computed. None or ``'cpu'`` (default):
        NumPy on the CPU, the results of earlier versions exactly.
        ``'cuda'``, ``'cuda:N'``: float64 torch tensors on that GPU (an
        error if PyTorch sees none); ``'auto'``: the GPU when PyTorch sees
        one, else NumPy. GPU memory: the fit at the held ratios stays there
        for the whole test (about the data's size, ``n_epochs x n_cells x 8``
        bytes, plus ``n_cells x M^2 x 8`` for the M design columns that the
        permutations move), and each block of 64 permutations adds a few
        times ``64 x n_rows x 8`` bytes, ``n_rows`` the epochs of the largest
        class of strata (at most every epoch, once per moving column beside
        a numeric covariate), and ``64 x n_cells x M x 8``. Only that algebra
        moves: with random slopes or ``refit_gamma=True`` the permutations
        stay on NumPy whatever ``device`` (a logged note), and the clusters
        are always labelled on the CPU, in ``n_jobs`` threads.
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
    _, n_rows, n_times = attr.data.shape
    scheme = permutation_scheme(lmm, name)
    maps, refit_gamma = null_maps(lmm, j, scheme, refit_gamma, device)
    logger.info(
        "Cluster test of %s (claim about %s): %d permutations (%s%s) of %s within "
        "%s, threshold %s%s",
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
        f", on {maps.device}" if maps.device else "",
    )
    adj = _adjacency(attr.info, n_rows, n_times, adjacency)
    # the observed statistic: the fitted model's Wald z (for random slopes, at
    # its own variance parameters; Freedman-Lane's refit of the residuals
    # gives the same z)
    z = lmm.t[j].ravel() if slopes else maps.z_of(None)
    max_null = permutation_null(
        maps,
        _MaxScore(adj, threshold, tfce, tail),
        strata_rows(meta, scheme.strata),
        n_permutations,
        check_random_state(seed),
        n_jobs=n_jobs,
        desc=f"permutations of {coef_name}",
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
