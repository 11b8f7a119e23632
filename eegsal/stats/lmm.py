"""Mass-univariate linear mixed models on attribution maps."""

from __future__ import annotations

import os
import re
import warnings

import mne
import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

from eegsal._check import check_option, validate_type
from eegsal._docs import fill_doc
from eegsal._evoked import MapEvoked
from eegsal._io import atomic_path, check_fname
from eegsal._logging import logger, progress, verbose
from eegsal.stats import _reml, _reml_slopes
from eegsal.stats._formula import check_formula

__all__ = ["LMMResult", "RankDeficientError", "fit_lmm"]


class RankDeficientError(ValueError):
    """A mixed model's design cannot be fitted: its columns are dependent.

    Raised by :func:`fit_lmm` when the fixed effects' design is rank
    deficient (some combination of levels has no epochs, e.g. a context
    that holds one content only, so that an interaction cannot be
    estimated) or the random effects' is. A :class:`ValueError`, so that
    code catching that still does; catch this class to try a simpler
    formula, as :func:`eegsal.pipeline.run_study` does (``a * b`` becomes
    ``a + b``).
    """


def _design(formula: str, metadata: pd.DataFrame):
    """Fixed-effects design matrix (patsy, R's treatment coding by default).

    The formula is checked token by token first (:func:`check_formula`):
    patsy evaluates terms as Python code, and formulas come from users.
    """
    import patsy

    check_formula(formula, metadata.columns)
    rhs = formula.split("~", 1)[-1].strip()
    try:
        X = patsy.dmatrix(rhs, metadata, return_type="dataframe", NA_action="raise")
    except patsy.PatsyError as err:
        raise ValueError(
            f"formula {formula!r} does not fit the metadata (columns: "
            f"{list(metadata.columns)}): {err.message}"
        ) from None
    return X


def _variables(code: str, columns) -> list[str]:
    """Metadata columns named in a piece of formula code."""
    return [c for c in columns if re.search(rf"(?<![\w.]){re.escape(c)}(?![\w])", code)]


@fill_doc
@verbose
def fit_lmm(
    attr,
    formula: str,
    *,
    groups: str = "subject",
    re_formula: str = "1",
    engine: str = "fast",
    absolute: bool = False,
    verbose: bool | str | int | None = None,
) -> LMMResult:
    """Fit ``attribution ~ formula + (re | groups)`` at every channel x time cell.

    Parameters
    ----------
    attr : Attributions
        Attribution maps with a metadata table holding the formula's
        variables and ``groups``.
    formula : str
        Fixed effects in patsy's (R's) syntax, e.g. ``'content * stage'``;
        a left-hand side, if given, is ignored (the attribution is the
        response). Categorical variables get treatment coding (the first
        level is the reference): in ``content * stage`` the ``content``
        coefficient is then the content effect *in the reference stage*;
        write ``content * C(stage, Sum)`` for the effect averaged over stages.
    groups : str
        Metadata column of the random effects' grouping (subjects).
    re_formula : str
        Random effects per group, in patsy's syntax: ``'1'`` (a random
        intercept per subject) or e.g. ``'content'`` (a random intercept and
        a random content slope; ``'1 + content'`` is the same, as in
        statsmodels, and ``'0 + content'`` drops the intercept). Any number
        of terms works; each adds columns to the per-subject covariance.
    engine : str
        ``'fast'``: the vectorized exact REML solvers (random intercepts: one
        decomposition shared by all cells, Lippert et al., 2011; random
        slopes: lme4's profiled REML criterion, Bates et al., 2015, from
        per-subject cross-products, minimised per cell by a batched Newton
        method), or ``'statsmodels'``: one statsmodels ``MixedLM`` fit per
        cell (slow: 35 ms a cell with a random intercept, about 100 ms with
        a random slope), the reference.
    absolute : bool
        Model the absolute attribution (its magnitude) instead of the signed
        value.
    %(verbose)s

    Returns
    -------
    lmm : LMMResult
        Estimates, standard errors, Wald z statistics and p-values per
        coefficient and cell.

    Raises
    ------
    RankDeficientError
        When the design of ``formula`` or of ``re_formula`` is rank
        deficient (a combination of levels without epochs).

    Notes
    -----
    Explain one fixed class (``attribute(..., label=<class index>)``, with
    ``target='contrast'`` for the log-odds) when the decoded label is a term
    of the formula: with ``label='true'`` each epoch's own class chooses the
    explained output, so the maps differ by label by construction.

    Standard errors are the GLS formula ``scale * (X' V^-1 X)^-1`` at the
    REML variance estimates (lme4's ``vcov``); statsmodels inverts the
    observed Hessian instead, which agrees to 0.5 % once the subject
    variance is clear of zero and to about 2 % near it.
    P-values are Wald tests against the standard normal, as statsmodels
    reports them (lme4 gives no p-values; lmerTest's Satterthwaite degrees of
    freedom would be more conservative with few subjects). For inference
    over the whole map, use :meth:`LMMResult.cluster_test`, whose permutation
    p-values do not rest on this approximation.

    **These subjects or the population.** With a random intercept only
    (``re_formula='1'``), the test of ``content`` treats each subject's
    content effect as fixed: its standard error holds the epoch-to-epoch
    noise, not the variation of the effect across subjects, and the claim
    is about *these subjects* (exchangeable epochs within subject). When the
    effect varies by subject, that test is anti-conservative as a claim about
    the population: with a zero-mean content slope of SD 0.5 and no average
    effect, 39 % of cells rejected at 5 %. A random slope of the tested term
    (``re_formula='content'``) puts that variation into the standard error,
    and the Wald z is then approximately N(0, 1) under "no average effect in
    the population" (with few subjects, a t with about n_subjects - 1 degrees
    of freedom would be more accurate). Each coefficient's claim is in
    :attr:`LMMResult.claim`, the repr and the ``claim`` column of
    :meth:`LMMResult.summary`: ``'the population'`` where its column is
    spanned by the random effects, ``'these subjects'`` otherwise.

    Random slopes follow lme4 (Bates et al., 2015): the random effects of a
    subject are ``N(0, sigma^2 Lambda Lambda')`` with ``Lambda`` lower
    triangular; the REML criterion, with ``sigma^2`` profiled out, is
    computed from per-subject cross-products of the design (shared by all
    cells) and of the data, so each evaluation costs a few small matrices per
    cell and subject. The fast engine reaches a lower (or equal) REML
    criterion than statsmodels' optimiser, agrees with lme4 (``REML=TRUE``)
    to about 1e-6 (relative), and sets a variance to exactly zero where the criterion
    is flat there (lme4's singular fits; ``cov_re`` then has a zero row).

    References
    ----------
    .. [1] Lippert C et al. (2011). FaST linear mixed models for genome-wide
       association studies. Nature Methods 8:833-835.
    .. [2] Bates D, Mächler M, Bolker B, Walker S (2015). Fitting linear
       mixed-effects models using lme4. J Stat Softw 67(1):1-48.

    Examples
    --------
    >>> lmm = eegsal.stats.fit_lmm(attr, "content * stage")  # doctest: +SKIP
    >>> lmm.summary().query("p < 0.001")  # doctest: +SKIP
    >>> pop = eegsal.stats.fit_lmm(attr, "content + stage", re_formula="content")
    ... # doctest: +SKIP
    >>> pop.claim["content[T.other]"]  # doctest: +SKIP
    'the population'
    """
    from eegsal.attribution.container import Attributions

    validate_type(attr, Attributions, "attr")
    check_option("engine", engine, ("fast", "statsmodels"))
    meta = attr.metadata
    if meta is None or groups not in meta:
        cols = None if meta is None else list(meta.columns)
        raise ValueError(f"groups={groups!r} is not a metadata column; have: {cols}.")
    meta = meta.reset_index(drop=True)
    if attr.params.get("label") == "true":
        logger.warning(
            "These maps explain each epoch's own class (label='true'): a term that "
            "is the decoded label differs by construction; attribute with "
            "label=<class index> to test it."
        )
    X = _design(formula, meta)
    re_formula = re_formula.strip().lstrip("~").strip()
    Z = _design(re_formula, meta)  # validates the names; '1 + content' == 'content'
    intercept_only = Z.shape[1] == 1 and np.ptp(Z.to_numpy()) == 0
    if np.linalg.matrix_rank(X.to_numpy()) < X.shape[1]:
        raise RankDeficientError(
            f"the design of {formula!r} is rank deficient (columns {list(X.columns)}):"
            " some combination of levels has no epochs; simplify the formula."
        )
    if np.linalg.matrix_rank(Z.to_numpy()) < Z.shape[1]:
        raise RankDeficientError(
            f"the random effects {re_formula!r} are rank deficient (columns "
            f"{list(Z.columns)}); simplify re_formula."
        )
    codes, subjects = pd.factorize(meta[groups], sort=True)
    if len(subjects) < 2:
        raise ValueError(f"groups={groups!r} has {len(subjects)} level(s); need 2+.")
    n, n_rows, n_times = attr.data.shape
    logger.info(
        "Fitting %s + (%s | %s) at %d cells (%d epochs, %d groups, engine %s)",
        formula,
        re_formula,
        groups,
        n_rows * n_times,
        n,
        len(subjects),
        engine,
    )
    lazy = not isinstance(attr.data, np.ndarray)
    Xa, Za = X.to_numpy(), Z.to_numpy()
    if engine == "fast" and lazy:  # maps on disk: stream them, block by block
        blocks = (
            (start, np.abs(b) if absolute else b) for start, b in attr.iter_blocks()
        )
        if intercept_only:
            suff = _reml.sufficient_blocks(Xa, blocks, codes)
        else:
            suff = _reml_slopes.group_sums_blocks(Xa, Za, blocks, codes)
    elif engine == "fast" and intercept_only:
        # read block by block, in the stored precision: no float64 copy; the
        # products are thin (G + p rows), and one BLAS thread does them faster
        # than several (measured 5x on 2 shared cores)
        with threadpool_limits(1, "blas"):
            suff = _reml.sufficient(Xa, attr.data.reshape(n, -1), codes,
                                    absolute=absolute)  # fmt: skip
    else:
        Y = np.asarray(attr.data, dtype=np.float64).reshape(n, -1)
        Y = np.abs(Y) if absolute else Y
        if engine == "fast":
            suff = _reml_slopes.group_sums(Xa, Za, Y, codes)
    gamma = None
    if engine == "fast" and intercept_only:
        with threadpool_limits(1, "blas"):  # stacks of small matrices
            gamma = _reml.fit_gamma(suff)
            beta, se, scale = _reml.estimates(suff, gamma)
        cov_re = (gamma * scale)[:, None, None]
    elif engine == "fast":
        theta = _reml_slopes.fit_theta(suff)
        beta, se, scale, cov_re = _reml_slopes.estimates(suff, theta)
    else:
        beta, se, scale, cov_re = _statsmodels_loop(Xa, Y, meta, groups, Za)
        if intercept_only:
            gamma = cov_re[:, 0, 0] / scale
    shape = (X.shape[1], n_rows, n_times)
    t = beta.T / se.T
    return LMMResult(
        beta=beta.T.reshape(shape),
        se=se.T.reshape(shape),
        t=t.reshape(shape),
        scale=scale.reshape(n_rows, n_times),
        gamma=None if gamma is None else gamma.reshape(n_rows, n_times),
        cov_re=cov_re.transpose(1, 2, 0).reshape(
            Z.shape[1], Z.shape[1], n_rows, n_times
        ),  # fmt: skip
        names=list(X.columns),
        re_names=list(Z.columns),
        claim=_claims(X, Z),
        formula=formula,
        groups=groups,
        re_formula=re_formula,
        engine=engine,
        absolute=absolute,
        attr=attr,
        design=X,
    )


THESE_SUBJECTS, POPULATION = "these subjects", "the population"


def _claims(X: pd.DataFrame, Z: pd.DataFrame) -> dict[str, str]:
    """Say what a test of each coefficient is about.

    A coefficient's test is about the population when its column of ``X`` is
    a combination of the columns of ``Z`` (the model has a random deviation of
    that coefficient per subject, whose variance enters the standard error),
    and about these subjects otherwise.
    """
    Za = Z.to_numpy()
    coef, *_ = np.linalg.lstsq(Za, X.to_numpy(), rcond=None)
    resid = np.abs(X.to_numpy() - Za @ coef).max(0)
    scale = np.abs(X.to_numpy()).max(0) + 1e-300
    return {
        name: POPULATION if r <= 1e-9 * s else THESE_SUBJECTS
        for name, r, s in zip(X.columns, resid, scale, strict=True)
    }


def _statsmodels_loop(X, Y, meta, groups, Z):
    """Fit statsmodels' MixedLM (REML) cell by cell: the reference.

    Returns beta, se (F, p), scale (F,) and the random-effects covariance
    (F, q, q), on the data's scale.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM

    p, q = X.shape[1], Z.shape[1]
    beta = np.empty((Y.shape[1], p))
    se = np.empty_like(beta)
    scale = np.empty(Y.shape[1])
    cov_re = np.empty((Y.shape[1], q, q))
    for f in progress(range(Y.shape[1]), desc="MixedLM per cell"):
        model = MixedLM(Y[:, f], X, meta[groups].to_numpy(), Z)
        with warnings.catch_warnings():
            # boundary fits (no subject variance) are legitimate here
            warnings.simplefilter("ignore")
            fit = model.fit(reml=True)
            # a non-positive Hessian there gives NaN standard errors: kept
            beta[f], se[f] = fit.fe_params, fit.bse_fe
        scale[f] = fit.scale
        cov_re[f] = np.asarray(fit.cov_re)
    return beta, se, scale, cov_re


class LMMResult:
    """Mixed-model estimates per coefficient, channel and time.

    Parameters
    ----------
    beta, se, t : ndarray, shape (n_coefs, n_channels, n_times)
        Estimates, standard errors and Wald statistics.
    scale : ndarray, shape (n_channels, n_times)
        Residual variance.
    gamma : ndarray, shape (n_channels, n_times) | None
        Ratio of subject (random intercept) to residual variance; None with
        random slopes.
    cov_re : ndarray, shape (n_re, n_re, n_channels, n_times)
        Covariance of the random effects (in the data's units squared).
    names : list of str
        Coefficient names (patsy's).
    re_names : list of str
        Names of the random effects (columns of the ``re_formula`` design).
    claim : dict of str to str
        What a test of each coefficient is about: ``'the population'`` when
        the model has a random slope of it (its variation across subjects is
        in the standard error), ``'these subjects'`` when it does not (the
        test assumes the epochs exchangeable within subject, and its p-value
        says nothing about subjects not in the study).
    formula, groups, re_formula, engine : str
        The model.
    absolute : bool
        Whether the absolute attribution was modelled.
    attr : Attributions
        The data (kept for permutation tests).
    design : pandas.DataFrame
        The fixed-effects design.
    """

    def __init__(
        self,
        *,
        beta,
        se,
        t,
        scale,
        gamma,
        names,
        formula,
        cov_re=None,
        re_names=("Intercept",),
        claim=None,
        groups,
        re_formula,
        engine,
        absolute,
        attr,
        design,
    ):
        self.beta, self.se, self.t = beta, se, t
        self.p = 2 * stats.norm.sf(np.abs(t))
        self.scale, self.gamma, self.names = scale, gamma, names
        if cov_re is None:
            cov_re = (gamma * scale)[None, None]
        self.cov_re, self.re_names = cov_re, list(re_names)
        if claim is None:  # a random intercept
            claim = {n: THESE_SUBJECTS for n in names}
            claim["Intercept"] = POPULATION
        self.claim = {n: claim.get(n, THESE_SUBJECTS) for n in names}
        self.formula, self.groups, self.re_formula = formula, groups, re_formula
        self.engine, self.absolute = engine, absolute
        self.attr, self.design = attr, design

    def __repr__(self) -> str:
        _, c, t = self.beta.shape
        return (
            f"<LMMResult | {self.formula} + ({self.re_formula} | {self.groups}), "
            f"{len(self.names)} coefficients × {c} ch × {t} times, "
            f"{len(self.attr)} epochs, engine {self.engine}, {self._claim_text()}>"
        )

    def _claim_text(self) -> str:
        slopes = [n for n in self.names if n != "Intercept"
                  and self.claim[n] == POPULATION]  # fmt: skip
        if not slopes:
            return "claims about these subjects"
        rest = "" if len(slopes) == len(self.names) - 1 else "; the rest these subjects"
        return f"claims about the population for {', '.join(slopes)}{rest}"

    @property
    def ch_names(self) -> list[str]:
        """Channel (row) names of the maps."""
        if self.beta.shape[1] == len(self.attr.ch_names):
            return self.attr.ch_names
        return [f"{self.attr.method} (time)"]

    def coef(self, name: str) -> int:
        """Index of a coefficient, by its name or its term (``'content'``).

        Parameters
        ----------
        name : str
            ``'content[T.other]'`` or ``'content'`` when the term has one
            coefficient.

        Returns
        -------
        index : int
            Position in :attr:`names`.
        """
        if name in self.names:
            return self.names.index(name)
        info = self.design.design_info
        if name in info.term_names:
            sl = info.term_name_slices[name]
            if sl.stop - sl.start == 1:
                return sl.start
            raise ValueError(
                f"term {name!r} has {sl.stop - sl.start} coefficients "
                f"{self.names[sl]}; name one of them."
            )
        raise ValueError(f"{name!r} is not a coefficient; have {self.names}.")

    def summary(self) -> pd.DataFrame:
        """Tidy table: one row per coefficient x channel x time.

        Returns
        -------
        df : pandas.DataFrame
            Columns ``term, channel, time, estimate, se, t, p, claim``;
            ``claim`` says whether the test of the term is about these
            subjects or the population (see :attr:`claim`).
        """
        k, c, t = self.beta.shape
        return pd.DataFrame(
            {
                "term": np.repeat(self.names, c * t),
                "channel": np.tile(np.repeat(self.ch_names, t), k),
                "time": np.tile(self.attr.times, k * c),
                "estimate": self.beta.ravel(),
                "se": self.se.ravel(),
                "t": self.t.ravel(),
                "p": self.p.ravel(),
                "claim": np.repeat([self.claim[n] for n in self.names], c * t),
            }
        )

    def to_evoked(self, name: str, stat: str = "t") -> mne.EvokedArray:
        """One coefficient's map as an :class:`mne.EvokedArray` (for MNE's plots).

        Parameters
        ----------
        name : str
            Coefficient (see :meth:`coef`).
        stat : str
            ``'t'``, ``'estimate'``, ``'se'`` or ``'p'``.

        Returns
        -------
        evoked : mne.EvokedArray
            The map; values are statistics, not volts: MNE's plots of it show
            them as they are, labelled ``'t'``, ``'p'`` or ``'a.u.'`` (estimate
            and standard error, in the units of the attributions).

        Examples
        --------
        >>> lmm.to_evoked("content").plot_topomap(times=[0.5])  # doctest: +SKIP
        """
        check_option("stat", stat, ("t", "estimate", "se", "p"))
        arr = {"t": self.t, "estimate": self.beta, "se": self.se, "p": self.p}[stat]
        info = self.attr.info
        if arr.shape[1] != len(info["ch_names"]):
            info = mne.create_info(self.ch_names, info["sfreq"], "misc")
        return MapEvoked(
            arr[self.coef(name)],
            info,
            tmin=self.attr.times[0],
            nave=len(self.attr),
            comment=f"{name} ({stat})",
            unit={"t": "t", "p": "p"}.get(stat, "a.u."),
            verbose=False,
        )

    def fdr(self, name: str, alpha: float = 0.05) -> np.ndarray:
        """Cells significant after Benjamini-Hochberg FDR correction.

        Parameters
        ----------
        name : str
            Coefficient (see :meth:`coef`).
        alpha : float
            False discovery rate.

        Returns
        -------
        mask : ndarray of bool, shape (n_channels, n_times)
            Significant cells.
        """
        reject, _ = mne.stats.fdr_correction(self.p[self.coef(name)], alpha=alpha)
        return reject

    def cluster_test(self, name: str, **kwargs):
        """Cluster-based permutation test of one coefficient over channels x time.

        See :func:`eegsal.stats.cluster_test` for the parameters.

        Parameters
        ----------
        name : str
            Coefficient (see :meth:`coef`).
        **kwargs
            ``n_permutations``, ``threshold``, ``tail``, ``seed``, ``n_jobs``,
            ``device`` (``'cuda'`` or ``'auto'``: the permuted z-maps of a
            random-intercept fit on the GPU)...

        Returns
        -------
        clusters : ClusterTest
            Observed clusters with permutation p-values.
        """
        from eegsal.stats.clusters import cluster_test

        return cluster_test(self, name, **kwargs)

    def plot_image(self, name: str, *, stat: str = "t", mask=None, **kwargs):
        """Plot one coefficient's map as channels x time, with an optional mask.

        Parameters
        ----------
        name : str
            Coefficient.
        stat : str
            Statistic to show.
        mask : ndarray of bool, shape (n_channels, n_times) | None
            Cells to outline (e.g. ``lmm.cluster_test(name).mask``).
        **kwargs
            Passed to :func:`eegsal.viz.plot_image`.

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        """
        from eegsal.viz import plot_image

        evk = self.to_evoked(name, stat)
        kwargs.setdefault(
            "title", f"{self.formula} + ({self.re_formula} | {self.groups})"
        )
        kwargs.setdefault("label", stat)
        kwargs.setdefault("times", self.attr.times)
        kwargs.setdefault("domain", getattr(self.attr, "domain", "time"))
        return plot_image({name: evk}, mask=mask, **kwargs)

    def save(self, fname: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write :meth:`summary` as CSV (atomically).

        Parameters
        ----------
        fname : path-like
            Output ``.csv`` file.
        overwrite : bool
            Replace an existing file.
        """
        with atomic_path(check_fname(fname, overwrite)) as tmp:
            self.summary().to_csv(tmp, index=False)
