import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import nn

from eegsal.attribution import Attributions, attribute


class Linear(nn.Module):
    """logit_k = sum_ct W[k, c, t] x[c, t] + b_k"""

    def __init__(self, n_chans, n_times, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(2, n_chans, n_times, generator=g))
        self.b = nn.Parameter(torch.tensor([0.5, -0.5]))

    def forward(self, x):
        return torch.einsum("bct,kct->bk", x, self.w) + self.b


def test_linear_model_analytic(study):
    epochs, _ = study
    model = Linear(len(epochs.ch_names), len(epochs.times)).double().float()
    x = epochs.get_data(units="uV").astype(np.float32)
    w = model.w.detach().numpy()
    sal = attribute(model, epochs, method="saliency", label=1)
    np.testing.assert_allclose(sal.data, np.broadcast_to(w[1], x.shape), rtol=1e-6)
    ig = attribute(model, epochs, method="integrated_gradients", label=1, n_steps=8)
    np.testing.assert_allclose(ig.data, x * w[1], rtol=1e-4, atol=1e-4)
    # completeness: sum of IG = f(x) - f(0)
    with torch.no_grad():
        f = model(torch.from_numpy(x))[:, 1] - model.b[1]
    np.testing.assert_allclose(ig.data.sum(axis=(1, 2)), f.numpy(), rtol=1e-3)


@pytest.mark.parametrize(
    "method, reference",
    [
        ("saliency", lambda m, x, t: Saliency(m).attribute(x, target=t, abs=False)),
        ("input_x_gradient", lambda m, x, t: InputXGradient(m).attribute(x, target=t)),
        (
            "integrated_gradients",
            lambda m, x, t: IntegratedGradients(m).attribute(
                x, baselines=x * 0, target=t, n_steps=16
            ),
        ),
    ],
)
def test_equals_direct_captum_call_with_fold_models(
    tiny_result, study, method, reference
):
    epochs, _ = study
    attr = attribute(tiny_result, epochs, method=method, batch_size=17, n_steps=16)
    assert isinstance(attr, Attributions)
    assert attr.data.shape == (len(epochs), len(epochs.ch_names), len(epochs.times))
    assert attr.data.dtype == np.float32 and np.isfinite(attr.data).all()
    X = torch.from_numpy(epochs.get_data(units="uV").astype(np.float32))
    pred = tiny_result.predictions
    for k, model in enumerate(tiny_result.models):
        idx = np.flatnonzero(pred["fold"].to_numpy() == k)[:6]
        target = torch.from_numpy(
            np.searchsorted(tiny_result.classes, pred["y_true"].to_numpy()[idx])
        )
        ref = reference(model.eval(), X[idx].clone().requires_grad_(), target)
        np.testing.assert_allclose(
            attr.data[idx], ref.detach().numpy(), rtol=1e-4, atol=1e-7
        )
    # gradients never leak into the parameters
    for model in tiny_result.models:
        assert all(p.grad is None for p in model.parameters())


def test_probability_target_and_predicted_label(tiny_result, study):
    epochs, _ = study
    model = tiny_result.models[0]
    x = torch.from_numpy(epochs.get_data(units="uV")[:4].astype(np.float32))
    attr = attribute(model, epochs[:4], method="saliency", target="probability",
                     label="predicted")  # fmt: skip
    x.requires_grad_()
    p = model(x).softmax(-1)
    cls = p.argmax(-1)
    p[torch.arange(4), cls].sum().backward()
    np.testing.assert_allclose(attr.data, x.grad.numpy(), rtol=1e-4, atol=1e-8)


def test_container(tiny_result, study):
    epochs, _ = study
    attr = attribute(tiny_result, epochs, method="saliency")
    assert "saliency" in repr(attr) and "signed" in repr(attr)
    evk = attr.average()
    np.testing.assert_allclose(evk.data, attr.data.mean(0, dtype=float), rtol=1e-6)
    assert evk.nave == len(epochs)
    by = attr.average(by="content")
    assert set(by) == {"flying", "other"}
    sub = attr["content == 'flying'"]
    np.testing.assert_allclose(
        by["flying"].data, sub.data.mean(0, dtype=float), rtol=1e-6
    )
    df = attr[:2].to_data_frame()
    assert len(df) == 2 * attr.data.shape[1] * attr.data.shape[2]
    assert {"epoch", "channel", "time", "value", "stage", "content"} <= set(df.columns)
    fig = attr.plot_topomap([0.5, 1.0], by="content")
    assert len(fig.axes) == 2 * 2 + 1  # maps + colour bar
    assert "a.u." in fig.axes[-1].get_ylabel()
    fig = attr.plot_topomap([0.5], mark=["O1", "O2"], absolute=False)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="mark: channels"):
        attr.plot_topomap([0.5], mark=["Oz"])
    with pytest.raises(ValueError, match="must lie within"):
        attr.plot_topomap([5.0])


def test_bad_input(tiny_result, study):
    epochs, _ = study
    with pytest.raises(ValueError, match="'method' parameter"):
        attribute(tiny_result, epochs, method="intgrad")
    with pytest.raises(ValueError, match="label='true' needs"):
        attribute(tiny_result.models[0], epochs, method="saliency")
    with pytest.raises(ValueError, match="pass the epochs given to decode"):
        attribute(tiny_result, epochs[:10])
