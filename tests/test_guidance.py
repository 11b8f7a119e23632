"""Training with the maps: masks, RRR, CutOut, consistency, weak localization."""

import mne
import numpy as np
import pytest
import torch

from eegsal.decoding import EEGDecoder
from eegsal.decoding.networks import _build_module
from eegsal.guidance import _cutout, localize_events, make_mask, std_gradients
from eegsal.simulate import FRONTAL, plant_shortcut


def test_make_mask_from_channels_times_and_annotations(study):
    epochs, _ = study
    mask = make_mask(epochs, channels=["Fp1", "O2"], tmin=0.5, tmax=1.0)
    assert mask.shape == (len(epochs.ch_names), len(epochs.times))
    rows = np.flatnonzero(mask.any(1))
    assert [epochs.ch_names[r] for r in rows] == ["Fp1", "O2"]
    cols = epochs.times[mask.any(0)]
    assert cols.min() == pytest.approx(0.5) and cols.max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not EEG channels"):
        make_mask(epochs, channels=["Fp9"])
    # annotations: per epoch, where an annotation overlaps it
    sel = epochs[:3].copy()
    start = sel.events[1, 0] / sel.info["sfreq"] + sel.tmin  # epoch 1's start
    sel.set_annotations(mne.Annotations([start + 0.25], [0.5], ["BAD_eye"]))
    per = make_mask(sel, channels=list(FRONTAL), annotations="BAD_eye")
    assert per.shape == (3, *mask.shape)
    assert not per[0].any() and not per[2].any()
    hit_times = sel.times[per[1].any(0)]
    assert hit_times.min() == pytest.approx(0.25, abs=0.011)
    assert hit_times.max() == pytest.approx(0.75, abs=0.011)


def test_planted_shortcut_is_where_and_when_asked(study):
    epochs, _ = study
    subjects = sorted(epochs.metadata["subject"].unique())[:2]
    ep = plant_shortcut(epochs, value="flying", subjects=subjects, amplitude=40.0)
    diff = ep.get_data(units="uV") - epochs.get_data(units="uV")
    hit = ep.metadata["shortcut"].to_numpy()
    meta = epochs.metadata
    want = (meta["content"] == "flying") & meta["subject"].isin(subjects)
    np.testing.assert_array_equal(hit, want.to_numpy())
    assert np.abs(diff[~hit]).max() == 0
    frontal = np.isin(epochs.ch_names, FRONTAL)
    assert np.abs(diff[hit][:, ~frontal]).max() == 0
    assert diff[hit][:, frontal].max() == pytest.approx(40.0, rel=0.01)


def _module(n_chans=6, n_times=100):
    torch.manual_seed(0)
    return _build_module("eegnet", n_chans, n_times, 2, {}).eval()


def test_cutout_removes_the_most_salient_patch():
    module = _module()
    x = torch.randn(4, 6, 100)
    y = torch.zeros(4, dtype=torch.long)
    out = _cutout(x, module, y, (2, 20), True, torch.Generator().manual_seed(0))
    changed = (out != x).numpy()
    _, grad = std_gradients(module, x, y, create_graph=False)
    sal = (grad * module[0](x)).abs().numpy()
    for e in range(4):
        chans = np.flatnonzero(changed[e].any(1))
        steps = np.flatnonzero(changed[e].any(0))
        assert len(chans) == 2 and len(steps) == 20 and np.ptp(steps) == 19
        # the two most salient channels, and the best 20-sample window on them
        assert set(chans) == set(np.argsort(-sal[e].sum(1))[:2])
        rows = sal[e][chans].sum(0)
        best = np.convolve(rows, np.ones(20), "valid").argmax()
        assert steps[0] == best
    random = _cutout(x, module, y, (2, 20), False, torch.Generator().manual_seed(0))
    assert ((random != x).sum((1, 2)) == 40).all()


def test_rrr_penalty_moves_the_gradient_out_of_the_mask():
    # a toy task readable on channels 0-1 (the shortcut) and on 4-5 (the signal)
    rng = np.random.default_rng(0)
    n, c, t = 128, 6, 64
    y = np.repeat(["a", "b"], n // 2)
    X = rng.standard_normal((n, c, t)).astype(np.float32)
    sign = np.where(y == "a", 1.0, -1.0)[:, None]
    X[:, 0:2] += 1.5 * sign[:, :, None]
    X[:, 4:6] += 0.8 * sign[:, :, None]
    mask = np.zeros((c, t), bool)
    mask[0:2] = True
    kw = dict(max_epochs=6, min_epochs=6, valid_size=0, lr=3e-3, batch_size=32,
              device="cpu")  # fmt: skip
    share = {}
    for name, extra in (("plain", {}), ("rrr", dict(rrr_mask=mask, rrr_weight=1000.0))):
        clf = EEGDecoder(**kw, **extra).fit(X, y)
        xt = torch.from_numpy(X[:64])
        _, grad = std_gradients(clf.module_, xt, None, create_graph=False)
        sq = grad.pow(2).sum(0).numpy()
        share[name] = sq[mask].sum() / sq.sum()
        assert (clf.predict(X) == y).mean() > 0.9, name  # both still learn
    assert share["rrr"] < 0.5 * share["plain"]
    with pytest.raises(ValueError, match="needs rrr_mask"):
        EEGDecoder(rrr_weight=1.0, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="shape"):
        EEGDecoder(rrr_mask=mask[:3], rrr_weight=1.0, max_epochs=1).fit(X, y)


def test_counterfactual_rrr_unlearns_a_shortcut_absent_at_test_time():
    # channels 0-1 carry a bump in every class-"a" training epoch (the shortcut,
    # absent from the test epochs); channels 4-5 carry a weak real signal
    rng = np.random.default_rng(0)
    n, c, t = 128, 6, 64

    def make(shortcut):
        y = np.repeat(["a", "b"], n // 2)
        X = rng.standard_normal((n, c, t)).astype(np.float32)
        X[:, 4:6] += 0.3 * np.where(y == "a", 1.0, -1.0)[:, None, None]
        if shortcut:
            X[y == "a", 0:2] += 3.0
        return X, y

    X, y = make(True)
    X_test, y_test = make(False)
    mask = np.zeros((c, t), bool)
    mask[0:2] = True
    kw = dict(max_epochs=8, min_epochs=8, valid_size=0, lr=3e-3, batch_size=32,
              device="cpu")  # fmt: skip
    plain = EEGDecoder(**kw).fit(X, y)
    fixed = EEGDecoder(
        **kw, rrr_mask=mask, rrr_weight=10.0, rrr_method="counterfactual"
    ).fit(X, y)
    for clf in (plain, fixed):
        assert (clf.predict(X) == y).mean() > 0.9  # both fit the training set
    assert (plain.predict(X_test) == y_test).mean() < 0.7  # it read the shortcut
    assert (fixed.predict(X_test) == y_test).mean() > 0.9  # it reads the signal
    # and its output ignores the masked channels: swap them between epochs
    swapped = X_test.copy()
    swapped[:, 0:2] = X_test[::-1, 0:2]
    moved = np.abs(fixed.predict_proba(swapped) - fixed.predict_proba(X_test))
    assert moved.max() < 0.1
    with pytest.raises(ValueError, match="rrr_method"):
        EEGDecoder(rrr_mask=mask, rrr_weight=1.0, rrr_method="ig", max_epochs=1).fit(
            X, y
        )


class _Energy(torch.nn.Module):
    """Logit 1 = the energy of the channel mean: evidence where the signal is."""

    def __init__(self, n_chans):
        super().__init__()
        self.spatial = torch.nn.Conv2d(1, 1, (n_chans, 1), bias=False)
        torch.nn.init.constant_(self.spatial.weight, 1.0 / n_chans)

    def forward(self, x):
        a = self.spatial(x[:, None])  # (batch, 1, 1, times)
        z = (a * a).mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_weak_localization_recovers_the_event_window():
    rng = np.random.default_rng(0)
    sfreq, n, c = 100.0, 12, 4
    times = np.arange(200) / sfreq
    data = rng.standard_normal((n, c, 200))
    onsets = rng.uniform(0.2, 1.2, n)
    for e, t0 in enumerate(onsets):  # a 0.5 s event, at a different time in each
        data[e, :, (times >= t0) & (times < t0 + 0.5)] += 6.0
    info = mne.create_info(c, sfreq, "eeg")
    events = np.c_[np.arange(n) * 300, np.zeros(n, int), np.ones(n, int)]
    epochs = mne.EpochsArray(data * 1e-6, info, events, verbose=False)
    annots = localize_events(_Energy(c).eval(), epochs, label=1, layer="spatial",
                             description="event")  # fmt: skip
    assert len(annots) == n and set(annots.description) == {"event"}
    iou = []
    for t0, extra in zip(onsets, annots.extras, strict=True):
        lo, hi = max(t0, extra["start"]), min(t0 + 0.5, extra["stop"])
        union = max(t0 + 0.5, extra["stop"]) - min(t0, extra["start"])
        iou.append(max(hi - lo, 0) / union)
    assert np.mean(iou) > 0.7
    # onsets are on the epochs' own clock: event sample / sfreq + start in the epoch
    first = annots.extras[0]
    assert annots.onset[0] == pytest.approx(first["start"])
    assert annots.onset[1] == pytest.approx(3.0 + annots.extras[1]["start"])


def test_cutout_length_in_seconds_at_the_sampling_rate():
    from eegsal.guidance import check_guidance

    clf = EEGDecoder(augment="cutout", cutout=(2, 5), cutout_s=0.3, sfreq=100)
    assert check_guidance(clf, 8, 200)["cutout"] == (2, 30)
    clf.set_params(sfreq=500)
    assert check_guidance(clf, 8, 200)["cutout"] == (2, 150)
    assert check_guidance(clf.set_params(cutout_s=None), 8, 200)["cutout"] == (2, 5)
    with pytest.raises(ValueError, match="cutout_s=0.3 s needs the sampling rate"):
        check_guidance(EEGDecoder(augment="cutout", cutout_s=0.3), 8, 200)
