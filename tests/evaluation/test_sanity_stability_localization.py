"""Randomization sanity checks, stability and ground-truth localization."""

import copy

import numpy as np
import pytest
import torch

from eegsal.attribution import Attributions
from eegsal.evaluation import (
    cascading_randomization,
    localization,
    randomization_test,
    stability,
)
from eegsal.models import EEGNet


def test_randomization_destroys_saliency_of_a_trained_eegnet(tiny_result, study):
    epochs, _ = study
    model = tiny_result.models[0]  # trained (briefly) on half the subjects
    table = randomization_test(model, epochs[:20], method="saliency", label=1)
    assert table["layer"].iloc[0].endswith("classifier")
    assert table["spearman"].iloc[0] < 0.5  # output layer randomized: maps gone
    assert table["spearman"].iloc[-1] < 0.5 and not table["flagged"].any()


def test_a_map_that_ignores_the_model_is_flagged(tiny_result, study):
    epochs, _ = study

    def edges(result, ep):  # an "explanation" from the data alone
        return np.abs(np.diff(ep.get_data(), axis=-1, prepend=0.0))

    table = randomization_test(tiny_result.models[0], epochs[:10], method=edges)
    np.testing.assert_allclose(table["spearman"], 1.0)
    assert table["flagged"].all()


def test_cascading_randomization_leaves_the_model_alone(tiny_result):
    model = tiny_result.models[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = list(cascading_randomization(model, seed=0))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    last = steps[-1][1]
    w = dict(last.named_parameters())
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, w[k])]
    assert len(changed) == len(list(model.parameters()))  # all re-initialized
    assert [name for name, _ in steps][-1].endswith("temporal_conv")


def test_stability(study):
    epochs, _ = study
    epochs = epochs[:6]
    torch.manual_seed(0)
    model = EEGNet(len(epochs.ch_names), len(epochs.times), 2).eval()

    def constant(m, ep):
        return np.ones((len(ep), len(ep.ch_names), len(ep.times)))

    flat = stability(model, epochs, method=constant, noise=(0.1,), n_samples=2)
    assert (flat[["max_sensitivity", "avg_sensitivity"]] == 0).all().all()
    table = stability(model, epochs, method="saliency", label=1,
                      noise=(0.01, 0.1, 0.5), n_samples=3)  # fmt: skip
    means = table.groupby("noise")["avg_sensitivity"].mean().to_numpy()
    assert (np.diff(means) > 0).all() and means[0] > 0
    assert (table["max_sensitivity"] >= table["avg_sensitivity"]).all()


def test_localization_against_the_ground_truth(study):
    epochs, truth = study

    def attr_of(data):
        return Attributions(data, epochs.info, epochs.times, metadata=epochs.metadata,
                            method="x", target="logit")  # fmt: skip

    n = len(epochs)
    perfect = attr_of(np.repeat(truth.content_mask[None].astype(float), n, axis=0))
    table = localization(perfect, truth)
    assert len(table) == (epochs.metadata["content"] == "flying").sum()
    assert (table[["mass_accuracy", "rank_accuracy", "auroc"]] == 1).all().all()
    rng = np.random.default_rng(0)
    noise = localization(attr_of(rng.standard_normal((n,) + truth.content_mask.shape)),
                         truth)  # fmt: skip
    share = truth.content_mask.mean()
    assert noise["mass_accuracy"].mean() == pytest.approx(share, abs=0.02)
    assert noise["rank_accuracy"].mean() == pytest.approx(share, abs=0.02)
    assert noise["auroc"].mean() == pytest.approx(0.5, abs=0.02)
    empty = copy.deepcopy(truth)  # the session's truth stays as it is
    empty.content_mask[:] = False
    with pytest.raises(ValueError, match="no content signal"):
        localization(perfect, empty)


def test_label_randomization_control(tiny_result, study):
    from eegsal.evaluation import label_randomization

    epochs, _ = study
    table = label_randomization(tiny_result, epochs, method="saliency")
    assert len(table) == len(epochs)
    # the control is another network: no epoch's map can equal the decoder's
    # (it would, were the decoder's own maps compared with themselves)
    assert table["spearman"].notna().all() and (table["spearman"] < 0.999).all()
    assert 0.25 < table["balanced_accuracy_shuffled"].iloc[0] < 0.75  # chance
    assert {"subject", "content", "stage"} <= set(table.columns)
    assert tiny_result.config["decoder_params"]["max_epochs"] == 3


@pytest.fixture(scope="module")
def aligned_result(_study_session):
    from eegsal.decoding import decode

    epochs, _ = _study_session
    return decode(epochs, "content", cv=2, max_epochs=2, batch_size=32, seed=0,
                  valid_size=0, align="euclidean")  # fmt: skip


def test_randomization_of_an_aligned_result_keeps_the_alignment(aligned_result, study):
    from eegsal.attribution import attribute
    from eegsal.evaluation.sanity import _randomized_results

    epochs, _ = study
    result = aligned_result
    expected = attribute(result, epochs, method="saliency", verbose=False).data
    steps = _randomized_results(result, seed=0)
    layer, trained = next(steps)
    assert layer is None and trained.alignment is result.alignment
    got = attribute(trained, epochs, method="saliency", verbose=False).data
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    # each randomized step is explained behind each subject's alignment
    _, randomized = next(steps)
    models, index = randomized.explainers()
    assert len(models) == 4 and (index >= 0).all()  # (fold, subject) pairs
    assert all(isinstance(m[0], type(result.explainers()[0][0][0])) for m in models)
    table = randomization_test(result, epochs, method="saliency")
    assert len(table) == len(list(cascading_randomization(result.models[0])))


def test_randomization_of_an_ensemble_goes_through_every_member(study):
    from eegsal.decoding import Ensemble, decode

    epochs, _ = study
    result = decode(epochs, "content", cv=2, max_epochs=1, batch_size=32, seed=0,
                    valid_size=0, n_seeds=2)  # fmt: skip
    model = result.models[0]
    assert isinstance(model, Ensemble)
    n_member_layers = len(
        [m for m in model.members[0].modules() if list(m.parameters(False))]
    )
    steps = list(cascading_randomization(model, seed=0))
    assert len(steps) == n_member_layers
    assert not steps[0][0].startswith("members")  # named within a member
    for depth, (_, randomized) in enumerate(steps, start=1):
        assert isinstance(randomized, Ensemble)
        for trained, member in zip(model.members, randomized.members, strict=True):
            changed = [
                not all(torch.equal(p, q) for p, q in zip(
                    a.parameters(False), b.parameters(False), strict=True))
                for a, b in zip(trained.modules(), member.modules(), strict=True)
                if list(a.parameters(False))
            ]  # fmt: skip
            # the top ``depth`` layers of every member, and no other
            assert changed == [False] * (n_member_layers - depth) + [True] * depth
    table = randomization_test(
        result.take(slice(0, 10)), epochs[:10], method="saliency"
    )
    assert len(table) == n_member_layers
