"""Decoding-level controls on decoders that read the stage or the content."""

import numpy as np
import pandas as pd
import pytest

from eegsal.attribution import Attributions
from eegsal.decoding import DecodingResult
from eegsal.simulate import simulate_sleep_study
from eegsal.stats import content_verdict, explanation_similarity, within_context_scores


@pytest.fixture(scope="module")
def confounded():
    """Metadata of a study where 'flying' goes with REM (confound 0.8)."""
    kw = dict(scenario="confound", confound=0.8, seed=0)
    epochs, _ = simulate_sleep_study(n_subjects=8, n_epochs=60, epoch_length=1.0, **kw)
    return epochs.metadata.reset_index(drop=True)


def _result(meta, y_pred):
    pred = meta.copy()
    pred["fold"] = 0
    pred["y_true"] = meta["content"].astype(str)
    pred["y_pred"] = y_pred
    config = dict(target="content", model="none")
    return DecodingResult(pred, pd.DataFrame({"balanced_accuracy": [0.5]}), [],
                          ["flying", "other"], config)  # fmt: skip


def test_a_decoder_that_reads_only_the_stage_is_at_chance_within_stage(confounded):
    y_pred = np.where(confounded["stage"] == "REM", "flying", "other")
    result = _result(confounded, y_pred)
    table = within_context_scores(result, "stage", n_permutations=200, seed=0)
    pooled = table.iloc[-1]
    assert pooled["balanced_accuracy"] == pytest.approx(0.5)
    assert pooled["p"] > 0.5
    stage = confounded["stage"].to_numpy()
    stage_decoder = _result(confounded.assign(content=stage), stage)  # perfect
    verdict = content_verdict(result, "stage", n_permutations=200,
                              context_result=stage_decoder)  # fmt: skip
    assert verdict.iloc[0]["test"].startswith("stage decodability")
    assert verdict.iloc[0]["balanced_accuracy"] == 1.0
    verdict = verdict.iloc[1:].reset_index(drop=True)
    overall = verdict.iloc[0]["balanced_accuracy"]
    assert overall > 0.75  # the confound makes it look good overall
    assert verdict.iloc[-1]["reading"].startswith(
        "No evidence of content beyond the stage"
    )
    assert not verdict["holds"].iloc[1:].any()


def test_within_stage_scores_equal_scikit_learn(confounded):
    from sklearn.metrics import balanced_accuracy_score

    from eegsal.stats import subject_scores

    rng = np.random.default_rng(1)
    y_pred = rng.choice(["flying", "other"], len(confounded))
    result = _result(confounded, y_pred)
    table, null = within_context_scores(result, "stage", n_permutations=20,
                                        return_null=True)  # fmt: skip
    y = confounded["content"].to_numpy()
    for row in table.iloc[:-1].itertuples():
        rows = (confounded["stage"] == row.stage).to_numpy()
        if len(set(y[rows])) == 2:
            ref = balanced_accuracy_score(y[rows], y_pred[rows])
            assert row.balanced_accuracy == pytest.approx(ref, abs=1e-12)
    assert len(null) == 20 * len(table) and set(null["stage"]) == set(table["stage"])
    subjects = subject_scores(result, "stage")
    assert len(subjects) == 8 and subjects["balanced_accuracy"].between(0, 1).all()


def test_a_decoder_that_reads_the_content_holds_within_stage(confounded):
    rng = np.random.default_rng(0)
    truth = confounded["content"].to_numpy()
    flip = rng.random(len(truth)) < 0.25
    other = np.where(truth == "flying", "other", "flying")
    result = _result(confounded, np.where(flip, other, truth))
    table = within_context_scores(result, "stage", n_permutations=200, seed=0)
    pooled = table.iloc[-1]
    assert pooled["balanced_accuracy"] == pytest.approx(0.75, abs=0.06)
    assert pooled["p"] == pytest.approx(1 / 201)
    # chance is not exactly 0.5: the restricted null keeps each subject x stage
    # stratum's label mix, which predictions that track the labels share
    assert 0.45 < pooled["null_mean"] < 0.6
    assert pooled["balanced_accuracy"] > pooled["null_95"]
    verdict = content_verdict(result, "stage", n_permutations=200)
    assert "reads more than the stage" in verdict.iloc[-1]["reading"]
    with pytest.raises(ValueError, match="not a column of the result"):
        within_context_scores(result, "task")


def test_explanation_similarity(study):
    epochs, _ = study
    rng = np.random.default_rng(0)
    shape = (len(epochs), len(epochs.ch_names), 40)
    base = rng.standard_normal(shape).astype(np.float32)
    base[:, :5] *= 3  # a shared spatial profile

    def attr(data):
        meta = epochs.metadata
        times = np.arange(40) / 100.0
        return Attributions(data, epochs.info, times, metadata=meta, method="x",
                            target="logit")  # fmt: skip

    same = explanation_similarity(attr(base), attr(2 * base + 0.01))
    assert same.iloc[-1]["map"] > 0.99
    other = rng.standard_normal(shape).astype(np.float32)
    diff = explanation_similarity(attr(base), attr(other), n_boot=500)
    last = diff.iloc[-1]
    assert last["map_ci_low"] < 0.2 and last["map"] < 0.3
    assert len(diff) == epochs.metadata["subject"].nunique() + 1
    with pytest.raises(ValueError, match="same epochs"):
        explanation_similarity(attr(base), attr(base[:, :, :20].repeat(2, axis=2))[:5])


class _PartialSplitter:
    """Leave-one-subject-out that tests only the first two thirds of each subject."""

    def get_n_splits(self, X=None, y=None, groups=None):
        return len(np.unique(groups))

    def split(self, X, y=None, groups=None):
        groups = np.asarray(groups)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            yield np.flatnonzero(groups != g), rows[: 2 * len(rows) // 3]


def test_untested_epochs_are_left_out_of_every_score(study, tmp_path, caplog):
    import logging

    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from eegsal.decoding import decode
    from eegsal.stats import subject_scores

    epochs, _ = study
    result = decode(epochs, "content", cv=_PartialSplitter(), max_epochs=1,
                    valid_size=0, batch_size=64, device="cpu")  # fmt: skip
    fold = result.predictions["fold"].to_numpy()
    n_untested = (fold == -1).sum()
    assert n_untested == len(epochs) - 4 * 20  # 10 per subject
    result.save(tmp_path / "r")
    back = DecodingResult.load(tmp_path / "r")
    for res in (result, back):  # y_pred None in memory, NaN once read back
        tested = res.predictions[res.predictions["fold"] >= 0]
        y, yp = tested["y_true"].astype(str), tested["y_pred"].astype(str)
        with caplog.at_level(logging.WARNING, logger="eegsal"):
            caplog.clear()
            within = within_context_scores(res, "stage", n_permutations=10)
        for row in within.iloc[:-1].itertuples():
            sel = (tested["stage"] == row.stage).to_numpy()
            if y[sel].nunique() == 2:
                ref = balanced_accuracy_score(y[sel], yp[sel])
                assert row.balanced_accuracy == pytest.approx(ref, abs=1e-12)
        assert within.iloc[-1]["n"] == len(tested) == within["n"].iloc[:-1].sum()
        assert f"{n_untested} of {len(epochs)} epochs" in caplog.text
        verdict = content_verdict(res, "stage", within=within)
        assert verdict.iloc[0]["n"] == len(tested)
        assert verdict.iloc[0]["balanced_accuracy"] == pytest.approx(
            balanced_accuracy_score(y, yp), abs=1e-12
        )
        assert subject_scores(res, "stage")["n"].sum() == len(tested)
        by = res.score_by("stage")
        assert by["n"].sum() == len(tested)
        for row in by.itertuples():
            sel = (tested["stage"] == row.stage).to_numpy()
            if y[sel].nunique() == 2:
                assert row.balanced_accuracy == pytest.approx(
                    balanced_accuracy_score(y[sel], yp[sel]), abs=1e-12
                )
                auc = roc_auc_score(y[sel] == "other", tested["proba_other"][sel])
                assert row.roc_auc == pytest.approx(auc, abs=1e-12)


def _few_subjects_result(meta):
    """Perfect predictions in two of eight subjects, constant ones elsewhere."""
    truth = meta["content"].to_numpy()
    few = meta["subject"].isin(["sub-01", "sub-02"]).to_numpy()
    return _result(meta, np.where(few, truth, "other"))


def test_verdict_needs_consistency_across_subjects(confounded):
    # the pooled within-stage test rejects, but only 2 of 8 subjects are above
    # chance (the others score exactly 0.5): the effect must not "hold"
    from eegsal.report import verdict_text as report_text
    from eegsal.stats import subject_scores

    result = _few_subjects_result(confounded)
    within = within_context_scores(result, "stage", n_permutations=200, seed=0)
    subjects = subject_scores(result, "stage")
    assert within.iloc[-1]["p"] < 0.05
    assert (subjects["balanced_accuracy"] > 0.5).sum() == 2
    text = report_text(within, subjects)
    assert "holds" not in text
    assert text.startswith("No consistent content effect across subjects")
    verdict = content_verdict(result, "stage", within=within)
    assert verdict.iloc[-1]["reading"] == text
    # Wilcoxon over subjects: zero differences dropped, 2 positive ranks
    # left, exact one-sided p = 1/2**2
    assert verdict.iloc[-1]["p"] == pytest.approx(0.25)
    assert not verdict.iloc[-1]["holds"]


def test_verdict_words_come_from_one_function(confounded):
    # content_verdict's reading and eegsal.stats.verdict_text (which the
    # report imports) are the same words on the same tables, for each verdict
    from eegsal.report import verdict_text as report_text
    from eegsal.stats import subject_scores, verdict_text

    assert report_text is verdict_text
    rng = np.random.default_rng(0)
    truth = confounded["content"].to_numpy()
    other = np.where(truth == "flying", "other", "flying")
    cases = {
        "The content effect holds": np.where(rng.random(len(truth)) < 0.25,
                                             other, truth),
        "No consistent content effect": _few_subjects_result(confounded)
        .predictions["y_pred"].to_numpy(),
        "No evidence of content beyond the stage": np.where(
            confounded["stage"] == "REM", "flying", "other"),
    }  # fmt: skip
    for start, y_pred in cases.items():
        result = _result(confounded, y_pred)
        within = within_context_scores(result, "stage", n_permutations=100, seed=0)
        subjects = subject_scores(result, "stage")
        verdict = content_verdict(result, "stage", within=within)
        overall = verdict.iloc[0]["balanced_accuracy"]
        text = verdict_text(within, subjects, overall=overall)
        assert text.startswith(start), text
        assert verdict.iloc[-1]["reading"] == text


def test_per_stage_flags_are_holm_corrected(confounded):
    from statsmodels.stats.multitest import multipletests

    from eegsal.stats import holm, verdict_text

    rng = np.random.default_rng(0)
    truth = confounded["content"].to_numpy()
    other = np.where(truth == "flying", "other", "flying")
    result = _result(confounded, np.where(rng.random(len(truth)) < 0.42, other, truth))
    within = within_context_scores(result, "stage", n_permutations=200, seed=0)
    per = within.iloc[:-1]
    ok = per["p"].notna().to_numpy()
    want = multipletests(per["p"][ok], method="holm")[1]
    np.testing.assert_allclose(per["p_holm"][ok], want, rtol=1e-12)
    assert within.iloc[-1]["p_holm"] == within.iloc[-1]["p"]  # one test, as is
    verdict = content_verdict(result, "stage", within=within)
    rows = verdict["p_holm"].notna()
    assert verdict.loc[rows, "test"].str.startswith("within stage = ").all()
    np.testing.assert_allclose(verdict.loc[rows, "p_holm"], want, rtol=1e-12)
    np.testing.assert_array_equal(verdict.loc[rows, "holds"], want < 0.05)
    # Holm by hand: sorted p (0.004, 0.013, 0.02, 0.5) times m - rank (4, 3, 2,
    # 1), running maximum; NaN is no test (m = 4) and stays NaN
    got = holm([0.013, 0.02, 0.5, np.nan, 0.004])
    np.testing.assert_allclose(got, [0.039, 0.04, 0.5, np.nan, 0.016], rtol=1e-12)
    # the verdict names a stage only when its corrected p is below alpha: a
    # raw p of 0.013 among 5 stages (0.065 after Holm) is not named
    table = pd.DataFrame({
        "stage": ["N1", "N2", "N3", "REM", "W", "all (within-context)"],
        "balanced_accuracy": [0.6] * 6, "p": [0.4, 0.013, 0.5, 0.3, 0.6, 0.001],
        "null_95": [0.56] * 6,
    })  # fmt: skip
    subjects = pd.DataFrame({"balanced_accuracy": [0.7, 0.6, 0.65, 0.8, 0.9, 0.7]})
    text = verdict_text(table, subjects)
    assert text.startswith(
        "The content effect holds pooled over stages (in no single stage alone, "
        "Holm-corrected over 5 stages"
    )
    assert "N2" not in text


def test_within_context_auc_sees_content_that_an_offset_hides(confounded):
    """A stage offset pushes every REM prediction to one class: the balanced
    accuracy there is 0.5, the within-cell AUC still ranks the content."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    meta = confounded
    other = (meta["content"] == "other").to_numpy()
    rem = (meta["stage"] == "REM").to_numpy()
    logit = 3.0 * other + rng.standard_normal(len(meta)) + 10 * rem
    logit += meta["subject"].astype("category").cat.codes.to_numpy()  # subject offsets
    p_other = 1 / (1 + np.exp(-(logit - 1.5)))
    result = _result(meta, np.where(p_other > 0.5, "other", "flying"))
    result.predictions["proba_flying"] = 1 - p_other
    result.predictions["proba_other"] = p_other
    table = within_context_scores(result, "stage", n_permutations=200, seed=0)
    rem = table.set_index("stage").loc["REM"]
    assert rem["balanced_accuracy"] == pytest.approx(0.5)
    assert rem["roc_auc"] > 0.75 and rem["p_auc"] < 0.01
    # reference: scikit-learn's AUC in each subject x stage cell, weighted by size
    for stage, row in table.set_index("stage").iloc[:-1].iterrows():
        aucs, sizes = [], []
        for _, cell in meta[meta["stage"] == stage].groupby("subject"):
            y = cell["content"] == "other"
            if y.nunique() == 2:
                aucs.append(roc_auc_score(y, p_other[cell.index]))
                sizes.append(len(cell))
        assert row["roc_auc"] == pytest.approx(np.average(aucs, weights=sizes))
    # under the null (labels shuffled within cells) the AUC is about 0.5
    rng.shuffle(p_other)
    result.predictions["proba_other"] = p_other
    null = within_context_scores(result, "stage", n_permutations=200, seed=0)
    assert abs(null.iloc[-1]["roc_auc"] - 0.5) < 0.1


def _with_logit(meta, logit):
    """A result whose out-of-fold probability of 'other' is sigmoid(logit)."""
    p = 1 / (1 + np.exp(-logit))
    result = _result(meta, np.where(p > 0.5, "other", "flying"))
    result.predictions["proba_flying"] = 1 - p
    result.predictions["proba_other"] = p
    return result


def test_context_regression_equals_statsmodels_ols(confounded):
    import statsmodels.formula.api as smf

    from eegsal.stats import context_regression, out_of_fold_logit

    rng = np.random.default_rng(0)
    meta = confounded.assign(delta_power=rng.uniform(0.2, 0.9, len(confounded)))
    y = (meta["content"] == "other").to_numpy(float)
    logit = 0.7 * y + 3 * meta["delta_power"] + rng.standard_normal(len(meta))
    result = _with_logit(meta, logit.to_numpy())
    np.testing.assert_allclose(out_of_fold_logit(result), logit, rtol=1e-9)
    table, null = context_regression(result, "stage", covariates="delta_power",
                                     n_permutations=50, return_null=True)  # fmt: skip
    ref = smf.ols(
        "logit ~ y + C(subject) + C(stage) + C(stage):delta_power",
        meta.assign(logit=logit, y=y),
    ).fit()
    row = table.iloc[0]
    assert row["term"] == "content = other"
    assert row["estimate"] == pytest.approx(ref.params["y"], rel=1e-9)
    assert row["se"] == pytest.approx(ref.bse["y"], rel=1e-9)
    assert row["t"] == pytest.approx(ref.tvalues["y"], rel=1e-9)
    assert row["df"] == ref.df_resid
    assert null.shape == (50,) and row["p"] == pytest.approx(1 / 51)
    # a single categorical context: the subject and stage dummies only
    only = context_regression(result, "stage", n_permutations=10).iloc[0]
    ref = smf.ols("logit ~ y + C(subject) + C(stage)", meta.assign(logit=logit, y=y))
    assert only["t"] == pytest.approx(ref.fit().tvalues["y"], rel=1e-9)
    with pytest.raises(ValueError, match="two-class decoder with probabilities"):
        context_regression(_result(meta, np.where(y, "other", "flying")), "stage")
    with pytest.raises(ValueError, match="must be numeric"):
        context_regression(result, "stage", covariates="subject")


def test_covariates_are_held_fixed_by_quantile_bins_within_each_stage(confounded):
    from sklearn.metrics import balanced_accuracy_score

    from eegsal.stats import subject_scores

    rng = np.random.default_rng(2)
    meta = confounded.assign(delta_power=rng.standard_normal(len(confounded)),
                             task=rng.choice(["a", "b"], len(confounded)))  # fmt: skip
    y_pred = rng.choice(["flying", "other"], len(meta))
    result = _result(meta, y_pred)
    table = within_context_scores(result, "stage", covariates="delta_power",
                                  n_bins=3, n_permutations=20)  # fmt: skip
    name = "stage x delta_power"
    assert table.columns[0] == name and len(table) == 5 * 3 + 1
    assert table[name].iloc[:3].tolist() == [f"N1, delta_power q{b}" for b in (1, 2, 3)]
    y = meta["content"].to_numpy()
    for stage in sorted(meta["stage"].unique()):
        values, sizes = [], []
        x = meta.loc[meta["stage"] == stage, "delta_power"].sort_values()
        for b in (1, 2, 3):
            row = table[table[name] == f"{stage}, delta_power q{b}"].iloc[0]
            # bin b: the sorted epochs from ceil((b - 1) n / 3) to ceil(b n / 3)
            part = x.iloc[-(-(b - 1) * len(x) // 3) : -(-b * len(x) // 3)]
            values.append(part)
            sizes.append(row["n"])
            assert row["n"] == len(part)  # equal-count bins of the stage's epochs
            idx = part.index.to_numpy()
            if len(set(y[idx])) == 2:
                ref = balanced_accuracy_score(y[idx], y_pred[idx])
                assert row["balanced_accuracy"] == pytest.approx(ref, abs=1e-12)
        assert max(sizes) - min(sizes) <= 1
        assert all(
            a.max() < b.min() for a, b in zip(values[:-1], values[1:], strict=True)
        )
    assert table["n"].iloc[-1] == len(meta)
    # several categorical columns: their combinations
    two = within_context_scores(result, ["stage", "task"], n_permutations=10)
    assert set(two["stage x task"].iloc[:-1]) == set(
        meta["stage"] + ", " + meta["task"]
    )
    # one column, as a list or not: the same numbers as ever
    pd.testing.assert_frame_equal(
        within_context_scores(result, ["stage"], n_permutations=30, seed=1),
        within_context_scores(result, "stage", n_permutations=30, seed=1),
    )
    subjects = subject_scores(result, "stage", covariates="delta_power")
    assert subjects["n"].sum() == len(meta)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_decoder_that_reads_sleep_depth_fools_only_the_stage_verdict(seed):
    """Content is more frequent in lighter sleep within each stage; a decoder
    that reads the measured delta power alone looks like a content decoder
    with the stage held fixed, not once delta power is held fixed too."""
    from eegsal.stats import context_regression

    epochs, _ = simulate_sleep_study(
        n_subjects=8, n_epochs=60, epoch_length=2.0, scenario="null",
        depth_confound=2.0, ch_names=["Fz", "Cz", "Pz", "Oz"], seed=seed,
    )  # fmt: skip
    meta = epochs.metadata.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    by_stage = meta.groupby("stage")["delta_power"]
    z = ((meta["delta_power"] - by_stage.transform("mean"))
         / by_stage.transform("std")).to_numpy()  # fmt: skip
    result = _with_logit(meta, 1.5 * z + 0.5 * rng.standard_normal(len(z)))
    stage_only = within_context_scores(result, "stage", n_permutations=100)
    assert stage_only.iloc[-1]["balanced_accuracy"] > 0.62  # about 0.7
    assert stage_only.iloc[-1]["p"] < 0.05
    fixed = within_context_scores(result, "stage", covariates="delta_power",
                                  n_permutations=100)  # fmt: skip
    assert abs(fixed.iloc[-1]["balanced_accuracy"] - 0.5) < 0.05
    unadjusted = context_regression(result, "stage", n_permutations=20)
    adjusted = context_regression(result, "stage", covariates="delta_power",
                                  n_permutations=20)  # fmt: skip
    assert unadjusted.iloc[0]["estimate"] > 1.0  # the depth reads as content
    assert abs(adjusted.iloc[0]["estimate"]) < 0.2  # nothing left of it


def test_verdict_words_the_covariate_route():
    from eegsal.stats import verdict_text

    name = "stage x delta_power"
    within = pd.DataFrame({
        name: ["N2, delta_power q1", "N2, delta_power q2", "all (within-context)"],
        "balanced_accuracy": [0.56, 0.55, 0.555], "p": [0.04, 0.03, 0.01],
        "null_95": [0.54] * 3,
    })  # fmt: skip
    subjects = pd.DataFrame({"balanced_accuracy": [0.6, 0.55, 0.58, 0.6, 0.7]})

    def regression(p):
        return pd.DataFrame({"estimate": [0.05], "t": [0.4], "p": [p]})

    text = verdict_text(within, subjects, context=name, regression=regression(0.4))
    assert text.startswith("No evidence of content beyond the stage and delta_power")
    assert (
        "content coefficient 0.05 on the decoder's logit adjusted for stage and "
        "delta_power (t = 0.40, permutation p = 0.4)"
    ) in text
    assert "permutation p = 0.4" in text and "holds" not in text
    text = verdict_text(within, subjects, context=name, regression=regression(0.001))
    assert text.startswith(
        "The content effect holds pooled over stage x delta_power strata (in no "
        "single stratum alone, Holm-corrected over 2 stage x delta_power strata"
    )
    assert text.endswith("The decoder reads more than the stage and delta_power.")


def test_the_context_that_goes_with_the_explained_content_is_rem(confounded):
    from eegsal.stats import associated_context

    best, table = associated_context(confounded, "content", "stage", "flying")
    assert best == "REM"
    ref = pd.crosstab(confounded["stage"], confounded["content"], normalize="index")
    assert best == ref["flying"].idxmax()
    np.testing.assert_allclose(
        table.set_index("stage")["p_flying"], ref["flying"].loc[table["stage"]]
    )
    assert table["n"].sum() == len(confounded)
    other, _ = associated_context(confounded, "content", "stage", "other")
    assert other != "REM"
    with pytest.raises(ValueError, match="'flyng' is not a class of 'content'"):
        associated_context(confounded, "content", "stage", "flyng")


@pytest.mark.parametrize(
    "scores",
    [
        [0.5, 0.5, 0.5, 0.6, 0.7, 0.5],  # zeros
        [0.6, 0.6, 0.7, 0.45, 0.8, 0.8],  # ties
        [0.5, 0.6, 0.6, 0.7, 0.45],  # both
        [0.55, 0.62, 0.71, 0.48, 0.8, 0.66, 0.59],
    ],
)
def test_across_subjects_is_the_exact_sign_flip_test(scores):
    # every sign flip of the signed ranks (zeros left out, ties at average
    # ranks), enumerated here: the same p whatever SciPy's default method
    import itertools

    from scipy.stats import rankdata

    from eegsal.stats import across_subjects

    d = np.asarray(scores) - 0.5
    d = d[d != 0]
    ranks = rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    flips = np.array(list(itertools.product([0, 1], repeat=len(d))))
    null = flips @ ranks
    expected = (null >= observed - 1e-12).mean()
    n, mean, p = across_subjects(pd.DataFrame({"balanced_accuracy": scores}))
    assert n == len(scores) and mean == pytest.approx(np.mean(scores))
    assert p == pytest.approx(expected, rel=1e-12)
