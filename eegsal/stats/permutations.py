"""Permutation schemes of mixed-model coefficients, and the null maps they draw.

:func:`permutation_scheme` chooses how a coefficient is tested (the restricted
shuffle where it is exact, Freedman-Lane otherwise), :func:`shuffle` draws one
permutation within strata, the null-map classes give the Wald z-map of the
coefficient for each permutation, and :func:`permutation_null` reduces the
maps of ``n_permutations`` permutations to one score each, in parallel, with
a result that does not depend on ``n_jobs``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs

from eegsal._logging import logger, progress
from eegsal.stats import _reml, _reml_slopes
from eegsal.stats._torch_null import _torch_device, held_on_device, z_block_on_device
from eegsal.stats.lmm import _design, _variables

__all__ = [
    "FREEDMAN_LANE",
    "RESTRICTED",
    "PermutationScheme",
    "null_maps",
    "permutation_null",
    "permutation_scheme",
    "permute_within",
    "shuffle",
    "strata_rows",
]

RESTRICTED, FREEDMAN_LANE = "restricted shuffle", "Freedman-Lane"
BLOCK = 64  # permutations whose cross-products are computed together


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


def strata_rows(meta: pd.DataFrame, strata) -> list[np.ndarray]:
    """Rows (positions) of each combination of the ``strata`` columns of ``meta``.

    The one grouping of rows that every restricted shuffle of eegsal uses
    (:func:`shuffle`: mixed models, cluster tests, within-context scores and
    the context regression). The strata come in the order of their first
    row, each with its rows in increasing order, whatever the pandas version
    (a grouping by several columns orders them otherwise in pandas 2): the
    permutations a seed draws depend on this order. A missing value is a
    value of its own.

    Parameters
    ----------
    meta : pandas.DataFrame
        The table (only the positions of its rows count, not its index).
    strata : str | list of str
        The columns whose combinations are the strata.

    Returns
    -------
    rows : list of ndarray of int
        The positions of the rows of each stratum.
    """
    cols = [strata] if isinstance(strata, str) else list(strata)
    keys = pd.MultiIndex.from_arrays([pd.Index(meta[c]) for c in cols])
    rows = pd.Series(np.arange(len(keys))).groupby(keys, sort=False).indices
    return list(rows.values())


def shuffle(n: int, rows, rng: np.random.Generator) -> np.ndarray:
    """Draw a permutation of ``range(n)`` that moves rows within their stratum."""
    # rng.shuffle of each stratum's slice of one buffer draws what
    # rng.permutation(r) draws, stratum by stratum, without its overhead
    flat = np.concatenate(rows) if len(rows) else np.empty(0, int)
    buf, start = flat.copy(), 0
    for r in rows:
        rng.shuffle(buf[start : start + len(r)])
        start += len(r)
    perm = np.arange(n)
    perm[flat] = buf
    return perm


def permute_within(meta: pd.DataFrame, cols, strata, rng) -> pd.DataFrame:
    """Shuffle the rows of ``cols`` within each stratum (other columns stay)."""
    out = meta.copy()
    perm = shuffle(len(meta), strata_rows(meta, strata), rng)
    for c in cols:
        out[c] = meta[c].to_numpy()[perm]
    return out


class InterceptNull:
    """Wald z-maps of coefficient ``j`` of a random-intercept fit, per permutation.

    ``Y`` is what each permutation refits: the data under the restricted
    shuffle (column ``j`` of the design follows the permuted labels), the
    reduced model's residuals under Freedman-Lane. Fitting permuted residuals
    ``P r`` against the design ``X`` is the same GLS fit as fitting ``r``
    against the rows of ``X`` permuted by ``P^-1``, because the covariance
    ``I + gamma Z Z'`` is unchanged by permutations within subject; so both
    schemes permute rows of the design and reuse the subject means and
    within-subject sums of squares of ``Y``. Picklable, so that joblib can
    send it to other processes or to a Dask cluster.

    Parameters
    ----------
    X : ndarray, shape (n_epochs, p)
        The fixed-effects design.
    Y : ndarray, shape (n_epochs, n_cells)
        The data (restricted shuffle) or the reduced model's residuals.
    codes : ndarray of int, shape (n_epochs,)
        Subject of each epoch, 0..G-1.
    gamma0 : ndarray, shape (n_cells,)
        Variance ratios of the reduced model, held for every permutation.
    j : int
        The tested coefficient.
    scheme : str
        :data:`RESTRICTED` or :data:`FREEDMAN_LANE`.
    refit_gamma : bool
        Refit the reduced model's variance ratio to each permutation.
    rows : list of ndarray | None
        The rows of each stratum (:func:`strata_rows`): under Freedman-Lane
        the columns of ``X`` constant within every stratum do not move.
    device : str | None
        A torch device (from :func:`_torch_device`) on which the blocks of
        held-ratio permutations are computed (:meth:`_z_block_torch`); None:
        NumPy.
    """

    def __init__(
        self, X, Y, codes, gamma0, j, scheme, refit_gamma, rows=None, device=None
    ):
        self.X, self.Y, self.codes, self.gamma0, self.j = X, Y, codes, gamma0, j
        self.scheme, self.refit_gamma, self.device = scheme, refit_gamma, device
        s = _reml.sufficient(X[:, :1], Y, codes)
        self.yb, self.ywyw = s.yb, s.ywyw
        if scheme == FREEDMAN_LANE:
            # the design's columns that vary within a stratum are the ones a
            # permutation moves; None: any column may move
            self.moving = np.flatnonzero([
                rows is None or any(np.ptp(X[r, k]) > 0 for r in rows)
                for k in range(X.shape[1])
            ])  # fmt: skip
        else:
            self.moving = np.array([j])
        self.rows, self._held = rows, None
        self._on_device, self._lock = {}, threading.Lock()

    def __getstate__(self) -> dict:
        # tensors on a device and the lock stay here: a worker builds its own
        state = dict(self.__dict__)
        if "_lock" in state:
            state["_on_device"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_lock" in state:
            self._lock = threading.Lock()

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

    def z_maps(self, perms) -> np.ndarray:
        """Wald z-maps (n_perms, n_cells) of a sequence of permutations.

        With the variance ratios held, the permutations are taken
        :data:`BLOCK` at a time (:meth:`_z_block`); refitted, one by one.
        """
        if self.refit_gamma:
            return np.array([self.z_of(p) for p in perms])
        if not len(perms):
            return np.empty((0, self.Y.shape[1]))
        return np.concatenate([
            self._z_block(np.asarray(perms[a : a + BLOCK]))
            for a in range(0, len(perms), BLOCK)
        ])  # fmt: skip

    def _held_fit(self):
        """Fit at the held variance ratios: what every permutation updates.

        Returns the lanes of the moving columns (:func:`_lanes`), the
        observed fit ``beta0`` (F, p) and ``r'Wr`` (F,), and per cell
        ``A^-1`` restricted to the moving columns (F, M, M), to the row ``j``
        (F, M), and ``(A^-1)_jj`` (F,).
        """
        if self._held is None:
            s = _reml.sufficient(self.X, self.Y, self.codes, yb=self.yb,
                                 ywyw=self.ywyw)  # fmt: skip
            beta0, A, rwr0 = _reml._gls(s, self.gamma0)
            inv = np.linalg.inv(A)
            m = self.moving
            lanes = _lanes(self.X[:, m], self.rows, self.Y)
            self._held = (lanes, beta0, rwr0, inv[:, m[:, None], m[None, :]],
                          inv[:, self.j, m], inv[:, self.j, self.j])  # fmt: skip
        return self._held

    def _z_block(self, perms: np.ndarray) -> np.ndarray:
        """Wald z-maps of a block of permutations (B, N), variance ratios held.

        A permutation within subject changes neither the design's subject
        means nor ``A`` (per cell, at its held ratio): only the cross-products
        of the moving columns with ``Y``, by ``delta`` (M values per cell).
        So ``beta_j = beta0_j + (A^-1)_{j,m} delta`` and ``r'Wr = r0'Wr0 -
        2 delta' beta0_m - delta' (A^-1)_mm delta``, and the cross-products
        of the whole block are a few (B, N_k) x (N_k, F) matrix products.
        With a ``device``, the same algebra runs there (:meth:`_z_block_torch`).
        """
        if self.device is not None:
            return self._z_block_torch(perms, self.device)
        (u, classes), beta0, rwr0, inv_mm, inv_jm, inv_jj = self._held_fit()
        delta = 0.0
        for rows, offset, v, y_k, c_k in classes:
            d_k = u[perms[:, rows] + offset] @ y_k - c_k  # (B, F)
            delta = delta + v[None, :, None] * d_k[:, None, :]  # (B, M, F)
        b0 = beta0[:, self.moving].T  # (M, F)
        beta_j = beta0[:, self.j] + np.einsum("fm,bmf->bf", inv_jm, delta)
        quad = np.einsum("bmf,fmk,bkf->bf", delta, inv_mm, delta)
        rwr = rwr0 - 2 * np.einsum("bmf,mf->bf", delta, b0) - quad
        scale = np.maximum(rwr, 1e-300) / (len(self.X) - self.X.shape[1])
        return beta_j / np.sqrt(scale * inv_jj)

    def _held_torch(self, device):
        """Move the held fit to ``device`` once (``_torch_null.held_on_device``)."""
        return held_on_device(self, device)

    def _z_block_torch(self, perms: np.ndarray, device) -> np.ndarray:
        """Compute :meth:`_z_block` on ``device`` (``_torch_null``)."""
        return z_block_on_device(self, perms, device)


def _lanes(X_m: np.ndarray, rows, Y: np.ndarray):
    """Write the moving columns as few dense products over disjoint rows.

    Within a stratum the moving columns are often one vector times fixed
    weights (``content`` and ``content:stage[T.REM]`` are both the content
    indicator in a REM stratum, and the second is zero elsewhere): then
    ``X_m[n] = u_n v_k`` for the rows of a class ``k`` of strata, a
    permutation within strata moves ``u`` alone, and the change of
    ``X_m' Y`` is ``sum_k v_k (u[perm]_k - u_k)' Y_k``, one lane per row
    instead of one per moving column. Where a stratum holds two independent
    moving columns (a numeric covariate beside the tested label), each column
    is its own lane over all rows.

    Returns
    -------
    u : ndarray, shape (N,) or (N * M,)
        The lane values (for the fallback, the columns one after another).
    classes : list of (rows, offset, v, Y_k, c_k)
        Rows of each class, the offset of its lane in ``u``, its weights
        (M,), those rows of ``Y`` and ``u_k' Y_k`` (F,).
    """
    n, n_moving = X_m.shape
    u, groups = np.zeros(n), {}
    for r in rows:
        block = X_m[r]
        ref = block[np.abs(block).sum(1).argmax()]
        if not ref.any():
            continue  # the moving columns are zero here
        v = ref / ref[np.flatnonzero(ref)[0]]
        coef = block @ v / (v @ v)
        scale = np.abs(block).max()
        if np.abs(np.outer(coef, v) - block).max() > 1e-12 * scale:
            u, groups = None, None
            break
        u[r] = coef
        groups.setdefault(tuple(v), []).append(r)
    if groups is None:  # one lane per moving column, over all rows
        u = X_m.T.ravel()
        classes = []
        for m in range(n_moving):
            v = np.zeros(n_moving)
            v[m] = 1.0
            classes.append((np.arange(n), n * m, v, Y, X_m[:, m] @ Y))
        return u, classes
    classes = []
    for key, rs in groups.items():
        rs = np.sort(np.concatenate(rs))
        y_k = Y if len(rs) == n else Y[rs]  # every row: no copy
        classes.append((rs, 0, np.array(key), y_k, u[rs] @ y_k))
    return u, classes


class SlopeNull(InterceptNull):
    """Wald z-maps of a random-slope fit (:mod:`eegsal.stats._reml_slopes`).

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

    device = None  # NumPy only: each permutation is its own fit

    def __init__(self, X, Z, Y, codes, theta0, j, refit):  # fmt: skip
        self.X, self.Z, self.Y, self.codes = X, Z, Y, codes
        self.theta0, self.j, self.refit = theta0, j, refit

    def z_of(self, perm: np.ndarray | None = None) -> np.ndarray:
        """Wald z of coefficient ``j`` per cell, observed (None) or permuted."""
        X, Z = (self.X, self.Z) if perm is None else (self.X[perm], self.Z[perm])
        s = _reml_slopes.group_sums(X, Z, self.Y, self.codes)
        theta = self.theta0
        if self.refit and perm is not None:
            theta = _reml_slopes.fit_theta(_reml_slopes.drop(s, self.j), start=theta)
        beta, se, _, _ = _reml_slopes.estimates(s, theta)
        return beta[:, self.j] / se[:, self.j]

    def z_maps(self, perms) -> np.ndarray:
        """Wald z-maps (n_perms, n_cells) of a sequence of permutations."""
        return np.array([self.z_of(p) for p in perms]).reshape(len(perms), -1)


def null_maps(
    lmm, j: int, scheme: PermutationScheme, refit_gamma: bool | None, device=None
):
    """Set up the null maps of coefficient ``j``: fit the reduced model once.

    Under Freedman-Lane the maps refit the reduced model's marginal residuals;
    with random slopes, the variances of the random effects that move with
    the permutations are set to zero (permutations within subject take away
    every subject's own effect of them).

    Parameters
    ----------
    lmm : LMMResult
        A fit of the fast engine.
    j : int
        The tested coefficient.
    scheme : PermutationScheme
        From :func:`permutation_scheme`.
    refit_gamma : bool | None
        Refit the reduced model's variance parameters to each permutation.
    device : str | None
        Where the blocks of permutations of a random-intercept fit with held
        variance ratios are computed (see :func:`eegsal.stats.cluster_test`):
        None or ``'cpu'``: NumPy; ``'auto'``, ``'cuda'``, ``'cuda:N'``: torch
        on that GPU. Random slopes and refitted ratios stay on NumPy (logged).

    Returns
    -------
    maps : InterceptNull | SlopeNull
        The null maps.
    refit : bool
        Whether the variance parameters are refitted (after the rules above).
    """
    slopes = lmm.gamma is None  # random slopes: lme4's criterion per cell
    device = _torch_device(device)
    attr, meta = lmm.attr, lmm.attr.metadata.reset_index(drop=True)
    n = attr.data.shape[0]
    Y = np.asarray(attr.data, dtype=np.float64).reshape(n, -1)
    if lmm.absolute:
        Y = np.abs(Y)
    codes, _ = pd.factorize(meta[lmm.groups], sort=True)
    X = lmm.design.to_numpy()
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
        rows = strata_rows(meta, scheme.strata)
        moved = np.array([
            any(np.ptp(Z[r, k]) > 0 for r in rows) for k in range(Z.shape[1])
        ])  # fmt: skip
        theta0 = theta0.copy()
        theta0[:, np.isin(np.tril_indices(Z.shape[1])[0], np.flatnonzero(moved))] = 0
        if moved.all() and not refit_gamma:
            logger.info("Every random effect moves with the permutations: refitted.")
            refit_gamma = True
        if device is not None:
            logger.info("Random slopes: the permutations run on the CPU (NumPy), "
                        "not on %s.", device)  # fmt: skip
        return SlopeNull(X, Z, Y, codes, theta0, j, bool(refit_gamma)), bool(
            refit_gamma
        )
    reduced = _reml.drop(_reml.sufficient(X, Y, codes), j)
    gamma0 = _reml.fit_gamma(reduced)
    if scheme.name == FREEDMAN_LANE:
        # marginal residuals of the reduced model: its random intercepts stay
        # in them and, permuted within subject, stay with their subject
        beta_r, _, _ = _reml.estimates(reduced, gamma0)
        Y = Y - np.delete(X, j, axis=1) @ beta_r.T
    # with a random intercept only, the restricted shuffle leaves the reduced
    # model's fit unchanged: nothing to refit
    refit = bool(refit_gamma) and scheme.name == FREEDMAN_LANE
    if refit and device is not None:
        logger.info("Variance ratios refitted per permutation: the permutations "
                    "run on the CPU (NumPy), not on %s.", device)  # fmt: skip
        device = None
    rows = strata_rows(meta, scheme.strata)
    maps = InterceptNull(X, Y, codes, gamma0, j, scheme.name, refit, rows, device)
    return maps, refit


class _Scored:
    """The scores of the null maps of a chunk of permutations (picklable)."""

    def __init__(self, maps, score):
        self.maps, self.score = maps, score

    def __call__(self, perms) -> np.ndarray:
        return np.array([self.score(z) for z in self.maps.z_maps(perms)])


def permutation_null(
    maps,
    score: Callable[[np.ndarray], float],
    rows: list[np.ndarray],
    n_permutations: int,
    rng: np.random.Generator,
    *,
    n_jobs: int | None = None,
    desc: str = "permutations",
) -> np.ndarray:
    """Score the null maps of ``n_permutations`` permutations within strata.

    The permutations are drawn here, in order, so that the null does not
    depend on ``n_jobs``; chunks of whole blocks of :data:`BLOCK` of them are
    scored in parallel (threads by
    default: NumPy releases the GIL, and no process needs a copy of the
    maps; a joblib ``parallel_config`` backend such as Dask takes
    precedence).

    Parameters
    ----------
    maps : InterceptNull | SlopeNull
        The null maps (:func:`null_maps`).
    score : callable
        Reduces one z-map (n_cells,) to the score whose maximum builds the
        null (e.g. the largest cluster mass); picklable.
    rows : list of ndarray
        The rows of each stratum (:func:`strata_rows`).
    n_permutations : int
        Permutations.
    rng : numpy.random.Generator
        Draws the permutations.
    n_jobs : int | None
        Parallel jobs.
    desc : str
        Label of the progress bar.

    Returns
    -------
    null : ndarray, shape (n_permutations,)
        The score of each permutation, in the order drawn.
    """
    n = len(maps.X)
    perms = [shuffle(n, rows, rng) for _ in range(n_permutations)]
    if not perms:
        return np.empty(0)
    # chunks of whole blocks: each permutation's arithmetic is that of its
    # block, whatever the number of chunks
    blocks = np.arange(0, n_permutations, BLOCK)
    n_chunks = max(1, min(len(blocks), 4 * effective_n_jobs(n_jobs)))
    chunks = [
        np.arange(c[0], min(c[-1] + BLOCK, n_permutations))
        for c in np.array_split(blocks, n_chunks)
        if len(c)
    ]
    scored = _Scored(maps, score)
    jobs = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(
        delayed(scored)([perms[i] for i in c]) for c in chunks
    )
    return np.concatenate(list(progress(jobs, desc=desc, total=len(chunks))))
