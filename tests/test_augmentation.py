"""Training augmentation: each transform's defining property, seeding, training."""

import numpy as np
import pytest
import torch
from torch import nn

from eegsal.augmentation import Augmenter, homologous_pairs
from eegsal.decoding import EEGDecoder

SFREQ = 100.0


def batch(n=6, n_chans=4, n_times=200, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(n, n_chans, n_times))).float()
    y = torch.nn.functional.one_hot(torch.arange(n) % 2, 2).float()
    return x, y


def run(spec, x, y, **kw):
    return Augmenter(spec, sfreq=SFREQ, seed=kw.pop("seed", 0), **kw)(x, y)


def test_sign_flip_negates():
    x, y = batch()
    out, y2 = run({"sign_flip": {"p": 1.0}}, x, y)
    np.testing.assert_array_equal(out.numpy(), -x.numpy())
    assert torch.equal(y2, y)
    same, _ = run({"sign_flip": {"p": 0.0}}, x, y)
    assert torch.equal(same, x)


def test_time_shift_is_a_circular_shift_within_max_s():
    x, y = batch()
    out, _ = run({"time_shift": {"p": 1.0, "max_s": 0.1}}, x, y)
    shifts = []
    for a, b in zip(x.numpy(), out.numpy(), strict=True):
        hits = [s for s in range(-10, 11) if np.array_equal(np.roll(a, s, -1), b)]
        assert len(hits) == 1
        shifts += hits
    assert len(set(shifts)) > 1


def test_ft_surrogate_keeps_amplitude_spectra_and_changes_phases():
    x, y = batch()
    out, _ = run({"ft_surrogate": {"p": 1.0}}, x, y)
    fx = np.fft.rfft(x.numpy().astype(np.float64))
    fo = np.fft.rfft(out.numpy().astype(np.float64))
    np.testing.assert_allclose(np.abs(fo), np.abs(fx), rtol=1e-4, atol=1e-4)
    turn = np.angle(fo[..., 1:-1] / fx[..., 1:-1])
    assert np.abs(np.sin(turn)).mean() > 0.3  # phases moved
    # the same turn on every channel: phase relations between channels kept
    np.testing.assert_allclose(np.sin(turn - turn[:, :1]), 0, atol=1e-3)


def test_frequency_shift_moves_a_sinusoid_by_up_to_max_hz():
    t = np.arange(200) / SFREQ  # 2 s: 10 Hz makes whole cycles
    x = torch.from_numpy(np.tile(np.cos(2 * np.pi * 10 * t), (3, 2, 1))).float()
    y = torch.zeros(3, 2)
    out, _ = run({"frequency_shift": {"p": 1.0, "max_hz": 2.0}}, x, y)
    grid = np.arange(-2.0, 2.0, 0.0005)
    for o in out.numpy():
        resid = [np.abs(o[0] - np.cos(2 * np.pi * (10 + df) * t)).max() for df in grid]
        best = int(np.argmin(resid))
        assert resid[best] < 5e-3  # a cosine at 10 + df Hz, df within +-2 Hz
        np.testing.assert_allclose(o[1], o[0], atol=1e-6)  # same shift per channel
    assert not np.allclose(out.numpy(), x.numpy(), atol=0.1)


def test_channel_dropout_zeroes_whole_channels():
    x, y = batch(n=50)
    out, _ = run({"channel_dropout": {"p": 1.0, "p_drop": 0.5}}, x, y)
    zero = (out == 0).all(-1)
    kept = (out == x).all(-1)
    assert (zero | kept).all()
    assert 0.35 < zero.float().mean() < 0.65


def test_homologous_pairs_follow_10_20_numbering():
    names = ["Fp1", "Fp2", "C3", "Cz", "C4", "FC5", "FC6", "TP9", "TP10", "O1"]
    perm = homologous_pairs(names)
    swapped = [names[i] for i in perm]
    assert swapped == [
        "Fp2",
        "Fp1",
        "C4",
        "Cz",
        "C3",
        "FC6",
        "FC5",
        "TP10",
        "TP9",
        "O1",
    ]


def test_channel_symmetry_swaps_hemispheres_and_lateralized_labels():
    names = ["C3", "Cz", "C4", "O1"]
    x, _ = batch(n=3)
    y = torch.eye(3)  # classes left, rest, right
    aug = Augmenter(
        {"channel_symmetry": {"p": 1.0, "labels": {"left": "right"}}},
        ch_names=names,
        classes=["left", "rest", "right"],
    )
    out, y2 = aug(x, y)
    assert torch.equal(out[:, 0], x[:, 2]) and torch.equal(out[:, 2], x[:, 0])
    assert torch.equal(out[:, 1], x[:, 1]) and torch.equal(out[:, 3], x[:, 3])
    assert torch.equal(y2, torch.eye(3)[[2, 1, 0]])  # left <-> right, rest stays
    with pytest.raises(ValueError, match="maps 'left' to 'up'"):
        Augmenter(
            {"channel_symmetry": {"labels": {"left": "up"}}},
            ch_names=names,
            classes=["left", "right"],
        )
    with pytest.raises(ValueError, match="no left/right homologous pair"):
        Augmenter({"channel_symmetry": {}}, ch_names=["Cz", "O1"])


def test_mixup_gives_convex_combinations_with_soft_labels():
    x, _ = batch(n=8)
    y = torch.eye(8)  # one class per epoch: the labels record the weights
    out, soft = run({"mixup": {"p": 1.0, "alpha": 0.4}}, x, y)
    w = soft.numpy()
    assert (w >= 0).all() and np.allclose(w.sum(1), 1)
    assert ((w > 0).sum(1) <= 2).all() and (w.max(1) < 1 - 1e-3).any()
    ref = np.einsum("ij,jct->ict", w, x.numpy())
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_same_seed_same_batches():
    spec = {
        "time_shift": {"p": 0.5},
        "sign_flip": {"p": 0.5},
        "ft_surrogate": {"p": 0.5},
        "frequency_shift": {"p": 0.5},
        "channel_dropout": {"p": 0.5},
        "mixup": {"p": 0.5},
    }
    x, y = batch()
    a, b, c = (Augmenter(spec, sfreq=SFREQ, seed=s) for s in (3, 3, 4))
    for _ in range(3):
        (xa, ya), (xb, yb), (xc, _) = a(x, y), b(x, y), c(x, y)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert not torch.equal(xa, xc)
    assert torch.equal(x, batch()[0])  # the input is left unchanged


def test_unknown_transforms_and_parameters_are_refused():
    with pytest.raises(ValueError, match="unknown transform 'flip'"):
        Augmenter({"flip": {}})
    with pytest.raises(ValueError, match="unknown parameters"):
        Augmenter({"sign_flip": {"q": 1}})
    with pytest.raises(ValueError, match="needs the sampling rate"):
        Augmenter({"time_shift": {}})


def linear(n_chans, n_times, n_classes):
    """A linear model: logits = W vec(x) + b."""
    return nn.Sequential(nn.Flatten(), nn.Linear(n_chans * n_times, n_classes))


def test_training_with_augmentation_runs_and_changes_training(study):
    epochs, _ = study
    X = epochs.get_data(picks="eeg", units="uV").astype(np.float32)
    y = epochs.metadata["content"].to_numpy()
    g = epochs.metadata["subject"].to_numpy()
    names = [epochs.ch_names[i] for i in range(X.shape[1])]
    spec = {
        "time_shift": {"p": 0.5, "max_s": 0.1},
        "sign_flip": {"p": 0.5},
        "ft_surrogate": {"p": 0.5},
        "frequency_shift": {"p": 0.5, "max_hz": 1.0},
        "channel_dropout": {"p": 0.5},
        "channel_symmetry": {"p": 0.5},
        "mixup": {"p": 0.5},
        "cutout": None,
    }
    X, y, g = X[::2], y[::2], g[::2]
    kw = dict(model=linear, sfreq=epochs.info["sfreq"], max_epochs=2,
              batch_size=32, valid_size=0, device="cpu", ch_names=names)  # fmt: skip
    a = EEGDecoder(augment=spec, **kw).fit(X, y, groups=g)
    b = EEGDecoder(augment=spec, **kw).fit(X, y, groups=g)
    plain = EEGDecoder(**kw).fit(X, y, groups=g)
    assert a.n_epochs_trained_ == 2
    pa, pb, pp = (d.predict_proba(X[:20]) for d in (a, b, plain))
    np.testing.assert_allclose(pa, pb, rtol=1e-5, atol=1e-6)  # seeded
    assert not np.allclose(pa, pp, atol=1e-4)  # the batches were augmented
