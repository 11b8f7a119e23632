"""The ``eegsal`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from eegsal import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


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
    demo = sub.add_parser(
        "demo",
        help="run the default study on simulated sleep EEG (about a minute)",
        description=(
            "Simulate a small sleep study with a known content signal, decode the "
            "content with EEGNet under subject-grouped cross-validation, compute "
            "gradient saliency maps, and write a topographic figure, CSV tables and "
            "a text summary into OUT."
        ),
    )
    demo.add_argument(
        "--out",
        default="eegsal-demo",
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    demo.add_argument(
        "--n-subjects",
        type=_positive_int,
        default=8,
        metavar="N",
        help="simulated subjects (default: %(default)s)",
    )
    demo.add_argument(
        "--n-epochs",
        type=_positive_int,
        default=60,
        metavar="N",
        help="epochs per subject (default: %(default)s)",
    )
    demo.add_argument(
        "--scenario",
        default="content",
        choices=["content", "confound", "both", "null"],
        help="simulated scenario (default: %(default)s)",
    )
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
        default=25,
        metavar="N",
        help="training epochs per fold (default: %(default)s)",
    )
    demo.add_argument(
        "--device",
        default="auto",
        help="'auto' (GPU when present), 'cpu' or 'cuda' (default: %(default)s)",
    )
    demo.add_argument(
        "--seed", type=int, default=0, help="random seed (default: %(default)s)"
    )
    demo.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log details, and show tracebacks on errors",
    )
    demo.add_argument(
        "-q", "--quiet", action="store_true", help="no progress messages or bars"
    )
    epochs = sub.add_parser(
        "epochs",
        help="load a dataset manifest into epochs and count them",
        description=(
            "Read the recordings a YAML manifest describes (see data_manifests/), "
            "epoch them with their labels, print the epochs per subject and label, "
            "and optionally save them as MNE's -epo.fif."
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
        "--no-cache", action="store_true", help="read every file, ignore the cache"
    )
    epochs.add_argument(
        "-v", "--verbose", action="store_true", help="log details and tracebacks"
    )
    epochs.add_argument(
        "-q", "--quiet", action="store_true", help="no progress messages or bars"
    )
    return parser


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
    )
    sys.stdout.write(files["summary"].read_text())
    return EXIT_OK


def _epochs(args: argparse.Namespace) -> int:
    from eegsal._io import atomic_path, check_fname
    from eegsal.data import load_manifest

    if args.out and not args.out.endswith("-epo.fif"):
        raise ValueError(f"--out {args.out}: MNE epochs files end in -epo.fif.")
    out = check_fname(args.out, overwrite=False) if args.out else None
    epochs = load_manifest(args.manifest, args.root, cache=not args.no_cache)
    meta = epochs.metadata
    label = next((c for c in ("content", "stage") if c in meta), None)
    sys.stdout.write(
        f"{len(epochs)} epochs, {len(epochs.ch_names)} channels, "
        f"{epochs.info['sfreq']:g} Hz, {epochs.tmin:g} to {epochs.tmax:g} s\n"
    )
    if label is not None:
        table = meta.groupby(["subject", label]).size().unstack(fill_value=0)
        sys.stdout.write(table.to_string() + "\n")
    if out is not None:
        with atomic_path(out) as tmp:
            epochs.save(tmp, overwrite=True, verbose=False)
        sys.stdout.write(f"saved {out}\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eegsal`` command.

    Parameters
    ----------
    argv : sequence of str | None
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    code : int
        0 on success, 1 when the work failed on bad input, 2 for bad usage.
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
        return {"demo": _demo, "epochs": _epochs}[args.command](args)
    except (ValueError, TypeError, OSError) as err:
        if args.verbose:
            raise
        sys.stderr.write(f"eegsal {args.command}: error: {err}\n")
        return EXIT_ERROR
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
