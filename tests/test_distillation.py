"""Knowledge distillation: the loss, plain training at weight 0, no leakage."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import eegsal.decoding
import eegsal.decoding.cv
from eegsal.decoding import decode
from eegsal.guidance import distillation_loss

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
    distilled = decode(epochs, "content", teacher=tiny_result, distill_weight=0.0,
                       **SMALL)  # fmt: skip
    cols = [f"proba_{c}" for c in plain.classes]
    np.testing.assert_allclose(
        distilled.predictions[cols].to_numpy(),
        plain.predictions[cols].to_numpy(),
        atol=1e-5,
    )
    assert distilled.config["teacher"]["model"] == tiny_result.config["model"]
    moved = decode(epochs, "content", teacher=tiny_result, distill_weight=0.9,
                   distill_temperature=4.0, **SMALL)  # fmt: skip
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
        fitted.append(None if self.teacher is None else np.asarray(self.teacher))
        return fit(self, X, y, groups)

    monkeypatch.setattr(eegsal.decoding.EEGDecoder, "fit", spy_fit)
    # the student's folds differ from the teacher's (3 folds against 2)
    decode(epochs, "content", teacher=tiny_result, **(SMALL | {"cv": 3}))
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
        decode(epochs[:60], "content", teacher=tiny_result, **SMALL)
    with pytest.raises(TypeError, match="DecodingResult"):
        decode(epochs, "content", teacher=np.zeros((len(epochs), 2)), **SMALL)
