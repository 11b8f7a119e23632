"""Mass-univariate linear mixed models on attribution maps."""

from __future__ import annotations

import os
import re
import warnings

import mne
import numpy as np
import pandas as pd
from scipy import stats

from eegsal._check import check_option, validate_type
from eegsal._docs import fill_doc
from eegsal._io import atomic_path, check_fname
from eegsal._logging import logger, progress, verbose
from eegsal.stats import _reml
from eegsal.stats._formula import check_formula

__all__ = ["LMMResult", "fit_lmm"]


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
        Random effects: ``'1'`` (random intercept per subject) or a
        variable, e.g. ``'content'`` (random intercept and slope; statsmodels
        engine only).
    engine : str
        ``'fast'``: the vectorized exact REML solver for random intercepts
        (one decomposition shared by all cells, Lippert et al., 2011), or
        ``'statsmodels'``: one statsmodels ``MixedLM`` fit per cell (slow:
        about 35 ms a cell), the reference, and the only engine for random
        slopes.
    absolute : bool
        Model the absolute attribution (its magnitude) instead of the signed
        value.
    %(verbose)s

    Returns
    -------
    lmm : LMMResult
        Estimates, standard errors, Wald z statistics and p-values per
        coefficient and cell.

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

    References
    ----------
    .. [1] Lippert C et al. (2011). FaST linear mixed models for genome-wide
       association studies. Nature Methods 8:833-835.

    Examples
    --------
    >>> lmm = eegsal.stats.fit_lmm(attr, "content * stage")  # doctest: +SKIP
    >>> lmm.summary().query("p < 0.001")  # doctest: +SKIP
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
    re_formula = re_formula.strip()
    if re_formula != "1":
        if engine == "fast":
            raise ValueError(
                f"re_formula={re_formula!r}: the fast engine fits random intercepts "
                "only; use engine='statsmodels' for random slopes."
            )
        _design(re_formula, meta)  # validates the variable names
    if np.linalg.matrix_rank(X.to_numpy()) < X.shape[1]:
        raise ValueError(
            f"the design of {formula!r} is rank deficient (columns {list(X.columns)}):"
            " some combination of levels has no epochs; simplify the formula."
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
    if engine == "fast" and lazy:  # maps on disk: stream them, block by block
        blocks = (
            (start, np.abs(b) if absolute else b) for start, b in attr.iter_blocks()
        )
        suff = _reml.sufficient_blocks(X.to_numpy(), blocks, codes)
    elif engine == "fast":
        Y = np.asarray(attr.data, dtype=np.float64).reshape(n, -1)
        suff = _reml.sufficient(X.to_numpy(), np.abs(Y) if absolute else Y, codes)
    else:
        Y = np.asarray(attr.data, dtype=np.float64).reshape(n, -1)
        Y = np.abs(Y) if absolute else Y
    if engine == "fast":
        gamma = _reml.fit_gamma(suff)
        beta, se, scale = _reml.estimates(suff, gamma)
        group_var = gamma * scale
    else:
        beta, se, scale, group_var = _statsmodels_loop(X, Y, meta, groups, re_formula)
        gamma = group_var / scale if group_var.ndim == 1 else None
    shape = (X.shape[1], n_rows, n_times)
    t = beta.T / se.T
    return LMMResult(
        beta=beta.T.reshape(shape),
        se=se.T.reshape(shape),
        t=t.reshape(shape),
        scale=scale.reshape(n_rows, n_times),
        gamma=None if gamma is None else gamma.reshape(n_rows, n_times),
        names=list(X.columns),
        formula=formula,
        groups=groups,
        re_formula=re_formula,
        engine=engine,
        absolute=absolute,
        attr=attr,
        design=X,
    )


def _statsmodels_loop(X, Y, meta, groups, re_formula):
    """Fit statsmodels' MixedLM (REML) cell by cell: the reference."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    exog_re = None if re_formula == "1" else _design(re_formula, meta).to_numpy()
    p = X.shape[1]
    beta = np.empty((Y.shape[1], p))
    se = np.empty_like(beta)
    scale = np.empty(Y.shape[1])
    k_re = 1 if exog_re is None else exog_re.shape[1]
    group_var = np.empty((Y.shape[1],) + ((k_re, k_re) if k_re > 1 else ()))
    for f in progress(range(Y.shape[1]), desc="MixedLM per cell"):
        model = MixedLM(Y[:, f], X.to_numpy(), meta[groups].to_numpy(), exog_re)
        with warnings.catch_warnings():
            # boundary fits (no subject variance) are legitimate here
            warnings.simplefilter("ignore")
            fit = model.fit(reml=True)
            # a non-positive Hessian there gives NaN standard errors: kept
            beta[f], se[f] = fit.fe_params, fit.bse_fe
        scale[f] = fit.scale
        cov_re = np.asarray(fit.cov_re)
        group_var[f] = cov_re[0, 0] if k_re == 1 else cov_re
    return beta, se, scale, group_var


class LMMResult:
    """Mixed-model estimates per coefficient, channel and time.

    Parameters
    ----------
    beta, se, t : ndarray, shape (n_coefs, n_channels, n_times)
        Estimates, standard errors and Wald statistics.
    scale : ndarray, shape (n_channels, n_times)
        Residual variance.
    gamma : ndarray, shape (n_channels, n_times) | None
        Ratio of subject (random intercept) to residual variance.
    names : list of str
        Coefficient names (patsy's).
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
        self.formula, self.groups, self.re_formula = formula, groups, re_formula
        self.engine, self.absolute = engine, absolute
        self.attr, self.design = attr, design

    def __repr__(self) -> str:
        _, c, t = self.beta.shape
        return (
            f"<LMMResult | {self.formula} + ({self.re_formula} | {self.groups}), "
            f"{len(self.names)} coefficients × {c} ch × {t} times, "
            f"{len(self.attr)} epochs, engine {self.engine}>"
        )

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
            Columns ``term, channel, time, estimate, se, t, p``.
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
            The map; values are statistics, not volts.
        """
        check_option("stat", stat, ("t", "estimate", "se", "p"))
        arr = {"t": self.t, "estimate": self.beta, "se": self.se, "p": self.p}[stat]
        info = self.attr.info
        if arr.shape[1] != len(info["ch_names"]):
            info = mne.create_info(self.ch_names, info["sfreq"], "misc")
        return mne.EvokedArray(
            arr[self.coef(name)],
            info,
            tmin=self.attr.times[0],
            nave=len(self.attr),
            comment=f"{name} ({stat})",
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
            ``n_permutations``, ``threshold``, ``tail``, ``seed``...

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
