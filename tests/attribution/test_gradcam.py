"""Grad-CAM's electrode and time axes come from the model's declaration, not sizes."""

import mne
import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from torch import nn

from eegsal.attribution import attribute
from eegsal.attribution.gradcam import layer_axes
from eegsal.decoding.networks import Standardize
from eegsal.models import MODELS, EEGNet

#: Small instances of every registered model (a new model must be added here);
#: every time length inside them is at least 2.
SMALL = {
    "eegnet": dict(n_times=64, kernel_length=16),
    "shallow": dict(n_times=80, n_filters=8, filter_length=5, pool_length=20,
                    pool_stride=10),  # fmt: skip
    "deep4": dict(n_times=100, n_filters=(5, 6, 7, 8), filter_length=3,
                  pool_length=2),  # fmt: skip
}


def _model(name: str, n_chans: int) -> nn.Module:
    kwargs = dict(SMALL[name])
    torch.manual_seed(0)
    return MODELS[name](n_chans, kwargs.pop("n_times"), 2, **kwargs).eval()


def _outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Output of every declared layer for input ``x``."""
    out, handles = {}, []
    for name in model.grad_cam_layers:
        hook = (lambda n: lambda m, i, o: out.__setitem__(n, o))(name)
        handles.append(getattr(model, name).register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return out


def _epochs(x: np.ndarray) -> mne.EpochsArray:
    info = mne.create_info(x.shape[1], 100.0, "eeg")
    return mne.EpochsArray(x * 1e-6, info, verbose=False)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_declarations_match_the_architecture(name):
    # independent of the declaration: moving one input channel moves only that
    # index of a declared electrode axis; a time-only layer has a size-1 axis
    n_chans, n_times = 5, SMALL[name]["n_times"]
    model = _model(name, n_chans)
    x = torch.randn(1, n_chans, n_times)
    moved = x.clone()
    moved[:, 1] += 1.0
    before, after = _outputs(model, x), _outputs(model, moved)
    for layer, (chan_axis, time_axis) in model.grad_cam_layers.items():
        shape = before[layer].shape
        assert len(shape) == 4 and shape[time_axis] > 1, layer
        if chan_axis is None:
            assert shape[5 - time_axis] == 1, layer
            continue
        assert shape[chan_axis] == n_chans, layer
        diff = (after[layer] - before[layer]).abs().amax(dim=(0, 1, time_axis))
        assert diff[1] > 0 and (diff[[0, 2, 3, 4]] == 0).all(), layer
    assert model.channel_layers == tuple(
        k for k, (c, _) in model.grad_cam_layers.items() if c is not None
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_declared_axes_hold_when_time_steps_equal_the_channels(name):
    n_times = SMALL[name]["n_times"]
    probe = _model(name, 3)
    lengths = {  # time steps of each declared layer (they do not depend on n_chans)
        layer: out.shape[probe.grad_cam_layers[layer][1]]
        for layer, out in _outputs(probe, torch.zeros(1, 3, n_times)).items()
    }
    rng = np.random.default_rng(0)
    for layer, (chan_axis, time_axis) in MODELS[name].grad_cam_layers.items():
        n_chans = lengths[layer]  # as many channels as this layer has time steps
        model = _model(name, n_chans)
        epochs = _epochs(rng.standard_normal((2, n_chans, n_times)))
        x = torch.from_numpy(epochs.get_data(units="uV").astype(np.float32))
        attr = attribute(model, epochs, method="gradcam", layer=layer, label=1,
                         relu=False)  # fmt: skip
        assert attr.params["spatially_resolved"] == (chan_axis is not None), layer
        assert layer_axes(model, layer, x)[1:] == (chan_axis, time_axis), layer
        # reference: Captum's Grad-CAM at the layer, read along the declared axes
        cam = LayerGradCam(model, getattr(model, layer)).attribute(
            x, target=1, relu_attributions=False
        )[:, 0]
        if chan_axis is None:
            cam = cam.reshape(len(x), 1, -1)
        elif chan_axis == 3:
            cam = cam.transpose(1, 2)
        ref = nn.functional.interpolate(cam, size=n_times, mode="linear")
        ref = ref.detach().numpy()
        assert attr.data.shape == ref.shape, layer
        scale = np.abs(ref).max()
        np.testing.assert_allclose(attr.data, ref, rtol=1e-4, atol=1e-5 * scale)


def test_eegnet_64_channels_256_samples_after_spatial_mixing_is_time_only():
    # n_times // 4 == n_chans: 64 time steps at spatial_pool and later layers
    model = EEGNet(64, 256, 2).eval()
    epochs = _epochs(np.random.default_rng(1).standard_normal((2, 64, 256)))
    for layer in ("spatial_pool", "separable_depthwise", "separable_pointwise"):
        attr = attribute(model, epochs, method="gradcam", layer=layer, label=1)
        assert not attr.params["spatially_resolved"], layer
        assert attr.data.shape == (2, 1, 256), layer
    attr = attribute(model, epochs, method="gradcam", layer="temporal_conv", label=1)
    assert attr.params["spatially_resolved"] and attr.data.shape == (2, 64, 256)


def test_layers_a_model_does_not_declare_are_refused():
    x = torch.randn(1, 6, 64)
    model = _model("eegnet", 6)
    epochs = _epochs(x.numpy().astype(np.float64))
    with pytest.raises(ValueError, match=r"declares .* \['temporal_conv', 'temp"):
        attribute(model, epochs, method="gradcam", layer="temporal_pad", label=1)
    with pytest.raises(ValueError, match="choose one of them"):
        layer_axes(_model("shallow", 6), "classifier", torch.randn(1, 6, 80))
    # the declaration is found inside decode()'s Sequential(Standardize, model)
    fitted = nn.Sequential(Standardize(np.zeros(6), np.ones(6)), model).eval()
    assert layer_axes(fitted, "separable_pointwise", x)[1:] == (None, 3)
    assert layer_axes(fitted, "1.temporal_bn", x)[1:] == (2, 3)
    with pytest.raises(ValueError, match="EEGNet declares"):
        layer_axes(fitted, "1.separable_pad", x)


class _Undeclared(nn.Module):
    """Temporal conv, spatial conv, pooling by 4; declares no axes."""

    def __init__(self, n_chans):
        super().__init__()
        self.temporal = nn.Conv2d(1, 2, (1, 5), padding=(0, 2))
        self.spatial = nn.Conv2d(2, 2, (n_chans, 1))
        self.pool = nn.AvgPool2d((1, 4))

    def forward(self, x):
        h = self.pool(self.spatial(self.temporal(x.unsqueeze(1))))
        return h.mean(dim=(2, 3))


def test_an_undeclared_layer_with_ambiguous_axes_is_refused():
    x = torch.randn(2, 8, 32)  # 8 channels; 32 // 4 = 8 time steps at "pool"
    model = _Undeclared(8)
    with pytest.raises(ValueError, match="cannot tell electrodes from time"):
        attribute(model, _epochs(x.numpy().astype(np.float64)), method="gradcam",
                  layer="pool", label=1)  # fmt: skip
    assert layer_axes(model, "temporal", x)[1:] == (2, 3)
    assert layer_axes(model, "spatial", x)[1:] == (None, 3)
    msg = r"cannot tell electrodes from time .*\['temporal', 'spatial'\]"
    with pytest.raises(ValueError, match=msg):
        layer_axes(model, "pool", x)
    # (8, 8) at the temporal layer of a square input: refused too
    with pytest.raises(ValueError, match="both axes have 8 steps"):
        layer_axes(model, "temporal", torch.randn(2, 8, 8))
