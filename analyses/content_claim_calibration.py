"""How often does eegsal claim a content effect that is not there?
===============================================================

Over many seeds, small simulated sleep studies are generated in two
scenarios: ``"confound"`` (no content signal; the content label goes with REM
sleep) and ``"content"`` (a content signal, no confound). Each is decoded with
EEGNet (subject-grouped cross-validation), then two claims are made:

- *decoding*: the within-stage balanced accuracy, pooled over stages, beats
  the restricted permutation null (labels shuffled within subject x stage),
  p < 0.05 (:func:`eegsal.stats.within_context_scores`);
- *maps*: the saliency maps (log-odds of one fixed class, so that the label
  does not choose the explained output) have a content cluster in
  ``attribution ~ content + stage + (1 | subject)``, cluster-permutation
  p < 0.05 (:meth:`eegsal.stats.LMMResult.cluster_test`).

In the confound scenario the claim rate must stay at or below 5 % (within
the binomial margin); in the content scenario it is the power.

Run: python analyses/content_claim_calibration.py [OUT_DIR] [--seeds 50] [--n-jobs 2]
"""

import argparse
from pathlib import Path

import pandas as pd
from joblib import Parallel, delayed
from scipy import stats

from eegsal import attribute, decode
from eegsal.simulate import simulate_sleep_study
from eegsal.stats import fit_lmm, within_context_scores

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", nargs="?", default="analyses-output")
parser.add_argument("--seeds", type=int, default=50)
parser.add_argument("--n-permutations", type=int, default=200)
parser.add_argument("--first-seed", type=int, default=0)
parser.add_argument("--scenarios", nargs="+", default=["confound", "content"])
parser.add_argument("--n-jobs", type=int, default=None, help="parallel studies")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

SCENARIOS = {
    "confound": dict(scenario="confound", confound=0.6),
    "content": dict(scenario="content", effect_size=1.0),
}


def one_study(seed: int, name: str) -> dict:
    """Simulate, decode, explain and test one study; return its two p-values."""
    kw = SCENARIOS[name]
    epochs, _ = simulate_sleep_study(n_subjects=6, n_epochs=50, epoch_length=2.0,
                                     seed=seed, verbose=False, **kw)  # fmt: skip
    result = decode(epochs, "content", cv=3, max_epochs=20, patience=20,
                    batch_size=32, seed=seed, verbose=False)  # fmt: skip
    within = within_context_scores(
        result, "stage", n_permutations=args.n_permutations, seed=seed,
        verbose=False,
    )  # fmt: skip
    attr = attribute(result, epochs, method="saliency", target="contrast",
                     label=0, verbose=False)  # fmt: skip
    lmm = fit_lmm(attr, "content + stage", verbose=False)
    ct = lmm.cluster_test("content", n_permutations=args.n_permutations,
                          seed=seed, verbose=False)  # fmt: skip
    return dict(
        seed=seed,
        scenario=name,
        balanced_accuracy=result.scores["balanced_accuracy"].mean(),
        within_stage_ba=within.iloc[-1]["balanced_accuracy"],
        p_decoding=within.iloc[-1]["p"],
        p_maps=ct.clusters["p"].min() if len(ct.clusters) else 1.0,
    )


# one task per simulated study: local processes with --n-jobs, or a Dask
# cluster under joblib.parallel_config(backend="dask")
tasks = [
    (seed, name)
    for seed in range(args.first_seed, args.first_seed + args.seeds)
    for name in args.scenarios
]
rows = []
for row in Parallel(n_jobs=args.n_jobs, return_as="generator")(
    delayed(one_study)(seed, name) for seed, name in tasks
):
    rows.append(row)
    print(row, flush=True)
    pd.DataFrame(rows).to_csv(out / f"content_claim_calibration_{args.first_seed}.csv",
                              index=False)  # fmt: skip

table = pd.DataFrame(rows)
summary = []
for name, g in table.groupby("scenario"):
    for claim in ("p_decoding", "p_maps"):
        k, n = int((g[claim] < 0.05).sum()), len(g)
        ci = stats.binomtest(k, n).proportion_ci(0.95)
        summary.append(dict(scenario=name, claim=claim.removeprefix("p_"),
                            rate=k / n, ci_low=ci.low, ci_high=ci.high, n=n,
                            mean_ba=g["balanced_accuracy"].mean()))  # fmt: skip
summary = pd.DataFrame(summary)
summary.to_csv(out / f"content_claim_calibration_summary_{args.first_seed}.csv",
               index=False)  # fmt: skip
print(summary.round(3).to_string(index=False))
print("binomial upper limit of 5 % over", args.seeds, "seeds (one-sided 95 %):",
      stats.binom.ppf(0.95, args.seeds, 0.05) / args.seeds)  # fmt: skip
