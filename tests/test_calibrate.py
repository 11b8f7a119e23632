"""Calibration on a study's own data: false-claim rate and power."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from eegsal import _calibrate as cal
from eegsal.cli import main

#: A tiny study: 6 subjects (the across-subject Wilcoxon needs 5 to reach
#: p < 0.05), two stages, ShallowConvNet for 5 training epochs.
TINY = {
    "name": "tiny calibration",
    "data": {
        "simulate": {
            "n_subjects": 6, "n_epochs": 16, "epoch_length": 2.0,
            "stages": ["N2", "REM"], "scenario": "null", "seed": 1,
        }
    },
    "decode": {
        "cv": 2, "model": "shallow", "context_decoder": False,
        "params": {"max_epochs": 5, "patience": 5, "batch_size": 16},
    },
    "stats": {"within_permutations": 100},
}  # fmt: skip


@pytest.mark.slow
def test_calibrate_writes_its_tables_and_claims_a_huge_planted_signal(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "cal"
    argv = ["calibrate", str(config), "--n", "2", "--amplitudes", "20", "--out",
            str(out), "--waveform", "erp", "--channels", "O1", "O2", "--window",
            "0.5", "1.5", "--device", "cpu", "-q"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Power >= 80 %" in printed and "with labels that follow the stage" in (
        printed.lower()
    )
    draws = pd.read_csv(out / "tables" / "calibration_draws.csv")
    summary = pd.read_csv(out / "tables" / "calibration_summary.csv")
    assert list(draws.columns) == cal.DRAW_COLUMNS
    assert list(summary.columns) == cal.SUMMARY_COLUMNS
    assert len(draws) == 4 and sorted(draws["amplitude"].unique()) == [0, 20]
    assert (out / "figures" / "calibration.png").stat().st_size > 10_000
    assert (out / "figures" / "calibration.svg").is_file()
    assert "Power >= 80 %" in (out / "calibration.txt").read_text()
    assert not list(out.rglob("*.tmp-*"))
    for col in ("rate", "ci_low", "ci_high"):
        assert summary[col].between(0, 1).all()
    assert (summary["ci_low"] <= summary["rate"]).all()
    assert (summary["rate"] <= summary["ci_high"]).all()

    null = draws[draws["amplitude"] == 0]
    planted = draws[draws["amplitude"] == 20]
    # the null draws carry no signal: nothing planted, the data unchanged
    assert (null["kind"] == "context_only").all()
    assert (null["planted_cells"] == 0).all() and (null["max_change"] == 0).all()
    # 2 channels x 100 samples (0.5-1.5 s at 100 Hz)
    assert (planted["planted_cells"] == 200).all()
    assert (planted["max_change"] > 0).all()
    # the same label draws at every amplitude (paired)
    assert list(null["n_positive"]) == list(planted["n_positive"])
    # a 20-SD bump is found in every draw, within every stage and subject
    assert planted["claim"].all()
    assert (planted["p_within"] < 0.05).all()

    # independently: a null draw is the user's data, relabelled only
    cfg = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    from eegsal.pipeline import read_config

    cfg = read_config(cfg)
    epochs = cal.load_epochs(cfg)
    plan = cal.make_plan(
        cfg, epochs, channels=["O1", "O2"], window=(0.5, 1.5), waveform="erp",
        frequency=10.0, band=(8.0, 12.0), rate_by=None, seed=0, maps=False,
    )  # fmt: skip
    relabelled, truth = cal.draw_epochs(plan, epochs, 1, 0.0)
    np.testing.assert_array_equal(relabelled.get_data(), epochs.get_data())
    assert not truth.content_mask.any()
    n_pos = (relabelled.metadata["content"] == plan.labels[0]).sum()
    assert n_pos == null["n_positive"].iloc[1]
    # the labels' rates per stage are the data's own P(content | stage)
    observed = (
        (epochs.metadata["content"] == "flying")
        .groupby(epochs.metadata["stage"])
        .mean()
    )
    assert plan.rate_by == pytest.approx(observed.to_dict())


def _limit(n: int, p: float = 0.05) -> float:
    """Smallest k with P(K <= k) >= 0.95 for K ~ Binomial(n, p), over n."""
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if cdf >= 0.95:
            return k / n
    return 1.0


@pytest.mark.parametrize("n, k_null, k_planted", [(40, 3, 35), (40, 5, 20), (7, 0, 7)])
def test_summary_has_clopper_pearson_intervals_and_the_5pct_limit(n, k_null, k_planted):
    draws = pd.DataFrame(
        dict(
            amplitude=[0.0] * n + [1.0] * n,
            claim=[True] * k_null
            + [False] * (n - k_null)
            + [True] * k_planted
            + [False] * (n - k_planted),
            balanced_accuracy=0.5,
        )
    )
    summary = cal.summarize(draws)
    for _, row in summary.iterrows():
        k = k_null if row["amplitude"] == 0 else k_planted
        low = stats.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
        high = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        assert row["rate"] == k / n
        assert row["ci_low"] == pytest.approx(low, abs=1e-9)
        assert row["ci_high"] == pytest.approx(high, abs=1e-9)
    null = summary.iloc[0]
    assert null["limit_5pct"] == pytest.approx(_limit(n))
    assert null["within_limit"] == (k_null / n <= _limit(n))
    best = cal.smallest_powered(summary, 0.8)
    assert best == (1.0 if k_planted / n >= 0.8 else None)


def test_claimed_is_the_verdicts_claim(tiny_result):
    from eegsal.stats import content_verdict

    verdict = content_verdict(tiny_result, "stage", n_permutations=50,
                              verbose=False)  # fmt: skip
    holds = verdict["reading"].iloc[-1].startswith("The content effect holds")
    assert cal.claimed(verdict) == holds
    # every test that enters the verdict must hold
    rows = verdict["test"].str.startswith(("within stage = all", "across"))
    assert rows.sum() == 2
    yes = verdict.assign(holds=True)
    assert cal.claimed(yes)
    for i in np.flatnonzero(rows):
        no = yes.copy()
        no.loc[no.index[i], "holds"] = False
        assert not cal.claimed(no)
    # a single stage's row (Holm-corrected) does not enter it
    single = verdict["p_holm"].notna()
    one = yes.copy()
    one.loc[single, "holds"] = False
    assert cal.claimed(one)


def test_calibrate_refuses_a_study_without_a_context(tmp_path):
    from eegsal.pipeline import ConfigError, calibrate

    cfg = {**TINY, "decode": {**TINY["decode"], "context": None}}
    with pytest.raises(ConfigError, match="decode.context"):
        calibrate(cfg, tmp_path, n=1, amplitudes=[1.0], verbose=False)


def test_maps_route_refuses_a_split_study_with_fewer_than_4_subjects():
    from eegsal.pipeline import read_config

    small = TINY["data"]["simulate"] | {"n_subjects": 3}
    cfg = read_config(TINY | {"data": {"simulate": small},
                              "stats": TINY["stats"] | {"split": True}})  # fmt: skip
    epochs = cal.load_epochs(cfg)
    kw = dict(channels=["O1"], window=None, waveform="erp", frequency=10.0,
              band=(8.0, 12.0), rate_by=None, seed=0)  # fmt: skip
    with pytest.raises(cal.ConfigError, match="stats.split: 3 subjects.*at least 4: "
                       "add subjects.*no --maps"):  # fmt: skip
        cal.make_plan(cfg, epochs, maps=True, **kw)
    assert not cal.make_plan(cfg, epochs, maps=False, **kw).maps  # decoding only


@pytest.mark.slow
def test_maps_route_of_a_split_study_tests_the_split_maps():
    """The maps route tests what the study's stats stage tests (stats.split).

    Reference: the split assembled from scikit-learn and the public API (a
    decoder trained on 3 of the 6 subjects, the other 3 explained), the
    study's explained class (here the second of the sorted classes) and its
    default formula.
    """
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupShuffleSplit

    from eegsal.attribution import attribute
    from eegsal.decoding import decode
    from eegsal.pipeline import read_config
    from eegsal.stats import fit_lmm

    stats_ = TINY["stats"] | {"split": True, "method": "saliency", "bin": 0.25,
                              "n_permutations": 50}  # fmt: skip
    cfg = read_config(TINY | {"stats": stats_, "attribute": {"explain": "other"}})
    assert cfg["stats"]["formula"] == "content * C(stage, Sum)"
    epochs = cal.load_epochs(cfg)
    plan = cal.make_plan(
        cfg, epochs, channels=["O1", "O2"], window=(0.5, 1.5), waveform="erp",
        frequency=10.0, band=(8.0, 12.0), rate_by=None, seed=0, maps=True,
    )  # fmt: skip
    assert plan.labels == ("other", "flying")
    draw, amplitude = 1, 0.5  # a p-value between 0 and 1, which the maps move
    row = cal.one_draw(plan, epochs, draw, amplitude, "cpu")

    planted, _ = cal.draw_epochs(plan, epochs, draw, amplitude)
    dec = cfg["decode"]
    half = GroupShuffleSplit(n_splits=1, test_size=3, random_state=dec["seed"] + draw)
    result = decode(planted, "content", model="shallow", cv=half, device="cpu",
                    seed=dec["seed"] + draw, n_jobs=1, verbose=False,
                    **dec["params"])  # fmt: skip
    tested = np.flatnonzero(result.predictions["fold"].to_numpy() >= 0)
    assert planted.metadata["subject"].iloc[tested].nunique() == 3
    assert list(result.classes) == ["flying", "other"]
    attr = attribute(result.take(tested), planted[tested], method="saliency",
                     target="logit", label=1, device="cpu", verbose=False)  # fmt: skip
    from eegsal._study import _bin_times

    lmm = fit_lmm(_bin_times(attr, 0.25), "content * C(stage, Sum)",
                  groups="subject", verbose=False)  # fmt: skip
    name = next(n for n in lmm.names if n.startswith("content["))
    test = lmm.cluster_test(name, n_permutations=50, seed=row["seed"], verbose=False)
    p = float(test.clusters["p"].min()) if len(test.clusters) else 1.0

    assert row["n_maps"] == len(tested) < len(planted)  # the tested half only
    pred = result.predictions.iloc[tested]
    assert row["maps_balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(pred["y_true"], pred["y_pred"])
    )
    assert row["p_maps"] == pytest.approx(p, abs=1e-9)
    assert row["claim_maps"] == (p < 0.05)


def test_summary_leaves_out_draws_without_a_maps_test():
    # a NaN claim (no maps test: the model could not be fitted) is no claim nor miss
    draws = pd.DataFrame(
        dict(
            amplitude=0.0,
            claim=[False, True, False, False],
            claim_maps=[True, np.nan, False, np.nan],
            balanced_accuracy=0.6,
            maps_balanced_accuracy=[0.5, 0.55, 0.7, 0.65],
        )
    )
    summary = cal.summarize(draws).set_index("route")
    assert summary.loc["decoding", ["n_draws", "n_claims"]].tolist() == [4, 1]
    assert summary.loc["maps", ["n_draws", "n_claims"]].tolist() == [2, 1]
    assert summary.loc["maps", "mean_balanced_accuracy"] == pytest.approx(0.6)
    assert summary.loc["maps", "limit_5pct"] == pytest.approx(_limit(2))


def test_calibration_refuses_an_explained_class_the_data_lack():
    from eegsal.pipeline import read_config

    cfg = read_config(TINY)
    epochs = cal.load_epochs(cfg)
    # a manifest's classes are known only once read: read_config checks the
    # simulator's alone
    cfg["attribute"]["explain"] = "swimming"
    with pytest.raises(cal.ConfigError, match="'swimming' is not a class of content"):
        cal.make_plan(cfg, epochs, channels=["O1"], window=None, waveform="erp",
                      frequency=10.0, band=(8.0, 12.0), rate_by=None, seed=0,
                      maps=False)  # fmt: skip
