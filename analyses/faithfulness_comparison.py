"""Which attribution method explains the decoder? Ranked by faithfulness and sanity.
=================================================================================

The default study (``analyses/demo_study.yaml``: simulated sleep EEG, content
scenario, EEGNet) is run with every channel x time method of
:func:`eegsal.attribute`. Each method's maps are then scored on the same
held-out epochs by:

- deletion and insertion curves (channel x 100 ms patches, zeros), as the
  gain in area over a random order (Samek et al., 2017; Petsiuk et al., 2018);
- cascading model randomization (Adebayo et al., 2018): the rank
  correlation left when every layer is re-initialized (lower is better; a
  method above 0.5 is flagged);
- localization: the share of ``|attribution|`` on the simulated content signal
  (relevance mass accuracy; chance is the signal's share of the map).

The ranking (mean rank over the four criteria) is printed and written to
``OUT/ranking.csv``; the curves and randomization figures and the full
report are in ``OUT/study/``.

Run: python analyses/faithfulness_comparison.py [--out faithfulness] [--device auto]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pandas as pd

from eegsal.attribution import METHODS as ATTRIBUTION_METHODS
from eegsal.pipeline import DEFAULT_STUDY, run_study

# every method of eegsal but plain Grad-CAM, whose map at the default layer
# is a time course (its guided form supplies the electrodes)
METHODS = [m for m in ATTRIBUTION_METHODS if m != "gradcam"]


def main() -> None:
    """Run the study with every method and rank the methods."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="faithfulness")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    cfg = copy.deepcopy(DEFAULT_STUDY)
    cfg["name"] = "Attribution methods compared on the simulated sleep study"
    cfg["attribute"]["methods"] = METHODS
    cfg["attribute"]["params"] = {
        "integrated_gradients": {"n_steps": 16},
        "smoothgrad": {"n_samples": 10},
        "occlusion": {"window": [1, 10]},
        "guided_gradcam": {"layer": "spatial_conv"},
    }
    cfg["decode"]["context_decoder"] = False
    out = Path(args.out)
    run_study(cfg, out / "study", device=args.device)
    tables = out / "study" / "tables"
    auc = pd.read_csv(tables / "faithfulness_auc.csv")
    gain = auc.pivot_table("gain", "method", "kind")
    rand = pd.read_csv(tables / "randomization.csv")
    last = rand.groupby("method").tail(1).set_index("method")
    loc = (
        pd.read_csv(tables / "localization.csv")
        .groupby("method")
        .mean(numeric_only=True)
    )
    table = pd.DataFrame({
        "deletion_gain": gain["deletion"],
        "insertion_gain": gain["insertion"],
        "randomized_spearman": last["spearman"],
        "flagged": last["flagged"],
        "mass_accuracy": loc["mass_accuracy"],
        "chance": loc["mask_share"],
    })  # fmt: skip
    ranks = pd.concat([
        table["deletion_gain"].rank(ascending=False),
        table["insertion_gain"].rank(ascending=False),
        table["randomized_spearman"].rank(),
        table["mass_accuracy"].rank(ascending=False),
    ], axis=1)  # fmt: skip
    table["mean_rank"] = ranks.mean(axis=1)
    table = table.sort_values("mean_rank")
    table.to_csv(out / "ranking.csv")
    with pd.option_context("display.width", 200):
        print(table.round(3).to_string())
    print(f"\nwrote {out / 'ranking.csv'}; figures and report in {out / 'study'}")


if __name__ == "__main__":
    main()
