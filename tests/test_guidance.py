"""Training with the maps: masks, RRR, CutOut, consistency, weak localization."""

import mne
import numpy as np
import pytest
import torch

from eegsal.decoding import EEGDecoder
from eegsal.decoding.networks import _build_module
from eegsal.guidance import (
    Guidance,
    _cutout,
    localize_events,
    make_mask,
    std_gradients,
)
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
    rrr = Guidance(mask=mask, weight=1000.0)
    for name, extra in (("plain", {}), ("rrr", dict(guidance=rrr))):
        clf = EEGDecoder(**kw, **extra).fit(X, y)
        xt = torch.from_numpy(X[:64])
        _, grad = std_gradients(clf.module_, xt, None, create_graph=False)
        sq = grad.pow(2).sum(0).numpy()
        share[name] = sq[mask].sum() / sq.sum()
        assert (clf.predict(X) == y).mean() > 0.9, name  # both still learn
    assert share["rrr"] < 0.5 * share["plain"]
    with pytest.raises(ValueError, match="needs Guidance.mask"):
        EEGDecoder(guidance=Guidance(weight=1.0), max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="Guidance.mask must have shape"):
        EEGDecoder(guidance=Guidance(mask=mask[:3], weight=1.0), max_epochs=1).fit(X, y)


def test_rrr_masks_electrodes_of_standardized_subjects_and_refuses_whitened_ones():
    # the toy task above, two subjects with their own channel gains and offsets
    rng = np.random.default_rng(1)
    n, c, t = 128, 6, 64
    y = np.tile(np.repeat(["a", "b"], n // 4), 2)
    groups = np.repeat(["s1", "s2"], n // 2)
    X = rng.standard_normal((n, c, t))
    sign = np.where(y == "a", 1.0, -1.0)[:, None, None]
    X[:, 0:2] += 1.5 * sign
    X[:, 4:6] += 0.8 * sign
    gain, offset = rng.uniform(0.5, 3.0, c), rng.uniform(-5, 5, c)
    X[groups == "s2"] = X[groups == "s2"] * gain[:, None] + offset[:, None]
    X = X.astype(np.float32)
    mask = np.zeros((c, t), bool)
    mask[0:2] = True
    kw = dict(max_epochs=6, min_epochs=6, valid_size=0, lr=3e-3, batch_size=32,
              device="cpu", align="standardize")  # fmt: skip
    rrr = Guidance(mask=mask, weight=1000.0)
    share = {}
    for name, extra in (("plain", {}), ("rrr", dict(guidance=rrr))):
        clf = EEGDecoder(**kw, **extra).fit(X, y, groups)
        sq = 0.0
        for s in ("s1", "s2"):  # the gradient per electrode, through the alignment
            matrix, off = (torch.from_numpy(a).float() for a in clf.alignment_[s])
            x = torch.from_numpy(X[groups == s]).requires_grad_(True)
            logp = clf.module_(matrix @ (x - off[:, None])).log_softmax(-1)
            (grad,) = torch.autograd.grad(logp.sum(), x)
            sq = sq + grad.pow(2).sum(0).numpy()
        share[name] = sq[mask].sum() / sq.sum()
        assert (clf.predict(X, groups) == y).mean() > 0.9, name
    assert share["rrr"] < 0.5 * share["plain"]
    for guidance in (rrr, Guidance(keep_mask=~mask, keep_weight=1.0)):
        with pytest.raises(ValueError, match="align='euclidean' feeds the network"):
            EEGDecoder(**kw | {"align": "euclidean"}, guidance=guidance).fit(
                X, y, groups
            )


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
        **kw, guidance=Guidance(mask=mask, weight=10.0, method="counterfactual")
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
    with pytest.raises(ValueError, match="'Guidance.method'"):
        EEGDecoder(
            guidance=Guidance(mask=mask, weight=1.0, method="ig"), max_epochs=1
        ).fit(X, y)


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


# --- the Guidance and Distillation objects: parameters, checks, deprecated keywords


def test_guidance_parameters_are_the_decoders_for_clone_and_set_params():
    from sklearn.base import clone

    from eegsal.guidance import _DEPRECATED, Distillation

    mask = np.zeros((4, 20), bool)
    mask[:2] = True
    clf = EEGDecoder(
        guidance=Guidance(mask=mask, weight=10.0, method="counterfactual"),
        distillation=Distillation(temperature=2.0, weight=0.3),
        max_epochs=3,
    )
    params = clf.get_params(deep=True)
    assert params["guidance__weight"] == 10.0
    assert params["guidance__method"] == "counterfactual"
    assert params["guidance__mask"] is mask
    assert params["distillation__temperature"] == 2.0
    # each setting is listed once, under its new name only
    assert not set(params) & set(_DEPRECATED)
    assert "guidance__consistency_shift" in params and "distillation__teacher" in params
    # the constructor takes what get_params gives back
    again = EEGDecoder(**clf.get_params(deep=False))
    assert again.get_params(deep=True).keys() == params.keys()
    # clone copies the nested objects; setting the copy leaves the original alone
    copy = clone(clf)
    assert copy.guidance is not clf.guidance and isinstance(copy.guidance, Guidance)
    np.testing.assert_array_equal(copy.guidance.mask, mask)
    assert copy.set_params(guidance__weight=100.0, distillation__weight=0.9) is copy
    assert copy.guidance.weight == 100.0 and copy.distillation.weight == 0.9
    assert clf.guidance.weight == 10.0 and clf.distillation.weight == 0.3
    assert clone(copy).get_params()["guidance__weight"] == 100.0
    # a decoder with no guidance is set from the default object
    plain = EEGDecoder()
    assert plain.get_params()["guidance"] is None
    plain.set_params(guidance__weight=5.0, guidance__mask=mask)
    assert plain.guidance.get_params() == Guidance(weight=5.0, mask=mask).get_params()
    plain.set_params(distillation__temperature=3.0)
    assert plain.distillation.temperature == 3.0 and plain.distillation.teacher is None
    # a whole object and one of its parameters at once: the object, then the value
    plain.set_params(guidance=Guidance(mask=mask), guidance__weight=2.0)
    assert plain.guidance.weight == 2.0 and plain.guidance.method == "gradient"
    with pytest.raises(ValueError, match="Invalid parameter 'guidence'"):
        plain.set_params(guidence__weight=1.0)
    with pytest.raises(ValueError, match="Invalid parameter 'wieght'"):
        plain.set_params(guidance__wieght=1.0)
    assert "weight=10.0" in repr(clf) and "Guidance(" in repr(clf)


@pytest.mark.parametrize(
    "guidance, error, match",
    [
        (dict(weight=-1.0), ValueError,
         r"The 'Guidance.weight' parameter must be in the range \[0, inf\)"),
        (dict(weight="10"), TypeError, "Guidance.weight must be a number"),
        (dict(keep_weight=-0.5), ValueError, "'Guidance.keep_weight'"),
        (dict(consistency_weight=float("nan")), ValueError,
         "'Guidance.consistency_weight'"),
        (dict(consistency_noise=-0.1), ValueError, "'Guidance.consistency_noise'"),
        (dict(consistency_shift=1.5), TypeError,
         "Guidance.consistency_shift must be an int"),
        (dict(consistency_shift=20), ValueError,
         r"'Guidance.consistency_shift' parameter must be in the range \[-19, 19\]"),
        (dict(method="ig"), ValueError,
         "Invalid value for the 'Guidance.method' parameter"),
        (dict(weight=1.0), ValueError, r"Guidance.weight=1.0 > 0 needs Guidance.mask"),
        (dict(keep_weight=1.0), ValueError, "needs Guidance.keep_mask"),
        (dict(mask=np.ones((3, 20)), weight=1.0), ValueError,
         r"Guidance.mask must have shape \(n_channels, n_times\) = \(4, 20\) \(or one "
         r"such mask per epoch\), got \(3, 20\)"),
        (dict(keep_mask=np.ones((4, 21)), keep_weight=1.0), ValueError,
         r"Guidance.keep_mask must have shape .* = \(4, 20\), got \(4, 21\)"),
    ],
)  # fmt: skip
def test_guidance_errors_name_the_parameter(guidance, error, match):
    from eegsal.guidance import check_guidance

    with pytest.raises(error, match=match):
        check_guidance(EEGDecoder(guidance=Guidance(**guidance)), 4, 20)


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(guidance={"weight": 1.0}), TypeError,
         "guidance must be an instance of Guidance or None, got <class 'dict'>"),
        (dict(distillation=0.5), TypeError,
         "distillation must be an instance of Distillation or None"),
        (dict(distillation=dict(temperature=0.0)), ValueError,
         r"The 'Distillation.temperature' parameter must be in the range \(0, inf\)"),
        (dict(distillation=dict(weight=1.5)), ValueError,
         r"The 'Distillation.weight' parameter must be in the range \[0, 1\]"),
        (dict(distillation=dict(weight="a")), TypeError,
         "Distillation.weight must be a number"),
    ],
)  # fmt: skip
def test_decoder_errors_name_the_parameter(params, error, match):
    from eegsal.guidance import Distillation, check_guidance

    if isinstance(params.get("distillation"), dict):
        params = dict(distillation=Distillation(**params["distillation"]))
    with pytest.raises(error, match=match):
        check_guidance(EEGDecoder(**params), 4, 20)


def test_deprecated_keywords_warn_and_build_the_objects():
    from eegsal.guidance import Distillation

    mask = np.zeros((4, 20), bool)
    with pytest.warns(
        FutureWarning,
        match=r"EEGDecoder\(rrr_mask=\.\.\., rrr_weight=\.\.\., "
        r"distill_weight=\.\.\.\) is deprecated in eegsal 0\.1 and will be removed "
        r"in 0\.2; use "
        r"EEGDecoder\(guidance=Guidance\(mask=\.\.\., weight=\.\.\.\), "
        r"distillation=Distillation\(weight=\.\.\.\)\) instead",
    ) as record:
        old = EEGDecoder(rrr_mask=mask, rrr_weight=3.0, distill_weight=0.2)
    assert record[0].filename == __file__  # the warning points at the caller
    new = EEGDecoder(
        guidance=Guidance(mask=mask, weight=3.0), distillation=Distillation(weight=0.2)
    )
    assert old.get_params().keys() == new.get_params().keys()
    for key, value in new.get_params().items():
        if key not in ("guidance", "distillation"):
            assert old.get_params()[key] is value or old.get_params()[key] == value
    with pytest.warns(FutureWarning, match=r"set_params\(guidance__method=\.\.\.\)"):
        assert new.set_params(rrr_method="counterfactual") is new
    assert new.guidance.method == "counterfactual"
    with pytest.warns(FutureWarning, match=r"set_params\(distillation__teacher=\.\.\."):
        EEGDecoder().set_params(teacher=np.zeros((3, 2)))
    with pytest.raises(TypeError, match="got both guidance= and the deprecated "
                       "rrr_weight=, keep_weight="):  # fmt: skip
        EEGDecoder(guidance=Guidance(), rrr_weight=1.0, keep_weight=1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'rrr_weigth'; "
                       "did you mean 'rrr_weight'"):  # fmt: skip
        EEGDecoder(rrr_weigth=1.0)


def test_old_keywords_and_new_objects_train_the_same_decoder():
    from eegsal.guidance import Distillation
    from eegsal.simulate import simulate_sleep_study

    epochs, _ = simulate_sleep_study(
        n_subjects=2, n_epochs=10, epoch_length=1.0, effect_size=0.9, seed=0
    )
    X = epochs.get_data(picks="eeg", units="uV").astype(np.float32)
    y = epochs.metadata["content"].to_numpy()
    c, t = X.shape[1:]
    mask = np.zeros((c, t), bool)
    mask[:4] = True
    teacher = np.random.default_rng(0).standard_normal((len(X), 2)).astype(np.float32)
    old = dict(rrr_mask=mask, rrr_weight=10.0, rrr_method="counterfactual",
               keep_mask=~mask, keep_weight=0.5, consistency_weight=0.1,
               consistency_noise=0.2, consistency_shift=3, teacher=teacher,
               distill_temperature=2.0, distill_weight=0.3)  # fmt: skip
    new = dict(
        guidance=Guidance(mask=mask, weight=10.0, method="counterfactual",
                          keep_mask=~mask, keep_weight=0.5, consistency_weight=0.1,
                          consistency_noise=0.2, consistency_shift=3),
        distillation=Distillation(teacher, temperature=2.0, weight=0.3),
    )  # fmt: skip
    kw = dict(max_epochs=2, batch_size=16, valid_size=0, device="cpu", seed=0)
    with pytest.warns(FutureWarning, match="is deprecated"):
        a = EEGDecoder(**kw, **old).fit(X, y).predict_proba(X)
    b = EEGDecoder(**kw, **new).fit(X, y).predict_proba(X)
    plain = EEGDecoder(**kw).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(b, a, rtol=1e-6)
    assert not np.allclose(b, plain)  # the terms were on
