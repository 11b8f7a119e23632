"""Per-subject alignment: identity covariances, analytic maps through the layer."""

import copy

import numpy as np
import pytest
import torch
from scipy.linalg import fractional_matrix_power
from torch import nn

import eegsal
from eegsal.alignment import SubjectAlignment, align, fit_alignment, inverse_sqrtm
from eegsal.decoding import DecodingResult, EEGDecoder, decode
from eegsal.decoding.networks import Standardize


def _mixed(seed=0, n_subjects=3, n_epochs=20, n_chans=5, n_times=50):
    """Epochs whose spatial covariance differs by subject (a random mixing each)."""
    rng = np.random.default_rng(seed)
    X, g = [], []
    for s in range(n_subjects):
        mixing = rng.normal(size=(n_chans, n_chans)) + 2 * np.eye(n_chans)
        X.append(
            np.einsum(
                "cd,edt->ect", mixing, rng.normal(size=(n_epochs, n_chans, n_times))
            )
        )
        g += [f"s{s}"] * n_epochs
    return np.concatenate(X).astype(np.float32), np.array(g)


def _mean_cov(x):
    x = np.asarray(x, np.float64)
    return np.einsum("ect,edt->cd", x, x) / (len(x) * x.shape[2])


def test_euclidean_alignment_whitens_each_subject_to_the_identity():
    X, g = _mixed()
    alignment = fit_alignment(X, g, "euclidean")
    aligned = align(X, g, alignment)
    for s in np.unique(g):
        sel = g == s
        # He & Wu's R^-1/2 of the subject's mean covariance, from scipy
        ref = fractional_matrix_power(_mean_cov(X[sel]), -0.5).real
        np.testing.assert_allclose(alignment[s][0], ref, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(_mean_cov(aligned[sel]), np.eye(5), atol=1e-5)
        # before alignment the subjects' covariances are far from it
        assert np.abs(_mean_cov(X[sel]) - np.eye(5)).max() > 0.5


def test_standardize_z_scores_each_channel_with_the_subjects_statistics():
    X, g = _mixed(seed=1)
    X += np.arange(5, dtype=np.float32)[:, None] * 10  # channel offsets
    aligned = align(X, g, fit_alignment(X, g, "standardize"))
    for s in np.unique(g):
        a = aligned[g == s].transpose(1, 0, 2).reshape(5, -1)
        ref = X[g == s].transpose(1, 0, 2).reshape(5, -1).astype(np.float64)
        ref = (ref - ref.mean(1, keepdims=True)) / ref.std(1, keepdims=True)
        np.testing.assert_allclose(a, ref, atol=1e-4)


def test_inverse_square_root_floors_a_rank_deficient_covariance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 1000))
    x -= x.mean(0)  # average reference: rank 3
    root = inverse_sqrtm(x @ x.T / 1000)
    assert np.isfinite(root).all() and np.abs(root).max() < 1e6


def test_subject_alignment_layer_is_the_affine_map():
    rng = np.random.default_rng(2)
    matrix, offset = rng.normal(size=(4, 4)), rng.normal(size=4)
    x = rng.normal(size=(3, 4, 7))
    out = SubjectAlignment(matrix, offset)(torch.from_numpy(x).float())
    ref = np.einsum("cd,edt->ect", matrix, x - offset[:, None])
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    mean = SubjectAlignment(matrix, offset).input_mean(np.ones(4))
    np.testing.assert_allclose(matrix @ (mean - offset), np.ones(4), atol=1e-6)


def test_decoder_needs_the_subjects_to_align():
    X, g = _mixed(n_epochs=8)
    y = np.tile(["a", "b"], len(X) // 2)
    with pytest.raises(ValueError, match="pass groups="):
        EEGDecoder("shallow", align="euclidean", max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="Invalid value for the 'align'"):
        EEGDecoder("shallow", align="riemann", max_epochs=1).fit(X, y, groups=g)


def linear(n_chans, n_times, n_classes):
    """A linear model: logits = W vec(x) + b."""
    return nn.Sequential(nn.Flatten(), nn.Linear(n_chans * n_times, n_classes))


@pytest.fixture(scope="module")
def aligned_result(_study_session):
    epochs, _ = _study_session
    return epochs, decode(
        epochs, "content", model=linear, cv=2, max_epochs=2, batch_size=32,
        valid_size=0, align="euclidean", seed=0,
    )  # fmt: skip


def test_aligned_result_keeps_every_subjects_alignment(aligned_result):
    epochs, result = aligned_result
    subjects = epochs.metadata["subject"].astype(str)
    assert sorted(result.alignment) == sorted(subjects.unique())
    x = epochs.get_data(picks="eeg", units="uV")
    models, index = result.explainers()
    assert len(models) == subjects.nunique()  # one per (fold, subject)
    for s in subjects.unique():
        sel = (subjects == s).to_numpy()
        ref = fractional_matrix_power(_mean_cov(x[sel]), -0.5).real
        np.testing.assert_allclose(result.alignment[s][0], ref, rtol=1e-5, atol=1e-7)
        # the layer in front of the explaining model whitens the subject's epochs
        model = models[index[sel][0]]
        assert (index[sel] == index[sel][0]).all()
        with torch.no_grad():
            z = model[0](torch.from_numpy(x[sel]).float()).double().numpy()
        np.testing.assert_allclose(_mean_cov(z), np.eye(x.shape[1]), atol=1e-4)


def test_explaining_models_reproduce_the_out_of_fold_probabilities(aligned_result):
    epochs, result = aligned_result
    models, index = result.explainers()
    x = torch.from_numpy(epochs.get_data(picks="eeg", units="uV")).float()
    proba = np.zeros((len(x), 2))
    for k, model in enumerate(models):
        with torch.no_grad():
            proba[index == k] = model(x[index == k]).softmax(-1).numpy()
    ref = result.predictions[[f"proba_{c}" for c in result.classes]].to_numpy()
    np.testing.assert_allclose(proba, ref, atol=1e-5)


def test_map_of_an_aligned_linear_model_is_analytic(aligned_result):
    epochs, result = aligned_result
    attr = eegsal.attribute(result, epochs, method="saliency", label=0, device="cpu")
    subjects = epochs.metadata["subject"].astype(str).to_numpy()
    fold = result.predictions["fold"].to_numpy()
    shape = attr.data.shape[1:]
    for e in range(0, len(epochs), 7):
        net = result.models[fold[e]]
        std, lin = net[0], net[1][1]
        assert isinstance(std, Standardize)
        w = lin.weight[0].detach().double().numpy().reshape(shape)
        w = w / std.scale.double().numpy()  # d logit / d aligned input
        matrix = result.alignment[subjects[e]][0]
        # logit = <W, (R x - m) / scale>: d logit / dx = R^T (W / scale)
        np.testing.assert_allclose(attr.data[e], matrix.T @ w, rtol=1e-4, atol=1e-6)


def test_aligned_result_saves_and_loads(aligned_result, tmp_path):
    epochs, result = aligned_result
    result.save(tmp_path / "r")
    back = DecodingResult.load(tmp_path / "r", model=linear)
    for s, (matrix, offset) in result.alignment.items():
        np.testing.assert_allclose(back.alignment[s][0], matrix)
        np.testing.assert_allclose(back.alignment[s][1], offset)
    a = eegsal.attribute(result, epochs, method="saliency", label=0, device="cpu")
    b = eegsal.attribute(back, epochs, method="saliency", label=0, device="cpu")
    np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-7)
    # new recordings: each subject aligned with its own epochs
    proba = back.predict_proba(epochs, device="cpu", verbose=False)
    assert np.allclose(proba.sum(1), 1) and proba.shape == (len(epochs), 2)


def test_alignment_changes_what_a_model_sees(aligned_result, _study_session):
    epochs, result = aligned_result
    plain = decode(
        epochs, "content", model=linear, cv=2, max_epochs=2, batch_size=32,
        valid_size=0, seed=0,
    )  # fmt: skip
    assert plain.alignment is None
    assert not np.allclose(
        plain.predictions["proba_" + str(plain.classes[0])],
        result.predictions["proba_" + str(result.classes[0])],
    )


def test_study_config_takes_the_transfer_options():
    from eegsal._config import ConfigError, read_config

    params = {
        "align": "euclidean",
        "n_seeds": 2,
        "augment": {"sign_flip": {"p": 0.5}},
    }
    cfg = read_config({"name": "t", "data": {"simulate": {}},
                       "decode": {"params": params}})  # fmt: skip
    assert cfg["decode"]["params"] == params
    with pytest.raises(ConfigError, match="Did you mean 'align'"):
        read_config({"name": "t", "data": {"simulate": {}},
                     "decode": {"params": {"alignn": "euclidean"}}})  # fmt: skip


def test_transfer_decoder_trains_as_measured_and_a_study_takes_it(_study_session):
    from eegsal._config import read_config
    from eegsal.augmentation import TRANSFER_AUGMENT
    from eegsal.decoding import TRANSFER_DECODER
    from eegsal.models import ShallowConvNet

    epochs, _ = _study_session
    before = copy.deepcopy(TRANSFER_DECODER)
    short = TRANSFER_DECODER | {"max_epochs": 1, "min_epochs": 1}
    result = decode(epochs, "content", cv=2, batch_size=32, seed=0, device="cpu",
                    **short)  # fmt: skip
    result.config["decoder_params"]["augment"]["mixup"]["p"] = 1.0
    assert TRANSFER_DECODER == before  # neither training nor the result's config
    assert result.config["decoder_params"]["lr"] == 6.25e-4
    assert (result.scores["n_epochs_trained"] == 1).all()  # the budget given
    assert sorted(result.alignment) == sorted(epochs.metadata["subject"].unique())
    models, _ = result.explainers()
    nets = [m for m in models[0].modules() if isinstance(m, ShallowConvNet)]
    assert len(nets) == 1  # behind the subject's alignment layer
    net = nets[0]
    # 0.31 s filters and one pooling window over the rest of the epoch
    sfreq = epochs.info["sfreq"]
    assert net.filter_length == round(0.31 * sfreq)
    assert net.pool.kernel_size == (len(epochs.times) - net.filter_length + 1, 1)
    assert TRANSFER_DECODER["augment"] is TRANSFER_AUGMENT
    # a study config names it as its decode section
    params = {k: v for k, v in TRANSFER_DECODER.items() if k != "model"}
    cfg = read_config({"name": "t", "data": {"simulate": {}},
                       "decode": {"model": "shallow", "params": params}})  # fmt: skip
    assert cfg["decode"]["params"] == params
