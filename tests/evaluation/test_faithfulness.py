"""Deletion/insertion curves against models whose evidence is known."""

import numpy as np
import pytest
import torch
from torch import nn

from eegsal.attribution import Attributions, attribute
from eegsal.evaluation import curve_auc, faithfulness
from eegsal.evaluation.faithfulness import perturbation_reference


class _CellModel(nn.Module):
    """Logit 1 = the sum of the input over one channel x time cell (logit 0 = 0)."""

    def __init__(self, mask):
        super().__init__()
        self.register_buffer("w", torch.as_tensor(mask, dtype=torch.float32))

    def forward(self, x):
        z = (x * self.w).sum(dim=(1, 2))
        return torch.stack([torch.zeros_like(z), z], dim=1)


def _attr(data, epochs, **params):
    return Attributions(data, epochs.info, epochs.times, metadata=epochs.metadata,
                        method="test", target="logit", label="1", **params)  # fmt: skip


def test_curve_auc_on_hand_made_curves():
    f = np.array([0.0, 0.25, 0.5, 1.0])
    assert curve_auc(f, np.array([1.0, 0.75, 0.5, 0.0])) == pytest.approx(0.5)
    assert curve_auc(f, np.full(4, 2.0)) == pytest.approx(2.0)
    # a drop to 0 after the first quarter: 0.5 * 0.25 * 1
    assert curve_auc(f, np.array([1.0, 0.0, 0.0, 0.0])) == pytest.approx(0.125)


def test_deletion_of_the_true_cell_drops_the_score_first(study):
    epochs, _ = study
    epochs = epochs[:4]
    x = epochs.get_data(units="uV")
    epochs._data = np.abs(epochs._data) + 1e-6  # positive evidence only
    mask = np.zeros(x.shape[1:], bool)
    mask[3, 50:80] = True
    model = _CellModel(mask).eval()
    attr = attribute(model, epochs, method="input_x_gradient", label=1)
    n_patches = x.shape[1] * x.shape[2] // 10
    fc = faithfulness(model, epochs, attr, n_steps=n_patches, patch=(1, 10))
    curves = fc.curves.pivot_table("score", ["ordering", "step"], "epoch")
    start = curves.loc[("attribution", 0)].to_numpy()
    assert (start > 0).all()
    # the three patches of the cell go first: the score is 0 after 3 steps
    np.testing.assert_allclose(curves.loc[("attribution", 3)], 0, atol=1e-4)
    assert (curves.loc[("attribution", 1)].to_numpy() < start).all()
    # a random ordering removes them late: after 3 of 380 patches most is left
    assert (curves.loc[("random", 3)].to_numpy() > 0.5 * start).all()
    assert (fc.auc["gain"] > 0).all() and {"stage", "content"} <= set(fc.auc)
    ins = faithfulness(model, epochs, attr, kind="insertion", n_steps=n_patches,
                       patch=(1, 10))  # fmt: skip
    np.testing.assert_allclose(
        ins.curves.query("ordering == 'attribution' and step == 3")["score"], start,
        rtol=1e-5,
    )  # fmt: skip
    assert (ins.auc["gain"] > 0).all()
    assert "deletion" in repr(fc) and fc.plot() is not None


def test_a_wrong_map_scores_worse_on_the_simulator(study):
    epochs, truth = study
    sel = epochs["content == 'flying'"][:8]
    model = _CellModel(truth.content_mask).eval()  # reads the planted cells
    true = attribute(model, sel, method="input_x_gradient", label=1)
    rng = np.random.default_rng(0)
    wrong = {
        "inverted": _attr(-true.data, sel),
        "random": _attr(rng.standard_normal(true.data.shape), sel),
    }
    kw = dict(n_steps=10, patch=(1, 20), perturbation="mean")
    auc_true = faithfulness(model, sel, true, **kw).auc["auc_attribution"]
    for name, attr in wrong.items():
        auc = faithfulness(model, sel, attr, **kw).auc["auc_attribution"]
        assert auc.mean() > auc_true.mean(), name  # deletes the evidence later


@pytest.mark.parametrize("kind", ["zeros", "mean", "noise", "phase"])
def test_perturbation_references(kind):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 200)) * np.arange(1, 5)[:, None] + 7.0
    ref = perturbation_reference(x, kind, np.random.default_rng(1))
    assert ref.shape == x.shape
    if kind == "zeros":
        assert not ref.any()
    elif kind == "mean":
        np.testing.assert_allclose(ref, x.mean(-1, keepdims=True).repeat(200, -1))
    elif kind == "noise":  # matched mean and variance per channel
        np.testing.assert_allclose(ref.std(-1) / x.std(-1), 1, atol=0.2)
        assert not np.allclose(ref, x)
    else:  # same amplitude spectrum and mean, other timing
        np.testing.assert_allclose(np.abs(np.fft.rfft(ref)), np.abs(np.fft.rfft(x)),
                                   rtol=1e-6, atol=1e-6)  # fmt: skip
        np.testing.assert_allclose(ref.mean(-1), x.mean(-1))
        assert np.abs(np.corrcoef(ref[0, 0], x[0, 0])[0, 1]) < 0.3


def test_faithfulness_errors(study):
    epochs, _ = study
    model = _CellModel(np.ones((len(epochs.ch_names), len(epochs.times)))).eval()
    attr = attribute(model, epochs[:2], method="saliency", label=1)
    with pytest.raises(ValueError, match="pass the explained epochs"):
        faithfulness(model, epochs[:3], attr)
    with pytest.raises(ValueError, match="Invalid value for the 'perturbation'"):
        faithfulness(model, epochs[:2], attr, perturbation="blur")


def test_faithfulness_correlation(study):
    from eegsal.evaluation import faithfulness_correlation

    epochs, truth = study
    sel = epochs["content == 'flying'"][:6]
    model = _CellModel(truth.content_mask).eval()
    # for a linear model the drop of a subset is exactly the input x gradient
    # summed over it: the correlation is 1
    true = attribute(model, sel, method="input_x_gradient", label=1)
    table = faithfulness_correlation(model, sel, true, n_subsets=30)
    np.testing.assert_allclose(table["correlation"], 1.0, atol=1e-6)
    rng = np.random.default_rng(0)
    noise = _attr(rng.standard_normal(true.data.shape), sel)
    assert (
        faithfulness_correlation(model, sel, noise, n_subsets=30)["correlation"]
        .abs()
        .max()
        < 0.6
    )
    # given subsets are used as they are
    subsets = np.tile(np.arange(5), (6, 2, 1))
    with pytest.raises(ValueError, match="subsets must have shape"):
        faithfulness_correlation(model, sel, true, subsets=subsets[:2])


def test_monotonicity_correlation_on_a_linear_model(study):
    from scipy.stats import spearmanr

    from eegsal.evaluation import monotonicity_correlation
    from eegsal.evaluation.faithfulness import patch_cells, patch_sums

    epochs, _ = study
    sel = epochs[:3]
    rng = np.random.default_rng(0)
    w = rng.standard_normal((len(sel.ch_names), len(sel.times)))
    w[rng.random(w.shape) < 0.5] = 0.0  # half the cells carry nothing (tied)
    model = _CellModel(w).eval()  # logit 1 = sum(w * x): zeroing a cell costs w*x
    true = attribute(model, sel, method="input_x_gradient", label=1)
    exact = monotonicity_correlation(model, sel, true, patch=(1, 1),
                                     perturbation="zeros")  # fmt: skip
    np.testing.assert_allclose(exact["correlation"], 1.0, atol=1e-9)
    assert {"stage", "content"} <= set(exact)
    # a random map, on (2, 10) patches set to each channel's mean: against
    # SciPy's Spearman on the analytic effects, (sum over the patch of w * dx)^2
    noise = _attr(rng.standard_normal(true.data.shape), sel)
    table = monotonicity_correlation(model, sel, noise, patch=(2, 10),
                                     perturbation="mean")  # fmt: skip
    x = sel.get_data(units="uV")
    dx = w * (x - x.mean(-1, keepdims=True))
    cells = patch_cells(x[:1].shape, (2, 10))
    flat = np.concatenate([dx.reshape(3, -1), np.zeros((3, 1))], axis=1)
    effect = flat[:, cells].sum(-1) ** 2  # the -1 pads index the appended zero
    mass = patch_sums(np.abs(noise.data), (2, 10))
    ref = [spearmanr(m, e).statistic for m, e in zip(mass, effect, strict=True)]
    np.testing.assert_allclose(table["correlation"], ref, rtol=1e-6, atol=1e-9)
    # the true map still orders the patches better (signs cancel within a
    # patch); the random one only by their size (the last row's are halves)
    on_true = monotonicity_correlation(model, sel, true, patch=(2, 10),
                                       perturbation="mean")["correlation"]  # fmt: skip
    assert on_true.mean() > table["correlation"].mean() + 0.2
    with pytest.raises(ValueError, match="n_samples"):
        monotonicity_correlation(model, sel, true, n_samples=0)
