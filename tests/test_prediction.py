"""Prediction on new recordings, refit on all subjects, the predict command."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from eegsal.cli import main
from eegsal.decoding import DecodingResult, decode


@pytest.fixture(scope="module")
def refit_result(_study_session):
    """EEGNet, 2 folds and a model refitted on all subjects (1 training epoch)."""
    epochs, _ = _study_session
    return decode(epochs, "content", cv=2, max_epochs=1, batch_size=32, seed=0,
                  refit=True, verbose=False)  # fmt: skip


def _softmax(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x.astype(np.float32))).softmax(-1).numpy()


def test_fold_models_predict_as_an_ensemble(tiny_result, study):
    epochs, _ = study
    new = epochs[:40]
    # independent reference: each fold model on volts read by hand, times 1e6
    x = new.get_data(picks="eeg") * 1e6
    ref = np.mean([_softmax(m, x) for m in tiny_result.models], axis=0)
    proba = tiny_result.predict_proba(new, batch_size=7)
    np.testing.assert_allclose(proba, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    y = tiny_result.predict(new)
    assert list(y) == list(tiny_result.classes[ref.argmax(1)])


def test_the_refitted_model_predicts_and_survives_save_load(
    refit_result, study, tmp_path
):
    epochs, _ = study
    res = refit_result
    assert res.refit_model is not None and len(res.models) == 2
    assert res.refit_model is not res.models[0]
    x = epochs.get_data(picks="eeg", units="uV")
    proba = res.predict_proba(epochs)
    np.testing.assert_allclose(proba, _softmax(res.refit_model, x), rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    fold_mean = np.mean([_softmax(m, x) for m in res.models], axis=0)
    assert not np.allclose(proba, fold_mean, atol=1e-4)  # it is not the ensemble
    # the out-of-fold predictions are those of the folds, refit or not
    assert set(res.predictions["fold"]) == {0, 1}
    res.save(tmp_path / "res")
    assert json.loads((tmp_path / "res" / "config.json").read_text())["refit"]
    back = DecodingResult.load(tmp_path / "res")
    np.testing.assert_allclose(back.predict_proba(epochs), proba, rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    assert list(back.predict(epochs)) == list(res.predict(epochs))


def test_channels_are_reordered_and_checked(tiny_result, study, caplog):
    epochs, _ = study
    new = epochs[:10]
    ref = tiny_result.predict_proba(new)
    shuffled = new.copy().reorder_channels(new.ch_names[::-1])
    with caplog.at_level(logging.INFO, logger="eegsal"):
        got = tiny_result.predict_proba(shuffled)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert "Reordering" in caplog.text
    short = new.copy().drop_channels(["Cz", "O2"])
    with pytest.raises(ValueError, match=r"lack 2 of the 19 EEG channels .*'Cz'"):
        tiny_result.predict_proba(short)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda e: e.resample(50), r"sampled at 50 Hz .* resample them to 100 Hz"),
        (lambda e: e.crop(0, 1.0), r"have 101 samples .* models take 200"),
    ],
)
def test_other_sampling_or_length_is_refused(tiny_result, study, change, match):
    epochs, _ = study
    with pytest.raises(ValueError, match=match):
        tiny_result.predict_proba(change(epochs[:5].copy()))


def test_predict_command_writes_the_table(tiny_result, study, tmp_path, capsys):
    epochs, _ = study
    new = epochs[50:70]
    tiny_result.save(tmp_path / "res")
    fif = tmp_path / "new-epo.fif"
    new.save(fif, fmt="double")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tmp_path / "res"), str(fif), "--out", str(out),
                 "-q"]) == 0  # fmt: skip
    table = pd.read_csv(out)
    assert list(table.columns) == [
        *new.metadata.columns, "y_pred", "proba_flying", "proba_other"
    ]
    proba = tiny_result.predict_proba(new)
    np.testing.assert_allclose(table[["proba_flying", "proba_other"]], proba,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert list(table["subject"]) == list(new.metadata["subject"])
    # bad input: exit 1, one line naming the file and what differs
    new.copy().resample(50).save(tmp_path / "low-epo.fif")
    capsys.readouterr()
    code = main(["predict", str(tmp_path / "res"), str(tmp_path / "low-epo.fif"),
                 "--out", str(tmp_path / "low.csv"), "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "low-epo.fif" in err and "resample them to 100 Hz" in err
    assert not (tmp_path / "low.csv").exists()
