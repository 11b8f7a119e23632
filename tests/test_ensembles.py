"""Fold ensembles (decode(..., n_seeds=)): averaged probabilities, averaged maps."""

import numpy as np
import pytest
import torch
from torch import nn

import eegsal
from eegsal.decoding import DecodingResult, Ensemble, decode


def mlp(n_chans, n_times, n_classes):
    """A small nonlinear model (fast to explain with many IG steps)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(n_chans * n_times, 8), nn.ELU(), nn.Linear(8, n_classes)
    )


@pytest.fixture(scope="module")
def ensemble(_study_session):
    epochs, _ = _study_session
    epochs = epochs[::3]  # 40 epochs, 4 subjects
    result = decode(
        epochs, "content", model=mlp, cv=2, max_epochs=2, batch_size=32,
        valid_size=0, n_seeds=2, seed=0, device="cpu",
    )  # fmt: skip
    return epochs, result


def test_each_fold_keeps_its_members_and_averages_probabilities(ensemble):
    epochs, result = ensemble
    assert result.config["n_seeds"] == 2
    x = torch.from_numpy(epochs.get_data(picks="eeg", units="uV")).float()
    fold = result.predictions["fold"].to_numpy()
    for k, model in enumerate(result.models):
        assert isinstance(model, Ensemble) and len(model.members) == 2
        a, b = model.members
        assert not torch.equal(a[1][1].weight, b[1][1].weight)  # other seeds
        with torch.no_grad():
            mean = sum(m(x[fold == k]).softmax(-1) for m in model.members) / 2
            # the ensemble's logits are the log of that mean
            np.testing.assert_allclose(
                model(x[fold == k]).softmax(-1).numpy(), mean.numpy(), atol=1e-6
            )
        ref = result.predictions.loc[fold == k, [f"proba_{c}" for c in result.classes]]
        np.testing.assert_allclose(mean.numpy(), ref.to_numpy(), atol=1e-5)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_map_of_an_ensemble_is_the_mean_of_its_members_maps(ensemble, method):
    epochs, result = ensemble
    kw = dict(method=method, label=1, device="cpu", n_steps=16)
    attr = eegsal.attribute(result, epochs, **kw)
    fold = result.predictions["fold"].to_numpy()
    for k, model in enumerate(result.models):
        idx = np.flatnonzero(fold == k)
        per_member = [
            eegsal.attribute(m, epochs[idx], **kw).data for m in model.members
        ]
        np.testing.assert_allclose(
            attr.data[idx], np.mean(per_member, 0), rtol=1e-4, atol=1e-6
        )


def test_integrated_gradients_of_an_ensemble_complete_the_mean_logit(ensemble):
    epochs, result = ensemble
    attr = eegsal.attribute(
        result, epochs, method="integrated_gradients", label=1, n_steps=40,
        device="cpu",
    )  # fmt: skip
    x = torch.from_numpy(epochs.get_data(picks="eeg", units="uV")).float()
    fold = result.predictions["fold"].to_numpy()
    gain = np.zeros(len(x))
    for k, model in enumerate(result.models):
        with torch.no_grad():  # mean over members of logit(x) - logit(0)
            gain[fold == k] = np.mean(
                [
                    (m(x[fold == k])[:, 1] - m(torch.zeros_like(x[fold == k]))[:, 1])
                    .double()
                    .numpy()
                    for m in model.members
                ],
                0,
            )
    total = attr.data.astype(np.float64).sum((1, 2))
    err = attr.metadata["completeness_error"].to_numpy()
    np.testing.assert_allclose(err, total - gain, atol=1e-3 * np.abs(gain).max())
    assert np.abs(err).max() < 0.05 * np.abs(gain).max()


def test_ensemble_result_saves_and_loads(ensemble, tmp_path):
    epochs, result = ensemble
    result.save(tmp_path / "r")
    back = DecodingResult.load(tmp_path / "r", model=mlp)
    assert isinstance(back.models[0], Ensemble) and len(back.models[0].members) == 2
    np.testing.assert_allclose(
        back.predict_proba(epochs, device="cpu", verbose=False),
        result.predict_proba(epochs, device="cpu", verbose=False),
        atol=1e-6,
    )
    a = eegsal.attribute(result, epochs, method="saliency", label=0, device="cpu")
    b = eegsal.attribute(back, epochs, method="saliency", label=0, device="cpu")
    np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-7)


def test_aligned_ensemble_explains_through_each_subjects_alignment(_study_session):
    epochs, _ = _study_session
    epochs = epochs[::6]
    result = decode(
        epochs, "content", model="shallow", cv=2, max_epochs=1, batch_size=32,
        valid_size=0, n_seeds=2, align="euclidean", seed=0, device="cpu",
    )  # fmt: skip
    models, index = result.explainers()
    x = torch.from_numpy(epochs.get_data(picks="eeg", units="uV")).float()
    ref = result.predictions[[f"proba_{c}" for c in result.classes]].to_numpy()
    for k, model in enumerate(models):
        assert isinstance(model, Ensemble)
        with torch.no_grad():
            p = model(x[index == k]).softmax(-1).numpy()
        np.testing.assert_allclose(p, ref[index == k], atol=1e-5)
    attr = eegsal.attribute(result, epochs, method="gradcam", device="cpu")
    assert attr.data.shape == (len(epochs), x.shape[1], x.shape[2])
