"""The ``eegsal`` command line: its parser and :func:`main`.

The bodies of the subcommands live in :mod:`eegsal._cli_commands`.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import sys
from collections.abc import Sequence

import yaml

from eegsal import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, not a usage dump."""

    def error(self, message: str):  # noqa: D102
        self.exit(
            EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n"
        )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a seed, an integer >= 0, got {text!r}"
        )
    return value


def _device(text: str) -> str:
    """Parse a device name: 'auto', 'cpu', 'cuda' or 'cuda:N'."""
    if text in ("auto", "cpu", "cuda") or (
        text.startswith("cuda:") and text[5:].isdigit()
    ):
        return text
    raise argparse.ArgumentTypeError(
        f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {text!r}"
    )


def _study_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--n-subjects",
        type=_positive_int,
        default=8,
        metavar="N",
        help="simulated subjects (default: %(default)s)",
    )
    parser.add_argument(
        "--n-epochs",
        type=_positive_int,
        default=60,
        metavar="N",
        help="epochs per subject (default: %(default)s)",
    )
    parser.add_argument(
        "--scenario",
        default="content",
        choices=["content", "confound", "both", "null"],
        help="simulated scenario (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default: %(default)s)"
    )


def _device_verbosity(parser: argparse.ArgumentParser, device: bool = True) -> None:
    if device:
        parser.add_argument(
            "--device",
            default="auto",
            type=_device,
            help="'auto' (GPU when present), 'cpu' or 'cuda' (default: %(default)s)",
        )
        parser.add_argument(
            "--n-jobs",
            type=int,
            default=None,
            metavar="N",
            help="parallel processes for folds and permutations (-1: all cores)",
        )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log details, and show tracebacks on errors",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress messages or bars"
    )


def _amplitude(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected an amplitude > 0 (SD of each channel), got {text!r}"
        )
    return value


def _calibrate_parser(sub) -> None:
    cal = sub.add_parser(
        "calibrate",
        help="false-claim rate and power of a study, on its own data",
        description=(
            "Run the study's decoder and verdict on repeated label draws over the "
            "config's data: labels that follow the context only (no signal; a "
            "claim is false) and labels whose positive epochs carry a planted "
            "signal of a few amplitudes (the power). Writes "
            "tables/calibration_draws.csv, tables/calibration_summary.csv (with "
            "95 % Clopper-Pearson intervals and the binomial limit of 5 %), "
            "figures/calibration.png/.svg and calibration.txt, and prints the "
            "conclusion."
        ),
    )
    cal.add_argument("config", metavar="CONFIG", help="a YAML study config")
    cal.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: CONFIG without .yaml, plus -calibration)",
    )
    cal.add_argument(
        "--n",
        type=_positive_int,
        default=50,
        metavar="N",
        help="label draws per amplitude (default: %(default)s)",
    )
    cal.add_argument(
        "--amplitudes",
        type=_amplitude,
        nargs="+",
        default=[0.25, 0.5, 1.0, 2.0],
        metavar="A",
        help="planted amplitudes, in SD of each channel (default: 0.25 0.5 1 2)",
    )
    cal.add_argument(
        "--waveform",
        default="burst",
        choices=["burst", "erp", "band_power"],
        help="planted signal (default: %(default)s)",
    )
    cal.add_argument(
        "--frequency",
        type=float,
        default=10.0,
        metavar="HZ",
        help="frequency of the burst (default: %(default)s Hz)",
    )
    cal.add_argument(
        "--band",
        type=float,
        nargs=2,
        default=[8.0, 12.0],
        metavar=("LOW", "HIGH"),
        help="band of band_power (default: 8 12 Hz)",
    )
    cal.add_argument(
        "--channels",
        nargs="+",
        metavar="CH",
        help="channels of the signal (default: the parieto-occipital ones)",
    )
    cal.add_argument(
        "--window",
        type=float,
        nargs=2,
        metavar=("START", "END"),
        help="time window of the signal, s (default: the middle half of the epoch)",
    )
    cal.add_argument(
        "--maps",
        action="store_true",
        help="also run the study's maps test (stats.formula, cluster test; with "
        "stats.split the split maps); slower",
    )
    cal.add_argument(
        "--seed", type=int, default=0, help="seed of the draws (default: 0)"
    )
    _device_verbosity(cal)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``eegsal`` argument parser.

    Returns
    -------
    parser : argparse.ArgumentParser
        The parser with its subcommands.
    """
    parser = _Parser(
        prog="eegsal",
        description=(
            "Explain EEG decoders: train a CNN on labelled EEG, map which channels "
            "and times drove its decisions, and test whether it reads the content "
            "(e.g. a dream report) or only its context (e.g. the sleep stage)."
        ),
        epilog="Run 'eegsal COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"eegsal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run a study from a YAML config (resumable)",
        description=(
            "Run every stage of a study config (data, decoding, attribution, "
            "evaluation, statistics, report) into one output folder. Stages whose "
            "settings and inputs are unchanged are skipped, so a rerun after a "
            "crash or an edit resumes where it must. See analyses/demo_study.yaml."
        ),
    )
    run.add_argument("config", metavar="CONFIG", help="a YAML study config")
    run.add_argument(
        "--out", metavar="DIR", help="output folder (default: CONFIG without .yaml)"
    )
    run.add_argument(
        "--force", action="store_true", help="rerun every stage, even unchanged ones"
    )
    run.add_argument(
        "--seed",
        type=_seed,
        metavar="N",
        help=(
            "one seed for the whole study, in place of the config's seeds "
            "(decode.seed, and any seed of attribute.params and "
            "evaluate.faithfulness); the simulator's data seed "
            "(data.simulate.seed) is kept, so the data stay the same "
            "(default: the config's seeds)"
        ),
    )
    _device_verbosity(run)
    _calibrate_parser(sub)
    simulate = sub.add_parser(
        "simulate",
        help="simulate a sleep study and save it as MNE epochs",
        description=(
            "Simulate sleep EEG epochs with a known content signal and a tunable "
            "stage/content confound; save them as -epo.fif (labels, stages and "
            "subjects in the metadata) and the ground truth as JSON beside them."
        ),
    )
    simulate.add_argument("out", metavar="FILE", help="output file, ending in -epo.fif")
    _study_size(simulate)
    simulate.add_argument(
        "--overwrite", action="store_true", help="replace an existing file"
    )
    _device_verbosity(simulate, device=False)
    report = sub.add_parser(
        "report",
        help="(re)build the HTML report of a study folder",
        description="Build OUT_DIR/report.html and summary.txt from a study's files.",
    )
    report.add_argument("out_dir", metavar="OUT_DIR", help="a folder of 'eegsal run'")
    report.add_argument(
        "--out",
        metavar="DIR",
        help="write report.html and summary.txt here instead (for a study on "
        "read-only media)",
    )
    _device_verbosity(report, device=False)
    demo = sub.add_parser(
        "demo",
        help="run the default study on simulated sleep EEG (about 2 minutes)",
        description=(
            "Simulate a small sleep study with a known content signal, decode the "
            "content (and the stage) with EEGNet under subject-grouped "
            "cross-validation, map saliency and integrated gradients, test the "
            "maps and the content effect within stages, and write figures, CSV "
            "tables, summary.txt and report.html into OUT."
        ),
    )
    demo.add_argument(
        "--out",
        default="eegsal-demo",
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    _study_size(demo)
    demo.add_argument(
        "--cv",
        type=_positive_int,
        default=4,
        metavar="K",
        help="cross-validation folds over subjects (default: %(default)s)",
    )
    demo.add_argument(
        "--max-epochs",
        type=_positive_int,
        default=12,
        metavar="N",
        help="training epochs per fold (default: %(default)s)",
    )
    _device_verbosity(demo)
    epochs = sub.add_parser(
        "epochs",
        help="load a dataset manifest into epochs and count them",
        description=(
            "Read the recordings a YAML manifest describes (see data_manifests/), "
            "epoch them with their labels, print the epochs per subject and label "
            "and, when the epochs have a content and a context (stage), the "
            "content x context table per subject (the confound check), and "
            "optionally save them as MNE's -epo.fif."
        ),
    )
    epochs.add_argument("manifest", metavar="MANIFEST", help="a YAML manifest")
    epochs.add_argument(
        "--root",
        metavar="DIR",
        help="data root (overrides the manifest and EEGSAL_DATA)",
    )
    epochs.add_argument(
        "--out", metavar="FILE", help="save the epochs here (must end in -epo.fif)"
    )
    epochs.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out file"
    )
    epochs.add_argument(
        "--no-cache", action="store_true", help="read every file, ignore the cache"
    )
    _device_verbosity(epochs, device=False)
    predict = sub.add_parser(
        "predict",
        help="predict new epochs with a saved decoding result",
        description=(
            "Predict each epoch of an -epo.fif file with a result saved by "
            "DecodingResult.save (the model refitted on all subjects when the "
            "result has one, else the mean of the fold models' probabilities) and "
            "write a CSV table: the epochs' metadata, y_pred and proba_<class>. "
            "The epochs must have the result's EEG channels (any order), sampling "
            "rate and epoch length."
        ),
    )
    predict.add_argument("result", metavar="RESULT_DIR", help="a saved result")
    predict.add_argument("epochs", metavar="EPOCHS", help="an MNE -epo.fif file")
    predict.add_argument(
        "--out", required=True, metavar="FILE", help="output CSV table"
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="replace an existing table"
    )
    predict.add_argument(
        "--device",
        default="auto",
        help="'auto' (GPU when present), 'cpu' or 'cuda' (default: %(default)s)",
    )
    _device_verbosity(predict, device=False)
    return parser


#: Exceptions that bad input (a config, a manifest, a damaged or foreign file)
#: raises; each ends the command with exit code 1 and one line on stderr.
_BAD_INPUT = (
    ValueError,  # ConfigError, ManifestError, JSON and Unicode errors
    TypeError,
    OSError,  # missing and unreadable files, FolderInUseError, HDF5 errors
    yaml.YAMLError,
    pickle.UnpicklingError,
    EOFError,
)


def _one_line(err: BaseException) -> str:
    """Return the message of ``err`` on one line (YAML errors span several)."""
    text = " ".join(str(err).split())
    if isinstance(err, ValueError | TypeError | OSError):
        return text
    return f"{type(err).__name__}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eegsal`` command.

    Parameters
    ----------
    argv : sequence of str | None
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    code : int
        0 on success, 1 when the work failed on bad input, 2 for bad usage,
        130 when interrupted (Ctrl-C).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    # progress (messages and bars, on stderr) unless --quiet; details with --verbose
    log = logging.getLogger("eegsal")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(
        logging.DEBUG
        if args.verbose
        else logging.WARNING
        if args.quiet
        else logging.INFO
    )
    try:
        from eegsal._cli_commands import COMMANDS

        return COMMANDS[args.command](args)
    except _BAD_INPUT as err:
        if args.verbose:
            raise
        sys.stderr.write(f"eegsal {args.command}: error: {_one_line(err)}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:  # finished stages are kept; a rerun resumes
        sys.stderr.write(
            f"eegsal {args.command}: interrupted; the stage that was running is "
            "redone by the next run\n"
            if args.command in ("run", "demo")
            else f"eegsal {args.command}: interrupted\n"
        )
        return EXIT_INTERRUPTED
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
