"""Grad-CAM back-projected through activation patterns (Haufe et al., 2014)."""

import mne
import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from torch import nn

from eegsal.attribution import attribute
from eegsal.models import EEGNet

N_CHANS, N_TIMES = 6, 100
SIGNAL = np.array([1.0, 0.8, 0, 0, 0, 0])  # where the source projects
NOISE = np.array([1.0, 1.0, 1.0, 1.0, 0, 0])  # a shared interference
FILTER = np.array([1.0, 0, -1.0, 0, 0, 0])  # extracts the source, cancels the noise


class _SpatialFilter(nn.Module):
    """One spatial filter, then a fixed read-out over time."""

    def __init__(self):
        super().__init__()
        self.spatial_conv = nn.Conv2d(1, 1, (N_CHANS, 1), bias=False)
        with torch.no_grad():
            self.spatial_conv.weight[:] = torch.tensor(FILTER).reshape(1, 1, -1, 1)
        self.register_buffer("readout", torch.linspace(0.5, 1.5, N_TIMES))

    def forward(self, x):
        s = self.spatial_conv(x.unsqueeze(1))[:, 0, 0]  # (batch, time)
        z = (s * self.readout).mean(-1)
        return torch.stack([-z, z], dim=1)


@pytest.fixture(scope="module")
def haufe_epochs():
    rng = np.random.default_rng(0)
    n = 40
    source = rng.standard_normal((n, 1, N_TIMES))
    interference = 3 * rng.standard_normal((n, 1, N_TIMES))
    x = SIGNAL[:, None] * source + NOISE[:, None] * interference
    x += 0.05 * rng.standard_normal(x.shape)
    info = mne.create_info([f"E{i}" for i in range(N_CHANS)], 100.0, "eeg")
    return mne.EpochsArray(x * 1e-6, info, verbose=False)  # µV in, V stored


def test_pattern_projection_finds_the_source_not_the_filter(haufe_epochs):
    model = _SpatialFilter().eval()
    kw = dict(method="gradcam", label=1, layer="spatial_conv", projection="pattern")
    attr = attribute(model, haufe_epochs, relu=False, **kw)
    assert attr.params["spatially_resolved"] and attr.params["projection"] == "pattern"
    assert attr.data.shape == (len(haufe_epochs), N_CHANS, N_TIMES)
    # independent reference: regression of the data on the filter output
    x = haufe_epochs.get_data(units="uV")
    s = np.einsum("c,nct->nt", FILTER, x).ravel()
    xc = x.transpose(1, 0, 2).reshape(N_CHANS, -1)
    pattern = ((xc - xc.mean(1, keepdims=True)) @ (s - s.mean())) / (
        (s - s.mean()) @ (s - s.mean())
    )
    cam = LayerGradCam(model, model.spatial_conv).attribute(
        torch.from_numpy(x.astype(np.float32)), target=1, relu_attributions=False
    )[:, 0, 0]  # (epochs, time): alpha * s(t)
    expected = pattern[None, :, None] * cam.detach().numpy()[:, None, :]
    np.testing.assert_allclose(attr.data, expected, rtol=1e-4, atol=1e-6)
    # the pattern is the source's topography (Haufe), not the filter: the
    # noise-cancelling channel E2 carries weight in the gradient only
    np.testing.assert_allclose(pattern, SIGNAL, atol=0.02)
    sal = attribute(model, haufe_epochs, method="saliency", label=1)
    grad_ch = np.abs(sal.data).mean(axis=(0, 2))
    proj_ch = np.abs(attr.data).mean(axis=(0, 2))
    assert grad_ch[2] == pytest.approx(grad_ch[0], rel=1e-5)
    assert proj_ch[2] < 0.02 * proj_ch[0]
    # relu keeps the positive part of the same map
    pos = attribute(model, haufe_epochs, **kw)
    np.testing.assert_allclose(pos.data, np.maximum(attr.data, 0), atol=1e-6)


def test_pattern_projection_errors(study):
    epochs, _ = study
    torch.manual_seed(0)
    model = EEGNet(len(epochs.ch_names), len(epochs.times), 2).eval()
    with pytest.raises(ValueError, match="already channels x time"):
        attribute(model, epochs[:2], method="gradcam", label=1, projection="pattern")
    with pytest.raises(ValueError, match="method='gradcam' only"):
        attribute(model, epochs[:2], method="saliency", label=1, projection="pattern")
    with pytest.raises(ValueError, match="Invalid value for the 'projection'"):
        attribute(model, epochs[:2], method="gradcam", label=1, projection="filter")
    attr = attribute(model, epochs[:8], method="gradcam", label=1,
                     layer="spatial_conv", projection="pattern")  # fmt: skip
    assert attr.data.shape == (8, len(epochs.ch_names), len(epochs.times))
    assert attr.plot_topomap([0.5]) is not None
