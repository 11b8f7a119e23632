"""Real motor EEG (PhysioNet EEGBCI, 8 subjects): CNN decoders vs MNE's CSP+LDA.

Across subjects, for movement (T1/T2) vs rest (T0) and left vs right fist,
in executed (3, 7, 11) and in imagined (4, 8, 12) runs separately: 0.5-4.0 s
after the cue (``--window``; each cue lasts 4.1 s), band-pass 7-30 Hz, the 21
sensorimotor channels at 80 Hz.
Every decoder uses the same 4 subject-grouped folds (GroupKFold) and the
same epochs:

- CSP+LDA (``mne.decoding.CSP``, 4 components, log-variance, LDA), plain
  and on Euclidean-aligned epochs; with ``--root`` also on all 64 channels at
  160 Hz (the same epochs and folds);
- ShallowConvNet (eegsal) plain, with Euclidean alignment (He & Wu, 2019;
  each subject whitened with its own unlabeled epochs, the held-out subject
  included: transductive), aligned + augmented (time shift, sign flip, FT
  surrogate, channel dropout, mixup; for left vs right also the left/right
  channel swap with its label swap), and that as an ensemble of
  ``--n-seeds`` seeds.

Per decoder: balanced accuracy per fold, their mean, the pooled out-of-fold
balanced accuracy with its permutation threshold (the 95th percentile of
1,000 pooled scores with the labels shuffled within each subject, the
predictions kept; the threshold of this set of predictions for these
subjects, not a retrained null), the permutation p-value, and the training
time. A CSV row per decoder goes to ``--out``.

Run: python benchmarks/bench_motor_decoding.py [--root ../shared/data/eegmmidb]
     [--epochs CACHE-epo.fif] [--save-epochs CACHE-epo.fif] [--window 0.5 4.0]
     [--max-epochs 30] [--n-seeds 3] [--n-jobs 1] [--device auto]
     [--contrasts movement_rest left_right] [--runs executed imagined]
     [--out motor_decoding.csv]

``--save-epochs`` writes the 21-channel epochs of all six runs (movement vs
rest, single precision, ~20 MB) so that a machine without the recordings
(a GPU node) can run the benchmark with ``--epochs``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mne
import numpy as np
import pandas as pd
from mne.decoding import CSP
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline

from eegsal.alignment import align, fit_alignment
from eegsal.data import SENSORIMOTOR, load_eegbci
from eegsal.data.eegbci import EXECUTED_RUNS, IMAGINED_RUNS
from eegsal.decoding import TRANSFER_DECODER, decode
from eegsal.stats.permutations import shuffle

RUNS = {"executed": EXECUTED_RUNS, "imagined": IMAGINED_RUNS}
#: Every CNN: TRANSFER_DECODER's ShallowConvNet (0.31 s filters, 25 samples at
#: 80 Hz; one log band-power per filter over the whole epoch) and learning
#: rate; the variants differ in alignment, augmentation and seeds, and the
#: training budget comes from the command line (TRANSFER_DECODER's by default).
BUDGET = ("max_epochs", "patience", "min_epochs")
NETWORK = {
    k: v for k, v in TRANSFER_DECODER.items() if k not in ("align", "augment", *BUDGET)
}


mne.set_log_level("warning")


def load(
    args, contrast: str, runs: str
) -> tuple[mne.BaseEpochs, mne.BaseEpochs | None]:
    """The 21-channel epochs of one contrast and run type (and the 64-channel ones)."""
    if args.epochs:
        small = mne.read_epochs(args.epochs, verbose=False)
        small = small[small.metadata["run"].isin(RUNS[runs]).to_numpy()]
        if contrast == "left_right":
            small = small[(small.metadata["event"] != "T0").to_numpy()]
            meta = small.metadata.copy()
            meta["content"] = meta["event"].map({"T1": "left", "T2": "right"})
            small.metadata = meta
        return small, None
    tmin, tmax = args.window
    kw = dict(contrast=contrast, runs=RUNS[runs], tmin=tmin, tmax=tmax, verbose=False)
    small = load_eegbci(args.root, picks=SENSORIMOTOR, sfreq=80.0, **kw)
    return small, (load_eegbci(args.root, **kw) if args.full else None)


def save_epochs(args) -> None:
    """Write the 21-channel movement-vs-rest epochs of all six runs."""
    runs = RUNS["executed"] + RUNS["imagined"]
    small = load_eegbci(
        args.root, contrast="movement_rest", runs=runs, picks=SENSORIMOTOR,
        sfreq=80.0, tmin=args.window[0], tmax=args.window[1], verbose=False,
    )  # fmt: skip
    small.save(args.save_epochs, fmt="single", overwrite=True)
    print(f"wrote {args.save_epochs}: {small}")


def permutation_threshold(y, pred, groups, n: int = 1000, seed: int = 0):
    """Pooled balanced accuracy, its 95 % permutation threshold and p-value.

    The labels are shuffled within each subject (``eegsal.stats.permutations
    .shuffle``), the out-of-fold predictions kept.
    """
    rng = np.random.default_rng(seed)
    rows = [np.flatnonzero(groups == s) for s in np.unique(groups)]
    score = balanced_accuracy_score(y, pred)
    null = np.array(
        [balanced_accuracy_score(y[shuffle(len(y), rows, rng)], pred) for _ in range(n)]
    )
    return score, float(np.quantile(null, 0.95)), (1 + np.sum(null >= score)) / (n + 1)


def csp_decoders(epochs, folds, name: str) -> dict:
    """CSP+LDA on ``epochs``, plain and aligned: out-of-fold predictions and time."""
    X = epochs.get_data(units="uV").astype(np.float64)
    y = epochs.metadata["content"].to_numpy()
    g = epochs.metadata["subject"].astype(str).to_numpy()
    out = {}
    for aligned in (False, True):
        t0 = time.perf_counter()
        Xa = align(X, g, fit_alignment(X, g, "euclidean")) if aligned else X
        pred = np.empty(len(y), dtype=object)
        for train, test in folds:
            clf = make_pipeline(
                CSP(n_components=4, log=True), LinearDiscriminantAnalysis()
            )
            pred[test] = clf.fit(Xa[train], y[train]).predict(Xa[test])
        key = f"CSP+LDA, {name}" + (", aligned" if aligned else "")
        out[key] = (pred, time.perf_counter() - t0)
    return out


def cnn_variants(contrast: str, n_seeds: int) -> dict:
    """The ShallowConvNet decoders compared, as ``decode`` keywords."""
    augment = dict(TRANSFER_DECODER["augment"])  # "aligned + augmented"
    if contrast == "left_right":  # a lateralized task: swap hemispheres and labels
        augment["channel_symmetry"] = {"p": 0.5, "labels": {"left": "right"}}
    variants = {
        "ShallowConvNet": {},
        "ShallowConvNet, aligned": dict(align="euclidean"),
        "ShallowConvNet, aligned + augmented": dict(align="euclidean", augment=augment),
    }
    if n_seeds > 1:
        variants[f"ShallowConvNet, aligned + augmented, {n_seeds} seeds"] = dict(
            align="euclidean", augment=augment, n_seeds=n_seeds
        )
    return variants


def run_one(args, contrast: str, runs: str) -> list[dict]:
    """Every decoder on one contrast and run type; one row each."""
    small, full = load(args, contrast, runs)
    y = small.metadata["content"].to_numpy()
    g = small.metadata["subject"].astype(str).to_numpy()
    folds = list(GroupKFold(4).split(g, g, g))
    print(
        f"\n{contrast}, {runs} runs: {len(small)} epochs, {len(np.unique(g))} "
        f"subjects, 4 folds; CNN: {args.max_epochs} training epochs at most",
        flush=True,
    )
    preds = csp_decoders(small, folds, "21 ch")
    if full is not None:
        preds.update(csp_decoders(full, folds, "64 ch"))
    for name, extra in cnn_variants(contrast, args.n_seeds).items():
        t0 = time.perf_counter()
        res = decode(
            small, "content", cv=4, max_epochs=args.max_epochs,
            patience=args.patience, min_epochs=args.min_epochs, seed=0,
            device=args.device, n_jobs=args.n_jobs, verbose=False,
            **NETWORK, **extra,
        )  # fmt: skip
        preds[name] = (res.predictions["y_pred"].to_numpy(), time.perf_counter() - t0)
        print(f"  trained {name}: {preds[name][1]:.0f} s", flush=True)
    rows = []
    for name, (pred, seconds) in preds.items():
        folds_ba = [balanced_accuracy_score(y[te], pred[te]) for _, te in folds]
        ba, thr, p = permutation_threshold(y, pred.astype(y.dtype), g)
        row = dict(contrast=contrast, runs=runs, decoder=name, **{
            f"fold_{k}": v for k, v in enumerate(folds_ba)},
            mean=np.mean(folds_ba), pooled=ba, threshold=thr, p=p, seconds=seconds,
        )  # fmt: skip
        rows.append(row)
        print(
            f"{name:48s} folds {' '.join(f'{v:.3f}' for v in folds_ba)} | mean "
            f"{row['mean']:.3f} | pooled {ba:.3f} (threshold {thr:.3f}, p {p:.3f}) "
            f"| {seconds:.0f} s",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/eegmmidb")
    parser.add_argument("--epochs", help="21-channel epochs written by --save-epochs")
    parser.add_argument("--save-epochs", help="write the 21-channel epochs and stop")
    parser.add_argument("--full", action="store_true", help="also CSP+LDA on 64 ch")
    parser.add_argument(
        "--window", nargs=2, type=float, default=(0.5, 4.0), metavar=("TMIN", "TMAX"),
        help="epoch window after each cue (s); --epochs files keep their own",
    )  # fmt: skip
    for key in BUDGET:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int,
                            default=TRANSFER_DECODER[key])  # fmt: skip
    parser.add_argument("--n-seeds", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--contrasts", nargs="+", default=["movement_rest", "left_right"],
        choices=["movement_rest", "left_right"],
    )  # fmt: skip
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--out", default="motor_decoding.csv")
    args = parser.parse_args()
    if args.save_epochs:
        return save_epochs(args)
    rows = []
    for contrast in args.contrasts:
        for runs in args.runs:
            rows += run_one(args, contrast, runs)
            out = Path(args.out)
            pd.DataFrame(rows).to_csv(out.with_suffix(".part"), index=False)
            out.with_suffix(".part").replace(out)  # never a half-written table
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
