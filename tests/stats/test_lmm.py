"""The vectorized REML engine against statsmodels' MixedLM, cell by cell."""

import warnings

import mne
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM

from eegsal.attribution import Attributions
from eegsal.stats import RankDeficientError, _reml, fit_lmm


def _random_attr(seed, n_subjects=8, per=25, n_chans=3, n_times=4):
    rng = np.random.default_rng(seed)
    n = n_subjects * per
    meta = pd.DataFrame(
        {
            "subject": np.repeat([f"s{i}" for i in range(n_subjects)], per),
            "content": rng.choice(["flying", "other"], n),
            "stage": rng.choice(["N2", "N3", "REM"], n),
        }
    )
    cells = n_chans * n_times
    # subject variance from none (boundary) to large, one level per cell
    sd_u = np.linspace(0, 1.5, cells)
    u = rng.standard_normal((n_subjects, cells)) * sd_u
    y = rng.standard_normal((n, cells)) + u[np.repeat(np.arange(n_subjects), per)]
    y += 0.4 * (meta["content"] == "other").to_numpy()[:, None]
    info = mne.create_info([f"E{i}" for i in range(n_chans)], 100.0, "eeg")
    data = y.reshape(n, n_chans, n_times).astype(np.float32)
    return Attributions(data, info, np.arange(n_times) / 100.0, metadata=meta,
                        method="saliency", target="logit")  # fmt: skip


def _gls_se(X, groups, cov_re, scale):
    """Dense reference: sqrt(diag(scale * (X' V^-1 X)^-1)), V = I + gamma Z Z'."""
    Z = (groups[:, None] == np.unique(groups)[None]).astype(float)
    V = np.eye(len(X)) + cov_re / scale * Z @ Z.T
    return np.sqrt(np.diag(scale * np.linalg.inv(X.T @ np.linalg.solve(V, X))))


def _design_and_sums(seed):
    """Design, maps, subject codes and sufficient statistics of a random study."""
    attr = _random_attr(seed)
    X = fit_lmm(attr, "content * stage").design.to_numpy()
    y = attr.data.reshape(len(attr), -1).astype(float)
    codes = pd.factorize(attr.metadata["subject"], sort=True)[0]
    return X, y, codes, _reml.sufficient(X, y, codes)


def test_variance_ratio_search_reaches_the_converged_maximum():
    """12 golden steps and a parabola land where 60 golden steps converge."""
    *_, suff = _design_and_sums(3)
    fast, converged = _reml.fit_gamma(suff), _reml.fit_gamma(suff, n_golden=60)
    inside = converged > 1e-3
    assert inside.any()
    np.testing.assert_allclose(np.log(fast[inside]), np.log(converged[inside]),
                               atol=1e-4)  # fmt: skip
    ll = _reml._Evaluator(suff)
    assert (ll(fast) >= ll(converged) - 1e-8).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_engine_equals_statsmodels(seed):
    attr = _random_attr(seed)
    fast = fit_lmm(attr, "content * stage")
    assert fast.names[:2] == ["Intercept", "content[T.other]"]
    X = fast.design.to_numpy()
    y = attr.data.reshape(len(attr), -1).astype(float)
    groups = attr.metadata["subject"].to_numpy()
    beta, se, t = (a.reshape(len(fast.names), -1) for a in (fast.beta, fast.se, fast.t))
    gamma = fast.gamma.ravel()
    suff = _reml.sufficient(X, y, pd.factorize(groups, sort=True)[0])
    for f in range(y.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # boundary-fit notes
            ref = MixedLM(y[:, f], X, groups).fit(reml=True)
        g_ref = float(np.asarray(ref.cov_re)[0, 0]) / ref.scale
        one = _reml.Sufficient(suff.n_g, suff.xb, suff.yb[:, [f]], suff.xwxw,
                               suff.xwyw[:, [f]], suff.ywyw[[f]], suff.n)  # fmt: skip
        # the GLS algebra at statsmodels' variance ratio gives its estimates
        b_at_ref = _reml.estimates(one, np.array([g_ref]))[0][0]
        np.testing.assert_allclose(b_at_ref, ref.fe_params, rtol=1e-8, atol=1e-12)
        # our variance ratio is at least as likely under REML as statsmodels'
        # (at the boundary, gamma = 0, statsmodels stops short of it)
        ll_ours, ll_ref = _reml.reml_loglik(one, np.array([gamma[f], g_ref]))
        assert ll_ours >= ll_ref - 1e-8
        if min(gamma[f], g_ref) > 0.01:  # both inside: the same optimum
            np.testing.assert_allclose(
                beta[:, f], ref.fe_params, atol=1e-4 * ref.bse_fe.min()
            )
        # standard errors: the GLS formula (lme4's vcov) at the fitted variances
        cov_re = gamma[f] * fast.scale.ravel()[f]
        np.testing.assert_allclose(
            se[:, f], _gls_se(X, groups, cov_re, fast.scale.ravel()[f]), rtol=1e-8
        )
        # statsmodels inverts the observed Hessian instead: within 2 %
        # everywhere, 0.5 % once the subject variance is clear of zero
        rtol = 5e-3 if g_ref > 0.15 else 2e-2
        np.testing.assert_allclose(se[:, f], ref.bse_fe, rtol=rtol)
        np.testing.assert_allclose(t[:, f], ref.tvalues[:-1], rtol=rtol, atol=0.01)
    np.testing.assert_allclose(fast.p, 2 * stats.norm.sf(np.abs(fast.t)))


def test_simulated_study_and_statsmodels_engine(study):
    epochs, _ = study
    # the simulated EEG itself, 3 channels x 3 samples, as the response
    data = epochs.get_data(picks=["O1", "Cz", "Fz"], units="uV")[:, :, 50:53]
    info = mne.pick_info(
        epochs.info,
        mne.pick_channels(epochs.ch_names, ["O1", "Cz", "Fz"], ordered=True),
    )
    attr = Attributions(data, info, epochs.times[50:53], metadata=epochs.metadata,
                        method="x", target="logit")  # fmt: skip
    fast = fit_lmm(attr, "content + stage")
    ref = fit_lmm(attr, "content + stage", engine="statsmodels")
    # statsmodels' observed-Hessian SEs come out NaN where its fit is irregular
    ok = np.isfinite(ref.se).all(axis=0)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(
        fast.beta[:, ok], ref.beta[:, ok], rtol=1e-3, atol=1e-3 * fast.se.min()
    )
    # with 4 subjects the subject variance is ill-determined: observed (statsmodels)
    # and expected (GLS) information differ by up to ~6 %
    np.testing.assert_allclose(fast.se[:, ok], ref.se[:, ok], rtol=0.1)
    # exact: our GLS algebra at statsmodels' variance ratios gives its estimates
    X = fast.design.to_numpy()
    codes = pd.factorize(epochs.metadata["subject"], sort=True)[0]
    suff = _reml.sufficient(X, data.reshape(len(data), -1).astype(float), codes)
    beta = _reml.estimates(suff, ref.gamma.ravel())[0]
    np.testing.assert_allclose(beta.T.reshape(ref.beta.shape), ref.beta, rtol=1e-6)
    df = fast.summary()
    assert list(df.columns) == [
        "term", "channel", "time", "estimate", "se", "t", "p", "claim"
    ]  # fmt: skip
    assert len(df) == len(fast.names) * 9
    row = df.query("term == 'content[T.other]' and channel == 'Cz'").iloc[1]
    assert row["estimate"] == pytest.approx(fast.beta[1, 1, 1])
    evk = fast.to_evoked("content", stat="t")
    np.testing.assert_array_equal(evk.data, fast.t[1])
    # random slopes: statsmodels' engine, the same fit as a direct call
    slopes = fit_lmm(attr, "content", re_formula="content", engine="statsmodels")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = MixedLM(data[:, 0, 0], slopes.design.to_numpy(),
                         epochs.metadata["subject"].to_numpy(),
                         exog_re=slopes.design.to_numpy()).fit(reml=True)  # fmt: skip
    np.testing.assert_allclose(slopes.beta[:, 0, 0], direct.fe_params, rtol=1e-6)


def test_errors_and_save(tmp_path):
    attr = _random_attr(0, n_subjects=3, per=12)
    with pytest.raises(ValueError, match="not a metadata column"):
        fit_lmm(attr, "content", groups="participant")
    with pytest.raises(ValueError, match="not a metadata column"):
        fit_lmm(attr, "content * sleep_stage")
    with pytest.raises(ValueError, match="not a metadata column"):
        fit_lmm(attr, "content", re_formula="1 + dream")
    lmm = fit_lmm(attr, "content * stage")
    with pytest.raises(ValueError, match="has 2 coefficients"):
        lmm.coef("stage")
    with pytest.raises(ValueError, match="is not a coefficient"):
        lmm.coef("dream")
    assert "content * stage + (1 | subject)" in repr(lmm)
    fdr = lmm.fdr("content")
    assert fdr.shape == (3, 4) and fdr.dtype == bool
    lmm.save(tmp_path / "lmm.csv")
    back = pd.read_csv(tmp_path / "lmm.csv")
    np.testing.assert_allclose(back["t"], lmm.summary()["t"])
    with pytest.raises(FileExistsError):
        lmm.save(tmp_path / "lmm.csv")
    fig = lmm.plot_image("content", mask=fdr)
    assert "t" in fig.axes[-1].get_ylabel()


def test_a_rank_deficient_design_raises_its_own_error():
    """A context holding one content only: the interaction cannot be fitted, and
    the error says so by its class (a ValueError still), not only in words."""
    attr = _random_attr(0, n_subjects=4, per=12)
    meta = attr.metadata
    meta.loc[meta["stage"] == "REM", "content"] = "flying"
    attr.metadata = meta
    with pytest.raises(RankDeficientError, match="design of 'content \\* stage'"):
        fit_lmm(attr, "content * stage")
    assert issubclass(RankDeficientError, ValueError)
    assert fit_lmm(attr, "content + stage").names[1] == "content[T.other]"
    attr.metadata = meta.assign(copy=meta["content"])
    with pytest.raises(RankDeficientError, match="random effects 'content \\+ copy'"):
        fit_lmm(attr, "content", re_formula="content + copy")
    with pytest.raises(ValueError, match="not a metadata column") as info:
        fit_lmm(attr, "content * sleep_stage")
    assert not isinstance(info.value, RankDeficientError)


def test_maps_on_disk_are_streamed_to_the_same_fit(tmp_path):
    from eegsal.attribution import read_attributions

    attr = _random_attr(3, n_subjects=6, per=50, n_chans=4, n_times=5)  # 2 blocks
    attr.save(tmp_path / "maps.h5")
    lazy = read_attributions(tmp_path / "maps.h5", preload=False)
    assert not isinstance(lazy.data, np.ndarray)  # read block by block
    for absolute in (False, True):
        ref = fit_lmm(attr, "content * stage", absolute=absolute)
        got = fit_lmm(lazy, "content * stage", absolute=absolute)
        np.testing.assert_allclose(got.beta, ref.beta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.se, ref.se, rtol=1e-7)
        np.testing.assert_allclose(got.gamma, ref.gamma, rtol=1e-5, atol=1e-9)


def test_dropping_a_column_equals_the_sufficient_statistics_of_the_smaller_design():
    X, y, codes, full = _design_and_sums(0)
    for j in (1, X.shape[1] - 1):
        ref = _reml.sufficient(np.delete(X, j, axis=1), y, codes)
        got = _reml.drop(full, j)
        for name in ("n_g", "xb", "yb", "xwxw", "xwyw", "ywyw"):
            np.testing.assert_allclose(getattr(got, name), getattr(ref, name),
                                       rtol=1e-12, atol=1e-10)  # fmt: skip


def test_to_evoked_plots_statistics_in_their_own_units():
    names = ["Fp1", "Fp2", "C3", "C4", "O1", "O2"]
    rand = _random_attr(4, n_subjects=4, per=10, n_chans=len(names))
    info = mne.create_info(names, 100.0, "eeg")
    info.set_montage("colin27_1020")
    attr = Attributions(rand.data, info, rand.times, metadata=rand.metadata,
                        method="saliency", target="logit")  # fmt: skip
    lmm = fit_lmm(attr, "content")
    for stat, values, unit in [("t", lmm.t, "t"), ("estimate", lmm.beta, "a.u.")]:
        evoked = lmm.to_evoked("content", stat)
        ax = evoked.plot(show=False).axes[0]
        assert ax.get_ylabel() == unit
        # MNE plotting the same values unscaled, from a plain EvokedArray
        plain = mne.EvokedArray(values[lmm.coef("content")], info, tmin=attr.times[0])
        ref = plain.plot(units=dict(eeg=unit), scalings=dict(eeg=1.0), show=False)
        np.testing.assert_allclose(ax.get_ylim(), ref.axes[0].get_ylim(), rtol=1e-6)
        assert np.abs(ax.get_ylim()).max() < 2 * np.abs(evoked.data).max()
        fig = evoked.plot_topomap(times=[0.01], show=False)
        assert fig.axes[-1].get_title() == unit


def test_the_fast_likelihood_equals_the_stacked_solves_with_unequal_subjects():
    """Pooled subjects and cell-last Cholesky give the LAPACK evaluation's numbers."""
    rng = np.random.default_rng(7)
    sizes = np.array([5, 9, 9, 14, 20, 20, 20, 31])  # four pools of subjects
    codes = np.repeat(np.arange(len(sizes)), sizes)
    n = len(codes)
    stage = rng.integers(0, 3, n)
    X = np.column_stack([np.ones(n), rng.integers(0, 2, n), stage == 1, stage == 2,
                         rng.standard_normal(n)]).astype(float)  # fmt: skip
    Y = (rng.standard_normal((n, 300)) + rng.standard_normal((8, 300))[codes]).astype(
        np.float32
    )
    s = _reml.sufficient(X, Y, codes, chunk=64)  # float32 maps, read in blocks
    ref = _reml.sufficient(X, Y.astype(np.float64), codes, chunk=10_000)
    for name in ("yb", "xwyw", "ywyw"):
        np.testing.assert_allclose(getattr(s, name), getattr(ref, name), rtol=1e-12,
                                   atol=1e-9)  # fmt: skip
    absolute = _reml.sufficient(X, Y, codes, absolute=True)
    np.testing.assert_allclose(
        absolute.xwyw, _reml.sufficient(X, np.abs(Y.astype(float)), codes).xwyw
    )
    gamma = np.exp(rng.uniform(-6, 4, 300))
    evaluate = _reml._Evaluator(s)
    np.testing.assert_allclose(evaluate(gamma), _reml.reml_loglik(s, gamma), rtol=1e-12)
    np.testing.assert_allclose(
        evaluate.shared(0.3), _reml.reml_loglik(s, np.full(300, 0.3)), rtol=1e-12
    )
    # the fit in blocks of cells equals the fit of all cells at once
    np.testing.assert_array_equal(
        _reml.fit_gamma(s, chunk=64), _reml.fit_gamma(s, chunk=300)
    )
    # and reaches the maximum of a fine grid
    fitted = _reml.fit_gamma(s)
    grid = np.exp(np.linspace(-8, 5, 400))
    ll = np.array([_reml.reml_loglik(s, np.full(300, g)) for g in grid])
    assert (_reml.reml_loglik(s, fitted) >= ll.max(0) - 1e-7).all()
