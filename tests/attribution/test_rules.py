"""DeepLIFT's summation-to-delta and guided backpropagation at every activation."""

import mne
import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, LayerGradCam
from torch import nn

from eegsal.attribution import attribute
from eegsal.attribution._rules import guided_gradient
from eegsal.models import MODELS

#: Small instances of every registered model (a new model must be added here).
SMALL = {
    "eegnet": dict(n_times=64, kernel_length=16),
    "shallow": dict(n_times=80, n_filters=8, filter_length=5, pool_length=20,
                    pool_stride=10),  # fmt: skip
    "deep4": dict(n_times=100, n_filters=(5, 6, 7, 8), filter_length=3,
                  pool_length=2),  # fmt: skip
}
N_CHANS = 6


def _epochs(x: np.ndarray, sfreq: float = 100.0) -> mne.EpochsArray:
    info = mne.create_info(x.shape[1], sfreq, "eeg")
    return mne.EpochsArray(x * 1e-6, info, verbose=False)


def _small_model(name: str, seed: int = 0) -> nn.Module:
    kwargs = dict(SMALL[name])
    torch.manual_seed(seed)
    model = MODELS[name](N_CHANS, kwargs.pop("n_times"), 2, **kwargs)
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():  # BatchNorm that is not the identity
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            module.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
    return model.eval()


@pytest.mark.parametrize("target", ["logit", "contrast"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_deeplift_sums_to_the_output_change_on_every_model(name, target):
    model = _small_model(name)
    n_times = SMALL[name]["n_times"]
    rng = np.random.default_rng(0)
    epochs = _epochs(10.0 * rng.standard_normal((4, N_CHANS, n_times)))
    attr = attribute(model, epochs, method="deeplift", label=1, target=target,
                     device="cpu")  # fmt: skip
    # reference: f(x) - f(0) of the model itself, outputs differenced in float64
    x = torch.from_numpy(epochs.get_data(units="uV").astype(np.float32))
    with torch.no_grad():
        out = model(x).double(), model(torch.zeros_like(x)).double()
    if target == "contrast":  # two classes: logit 1 minus logit 0
        out = tuple(o[:, 1] - o[:, 0] for o in out)
    else:
        out = tuple(o[:, 1] for o in out)
    gain = (out[0] - out[1]).numpy()
    assert np.abs(gain).min() > 1e-3  # the test can see a miss
    total = attr.data.sum(axis=(1, 2), dtype=np.float64)
    # summation-to-delta holds up to float32 rounding (ShallowConvNet's square
    # and log treated as linear missed it by ~50%)
    np.testing.assert_allclose(total, gain, rtol=1e-3, atol=1e-6)
    # the recorded error is that miss (both sums in float64)
    err = attr.metadata["completeness_error"].to_numpy()
    assert np.all(np.abs(err - (total - gain)) <= 1e-5 * np.abs(gain))


class _FunctionalSquare(nn.Module):
    """A squaring written as a function call: invisible to DeepLIFT's rules."""

    def __init__(self):
        super().__init__()
        self.spatial = nn.Conv2d(1, 1, (N_CHANS, 1), bias=False)
        nn.init.constant_(self.spatial.weight, 0.5)

    def forward(self, x):
        z = torch.square(self.spatial(x.unsqueeze(1))).mean(dim=(1, 2, 3))
        return torch.stack([-z, z], dim=1)


def test_deeplift_warns_when_a_nonlinearity_escapes_its_rules():
    rng = np.random.default_rng(1)
    epochs = _epochs(2.0 + rng.standard_normal((3, N_CHANS, 40)))
    with pytest.warns(RuntimeWarning, match="miss summation-to-delta"):
        attr = attribute(_FunctionalSquare(), epochs, method="deeplift", label=1)
    # linear treatment of u^2 from u0 = 0: d/du at the baseline is 0 -> all zero
    assert np.abs(attr.metadata["completeness_error"]).min() > 1.0


class _EluReadout(nn.Module):
    """logit_1 = sum_t v_t ELU(sum_c w_c x[c, t]); logit_0 = 0."""

    def __init__(self, w, v):
        super().__init__()
        self.spatial = nn.Conv2d(1, 1, (len(w), 1), bias=False)
        with torch.no_grad():
            self.spatial.weight[:] = torch.as_tensor(w).reshape(1, 1, -1, 1)
        self.act = nn.ELU()
        self.register_buffer("v", torch.as_tensor(v, dtype=torch.float32))

    def forward(self, x):
        h = self.act(self.spatial(x.unsqueeze(1)))  # (batch, 1, 1, times)
        z = (h[:, 0, 0] * self.v).sum(-1)
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_guided_gradcam_cuts_the_negative_paths_through_an_elu():
    n_times = 50
    w = np.array([1.0, -0.5, 0.25, 0.0, 0.5, -1.0])
    v = np.linspace(-1.0, 1.0, n_times)  # evidence against the class early on
    model = _EluReadout(w, v).eval()
    rng = np.random.default_rng(2)
    epochs = _epochs(rng.standard_normal((3, N_CHANS, n_times)))
    x = epochs.get_data(units="uV").astype(np.float32)
    # by hand: d logit / d x[c, t] = v_t ELU'(u_t) w_c; guided: max(v_t, 0) instead
    u = np.einsum("c,bct->bt", w, x.astype(np.float64))
    d_elu = np.where(u > 0, 1.0, np.exp(u))
    grad = (v * d_elu)[:, None, :] * w[None, :, None]
    guided = (np.maximum(v, 0) * d_elu)[:, None, :] * w[None, :, None]
    got = guided_gradient(model, torch.from_numpy(x), 1).numpy()
    np.testing.assert_allclose(got, guided, rtol=1e-5, atol=1e-7)
    sal = attribute(model, epochs, method="saliency", label=1)
    np.testing.assert_allclose(sal.data, grad, rtol=1e-5, atol=1e-7)
    early = v < 0  # guided backpropagation differs from the gradient there
    assert np.all(got[..., early] == 0) and np.abs(sal.data[..., early]).max() > 0.1
    # guided Grad-CAM = guided gradient x Grad-CAM time course (Captum's)
    gg = attribute(model, epochs, method="guided_gradcam", label=1, layer="spatial")
    cam = LayerGradCam(model, model.spatial).attribute(
        torch.from_numpy(x), target=1, relu_attributions=True
    )
    np.testing.assert_allclose(
        gg.data, guided * cam.detach().numpy()[:, 0], rtol=1e-5, atol=1e-8
    )
    assert np.abs(gg.data[..., early]).max() == 0


class _ReluNet(nn.Module):
    def __init__(self, n_chans, n_times, inplace=False):
        super().__init__()
        self.temporal = nn.Conv2d(1, 4, (1, 5))
        self.act_1 = nn.ReLU(inplace=inplace)
        self.spatial = nn.Conv2d(4, 4, (n_chans, 1))
        self.act_2 = nn.ReLU(inplace=inplace)
        self.out = nn.Linear(4 * (n_times - 4), 3)

    def forward(self, x):
        h = self.act_2(self.spatial(self.act_1(self.temporal(x.unsqueeze(1)))))
        return self.out(h.flatten(1))


def test_guided_gradient_equals_captum_on_a_relu_model_and_unhooks():
    torch.manual_seed(0)
    model = _ReluNet(N_CHANS, 30).eval()
    x = torch.randn(5, N_CHANS, 30)
    cls = torch.tensor([0, 1, 2, 1, 0])
    with pytest.warns(UserWarning, match="Setting backward hooks on ReLU"):
        ref = GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=cls)
    got = guided_gradient(model, x, cls)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
    plain = x.clone().requires_grad_()
    model(plain).gather(1, cls[:, None]).sum().backward()
    assert (got - plain.grad).abs().max() > 1e-3  # ReLU's rule did act
    # in-place ReLUs give the same, and every hook goes, even after an error
    inplace = _ReluNet(N_CHANS, 30, inplace=True).eval()
    inplace.load_state_dict(model.state_dict())
    torch.testing.assert_close(guided_gradient(inplace, x, cls), got)
    with pytest.raises(RuntimeError):
        guided_gradient(inplace, x, 7)  # no output 7
    for m in inplace.modules():
        assert not m._backward_hooks and not m._forward_hooks
    assert inplace.act_1.inplace and inplace.act_2.inplace
