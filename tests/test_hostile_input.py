"""Hostile and broken input: nothing is deleted, executed or read from outside.

Each case is a manifest (or a formula) that once deleted folders, ran code,
read files outside the data root or hung; each must now exit 1 with one line
naming the field, and leave every file around the cache as it was.
"""

import time

import mne
import numpy as np
import pytest
import yaml

from eegsal.cli import main
from eegsal.data.cache import write_cached
from eegsal.simulate import simulate_sleep_study
from eegsal.stats._formula import check_formula
from tests.conftest import damage_edf

BOMB = "name: bomb\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n"
    for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A data root with two recordings, a cache, and canary files around both."""
    root = tmp_path / "sandbox" / "data"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    info = mne.create_info(["Fz", "Cz", "Pz", "Oz"], 100.0, "eeg")
    for i in (1, 2):
        raw = mne.io.RawArray(1e-5 * rng.standard_normal((4, 12000)), info,
                              verbose=False)  # fmt: skip
        raw.save(root / f"sub-0{i}_raw.fif", verbose=False)
        (root / f"sub-0{i}_hypno.txt").write_text("W\nN2\nN2\nREM\n")
        # a blank line: read as absent, it would shift the later stages by 30 s
        (root / f"sub-0{i}_gap_hypno.txt").write_text("W\nN2\n\nN2\nREM\n")
        (root / f"sub-0{i}_nan_events.csv").write_text(
            "onset,label\n10,yes\nnan,no\n70,yes\n"
        )
    mne.export.export_raw(root / "sub-01.edf", raw, fmt="edf", verbose=False)
    for how in ("truncated", "physical", "digital"):
        damage_edf(root / "sub-01.edf", root / f"sub-01_{how}.edf", how)
    outside = tmp_path / "sandbox" / "outside"
    outside.mkdir()
    (outside / "secret_raw.fif").write_bytes((root / "sub-01_raw.fif").read_bytes())
    (outside / "hypno.txt").write_text("W\nN2\nN2\nREM\n")
    canaries = [tmp_path / "canary.txt", tmp_path / "sandbox" / "canary.txt",
                outside / "canary.txt"]  # fmt: skip
    for c in canaries:
        c.write_text("alive")
    cache = tmp_path / "sandbox" / "cache"
    monkeypatch.setenv("EEGSAL_CACHE", str(cache))
    yield dict(root=root, outside=outside, cache=cache, tmp=tmp_path)
    for c in canaries:
        assert c.read_text() == "alive", f"{c} was touched"
    assert (outside / "secret_raw.fif").is_file()


#: changes that go to the recording entry (the others are top-level keys)
_RECORDING_KEYS = ("glob", "path", "match", "subject", "events", "allow_truncated")


def _manifest(**changes) -> dict:
    spec = dict(
        name="ok",
        recordings=dict(
            glob="sub-*_raw.fif",
            match=r"sub-(?P<subject>\d+)_raw",
            hypnogram="sub-{subject}_hypno.txt",
        ),
        epochs=dict(mode="scored"),
    )
    for key, value in changes.items():
        if key in spec["recordings"] or key in _RECORDING_KEYS:
            spec["recordings"][key] = value
            if value is None:
                del spec["recordings"][key]
        else:
            spec[key] = value
    return spec


def _one(path: str) -> dict:
    """Changes to :func:`_manifest` for one recording (subject 01) at ``path``."""
    return dict(path=path, glob=None, match=None, subject="01",
                hypnogram="sub-01_hypno.txt")  # fmt: skip


CASES = {
    # name: (manifest changes or raw YAML text, substring of the one-line error)
    "name climbs out of the cache": (dict(name="../../x"), "name: '../../x'"),
    "absolute name": (dict(name="/tmp/x"), "is not a valid name"),
    "name with a separator": (dict(name="a/b"), "is not a valid name"),
    "glob climbs out": (dict(glob="../outside/*_raw.fif", match=".*"), "glob"),
    "absolute glob": (dict(glob="/etc/*", match=".*"), "outside the data root"),
    "hypnogram climbs out": (dict(hypnogram="../outside/hypno.txt"), "hypnogram"),
    "hypnogram glob climbs out": (dict(hypnogram="../*/hypno.txt"), "hypnogram"),
    "catastrophic regex": (dict(match="(a+)+b"), "exponential"),
    "alternation under a repeat": (dict(match="(a|aa)+$"), "exponential"),
    "invalid regex": (dict(match="sub-(?P<subject"), "not a valid regular"),
    "overlong regex": (dict(match="a" * 1000), "at most 300"),
    "billion laughs": (BOMB, "expands to"),
    "recursive alias": ("name: r\nrecordings: &r [*r]\n", "recursive"),
    # damaged recordings, which the reader would read with a warning
    "truncated EDF": (
        _one("sub-01_truncated.edf"),
        "sub-01_truncated.edf is truncated: its header says 120.0 s but the file "
        "holds 60.0 s; repair or replace the file, or set "
        "recordings[0].allow_truncated: true",
    ),
    "EDF with physical min = max": (
        _one("sub-01_physical.edf"),
        "the header gives channels ['Cz'] digital or physical min = max",
    ),
    "EDF with digital min = max": (
        _one("sub-01_digital.edf"),
        "the header gives channels ['Cz'] digital or physical min = max",
    ),
    "allow_truncated not a boolean": (
        dict(allow_truncated="yes"),
        "recordings[0].allow_truncated: expected true or false, got 'yes'",
    ),
    # values that would load, wrongly
    "band-stop from swapped edges": (
        dict(preprocessing=dict(l_freq=30.0, h_freq=1.0)),
        "preprocessing.l_freq: the high-pass edge (30 Hz) is not below the "
        "low-pass edge h_freq (1 Hz)",
    ),
    "equal band edges": (
        dict(preprocessing=dict(l_freq=8.0, h_freq=8.0)),
        "give l_freq < h_freq",
    ),
    "zero sampling rate": (
        dict(preprocessing=dict(sfreq=0)),
        "preprocessing.sfreq: must be > 0, got 0; give the sampling rate",
    ),
    "negative sampling rate": (
        dict(preprocessing=dict(sfreq=-100.0)),
        "preprocessing.sfreq: must be > 0, got -100.0",
    ),
    "NaN high-pass edge": (
        dict(preprocessing=dict(l_freq=float("nan"))),
        "preprocessing.l_freq: expected a finite number, got nan",
    ),
    "unknown montage": (
        dict(preprocessing=dict(montage="colin27_105")),
        "preprocessing.montage: 'colin27_105' is not an MNE built-in montage; use "
        "one of mne.channels.get_builtin_montages() (e.g. 'colin27_1005'), or "
        "leave montage out. Did you mean 'colin27_1005'?",
    ),
    "montage renamed in MNE 1.13": (
        dict(preprocessing=dict(montage="standard_1020")),
        "It was renamed in MNE 1.13: write 'colin27_1020'",
    ),
    "tmin after tmax": (
        dict(epochs=dict(mode="events", labels={"yes": "a"}, tmin=2.0, tmax=-2.0)),
        "epochs.tmax (-2.0) must be after tmin (2.0); give the window's start",
    ),
    "infinite tmax": (
        dict(
            epochs=dict(mode="events", labels={"yes": "a"}, tmin=0.0, tmax=float("inf"))
        ),
        "epochs.tmax: expected a finite number, got inf",
    ),
    "unknown on_outside": (
        dict(
            epochs=dict(
                mode="events",
                labels={"yes": "a"},
                tmin=0.0,
                tmax=1.0,
                on_outside="skip",
            )
        ),
        "epochs.on_outside: 'skip' is not 'drop'",
    ),
    "NaN event onset": (
        dict(
            events="sub-{subject}_nan_events.csv",
            epochs=dict(
                mode="events", labels={"yes": "a", "no": "b"}, tmin=-2.0, tmax=0.0
            ),
        ),
        "recordings[0].events: sub-01_nan_events.csv: 1 events have no onset (a "
        "blank, NaN or non-numeric value; row 2 below the header)",
    ),
    "blank hypnogram row": (
        dict(hypnogram="sub-{subject}_gap_hypno.txt"),
        "recordings[0].hypnogram: subject '01', sub-01_raw.fif (sub-01_gap_hypno.txt): "
        "1 blank stages (line 3)",
    ),
    "one file under two subjects": (
        dict(
            recordings=[
                _manifest()["recordings"],
                dict(path="sub-01_raw.fif", subject="07", hypnogram="sub-01_hypno.txt"),
            ]
        ),
        "recordings[1]: sub-01_raw.fif (subject '07') is the file sub-01_raw.fif "
        "of recordings[0] (subject '01') again",
    ),
}


def _as_shown(stderr: str) -> str:
    """Stderr as a terminal shows it: a progress bar, erased by its ``\\r``, is gone.

    Errors found while the recordings are read come after the bar of
    ``reading NAME``, which tqdm overwrites when it closes.
    """
    lines = (line.rsplit("\r", 1)[-1] for line in stderr.split("\n"))
    return "\n".join(line for line in lines if line.strip())


@pytest.mark.parametrize("case", list(CASES))
def test_bad_manifest_exits_1_in_one_line(case, sandbox, capsys):
    spec, needle = CASES[case]
    fname = sandbox["tmp"] / "m.yaml"
    text = spec if isinstance(spec, str) else yaml.safe_dump(_manifest(**spec))
    fname.write_text(text)
    start = time.perf_counter()
    code = main(["epochs", str(fname), "--root", str(sandbox["root"])])
    assert time.perf_counter() - start < 30  # nothing hangs
    err = _as_shown(capsys.readouterr().err)
    assert code == 1, err
    assert needle in err and len(err.splitlines()) == 1, err
    assert str(fname) in err  # the message names the file
    assert not sandbox["cache"].exists() or not any(sandbox["cache"].iterdir())


def test_a_symlink_out_of_the_root_is_refused(sandbox, capsys):
    link = sandbox["root"] / "sub-03_raw.fif"
    link.symlink_to(sandbox["outside"] / "secret_raw.fif")
    (sandbox["root"] / "sub-03_hypno.txt").write_text("W\nN2\nN2\nREM\n")
    fname = sandbox["tmp"] / "m.yaml"
    fname.write_text(yaml.safe_dump(_manifest()))
    assert main(["epochs", str(fname), "--root", str(sandbox["root"])]) == 1
    assert "outside the data root" in capsys.readouterr().err


def test_the_good_manifest_loads(sandbox, capsys):
    fname = sandbox["tmp"] / "m.yaml"
    fname.write_text(yaml.safe_dump(_manifest()))
    assert main(["epochs", str(fname), "--root", str(sandbox["root"])]) == 0
    assert capsys.readouterr().out.startswith("8 epochs")
    assert len(list(sandbox["cache"].iterdir())) == 1


def test_cache_removes_only_its_own_entries(sandbox):
    epochs, _ = simulate_sleep_study(n_subjects=2, n_epochs=10, seed=0)
    cache = sandbox["cache"]
    cache.mkdir()
    # a "damaged entry" that is a link to a folder outside the cache
    (cache / f"ok-{'0' * 16}").symlink_to(sandbox["outside"], target_is_directory=True)
    with pytest.raises(FileExistsError, match="not an entry of the cache"):
        write_cached(epochs, "ok", "0" * 64, cache)
    # a damaged entry holding files eegsal did not write is left for the user
    stray = cache / f"ok-{'1' * 16}"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="did not write"):
        write_cached(epochs, "ok", "1" * 64, cache)
    assert (stray / "notes.txt").read_text() == "mine"
    # a damaged entry of eegsal's own is replaced
    own = cache / f"ok-{'2' * 16}"
    own.mkdir()
    (own / "ok-epo.fif").write_bytes(b"damaged")
    path = write_cached(epochs, "ok", "2" * 64, cache)
    assert len(mne.read_epochs(path, verbose=False)) == len(epochs)


@pytest.mark.parametrize(
    "formula, token",
    [
        ("content + I(__import__('os').system('touch pwned'))", "'I'(...)"),
        ("content + np.log(stage)", "'np'"),
        ("content + stage.__class__", "'.'"),
        ("content; stage", "';'"),
        ("content + C(stage, Treatment(reference=__import__('os')))", "one quoted"),
        ("content + C(stage, os)", "not a contrast"),
        ("content ** 2", "number 2"),
        ("content + stag", "Did you mean 'stage'"),
        ("lambda: 0", "'lambda'"),
    ],
)
def test_formulas_are_parsed_never_run(formula, token, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="formula") as err:
        check_formula(formula, ["content", "stage", "subject"])
    assert token in str(err.value)
    assert not (tmp_path / "pwned").exists()


def test_formulas_users_write_pass():
    cols = ["content", "stage", "subject", "delta"]
    assert check_formula("content * C(stage, Sum)", cols) == ["content", "stage"]
    assert check_formula("y ~ 0 + content + stage - 1", cols) == ["content", "stage"]
    assert check_formula(
        "content:C(stage, Treatment(reference='W')) + (content + delta) * stage", cols
    ) == ["content", "stage", "delta"]


def test_fit_lmm_refuses_code_before_patsy_sees_it(tmp_path, monkeypatch):
    import pandas as pd

    from eegsal.stats.lmm import _design

    monkeypatch.chdir(tmp_path)
    meta = pd.DataFrame(dict(content=["a", "b"] * 4, subject=list("aabbccdd")))
    with pytest.raises(ValueError, match="is not allowed"):
        _design("content + I(__import__('pathlib').Path('pwned').touch())", meta)
    assert not (tmp_path / "pwned").exists()
