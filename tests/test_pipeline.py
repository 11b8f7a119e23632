"""The study pipeline: every documented file, resumable stages, report, figures."""

import html
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from eegsal.cli import main
from eegsal.pipeline import DEFAULT_STUDY, ConfigError, read_config, run_study

TINY = {
    "name": "tiny study",
    "data": {"simulate": {"n_subjects": 4, "n_epochs": 20, "epoch_length": 2.0}},
    "decode": {"cv": 2, "params": {"max_epochs": 2, "patience": 2, "batch_size": 16}},
    "attribute": {"methods": ["saliency", "input_x_gradient"]},
    "evaluate": {
        "n_epochs": 8,
        "faithfulness": {"n_steps": 4, "patch": [1, 20]},
        "randomization": {"n_epochs": 4},
    },
    "stats": {"n_permutations": 10, "within_permutations": 30},
}

#: Every file the layout of eegsal.pipeline documents, for TINY.
FILES = [
    "config.yaml",
    "stages.json",
    "epochs/epochs-epo.fif",
    "epochs/truth.json",
    "decoding/content/config.json",
    "decoding/content/fold-0.pt",
    "decoding/stage/config.json",
    "attributions/saliency.h5",
    "attributions/input_x_gradient.h5",
    "attributions/stage_decoder_saliency.h5",
    "report.html",
    "summary.txt",
    *(
        f"tables/{t}.csv"
        for t in (
            "epochs_summary",
            "scores",
            "predictions",
            "scores_by_stage",
            "within_stage",
            "within_stage_null",
            "subject_scores",
            "verdict",
            "similarity",
            "faithfulness_auc",
            "faithfulness_curves",
            "randomization",
            "localization",
            "lmm",
            "clusters",
        )
    ),
    *(
        f"figures/{f}.{ext}"
        for f in (
            "topomap_saliency",
            "image_saliency",
            "topomap_input_x_gradient",
            "image_input_x_gradient",
            "within_stage",
            "subject_scores",
            "similarity",
            "faithfulness",
            "randomization",
            "lmm",
        )
        for ext in ("png", "svg")
    ),
]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "tiny"
    files = run_study(TINY, out, device="cpu", verbose=False)
    assert files["skipped"] == [] and "report" in files["ran"]
    return out


def test_a_run_writes_every_documented_file(study_dir):
    missing = [f for f in FILES if not (study_dir / f).is_file()]
    assert not missing
    assert not list(study_dir.rglob("*.tmp-*"))  # no temporary file left
    cfg = yaml.safe_load((study_dir / "config.yaml").read_text())
    assert cfg == read_config(TINY)
    verdict = pd.read_csv(study_dir / "tables" / "verdict.csv")
    assert verdict["test"].str.startswith("within stage = ").sum() >= 4
    summary = (study_dir / "summary.txt").read_text()
    assert "content decoder" in summary and "stage" in summary


def test_a_second_run_skips_every_stage(study_dir):
    stamp = (study_dir / "tables" / "lmm.csv").stat().st_mtime_ns
    config_stamp = (study_dir / "config.yaml").stat().st_mtime_ns
    files = run_study(TINY, study_dir, device="cpu", verbose=False)
    assert files["ran"] == []
    assert (study_dir / "config.yaml").stat().st_mtime_ns == config_stamp
    assert set(files["skipped"]) >= {"epochs", "decode", "evaluate", "stats", "report"}
    assert (study_dir / "tables" / "lmm.csv").stat().st_mtime_ns == stamp
    # a changed setting reruns its stage and what follows, nothing before
    changed = {**TINY, "stats": {**TINY["stats"], "n_permutations": 12}}
    out = study_dir.parent / "changed"
    shutil.copytree(study_dir, out)
    files = run_study(changed, out, device="cpu", verbose=False)
    assert files["ran"] == ["stats", "report"]


def test_split_tests_maps_whose_labels_trained_no_explaining_decoder(study_dir):
    from eegsal.attribution import read_attributions
    from eegsal.report import figure_captions

    split = {**TINY, "stats": {**TINY["stats"], "split": True}}
    out = study_dir.parent / "split"
    shutil.copytree(study_dir, out)
    files = run_study(split, out, device="cpu", verbose=False)
    assert files["ran"] == ["stats", "report"]
    maps = read_attributions(out / "attributions" / "split_saliency.h5")
    pooled = read_attributions(study_dir / "attributions" / "saliency.h5")
    subjects = maps.metadata["subject"].unique()
    assert len(subjects) == 2  # half of the 4 subjects
    # every epoch of the tested subjects, and none of the others
    rows = pooled.metadata["subject"].isin(subjects).to_numpy()
    assert len(maps) == rows.sum()
    np.testing.assert_array_equal(
        maps.metadata["epoch_in_subject"], pooled.metadata["epoch_in_subject"][rows]
    )
    # explained by another decoder than the cross-validated folds' (trained on
    # the other two subjects alone): the maps differ
    assert not np.allclose(maps.get_data(), pooled.get_data()[rows])
    report = html.unescape((out / "report.html").read_text())
    assert figure_captions("stage", split=True)["lmm"] in report
    assert figure_captions("stage")["lmm"] not in report
    pooled_report = html.unescape((study_dir / "report.html").read_text())
    assert figure_captions("stage")["lmm"] in pooled_report


#: The stage keys of TINY, eegsal's version set to "pinned", as earlier versions
#: recorded them in stages.json: a study run by those is recognized as done.
TINY_KEYS = {
    "epochs": "b7250dbddbaa973e",
    "decode": "3571ec7aea132dec",
    "decode_context": "3571ec7aea132dec",
    "attribute:saliency": "8e54b48ef25dc29f",
    "attribute:input_x_gradient": "44f5d377e5abf802",
    "confound": "59b5e155d554e20a",
    "similarity": "34888973df220673",
    "evaluate": "4bbd29203849a510",
    "stats": "c906bb0cc895cd9f",
    "report": "b48c1312cb2433e4",
}


@pytest.mark.parametrize(
    "change, report_key, absent",
    [
        ({}, TINY_KEYS["report"], set()),
        ({"decode": {"context": None}}, "032287e3fa75139d",
         {"decode_context", "confound", "similarity"}),
        ({"decode": {"context_decoder": False}}, "37b9a26231e11287",
         {"decode_context", "similarity"}),
        ({"stats": {"covariates": ["log_delta_power"], "n_bins": 2}},
         "9dcbb628386adeb1", set()),
        ({"attribute": {"explain": "other"}}, "434cbcd1c4285dbf", set()),
    ],
)  # fmt: skip
def test_the_stage_keys_are_those_earlier_versions_recorded(
    change, report_key, absent, monkeypatch
):
    """Each stage's declaration keeps its key: optional stages, one stage per
    method; the report's key is the hash of every other key."""
    from eegsal import _stages

    monkeypatch.setattr(_stages, "__version__", "pinned")
    config = {k: {**v, **change.get(k, {})} if isinstance(v, dict) else v
              for k, v in TINY.items()}  # fmt: skip
    keys = _stages.stage_keys(read_config(config))
    assert keys["report"] == report_key
    assert set(keys) == set(TINY_KEYS) - absent
    if change:
        return
    assert keys == TINY_KEYS and list(keys) == list(TINY_KEYS)  # and in order
    one = {**TINY, "attribute": {"methods": ["integrated_gradients"],
                                 "params": {"integrated_gradients": {"n_steps": 3}}}}
    keys = _stages.stage_keys(read_config(one))
    assert [k for k in keys if k.startswith("attribute")] == [
        "attribute:integrated_gradients"
    ]
    assert keys["report"] == "99c9f5d5074d7b7f"


def test_a_run_killed_midway_resumes_to_the_same_results(study_dir, monkeypatch):
    from eegsal import pipeline

    out = study_dir.parent / "killed"

    def crash(self):
        raise KeyboardInterrupt  # as Ctrl-C in the middle of the evaluation

    monkeypatch.setattr(pipeline._Study, "evaluate", crash)
    with pytest.raises(KeyboardInterrupt):
        run_study(TINY, out, device="cpu", verbose=False)
    assert not (out / "report.html").exists()
    monkeypatch.undo()
    files = run_study(TINY, out, device="cpu", verbose=False)
    assert files["ran"] == ["evaluate", "stats", "report"]
    for table in ("faithfulness_auc", "randomization", "lmm", "verdict", "scores"):
        got = pd.read_csv(out / "tables" / f"{table}.csv")
        want = pd.read_csv(study_dir / "tables" / f"{table}.csv")
        pd.testing.assert_frame_equal(got, want, rtol=1e-5)


def test_a_study_read_lazily_gives_the_same_results(study_dir, monkeypatch):
    # as for studies larger than memory: epochs saved in split parts, and the
    # epochs and maps read lazily (batch by batch, block by block)
    from eegsal import _study
    from eegsal.data import cache

    monkeypatch.setattr(cache, "SPLIT_SIZE", 3 * 2**19)  # 1.5 MiB
    monkeypatch.setattr(_study, "LAZY_BYTES", 0)
    out = study_dir.parent / "lazy"
    run_study(TINY, out, device="cpu", verbose=False)
    assert len(list((out / "epochs").glob("epochs-epo-*.fif"))) >= 2
    assert not list((out / "epochs").glob(".*"))
    for table in ("faithfulness_auc", "randomization", "lmm", "verdict", "scores"):
        got = pd.read_csv(out / "tables" / f"{table}.csv")
        want = pd.read_csv(study_dir / "tables" / f"{table}.csv")
        pd.testing.assert_frame_equal(got, want, rtol=1e-5)


def test_the_report_has_every_section(study_dir):
    from eegsal.report import SECTIONS

    text = (study_dir / "report.html").read_text()
    for section in SECTIONS:
        assert section in text, section
    assert "data:image/png;base64" in text  # figures are embedded
    assert "balanced accuracy" in text


def _has_content(ax) -> bool:
    return bool(ax.lines or ax.collections or ax.images or ax.patches)


def test_every_figure_function_draws_every_panel(study_dir):
    from eegsal.evaluation import FaithfulnessCurves
    from eegsal.viz import (
        plot_faithfulness,
        plot_randomization,
        plot_similarity,
        plot_subject_scores,
        plot_within_context,
    )

    tables = study_dir / "tables"
    curves = pd.read_csv(tables / "faithfulness_curves.csv")
    auc = pd.read_csv(tables / "faithfulness_auc.csv")

    def select(table, method, kind):
        return table[(table["method"] == method) & (table["kind"] == kind)]

    params = {"target": "logit", "perturbation": "zeros"}
    fcs = {
        m: [
            FaithfulnessCurves(select(curves, m, k), select(auc, m, k), k, params)
            for k in ("deletion", "insertion")
        ]
        for m in ("saliency", "input_x_gradient")
    }
    rand = pd.read_csv(tables / "randomization.csv")
    figs = {
        "faithfulness": (plot_faithfulness(fcs), 2),
        "randomization": (
            plot_randomization({m: t for m, t in rand.groupby("method")}),
            1,
        ),
        "within": (
            plot_within_context(
                pd.read_csv(tables / "within_stage.csv"),
                pd.read_csv(tables / "within_stage_null.csv"),
            ),
            1,
        ),
        "subjects": (
            plot_subject_scores(pd.read_csv(tables / "subject_scores.csv")),
            1,
        ),
        "similarity": (plot_similarity(pd.read_csv(tables / "similarity.csv")), 1),
    }
    for name, (fig, n_axes) in figs.items():
        assert len(fig.axes) == n_axes, name
        assert all(_has_content(ax) for ax in fig.axes), name
        assert all(ax.get_xlabel() or ax.get_xticklabels() for ax in fig.axes), name
        plt.close(fig)
    # the first faithfulness panel holds both methods and the random order
    fig = plot_faithfulness(fcs)
    assert len(fig.axes[0].lines) == 3
    plt.close(fig)


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, match in [
        ("decode: {targte: content}", r"bad.yaml: decode.targte: .*'target'"),
        ("data: {simulate: {}, manifest: x.yaml}", "either 'simulate'"),
        ("attribute: {methods: [salency]}", "unknown method 'salency'"),
        # the split maps are tested against the labels: none may choose the output
        ("attribute: {label: 'true'}\nstats: {split: true}",
         "stats.split: .*label: true"),
        ("stats: {split: 'yes'}", "stats.split"),
    ]:  # fmt: skip
        bad.write_text(text + "\n")
        with pytest.raises(ConfigError, match=match):
            read_config(bad)
    # the command line: one line, exit code 1, no traceback
    assert main(["run", str(bad), "--out", str(tmp_path / "o"), "-q"]) == 1
    assert main(["run", str(tmp_path / "missing.yaml"), "-q"]) == 1


def test_the_shipped_demo_config_is_the_default_study():
    shipped = Path(__file__).parents[1] / "analyses" / "demo_study.yaml"
    assert read_config(shipped) == read_config(DEFAULT_STUDY)


def test_cli_report_rebuilds_the_report(study_dir, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(study_dir, out)
    (out / "report.html").unlink()
    assert main(["report", str(out), "-q"]) == 0
    assert (out / "report.html").is_file()
    assert main(["report", str(tmp_path), "-q"]) == 1  # not a study folder
    assert "no config.yaml" in capsys.readouterr().err


def test_report_of_a_study_on_read_only_media(study_dir, tmp_path):
    def snapshot():
        return {
            p: (p.stat().st_mtime_ns, p.stat().st_mode, p.stat().st_size)
            for p in [study_dir, *study_dir.rglob("*")]
        }

    before = snapshot()
    folders = [p for p in before if p.is_dir()]
    try:  # read-only as on a DVD (root ignores it: the snapshot is the check)
        for p in folders:
            p.chmod(0o555)
        dest = tmp_path / "report"
        assert main(["report", str(study_dir), "--out", str(dest), "-q"]) == 0
    finally:
        for p in folders:
            p.chmod(0o755)
    assert snapshot() == before  # nothing written, renamed or removed
    assert (dest / "report.html").stat().st_size > 10_000
    summary = (dest / "summary.txt").read_text()
    assert summary == (study_dir / "summary.txt").read_text()


def test_cli_simulate_writes_epochs_and_truth(tmp_path, capsys):
    import json

    import mne

    out = tmp_path / "sim-epo.fif"
    args = ["simulate", str(out), "--n-subjects", "2", "--n-epochs", "10", "-q"]
    assert main(args) == 0
    epochs = mne.read_epochs(out, verbose=False)
    assert len(epochs) == 20 and {"subject", "stage", "content"} <= set(epochs.metadata)
    truth = json.loads((tmp_path / "sim-truth.json").read_text())
    assert truth["content_channels"] and len(truth["content_window"]) == 2
    assert main(args) == 1  # exists: no overwrite without --overwrite
    assert "overwrite" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: chromium)")
def test_the_report_renders_in_headless_chromium(study_dir, tmp_path):
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,1600",
            f"--screenshot={shot}",
            (study_dir / "report.html").resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    img = plt.imread(shot)[..., :3]
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    # not blank: many distinct colours, and well away from a uniform page
    assert img.std() > 0.05
    assert len(np.unique((img * 255).astype(int).reshape(-1, 3), axis=0)) > 100


def test_average_by_several_columns(study_dir):
    from eegsal.attribution import read_attributions

    attr = read_attributions(study_dir / "attributions" / "saliency.h5")
    evokeds = attr.average(by=["stage", "content"], absolute=True)
    meta = attr.metadata
    assert sum(e.nave for e in evokeds.values()) == len(meta)
    key = f"{meta['stage'].iloc[0]} / {meta['content'].iloc[0]}"
    sel = ((meta["stage"] == meta["stage"].iloc[0])
           & (meta["content"] == meta["content"].iloc[0])).to_numpy()  # fmt: skip
    np.testing.assert_allclose(evokeds[key].data, np.abs(attr.data[sel]).mean(0),
                               rtol=1e-5)  # fmt: skip


def test_verdict_in_words_for_content_confound_and_null():
    from eegsal.report import verdict_text

    def within(ba, p):
        return pd.DataFrame({
            "stage": ["N2", "REM", "all (within-context)"],
            "balanced_accuracy": [ba, ba, ba], "p": [p, 0.5, p],
            "null_95": [0.56, 0.56, 0.55],
        })  # fmt: skip

    # five of five subjects above chance: Wilcoxon p = 1/2**5
    subjects = pd.DataFrame({"balanced_accuracy": [0.7, 0.6, 0.8, 0.65, 0.9, np.nan]})
    text = verdict_text(within(0.8, 0.001), subjects, overall=0.8)
    assert text.startswith(
        "The content effect holds within N2 (Holm-corrected over 2 stages, p < 0.05)"
    )
    assert "5 of 5 subjects above chance (Wilcoxon across subjects p = 0.031)" in text
    # 2 of 3 subjects: decoded within stage, but not consistently across them
    few = pd.DataFrame({"balanced_accuracy": [0.7, 0.6, 0.4, np.nan]})
    text = verdict_text(within(0.8, 0.001), few, overall=0.8)
    assert text.startswith("No consistent content effect across subjects")
    assert "holds" not in text and "2 of 3 subjects" in text
    text = verdict_text(within(0.5, 0.6), subjects, overall=0.75)  # confound
    assert text.startswith("No evidence of content beyond the stage")
    text = verdict_text(within(0.5, 0.6), subjects, overall=0.5)  # nothing at all
    assert text.startswith("No evidence of content at all")


def _write_recording(path, seed: int) -> None:
    """Save 40 s of 4-channel EEG at 100 Hz (random, seeded) as a FIF file."""
    import mne

    rng = np.random.default_rng(seed)
    info = mne.create_info(["Fz", "Cz", "Pz", "Oz"], 100.0, "eeg")
    raw = mne.io.RawArray(1e-5 * rng.standard_normal((4, 4000)), info, verbose=False)
    raw.save(path, overwrite=True, verbose=False)


def test_a_replaced_recording_reruns_the_study(tmp_path, monkeypatch):
    monkeypatch.setenv("EEGSAL_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    for i in range(1, 5):
        _write_recording(root / f"sub-0{i}_raw.fif", seed=i)
        (root / f"sub-0{i}_hypno.txt").write_text("W\nN2\n" * 10)  # 20 x 2 s
    manifest = {
        "name": "tiny-files",
        "recordings": {"glob": "sub-*_raw.fif", "match": r"sub-(?P<subject>\d+)_raw",
                       "hypnogram": "sub-{subject}_hypno.txt"},
        "preprocessing": {"montage": "colin27_1020"},
        "epochs": {"mode": "scored", "length": 2.0},
    }  # fmt: skip
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(manifest))
    config = {
        "data": {"manifest": "data.yaml", "root": "data"},
        "decode": {"target": "stage", "context": None, "cv": 2,
                   "params": {"max_epochs": 2, "patience": 2, "batch_size": 16}},
        "attribute": {"methods": ["saliency"]},
        "evaluate": {"n_epochs": 8, "faithfulness": {"n_steps": 4, "patch": [1, 20]},
                     "randomization": {"n_epochs": 4}},
        "stats": {"n_permutations": 10, "bin": 0.5},
    }  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    first = run_study(tmp_path / "study.yaml", out, device="cpu", verbose=False)
    assert first["skipped"] == []
    assert run_study(tmp_path / "study.yaml", out, verbose=False)["ran"] == []
    before = pd.read_csv(out / "tables" / "predictions.csv")
    # the same file name, size and manifest: only the recording's content changed
    _write_recording(root / "sub-02_raw.fif", seed=99)
    files = run_study(tmp_path / "study.yaml", out, device="cpu", verbose=False)
    assert files["ran"] == first["ran"]  # epochs and every stage after it
    assert files["ran"][:2] == ["epochs", "decode"]
    after = pd.read_csv(out / "tables" / "predictions.csv")
    assert not np.allclose(before["proba_W"], after["proba_W"])


#: ``eegsal`` as a terminal runs it: Ctrl-C raises KeyboardInterrupt (even when
#: the test runner was started with SIGINT ignored, as background jobs are).
#: torch's optimizers import torch._dynamo (some 800 modules, seconds) at the
#: first step; an interrupt that lands in an import's lock callback is lost
#: ("Exception ignored", in any Python program), so the child imports it first
#: and the signal lands in training.
CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "import torch._dynamo, torch.profiler; "
    "from eegsal.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_ctrl_c_while_training_exits_130_and_a_rerun_completes(tmp_path, capsys):
    import json
    import os
    import signal
    import socket
    import sys
    import time

    config = {
        **TINY,
        "decode": {**TINY["decode"], "context": None,
                   # about 6 s of training here: the interrupt lands in it
                   "params": {"max_epochs": 60, "patience": 60, "batch_size": 2}},
        "attribute": {"methods": ["saliency"]},
    }  # fmt: skip
    fname = tmp_path / "study.yaml"
    fname.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]),
               OMP_NUM_THREADS="1")  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "run", str(fname), "--out", str(out), "-q",
         "--device", "cpu"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stages = out / "stages.json"
    deadline = time.monotonic() + 60
    while not (stages.exists() and "epochs" in json.loads(stages.read_text())):
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # training the first fold
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert set(json.loads(stages.read_text())) == {"epochs"}  # decode unfinished
    assert not (out / "decoding" / "content" / "config.json").exists()
    assert not (out / ".eegsal.lock").exists()  # released on the way out
    # as if the run had been killed instead: its lock and temporaries are left
    (out / ".eegsal.lock").write_text(
        json.dumps({"pid": child.pid, "host": socket.gethostname()})
    )
    (out / "tables" / ".scores.abcd_123.tmp-scores.csv").write_text("half")
    (out / "decoding" / ".content.x1y2z3w4.tmp").mkdir(parents=True)
    (out / "decoding" / ".content.x1y2z3w4.tmp" / "fold-0.pt").write_text("half")
    mine = [out / "tables" / ".notes.tmp", out / "tables" / "notes.tmp-1"]
    for f in mine:
        f.write_text("the user's")
    capsys.readouterr()
    assert main(["run", str(fname), "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"from process {child.pid}, which no longer runs" in err
    assert "[epochs] unchanged: skipped" in err and "[decode] running" in err
    assert {"decode", "stats", "report"} <= set(json.loads(stages.read_text()))
    for table in ("scores", "predictions", "lmm", "faithfulness_auc"):
        assert (out / "tables" / f"{table}.csv").is_file()
    # eegsal's temporaries are removed, and nothing else
    assert sorted(out.rglob(".*tmp*")) == [mine[0]] and mine[1].is_file()
    assert not (out / ".eegsal.lock").exists()


def test_a_folder_another_run_writes_to_is_refused(tmp_path, capsys):
    import json
    import os
    import socket

    fname = tmp_path / "study.yaml"
    fname.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".eegsal.lock"
    for owner in ({"pid": os.getpid(), "host": socket.gethostname()},  # alive
                  {"pid": 1, "host": "another-host"}):  # fmt: skip
        lock.write_text(json.dumps(owner))
        assert main(["run", str(fname), "--out", str(out), "-q"]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert f"another eegsal run (process {owner['pid']} on {owner['host']})" in err
        assert json.loads(lock.read_text()) == owner  # left to its owner
    assert sorted(p.name for p in out.iterdir()) == [".eegsal.lock"]


def test_a_damaged_stages_file_is_named_with_the_fix(tmp_path, capsys):
    fname = tmp_path / "study.yaml"
    fname.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    out.mkdir()
    (out / "stages.json").write_text('{"epochs": "abc" "decode": 1}')
    assert main(["run", str(fname), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{out / 'stages.json'}: not valid JSON" in err and "--force" in err
    (out / "stages.json").write_text('["epochs"]')
    assert main(["run", str(fname), "--out", str(out), "-q"]) == 1
    assert "not a record of stage names" in capsys.readouterr().err


def test_similarity_compares_the_context_class_of_the_explained_content(tmp_path):
    """'flying' goes with REM: the stage decoder's REM maps are compared, not
    those of N1 (class 0 of the stage decoder), and the report says so."""
    from eegsal._study import Study
    from eegsal.attribution import read_attributions
    from eegsal.report import _similarity_caption

    cfg = read_config({
        "data": {"simulate": {"n_subjects": 4, "n_epochs": 30, "epoch_length": 1.0,
                              "scenario": "confound", "confound": 0.8}},
        "decode": {"cv": 2, "params": {"max_epochs": 1, "batch_size": 32}},
        "attribute": {"methods": ["saliency"], "explain": "other"},
    })  # fmt: skip
    study = Study(cfg, tmp_path, "cpu", None)
    study.make_epochs()
    study.decode()
    study.decode_context()
    study.attribute("saliency")
    content = read_attributions(tmp_path / "attributions" / "saliency.h5")
    assert content.params["label"] == "1"  # 'other', by name
    cfg["attribute"]["explain"] = "flying"
    study = Study(cfg, tmp_path, "cpu", None)
    study.attribute("saliency")
    study.similarity()
    stage = read_attributions(tmp_path / "attributions" / "stage_decoder_saliency.h5")
    classes = [str(c) for c in study._result("stage").classes]
    assert classes[0] == "N1" and stage.params["label"] == str(classes.index("REM"))
    table = pd.read_csv(tmp_path / "tables" / "similarity.csv")
    assert (table["target_class"] == "flying").all()
    assert (table["context_class"] == "REM").all()
    meta = study._epochs().metadata
    share = (meta.loc[meta["stage"] == "REM", "content"] == "flying").mean()
    assert table["p_target_given_context"].iloc[0] == pytest.approx(share)
    assert _similarity_caption(table, "content", "stage").startswith(
        "Maps of the content decoder for 'flying' compared with the stage "
        "decoder's maps for 'REM', the stage with the highest P(flying | stage) = "
    )
    cfg["attribute"]["explain"] = "dreamless"  # a config read without the data
    with pytest.raises(ConfigError, match="'dreamless' is not a class of the content"):
        Study(cfg, tmp_path, "cpu", None).attribute("saliency")


def test_one_seed_for_the_whole_study_from_the_command_line(
    tmp_path, monkeypatch, capsys
):
    """--seed replaces the config's seeds but the data's, is written to
    config.yaml and reruns what it changes; each stage only writes its files."""
    import json

    from eegsal import pipeline

    run = pipeline._Stages.run

    def touch_outputs(self, name, key, outputs, fn):
        def fake():
            for o in outputs:
                (self.out / o).parent.mkdir(parents=True, exist_ok=True)
                (self.out / o).write_text(name)

        return run(self, name, key, outputs, fake)

    monkeypatch.setattr(pipeline._Stages, "run", touch_outputs)
    config = {
        **TINY,
        "data": {"simulate": {**TINY["data"]["simulate"], "seed": 3}},
        "attribute": {
            "methods": ["saliency", "smoothgrad"],
            "params": {"smoothgrad": {"seed": 1}},
        },
        "evaluate": {**TINY["evaluate"],
                     "faithfulness": {**TINY["evaluate"]["faithfulness"], "seed": 2}},
    }  # fmt: skip
    fname = tmp_path / "study.yaml"
    fname.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    keys = {}
    for seed in (7, 8, 8):
        argv = ["run", str(fname), "--out", str(out), "--seed", str(seed), "-q"]
        assert main(argv) == 0
        cfg = yaml.safe_load((out / "config.yaml").read_text())
        assert cfg["decode"]["seed"] == seed
        assert cfg["attribute"]["params"]["smoothgrad"]["seed"] == seed
        assert cfg["evaluate"]["faithfulness"]["seed"] == seed
        assert cfg["data"]["simulate"]["seed"] == 3  # the data are kept
        assert cfg == {**cfg, **{k: read_config(config)[k] for k in ("name", "stats")}}
        keys.setdefault(seed, []).append(json.loads((out / "stages.json").read_text()))
    first, second, again = keys[7][0], *keys[8]
    assert first["epochs"] == second["epochs"]
    changed = {k for k in first if first[k] != second[k]}
    assert changed == set(first) - {"epochs"}
    assert again == second  # the same seed: every stage unchanged
    assert "(0 stages run" in capsys.readouterr().out
    # without --seed, the config's own seeds
    assert main(["run", str(fname), "--out", str(out), "-q"]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["decode"]["seed"] == 0
    assert cfg["attribute"]["params"]["smoothgrad"]["seed"] == 1
    for bad in ("-1", "x"):
        with pytest.raises(SystemExit):
            main(["run", str(fname), "--seed", bad])
    with pytest.raises(ConfigError, match="seed"):
        run_study(config, out, seed=-1)
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "data.simulate.seed) is kept" in text


def test_covariates_of_the_config_enter_every_test_of_the_verdict(tmp_path):
    """``stats.covariates``: bins in the within-context test, the regression on
    the logit, and one verdict in verdict.csv, summary.txt and the report."""
    from eegsal._study import Study
    from eegsal.report import make_report
    from eegsal.stats import context_regression, verdict_text

    cfg = read_config({
        "data": {"simulate": {"n_subjects": 4, "n_epochs": 30, "epoch_length": 1.0,
                              "scenario": "null", "depth_confound": 2.0}},
        "decode": {"cv": 2, "context_decoder": False,
                   "params": {"max_epochs": 2, "batch_size": 32}},
        "stats": {"within_permutations": 40, "covariates": ["log_delta_power"],
                  "n_bins": 2},
    })  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    study = Study(cfg, tmp_path, "cpu", None)
    study.make_epochs()
    study.decode()
    study.confound()
    tables = tmp_path / "tables"
    within = pd.read_csv(tables / "within_stage.csv")
    name = "stage x log_delta_power"
    assert within.columns[0] == name
    assert within[name].iloc[:2].tolist() == [
        "N1, log_delta_power q1", "N1, log_delta_power q2"
    ]  # fmt: skip
    regression = pd.read_csv(tables / "regression.csv")
    direct = context_regression(study._result("content"), "stage",
                                covariates="log_delta_power", n_bins=2,
                                n_permutations=40, verbose=False)  # fmt: skip
    pd.testing.assert_frame_equal(regression, direct, check_dtype=False)
    subjects = pd.read_csv(tables / "subject_scores.csv")
    verdict = pd.read_csv(tables / "verdict.csv")
    overall = verdict.loc[verdict["test"].str.startswith("overall")]
    text = verdict_text(within, subjects, context=name, regression=regression,
                        overall=overall["balanced_accuracy"].iloc[0])  # fmt: skip
    assert verdict["reading"].iloc[-1] == text
    assert "log_delta_power" in text and "adjusted for" in verdict["test"].iloc[-2]
    make_report(tmp_path, verbose=False)
    assert text in (tmp_path / "summary.txt").read_text()
    # without covariates, a stale regression table is not left to the report
    cfg["stats"]["covariates"] = None
    Study(cfg, tmp_path, "cpu", None).confound()
    assert not (tables / "regression.csv").exists()
    assert "stage" in pd.read_csv(tables / "within_stage.csv").columns
    with pytest.raises(ConfigError, match="stats.covariates: expected a metadata"):
        read_config({"stats": {"covariates": ["a", "a"]}})
    with pytest.raises(ConfigError, match="stats.covariates: .* set decode.context"):
        read_config({"stats": {"covariates": "depth"}, "decode": {"context": None}})


def test_a_rank_deficient_interaction_falls_back_to_the_additive_model(
    tmp_path, caplog
):
    """A stage holding one content only: stats fits content + stage, and says so;
    a formula without an interaction to drop still fails, by the error's class."""
    import logging

    import mne

    from eegsal._study import Study
    from eegsal.attribution import Attributions
    from eegsal.stats import RankDeficientError

    rng = np.random.default_rng(0)
    meta = pd.DataFrame({
        "subject": np.repeat(["s0", "s1", "s2", "s3"], 12),
        "content": rng.choice(["flying", "other"], 48),
        "stage": np.tile(["N2", "N3", "REM"], 16),
    })  # fmt: skip
    meta.loc[meta["stage"] == "REM", "content"] = "flying"
    info = mne.create_info(["Fz", "Cz", "Pz", "Oz"], 100.0, "eeg")
    info.set_montage("colin27_1020")
    data = rng.standard_normal((48, 4, 5)).astype(np.float32)
    attr = Attributions(data, info, np.arange(5) / 100.0, metadata=meta,
                        method="saliency", target="logit")  # fmt: skip
    attr.save(tmp_path / "attributions" / "saliency.h5")
    cfg = read_config({"attribute": {"methods": ["saliency"]},
                       "stats": {"bin": None, "n_permutations": 5}})  # fmt: skip
    assert cfg["stats"]["formula"] == "content * C(stage, Sum)"
    with caplog.at_level(logging.WARNING, logger="eegsal"):
        Study(cfg, tmp_path, "cpu", None).stats()
    assert "is rank deficient" in caplog.text
    assert "fitting content + C(stage, Sum) instead" in caplog.text
    lmm = pd.read_csv(tmp_path / "tables" / "lmm.csv")
    assert not lmm["term"].str.contains(":").any()
    cfg["stats"]["formula"] = "content + stage + C(content)"
    with pytest.raises(RankDeficientError, match="rank deficient"):
        Study(cfg, tmp_path, "cpu", None).stats()
