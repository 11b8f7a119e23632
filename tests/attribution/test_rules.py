"""DeepLIFT: its maps sum to f(x) - f(baseline) on every model."""

import mne
import numpy as np
import pytest
import torch
from torch import nn

from eegsal.attribution import attribute
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
