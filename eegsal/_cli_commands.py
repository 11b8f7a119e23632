"""The bodies of the ``eegsal`` subcommands.

Each takes the parsed arguments (:func:`eegsal.cli.build_parser`) and returns
the exit code; :func:`eegsal.cli.main` calls them, and turns the errors of bad
input into one line on stderr. They import the package lazily, so that
``eegsal --help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eegsal.cli import EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    import mne
    import pandas as pd

    from eegsal._io import atomic_path, check_fname
    from eegsal.decoding import DecodingResult

    out = check_fname(args.out, args.overwrite)
    try:
        result = DecodingResult.load(args.result)
    except (ValueError, OSError, KeyError) as err:
        raise ValueError(f"{args.result}: {err}") from None
    try:
        epochs = mne.read_epochs(args.epochs, preload=False, verbose=False)
        proba = result.predict_proba(epochs, device=args.device)
    except (ValueError, OSError) as err:
        raise ValueError(f"{args.epochs}: {err}") from None
    table = (
        pd.DataFrame(index=range(len(epochs)))
        if epochs.metadata is None
        else epochs.metadata.reset_index(drop=True).copy()
    )
    table["y_pred"] = result.classes[proba.argmax(axis=1)]
    for i, c in enumerate(result.classes):
        table[f"proba_{c}"] = proba[:, i]
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    sys.stdout.write(f"{len(table)} epochs predicted -> {out}\n")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from eegsal.pipeline import run_demo

    files = run_demo(
        args.out,
        n_subjects=args.n_subjects,
        n_epochs=args.n_epochs,
        scenario=args.scenario,
        cv=args.cv,
        max_epochs=args.max_epochs,
        device=args.device,
        seed=args.seed,
        n_jobs=args.n_jobs,
    )
    return _print_study(files)


def _print_study(files: dict) -> int:
    sys.stdout.write(files["summary"].read_text())
    sys.stdout.write(
        f"report: {files['report']} ({len(files['ran'])} stages run, "
        f"{len(files['skipped'])} unchanged)\n"
    )
    return EXIT_OK


def _calibrate(args: argparse.Namespace) -> int:
    from eegsal.pipeline import calibrate

    files = calibrate(
        args.config,
        args.out,
        n=args.n,
        amplitudes=args.amplitudes,
        channels=args.channels,
        window=None if args.window is None else tuple(args.window),
        waveform=args.waveform,
        frequency=args.frequency,
        band=tuple(args.band),
        maps=args.maps,
        device=args.device,
        seed=args.seed,
        n_jobs=args.n_jobs,
    )
    summary = _pd_table(files["summary"])
    sys.stdout.write(
        f"{summary}\n\n{files['sentence']}\n"
        f"tables: {files['draws']}, {files['summary']}\nfigure: {files['figure']}\n"
    )
    return EXIT_OK


def _pd_table(path) -> str:
    """Return a CSV table as aligned text (rates to 3 decimals)."""
    import pandas as pd

    return pd.read_csv(path).round(3).to_string(index=False)


def _run(args: argparse.Namespace) -> int:
    from eegsal.pipeline import run_study

    files = run_study(
        args.config,
        args.out,
        device=args.device,
        force=args.force,
        n_jobs=args.n_jobs,
        seed=args.seed,
    )
    return _print_study(files)


def _simulate(args: argparse.Namespace) -> int:
    import json

    from eegsal._io import atomic_path
    from eegsal.simulate import simulate_sleep_study

    out = _check_out(args.out, args.overwrite, "FILE")
    epochs, truth = simulate_sleep_study(
        n_subjects=args.n_subjects,
        n_epochs=args.n_epochs,
        scenario=args.scenario,
        seed=args.seed,
    )
    record = {
        "content_channels": list(truth.content_channels),
        "content_window": list(truth.content_window),
        "p_content": truth.p_content,
        "params": {k: v for k, v in truth.params.items() if _jsonable(v)},
    }
    truth_file = out.with_name(out.name.replace("-epo.fif", "-truth.json"))
    with atomic_path(out) as tmp:
        epochs.save(tmp, overwrite=True, verbose=False)
    with atomic_path(truth_file) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    counts = epochs.metadata.groupby(["stage", "content"]).size().unstack(fill_value=0)
    sys.stdout.write(
        f"{len(epochs)} epochs, {len(epochs.ch_names)} channels -> {out}\n"
        f"{counts.to_string()}\nground truth -> {truth_file}\n"
    )
    return EXIT_OK


def _check_out(fname: str, overwrite: bool, flag: str) -> Path:
    """Check an epochs file to write: its name, and no silent replacing."""
    if not fname.endswith("-epo.fif"):
        raise ValueError(f"{flag} {fname}: MNE epochs files end in -epo.fif.")
    if Path(fname).exists() and not overwrite:
        raise FileExistsError(
            f"{flag} {fname}: the file exists; pass --overwrite to replace it."
        )
    return Path(fname)


def _jsonable(value) -> bool:
    import json

    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def _report(args: argparse.Namespace) -> int:
    from eegsal.report import make_report

    fname = make_report(args.out_dir, dest=args.out)
    sys.stdout.write(f"report: {fname}\n")
    return EXIT_OK


def _epochs(args: argparse.Namespace) -> int:
    from eegsal._io import atomic_path
    from eegsal.data import load_manifest

    out = _check_out(args.out, args.overwrite, "--out") if args.out else None
    epochs = load_manifest(args.manifest, args.root, cache=not args.no_cache)
    meta = epochs.metadata
    sys.stdout.write(
        f"{len(epochs)} epochs, {len(epochs.ch_names)} channels, "
        f"{epochs.info['sfreq']:g} Hz, {epochs.tmin:g} to {epochs.tmax:g} s\n"
    )
    sys.stdout.write(_count_tables(meta))
    if out is not None:
        with atomic_path(out) as tmp:
            epochs.save(tmp, overwrite=True, verbose=False)
        sys.stdout.write(f"saved {out}\n")
    return EXIT_OK


def _count_tables(meta) -> str:
    """Tables of epochs per subject: by label, and content x context.

    The second table is the confound check a sleep researcher reads first:
    when the content goes with the context (e.g. "flying" mostly in REM), a
    decoder can read the context and look like it reads the content.
    """
    label = next((c for c in ("content", "stage") if c in meta), None)
    if label is None:
        return ""
    text = meta.groupby(["subject", label]).size().unstack(fill_value=0).to_string()
    context = next((c for c in ("stage", "context") if c in meta and c != label), None)
    if label != "content" or context is None:
        return text + "\n"
    table = meta.groupby(["subject", context, label]).size().unstack(fill_value=0)
    first = str(table.columns[0])
    share = meta.groupby(context)[label].apply(lambda s: (s == first).mean())
    return (
        f"{text}\n\ncontent x {context} per subject (if the content follows the "
        f"{context}, a decoder of the {context} looks like one of the content):\n"
        f"{table.to_string()}\n\nP({label} = {first} | {context}), all subjects: "
        + ", ".join(f"{k} {v:.2f}" for k, v in share.items())
        + "\n"
    )


#: The function of each subcommand.
COMMANDS = {"run": _run, "simulate": _simulate, "report": _report,
            "demo": _demo, "epochs": _epochs, "predict": _predict,
            "calibrate": _calibrate}  # fmt: skip
