"""The report's words: the verdict of summary.txt and report.html."""

import html

import numpy as np
import pandas as pd
import pytest
import yaml

from eegsal.decoding import DecodingResult
from eegsal.pipeline import read_config
from eegsal.report import make_report
from eegsal.simulate import simulate_sleep_study
from eegsal.stats import (
    content_verdict,
    subject_scores,
    verdict_text,
    within_context_scores,
)


@pytest.fixture(scope="module")
def meta():
    kw = dict(scenario="confound", confound=0.8, seed=0)
    epochs, _ = simulate_sleep_study(n_subjects=8, n_epochs=40, epoch_length=1.0, **kw)
    return epochs.metadata.reset_index(drop=True)


def _study_folder(out, meta, y_pred):
    """A study's output folder with hand-made predictions (no decoder run)."""
    pred = meta.assign(fold=meta["subject"].str[-1].astype(int) % 2,
                       y_true=meta["content"].astype(str), y_pred=y_pred)  # fmt: skip
    scores = pd.DataFrame({"fold": [0, 1], "balanced_accuracy": [0.6, 0.7]})
    result = DecodingResult(pred, scores, [], ["flying", "other"],
                            dict(target="content", model="eegnet"))  # fmt: skip
    within = within_context_scores(result, "stage", n_permutations=100, seed=0)
    subjects = subject_scores(result, "stage")
    verdict = content_verdict(result, "stage", within=within)
    cfg = read_config({"name": "hand-made", "data": {"simulate": {}}})
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    (out / "tables").mkdir()
    for name, table in [("within_stage", within), ("subject_scores", subjects),
                        ("verdict", verdict), ("scores", scores)]:  # fmt: skip
        table.to_csv(out / "tables" / f"{name}.csv", index=False)
    return verdict.iloc[-1]["reading"], within, subjects, verdict


@pytest.mark.parametrize("case", ["holds", "few subjects"])
def test_summary_and_report_say_the_verdict_of_content_verdict(tmp_path, meta, case):
    truth = meta["content"].to_numpy()
    if case == "holds":
        other = np.where(truth == "flying", "other", "flying")
        flip = np.random.default_rng(0).random(len(truth)) < 0.2
        y_pred = np.where(flip, other, truth)
    else:  # decoded within stage, but in 2 of 8 subjects only
        few = meta["subject"].isin(["sub-01", "sub-02"]).to_numpy()
        y_pred = np.where(few, truth, "other")
    out = tmp_path / case.replace(" ", "_")
    reading, within, subjects, verdict = _study_folder(out, meta, y_pred)
    overall = verdict.iloc[0]["balanced_accuracy"]
    assert reading == verdict_text(within, subjects, overall=overall)
    assert ("holds" in reading) == (case == "holds")
    make_report(out, verbose=False)
    # the words summary.txt (printed by `eegsal run`) and the report show
    summary = (out / "summary.txt").read_text().splitlines()
    assert reading in summary
    assert html.escape(reading) in (out / "report.html").read_text()


def test_every_report_figure_has_a_one_sentence_caption():
    """Each figure the report shows says how to read it, in one sentence."""
    from eegsal.report import figure_captions

    captions = figure_captions("stage")
    assert set(captions) == {
        "within_stage",
        "subject_scores",
        "similarity",
        "topomap",
        "image",
        "faithfulness",
        "randomization",
        "lmm",
    }
    for text in captions.values():
        assert text.endswith(".") and ". " not in text.replace("e.g. ", "")
