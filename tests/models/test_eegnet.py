import pytest
import torch

from eegsal.models import EEGNet, get_model_class


def _n_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_eegnet_8_2_matches_published_parameter_count():
    # braindecode's EEGNet(v4) with F1=8, D=2: 22 ch, 512 samples, 4 classes
    assert _n_params(EEGNet(22, 512, 4)) == 2484


@pytest.mark.parametrize("n_chans, n_times", [(19, 400), (64, 128), (3, 33)])
def test_output_and_layer_shapes(n_chans, n_times):
    model = EEGNet(n_chans, n_times, 3).eval()
    seen = {}
    for name in ("temporal_conv", "spatial_conv", "separable_pointwise"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, o.shape)
        )
    out = model(torch.randn(5, n_chans, n_times))
    assert out.shape == (5, 3)
    # the temporal convolution keeps the electrode axis and the time length
    assert seen["temporal_conv"] == (5, 8, n_chans, n_times)
    assert seen["spatial_conv"] == (5, 16, 1, n_times)
    assert seen["separable_pointwise"] == (5, 16, 1, n_times // 4)
    assert "temporal_conv" in EEGNet.channel_layers


def test_registry_and_errors():
    assert get_model_class("eegnet") is EEGNet
    with pytest.raises(ValueError, match="'model' parameter"):
        get_model_class("eeggnet")
    with pytest.raises(ValueError, match="n_times >= 32"):
        EEGNet(4, 16)


def test_max_norm_constraints_hold_in_training_only():
    model = EEGNet(4, 64)
    with torch.no_grad():
        model.classifier.weight.mul_(100)
        model.spatial_conv.weight.mul_(100)
    model.eval()(torch.randn(2, 4, 64))
    assert model.classifier.weight.norm(dim=1).max() > 1  # eval leaves weights alone
    model.train()(torch.randn(2, 4, 64))
    norms = model.classifier.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 0.25))
    spatial = model.spatial_conv.weight.flatten(1).norm(dim=1)
    assert spatial.max() <= 1.0 + 1e-6
