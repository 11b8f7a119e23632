"""Knowledge distillation: the loss, plain training at weight 0, no leakage."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import eegsal.decoding
import eegsal.decoding.cv
from eegsal.decoding import decode
from eegsal.guidance import (
    Distillation,
    distillation_loss,
    explanation_matching_loss,
)

SMALL = dict(cv=2, max_epochs=2, batch_size=32, seed=0, valid_size=0)


@pytest.mark.parametrize("temperature, weight", [(1.0, 0.5), (4.0, 0.3), (2.5, 1.0)])
def test_distillation_loss_against_a_hand_computation(temperature, weight):
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(5, 3, generator=gen)
    teacher = torch.randn(5, 3, generator=gen) * 3
    y = torch.tensor([0, 2, 1, 1, 0])
    hard = F.cross_entropy(student, y)
    got = distillation_loss(student, teacher, hard, temperature=temperature,
                            weight=weight)  # fmt: skip
    # torch's reference: KL(p || q) with q as log-probabilities, p as probabilities
    ref_kl = F.kl_div(
        F.log_softmax(student / temperature, -1),
        F.softmax(teacher / temperature, -1),
        reduction="batchmean",
    )
    # by hand, in float64 numpy
    s, t = (
        student.double().numpy() / temperature,
        teacher.double().numpy() / temperature,
    )
    log_q = s - np.log(np.exp(s).sum(1, keepdims=True))
    log_p = t - np.log(np.exp(t).sum(1, keepdims=True))
    kl = (np.exp(log_p) * (log_p - log_q)).sum(1).mean()
    np.testing.assert_allclose(float(ref_kl), kl, rtol=1e-5)
    expected = (1 - weight) * float(hard) + weight * temperature**2 * kl
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    # log-probabilities of the teacher give the same loss as its logits
    shifted = F.log_softmax(teacher, -1)
    again = distillation_loss(student, shifted, hard, temperature=temperature,
                              weight=weight)  # fmt: skip
    np.testing.assert_allclose(float(again), float(got), rtol=1e-5)


def test_weight_zero_is_plain_training(tiny_result, study):
    epochs, _ = study
    plain = decode(epochs, "content", **SMALL)
    distilled = decode(epochs, "content",
                       distillation=Distillation(tiny_result, weight=0.0),
                       **SMALL)  # fmt: skip
    cols = [f"proba_{c}" for c in plain.classes]
    np.testing.assert_allclose(
        distilled.predictions[cols].to_numpy(),
        plain.predictions[cols].to_numpy(),
        atol=1e-5,
    )
    assert distilled.config["teacher"]["model"] == tiny_result.config["model"]
    moved = decode(epochs, "content",
                   distillation=Distillation(tiny_result, weight=0.9, temperature=4.0),
                   **SMALL)  # fmt: skip
    assert not np.allclose(
        moved.predictions[cols].to_numpy(), plain.predictions[cols].to_numpy()
    )


def test_no_student_sees_the_teacher_on_its_test_epochs(
    tiny_result, study, monkeypatch
):
    epochs, _ = study
    teacher_proba = tiny_result.predictions[
        [f"proba_{c}" for c in tiny_result.classes]
    ].to_numpy()
    oof_logits = np.log(teacher_proba).astype(np.float32)
    calls = []
    fit_fold = eegsal.decoding.cv._fit_fold

    def spy(base, X, y, g, train, test, classes, per_epoch_mask, teacher=None,
            maps=None):  # fmt: skip
        calls.append((train, test, teacher))
        return fit_fold(base, X, y, g, train, test, classes, per_epoch_mask, teacher,
                        maps)  # fmt: skip

    monkeypatch.setattr(eegsal.decoding.cv, "_fit_fold", spy)
    fitted = []
    fit = eegsal.decoding.EEGDecoder.fit

    def spy_fit(self, X, y, groups=None):
        teacher = self.distillation.teacher
        fitted.append(None if teacher is None else np.asarray(teacher))
        return fit(self, X, y, groups)

    monkeypatch.setattr(eegsal.decoding.EEGDecoder, "fit", spy_fit)
    # the student's folds differ from the teacher's (3 folds against 2)
    decode(epochs, "content", distillation=Distillation(tiny_result),
           **(SMALL | {"cv": 3}))  # fmt: skip
    assert len(calls) == len(fitted) == 3
    fold = tiny_result.predictions["fold"].to_numpy()
    for (train, test, _), given in zip(calls, fitted, strict=True):
        assert np.intersect1d(train, test).size == 0
        # exactly the teacher's out-of-fold logits of the training epochs
        np.testing.assert_allclose(given, oof_logits[train], rtol=1e-6)
        assert len(given) == len(train)
        # none of them is the teacher's prediction of a test epoch
        for row in oof_logits[test]:
            assert not np.isclose(given, row, rtol=0, atol=1e-7).all(1).any()
        # each came from the teacher model that was tested on it
        assert (fold[train] >= 0).all()


def test_teacher_must_come_from_the_same_epochs(tiny_result, study):
    epochs, _ = study
    with pytest.raises(ValueError):
        decode(epochs[:60], "content", distillation=Distillation(tiny_result), **SMALL)
    with pytest.raises(TypeError, match="DecodingResult"):
        decode(epochs, "content", distillation=Distillation(np.zeros((len(epochs), 2))),
               **SMALL)  # fmt: skip


def test_old_keywords_and_new_objects_decode_the_same(study, tmp_path):
    # decode(): a mask per epoch (each fold its own) and a teacher's out-of-fold
    # targets, by the deprecated keywords and by the objects (a mapping for
    # guidance, as a study config gives it)
    from eegsal.decoding import DecodingResult

    epochs = study[0][::3]  # 40 epochs of 4 subjects
    teacher = decode(epochs, "content", **(SMALL | {"max_epochs": 1}))
    n, c, t = len(epochs), len(epochs.ch_names), len(epochs.times)
    per = np.zeros((n, c, t), bool)
    per[:, :3, : t // 2] = True
    with pytest.warns(FutureWarning, match=r"use decode\(guidance=Guidance\(mask="):
        old = decode(epochs, "content", rrr_mask=per, rrr_weight=20.0,
                     teacher=teacher, distill_weight=0.4, **SMALL)  # fmt: skip
    new = decode(epochs, "content", guidance={"mask": per, "weight": 20.0},
                 distillation=Distillation(teacher, weight=0.4),
                 **SMALL)  # fmt: skip
    cols = [f"proba_{k}" for k in new.classes]
    np.testing.assert_allclose(
        new.predictions[cols].to_numpy(), old.predictions[cols].to_numpy(), rtol=1e-6
    )
    # the settings are kept as mappings (the teacher as config["teacher"]), saved
    # as JSON, and train the same way again
    for result in (old, new):
        params = result.config["decoder_params"]
        assert params["guidance"]["weight"] == 20.0
        assert params["distillation"] == dict(teacher=None, temperature=4.0,
                                              weight=0.4, explanation_weight=0.0,
                                              maps=None)  # fmt: skip
        assert "rrr_weight" not in params and "teacher" not in params
    new.save(tmp_path / "new")
    params = DecodingResult.load(tmp_path / "new").config["decoder_params"]
    np.testing.assert_array_equal(params["guidance"]["mask"], per)
    with pytest.raises(TypeError, match="'wieght' is not a parameter of Guidance; "
                       r"its parameters are .*\. Did you mean 'weight'\?"):  # fmt: skip
        decode(epochs, "content", guidance={"wieght": 1.0}, **SMALL)
    with pytest.raises(TypeError, match="got both distillation= and the deprecated "
                       "teacher="):  # fmt: skip
        decode(epochs, "content", distillation={"weight": 0.1}, teacher=teacher,
               **SMALL)  # fmt: skip


def test_a_result_is_no_teacher_of_a_single_decoder(tiny_result):
    from eegsal.decoding import EEGDecoder

    X = np.zeros((4, 3, 50), np.float32)
    clf = EEGDecoder(distillation=Distillation(tiny_result), max_epochs=1)
    with pytest.raises(TypeError, match=r"a DecodingResult goes to eegsal.decode"):
        clf.fit(X, ["a", "b"] * 2)
    with pytest.raises(ValueError, match=r"Distillation.teacher gives logits of shape"):
        EEGDecoder(distillation=Distillation(np.zeros((3, 2)))).fit(X, ["a", "b"] * 2)


# ----------------------------------------------------------------------------
# Explanation matching


def test_explanation_matching_loss_against_a_hand_computation():
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(4, 3, 10, generator=gen)
    teacher = torch.randn(4, 3, 10, generator=gen)
    s = student.double().numpy().reshape(4, -1)
    t = teacher.double().numpy().reshape(4, -1)
    cos = (s * t).sum(1) / np.linalg.norm(s, axis=1) / np.linalg.norm(t, axis=1)
    got = explanation_matching_loss(student, teacher)
    np.testing.assert_allclose(float(got), (1 - cos).mean(), rtol=1e-5)
    # scale-free in each epoch; 0 for the same maps, 2 for opposite ones
    scaled = student * torch.tensor([0.1, 1.0, 7.0, 300.0])[:, None, None]
    np.testing.assert_allclose(float(explanation_matching_loss(scaled, teacher)),
                               float(got), rtol=1e-5)  # fmt: skip
    same = explanation_matching_loss(teacher, teacher)
    assert float(same) == pytest.approx(0, abs=1e-6)
    assert float(explanation_matching_loss(-teacher, teacher)) == pytest.approx(2)


def _maps_of(module, X, y):
    x = torch.from_numpy(X).requires_grad_(True)
    logits = module.eval()(x).float()
    target = logits.gather(1, torch.from_numpy(y)[:, None]).sum()
    (grad,) = torch.autograd.grad(target, x)
    return grad.numpy()


def _cosines(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_matching_the_teachers_maps_moves_the_students_maps_to_them(study):
    from eegsal.decoding import EEGDecoder

    epochs, _ = study
    X = epochs.get_data(units="uV").astype(np.float32)
    y = epochs.metadata["content"].to_numpy()
    y_idx = np.unique(y, return_inverse=True)[1].astype(np.int64)
    kw = dict(model="eegnet", max_epochs=8, batch_size=32, seed=0, valid_size=0,
              lr=0.005)  # fmt: skip
    teacher = EEGDecoder(**kw | {"model": "shallow"}).fit(X, y).module_
    teacher_maps = _maps_of(teacher, X, y_idx)
    cos = {}
    for w in (0.0, 5.0):
        clf = EEGDecoder(**kw, distillation=Distillation(
            teacher, weight=0.0, explanation_weight=w))  # fmt: skip
        clf.fit(X, y)
        if w:  # in-sample gradients of the teacher module, as computed here
            tol = 1e-6 * np.abs(teacher_maps).max()
            np.testing.assert_allclose(clf.teacher_maps_, teacher_maps, rtol=1e-4,
                                       atol=tol)  # fmt: skip
        cos[w] = _cosines(_maps_of(clf.module_, X, y_idx), teacher_maps).mean()
    # the term is what moves them: plain training leaves the maps far apart
    # (seeds 0, 1, 2: 0.25, 0.60, 0.56 against 0.03, 0.01, 0.06 without)
    assert cos[5.0] > cos[0.0] + 0.1, cos


def test_the_term_enters_through_its_gradient_only(tiny_result, study):
    # zero teacher maps: a constant term (cos = 0), so the same training as
    # output distillation alone, dropout draws included
    epochs, _ = study
    base = decode(epochs, "content",
                  distillation=Distillation(tiny_result, weight=0.5),
                  **SMALL)  # fmt: skip
    X = epochs.get_data(units="uV")
    from eegsal.decoding import EEGDecoder

    y = epochs.metadata["content"].to_numpy()
    kw = dict(model="eegnet", max_epochs=2, batch_size=32, seed=0, valid_size=0)
    logits = np.zeros((len(X), 2), np.float32)
    runs = [
        EEGDecoder(**kw, distillation=Distillation(logits, weight=0.5, **extra))
        .fit(X.astype(np.float32), y).predict_proba(X.astype(np.float32))
        for extra in ({}, dict(explanation_weight=3.0, maps=np.zeros(X.shape)))
    ]
    np.testing.assert_allclose(runs[1], runs[0], atol=1e-5)
    assert base.config["decoder_params"]["distillation"]["explanation_weight"] == 0.0


def test_decode_gives_each_fold_the_teachers_out_of_fold_maps(
    tiny_result, study, monkeypatch
):
    from eegsal import attribute

    epochs, _ = study
    expected = attribute(tiny_result, epochs, method="saliency", target="logit",
                         label="true", verbose=False).data  # fmt: skip
    given = []
    fit = eegsal.decoding.EEGDecoder.fit

    def spy_fit(self, X, y, groups=None):
        given.append((np.asarray(self.distillation.maps), len(y)))
        return fit(self, X, y, groups)

    monkeypatch.setattr(eegsal.decoding.EEGDecoder, "fit", spy_fit)
    calls = []
    fit_fold = eegsal.decoding.cv._fit_fold

    def spy(base, X, y, g, train, test, classes, per_epoch_mask, teacher=None,
            maps=None):  # fmt: skip
        calls.append(train)
        return fit_fold(base, X, y, g, train, test, classes, per_epoch_mask, teacher,
                        maps)  # fmt: skip

    monkeypatch.setattr(eegsal.decoding.cv, "_fit_fold", spy)
    matching = Distillation(tiny_result, explanation_weight=1.0)
    decode(epochs, "content", distillation=matching, **(SMALL | {"max_epochs": 1}))
    assert len(calls) == len(given) == 2
    for train, (maps, n) in zip(calls, given, strict=True):
        assert n == len(train)
        np.testing.assert_allclose(maps, expected[train], rtol=1e-5,
                                   atol=1e-7 * np.abs(expected).max())  # fmt: skip


def test_explanation_matching_bad_input_says_what_to_do(study):
    from eegsal.decoding import EEGDecoder

    epochs, _ = study
    X = epochs.get_data(units="uV").astype(np.float32)
    y = epochs.metadata["content"].to_numpy()
    logits = np.zeros((len(X), 2), np.float32)
    kw = dict(max_epochs=1, batch_size=32, valid_size=0)
    def fit(align=None, **d):
        dist = Distillation(logits, **d)
        clf = EEGDecoder(**kw, align=align, distillation=dist)
        return clf.fit(X, y, epochs.metadata["subject"].to_numpy())

    with pytest.raises(ValueError, match="needs the teacher's maps"):
        fit(explanation_weight=1.0)
    with pytest.raises(ValueError, match="one map per epoch"):
        fit(explanation_weight=1.0, maps=np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="explanation_weight"):
        fit(explanation_weight=-1.0, maps=np.zeros(X.shape))
    with pytest.raises(ValueError, match="aligned student"):
        fit("euclidean", explanation_weight=1.0, maps=np.zeros(X.shape))


def test_decode_computes_the_teachers_maps_itself(tiny_result, study):
    epochs, _ = study
    given = Distillation(tiny_result, explanation_weight=1.0,
                         maps=np.zeros((len(epochs), 19, 200)))  # fmt: skip
    with pytest.raises(ValueError, match="decode computes the teacher's maps"):
        decode(epochs, "content", distillation=given, **SMALL)
