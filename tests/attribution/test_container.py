"""The Attributions container against numpy and mne.Epochs doing the same thing."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest

from eegsal.attribution import Attributions

CH_NAMES = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2"]
N_EPOCHS, N_TIMES, SFREQ = 12, 20, 100.0


def _info() -> mne.Info:
    info = mne.create_info(CH_NAMES, SFREQ, "eeg")
    info.set_montage("colin27_1020")
    return info


@pytest.fixture
def attr() -> Attributions:
    """12 epochs x 10 channels x 20 times of values about 0.2 (a.u.), with metadata."""
    rng = np.random.default_rng(0)
    data = rng.normal(0.0, 0.2, (N_EPOCHS, len(CH_NAMES), N_TIMES))
    meta = pd.DataFrame(
        {
            "subject": np.repeat(["s1", "s2", "s3"], 4),
            "stage": ["N2", "REM", "N3", "REM"] * 3,
            "content": rng.choice(["flying", "other"], N_EPOCHS),
        }
    )
    times = np.arange(N_TIMES) / SFREQ - 0.05
    return Attributions(data, _info(), times, metadata=meta, method="saliency",
                        target="logit", n_steps=3)  # fmt: skip


def _ylabel_ylim(fig):
    ax = fig.axes[0]
    return ax.get_ylabel(), np.array(ax.get_ylim())


def test_to_evoked_plots_in_arbitrary_units(attr):
    evoked = attr.to_evoked()
    label, ylim = _ylabel_ylim(evoked.plot(show=False))
    assert label == "a.u."
    # the same values plotted by MNE unscaled, from a plain EvokedArray
    plain = mne.EvokedArray(attr.data.mean(0), attr.info, tmin=attr.times[0])
    fig = plain.plot(units=dict(eeg="a.u."), scalings=dict(eeg=1.0), show=False)
    np.testing.assert_allclose(ylim, _ylabel_ylim(fig)[1], rtol=1e-6)
    mean = attr.data.mean(0)
    assert ylim[0] <= mean.min() and ylim[1] >= mean.max()
    assert np.abs(ylim).max() < 2 * np.abs(mean).max()  # not x 1e6 (µV)
    # topomaps keep the electrode positions and say "a.u." on the colour bar
    fig = evoked.plot_topomap(times=[0.0, 0.1], show=False)
    assert fig.axes[-1].get_title() == "a.u."
    fig = evoked.plot_joint(times=[0.05], show=False)
    assert "a.u." in [ax.get_ylabel() for ax in fig.axes]
    # explicit units and scalings still win, as in MNE
    fig = evoked.plot(units=dict(eeg="x"), scalings=dict(eeg=2.0), show=False)
    label, ylim2 = _ylabel_ylim(fig)
    assert label == "x"
    np.testing.assert_allclose(ylim2, 2 * ylim, rtol=1e-6)
    # the averages by a column, and copies, are the same kind of Evoked
    for evk in attr.average(by="stage").values():
        assert _ylabel_ylim(evk.copy().plot(show=False))[0] == "a.u."
