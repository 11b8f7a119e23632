"""Real motor EEG (PhysioNet EEGBCI, 8 subjects): CNN vs MNE's CSP+LDA.

Movement (T1/T2) vs rest (T0) and left vs right fist, executed and imagined
runs (3, 4, 7, 8, 11, 12), 0.5-2.5 s after the cue, band-pass 7-30 Hz. The
reference is MNE's classic pipeline (``mne.decoding.CSP`` with 4 components +
LDA), within subject (5-fold stratified CV per subject) and across subjects
(4-fold GroupKFold, the same folds as the CNN). The CNN is eegsal's
ShallowConvNet, across subjects only (a CNN per subject has too little data),
on the 21 sensorimotor channels resampled to 80 Hz.

``--transfer`` instead compares, on movement vs rest across subjects (the
same 4 GroupKFold folds, 21 channels at 80 Hz), ShallowConvNet as it is
(baseline), with Euclidean alignment (He & Wu, 2019; each subject whitened
with its own unlabeled epochs, the held-out subject included), with
alignment + augmentation (time shift, sign flip, FT surrogate, channel
dropout, mixup) and, with ``--n-seeds`` > 1, alignment + augmentation as an
ensemble of that many seeds; against CSP+LDA (64 and 21 channels, with and
without the same alignment) on the same folds. Balanced accuracy per fold
and mean. Few training epochs (``--max-epochs``, default 20) keep it to
minutes on 2 CPU cores: the figures are those of short training.

Run: python benchmarks/bench_motor_decoding.py [--root ../shared/data/eegmmidb]
     [--transfer [--max-epochs 20] [--n-seeds 3] [--runs executed]]
"""

from __future__ import annotations

import argparse
import time

import mne
import numpy as np
from mne.decoding import CSP
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline

from eegsal.alignment import align, fit_alignment
from eegsal.data import SENSORIMOTOR, load_eegbci
from eegsal.decoding import decode

#: Training augmentation of the "aligned + augmented" variant.
AUGMENT = {
    "time_shift": {"p": 0.5, "max_s": 0.1},
    "sign_flip": {"p": 0.5},
    "ft_surrogate": {"p": 0.3, "phase_noise": 0.5},
    "channel_dropout": {"p": 0.3, "p_drop": 0.1},
    "mixup": {"p": 0.3, "alpha": 0.4},
}
SHALLOW = dict(filter_length=12, pool_length=35, pool_stride=7)

mne.set_log_level("warning")


def csp_lda():
    return make_pipeline(CSP(n_components=4, log=True), LinearDiscriminantAnalysis())


def csp_scores(epochs):
    X = epochs.get_data(units="uV")
    y = epochs.metadata["content"].to_numpy()
    g = epochs.metadata["subject"].to_numpy()
    within = []
    for s in np.unique(g):
        sel = g == s
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        pred = cross_val_predict(csp_lda(), X[sel], y[sel], cv=cv)
        within.append(balanced_accuracy_score(y[sel], pred))
    pred = cross_val_predict(csp_lda(), X, y, groups=g, cv=GroupKFold(4))
    return float(np.mean(within)), balanced_accuracy_score(y, pred)


def csp_folds(epochs, folds, aligned: bool) -> list[float]:
    """CSP+LDA balanced accuracy per fold (optionally on aligned epochs)."""
    X = epochs.get_data(units="uV")
    y = epochs.metadata["content"].to_numpy()
    g = epochs.metadata["subject"].astype(str).to_numpy()
    if aligned:  # each subject from its own epochs, no labels
        X = align(X, g, fit_alignment(X, g, "euclidean")).astype(np.float64)
    out = []
    for train, test in folds:
        clf = csp_lda().fit(X[train], y[train])
        out.append(balanced_accuracy_score(y[test], clf.predict(X[test])))
    return out


def transfer(args) -> None:
    """Baseline vs alignment vs alignment + augmentation (+ ensemble), per fold."""
    runs = {"executed": (3, 7, 11), "all": (3, 4, 7, 8, 11, 12)}[args.runs]
    kw = dict(contrast="movement_rest", runs=runs, verbose=False)
    full = load_eegbci(args.root, **kw)
    small = load_eegbci(args.root, picks=SENSORIMOTOR, sfreq=80.0, **kw)
    g = small.metadata["subject"].to_numpy()
    folds = list(GroupKFold(4).split(g, g, g))
    print(
        f"movement vs rest, runs {args.runs}: {len(small)} epochs, "
        f"{len(np.unique(g))} subjects, 4 folds; CNN on 21 ch at 80 Hz, "
        f"{args.max_epochs} training epochs",
        flush=True,
    )
    table = {}
    t0 = time.perf_counter()
    if args.cnn_only:
        return transfer_cnn(args, small, table)
    table["CSP+LDA 64 ch"] = csp_folds(full, folds, aligned=False)
    table["CSP+LDA 64 ch, aligned"] = csp_folds(full, folds, aligned=True)
    table["CSP+LDA 21 ch"] = csp_folds(small, folds, aligned=False)
    table["CSP+LDA 21 ch, aligned"] = csp_folds(small, folds, aligned=True)
    print(f"CSP+LDA: {time.perf_counter() - t0:.0f} s", flush=True)
    transfer_cnn(args, small, table)


def transfer_cnn(args, small, table: dict) -> None:
    """Train the CNN variants; print the table of balanced accuracies per fold."""
    variants = {}
    if not args.cnn_only:
        variants = {
            "ShallowConvNet": {},
            "ShallowConvNet, aligned": dict(align="euclidean"),
            "ShallowConvNet, aligned + augmented": dict(
                align="euclidean", augment=AUGMENT
            ),
        }
    if args.n_seeds > 1:
        variants[f"ShallowConvNet, aligned + augmented, {args.n_seeds} seeds"] = dict(
            align="euclidean", augment=AUGMENT, n_seeds=args.n_seeds
        )
    for name, extra in variants.items():
        t0 = time.perf_counter()
        res = decode(
            small, "content", model="shallow", cv=4, max_epochs=args.max_epochs,
            patience=args.max_epochs, lr=6.25e-4, seed=0, model_params=SHALLOW,
            verbose=False, **extra,
        )  # fmt: skip
        table[name] = list(res.scores["balanced_accuracy"])
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    print("\n| decoder | " + " | ".join(f"fold {k}" for k in range(4)) + " | mean |")
    print("|---|" + "---:|" * 5)
    for name, scores in table.items():
        cells = " | ".join(f"{v:.3f}" for v in scores)
        print(f"| {name} | {cells} | {np.mean(scores):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/eegmmidb")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--transfer", action="store_true")
    parser.add_argument("--n-seeds", type=int, default=1)
    parser.add_argument("--runs", choices=["executed", "all"], default="all")
    parser.add_argument(
        "--cnn-only", action="store_true", help="with --transfer: the ensemble only"
    )
    args = parser.parse_args()
    if args.transfer:
        args.max_epochs = args.max_epochs or 20
        return transfer(args)
    args.max_epochs = args.max_epochs or 30
    rows = []
    for contrast in ("movement_rest", "left_right"):
        full = load_eegbci(args.root, contrast=contrast, verbose=False)
        small = load_eegbci(
            args.root, contrast=contrast, picks=SENSORIMOTOR, sfreq=80.0, verbose=False
        )
        t0 = time.perf_counter()
        w64, a64 = csp_scores(full)
        w21, a21 = csp_scores(small)
        t_csp = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = decode(
            small, "content", model="shallow", cv=4, max_epochs=args.max_epochs,
            lr=6.25e-4, seed=0,
            model_params=dict(filter_length=12, pool_length=35, pool_stride=7),
        )  # fmt: skip
        t_cnn = time.perf_counter() - t0
        pred = res.predictions
        cnn = balanced_accuracy_score(pred["y_true"], pred["y_pred"])
        by_ctx = res.score_by("context").set_index("context")["balanced_accuracy"]
        rows.append(
            f"{contrast:14s} n={len(small):4d} | CSP+LDA 64 ch: within {w64:.3f}, "
            f"across {a64:.3f} | CSP+LDA 21 ch: within {w21:.3f}, across {a21:.3f} | "
            f"ShallowConvNet 21 ch across: {cnn:.3f} "
            f"(executed {by_ctx['executed']:.3f},"
            f" imagined {by_ctx['imagined']:.3f}) | time CSP {t_csp:.0f} s, "
            f"CNN {t_cnn:.0f} s"
        )
        print(rows[-1], flush=True)


if __name__ == "__main__":
    main()
