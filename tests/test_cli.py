import pandas as pd
import pytest

from eegsal.cli import main


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out and "Explain EEG decoders" in out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    for flag in ("--out", "--n-subjects", "--device", "--seed"):
        assert flag in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["demo", "--n-subjects", "zero"], "expected a positive integer"),
        (["demo", "--n-subjects", "0"], "expected a positive integer"),
        (["demo", "--scenario", "dream"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        (["run", "study.yaml", "--device", "tpu"], "expected 'auto', 'cpu', 'cuda'"),
        (["demo", "--device", "gpu"], "argument --device"),
    ],
)
def test_bad_arguments_give_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_bad_values_give_one_line_and_exit_1(tmp_path, capsys):
    # 2 epochs per subject cannot hold 5 stages: the simulator refuses, in one line
    code = main(["demo", "--out", str(tmp_path), "--n-epochs", "2", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "n_epochs" in err and "Traceback" not in err


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--n-subjects", "3", "--n-epochs", "12"]
    code = main([*argv, "--cv", "3", "--max-epochs", "2", "--device", "cpu"])
    assert code == 0
    captured = capsys.readouterr()
    assert "balanced accuracy" in captured.out and "report.html" in captured.out
    assert "[decode] running" in captured.err  # progress goes to stderr
    assert (out / "report.html").is_file() and (out / "summary.txt").is_file()
    assert not list(out.rglob("*.tmp-*"))  # atomic writes
    scores = pd.read_csv(out / "tables" / "scores.csv")
    assert len(scores) == 3
    assert scores["balanced_accuracy"].between(0, 1).all()
    assert scores["roc_auc"].between(0, 1).all()
    counts = pd.read_csv(out / "tables" / "epochs_summary.csv")
    assert counts["n_epochs"].sum() == 36
    pred = pd.read_csv(out / "tables" / "predictions.csv")
    assert len(pred) == 36 and (pred["fold"] >= 0).all()
    for name in ("topomap_saliency", "lmm", "faithfulness"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    # a second demo with the same settings reuses every stage
    assert main([*argv, "--cv", "3", "--max-epochs", "2", "-q"]) == 0
    assert "(0 stages run" in capsys.readouterr().out


def test_epochs_command_counts_and_saves(tmp_path, capsys):
    import mne

    from eegsal.simulate import simulate_night

    raw = simulate_night(duration=1800, n_awakenings=1, seed=0)
    mne.export.export_raw(tmp_path / "night.edf", raw, fmt="edf", verbose=False)
    manifest = tmp_path / "night.yaml"
    manifest.write_text(
        "recordings:\n  - path: night.edf\n    subject: s1\n"
        "epochs:\n  mode: scored\n  hypnogram: annotations\n"
    )
    out = tmp_path / "night-epo.fif"
    code = main(["epochs", str(manifest), "--root", str(tmp_path), "--out", str(out),
                 "--no-cache", "-q"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert text.startswith("60 epochs, 19 channels, 100 Hz")
    stages = pd.Series([d for d in raw.annotations.description if "stage" in d])
    for stage, n in stages.str.removeprefix("Sleep stage ").value_counts().items():
        assert f"{stage}" in text.splitlines()[1] and str(n) in text
    code = main(["epochs", str(manifest), "--root", str(tmp_path), "--out", str(out),
                 "-q"])  # fmt: skip
    assert code == 1  # exists: the message names the flag that replaces it
    err = capsys.readouterr().err
    assert "pass --overwrite" in err and len(err.splitlines()) == 1
    code = main(["epochs", str(manifest), "--root", str(tmp_path), "--out", str(out),
                 "--overwrite", "-q"])  # fmt: skip
    assert code == 0
    capsys.readouterr()
    back = mne.read_epochs(out, verbose=False)
    assert len(back) == 60 and list(back.metadata["stage"][:1]) == ["W"]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    code = main(["epochs", str(manifest), "--root", str(tmp_path / "nope"), "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert "root: " in err and "is not a folder" in err and len(err.splitlines()) == 1


def test_version(capsys):
    from eegsal import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"eegsal {__version__}"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("decode: [unclosed\n  target: x", "not valid YAML"),
        ("name: x\ndecode: {target: content}\n", "not the config of a study"),
        ("- a list\n", "not the config of a study"),
    ],
)
def test_report_of_a_damaged_study_exits_1_in_one_line(tmp_path, text, needle, capsys):
    (tmp_path / "config.yaml").write_text(text)
    assert main(["report", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{tmp_path / 'config.yaml'}: " in err and needle in err


MOTOR_MANIFEST = """\
name: motor_two_subjects
root: {root}
recordings:
  glob: MNE-eegbci-data/files/eegmmidb/1.0.0/S*/S*R*.edf
  match: S(?P<subject>\\d{{3}})R(?P<run>\\d{{2}})\\.edf$
  include: {{subject: ["001", "002"], run: ["03", "04"]}}
  columns:
    context:
      from: run
      map: {{"03": executed, "04": imagined}}
preprocessing: {{rename: eegbci, montage: colin27_1005, l_freq: 7.0, h_freq: 30.0}}
epochs:
  mode: events
  events: annotations
  labels: {{T1: left, T2: right}}
  tmin: 0.5
  tmax: 2.5
"""


def test_epochs_command_prints_content_by_context_per_subject(tmp_path, capsys):
    import mne

    from tests.conftest import shared_data_or_skip

    root = shared_data_or_skip("eegmmidb")
    manifest = tmp_path / "motor.yaml"
    manifest.write_text(MOTOR_MANIFEST.format(root=root))
    assert main(["epochs", str(manifest), "-q"]) == 0
    text = capsys.readouterr().out
    assert "content x context per subject" in text
    # independent count: the T1/T2 annotations of each file whose 0.5-2.5 s
    # window lies inside the recording
    rows = []
    for subject in ("001", "002"):
        for run, context in (("03", "executed"), ("04", "imagined")):
            path = root / "MNE-eegbci-data/files/eegmmidb/1.0.0"
            raw = mne.io.read_raw_edf(
                path / f"S{subject}" / f"S{subject}R{run}.edf", verbose=False
            )
            ann = raw.annotations
            inside = ann.onset + 2.5 <= raw.times[-1]
            n = [int(((ann.description == e) & inside).sum()) for e in ("T1", "T2")]
            rows.append(f"{context} {n[0]} {n[1]}")
    table = text.split("content x context per subject")[1].splitlines()
    lines = [" ".join(line.split()[-3:]) for line in table[3:7]]
    assert lines == rows
    assert "P(content = left | context), all subjects: executed" in text
