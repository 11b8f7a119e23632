"""SmoothGrad, DeepLIFT, occlusion, Grad-CAM, baselines and targets against Captum."""

import copy

import numpy as np
import pytest
import torch
from captum.attr import DeepLift, LayerGradCam, NoiseTunnel, Occlusion, Saliency
from torch import nn

from eegsal.attribution import attribute
from eegsal.models import EEGNet


@pytest.fixture(scope="module")
def model(_study_session):
    epochs, _ = _study_session
    torch.manual_seed(0)
    return EEGNet(len(epochs.ch_names), len(epochs.times), 2).eval()


def _x(epochs, n=6):
    return torch.from_numpy(epochs.get_data(units="uV")[:n].astype(np.float32))


def test_smoothgrad_equals_captum(model, study):
    epochs, _ = study
    x = _x(epochs)
    attr = attribute(model, epochs[:6], method="smoothgrad", label=1, noise=0.2,
                     n_samples=8, seed=3)  # fmt: skip
    torch.manual_seed(3)
    sd = 0.2 * float(epochs.get_data(units="uV")[:6].astype(np.float32).std())
    ref = NoiseTunnel(Saliency(model)).attribute(
        x.requires_grad_(), nt_type="smoothgrad", nt_samples=8, stdevs=sd, target=1,
        abs=False,
    )  # fmt: skip
    np.testing.assert_allclose(attr.data, ref.detach().numpy(), rtol=1e-4, atol=1e-7)
    assert attr.params["noise"] == 0.2 and attr.sign == "signed"


def test_deeplift_and_occlusion_equal_captum(model, study):
    epochs, _ = study
    x = _x(epochs)
    dl = attribute(model, epochs[:6], method="deeplift", label=0)
    with pytest.warns(UserWarning, match="Setting forward, backward hooks"):
        ref = DeepLift(model).attribute(
            x.clone().requires_grad_(), baselines=x * 0, target=0
        )
    np.testing.assert_allclose(dl.data, ref.detach().numpy(), rtol=1e-4, atol=1e-6)
    occ = attribute(model, epochs[:6], method="occlusion", label=0, window=(1, 50))
    ref = Occlusion(model).attribute(
        x, sliding_window_shapes=(1, 50), strides=(1, 50), baselines=x * 0, target=0
    )
    np.testing.assert_allclose(occ.data, ref.numpy(), rtol=1e-4, atol=1e-6)
    assert occ.params["window"] == [1, 50]


def test_gradcam_at_the_temporal_layer_equals_captum(model, study):
    epochs, _ = study
    x = _x(epochs)
    attr = attribute(model, epochs[:6], method="gradcam", label=1)
    assert attr.params["layer"] == "temporal_conv" and attr.params["spatially_resolved"]
    ref = LayerGradCam(model, model.temporal_conv).attribute(
        x, target=1, relu_attributions=True
    )[:, 0]
    np.testing.assert_allclose(attr.data, ref.detach().numpy(), rtol=1e-4, atol=1e-9)
    assert attr.sign == "positive" and (attr.data >= 0).all()


def test_gradcam_after_spatial_mixing_is_time_only(model, study):
    epochs, _ = study
    attr = attribute(model, epochs[:6], method="gradcam", label=1, layer="spatial_conv")
    assert attr.data.shape == (6, 1, len(epochs.times))
    assert not attr.params["spatially_resolved"]
    assert attr.average().data.shape == (1, len(epochs.times))
    with pytest.raises(ValueError, match="has no electrode axis"):
        attr.plot_topomap([0.5])
    with pytest.raises(ValueError, match="not a layer of"):
        attribute(model, epochs[:2], method="gradcam", label=1, layer="nope")


class _MaskedConv(nn.Module):
    """A 1x1 convolution whose output exists only on one channel x time cell."""

    def __init__(self, n_chans, n_times):
        super().__init__()
        mask = torch.zeros(n_chans, n_times)
        mask[3, 50:80] = 1.0
        self.register_buffer("mask", mask)
        self.conv = nn.Conv2d(1, 4, (1, 1), bias=False)
        nn.init.uniform_(self.conv.weight, 0.5, 1.5)

    def forward(self, x):
        return self.conv(x) * self.mask  # (batch, 4, C, T)


class _OneCell(nn.Module):
    """Only channel 3 between samples 50 and 80 reaches the output."""

    channel_layers = ("temporal_conv",)

    def __init__(self, n_chans, n_times):
        super().__init__()
        self.temporal_conv = _MaskedConv(n_chans, n_times)

    def forward(self, x):
        logit = self.temporal_conv(x.unsqueeze(1)).sum(dim=(1, 2, 3))
        return torch.stack([-logit, logit], dim=1)


class _Linear(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x):
        return torch.einsum("bct,kct->bk", x, self.w)


def test_gradcam_finds_the_cell_that_drives_the_output(study):
    epochs, _ = study
    n_chans, n_times = len(epochs.ch_names), len(epochs.times)
    model = _OneCell(n_chans, n_times)
    # positive input, so that the cell's evidence is positive everywhere in it
    pos = epochs.copy()
    pos._data = np.abs(pos.get_data()) + 1e-6
    attr = attribute(model, pos[:4], method="gradcam", label=1)
    inside = np.zeros((n_chans, n_times), bool)
    inside[3, 50:80] = True
    assert (attr.data[:, inside] > 0).all()
    assert (attr.data[:, ~inside] == 0).all()


def test_baselines_and_completeness(study):
    epochs, _ = study
    n_chans, n_times = len(epochs.ch_names), len(epochs.times)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2, n_chans, n_times, generator=g)
    lin = _Linear(w)
    X = epochs.get_data(units="uV")[:5].astype(np.float32)
    base = np.linspace(-5, 5, n_chans).astype(np.float32)
    ig = attribute(lin, epochs[:5], method="integrated_gradients", label=1,
                   baseline=base, n_steps=5)  # fmt: skip
    np.testing.assert_allclose(
        ig.data, (X - base[:, None]) * w[1].numpy(), rtol=1e-3, atol=1e-4
    )
    # completeness holds, so Captum's convergence delta is ~0 relative to f(x)
    f = np.einsum("bct,ct->b", X - base[:, None], w[1].numpy())
    err = ig.metadata["completeness_error"].to_numpy()
    assert np.all(np.abs(err) <= 1e-3 * np.abs(f) + 1e-3)
    mean = attribute(lin, epochs[:5], method="integrated_gradients", label=1,
                     baseline="mean", n_steps=5)  # fmt: skip
    ref = (X - X.mean(axis=(0, 2))[None, :, None]) * w[1].numpy()
    np.testing.assert_allclose(mean.data, ref, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="baseline must be"):
        attribute(lin, epochs[:5], method="deeplift", label=1, baseline=np.zeros(3))


def test_mean_baseline_of_a_fitted_model_is_the_training_mean(tiny_result, study):
    epochs, _ = study
    n_ch, n_t = len(epochs.ch_names), len(epochs.times)
    # one window over the whole epoch: every cell holds f(x) - f(baseline)
    attr = attribute(tiny_result, epochs, method="occlusion", baseline="mean",
                     window=(n_ch, n_t))  # fmt: skip
    assert attr.params["baseline"] == "mean"
    X = torch.from_numpy(epochs.get_data(units="uV").astype(np.float32))
    fold = tiny_result.predictions["fold"].to_numpy()
    cls = np.searchsorted(tiny_result.classes, tiny_result.predictions["y_true"])
    for k, model in enumerate(tiny_result.models):
        rows = np.flatnonzero(fold == k)
        base = model[0].mean.expand(n_ch, n_t)[None]  # the training channel means
        with torch.no_grad():
            gain = model(X[rows]) - model(base)
        ref = gain[np.arange(len(rows)), cls[rows]].numpy()
        np.testing.assert_allclose(attr.data[rows].mean(axis=(1, 2)), ref,
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
        np.testing.assert_allclose(attr.data[rows].std(axis=(1, 2)), 0, atol=1e-6)


def test_contrast_target_is_the_log_odds_for_two_classes(model, study):
    epochs, _ = study
    x = _x(epochs, 3).requires_grad_()
    attr = attribute(model, epochs[:3], method="saliency", target="contrast", label=1)
    out = model(x)
    (out[:, 1] - out[:, 0]).sum().backward()
    np.testing.assert_allclose(attr.data, x.grad.numpy(), rtol=1e-4, atol=1e-8)


class _GuidedElu(torch.autograd.Function):
    """ELU whose backward passes only positive gradients (the guided rule)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return nn.functional.elu(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return (grad * torch.where(x > 0, 1.0, torch.exp(x))).clamp(min=0)


class _GuidedEluModule(nn.Module):
    def forward(self, x):
        return _GuidedElu.apply(x)


def test_guided_gradcam_gives_a_later_layer_its_electrodes(model, study):
    epochs, _ = study
    x = _x(epochs)
    attr = attribute(model, epochs[:6], method="guided_gradcam", label=1,
                     layer="spatial_conv")  # fmt: skip
    assert attr.data.shape == x.shape and attr.params["spatially_resolved"]
    cam = LayerGradCam(model, model.spatial_conv).attribute(
        x, target=1, relu_attributions=True
    )
    cam = nn.functional.interpolate(cam[:, 0], size=x.shape[-1], mode="linear")
    # reference guided gradient: a copy of EEGNet whose ELUs are guided functions
    guided_model = copy.deepcopy(model)
    for name in ("spatial_act", "separable_act"):
        assert isinstance(getattr(guided_model, name), nn.ELU)
        setattr(guided_model, name, _GuidedEluModule())
    xg = x.clone().requires_grad_()
    guided_model(xg)[:, 1].sum().backward()
    ref = xg.grad * cam
    np.testing.assert_allclose(attr.data, ref.detach().numpy(), rtol=1e-4, atol=1e-9)
    # the guided rule acts: Captum's GuidedBackprop (ReLUs only) is the gradient
    xs = x.clone().requires_grad_()
    model(xs)[:, 1].sum().backward()
    plain = (xs.grad * cam).detach().numpy()
    assert np.abs(attr.data - plain).max() > 0.1 * np.abs(plain).max()
    # time-only Grad-CAM, interpolated onto the samples, is the same time course
    t_only = attribute(
        model, epochs[:6], method="gradcam", label=1, layer="spatial_conv"
    )
    np.testing.assert_allclose(t_only.data, cam.detach().numpy(), rtol=1e-5, atol=1e-9)
    fig = attr.plot_topomap([0.5])  # spatially resolved: maps work
    assert fig.axes


def test_occlusion_window_in_seconds(model, study):
    epochs, _ = study  # 100 Hz: 0.2 s is 20 samples
    x = _x(epochs, 3)
    occ = attribute(model, epochs[:3], method="occlusion", label=1, window=(2, 7),
                    window_s=0.2)  # fmt: skip
    ref = Occlusion(model).attribute(
        x, sliding_window_shapes=(2, 20), strides=(2, 20), baselines=x * 0, target=1
    )
    np.testing.assert_allclose(occ.data, ref.numpy(), rtol=1e-4, atol=1e-6)
    assert occ.params["window"] == [2, 20] and occ.params["window_s"] == 0.2
    with pytest.raises(ValueError, match="window_s applies to method='occlusion'"):
        attribute(model, epochs[:3], method="saliency", label=1, window_s=0.2)
