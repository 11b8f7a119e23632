"""Knowledge distillation: the loss, plain training at weight 0, no leakage."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import eegsal.decoding
import eegsal.decoding.cv
from eegsal.decoding import decode
from eegsal.guidance import Distillation, distillation_loss

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

    def spy(base, X, y, g, train, test, classes, per_epoch_mask, teacher=None):
        calls.append((train, test, teacher))
        return fit_fold(base, X, y, g, train, test, classes, per_epoch_mask, teacher)

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
        assert params["distillation"] == dict(teacher=None, temperature=4.0, weight=0.4)
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
