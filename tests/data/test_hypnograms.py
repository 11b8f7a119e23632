"""Hypnograms as labs export them, stage schemes, and Sleep-EDF's layout."""

import datetime
import logging
import shutil
from pathlib import Path

import edfio
import mne
import numpy as np
import pandas as pd
import pytest
import yaml

from eegsal.data import ManifestError, load_manifest
from tests.conftest import shared_data_or_skip

MANIFESTS = Path(__file__).parents[2] / "data_manifests"
YASA = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM"}
START = datetime.datetime(1989, 4, 24, 16, 13)

# Sleep-EDF's hypnogram of the miniature night: (onset s, duration s, label). Wake
# for 90 min before sleep, movement time, stages 3 and 4, and "Sleep stage ?"
# running past the end of the 3-h recording, as in the real files.
NIGHT = [
    (0, 5400, "Sleep stage W"), (5400, 600, "Sleep stage 1"),
    (6000, 1200, "Sleep stage 2"), (7200, 30, "Movement time"),
    (7230, 600, "Sleep stage 3"), (7830, 900, "Sleep stage 4"),
    (8730, 300, "Sleep stage 2"), (9030, 900, "Sleep stage R"),
    (9930, 870, "Sleep stage W"), (10800, 1800, "Sleep stage ?"),
]  # fmt: skip
NIGHT_SECONDS = 3 * 3600


def _sleep_edf_night(folder: Path, code: str = "SC4011") -> None:
    """Write a miniature Sleep Cassette night: a PSG and its Hypnogram EDF+.

    Channels, rates and units as in Sleep-EDF Expanded: two EEG and an EOG at
    100 Hz; respiration, submental EMG, rectal temperature and the event
    marker at 1 Hz. The hypnogram file holds annotations only.
    """
    rng = np.random.default_rng(0)
    signals = []
    for label, fs, unit, lo, hi, filt in [
        ("EEG Fpz-Cz", 100, "uV", -200, 200, "HP:0.5Hz LP:100Hz"),
        ("EEG Pz-Oz", 100, "uV", -200, 200, "HP:0.5Hz LP:100Hz"),
        ("EOG horizontal", 100, "uV", -1000, 1000, "HP:0.5Hz LP:100Hz"),
        ("Resp oro-nasal", 1, "", -2048, 2047, "HP:0.03Hz LP:0.9Hz"),
        ("EMG submental", 1, "uV", -5, 5, "HP:16Hz Rectification LP:0.7Hz"),
        ("Temp rectal", 1, "DegC", 34, 40, ""),
        ("Event marker", 1, "", -2048, 2047, ""),
    ]:
        x = rng.normal((lo + hi) / 2, (hi - lo) / 20, NIGHT_SECONDS * fs)
        signals.append(
            edfio.EdfSignal(np.clip(x, lo, hi), fs, label=label, prefiltering=filt,
                            physical_dimension=unit, physical_range=(lo, hi))
        )  # fmt: skip
    stamp = dict(
        recording=edfio.Recording(startdate=START.date()), starttime=START.time()
    )
    edfio.Edf(signals, data_record_duration=30, **stamp).write(
        folder / f"{code}E0-PSG.edf"
    )
    notes = [edfio.EdfAnnotation(o, d, text) for o, d, text in NIGHT]
    edfio.Edf([], annotations=notes, **stamp).write(folder / f"{code}EC-Hypnogram.edf")


def _shipped(name: str, **epochs) -> dict:
    spec = yaml.safe_load((MANIFESTS / name).read_text())
    spec["epochs"].update(epochs)
    return spec


def test_sleep_edf_layout_through_the_shipped_manifest(tmp_path, caplog):
    _sleep_edf_night(tmp_path)
    with caplog.at_level(logging.INFO, logger="eegsal"):
        epochs = load_manifest(MANIFESTS / "sleep_edf.yaml", root=tmp_path,
                               cache=False)  # fmt: skip
    assert epochs.ch_names == ["EEG Fpz-Cz", "EEG Pz-Oz"]
    assert epochs.info["sfreq"] == 100.0 and len(epochs.times) == 3000
    meta = epochs.metadata
    assert set(meta["subject"]) == {"01"} and set(meta["night"]) == {"1"}
    # the stages of the hypnogram file, read independently (R&K 3 + 4 -> N3)
    ann = mne.read_annotations(tmp_path / "SC4011EC-Hypnogram.edf")
    to_aasm = {"W": "W", "1": "N1", "2": "N2", "3": "N3", "4": "N3", "R": "REM"}
    expected = []
    for onset, dur, desc in zip(ann.onset, ann.duration, ann.description, strict=True):
        code = desc.removeprefix("Sleep stage ")
        if code in to_aasm:
            expected += [(onset + 30 * k, to_aasm[code]) for k in range(int(dur // 30))]
    # trim_wake 30: 60 of the 180 wake epochs before sleep are kept, and the 29
    # after it (fewer than 60) all
    sleep = [o for o, s in expected if s != "W"]
    kept = [(o, s) for o, s in expected
            if min(sleep) - 1800 <= o < max(sleep) + 30 + 1800]  # fmt: skip
    assert len(expected) == 359 and len(kept) == 359 - 120
    assert list(zip(meta["onset"], meta["stage"], strict=True)) == kept
    assert meta["stage"].value_counts().to_dict() == {
        "W": 89, "N3": 50, "N2": 50, "REM": 30, "N1": 20,
    }  # fmt: skip
    text = caplog.text
    assert "trim_wake: kept 30 min of wake around the sleep period" in text
    assert "dropped 120 of 359 scored epochs" in text
    assert (
        "channels sampled below 100 Hz are left out: Resp oro-nasal (1 Hz), EMG "
        "submental (1 Hz), Temp rectal (1 Hz), Event marker (1 Hz)" in text
    )
    # the epochs hold the file's EEG, low-passed at 30 Hz as the manifest says
    raw = mne.io.read_raw_edf(
        tmp_path / "SC4011E0-PSG.edf",
        preload=True,
        include=["EEG Fpz-Cz", "EEG Pz-Oz"],
        verbose=False,
    )
    raw.filter(None, 30.0, verbose=False)  # fmt: skip
    k = 100
    start = int(meta["onset"].iloc[k] * 100)
    np.testing.assert_allclose(
        epochs.get_data(item=k)[0], raw.get_data()[:, start : start + 3000], atol=1e-9
    )
    # without trim_wake, every scored epoch inside the recording
    spec = _shipped("sleep_edf.yaml")
    del spec["epochs"]["trim_wake"]
    whole = load_manifest(spec, root=tmp_path, cache=False)
    assert list(zip(whole.metadata["onset"], whole.metadata["stage"],
                    strict=True)) == expected  # fmt: skip


def test_rk_stages_need_their_scheme(tmp_path):
    """Sleep-EDF's "Sleep stage 4" is no AASM stage: no silent mapping."""
    _sleep_edf_night(tmp_path)
    spec = _shipped("sleep_edf.yaml")
    for key in ("scheme", "stages", "ignore_stages"):
        del spec["epochs"][key]
    with pytest.raises(ManifestError) as err:
        load_manifest(spec, root=tmp_path, cache=False)
    assert str(err.value) == (
        "<dict>: recordings[0].hypnogram: subject '01', SC4011E0-PSG.edf "
        "(SC4011EC-Hypnogram.edf): stage codes ['Sleep stage 1', 'Sleep stage 2', "
        "'Movement time', 'Sleep stage 3', 'Sleep stage 4'] (first at annotation 1 "
        "(5400 s)) have no stage: these are Rechtschaffen & Kales stages; declare "
        "epochs.scheme: rk and map them to AASM with epochs.stages: {S1: N1, S2: "
        "N2, S3: N3, S4: N3}."
    )
    # the R&K scheme alone keeps R&K's stages
    spec["epochs"].update(scheme="rk")
    epochs = load_manifest(spec, root=tmp_path, cache=False)
    assert set(epochs.metadata["stage"]) == {"W", "S1", "S2", "S3", "S4", "REM"}
    assert (epochs.metadata["stage"] == "S4").sum() == 30


@pytest.fixture(scope="module")
def yasa_night(tmp_path_factory):
    """A 6-h night (EDF, 2 EEG channels at 10 Hz) beside YASA's two hypnograms."""
    src = shared_data_or_skip("yasa_sleep")
    folder = tmp_path_factory.mktemp("yasa")
    for name in ("data_full_6hrs_100Hz_hypno_30s.txt", "data_full_6hrs_100Hz_hypno.npz",
                 "sub-02_hypno_30s.txt"):  # fmt: skip
        shutil.copy(src / name, folder / name)
    rng = np.random.default_rng(0)
    info = mne.create_info(["Fz", "Cz"], 10.0, "eeg")
    raw = mne.io.RawArray(1e-5 * rng.standard_normal((2, 6 * 3600 * 10)), info,
                          verbose=False)  # fmt: skip
    mne.export.export_raw(folder / "night.edf", raw, verbose=False)
    # sub-02's hypnogram holds 98 epochs: a recording of 49 min
    raw.crop(0, 98 * 30, include_tmax=False)
    mne.export.export_raw(folder / "sub-02.edf", raw, verbose=False)
    return folder


def _night(hypnogram, path="night.edf", **epochs) -> dict:
    return dict(
        recordings=[dict(path=path, subject="01", hypnogram=hypnogram)],
        epochs=dict(mode="scored", length=30, **epochs),
    )


def test_yasa_text_hypnogram_with_its_header(yasa_night):
    txt = "data_full_6hrs_100Hz_hypno_30s.txt"
    codes = np.loadtxt(yasa_night / txt).astype(int)  # '#' lines are comments
    assert len(codes) == 720
    # 0-4 are numbers, which mean other stages in other schemes: declare YASA's
    with pytest.raises(ManifestError) as err:
        load_manifest(_night(txt), root=yasa_night, cache=False)
    assert str(err.value) == (
        "<dict>: recordings[0].hypnogram: subject '01', night.edf "
        f"({txt}): stage codes ['0', '1', '2', '3', '4'] (first at line 3) have no "
        "stage: numeric codes mean different stages in different schemes (4 is S4 "
        "in Rechtschaffen & Kales, REM in YASA's 0=W, 1=N1, 2=N2, 3=N3, 4=REM); "
        "declare the scheme (epochs.scheme: yasa) or map each code with "
        "epochs.stages (e.g. {'0': W, '1': N1})."
    )
    with pytest.raises(
        ManifestError,
        match=r"\['0', '1', '2', '3', '4'\] .* not "
        r"stages of scheme 'rk' \(MT, REM, S1, S2, S3, S4, W\)",
    ):
        load_manifest(_night(txt, scheme="rk"), root=yasa_night, cache=False)
    epochs = load_manifest(_night(txt, scheme="yasa"), root=yasa_night, cache=False)
    meta = epochs.metadata
    assert meta["stage"].tolist() == [YASA[c] for c in codes]
    np.testing.assert_array_equal(meta["onset"], 30.0 * np.arange(720))
    counts = dict(zip(*np.unique(codes, return_counts=True), strict=True))
    assert meta["stage"].value_counts().to_dict() == {
        YASA[c]: n for c, n in counts.items()
    }
    # YASA's string labels need no scheme
    epochs = load_manifest(_night("sub-02_hypno_30s.txt", path="sub-02.edf"),
                           root=yasa_night, cache=False)  # fmt: skip
    labels = (yasa_night / "sub-02_hypno_30s.txt").read_text().split()
    assert epochs.metadata["stage"].tolist() == labels and len(labels) == 98


def test_yasa_per_sample_hypnogram(yasa_night, caplog):
    npz = "data_full_6hrs_100Hz_hypno.npz"
    txt = "data_full_6hrs_100Hz_hypno_30s.txt"
    hypno = np.load(yasa_night / npz)["hypno"]
    assert len(hypno) == 2161058  # 6 h and 10.58 s at 100 Hz
    # one stage per sample: without its rate, the array is read as 30-s epochs
    with pytest.raises(
        ManifestError,
        match=r"2161058 stages of 30 s cover 18008.82 h "
        r".* give their rate as hypnogram_sfreq \(about 100 Hz\)",
    ):
        load_manifest(_night(npz, scheme="yasa"), root=yasa_night, cache=False)
    spec = _night(npz, scheme="yasa")
    spec["recordings"][0]["hypnogram_sfreq"] = 100
    with caplog.at_level(logging.WARNING, logger="eegsal"):
        epochs = load_manifest(spec, root=yasa_night, cache=False)
    got = epochs.metadata["stage"].to_numpy()
    # independently: each full 30-s epoch's most frequent stage (no ties here)
    per_epoch = hypno[: 720 * 3000].reshape(720, 3000)
    major = []
    for row in per_epoch:
        values, counts = np.unique(row, return_counts=True)
        assert (counts == counts.max()).sum() == 1
        major.append(YASA[values[counts.argmax()]])
    assert got.tolist() == major
    mixed = int((per_epoch != per_epoch[:, :1]).any(axis=1).sum())
    assert mixed == 48
    assert "48 of 720 30-s epochs span two stages" in caplog.text
    # the shipped text and per-sample hypnograms are not the same scoring: their
    # bouts of stages come in the same order, but the array's changes come
    # earlier (by 1 epoch at the start, 7 near the end) and it ends with 1.3
    # epochs of W the text lacks, so 119 of the 720 epochs differ
    from_txt = [YASA[c] for c in np.loadtxt(yasa_night / txt).astype(int)]
    assert (got != np.array(from_txt)).sum() == 119
    # a per-sample array made from the text hypnogram gives its stages back
    codes = np.loadtxt(yasa_night / txt).astype(np.int32)
    np.savez(yasa_night / "from_txt.npz", hypno=np.repeat(codes, 3000))
    spec["recordings"][0]["hypnogram"] = "from_txt.npz"
    again = load_manifest(spec, root=yasa_night, cache=False)
    assert again.metadata["stage"].tolist() == from_txt


# the same five scored epochs, as each kind of file holds them
STAGES = ["W", "N1", "N2", "N3", "REM"]


def _write(kind: str, folder: Path) -> str:
    onset = 30.0 * np.arange(5)
    if kind == "csv":
        pd.DataFrame({"onset": onset, "duration": 30.0, "stage": STAGES}).to_csv(
            folder / "hypno.csv", index=False
        )
        return "hypno.csv"
    if kind == "tsv":  # with an arousal, which is no stage
        rows = [(0, 30, "W"), (30, 30, "N1"), (60, 30, "N2"), (70, 3, "arousal"),
                (90, 30, "N3"), (120, 30, "REM")]  # fmt: skip
        pd.DataFrame(rows, columns=["onset", "duration", "stage"]).to_csv(
            folder / "hypno.tsv", sep="\t", index=False
        )
        return "hypno.tsv"
    if kind == "bids":  # BIDS events: trial_type, n/a for an unknown duration
        table = pd.DataFrame({"onset": onset, "duration": ["30", "30", "n/a", "30",
                                                           "30"],
                              "trial_type": [f"Sleep stage {s}" for s in STAGES],
                              "value": [1, 2, 3, 4, 5]})  # fmt: skip
        table.to_csv(folder / "sub-01_task-sleep_events.tsv", sep="\t", index=False)
        return "sub-01_task-sleep_events.tsv"
    if kind == "edf":  # an EDF+ of annotations only, as Sleep-EDF ships
        notes = [
            edfio.EdfAnnotation(o, 30, s) for o, s in zip(onset, STAGES, strict=True)
        ]
        edfio.Edf([], annotations=notes).write(folder / "hypno.edf")  # fmt: skip
        return "hypno.edf"
    if kind == "npy":  # one stage per sample at 2 Hz
        np.save(folder / "hypno.npy", np.repeat(STAGES, 60))
        return "hypno.npy"
    # YASA's text export: a header, then string labels
    text = "# 1 value per 30 seconds of data\n" + "\n".join(STAGES) + "\n"
    (folder / "hypno.txt").write_text(text)
    return "hypno.txt"


@pytest.mark.parametrize("kind", ["csv", "tsv", "bids", "edf", "npy", "txt"])
def test_hypnogram_files_as_labs_export_them(kind, tmp_path):
    rng = np.random.default_rng(1)
    info = mne.create_info(["Fz", "Cz"], 50.0, "eeg")
    raw = mne.io.RawArray(1e-5 * rng.standard_normal((2, 150 * 50)), info,
                          verbose=False)  # fmt: skip
    raw.save(tmp_path / "sub-01_raw.fif", verbose=False)
    raw = mne.io.read_raw_fif(tmp_path / "sub-01_raw.fif", verbose=False)
    spec = _night(_write(kind, tmp_path), path="sub-01_raw.fif")
    if kind == "npy":
        spec["epochs"]["hypnogram_sfreq"] = 2.0
    epochs = load_manifest(spec, root=tmp_path, cache=False)
    assert epochs.metadata["stage"].tolist() == STAGES
    np.testing.assert_array_equal(epochs.metadata["onset"], 30.0 * np.arange(5))
    np.testing.assert_array_equal(
        epochs.get_data()[2], raw.get_data()[:, 60 * 50 : 90 * 50]
    )


def test_bad_stage_fields_and_tables(tmp_path):
    rng = np.random.default_rng(1)
    info = mne.create_info(["Fz", "Cz"], 50.0, "eeg")
    mne.io.RawArray(1e-5 * rng.standard_normal((2, 150 * 50)), info,
                    verbose=False).save(tmp_path / "r_raw.fif")  # fmt: skip
    (tmp_path / "h.txt").write_text("\n".join(STAGES))

    def bad(match, hypnogram="h.txt", **epochs):
        with pytest.raises(ManifestError, match=match):
            load_manifest(_night(hypnogram, path="r_raw.fif", **epochs),
                          root=tmp_path, cache=False)  # fmt: skip

    bad(r"epochs.scheme: 'R&K' is not a stage scheme; use aasm", scheme="R&K")
    bad(r"epochs.scheme: 'YASA' .* Did you mean 'yasa'\?", scheme="YASA")
    bad(r"epochs.trim_wake: must be >= 0 min, got -5", trim_wake=-5)
    bad(r"epochs.trim_wake: expected a number, got '30 min'", trim_wake="30 min")
    bad(r"epochs.hypnogram_sfreq: must be > 0", hypnogram_sfreq=0)
    bad(r"epochs.ignore_stages: expected a list", ignore_stages="MT")
    pd.DataFrame({"onset": [0, 30], "label": ["W", "N2"]}).to_csv(tmp_path / "h.csv")
    bad(r"subject '01', r_raw.fif \(h.csv\): h.csv has onset but no stage column",
        hypnogram="h.csv")  # fmt: skip
    pd.DataFrame({"onset": [0, "x"], "stage": ["W", "N2"]}).to_csv(
        tmp_path / "h2.csv", index=False
    )
    bad(r"h2.csv: 1 rows have no numeric onset \(line 3\)", hypnogram="h2.csv")
    pd.DataFrame({"onset": [0, 30, 60], "duration": [60, 30, 30],
                  "stage": ["W", "N1", "N2"]}).to_csv(tmp_path / "h4.csv")  # fmt: skip
    bad(r"\(h4.csv\): 1 epochs are scored twice, the first at 30 s \(N1 and W\)",
        hypnogram="h4.csv")  # fmt: skip
    np.save(tmp_path / "h.npy", np.zeros((5, 2)))
    bad(r"\(h.npy\): h.npy holds an array of shape \(5, 2\)", hypnogram="h.npy")
    np.savez(tmp_path / "h.npz", a=np.zeros(5), b=np.zeros(5))
    bad(r"h.npz holds arrays \['a', 'b'\]; name the hypnogram 'hypno'",
        hypnogram="h.npz")  # fmt: skip
    # a header line that is no comment is read as a stage, and says so
    (tmp_path / "h3.txt").write_text("stage\n" + "\n".join(STAGES))
    bad(r"stage codes \['stage'\] \(first at line 1\)", hypnogram="h3.txt")
    # events-locked windows keep every event
    spec = _night("h.txt", path="r_raw.fif", trim_wake=30)
    spec["epochs"].update(mode="events", labels={"x": "y"}, tmin=-1, tmax=0)
    with pytest.raises(ManifestError, match="trim_wake: trims scored epochs"):
        load_manifest(spec, root=tmp_path, cache=False)


def test_trim_wake_of_a_night_without_sleep(tmp_path, caplog):
    rng = np.random.default_rng(1)
    info = mne.create_info(["Fz", "Cz"], 50.0, "eeg")
    mne.io.RawArray(1e-5 * rng.standard_normal((2, 150 * 50)), info,
                    verbose=False).save(tmp_path / "r_raw.fif")  # fmt: skip
    (tmp_path / "h.txt").write_text("W\nW\nW\nW\nW\n")
    with caplog.at_level(logging.WARNING, logger="eegsal"):
        with pytest.raises(ManifestError, match="no epochs in any recording"):
            load_manifest(_night("h.txt", path="r_raw.fif", trim_wake=0),
                          root=tmp_path, cache=False)  # fmt: skip
    assert "no epoch is scored asleep, so there is no sleep period" in caplog.text
    (tmp_path / "h.txt").write_text("W\nW\nN2\nW\nW\n")
    epochs = load_manifest(_night("h.txt", path="r_raw.fif", trim_wake=0.5),
                           root=tmp_path, cache=False)  # fmt: skip
    assert epochs.metadata["stage"].tolist() == ["W", "N2", "W"]
