"""Manifests -> epochs: real EDF files, a simulated night, and every bad input."""

import logging
import warnings

import mne
import numpy as np
import pandas as pd
import pytest
import yaml
from mne.datasets import eegbci

from eegsal.data import ManifestError, load_manifest, read_manifest
from eegsal.data.loading import _read_raw, expand_recordings
from eegsal.simulate import simulate_night
from tests.conftest import damage_edf, shared_data_or_skip

MANIFESTS = __import__("pathlib").Path(__file__).parents[2] / "data_manifests"


def _manifest(name, **changes):
    spec = yaml.safe_load((MANIFESTS / name).read_text())
    for key, value in changes.items():
        spec[key] = value
    return spec


def test_eegmmidb_manifest_counts_match_the_annotations(tmp_path):
    root = shared_data_or_skip("eegmmidb", "MNE-eegbci-data").parent
    spec = _manifest("eegmmidb_motor.yaml")
    spec["recordings"]["include"] = {"subject": ["001", "002"], "run": ["03", "04"]}
    epochs = load_manifest(spec, root=root, cache_dir=tmp_path)
    assert len(epochs.ch_names) == 64 and epochs.info["sfreq"] == 160.0
    assert epochs.get_montage() is not None and "C3" in epochs.ch_names
    meta = epochs.metadata
    assert {"subject", "recording", "onset", "content", "context", "run"} <= set(meta)
    for subject in (1, 2):
        for run in (3, 4):
            (fname,) = eegbci.load_data(subject, [run], path=root, update_path=False)
            ann = mne.io.read_raw_edf(fname, verbose=False).annotations
            sel = meta[
                (meta["subject"] == f"{subject:03d}") & (meta["run"] == f"{run:02d}")
            ]
            assert (sel["content"] == "left").sum() == (ann.description == "T1").sum()
            assert (sel["content"] == "right").sum() == (ann.description == "T2").sum()
            assert (sel["context"] == ("executed" if run == 3 else "imagined")).all()
            np.testing.assert_allclose(
                sel["onset"], ann.onset[np.isin(ann.description, ["T1", "T2"])]
            )
    # the cache gives the same arrays and table, and is written once
    (cached,) = list(tmp_path.glob("eegmmidb_motor-*/*-epo.fif"))
    again = load_manifest(spec, root=root, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.get_data(), epochs.get_data())
    pd.testing.assert_frame_equal(again.metadata, epochs.metadata)
    assert list(tmp_path.glob("*/*-epo.fif")) == [cached]
    assert not list(tmp_path.glob(".*"))  # no temporary part left behind
    # read lazily: the same epochs, read only when asked for
    lazy = load_manifest(spec, root=root, cache_dir=tmp_path, preload=False)
    assert not lazy.preload
    some = lazy.get_data(item=[3, 40])
    np.testing.assert_array_equal(some, epochs.get_data()[[3, 40]])
    pd.testing.assert_frame_equal(lazy.metadata, epochs.metadata)
    # each recording's epochs are those MNE cuts from it alone (the recordings
    # are cut from one lazy concatenation: no epoch may straddle two of them)
    m = read_manifest(spec, root)
    for rec in expand_recordings(m)[::3]:
        raw = _read_raw(rec, m)
        sel = (meta["recording"] == rec["path"].name).to_numpy()
        onsets = meta.loc[sel, "onset"].to_numpy()
        samples = np.round(onsets * raw.info["sfreq"]).astype(int) + raw.first_samp
        events = np.column_stack([samples, 0 * samples, 1 + 0 * samples])
        direct = mne.Epochs(raw, events, None, *epochs.times[[0, -1]], baseline=None,
                            picks="eeg", verbose=False)  # fmt: skip
        np.testing.assert_array_equal(epochs.get_data()[sel], direct.get_data())
    # another setting is another key
    spec["epochs"]["tmax"] = 2.0
    load_manifest(spec, root=root, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*/*-epo.fif"))) == 2
    uncached = load_manifest(spec, root=root, cache=False)
    assert uncached.times[-1] == 2.0
    # recordings read in 2 processes: the same epochs, in the same order
    parallel = load_manifest(spec, root=root, cache=False, n_jobs=2)
    np.testing.assert_array_equal(parallel.get_data(), uncached.get_data())
    pd.testing.assert_frame_equal(parallel.metadata, uncached.metadata)


@pytest.fixture(scope="module")
def night_edf(tmp_path_factory):
    """A simulated 1-h night with 4 awakenings, exported to EDF+."""
    raw = simulate_night(duration=3600, n_awakenings=4, seed=1)
    folder = tmp_path_factory.mktemp("night")
    mne.export.export_raw(folder / "sub-01_night.edf", raw, fmt="edf", verbose=False)
    return folder, raw


def test_a_simulated_night_comes_back_with_its_stages_and_reports(night_edf, tmp_path):
    folder, raw = night_edf
    scored = load_manifest(
        dict(
            recordings=[dict(path="sub-01_night.edf", subject="01")],
            epochs=dict(mode="scored", hypnogram="annotations", length=30),
        ),
        root=folder,
        cache_dir=tmp_path,
    )
    ann = raw.annotations
    stages = [
        d.removeprefix("Sleep stage ") for d in ann.description if d.startswith("Sleep")
    ]
    assert scored.metadata["stage"].tolist() == stages
    assert len(scored.times) == 30 * 100 and scored.info["sfreq"] == 100.0
    np.testing.assert_allclose(
        scored.get_data()[3], raw.get_data()[:, 90 * 100 : 120 * 100], atol=2e-8
    )
    reports = load_manifest(
        dict(
            recordings=[dict(path="sub-01_night.edf", subject="01")],
            epochs=dict(
                mode="events",
                labels={"Awakening/flying": "flying", "Awakening/other": "other"},
                tmin=-20,
                tmax=0,
                hypnogram="annotations",
                context="stage",
            ),
        ),
        root=folder,
        cache=False,
    )
    awake = [
        (o, d.split("/")[1])
        for o, d in zip(ann.onset, ann.description, strict=True)
        if "Awak" in d
    ]
    assert reports.metadata["content"].tolist() == [label for _, label in awake]
    np.testing.assert_allclose(reports.metadata["onset"], [o for o, _ in awake])
    # the stage before each awakening: the scored epoch that ends there
    starts = ann.onset[[d.startswith("Sleep") for d in ann.description]]
    before = [
        stages[int(np.flatnonzero(np.isclose(starts + 30, o))[0])] for o, _ in awake
    ]
    assert reports.metadata["stage"].tolist() == before


def _raw(n_chans=4, sfreq=100.0, seconds=120, seed=0):
    rng = np.random.default_rng(seed)
    info = mne.create_info(["Fz", "Cz", "Pz", "Oz"][:n_chans], sfreq, "eeg")
    return mne.io.RawArray(
        1e-5 * rng.standard_normal((n_chans, int(sfreq * seconds))), info, verbose=False
    )


@pytest.fixture
def folder(tmp_path):
    """Two FIF recordings, their hypnograms and event tables, and a cache folder."""
    data = tmp_path / "data"
    data.mkdir()
    for i in (1, 2):
        _raw(seed=i).save(data / f"sub-0{i}_raw.fif", verbose=False)
        (data / f"sub-0{i}_hypno.txt").write_text("\n".join(["W", "N2", "N2", "REM"]))
        pd.DataFrame(
            {"onset": [10.0, 40.0, 70.0, 100.0], "label": ["yes", "no", "yes", "no"]}
        ).to_csv(data / f"sub-0{i}_events.csv", index=False)
    return data


def _events_manifest(**epochs):
    spec = dict(
        recordings=dict(
            glob="sub-*_raw.fif",
            match=r"sub-(?P<subject>\d+)_raw",
            events="sub-{subject}_events.csv",
            hypnogram="sub-{subject}_hypno.txt",
        ),
        epochs=dict(
            mode="events",
            labels={"yes": "flying", "no": "other"},
            tmin=-5.0,
            tmax=0.0,
            context="stage",
            length=30,
        ),
    )
    spec["epochs"].update(epochs)
    return spec


def test_event_tables_and_text_hypnograms(folder, tmp_path):
    epochs = load_manifest(_events_manifest(), root=folder, cache_dir=tmp_path / "c")
    meta = epochs.metadata
    assert len(epochs) == 8 and meta["subject"].tolist() == ["01"] * 4 + ["02"] * 4
    assert meta["content"].tolist()[:4] == ["flying", "other", "flying", "other"]
    # windows end at 10, 40, 70, 100 s: their middles lie in epochs 0, 1, 2, 3
    assert meta["stage"].tolist()[:4] == ["W", "N2", "N2", "REM"]
    scored = load_manifest(
        dict(
            recordings=[
                dict(path="sub-01_raw.fif", subject="01", hypnogram="sub-01_hypno.txt")
            ],
            epochs=dict(mode="scored"),
        ),
        root=folder,
        cache=False,
    )
    assert scored.metadata["stage"].tolist() == ["W", "N2", "N2", "REM"]


def _bad(spec, folder, match, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ManifestError, match=match):
        load_manifest(spec, root=folder, cache_dir=cache)
    assert not cache.exists() or not list(cache.iterdir())  # nothing cached


def test_missing_file_and_unknown_format(folder, tmp_path):
    spec = dict(
        recordings=[dict(path="sub-09_raw.fif", subject="09")],
        epochs=dict(mode="scored", hypnogram="annotations"),
    )
    _bad(
        spec, folder, r"recordings\[0\].path: .*sub-09_raw.fif does not exist", tmp_path
    )
    (folder / "sub-01.xyz").write_text("?")
    spec["recordings"][0]["path"] = "sub-01.xyz"
    _bad(spec, folder, "sub-01.xyz: unknown format; give format:", tmp_path)
    spec["recordings"][0]["path"] = "../outside.fif"
    _bad(spec, folder, "outside the data root", tmp_path)


def test_missing_channels_and_sampling_rates(folder, tmp_path):
    spec = _events_manifest()
    spec["preprocessing"] = dict(picks=["Cz", "C3"])
    _bad(
        spec,
        folder,
        r"preprocessing.picks: channels \['C3'\] are not in sub-01_raw.fif",
        tmp_path,
    )
    _raw(seed=2, sfreq=128.0).save(
        folder / "sub-02_raw.fif", overwrite=True, verbose=False
    )
    _bad(
        _events_manifest(),
        folder,
        r"different sampling rates: 100 Hz \(sub-01_raw.fif\), "
        r"128 Hz \(sub-02_raw.fif\); set preprocessing.sfreq",
        tmp_path,
    )
    spec = _events_manifest()
    spec["preprocessing"] = dict(sfreq=100.0)
    assert load_manifest(spec, root=folder, cache=False).info["sfreq"] == 100.0


def test_bad_hypnograms(folder, tmp_path):
    (folder / "sub-02_hypno.txt").write_text("W\nN2")
    _bad(
        _events_manifest(),
        folder,
        r"recordings\[0\].hypnogram: subject '02', sub-02_raw.fif "
        r"\(sub-02_hypno.txt\): 2 stages of 30 s cover 0.02 h but the recording "
        r"lasts 0.03 h; trim the recording or fix the hypnogram",
        tmp_path,
    )
    # a blank line, read as nothing, would shift the later stages by one epoch
    (folder / "sub-02_hypno.txt").write_text("W\nN2\n\nN2\nREM\n")
    _bad(
        _events_manifest(),
        folder,
        r"recordings\[0\].hypnogram: subject '02', sub-02_raw.fif "
        r"\(sub-02_hypno.txt\): 1 blank stages \(line 3\); a "
        r"hypnogram holds one stage per 30-s epoch, .* write the stage on each blank "
        "line",
        tmp_path,
    )
    (folder / "sub-02_hypno.csv").write_text("epoch,stage\n0,W\n1,N2\n2,\n3,REM\n")
    spec = _events_manifest()
    spec["recordings"]["hypnogram"] = "sub-{subject}_hypno.csv"
    (folder / "sub-01_hypno.csv").write_text("stage\nW\nN2\nN2\nREM\n\n\n")
    _bad(spec, folder, r"sub-02_hypno.csv\): 1 blank stages \(line 4\)", tmp_path)
    # blank lines at the end are no stage; '?' marks an unscored epoch
    (folder / "sub-02_hypno.csv").write_text("stage\nW\nN2\n?\nREM\n\n")
    epochs = load_manifest(spec, root=folder, cache=False)
    assert epochs.metadata["stage"].tolist() == ["W", "N2", "N2", "REM", "W", "N2",
                                                 "REM"]  # fmt: skip
    (folder / "sub-02_hypno.txt").write_text("W\nN2\nS9\nREM")
    _bad(
        _events_manifest(),
        folder,
        r"\(sub-02_hypno.txt\): stage codes \['S9'\] \(first at line 3\) have no "
        r"stage: they are not stages of scheme 'aasm' \(N1, N2, N3, REM, W\); map "
        "them with epochs.stages or list them in epochs.ignore_stages",
        tmp_path,
    )


def test_event_windows_outside_the_recording(folder, tmp_path, caplog):
    # an awakening 5 s after the start, with 20 s before it asked for, and one
    # whose window runs past the end (119 + 2 s of a 120-s recording)
    pd.DataFrame({"onset": [5.0, 40.0, 119.0], "label": ["yes", "no", "no"]}).to_csv(
        folder / "sub-02_events.csv", index=False
    )
    spec = _events_manifest(tmin=-20.0, tmax=2.0)
    with caplog.at_level(logging.WARNING, logger="eegsal"):
        epochs = load_manifest(spec, root=folder, cache=False)
    # sub-01's events at 10 s (from -10 s) and sub-02's at 5 and 119 s are left out
    assert epochs.metadata["onset"].tolist() == [40.0, 70.0, 100.0, 40.0]
    assert (
        "sub-02_raw.fif: 2 of 3 event windows (-20 to 2 s around each event) fall "
        "outside the recording (0-120.0 s), the first at 5.00 s; dropped."
    ) in caplog.text
    assert "sub-01_raw.fif: 1 of 4 event windows" in caplog.text
    # the strict reading refuses them
    _bad(
        _events_manifest(tmin=-20.0, tmax=2.0, on_outside="raise"),
        folder,
        r"recordings\[0\].events: 1 event windows of sub-01_raw.fif \(-20 to 2 s "
        r"around each event\) fall outside the recording \(0-120.0 s\), the first "
        r"at 10.00 s; .*or set epochs.on_outside: drop",
        tmp_path,
    )
    # a recording left without events adds none; no recording with any: an error
    _bad(
        _events_manifest(tmin=-200.0),
        folder,
        "epochs: no epochs in any recording",
        tmp_path,
    )


def test_event_onsets_must_be_numbers(folder, tmp_path):
    (folder / "sub-02_events.csv").write_text(
        "onset,label\n10,yes\n,no\n70,yes\nsoon,no\nnan,maybe\n"
    )
    # the blank, 'soon' rows are refused; 'maybe' is ignored, its onset unread
    _bad(
        _events_manifest(ignore_labels=["maybe"]),
        folder,
        r"recordings\[0\].events: sub-02_events.csv: 2 events have no onset \(a "
        r"blank, NaN or non-numeric value; row 2, 4 below the header\); give each "
        "event's onset in s",
        tmp_path,
    )
    (folder / "sub-02_events.csv").write_text("onset,label\n10,yes\n50,no\nnan,maybe\n")
    epochs = load_manifest(
        _events_manifest(ignore_labels=["maybe"]), root=folder, cache=False
    )
    assert np.isfinite(epochs.get_data()).all() and len(epochs) == 4 + 2


def test_bad_events(folder, tmp_path):
    pd.DataFrame({"onset": [10.0, 50.0], "label": ["yes", "maybe"]}).to_csv(
        folder / "sub-02_events.csv", index=False
    )
    _bad(_events_manifest(), folder, r"labels \['maybe'\] have no map", tmp_path)
    kept = load_manifest(
        _events_manifest(ignore_labels=["maybe"]), root=folder, cache=False
    )
    assert len(kept) == 4 + 1  # sub-01's four, sub-02's 'yes'


def test_nan_and_flat_channels(folder, tmp_path):
    raw = _raw(seed=2)
    raw._data[1, 50] = np.nan
    raw.save(folder / "sub-02_raw.fif", overwrite=True, verbose=False)
    _bad(_events_manifest(), folder, r"channels \['Cz'\] hold NaN", tmp_path)
    raw._data[1, 50] = 0.0
    raw._data[3] = 1e-6
    raw.save(folder / "sub-02_raw.fif", overwrite=True, verbose=False)
    _bad(
        _events_manifest(),
        folder,
        r"channels \['Oz'\] are flat .*preprocessing.exclude",
        tmp_path,
    )
    spec = _events_manifest()
    spec["preprocessing"] = dict(exclude=["Oz"])
    assert load_manifest(spec, root=folder, cache=False).ch_names == ["Fz", "Cz", "Pz"]


def test_one_class_subject_is_kept_with_a_warning(folder, caplog):
    pd.DataFrame({"onset": [10.0, 50.0], "label": ["yes", "yes"]}).to_csv(
        folder / "sub-02_events.csv", index=False
    )
    with caplog.at_level(logging.WARNING, logger="eegsal"):
        epochs = load_manifest(_events_manifest(), root=folder, cache=False)
    assert len(epochs) == 6
    assert "subjects ['02'] have one content class only" in caplog.text


def test_manifest_errors_name_the_field(folder, tmp_path):
    spec = _events_manifest()
    spec["epochs"]["lables"] = spec["epochs"].pop("labels")
    _bad(
        spec, folder, r"epochs.lables: unknown field.*Did you mean 'labels'\?", tmp_path
    )
    spec = _events_manifest(tmax=-6.0)
    _bad(spec, folder, r"epochs.tmax \(-6.0\) must be after tmin", tmp_path)
    _bad(dict(recordings=[]), folder, "recordings: none given", tmp_path)
    with pytest.raises(ManifestError, match="no such manifest file"):
        load_manifest(tmp_path / "nope.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("recordings: [\n")
    with pytest.raises(ManifestError, match="bad.yaml: not valid YAML"):
        load_manifest(bad_yaml)


def test_simulated_manifest_is_the_simulator():
    spec = _manifest("simulated_sleep.yaml")
    spec["simulate"].update(n_subjects=2, n_epochs=10, epoch_length=1.0)
    epochs = load_manifest(spec)
    assert len(epochs) == 20 and {"subject", "content", "stage"} <= set(epochs.metadata)
    spec["simulate"]["n_subjectz"] = 3
    with pytest.raises(ManifestError, match="simulate: .*n_subjectz"):
        load_manifest(spec)


@pytest.mark.parametrize(
    "fmt, ext",
    [
        ("brainvision", ".vhdr"),
        ("eeglab", ".set"),
        ("edf", ".edf"),
        ("fif", "_raw.fif"),
    ],
)
def test_every_format_reads_the_same_events(tmp_path, fmt, ext):
    raw = _raw(seconds=60)
    raw.set_annotations(mne.Annotations([10.0, 30.0], [0.0, 0.0], ["yes", "no"]))
    fname = tmp_path / f"sub-01{ext}"
    if fmt == "fif":
        raw.save(fname, verbose=False)
    else:
        with warnings.catch_warnings():  # pybv notes its float32 conversion
            warnings.filterwarnings("ignore", "Encountered data in 'double' format")
            mne.export.export_raw(fname, raw, fmt=fmt, verbose=False)
    pre = "Comment/" if fmt == "brainvision" else ""  # BrainVision marker types
    spec = dict(
        recordings=[dict(path=fname.name, subject="01")],
        epochs=dict(
            labels={f"{pre}yes": "flying", f"{pre}no": "other"}, tmin=-2.0, tmax=2.0
        ),
    )
    epochs = load_manifest(spec, root=tmp_path, cache=False)
    assert epochs.metadata["content"].tolist() == ["flying", "other"]
    expected = raw.get_data()[:, 800:1201]
    # EDF stores 16-bit integers scaled to the range; the others float32 or better
    atol = 2e-9 if fmt == "edf" else 1e-12
    np.testing.assert_allclose(epochs.get_data()[0], expected, atol=atol, rtol=1e-6)


def test_stim_channel_events(tmp_path):
    raw = _raw(seconds=60)
    stim = np.zeros((1, raw.n_times))
    stim[0, [1000, 3000, 4000]] = [1, 2, 7]
    raw.add_channels(
        [mne.io.RawArray(stim, mne.create_info(["STI"], 100.0, "stim"), verbose=False)]
    )
    raw.save(tmp_path / "s_raw.fif", verbose=False)
    spec = dict(
        recordings=[dict(path="s_raw.fif", subject="1")],
        epochs=dict(
            events="stim",
            stim_channel="STI",
            labels={1: "a", 2: "b"},
            tmin=0.0,
            tmax=1.0,
        ),
    )
    with pytest.raises(ManifestError, match=r"trigger codes \['7'\] have no label"):
        load_manifest(spec, root=tmp_path, cache=False)
    spec["epochs"]["ignore_labels"] = [7]
    epochs = load_manifest(spec, root=tmp_path, cache=False)
    assert epochs.metadata["content"].tolist() == ["a", "b"]
    np.testing.assert_allclose(epochs.metadata["onset"], [10.0, 30.0])
    assert "STI" not in epochs.ch_names


def test_bids_dataset(night_edf, tmp_path):
    mne_bids = pytest.importorskip("mne_bids")
    folder, raw = night_edf
    bids_root = tmp_path / "bids"
    for subject in ("01", "02"):
        night = mne.io.read_raw_edf(folder / "sub-01_night.edf", verbose=False)
        bp = mne_bids.BIDSPath(
            subject=subject, task="sleep", datatype="eeg", root=bids_root
        )
        mne_bids.write_raw_bids(night, bp, verbose=False, allow_preload=False)
    spec = dict(
        recordings=dict(bids=dict(root="bids", task="sleep")),
        epochs=dict(mode="scored", hypnogram="annotations"),
    )
    epochs = load_manifest(spec, root=tmp_path, cache=False)
    meta = epochs.metadata
    assert sorted(meta["subject"].unique()) == ["01", "02"]
    assert (meta["task"] == "sleep").all()
    stages = [
        d.removeprefix("Sleep stage ")
        for d in raw.annotations.description
        if d.startswith("Sleep")
    ]
    assert meta.loc[meta["subject"] == "02", "stage"].tolist() == stages
    with pytest.raises(ManifestError, match="is not a BIDS dataset"):
        load_manifest(dict(spec, recordings=dict(bids=dict(root="."))), root=tmp_path)


@pytest.mark.parametrize("name", sorted(p.name for p in MANIFESTS.glob("*.yaml")))
def test_shipped_manifests_are_valid(name, tmp_path):
    from eegsal.data import read_manifest

    m = read_manifest(MANIFESTS / name, root=tmp_path)
    assert m.name == name.removesuffix(".yaml")
    assert m.source in ("files", "simulate")


def test_hypnogram_file_is_aligned_by_its_start_time(folder, tmp_path):
    import datetime

    raw = _raw(seconds=120)
    start = datetime.datetime(2024, 1, 1, 22, 0, tzinfo=datetime.UTC)
    raw.set_meas_date(start)
    raw.save(folder / "sub-03_raw.fif", verbose=False)
    # scored from 30 s before the recording started: the first epoch is dropped
    ann = mne.Annotations([0, 30, 60, 90, 120], [30] * 5,
                          ["Sleep stage W", "Sleep stage 1", "Sleep stage 2",
                           "Sleep stage R", "Sleep stage 3"],
                          orig_time=start - datetime.timedelta(seconds=30))  # fmt: skip
    ann.save(folder / "sub-03_hypno-annot.fif", verbose=False)
    spec = dict(recordings=[dict(path="sub-03_raw.fif", subject="03",
                                 hypnogram="sub-03_hypno-annot.fif")],
                epochs=dict(mode="scored", scheme="rk",
                            stages=dict(S1="N1", S2="N2", S3="N3")))  # fmt: skip
    epochs = load_manifest(spec, root=folder, cache=False)
    assert epochs.metadata["stage"].tolist() == ["N1", "N2", "REM", "N3"]
    np.testing.assert_allclose(epochs.metadata["onset"], [0, 30, 60, 90])


@pytest.mark.parametrize("fmt", ["edf", "bdf"])
def test_damaged_edf_files_are_refused(fmt, tmp_path, caplog):
    raw = _raw(seconds=120)
    onsets = [10.0, 30.0, 50.0, 70.0, 90.0, 110.0]
    raw.set_annotations(mne.Annotations(onsets, 0.0, ["yes", "no"] * 3))
    good = tmp_path / f"good.{fmt}"
    mne.export.export_raw(good, raw, fmt=fmt, verbose=False)

    def spec(name, **rec):
        return dict(
            recordings=[dict(path=name, subject="01", **rec)],
            epochs=dict(labels={"yes": "a", "no": "b"}, tmin=-2.0, tmax=2.0),
        )

    assert len(load_manifest(spec(good.name), root=tmp_path, cache=False)) == 6
    # cut to half its size: the header says 120 s, the file holds 60
    damage_edf(good, tmp_path / f"cut.{fmt}", "truncated")
    _bad(
        spec(f"cut.{fmt}"),
        tmp_path,
        rf"recordings\[0\]: cut.{fmt} is truncated: its header says 120.0 s but the "
        r"file holds 60.0 s; repair or replace the file, or set "
        r"recordings\[0\].allow_truncated: true to read the 60.0 s it holds",
        tmp_path,
    )
    with caplog.at_level(logging.WARNING, logger="eegsal"):
        cut = load_manifest(
            spec(f"cut.{fmt}", allow_truncated=True), root=tmp_path, cache=False
        )
    assert f"cut.{fmt} is truncated: its header says 120.0 s" in caplog.text
    assert cut.metadata["onset"].tolist() == onsets[:3]
    atol = 2e-9 if fmt == "edf" else 1e-11  # 16- and 24-bit samples
    np.testing.assert_allclose(
        cut.get_data()[0], raw.get_data()[:, 800:1201], atol=atol, rtol=1e-6
    )
    # a header whose physical or digital range of Cz is empty: no scale for Cz
    for how in ("physical", "digital"):
        damage_edf(good, tmp_path / f"{how}.{fmt}", how, channel=1)
        _bad(
            spec(f"{how}.{fmt}"),
            tmp_path,
            rf"recordings\[0\]: {how}.{fmt}: the header gives channels \['Cz'\] "
            r"digital or physical min = max, so their scale is unknown .*repair the "
            "header, or list them under preprocessing.exclude",
            tmp_path,
        )
        without = spec(f"{how}.{fmt}")
        without["preprocessing"] = dict(exclude=["Cz"])
        epochs = load_manifest(without, root=tmp_path, cache=False)
        assert epochs.ch_names == ["Fz", "Pz", "Oz"]
        np.testing.assert_allclose(
            epochs.get_data()[0], raw.get_data()[[0, 2, 3], 800:1201], atol=atol,
            rtol=1e-6,
        )  # fmt: skip
        # a renamed channel is still known by its header
        renamed = spec(f"{how}.{fmt}")
        renamed["preprocessing"] = dict(rename={"Cz": "C0"})
        _bad(renamed, tmp_path, r"channels \['C0'\] digital or physical", tmp_path)


def test_a_truncated_eegmmidb_run(tmp_path):
    folder = shared_data_or_skip("eegmmidb", "MNE-eegbci-data", "files", "eegmmidb",
                                 "1.0.0", "S001")  # fmt: skip
    damage_edf(folder / "S001R03.edf", tmp_path / "S001R03.edf", "truncated")
    spec = _manifest("eegmmidb_motor.yaml")
    spec["recordings"] = dict(path="S001R03.edf", subject="001")
    _bad(spec, tmp_path, "S001R03.edf is truncated: its header says 125.0 s but "
         "the file holds 62.0 s", tmp_path)  # fmt: skip
    spec["recordings"]["allow_truncated"] = True
    assert len(load_manifest(spec, root=tmp_path, cache=False)) == 7  # of 15


def test_a_file_is_read_once(folder, tmp_path):
    spec = _events_manifest()
    # a path naming a file the glob finds, under another subject
    spec["recordings"] = [
        spec["recordings"],
        dict(path="sub-01_raw.fif", subject="07", events="sub-01_events.csv",
             hypnogram="sub-01_hypno.txt"),
    ]  # fmt: skip
    _bad(
        spec,
        folder,
        r"recordings\[1\]: sub-01_raw.fif \(subject '07'\) is the file "
        r"sub-01_raw.fif of recordings\[0\] \(subject '01'\) again; its epochs "
        r"would count twice and, under two subjects, leak across cross-validation "
        r"folds. List each file once",
        tmp_path,
    )
    # a link under another name, found by one glob
    (folder / "sub-03_raw.fif").hardlink_to(folder / "sub-02_raw.fif")
    for name in ("hypno.txt", "events.csv"):
        (folder / f"sub-03_{name}").write_text((folder / f"sub-02_{name}").read_text())
    _bad(
        _events_manifest(),
        folder,
        r"recordings\[0\]: sub-03_raw.fif \(subject '03'\) is the file "
        r"sub-02_raw.fif of the same entry \(subject '02'\) again",
        tmp_path,
    )


def test_epochs_select_by_content_and_context_names(folder, tmp_path, monkeypatch):
    """epochs["flying"] and epochs["REM"] select by MNE's '/' tags, as for the
    simulator's '<stage>/<content>'; a cache entry of the old format is rebuilt."""
    from eegsal.data import cache

    cache_dir = tmp_path / "c"
    monkeypatch.setattr(cache, "CACHE_FORMAT", 1)  # an entry written before
    old = load_manifest(_events_manifest(), root=folder, cache_dir=cache_dir)
    (entry,) = cache_dir.glob("*/*-epo.fif")
    mne.EpochsArray(
        old.get_data(), old.info, tmin=old.tmin, metadata=old.metadata, verbose=False
    ).save(entry, overwrite=True, verbose=False)  # event_id {'1': 1}
    monkeypatch.undo()
    for preload in (True, False):
        epochs = load_manifest(
            _events_manifest(), root=folder, cache_dir=cache_dir, preload=preload
        )
        meta = epochs.metadata
        names = {"W/flying", "N2/other", "N2/flying", "REM/other"}
        assert set(epochs.event_id) == names
        for name, col in (("flying", "content"), ("REM", "stage"), ("N2", "stage")):
            sel = epochs[name]
            assert len(sel) == (meta[col] == name).sum() > 0
            pd.testing.assert_frame_equal(
                sel.metadata.reset_index(drop=True),
                meta[meta[col] == name].reset_index(drop=True),
            )
        assert len(epochs["N2/flying"]) == 2
    assert len(list(cache_dir.glob("*/*-epo.fif"))) == 2  # rebuilt, not served
    scored = load_manifest(
        dict(
            recordings=[
                dict(path="sub-01_raw.fif", subject="01", hypnogram="sub-01_hypno.txt")
            ],
            epochs=dict(mode="scored"),
        ),
        root=folder,
        cache=False,
    )
    assert set(scored.event_id) == {"W", "N2", "REM"}
    assert scored["N2"].metadata["stage"].tolist() == ["N2", "N2"]
    # events without a context: the content alone
    plain = load_manifest(_events_manifest(context=None), root=folder, cache=False)
    assert set(plain.event_id) == {"flying", "other"}
    assert (plain["flying"].metadata["content"] == "flying").all()


def test_simulated_epochs_select_by_stage_and_content():
    spec = _manifest("simulated_sleep.yaml")
    spec["simulate"].update(n_subjects=2, n_epochs=10, epoch_length=1.0)
    epochs = load_manifest(spec)
    meta = epochs.metadata
    for name, col in (("flying", "content"), ("REM", "stage")):
        assert len(epochs[name]) == (meta[col] == name).sum() > 0
        assert (epochs[name].metadata[col] == name).all()
