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
    # mne.viz's function form scales EEG to µV; the documented keywords undo it
    _, scaled = _ylabel_ylim(mne.viz.plot_evoked(evoked, show=False))
    np.testing.assert_allclose(scaled, ylim * 1e6, rtol=1e-6)
    fig = mne.viz.plot_evoked(evoked, units=dict(eeg=evoked.unit),
                              scalings=dict(eeg=1), show=False)  # fmt: skip
    assert _ylabel_ylim(fig)[0] == "a.u."
    np.testing.assert_allclose(_ylabel_ylim(fig)[1], ylim, rtol=1e-6)
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


def _epochs(attr: Attributions) -> mne.EpochsArray:
    """The same numbers as MNE epochs: the independent reference."""
    return mne.EpochsArray(attr.data.astype(np.float64), attr.info,
                           tmin=attr.times[0], metadata=attr.metadata,
                           verbose=False)  # fmt: skip


@pytest.mark.parametrize(
    "item",
    [3, -1, slice(2, 9, 3), [0, 5, 7], np.arange(N_EPOCHS) % 3 == 0,
     "stage == 'REM'", "stage == 'REM' and subject != 's2'",
     "content.str.startswith('fl')"],
)  # fmt: skip
def test_getitem_and_len_as_epochs(attr, item):
    epochs = _epochs(attr)
    assert len(attr) == len(epochs) == N_EPOCHS
    sub, ref = attr[item], epochs[item]
    assert len(sub) == len(ref)
    np.testing.assert_allclose(sub.data, ref.get_data(), rtol=1e-6)
    pd.testing.assert_frame_equal(sub.metadata, ref.metadata.reset_index(drop=True))


def test_getitem_repeats_and_order_as_numpy(attr):
    idx = [5, 1, 1, 0]
    np.testing.assert_array_equal(attr[idx].data, attr.data[idx])
    assert list(attr[idx].metadata["stage"]) == list(attr.metadata["stage"][idx])
    with pytest.raises(IndexError):
        attr[N_EPOCHS]


def test_iter_as_epochs(attr):
    maps = list(attr)
    assert len(maps) == N_EPOCHS and all(isinstance(m, np.ndarray) for m in maps)
    np.testing.assert_allclose(np.stack(maps), np.stack(list(_epochs(attr))), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [{}, dict(picks=["O2", "Fp1"]), dict(picks="eeg"), dict(picks=[0, 3]),
     dict(item="stage == 'N2'"), dict(item=[4, 2]), dict(tmin=0.0, tmax=0.08),
     dict(tmin=0.013, tmax=0.1),
     dict(picks=["C4"], item=slice(1, None), tmin=-0.02)],
)  # fmt: skip
def test_get_data_as_epochs(attr, kwargs):
    got = attr.get_data(**kwargs)
    np.testing.assert_allclose(got, _epochs(attr).get_data(**kwargs), rtol=1e-6)
    got[:] = 0  # a copy, as Epochs.get_data's default
    assert np.abs(attr.data).max() > 0


def test_copy_shares_nothing(attr):
    dup = attr.copy()
    np.testing.assert_array_equal(dup.data, attr.data)
    dup.data[0] = 0
    dup.metadata.loc[0, "stage"] = "W"
    dup.info["bads"] = ["O1"]
    dup.params["n_steps"] = 99
    assert np.abs(attr.data[0]).max() > 0
    assert attr.metadata.loc[0, "stage"] == "N2"
    assert attr.info["bads"] == [] and attr.params["n_steps"] == 3
    assert repr(dup) == repr(attr)


@pytest.mark.parametrize(
    "tmin, tmax, include_tmax",
    [(0.0, 0.1, True), (0.0, 0.1, False), (None, 0.0, True), (0.031, None, True)],
)
def test_crop_as_epochs(attr, tmin, tmax, include_tmax):
    ref = _epochs(attr).crop(tmin, tmax, include_tmax=include_tmax)
    out = attr.crop(tmin, tmax, include_tmax=include_tmax)
    assert out is attr  # in place, as MNE
    np.testing.assert_allclose(attr.times, ref.times)
    np.testing.assert_allclose(attr.data, ref.get_data(), rtol=1e-6)
    np.testing.assert_allclose(attr.to_evoked().times, ref.times)


@pytest.mark.parametrize(
    "picks, exclude",
    [(["O2", "Fp1", "C3"], ()), ("eeg", ["Fp1", "F3"]), ([1, 0], ())],
)
def test_pick_as_epochs(attr, picks, exclude):
    ref = _epochs(attr).pick(picks, exclude=exclude)
    assert attr.pick(picks, exclude=exclude) is attr
    assert attr.ch_names == ref.ch_names
    np.testing.assert_allclose(attr.data, ref.get_data(), rtol=1e-6)
    # positions travel with the channels: a topomap of the picked maps works
    fig = attr.to_evoked().plot_topomap(times=[0.0], show=False)
    assert fig.axes[-1].get_title() == "a.u."
    with pytest.raises(ValueError, match="could not be interpreted"):
        attr.pick(["Oz"])


def test_on_disk_maps_give_the_same_answers(attr, tmp_path):
    from eegsal.attribution import read_attributions

    attr.save(tmp_path / "a.h5")
    lazy = read_attributions(tmp_path / "a.h5", preload=False)
    assert not lazy.preload
    np.testing.assert_array_equal(np.stack(list(lazy)), np.stack(list(attr)))
    kw = dict(picks=["O2", "Fp1"], item="stage == 'REM'", tmin=0.0, tmax=0.05)
    np.testing.assert_array_equal(lazy.get_data(**kw), attr.get_data(**kw))
    dup = lazy.copy().pick(["P4", "F3"]).crop(0.02, 0.1)
    ref = attr.copy().pick(["P4", "F3"]).crop(0.02, 0.1)
    np.testing.assert_array_equal(dup.data, ref.data)
    assert dup.preload and not lazy.preload and lazy.data.shape == attr.data.shape


def test_time_only_and_spectral_maps_say_what_is_possible(attr):
    time_only = Attributions(attr.data[:, :1], attr.info, attr.times,
                             method="gradcam", target="logit",
                             spatially_resolved=False)  # fmt: skip
    with pytest.raises(ValueError, match="time-only"):
        time_only.pick(["O1"])
    assert time_only.copy().crop(0.0, 0.05).data.shape == (N_EPOCHS, 1, 6)
    spectral = Attributions(attr.data, attr.info, np.arange(N_TIMES) + 1.0,
                            method="band_occlusion", target="logit",
                            domain="frequency")  # fmt: skip
    with pytest.raises(ValueError, match="over frequencies"):
        spectral.crop(0.0, 0.1)
    assert spectral.copy().pick(["O1"]).data.shape == (N_EPOCHS, 1, N_TIMES)
