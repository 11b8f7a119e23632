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


@pytest.mark.parametrize(
    "sfreq, kernel, pool", [(None, 64, 4), (128, 64, 4), (100, 50, 3), (250, 125, 8),
                            (500, 250, 16)],
)  # fmt: skip
def test_kernels_and_pools_are_set_in_seconds(sfreq, kernel, pool):
    # 0.5 s temporal kernels and a 1/32 s pool at every rate; None is 128 Hz
    model = EEGNet(4, 1024, 2, sfreq=sfreq).eval()
    assert model.temporal_conv.kernel_size == (1, kernel)
    assert model.spatial_pool.kernel_size == (1, pool)
    # layers after the first pool see about 32 Hz: their sizes stay in samples
    assert model.separable_depthwise.kernel_size == (1, 16)
    assert model.separable_pool.kernel_size == (1, 8)
    assert model(torch.randn(2, 4, 1024)).shape == (2, 2)
    assert model.classifier.in_features == 16 * (1024 // pool // 8)


def test_published_count_and_sample_overrides():
    # the published rate gives the published model, whichever way it is asked for
    assert _n_params(EEGNet(22, 512, 4, sfreq=128)) == 2484
    assert _n_params(EEGNet(22, 512, 4, sfreq=256, kernel_length=64)) != 2484
    # a kernel in samples overrides the duration (saved results rebuild so)
    model = EEGNet(4, 128, sfreq=500, kernel_length=16)
    assert model.temporal_conv.kernel_size == (1, 16)
    assert EEGNet(4, 64, kernel_s=0.25).temporal_conv.kernel_size == (1, 32)
    with pytest.raises(ValueError, match="n_times >= 128"):
        EEGNet(4, 100, sfreq=500)
    with pytest.raises(ValueError, match="sfreq must be a positive"):
        EEGNet(4, 64, sfreq=0)
