"""Spectral attributions on a model that reads one band on one channel."""

import mne
import numpy as np
import pytest
import torch
from torch import nn

from eegsal.attribution import attribute_spectrum, read_attributions
from eegsal.stats import fit_lmm

SFREQ, N_TIMES, CHANNEL, BAND = 100.0, 200, 2, (8.0, 12.0)


class _BandPower(nn.Module):
    """Logit 1 = alpha (8-12 Hz) power of channel 2, computed by FFT."""

    def __init__(self):
        super().__init__()
        freqs = np.fft.rfftfreq(N_TIMES, 1 / SFREQ)
        mask = (freqs >= BAND[0]) & (freqs < BAND[1])
        self.register_buffer("mask", torch.from_numpy(mask.astype(np.float32)))

    def forward(self, x):
        power = (torch.fft.rfft(x[:, CHANNEL]).abs() ** 2 * self.mask).sum(-1)
        z = 1e-3 * power
        return torch.stack([-z, z], dim=1)


@pytest.fixture(scope="module")
def noise_epochs():
    rng = np.random.default_rng(0)
    info = mne.create_info(["Fz", "Cz", "Pz", "Oz"], SFREQ, "eeg")
    info.set_montage("colin27_1020")
    x = 1e-5 * rng.standard_normal((12, 4, N_TIMES))
    meta = __import__("pandas").DataFrame({
        "subject": np.repeat(["a", "b", "c"], 4),
        "content": np.tile(["x", "y"], 6),
    })  # fmt: skip
    return mne.EpochsArray(x, info, metadata=meta, verbose=False)


@pytest.mark.parametrize(
    "method", ["amplitude_gradient", "integrated_gradients", "band_occlusion"]
)
def test_mass_falls_on_the_read_band_and_channel(noise_epochs, method):
    model = _BandPower().eval()
    attr = attribute_spectrum(model, noise_epochs, method=method, label=1)
    mag = np.abs(attr.data).sum(0)
    assert attr.domain == "frequency" and attr.data.shape[:2] == (12, 4)
    assert mag[CHANNEL].sum() / mag.sum() > 0.999  # only channel 2
    if method == "band_occlusion":
        assert list(attr.params["bands"]) == ["delta", "theta", "alpha", "sigma",
                                              "beta", "gamma"]  # fmt: skip
        assert mag[CHANNEL].argmax() == 2  # alpha
        np.testing.assert_allclose(attr.freqs[2], 10.0)
    else:
        inside = (attr.freqs >= BAND[0]) & (attr.freqs < BAND[1])
        assert mag[CHANNEL, inside].sum() / mag[CHANNEL].sum() > 0.999
        # d power / d amplitude = 2 * amplitude (times the 1e-3 read-out)
        amp = np.abs(np.fft.rfft(noise_epochs.get_data(units="uV")[:, CHANNEL]))
        if method == "amplitude_gradient":
            np.testing.assert_allclose(attr.data[:, CHANNEL, inside],
                                       2e-3 * amp[:, inside], rtol=1e-4)  # fmt: skip


def test_fourier_ig_is_complete_and_equals_captum(noise_epochs):
    model = _BandPower().eval()
    attr = attribute_spectrum(model, noise_epochs, method="integrated_gradients",
                              label=1, n_steps=64)  # fmt: skip
    x = torch.from_numpy(noise_epochs.get_data(units="uV").astype(np.float32))
    gain = (model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]).detach().numpy()
    np.testing.assert_allclose(attr.data.sum(axis=(1, 2)), gain, rtol=1e-3)
    assert np.abs(attr.metadata["completeness_error"]).max() < 1e-3 * np.abs(gain).max()


def test_spectral_maps_save_and_feed_the_statistics(noise_epochs, tmp_path):
    model = _BandPower().eval()
    attr = attribute_spectrum(model, noise_epochs, label=1)
    attr.save(tmp_path / "spec.h5")
    back = read_attributions(tmp_path / "spec.h5")
    assert back.domain == "frequency"
    np.testing.assert_array_equal(back.freqs, attr.freqs)
    assert "freqs" in repr(back) and "Hz" in repr(back)
    lmm = fit_lmm(back, "content")
    assert lmm.t.shape == (2, 4, len(attr.freqs))
    from eegsal.attribution import Attributions

    over_time = Attributions(attr.data, attr.info, attr.times, method="x", target="y")
    with pytest.raises(AttributeError, match="over time"):
        over_time.freqs  # noqa: B018
    with pytest.raises(ValueError, match="contain no frequency bin"):
        attribute_spectrum(model, noise_epochs, method="band_occlusion", label=1,
                           bands={"slow": (0.1, 0.2)})  # fmt: skip


def test_spectral_plots_say_hertz(noise_epochs):
    attr = attribute_spectrum(_BandPower().eval(), noise_epochs, label=1)
    fig = attr.plot_image(absolute=True)
    assert fig.axes[0].get_xlabel() == "frequency (Hz)"
    fig = attr.plot_topomap([10.0, 20.0])
    assert fig.axes[0].get_title().endswith("Hz")


def test_band_maps_are_drawn_band_by_band(noise_epochs):
    from eegsal.attribution import Attributions
    from eegsal.stats import fit_lmm

    centres = np.array([2.25, 6.0, 10.0, 14.0])  # irregular, as band centres
    data = np.broadcast_to(np.arange(1.0, 5.0), (12, 4, 4)).copy()
    attr = Attributions(data, noise_epochs.info, centres,
                        metadata=noise_epochs.metadata, method="band_occlusion",
                        target="logit", label="1", domain="frequency")  # fmt: skip
    fig = attr.plot_topomap([6.0, 14.0], absolute=False, window=0.0)
    values = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert np.nanmax(values[0]) == pytest.approx(2.0, rel=0.05)  # the 6 Hz band
    assert np.nanmax(values[1]) == pytest.approx(4.0, rel=0.05)  # the 14 Hz band
    fig = attr.plot_image()  # one labelled column per band
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["2.25", "6", "10", "14"]
    np.testing.assert_allclose(fig.axes[0].images[0].get_array()[0], [1, 2, 3, 4])
    rng = np.random.default_rng(0)
    attr.data = attr.data + rng.standard_normal(attr.data.shape)
    fig = fit_lmm(attr, "content").plot_image("content[T.y]")
    assert fig.axes[0].get_xlabel() == "frequency (Hz)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == labels
