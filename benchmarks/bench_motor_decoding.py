"""Real motor EEG (PhysioNet EEGBCI, 8 subjects): CNN vs MNE's CSP+LDA.

Movement (T1/T2) vs rest (T0) and left vs right fist, executed and imagined
runs (3, 4, 7, 8, 11, 12), 0.5-2.5 s after the cue, band-pass 7-30 Hz. The
reference is MNE's classic pipeline (``mne.decoding.CSP`` with 4 components +
LDA), within subject (5-fold stratified CV per subject) and across subjects
(4-fold GroupKFold, the same folds as the CNN). The CNN is eegsal's
ShallowConvNet, across subjects only (a CNN per subject has too little data),
on the 21 sensorimotor channels resampled to 80 Hz.

Run: python benchmarks/bench_motor_decoding.py [--root ../shared/data/eegmmidb]
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

from eegsal.data import SENSORIMOTOR, load_eegbci
from eegsal.decoding import decode

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/eegmmidb")
    parser.add_argument("--max-epochs", type=int, default=30)
    args = parser.parse_args()
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
