import json
import logging
import pickle
import shutil

import mne
import numpy as np
import pandas as pd
import pytest
import torch

from eegsal.attribution import Attributions
from eegsal.data.cache import read_epochs
from eegsal.data.reader import EpochsReader, channel_moments
from eegsal.decoding import DecodingResult, EEGDecoder, decode
from eegsal.simulate import simulate_sleep_study


def test_result_is_out_of_fold_and_complete(tiny_result, study):
    epochs, _ = study
    res = tiny_result
    pred = res.predictions
    assert len(pred) == len(epochs) and (pred["fold"] >= 0).all()
    assert list(res.classes) == ["flying", "other"]
    proba = pred[["proba_flying", "proba_other"]].to_numpy()
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    assert res.scores["balanced_accuracy"].between(0, 1).all()
    # no subject is ever in the training data of the fold that tests it
    for k, row in res.scores.iterrows():
        test_subjects = set(row["test_groups"].split())
        assert set(pred.loc[pred["fold"] == k, "subject"]) == test_subjects
    assert pred.groupby("subject")["fold"].nunique().eq(1).all()
    by_stage = res.score_by("stage")
    assert set(by_stage["stage"]) == set(epochs.metadata["stage"])
    assert by_stage["n"].sum() == len(epochs)
    with pytest.raises(ValueError, match="not in the predictions"):
        res.score_by("stagee")


def test_validation_split_holds_out_whole_subjects(study):
    epochs, _ = study
    y = epochs.metadata["content"].to_numpy()
    g = epochs.metadata["subject"].to_numpy()
    clf = EEGDecoder(valid_size=0.25, seed=3)
    train, valid = clf._split(np.unique(y, return_inverse=True)[1], g)
    assert set(g[train]).isdisjoint(g[valid])
    assert len(valid) > 0


def test_same_seed_same_predictions(study):
    epochs, _ = study
    a = decode(epochs, "content", cv=2, max_epochs=2, seed=1, device="cpu")
    b = decode(epochs, "content", cv=2, max_epochs=2, seed=1, device="cpu")
    np.testing.assert_array_equal(
        a.predictions["proba_flying"], b.predictions["proba_flying"]
    )


class _CountingReader(EpochsReader):
    """Records how many epochs each read asks for."""

    def __init__(self, epochs):
        self.reads = []
        super().__init__(epochs)

    def __getitem__(self, item):
        data = super().__getitem__(item)
        self.reads.append(len(data))
        return data


def test_lazy_epochs_train_batch_by_batch_like_preloaded(study, tmp_path):
    epochs, _ = study
    fname = tmp_path / "study-epo.fif"
    epochs.save(fname, fmt="double")
    loaded, lazy = read_epochs(fname), read_epochs(fname, preload=False)
    kw = dict(cv=2, max_epochs=1, seed=1, device="cpu")
    a = decode(loaded, "content", **kw)
    b = decode(lazy, "content", **kw)
    np.testing.assert_allclose(
        a.predictions["proba_flying"], b.predictions["proba_flying"], atol=1e-6
    )
    assert not lazy.preload
    # worker processes open the file themselves (open files do not pickle)
    c = decode(lazy, "content", n_jobs=2, **kw)
    np.testing.assert_allclose(
        c.predictions["proba_flying"], b.predictions["proba_flying"], atol=1e-5
    )
    # a decoder on a reader holds one batch at a time
    y = epochs.metadata["content"].to_numpy()
    reader = _CountingReader(lazy)
    clf = EEGDecoder(max_epochs=2, batch_size=16, valid_size=0.25).fit(
        reader, y, epochs.metadata["subject"]
    )
    clf.predict_proba(reader)
    assert max(reader.reads) == 16 and sum(reader.reads) > 3 * len(y)
    want = loaded.get_data(units="uV")[[7, 2]].astype(np.float32)
    np.testing.assert_array_equal(reader[[7, 2]], want)
    with pytest.raises(ValueError, match="shape"):
        EEGDecoder().fit(np.zeros((4, 10)), y[:4])
    # epochs cut lazily from a Raw have no file for the workers to open
    raw = mne.io.RawArray(np.zeros((2, 1000)), mne.create_info(2, 100.0, "eeg"))
    events = np.array([[100, 0, 1], [400, 0, 1]])
    from_raw = mne.Epochs(raw, events, tmin=0, tmax=1, baseline=None, preload=False)
    with pytest.raises(ValueError, match="cannot be sent to worker processes"):
        pickle.dumps(EpochsReader(from_raw))


def test_channel_moments_match_numpy_for_any_batch_size():
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((37, 3, 50)) * [[1], [20], [300]] + 1e4).astype(np.float32)
    rows = rng.permutation(37)[:30]
    ref = X[rows].astype(np.float64)
    for batch_size in (1, 7, 64):
        mean, std = channel_moments(X, rows, batch_size=batch_size)
        np.testing.assert_allclose(mean, ref.mean(axis=(0, 2)), rtol=1e-12)
        np.testing.assert_allclose(std, ref.std(axis=(0, 2)), rtol=1e-9)


def test_fitted_model_standardizes_with_training_statistics(study):
    epochs, _ = study
    X = epochs.get_data(units="uV").astype(np.float32)
    y = epochs.metadata["content"].to_numpy()
    clf = EEGDecoder(max_epochs=1, valid_size=0).fit(X, y)
    std = clf.module_[0]
    np.testing.assert_allclose(std.mean[:, 0].numpy(), X.mean(axis=(0, 2)), rtol=1e-4)
    np.testing.assert_allclose(
        std.scale[:, 0].numpy(), X.std(axis=(0, 2)) + 1e-6, rtol=1e-4
    )


def test_save_load_round_trip(tiny_result, study, tmp_path):
    epochs, _ = study
    tiny_result.save(tmp_path / "res")
    with pytest.raises(FileExistsError):
        tiny_result.save(tmp_path / "res")
    back = DecodingResult.load(tmp_path / "res")
    assert list(back.classes) == list(tiny_result.classes)
    x = torch.from_numpy(epochs.get_data(units="uV")[:5].astype(np.float32))
    for m0, m1 in zip(tiny_result.models, back.models, strict=True):
        with torch.no_grad():
            torch.testing.assert_close(m0(x), m1(x))
    np.testing.assert_allclose(
        back.predictions["proba_flying"], tiny_result.predictions["proba_flying"]
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target="dream"), "not a metadata column"),
        (dict(groups="participant"), "not a metadata column"),
        (dict(cv=10), "between 2 and the number of groups"),
        (dict(cv="kfold"), "'loso'"),
    ],
)
def test_bad_input(study, kwargs, match):
    epochs, _ = study
    with pytest.raises(ValueError, match=match):
        decode(epochs, **{"target": "content", **kwargs})


def test_rejects_arrays_and_missing_metadata(study):
    epochs, _ = study
    with pytest.raises(TypeError, match="epochs must be an instance of"):
        decode(epochs.get_data(), "content")
    epochs.metadata = None
    with pytest.raises(ValueError, match="no metadata"):
        decode(epochs, "content")


def test_scores_match_sklearn_balanced_accuracy(tiny_result):
    from sklearn.metrics import balanced_accuracy_score

    pred = tiny_result.predictions
    for k, row in tiny_result.scores.iterrows():
        sel = pred["fold"] == k
        ref = balanced_accuracy_score(pred.loc[sel, "y_true"], pred.loc[sel, "y_pred"])
        assert row["balanced_accuracy"] == pytest.approx(ref)


@pytest.mark.filterwarnings("ignore:The groups parameter is ignored")
def test_a_splitter_that_mixes_subjects_is_refused(study):
    from sklearn.model_selection import KFold

    epochs, _ = study
    with pytest.raises(ValueError, match="between training and testing"):
        decode(epochs, "content", cv=KFold(3), max_epochs=1)


def test_folds_train_on_other_subjects_only(study, monkeypatch):
    """Record the training data of every fold: never a test subject (indices)."""
    epochs, _ = study
    seen = []
    original = EEGDecoder.fit

    def spy(self, X, y, groups=None):
        seen.append(set(groups))
        return original(self, X, y, groups)

    monkeypatch.setattr(EEGDecoder, "fit", spy)
    res = decode(epochs, "content", cv="loso", max_epochs=1)
    assert len(seen) == 4 == len(res.models)
    for k, train_subjects in enumerate(seen):
        test_subjects = set(
            res.predictions.loc[res.predictions["fold"] == k, "subject"]
        )
        assert len(test_subjects) == 1 and train_subjects.isdisjoint(test_subjects)
        assert len(train_subjects) == 3


def test_ctrl_c_during_training_raises_and_keeps_no_model(study):
    """skorch swallows KeyboardInterrupt in fit; a user's Ctrl-C must not be."""
    import os
    import signal
    import threading

    epochs, _ = study
    X = epochs.get_data(units="uV")[:40]
    y = epochs.metadata["content"].to_numpy()[:40]
    EEGDecoder(max_epochs=1, valid_size=0, seed=0).fit(X, y)  # imports done
    dec = EEGDecoder(max_epochs=100_000, valid_size=0, batch_size=8, seed=0)
    # Python's own Ctrl-C handler, even where the test runner was started with
    # SIGINT ignored (a background job of a non-interactive shell)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            dec.fit(X, y)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert not hasattr(dec, "module_")  # no half-trained model is kept


def test_early_stopping_still_ends_training_quietly(study):
    epochs, _ = study
    X = epochs.get_data(units="uV")
    y = epochs.metadata["content"].to_numpy()
    groups = epochs.metadata["subject"].to_numpy()
    dec = EEGDecoder(max_epochs=200, patience=1, min_epochs=2, seed=0)
    dec.fit(X, y, groups)  # early stopping raises inside skorch; fit returns
    assert 2 <= dec.n_epochs_trained_ < 200


def _consumers():
    """Every function that explains a result's epochs with its fold models."""
    from eegsal.attribution import attribute, attribute_spectrum
    from eegsal.attribution.saturation import saturation
    from eegsal.evaluation import faithfulness, stability

    def faithful(res, ep):
        attr = Attributions(np.ones((len(ep), len(ep.ch_names), len(ep.times)),
                                    np.float32), ep.info, ep.times,
                            method="x", target="logit", label="true")  # fmt: skip
        return faithfulness(res, ep, attr, n_steps=2, patch=(19, 50), n_random=0)

    return {
        "attribute": lambda res, ep: attribute(res, ep, method="saliency"),
        "attribute_spectrum": lambda res, ep: attribute_spectrum(res, ep),
        "faithfulness": faithful,
        "stability": lambda res, ep: stability(res, ep, noise=(0.1,), n_samples=1),
        "saturation": lambda res, ep: saturation(res, ep),
    }


def _changed(epochs):
    """The epochs changed in each way that breaks out-of-fold explanations."""
    n = len(epochs)
    order = np.r_[1, 0, 2:n]
    other, _ = simulate_sleep_study(n_subjects=4, n_epochs=30, epoch_length=2.0,
                                    effect_size=0.9, seed=1)  # fmt: skip
    swapped = mne.concatenate_epochs(  # epoch 5 dropped, another one added
        [epochs[np.r_[0:5, 6:n]], other[[n - 1]]], verbose=False
    )
    names = list(epochs.ch_names)
    return {
        "reordered": (epochs[order], r"2 of 120 epochs differ, the first at "
                      r"position 0 \(event sample 200, selection 1, subject "
                      r"sub-01, content other here; event sample 0, selection 0"),
        "dropped and added": (swapped, "epochs differ, the first at position 5"),
        "channels reordered": (epochs.copy().reorder_channels(names[::-1]),
                               "EEG channels are in another order .*"
                               r"reorder_channels\(result.config\['ch_names'\]\)"),
        "resampled": (epochs.copy().resample(50.0),
                      "sampled at 50 Hz, the result's at 100 Hz"),
        "subset": (epochs[:60], "they are 60 epochs, the result was decoded from "
                   r"120.* result.take\(idx\) with epochs\[idx\]"),
    }  # fmt: skip


@pytest.fixture(scope="module")
def changed_epochs(_study_session):
    return _changed(_study_session[0].copy())


CHANGES = ["reordered", "dropped and added", "channels reordered", "resampled",
           "subset"]  # fmt: skip


@pytest.mark.parametrize("change", CHANGES)
def test_other_epochs_are_refused(tiny_result, changed_epochs, change):
    changed, match = changed_epochs[change]
    with pytest.raises(ValueError, match=match):
        tiny_result.check_epochs(changed)


@pytest.mark.parametrize("consumer", list(_consumers()))
@pytest.mark.parametrize("change", CHANGES)
def test_every_consumer_refuses_other_epochs(tiny_result, changed_epochs, change,
                                             consumer):  # fmt: skip
    changed, _ = changed_epochs[change]
    with pytest.raises(ValueError, match="not the ones the result was decoded from"):
        _consumers()[consumer](tiny_result, changed)


def test_the_decoded_epochs_are_recognised(tiny_result, study, tmp_path, caplog):
    from eegsal.attribution import attribute

    epochs, _ = study
    ref = attribute(tiny_result, epochs, method="saliency").data
    tiny_result.save(tmp_path / "res")
    back = DecodingResult.load(tmp_path / "res")
    fname = tmp_path / "study-epo.fif"
    epochs.save(fname, fmt="double")
    for res in (tiny_result, back):
        for ep in (epochs, mne.read_epochs(fname, verbose=False),
                   mne.read_epochs(fname, preload=False, verbose=False)):  # fmt: skip
            res.check_epochs(ep)
            if not ep.preload:  # read lazily: recognised without reading data
                assert ep._data is None
        lazy = mne.read_epochs(fname, preload=False, verbose=False)
        got = attribute(res, lazy, method="saliency").data
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-9)
    # a subset of both, as the pipeline evaluates some epochs
    idx = np.array([7, 3, 90])
    sub = tiny_result.take(idx)
    np.testing.assert_allclose(
        attribute(sub, epochs[idx], method="saliency").data, ref[idx], rtol=1e-6
    )
    # a result saved before epochs were recorded: accepted, with a warning
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "res", old)
    pred = pd.read_csv(old / "predictions.csv")
    pred.drop(columns=["mne_event_sample", "mne_selection"]).to_csv(
        old / "predictions.csv", index=False
    )
    with caplog.at_level(logging.WARNING, logger="eegsal"):
        DecodingResult.load(old).check_epochs(epochs[::-1])
    assert "does not record which epochs it was decoded from" in caplog.text


def test_models_get_the_sampling_rate_of_the_epochs(tiny_result, study):
    # the study is sampled at 100 Hz: EEGNet's 0.5 s kernel is 50 samples there
    epochs, _ = study
    assert epochs.info["sfreq"] == 100
    net = tiny_result.models[0][1]
    assert net.temporal_conv.kernel_size == (1, 50)
    assert net.spatial_pool.kernel_size == (1, 3)
    assert tiny_result.config["model_params"] == {"sfreq": 100.0}
    with pytest.raises(ValueError, match="model_params has sfreq=250"):
        decode(epochs, "content", cv=2, max_epochs=1, model_params={"sfreq": 250})


def test_a_result_saved_before_sfreq_reloads_its_sample_sizes(
    tiny_result, study, tmp_path
):
    # a result written by eegsal before models took sfreq: model_params
    # without it, weights of EEGNet's 128 Hz sizes (64-sample kernel, pool 4)
    from eegsal.decoding.networks import _build_module

    epochs, _ = study
    tiny_result.save(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config["model_params"] = {}
    del config["refit"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    torch.manual_seed(1)
    then = [_build_module("eegnet", 19, 200, 2, {}).eval() for _ in range(2)]
    for k, module in enumerate(then):
        assert module[1].temporal_conv.kernel_size == (1, 64)
        torch.save(module.state_dict(), tmp_path / "old" / f"fold-{k}.pt")
    back = DecodingResult.load(tmp_path / "old")
    x = torch.from_numpy(epochs.get_data(units="uV")[:4].astype(np.float32))
    for m0, m1 in zip(then, back.models, strict=True):
        assert m1[1].temporal_conv.kernel_size == (1, 64)
        with torch.no_grad():
            torch.testing.assert_close(m1(x), m0(x))
