"""Calibrate on real EEG: false claims and power on the motor recordings
=====================================================================

Could a study of these recordings, as designed (its subjects, epochs and
decoder), detect a content effect of a given size, and would it keep quiet
when there is none? :func:`eegsal.pipeline.calibrate` answers on the real
EEG of PhysioNet's Motor Movement/Imagery dataset (Schalk et al., 2004;
``data_manifests/eegmmidb_motor.yaml``): awake EEG, band-pass 7-30 Hz,
0.5-2.5 s after each fist cue, resampled to 80 Hz.

A label ("present" / "absent") is drawn for each epoch with a confound:
P(present | executed) = 0.7 and P(present | imagined) = 0.3, the context
being the run (executed vs imagined movement), which a decoder can partly
read from the EEG itself. Then

- amplitude 0: the labels follow the context only and the data are left as
  recorded: a content claim (:func:`eegsal.stats.content_verdict`, the
  within-context permutation test and the across-subject Wilcoxon test both
  at p < 0.05) is a false claim;
- amplitudes > 0: the same labels, and an alpha burst (10 Hz, Tukey taper)
  planted over the occipital channels O1, Oz, O2 at 1.0-2.0 s in the
  "present" epochs, of that RMS in SD of each channel
  (:func:`eegsal.simulate.plant_content`): the share of claims is the power.

The default size (6 subjects, runs 3/4/7/8: 360 epochs of 16 channels x 2 s
at 80 Hz; ShallowConvNet, 3-fold GroupKFold, 6 training epochs; 5 draws at
each of the amplitudes 0, 0.25, 0.5 and 1 SD; 100 within-context
permutations) ran in 252 s on 2 busy CPU cores. Five draws give wide
intervals (a 95 % Clopper-Pearson interval spans about 0.5): use ``--n 50``
or more for a real calibration.

Run: python analyses/calibrate_motor.py [OUT_DIR] [--n 5] [--subjects 6]
     [--amplitudes 0.25 0.5 1] [--max-epochs 6] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import yaml

from eegsal.pipeline import calibrate

MANIFEST = Path(__file__).parents[1] / "data_manifests" / "eegmmidb_motor.yaml"
#: Channels kept: the occipital ones of the planted signal, and a spread of others.
CHANNELS = ["Fz", "F3", "F4", "C3", "Cz", "C4", "CP3", "CP4", "P3", "Pz", "P4",
            "PO7", "PO8", "O1", "Oz", "O2"]  # fmt: skip


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the calibration and print its summary; return the summary table."""
    parser = argparse.ArgumentParser(
        description="Calibrate eegsal's content verdict on the real motor EEG "
        "(eegmmidb): false-claim rate with context-only labels, and power for "
        "an occipital alpha burst planted at a few amplitudes.",
    )
    parser.add_argument("out", nargs="?", default="analyses-output/calibrate_motor",
                        help="output folder (default: %(default)s)")  # fmt: skip
    parser.add_argument("--n", type=int, default=5, help="draws per amplitude")
    parser.add_argument("--subjects", type=int, default=6, choices=range(5, 9),
                        metavar="5-8", help="subjects (default: 6)")  # fmt: skip
    parser.add_argument("--amplitudes", type=float, nargs="+", default=[0.25, 0.5, 1],
                        help="planted RMS, in SD of each channel")  # fmt: skip
    parser.add_argument("--max-epochs", type=int, default=6,
                        help="training epochs per fold")  # fmt: skip
    parser.add_argument("--permutations", type=int, default=100,
                        help="within-context permutations per draw")  # fmt: skip
    parser.add_argument("--n-jobs", type=int, default=None, help="parallel draws")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    manifest = yaml.safe_load(MANIFEST.read_text())
    manifest["name"] = f"eegmmidb_motor_calibration_{args.subjects}"
    manifest["root"] = str((MANIFEST.parent / manifest["root"]).resolve())
    manifest["recordings"]["include"]["subject"] = [
        f"{s:03d}" for s in range(1, args.subjects + 1)
    ]
    manifest["recordings"]["include"]["run"] = ["03", "04", "07", "08"]
    manifest["preprocessing"].update(picks=CHANNELS, sfreq=80.0)
    (out / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    config = {
        "name": "Motor EEG (eegmmidb): an occipital alpha burst, confounded "
        "with executed vs imagined",
        "data": {"manifest": str((out / "manifest.yaml").resolve())},
        "decode": {
            "target": "planted", "context": "context", "model": "shallow",
            "cv": 3, "context_decoder": False,
            "params": {"max_epochs": args.max_epochs, "patience": args.max_epochs,
                       "batch_size": 32, "lr": 0.003},
        },
        "stats": {"within_permutations": args.permutations},
    }  # fmt: skip
    t0 = time.perf_counter()
    files = calibrate(
        config, out, n=args.n, amplitudes=args.amplitudes,
        channels=["O1", "Oz", "O2"], window=(1.0, 2.0), waveform="burst",
        frequency=10.0, rate_by={"executed": 0.7, "imagined": 0.3},
        device="cpu", seed=args.seed, n_jobs=args.n_jobs,
    )  # fmt: skip
    summary = pd.read_csv(files["summary"])
    print(summary.round(3).to_string(index=False))
    print(files["sentence"])
    print(f"{time.perf_counter() - t0:.0f} s; tables in {out / 'tables'}")
    return summary


if __name__ == "__main__":
    main()
