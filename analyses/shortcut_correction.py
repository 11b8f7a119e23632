"""A planted shortcut, and training that uses the maps to unlearn it.
==================================================================

Simulated sleep study (content scenario: "flying" epochs carry a posterior
content signal). In the *training* subjects of each fold, every "flying"
epoch also carries an eye-movement-like bump on the frontal channels
(:func:`eegsal.simulate.plant_shortcut`): a perfect, easy predictor that the
held-out subjects do not have. Decoders (EEGNet, subject-grouped folds):

- ``clean``: no shortcut anywhere (what can be reached);
- ``plain``: trained with the shortcut;
- ``rrr``: right for the right reasons, input gradients penalized on the
  frontal channels (``Guidance(mask=...)``, :func:`eegsal.guidance.make_mask`);
- ``counterfactual``: the same mask, but the penalty is the change of the
  output when the frontal channels are swapped with another epoch's
  (``Guidance(method="counterfactual")``);
- ``cutout`` / ``saliency_cutout``: a random, or the most salient, patch of
  (4 channels x 0.5 s) removed from each training example;
- ``consistency``: maps of noisy copies kept alike; ``clean_consistency``:
  the same on clean data, to compare with ``clean``.

Per condition: balanced accuracy on the held-out (clean) subjects, the share
of ``|saliency|`` on the frontal channels (training epochs), and the maps'
max-sensitivity to input noise (:func:`eegsal.evaluation.stability`).

Run: python analyses/shortcut_correction.py [--out shortcut] [--folds 2]
     [--conditions clean plain rrr ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold

import eegsal
from eegsal.attribution import attribute
from eegsal.decoding import EEGDecoder
from eegsal.evaluation import stability
from eegsal.guidance import Guidance, make_mask
from eegsal.simulate import FRONTAL, plant_shortcut, simulate_sleep_study

CONDITIONS = (
    "clean",
    "plain",
    "rrr",
    "counterfactual",
    "cutout",
    "saliency_cutout",
    "consistency",
    "clean_consistency",
)


def main() -> None:
    """Train every condition in every fold; tabulate and plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="shortcut")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS))
    parser.add_argument("--rrr-weight", type=float, default=1000.0)
    parser.add_argument("--cf-weight", type=float, default=10.0)
    parser.add_argument("--consistency-weight", type=float, default=0.1)
    parser.add_argument("--max-epochs", type=int, default=30)
    args = parser.parse_args()
    eegsal.set_log_level("WARNING")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs, _ = simulate_sleep_study(n_subjects=8, n_epochs=60, effect_size=0.8, seed=0)
    meta = epochs.metadata
    y, g = meta["content"].to_numpy(), meta["subject"].to_numpy()
    frontal = make_mask(epochs, channels=list(FRONTAL))
    base = dict(
        max_epochs=args.max_epochs,
        patience=args.max_epochs,
        lr=3e-3,
        batch_size=32,
        device="cpu",
        seed=0,
    )
    consistency = Guidance(
        consistency_weight=args.consistency_weight, consistency_noise=0.1
    )
    extra = {
        "clean": {},
        "plain": {},
        "rrr": dict(guidance=Guidance(mask=frontal, weight=args.rrr_weight)),
        "counterfactual": dict(
            guidance=Guidance(
                mask=frontal, weight=args.cf_weight, method="counterfactual"
            )
        ),
        "cutout": dict(augment="cutout", cutout=(4, 50)),
        "saliency_cutout": dict(augment="saliency_cutout", cutout=(4, 50)),
        "consistency": dict(guidance=consistency),
        "clean_consistency": dict(guidance=consistency),
    }
    rows, maps = [], {}
    for k, (train, test) in enumerate(GroupKFold(args.folds).split(y, y, g)):
        shortcut = plant_shortcut(epochs, value="flying", subjects=np.unique(g[train]))
        for cond in args.conditions:
            src = epochs if cond.startswith("clean") else shortcut
            X = src.get_data(units="uV").astype(np.float32)
            clf = EEGDecoder(**base, **extra[cond]).fit(X[train], y[train], g[train])
            ba = balanced_accuracy_score(y[test], clf.predict(X[test]))
            explained = src[train[::4]]
            sal = attribute(
                clf.module_, explained, method="saliency", label=0, verbose=False
            )
            mag = np.abs(sal.data).mean(0)
            maps.setdefault(cond, []).append(mag)
            stab = stability(
                clf.module_,
                src[test[:16]],
                method="saliency",
                noise=(0.05,),
                n_samples=5,
                label=0,
                verbose=False,
            )
            rows.append(
                {
                    "fold": k,
                    "condition": cond,
                    "test_balanced_accuracy": ba,
                    "frontal_share": mag[frontal].sum() / mag.sum(),
                    "max_sensitivity": stab["max_sensitivity"].mean(),
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "conditions.csv", index=False)
    summary = table.groupby("condition", sort=False).mean(numeric_only=True)
    print(summary.drop(columns="fold").round(3).to_string())
    print(f"(frontal channels are {frontal.mean():.3f} of the map)")
    fig, axes = plt.subplots(
        1,
        len(maps),
        figsize=(2.6 * len(maps), 3.2),
        layout="constrained",
        squeeze=False,
    )
    vmax = max(np.mean(m, 0).max() for m in maps.values())
    im = None
    for ax, (cond, m) in zip(axes[0], maps.items(), strict=True):
        im = ax.imshow(
            np.mean(m, 0),
            aspect="auto",
            vmin=0,
            vmax=vmax,
            cmap="viridis",
            extent=(epochs.times[0], epochs.times[-1], len(frontal), 0),
        )
        ax.set_yticks(
            np.arange(len(epochs.ch_names)) + 0.5, epochs.ch_names, fontsize=6
        )
        ba = summary.loc[cond, "test_balanced_accuracy"]
        ax.set(title=f"{cond}\nheld-out BA {ba:.2f}", xlabel="time (s)")
    fig.colorbar(im, ax=axes, shrink=0.8, label="mean |saliency| (a.u.)")
    fig.suptitle("Mean |saliency| on training epochs (frontal rows: the shortcut)")
    fig.savefig(out / "maps.png", dpi=120)
    print(f"wrote {out / 'conditions.csv'} and {out / 'maps.png'}")


if __name__ == "__main__":
    main()
