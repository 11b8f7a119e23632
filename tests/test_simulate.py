"""The simulator against independent computations (scipy Welch PSD, scipy.stats)."""

import mne
import numpy as np
import pandas as pd
import pytest
from scipy import signal, stats

from eegsal.simulate import STAGES, simulate_night, simulate_sleep_study
from tests.conftest import shared_data_or_skip


@pytest.fixture(scope="module")
def long_epochs():
    """8-s epochs (0.4 Hz Welch resolution), 4 subjects x 60 epochs."""
    return simulate_sleep_study(
        n_subjects=4, n_epochs=60, epoch_length=8.0, scenario="content", seed=0
    )


def _band_power(epochs, chans, fmin, fmax, tmin=None, tmax=None):
    """Mean Welch power (µV²/Hz) in [fmin, fmax] Hz on ``chans``, per epoch."""
    data = epochs.copy().pick(chans).crop(tmin, tmax, include_tmax=False)
    x = data.get_data(units="uV")
    freqs, psd = signal.welch(x, fs=epochs.info["sfreq"], nperseg=min(200, x.shape[-1]))
    band = (freqs >= fmin) & (freqs <= fmax)
    return psd[..., band].mean(axis=(-1, -2)), freqs, psd


def _by_stage(epochs, values, stage):
    return values[(epochs.metadata["stage"] == stage).to_numpy()]


def test_n2_sigma_above_wake_at_central(long_epochs):
    epochs, _ = long_epochs
    sigma, _, _ = _band_power(epochs, ["C3", "C4"], 12.0, 15.0)
    n2, w = _by_stage(epochs, sigma, "N2"), _by_stage(epochs, sigma, "W")
    assert n2.mean() > 2 * w.mean()
    # some 8-s N2 windows hold no spindle, so compare mean power (Welch t-test)
    assert stats.ttest_ind(n2, w, equal_var=False, alternative="greater").pvalue < 1e-4


def test_n3_delta_above_rem_at_frontal(long_epochs):
    epochs, _ = long_epochs
    delta, _, _ = _band_power(epochs, ["F3", "Fz", "F4"], 0.5, 2.0)
    n3, rem = _by_stage(epochs, delta, "N3"), _by_stage(epochs, delta, "REM")
    assert n3.mean() > 5 * rem.mean()
    assert stats.mannwhitneyu(n3, rem, alternative="greater").pvalue < 1e-6
    # and N3 slow waves are frontal: more delta at Fz than at O1/O2
    back, _, _ = _band_power(epochs, ["O1", "O2"], 0.5, 2.0)
    assert n3.mean() > 1.5 * _by_stage(epochs, back, "N3").mean()


def test_wake_alpha_peak_at_occipital(long_epochs):
    epochs, truth = long_epochs
    _, freqs, psd = _band_power(epochs, ["O1", "O2"], 8, 12)
    w = (epochs.metadata["stage"] == "W").to_numpy()
    spectrum = psd[w].mean(axis=(0, 1))
    search = (freqs >= 5) & (freqs <= 16)
    peak = freqs[search][np.argmax(spectrum[search])]
    assert 8.0 <= peak <= 12.0
    # the peak sits near the subjects' individual alpha frequencies
    iaf = truth.subject_effects["iaf"]
    assert iaf.min() - 1.0 <= peak <= iaf.max() + 1.0
    alpha_o, _, _ = _band_power(epochs, ["O1", "O2"], 8, 12)
    alpha_f, _, _ = _band_power(epochs, ["F3", "F4"], 8, 12)
    assert (
        _by_stage(epochs, alpha_o, "W").mean()
        > 2 * _by_stage(epochs, alpha_f, "W").mean()
    )


def test_rem_eye_movements_leak_with_opposite_polarity(long_epochs):
    epochs, _ = long_epochs
    x = epochs.get_data(picks=["F7", "F8"], units="uV")
    x = x - x.mean(axis=-1, keepdims=True)
    stage = epochs.metadata["stage"].to_numpy()

    def corr(sel):
        a, b = x[sel, 0].ravel(), x[sel, 1].ravel()
        return stats.pearsonr(a, b).statistic

    assert corr(stage == "REM") < -0.3
    assert corr(stage == "REM") < corr(stage == "N2") - 0.3
    # frontal low-frequency power is larger in REM than in N2 at F7/F8 (eye movements)
    slow, _, _ = _band_power(epochs, ["F7", "F8"], 0.5, 4.0)
    assert _by_stage(epochs, slow, "REM").mean() > _by_stage(epochs, slow, "N1").mean()


def test_amplitudes_are_realistic(long_epochs):
    epochs, _ = long_epochs
    x = epochs.get_data(units="uV")
    sd = x.std(axis=-1).mean()
    assert 5 < sd < 60  # tens of µV
    stage = epochs.metadata["stage"].to_numpy()
    fz = epochs.ch_names.index("Fz")
    ptp = np.ptp(x[stage == "N3", fz], axis=-1)
    assert np.median(ptp) > 75  # slow waves of N3: >= 75 µV peak to peak (AASM)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_content_signal_is_exactly_in_the_mask(seed):
    kw = dict(n_subjects=3, n_epochs=20, seed=seed)
    content, truth = simulate_sleep_study(scenario="content", **kw)
    null, truth0 = simulate_sleep_study(scenario="null", **kw)
    confound, truth_c = simulate_sleep_study(scenario="confound", **kw)
    assert not truth0.content_mask.any()
    diff = content.get_data() - null.get_data()
    pos = (content.metadata["content"] == "flying").to_numpy()
    assert np.abs(diff[:, ~truth.content_mask]).max() == 0.0
    assert np.abs(diff[~pos]).max() == 0.0
    assert np.abs(diff[pos][:, truth.content_mask]).mean() > 1e-6  # > 1 µV
    # the confound moves labels only: its EEG is the null study's, sample by sample
    assert not truth_c.content_mask.any()
    np.testing.assert_array_equal(null.get_data(), confound.get_data())
    assert (confound.metadata["content"] != null.metadata["content"]).any()
    # the mask is the requested channels x window
    ch = [truth.ch_names[i] for i in np.flatnonzero(truth.content_mask.any(1))]
    assert ch == truth.content_channels
    t = truth.times[truth.content_mask.any(0)]
    assert truth.content_window[0] <= t.min() and t.max() < truth.content_window[1]


def test_random_slope_plants_each_subject_its_signed_effect():
    kw = dict(n_subjects=12, n_epochs=20, seed=0)
    slope, truth = simulate_sleep_study(scenario="random_slope", effect_size=0.5,
                                        **kw)  # fmt: skip
    null, _ = simulate_sleep_study(scenario="null", **kw)
    effects = truth.subject_effects.set_index("subject")["effect"]
    assert (effects > 0).any() and (effects < 0).any()  # 12 draws of N(0, 0.5)
    # the labels are the null study's: only the signal differs
    assert (slope.metadata["content"] == null.metadata["content"]).all()
    diff = slope.get_data() - null.get_data()
    meta = slope.metadata
    for subject, effect in effects.items():
        rows = (meta["subject"] == subject).to_numpy()
        # a negative effect: the content signal in the other class
        carrier = "flying" if effect >= 0 else "other"
        has = rows & (meta["content"] == carrier).to_numpy()
        assert np.abs(diff[rows & ~has]).max() == 0.0
        assert np.abs(diff[has][:, ~truth.content_mask]).max() == 0.0
        if abs(effect) > 0.05:
            assert np.abs(diff[has][:, truth.content_mask]).mean() > 1e-7
    with pytest.raises(ValueError, match="content label is independent"):
        simulate_sleep_study(scenario="random_slope", confound=0.5, **kw)


def _content_test(epochs, chans, tmin, tmax, fmin, fmax):
    """Within-stage (N2 and REM) Welch comparison flying vs other; smallest p."""
    power, _, _ = _band_power(epochs, chans, fmin, fmax, tmin, tmax)
    meta = epochs.metadata
    # within-subject contrast: remove each subject's mean log power in the stage
    # (subjects differ in gain and in how often they report each content)
    logp = np.log(power)
    logp = (
        logp
        - pd.Series(logp)
        .groupby([meta["subject"], meta["stage"]])
        .transform("mean")
        .to_numpy()
    )
    pvals, ratios = [], []
    for stage in ("N2", "REM"):
        sel = (meta["stage"] == stage).to_numpy()
        pos = (meta["content"] == "flying").to_numpy()
        a, b = logp[sel & pos], logp[sel & ~pos]
        pvals.append(stats.ttest_ind(a, b).pvalue)
        ratios.append(np.exp(a.mean() - b.mean()))
    return min(pvals), ratios


@pytest.mark.parametrize("scenario", ["content", "confound", "null"])
def test_content_effect_where_and_only_where_planted(scenario):
    epochs, truth = simulate_sleep_study(
        n_subjects=6, n_epochs=60, scenario=scenario, seed=3
    )
    back = [c for c in epochs.ch_names if c not in truth.content_channels]
    t0, t1 = truth.content_window
    p_in, ratio_in = _content_test(epochs, truth.content_channels, t0, t1, 20, 30)
    p_ch, _ = _content_test(epochs, back, t0, t1, 20, 30)
    p_time, _ = _content_test(epochs, truth.content_channels, 0.0, t0, 20, 30)
    if scenario == "content":
        assert p_in < 1e-8 and min(ratio_in) > 1.5
        # the delta decrease, within each stage
        p_delta, ratio_delta = _content_test(
            epochs, truth.content_channels, t0, t1, 1.0, 4.0
        )
        assert p_delta < 1e-3 and max(ratio_delta) < 0.9
    else:
        assert p_in > 1e-3
    assert p_ch > 1e-3 and p_time > 1e-3


@pytest.mark.parametrize("confound", [0.0, 0.3, 0.8, 1.0])
def test_achieved_confound_matches_request(confound):
    scenario = "confound" if confound else "null"
    epochs, truth = simulate_sleep_study(
        n_subjects=20, n_epochs=100, scenario=scenario, confound=confound,
        epoch_length=0.5, ch_names=["Cz", "Pz"], content_channels=["Pz"], seed=4,
    )  # fmt: skip
    meta = epochs.metadata
    rem = meta["stage"] == "REM"
    pos = meta["content"] == "flying"
    achieved = pos[rem].mean() - pos[~rem].mean()
    # per-subject rates vary (Beta, concentration 20): se ~ 0.03 here
    assert abs(achieved - confound) < 0.1
    assert truth.p_content["REM"] - truth.p_content["N2"] == pytest.approx(confound)
    table = np.array(
        [
            [(rem & pos).sum(), (rem & ~pos).sum()],
            [(~rem & pos).sum(), (~rem & ~pos).sum()],
        ]
    )
    p = stats.chi2_contingency(table).pvalue
    assert (p > 1e-3) if confound == 0 else (p < 1e-6)


def test_same_seed_same_data():
    a, ta = simulate_sleep_study(n_subjects=2, n_epochs=12, seed=7)
    b, tb = simulate_sleep_study(n_subjects=2, n_epochs=12, seed=7)
    c, _ = simulate_sleep_study(n_subjects=2, n_epochs=12, seed=8)
    np.testing.assert_array_equal(a.get_data(), b.get_data())
    assert a.metadata.equals(b.metadata)
    assert ta.subject_effects.equals(tb.subject_effects)
    assert not np.allclose(a.get_data(), c.get_data())
    d, _ = simulate_sleep_study(
        n_subjects=2, n_epochs=12, seed=np.random.default_rng(7)
    )
    assert d.get_data().shape == a.get_data().shape


def test_epochs_and_ground_truth_shape():
    epochs, truth = simulate_sleep_study(n_subjects=3, n_epochs=15, seed=0)
    assert isinstance(epochs, mne.EpochsArray)
    assert len(epochs) == 45 and len(epochs.ch_names) == 19
    assert epochs.info["sfreq"] == 100.0 and len(epochs.times) == 400
    assert epochs.get_montage() is not None
    meta = epochs.metadata
    assert set(meta["stage"]) == set(STAGES)
    assert (meta.groupby(["subject", "stage"]).size() >= 2).all()
    assert set(meta["content"]) <= {"flying", "other"}
    assert len(epochs["REM"]) == (meta["stage"] == "REM").sum()
    assert truth.content_mask.shape == (19, 400)
    assert truth.stage_masks["N3"][epochs.ch_names.index("Fz")].all()
    assert truth.stage_masks["W"][epochs.ch_names.index("O1")].all()
    assert truth.stage_masks["REM"][epochs.ch_names.index("F7")].all()
    assert not truth.stage_masks["W"][epochs.ch_names.index("Fz")].any()
    assert len(truth.subject_effects) == 3
    assert truth.subject_effects["iaf"].nunique() == 3
    same, t0 = simulate_sleep_study(n_subjects=3, n_epochs=15, subject_spread=0.0)
    assert t0.subject_effects["iaf"].nunique() == 1
    assert "GroundTruth" in repr(truth)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ch_names=["Cz", "Xx1"]), "ch_names"),
        (dict(snr=-1.0), "'snr'"),
        (dict(p_content={s: 1.5 for s in STAGES}), r"p_content\['W'\]"),
        (dict(confound=1.2, scenario="confound"), "'confound'"),
        (dict(n_epochs=8), "n_epochs=8 is too few"),
        (dict(scenario="dream"), "'scenario'"),
        (dict(content_channels=["Qz"]), "content_channels"),
        (dict(content_window=(3.0, 5.0)), "content_window"),
        (dict(stages=("N2", "N4")), "stages"),
        (dict(confound=0.5, scenario="content"), "scenario='both'"),
        (dict(effect_size=2.0), "'effect_size'"),
    ],
)
def test_bad_parameters_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_sleep_study(**{"n_subjects": 2, "n_epochs": 20, **kwargs})


def test_night_follows_a_cycle_and_survives_edf(tmp_path):
    pytest.importorskip("edfio")
    raw = simulate_night(duration=2 * 3600, n_awakenings=6, seed=0)
    ann = raw.annotations
    stages = [d for d in ann.description if d.startswith("Sleep stage ")]
    assert len(stages) == 240
    assert ann.duration[: len(stages)].max() == 30.0
    assert {"Sleep stage N2", "Sleep stage N3", "Sleep stage REM"} <= set(stages)
    awake = [d for d in ann.description if d.startswith("Awakening/")]
    assert len(awake) == 6
    # every awakening is followed by a wake epoch
    for onset, desc in zip(ann.onset, ann.description, strict=True):
        if desc.startswith("Awakening/"):
            nxt = ann.description[(ann.onset == onset) & (ann.duration == 30.0)]
            assert list(nxt) == ["Sleep stage W"]
    fname = tmp_path / "night-raw.edf"
    mne.export.export_raw(fname, raw, fmt="edf")
    back = mne.io.read_raw_edf(fname, preload=True)
    assert back.ch_names == raw.ch_names and back.info["sfreq"] == 100.0
    assert list(back.annotations.description) == list(ann.description)
    np.testing.assert_allclose(back.annotations.onset, ann.onset, atol=0.01)
    x, y = raw.get_data(), back.get_data()
    step = (x.max() - x.min()) / 2**15  # EDF stores 16-bit integers
    assert np.abs(x - y).max() <= step


def test_night_follows_the_real_yasa_hypnogram():
    path = shared_data_or_skip("yasa_sleep", "data_full_6hrs_100Hz_hypno_30s.txt")
    hypno = np.loadtxt(path).astype(int)[:180]  # the first 90 min
    raw = simulate_night(hypnogram=hypno, n_awakenings=3, seed=1)
    ann = raw.annotations
    scored = np.array(
        [
            d.removeprefix("Sleep stage ")
            for d in ann.description
            if d.startswith("Sleep")
        ]
    )
    codes = {"W": 0, "N1": 1, "N2": 2, "N3": 3, "REM": 4}
    got = np.array([codes[s] for s in scored])
    changed = np.flatnonzero(got != hypno)
    # the only departures are the wake epochs right after each awakening
    assert len(changed) <= 3 and (got[changed] == 0).all()
    assert raw.times[-1] == pytest.approx(180 * 30 - 0.01)


def test_night_bad_input():
    with pytest.raises(ValueError, match="unknown stage codes"):
        simulate_night(hypnogram=[0, 2, 7])
    with pytest.raises(ValueError, match="either duration or hypnogram"):
        simulate_night(duration=600, hypnogram=[0, 2, 2])
    with pytest.raises(ValueError, match="too many"):
        simulate_night(duration=600, n_awakenings=10)


def test_depth_confound_sets_a_measurable_delta_power():
    from eegsal.simulate import relative_delta_power

    kw = dict(n_subjects=6, n_epochs=60, epoch_length=2.0, scenario="null", seed=0,
              ch_names=["Fp1", "Fz", "Cz", "Pz", "Oz"])  # fmt: skip
    plain, _ = simulate_sleep_study(**kw)
    assert "delta_power" not in plain.metadata and "depth" not in plain.metadata
    epochs, truth = simulate_sleep_study(depth_confound=3.0, **kw)
    meta = epochs.metadata
    assert truth.params["depth_confound"] == 3.0
    # a measurement from the EEG: Welch's relative 0.5-4 Hz power of Fz
    x = epochs.get_data(picks="Fz")[:, 0]
    freqs, psd = signal.welch(x, 100.0, window="hamming", nperseg=200, noverlap=0)
    band = (freqs >= 0.5) & (freqs <= 30)
    delta = (freqs >= 0.5) & (freqs <= 4)
    ref = psd[:, delta].sum(1) / psd[:, band].sum(1)
    np.testing.assert_allclose(meta["delta_power"], ref, rtol=1e-6)
    np.testing.assert_allclose(
        relative_delta_power(epochs.get_data(), epochs.info), ref, rtol=1e-6
    )
    for _, g in meta.groupby("stage"):  # it follows the latent depth
        assert stats.spearmanr(g["depth"], g["delta_power"])[0] > 0.5
    # the log delta power of every channel follows it more closely
    _, psd = signal.welch(epochs.get_data(), 100.0, window="hamming",
                              nperseg=200, noverlap=0)  # fmt: skip
    ref = np.log(psd[..., delta].sum(-1)).mean(-1)
    np.testing.assert_allclose(meta["log_delta_power"], ref, rtol=1e-6)
    rho = {c: np.mean([stats.spearmanr(g["depth"], g[c])[0]
                       for _, g in meta.groupby("stage")])
           for c in ("delta_power", "log_delta_power")}  # fmt: skip
    assert rho["log_delta_power"] > rho["delta_power"] + 0.03  # 0.91 vs 0.83
    # content more likely in lighter sleep: a negative slope of depth, stage fixed
    import statsmodels.formula.api as smf

    fit = smf.logit(
        "y ~ depth + C(stage)", meta.assign(y=(meta["content"] == "flying") * 1.0)
    ).fit(disp=0)
    assert fit.params["depth"] < -1.5  # -3 planted
    # the stages are drawn as without depth
    assert (meta["stage"] == plain.metadata["stage"]).all()
    with pytest.raises(TypeError, match="depth_confound must be a number"):
        simulate_sleep_study(depth_confound="strong", **kw)


# ----------------------------------------------------------------------------
# plant_content: a known signal in one's own epochs


def _sd_units(planted, original, chans, inside, positive):
    """RMS of the difference over the window, per positive epoch and channel, in SD."""
    picks = [original.ch_names.index(c) for c in chans]
    x = original.get_data()[:, picks]
    diff = planted.get_data()[:, picks] - x
    sd = np.sqrt(((x - x.mean(axis=(0, 2), keepdims=True)) ** 2).mean(axis=(0, 2)))
    part = diff[positive][..., inside]
    return np.sqrt((part**2).mean(axis=-1)) / sd, np.sqrt(
        (part**2).mean(axis=(0, 2))
    ) / sd


@pytest.mark.parametrize("waveform", ["burst", "erp", "band_power"])
def test_plant_content_adds_its_amplitude_only_inside_the_mask(study, waveform):
    from eegsal.simulate import plant_content

    epochs, _ = study
    before = epochs.get_data(copy=True)
    chans, window = ["O2", "O1", "Pz"], (0.5, 1.25)
    planted, truth = plant_content(
        epochs, channels=chans, window=window, waveform=waveform, amplitude=0.7,
        frequency=11.0, band=(8.0, 13.0), rate_by={s: 0.5 for s in STAGES},
        seed=3, verbose=False,
    )  # fmt: skip
    np.testing.assert_array_equal(epochs.get_data(), before)  # input untouched
    positive = (planted.metadata["content"] == "flying").to_numpy()
    assert 0 < positive.sum() < len(positive)
    assert set(planted.metadata["content"]) == {"flying", "other"}
    diff = planted.get_data() - before
    # exactly zero on negative epochs and outside the mask
    assert not diff[~positive].any()
    assert not diff[:, ~truth.content_mask].any()
    inside = (epochs.times >= window[0]) & (epochs.times < window[1])
    picks = [epochs.ch_names.index(c) for c in chans]
    expected = np.zeros_like(truth.content_mask)
    expected[np.ix_(picks, inside)] = True
    np.testing.assert_array_equal(truth.content_mask, expected)
    assert truth.content_channels == ["Pz", "O1", "O2"]  # in the data's order
    per_epoch, pooled = _sd_units(planted, epochs, chans, inside, positive)
    np.testing.assert_allclose(pooled, 0.7, rtol=1e-9)
    if waveform != "band_power":  # the same size in every positive epoch
        np.testing.assert_allclose(per_epoch, 0.7, rtol=1e-9)
    if waveform == "burst":  # its power lies at the requested frequency
        d = diff[positive][:, picks[0]]
        f, pxx = signal.periodogram(d, epochs.info["sfreq"], nfft=400)
        assert abs(f[pxx.mean(0).argmax()] - 11.0) <= 0.5
    if waveform == "band_power":  # the band's own activity, scaled
        d = diff[positive][:, picks[0]]
        f, pxx = signal.periodogram(d, epochs.info["sfreq"], nfft=400)
        share = pxx[:, (f >= 6) & (f <= 15)].sum() / pxx.sum()
        assert share > 0.9


def test_plant_content_labels_follow_rate_by():
    from eegsal.simulate import plant_content

    rates = {"REM": 0.8, "N2": 0.3, "W": 0.05}
    n = 3000
    info = mne.create_info(["O1", "O2"], 100.0, "eeg")
    stage = np.array(list(rates))[np.arange(n) % 3]
    epochs = mne.EpochsArray(
        np.random.default_rng(0).normal(size=(n, 2, 20)) * 1e-6, info,
        metadata=pd.DataFrame({"stage": stage}), verbose=False,
    )  # fmt: skip
    for seed in (0, 1, 2):
        planted, truth = plant_content(
            epochs, channels=["O1"], window=(0.05, 0.15), rate_by=rates,
            seed=seed, verbose=False,
        )  # fmt: skip
        assert truth.p_content == {"N2": 0.3, "REM": 0.8, "W": 0.05}
        share = (planted.metadata["content"] == "flying").groupby(stage).mean()
        for s, r in rates.items():  # 1000 epochs each: SD of the share <= 0.016
            assert abs(share[s] - r) < 0.06
    # same seed, same labels and data; another seed, other labels
    a, _ = plant_content(epochs, channels=["O1"], window=(0.05, 0.15), seed=7,
                         verbose=False)  # fmt: skip
    b, _ = plant_content(epochs, channels=["O1"], window=(0.05, 0.15), seed=7,
                         verbose=False)  # fmt: skip
    c, _ = plant_content(epochs, channels=["O1"], window=(0.05, 0.15), seed=8,
                         verbose=False)  # fmt: skip
    np.testing.assert_array_equal(a.get_data(), b.get_data())
    assert a.metadata["content"].equals(b.metadata["content"])
    assert not a.metadata["content"].equals(c.metadata["content"])


def test_plant_content_of_amplitude_zero_only_draws_labels(study):
    from eegsal.simulate import plant_content

    epochs, _ = study
    planted, truth = plant_content(
        epochs, channels=["O1"], window=(0.5, 1.5), amplitude=0.0,
        label_column="dream", labels=("yes", "no"), rate=0.4, verbose=False,
    )  # fmt: skip
    np.testing.assert_array_equal(planted.get_data(), epochs.get_data())
    assert not truth.content_mask.any()
    assert set(planted.metadata["dream"]) == {"yes", "no"}
    assert planted.metadata["content"].equals(epochs.metadata["content"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(channels=["Xz"]), "not channels of the epochs"),
        (dict(window=(1.9, 1.91)), "at least 2 samples"),
        (dict(waveform="spindle"), "waveform"),
        (dict(frequency=80.0), "frequency"),
        (dict(amplitude=-1.0), "amplitude"),
        (dict(rate_by={"REM": 0.9}), "rate_by has no rate"),
        (dict(rate_by={s: 0.5 for s in STAGES}, context="night"), "not a column"),
    ],
)
def test_plant_content_bad_input_names_the_parameter(study, kwargs, match):
    from eegsal.simulate import plant_content

    epochs, _ = study
    kw = dict(channels=["O1"], window=(0.5, 1.5)) | kwargs
    with pytest.raises(ValueError, match=match):
        plant_content(epochs, **kw, verbose=False)


# ----------------------------------------------------------------------------
# Pinned outputs: the simulators draw the same numbers, release after release

_PIN_KW = dict(n_subjects=2, n_epochs=10, epoch_length=2.0, seed=11,
               ch_names=["Fp1", "Fz", "Cz", "Pz", "O1", "O2"])  # fmt: skip
# sum of squares, sum of absolute values (µV), sum of the first 50 samples of
# the first epoch's first channel, and the last sample of the last epoch
_PINNED = {
    "content": (
        dict(scenario="content"),
        [4844109.966556746, 250401.20557738835, -704.9882795260175, 31.76571282692936],
        "foffffoooffofffoooff",
        [0.5081447261782198, 0.7234257499456663],
    ),
    "confound": (
        dict(scenario="confound"),
        [4890589.464822967, 251778.57348729123, -704.9882795260175, 31.76571282692936],
        "fofffoofoofofoooooof",
        [0.5081447261782198, 0.7234257499456663],
    ),
    "random_slope": (
        dict(scenario="random_slope"),
        [4847483.519955289, 250715.17777062044, -704.9882795260175, 31.76571282692936],
        "foffffoooffofffoooff",
        [-0.3061842460726005, 0.41141916648555477],
    ),
    "depth_confound": (
        dict(scenario="both", depth_confound=1.0),
        [5837101.985086206, 270636.4775785524, -977.8621770315639, 11.335844607822414],
        "fofffoofoofofoooooof",
        [0.5081447261782198, 0.7234257499456663],
    ),
}


def _data_summary(x):
    """Sums that change with any random draw (x in µV)."""
    return [(x**2).sum(), np.abs(x).sum(), x[0, 0, :50].sum(), x[-1, -1, -1]]


@pytest.mark.parametrize("case", list(_PINNED))
def test_simulated_studies_are_pinned(case):
    kwargs, sums, content, effects = _PINNED[case]
    epochs, truth = simulate_sleep_study(**_PIN_KW, **kwargs)
    np.testing.assert_allclose(
        _data_summary(epochs.get_data(units="uV")), sums, rtol=1e-9
    )
    meta = epochs.metadata
    stages = {"W": "W", "N1": "1", "N2": "2", "N3": "3", "REM": "R"}
    # the stages are drawn before the labels and the signals: one sequence
    assert "".join(meta["stage"].map(stages)) == "322W31RR1WR2W211R3W3"
    assert "".join(np.where(meta["content"] == "flying", "f", "o")) == content
    assert list(meta["subject"]) == ["sub-01"] * 10 + ["sub-02"] * 10
    subjects = truth.subject_effects
    np.testing.assert_allclose(subjects["effect"], effects, rtol=1e-9)
    np.testing.assert_allclose(
        subjects[["gain", "iaf", "spindle_freq"]].to_numpy().ravel(),
        [1.0068619897502893, 11.087798032247969, 14.112360539292967,
         1.1792783758367207, 9.83797610344524, 13.423606910714902],
        rtol=1e-9,
    )  # fmt: skip
    assert int(truth.content_mask.sum()) == (0 if case == "confound" else 300)
    if case == "depth_confound":
        np.testing.assert_allclose(
            [meta[c].sum() for c in ("depth", "delta_power", "log_delta_power")],
            [0.8392765506661022, 14.879747362909548, -451.28778970954147],
            rtol=1e-9,
        )


def test_simulated_night_is_pinned():
    raw = simulate_night(duration=1800, n_awakenings=2, seed=11,
                         ch_names=["Fz", "Cz", "Pz", "O1", "O2"])  # fmt: skip
    x = raw.get_data(units="uV")
    np.testing.assert_allclose(
        [(x**2).sum(), np.abs(x).sum(), x[0, :100].sum(), x[-1, -1]],
        [61862254.276046894, 5719069.366343989, -107.55314205911179,
         -6.566468976521888],
        rtol=1e-9,
    )  # fmt: skip
    ann = raw.annotations
    scored = "".join(
        d.removeprefix("Sleep stage ")[-1] for d in ann.description if "stage" in d
    )
    # two awakenings, each followed by the wake epoch of the alarm
    first, second = "W" * 12 + "1" * 7 + "2" * 7, "2" * 19 + "W" + "2" * 10 + "3" * 3
    assert scored == first + "W" + second
    awake = [(o, d) for o, d in zip(ann.onset, ann.description, strict=True)
             if d.startswith("Awakening/")]  # fmt: skip
    assert awake == [(780.0, "Awakening/other"), (1380.0, "Awakening/other")]
