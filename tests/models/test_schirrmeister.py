import numpy as np
import pytest
import torch

from eegsal.models import MODELS, Deep4Net, ShallowConvNet, get_model_class


def _n_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_published_parameter_counts():
    # braindecode's ShallowFBCSPNet and Deep4Net: 22 ch, 1,000 samples, 4 classes
    assert _n_params(ShallowConvNet(22, 1000, 4)) == 46084
    assert _n_params(Deep4Net(22, 1000, 4)) == 282879


@pytest.mark.parametrize(
    "cls, n_times, hooks",
    [
        (
            ShallowConvNet,
            400,
            {"temporal_conv": (3, 40, 376, 19), "spatial_conv": (3, 40, 376, 1)},
        ),
        (
            Deep4Net,
            500,
            {"temporal_conv": (3, 25, 491, 19), "conv_4": (3, 200, 5, 1)},
        ),
    ],
)
def test_shapes_and_electrode_axis(cls, n_times, hooks):
    model = cls(19, n_times, 3).eval()
    seen = {}
    for name in hooks:
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape))
        )
    assert model(torch.randn(3, 19, n_times)).shape == (3, 3)
    assert seen == hooks
    assert model.channel_layers == ("temporal_conv",)


def test_registry_and_short_input_errors():
    assert set(MODELS) == {"eegnet", "shallow", "deep4"}
    assert get_model_class("shallow") is ShallowConvNet
    with pytest.raises(ValueError, match="n_times >= filter_length"):
        ShallowConvNet(4, 50)
    with pytest.raises(ValueError, match="needs more than n_times=440"):
        Deep4Net(4, 440)


@pytest.mark.parametrize("name", ["eegnet", "shallow", "deep4"])
def test_training_loop_can_overfit_a_tiny_set(name):
    from eegsal.decoding import EEGDecoder

    g = torch.Generator().manual_seed(0)
    X = torch.randn(24, 8, 448, generator=g).numpy() * 10
    y = ["a", "b"] * 12  # random data, arbitrary labels: only memorization fits
    clf = EEGDecoder(
        name, max_epochs=60, valid_size=0, lr=3e-3, batch_size=8, seed=0,
        model_params={"drop_prob": 0.0},
    ).fit(X, y)  # fmt: skip
    assert (clf.predict(X) == y).mean() == 1.0


def test_shallow_nonlinearities_are_modules_with_the_published_forward():
    # square and log are modules (for attribution rules) but hold no state: a
    # saved model's keys are unchanged, and the output is the functional formula
    torch.manual_seed(0)
    model = ShallowConvNet(5, 120, 2, filter_length=5, pool_length=10).eval()
    assert set(model.state_dict()) == {
        "temporal_conv.weight", "temporal_conv.bias", "spatial_conv.weight",
        "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
        "bn.num_batches_tracked", "classifier.weight", "classifier.bias",
    }  # fmt: skip
    x = torch.randn(3, 5, 120)
    with torch.no_grad():
        h = model.bn(model.spatial_conv(model.temporal_conv(x.mT.unsqueeze(1))))
        ref = model.classifier(torch.log(torch.clamp(model.pool(h * h), min=1e-6)))
        torch.testing.assert_close(model(x), ref.flatten(1), rtol=0, atol=0)
    hidden = torch.full((1, 1, 1, 2), -3.0)
    assert model.square(hidden).eq(9.0).all()
    logs = model.log(torch.tensor([0.0, 1.0])).tolist()
    assert logs == pytest.approx([np.log(1e-6), 0.0], rel=1e-6)


@pytest.mark.parametrize(
    "sfreq, shallow, deep4",
    [
        (None, (25, 75, 15), (10, 3)),
        (250, (25, 75, 15), (10, 3)),
        (100, (10, 30, 6), (4, 1)),
        (500, (50, 150, 30), (20, 6)),
    ],
)
def test_kernels_and_pools_are_set_in_seconds(sfreq, shallow, deep4):
    # ShallowConvNet: 0.1 s kernel, 0.3 s pool every 0.06 s; Deep4Net's first
    # block: 0.04 s kernel and 0.012 s pool; None is the published 250 Hz
    s = ShallowConvNet(3, 1000, 2, sfreq=sfreq).eval()
    assert s.temporal_conv.kernel_size == (shallow[0], 1)
    assert (s.pool.kernel_size, s.pool.stride) == ((shallow[1], 1), (shallow[2], 1))
    d = Deep4Net(3, 1000, 2, sfreq=sfreq).eval()
    assert d.temporal_conv.kernel_size == (deep4[0], 1)
    assert d.pool_1.kernel_size == (deep4[1], 1)
    # blocks 2-4 see the pooled signal (about 83 Hz): the paper's samples
    assert d.conv_2.kernel_size == (10, 1) and d.pool_4.kernel_size == (3, 1)
    x = torch.randn(2, 3, 1000)
    assert s(x).shape == d(x).shape == (2, 2)


def test_published_counts_at_the_published_rate_and_sample_overrides():
    assert _n_params(ShallowConvNet(22, 1000, 4, sfreq=250)) == 46084
    assert _n_params(Deep4Net(22, 1000, 4, sfreq=250)) == 282879
    # sizes in samples override the durations, in every Deep4 block
    d = Deep4Net(3, 1000, 2, sfreq=500, filter_length=7, pool_length=2)
    assert d.temporal_conv.kernel_size == d.conv_4.kernel_size == (7, 1)
    assert d.pool_1.kernel_size == d.pool_4.kernel_size == (2, 1)
    s = ShallowConvNet(3, 200, 2, sfreq=500, filter_length=5)
    assert s.temporal_conv.kernel_size == (5, 1) and s.pool.kernel_size == (150, 1)


@pytest.mark.parametrize("n_times, sfreq", [(161, 80.0), (281, 80.0), (500, 250.0)])
def test_shallow_pools_the_whole_epoch_with_pool_s_none(n_times, sfreq):
    # one window: the pooled output is the mean square of each filter's signal
    # over every sample the temporal filter leaves, one log band-power each
    torch.manual_seed(0)
    model = ShallowConvNet(5, n_times, 2, sfreq=sfreq, pool_s=None).eval()
    n_valid = n_times - model.filter_length + 1
    assert model.pool.kernel_size == (n_valid, 1)
    x = torch.randn(3, 5, n_times)
    seen = {}
    model.bn.register_forward_hook(lambda m, i, o: seen.__setitem__("bn", o))
    model.log.register_forward_hook(lambda m, i, o: seen.__setitem__("log", o))
    model(x)
    assert seen["log"].shape == (3, 40, 1, 1)
    expected = torch.log(seen["bn"].square().mean(dim=2, keepdim=True).clamp_min(1e-6))
    torch.testing.assert_close(seen["log"], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="n_times >= filter_length"):
        ShallowConvNet(5, model.filter_length - 1, 2, sfreq=sfreq, pool_s=None)
