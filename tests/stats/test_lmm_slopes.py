"""Random slopes in the fast engine: against lme4 and statsmodels, and the claim."""

import warnings
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM

from eegsal.attribution import Attributions
from eegsal.stats import _reml, _reml_slopes, fit_lmm
from eegsal.stats.lmm import _design

DATA = Path(__file__).parent / "data"
CELLS = [f"y{k}" for k in range(6)]


def _reference_attr():
    """slopes.csv (tests/stats/data/make_slopes.py) as 6 channels x 1 time."""
    d = pd.read_csv(DATA / "slopes.csv")
    info = mne.create_info(CELLS, 100.0, "misc")
    return Attributions(d[CELLS].to_numpy()[:, :, None], info, np.zeros(1),
                        metadata=d[["subject", "content", "stage"]], method="x",
                        target="logit")  # fmt: skip


def _theta(rel):
    """Cholesky rows (l11, l21, l22) of 2 x 2 relative covariances (..., 2, 2)."""
    l11 = np.sqrt(rel[..., 0, 0])
    l21 = rel[..., 0, 1] / np.maximum(l11, 1e-300)
    return np.stack([l11, l21, np.sqrt(np.maximum(rel[..., 1, 1] - l21**2, 0))], -1)


def _sums(lmm, attr):
    meta = attr.metadata.reset_index(drop=True)
    Z = _design(lmm.re_formula, meta).to_numpy()
    codes = pd.factorize(meta["subject"], sort=True)[0]
    Y = attr.data.reshape(len(attr), -1).astype(float)
    return _reml_slopes.group_sums(lmm.design.to_numpy(), Z, Y, codes), Z


def test_random_slopes_equal_lme4():
    """Stored lme4 1.1.31 fits (slopes_lme4.R, REML=TRUE) of six responses."""
    attr = _reference_attr()
    lmm = fit_lmm(attr, "content + stage", re_formula="1 + content")
    ref = pd.read_csv(DATA / "slopes_lme4.csv")
    s, _ = _sums(lmm, attr)
    for k, cell in enumerate(CELLS):
        r = ref[ref["cell"] == cell].set_index(["what", "name"])["value"]
        # lme4 names: (Intercept), contentother, stageN3, stageREM: same order
        np.testing.assert_allclose(lmm.beta[:, k, 0], r["beta"], rtol=0,
                                   atol=1e-6 * r["se"].min())  # fmt: skip
        np.testing.assert_allclose(lmm.se[:, k, 0], r["se"], rtol=1e-5)
        cov = lmm.cov_re[:, :, k, 0]
        np.testing.assert_allclose(cov[[0, 0, 1], [0, 1, 1]], r["cov_re"],
                                   rtol=1e-4, atol=1e-6)  # fmt: skip
        np.testing.assert_allclose(lmm.scale[k, 0], r["scale"].iloc[0], rtol=1e-6)
        # the criterion itself: lme4's REMLcrit up to its constant
        theta = _theta(cov / lmm.scale[k, 0])
        dev = _reml_slopes.reml_deviance(s.cells([k]), theta[None])[0]
        dof = len(attr) - 4
        crit = dev + dof * (1 + np.log(2 * np.pi))
        assert -1e-5 < crit - r["reml"].iloc[0] < 1e-6  # lower or equal
    assert lmm.gamma is None and lmm.re_names == ["Intercept", "content[T.other]"]


def test_random_slopes_against_statsmodels():
    attr = _reference_attr()
    lmm = fit_lmm(attr, "content + stage", re_formula="content")
    s, Z = _sums(lmm, attr)
    X = lmm.design.to_numpy()
    groups = attr.metadata["subject"].to_numpy()
    n_close = 0
    for k in range(len(CELLS)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence notes at the boundary
            ref = MixedLM(attr.data[:, k, 0], X, groups, exog_re=Z).fit(reml=True)
        cov_ref = np.asarray(ref.cov_re)
        # statsmodels' covariance, made positive definite where it is not
        vals, vecs = np.linalg.eigh(cov_ref / ref.scale)
        rel = (vecs * np.maximum(vals, 1e-10)) @ vecs.T
        lam = np.linalg.cholesky(rel)
        ours = lmm.cov_re[:, :, k, 0] / lmm.scale[k, 0]
        dev_ref, dev = _reml_slopes.reml_deviance(
            s.cells([k, k]),
            np.stack([lam[np.tril_indices(2)], _theta(ours)]),
        )  # fmt: skip
        # never a worse REML criterion than statsmodels' optimum
        assert dev <= dev_ref + 1e-6
        if dev_ref - dev > 1e-4:  # statsmodels stopped short (y0, y1 here)
            continue
        n_close += 1
        np.testing.assert_allclose(lmm.beta[:, k, 0], ref.fe_params,
                                   atol=1e-3 * ref.bse_fe.min())  # fmt: skip
        np.testing.assert_allclose(lmm.cov_re[:, :, k, 0], cov_ref, rtol=0,
                                   atol=2e-3 * cov_ref.max())  # fmt: skip
        np.testing.assert_allclose(lmm.scale[k, 0], ref.scale, rtol=1e-4)
        # statsmodels' SEs come from the observed Hessian, ours (and lme4's)
        # from the GLS formula: within 1 % here
        np.testing.assert_allclose(lmm.se[:, k, 0], ref.bse_fe, rtol=1e-2)
    assert n_close >= 4


def test_one_random_effect_equals_the_random_intercept_engine():
    # q = 1 through the slopes engine: the same model as the FaST-LMM rotation
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(7), 15)
    X = np.column_stack([np.ones(105), rng.standard_normal(105)])
    Y = rng.standard_normal((105, 40)) + rng.normal(0, np.linspace(0, 1.5, 40),
                                                    (7, 40))[codes]  # fmt: skip
    s = _reml_slopes.group_sums(X, np.ones((105, 1)), Y, codes)
    theta = _reml_slopes.fit_theta(s)
    beta, se, scale, cov_re = _reml_slopes.estimates(s, theta)
    suff = _reml.sufficient(X, Y, codes)
    gamma = theta[:, 0] ** 2
    # the criteria differ by a constant only
    diff = _reml_slopes.reml_deviance(s, theta) + 2 * _reml.reml_loglik(suff, gamma)
    np.testing.assert_allclose(diff, diff[0], atol=1e-8)
    b_ref, se_ref, scale_ref = _reml.estimates(suff, gamma)
    np.testing.assert_allclose(beta, b_ref, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(se, se_ref, rtol=1e-8)
    np.testing.assert_allclose(cov_re[:, 0, 0], gamma * scale_ref, rtol=1e-8)
    # and both optimisers find the same optimum (the golden section to 1e-4)
    g_fast = _reml.fit_gamma(suff)
    ll = _reml.reml_loglik(suff, gamma) - _reml.reml_loglik(suff, g_fast)
    assert ll.min() > -1e-6
    assert (gamma == 0).sum() == (g_fast == 0).sum() > 0  # boundary cells


def _null_slopes(seed, n_subjects, per, n_cells, sd_slope=0.5):
    """No average content effect; each subject's effect N(0, sd_slope^2)."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per
    meta = pd.DataFrame(
        {
            "subject": np.repeat([f"s{i:02d}" for i in range(n_subjects)], per),
            "content": rng.choice(["flying", "other"], n),
            "stage": rng.choice(["N2", "REM"], n),
        }
    )
    sub = np.repeat(np.arange(n_subjects), per)
    other = (meta["content"] == "other").to_numpy(float)[:, None]
    y = (
        rng.standard_normal((n, n_cells))
        + rng.standard_normal((n_subjects, n_cells))[sub]
    )
    y += sd_slope * rng.standard_normal((n_subjects, n_cells))[sub] * other
    n_times = 20
    info = mne.create_info([f"E{i}" for i in range(n_cells // n_times)], 100.0, "eeg")
    data = y.reshape(n, -1, n_times).astype(np.float32)
    return Attributions(data, info, np.arange(n_times) / 100.0, metadata=meta,
                        method="saliency", target="logit")  # fmt: skip


def test_a_varying_content_effect_needs_a_random_slope():
    """The issue: random-intercept z's are too wide as a population claim."""
    attr = _null_slopes(0, n_subjects=30, per=40, n_cells=600)
    ri = fit_lmm(attr, "content + stage")
    rs = fit_lmm(attr, "content + stage", re_formula="1 + content")
    z_ri, z_rs = ri.t[1].ravel(), rs.t[1].ravel()
    # SD of 600 N(0, 1) draws: 1 +- 0.03; the random intercept's is ~2
    assert z_ri.std() > 1.5
    assert 0.85 < z_rs.std() < 1.15
    assert abs(np.median(z_rs)) < 0.15
    assert 0.02 < (np.abs(z_rs) > 1.96).mean() < 0.09
    # the slope SD is recovered (0.5) on average over cells
    assert np.sqrt(rs.cov_re[1, 1]).mean() == pytest.approx(0.5, abs=0.08)
    assert ri.claim["content[T.other]"] == "these subjects"
    assert rs.claim["content[T.other]"] == "the population"
    assert rs.claim["stage[T.REM]"] == "these subjects"
    assert "claims about these subjects" in repr(ri)
    assert "population for content[T.other]" in repr(rs)
    table = rs.summary()
    assert set(table.query("term == 'content[T.other]'")["claim"]) == {"the population"}


def test_the_permutation_null_of_a_random_slope_z():
    """Within-subject permutations remove the slopes: held at zero, z is N(0, 1)."""
    from eegsal.stats.permutations import SlopeNull, shuffle, strata_rows

    attr = _null_slopes(1, n_subjects=30, per=40, n_cells=400)
    lmm = fit_lmm(attr, "content + stage", re_formula="content")
    meta = attr.metadata.reset_index(drop=True)
    s, Z = _sums(lmm, attr)
    X = lmm.design.to_numpy()
    Y = attr.data.reshape(len(attr), -1).astype(float)
    codes = pd.factorize(meta["subject"], sort=True)[0]
    theta0 = _reml_slopes.fit_theta(_reml_slopes.drop(s, 1))
    slope_zero = theta0.copy()
    slope_zero[:, 1:] = 0.0  # the row of Lambda of the content slope
    rows = strata_rows(meta, ["subject", "stage"])
    sds = {}
    for label, theta in [("held", theta0), ("slope zero", slope_zero)]:
        rng = np.random.default_rng(0)
        maps = SlopeNull(X, Z, Y, codes, theta, 1, False)
        z = np.concatenate([maps.z_of(shuffle(len(X), rows, rng))
                            for _ in range(3)])  # fmt: skip
        sds[label] = z.std()
    # holding the observed slope variance puts variation into the SE that the
    # permuted data no longer have: a null far too narrow (anti-conservative)
    assert sds["held"] < 0.7
    assert 0.85 < sds["slope zero"] < 1.15


def test_the_boundary_of_the_covariance_is_reached():
    """No slope variance in the data: singular fits (lme4's), exactly on the boundary.

    With two random effects the REML optimum then mostly lies where the
    covariance has rank one (correlation +-1, ``Lambda[1, 1] = 0``), as lme4
    reports it; a variance of exactly zero is a face of that boundary, and is
    reached with one random effect (see the test against ``_reml``).
    """
    attr = _null_slopes(2, n_subjects=12, per=30, n_cells=200, sd_slope=0.0)
    lmm = fit_lmm(attr, "content", re_formula="content")
    cov = lmm.cov_re.reshape(2, 2, -1)
    det = cov[0, 0] * cov[1, 1] - cov[0, 1] ** 2
    singular = np.abs(det) <= 1e-12 * cov[0, 0] * cov[1, 1] + 1e-300
    assert 0.3 < singular.mean() < 0.95
    s, _ = _sums(lmm, attr)
    idx = np.flatnonzero(singular)
    scale = lmm.scale.ravel()[idx]
    theta = np.zeros((len(idx), 3))
    theta[:, 0] = np.sqrt(cov[0, 0, idx] / scale)
    theta[:, 1] = cov[0, 1, idx] / scale / np.maximum(theta[:, 0], 1e-300)
    dev0 = _reml_slopes.reml_deviance(s.cells(idx), theta)
    for step in (1e-3, 0.02, 0.1):  # off the boundary: never better
        moved = theta.copy()
        moved[:, 2] = step
        assert (_reml_slopes.reml_deviance(s.cells(idx), moved) >= dev0 - 1e-9).all()
    # interior cells are stationary points: a Newton optimum, not a stop short
    inner = np.flatnonzero(~singular)[:20]
    th = _theta(cov[:, :, inner].transpose(2, 0, 1)
                / lmm.scale.ravel()[inner, None, None])  # fmt: skip
    sub = s.cells(inner)
    h = 1e-5
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        grad = (_reml_slopes.reml_deviance(sub, th + e)
                - _reml_slopes.reml_deviance(sub, th - e)) / (2 * h)  # fmt: skip
        assert np.abs(grad).max() < 1e-3


def test_cluster_test_of_a_random_slope_fit(study):
    epochs, _ = study
    rng = np.random.default_rng(0)
    n_sub, per, n_times = 12, 30, 20
    n = n_sub * per
    meta = pd.DataFrame(
        {
            "subject": np.repeat([f"s{i}" for i in range(n_sub)], per),
            "content": rng.choice(["flying", "other"], n),
            "stage": rng.choice(["N2", "REM"], n),
        }
    )
    sub = np.repeat(np.arange(n_sub), per)
    n_chans = len(epochs.ch_names)
    y = rng.standard_normal((n, n_chans, n_times))
    y += rng.standard_normal((n_sub, n_chans, n_times))[sub]
    other = (meta["content"] == "other").to_numpy(float)[:, None, None]
    y += 0.3 * rng.standard_normal((n_sub, n_chans, n_times))[sub] * other
    truth = np.zeros((n_chans, n_times), bool)
    truth[[epochs.ch_names.index(c) for c in ("O1", "O2", "Pz")], 8:14] = True
    y += 1.0 * other * truth
    attr = Attributions(y.astype(np.float32), epochs.info, np.arange(n_times) / 100,
                        metadata=meta, method="saliency", target="logit")  # fmt: skip
    lmm = fit_lmm(attr, "content + stage", re_formula="content")
    ct = lmm.cluster_test("content", n_permutations=50, seed=0)
    top = ct.clusters.iloc[0]
    assert top["p"] <= 2 / 51 and top["sign"] == "+"
    assert (ct.mask() & truth).sum() / ct.mask().sum() > 0.8
    assert ct.claim == "the population" and set(ct.clusters["claim"]) == {
        "the population"
    }
    assert "claim about the population" in repr(ct)
    np.testing.assert_array_equal(ct.stat, lmm.t[1])  # the fitted model's z
    ri = fit_lmm(attr, "content + stage").cluster_test("content", n_permutations=5)
    assert ri.claim == "these subjects"
