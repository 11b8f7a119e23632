"""How often does eegsal claim a content effect that is not there?
===============================================================

Over many seeds, small simulated sleep studies (6 subjects x 50 epochs of 2 s)
are generated in five scenarios, decoded with EEGNet (subject-grouped
cross-validation), explained (saliency of the log-odds of one fixed class)
and tested by these routes:

- *decoding*: the verdict of :func:`eegsal.stats.content_verdict` (the
  pooled within-stage test, labels shuffled within subject x stage, AND the
  across-subject Wilcoxon test) says the content effect holds; a claim about
  the population of subjects;
- *maps*: ``attribution ~ content + stage + (1 | subject)`` has a content
  cluster (:meth:`eegsal.stats.LMMResult.cluster_test`, p < 0.05); a claim
  about these subjects;
- *maps_population*: :func:`eegsal.stats.two_stage_test` (per-subject
  content maps within stage, sign flips across subjects) has a cluster; a
  claim about the population.
- *maps_split*: the *maps* route on half the subjects, explained by one
  decoder trained on the other half, so that no tested label shaped a tested
  map (the maps route's folds each learn from the labels of the subjects the
  other folds explain); a claim about these subjects.

Scenarios (the nulls are ones the decoder exploits: its overall balanced
accuracy is reported beside each rate):

- ``confound``: no content signal; "flying" goes with REM (confound 0.9).
  Also the *interaction null* of the maps route: ``attribution ~ content *
  C(stage, Sum)`` is tested for a ``content x stage`` cluster
  (``maps_interaction``, Freedman-Lane permutations) on maps that differ by
  stage and carry no content effect. A content main effect would not change
  that test: it lies in the reduced model, whose fit Freedman-Lane adds back
  to the permuted residuals, so the statistic and its null stay the same
  (``tests/stats/test_clusters.py``);
- ``depth``: no content signal; within each stage, "flying" goes with lighter
  sleep (``depth_confound=2``), which lowers delta power. The stage-only
  routes are expected to be fooled. The decoding route is also run with a
  covariate: ``decoding_depth_aware`` holds the log delta power of every
  channel fixed (``log_delta_power``, what the decoder itself can read of
  the depth), ``decoding_proxy`` the relative delta power of Fz alone
  (``delta_power``, a scorer's measure, Spearman 0.6 with the depth); and
  ``maps_depth_aware`` fits ``attribution ~ content + stage +
  log_delta_power`` (Freedman-Lane permutations);
- ``slope_null``: every subject has a content effect but there is none on
  average (``scenario='random_slope'``, subject effects ``0.5 * N(0, 1)``,
  signed): the null of the population claims (decoding, maps_population);
  the *maps* route, about these subjects, is expected to find them;
- ``content``: a content signal, no confound: the power of every route. The
  signal is the same in every stage, yet a decoder's maps need not be (a
  gradient depends on the input it is taken at): the rate of ``content x
  stage`` clusters (``maps_interaction``) is reported, not judged;
- ``weak``: a weaker content signal (effect size 0.5): power.

Each rate comes with its 95 % Clopper-Pearson interval; a null scenario is
calibrated when its false-claim count is within the one-sided 95 % binomial
limit of 5 %.

Run: python analyses/content_claim_calibration.py [OUT_DIR] [--seeds 200]
[--n-jobs 16] [--device cuda] [--routes maps_split]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import stats

SCENARIOS = {
    "confound": dict(scenario="confound", confound=0.9),
    "depth": dict(scenario="null", depth_confound=2.0),
    "slope_null": dict(scenario="random_slope", effect_size=0.5),
    "content": dict(scenario="content", effect_size=1.0),
    "weak": dict(scenario="content", effect_size=0.5),
}
NULL, POWER = "false claims", "power"
#: Scenarios with a null route: run for --seeds; the others for --power-seeds.
NULL_SCENARIOS = ("confound", "depth", "slope_null")
#: What a claim of each route means in each scenario (routes not listed: power).
KINDS = {
    "confound": {
        "decoding": NULL,
        "maps": NULL,
        "maps_population": NULL,
        "maps_interaction": NULL,
        "maps_split": NULL,
    },
    "depth": {
        "decoding": "fooled (stage only)",
        "maps": "fooled (stage only)",
        "maps_population": "fooled (stage only)",
        "maps_split": "fooled (stage only)",
        "decoding_proxy": "fooled (Fz delta only)",
        "decoding_depth_aware": NULL,
        "maps_depth_aware": NULL,
    },
    "slope_null": {
        "decoding": NULL,
        "maps_population": NULL,
        "maps": "true for these subjects",
        "maps_split": "true for these subjects",
    },
    "content": {"maps_interaction": "maps differ by stage"},
}


def _claim(verdict: pd.DataFrame) -> bool:
    return verdict.iloc[-1]["reading"].startswith("The content effect")


def _cluster_claim(ct) -> bool:
    return bool(ct.mask(0.05).any())


def safe_study(
    seed: int, name: str, n_permutations: int, device: str, routes=None
) -> dict:
    """:func:`one_study`, or a row naming its error: one study never ends a run."""
    try:
        return one_study(seed, name, n_permutations, device, routes)
    except Exception as err:  # noqa: BLE001 - reported in the table and at the end
        return dict(seed=seed, scenario=name, error=f"{type(err).__name__}: {err}")


def split_study(epochs, seed: int, perm: dict, device: str) -> dict:
    """The *maps_split* route: train on half the subjects, test the other half.

    One decoder is trained on 3 subjects (its early stopping on 1 of them, so
    its weights are fitted on 2) and explains the epochs of the other 3,
    whose labels therefore shaped no tested map: within subject x stage
    their labels stay exchangeable with their maps under the null, and the
    restricted shuffle is exact.
    """
    from sklearn.model_selection import GroupShuffleSplit

    from eegsal import attribute, decode
    from eegsal.stats import RankDeficientError, fit_lmm

    half = GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=seed)
    result = decode(epochs, "content", cv=half, max_epochs=20, patience=20,
                    batch_size=32, seed=seed, device=device,
                    verbose=False)  # fmt: skip
    tested = np.flatnonzero(result.predictions["fold"].to_numpy() >= 0)
    attr = attribute(result.take(tested), epochs[tested], method="saliency",
                     target="contrast", label=0, device=device,
                     verbose=False)  # fmt: skip
    ba = float(result.scores["balanced_accuracy"].mean())
    try:
        lmm = fit_lmm(attr, "content + stage", verbose=False)
    except RankDeficientError:  # the tested half's content fixed by its stage
        return dict(split_ba=ba, claim_maps_split=np.nan)
    return dict(
        split_ba=ba,
        claim_maps_split=_cluster_claim(lmm.cluster_test("content", **perm)),
    )


def one_study(
    seed: int, name: str, n_permutations: int, device: str, routes=None
) -> dict:
    """Simulate, decode, explain and test one study; return its claims.

    ``routes``: ``None`` runs every route, ``{'maps_split'}`` that one alone.
    """
    import torch

    from eegsal import attribute, decode
    from eegsal.simulate import simulate_sleep_study
    from eegsal.stats import content_verdict, fit_lmm, two_stage_test

    torch.set_num_threads(1)
    epochs, _ = simulate_sleep_study(n_subjects=6, n_epochs=50, epoch_length=2.0,
                                     seed=seed, verbose=False,
                                     **SCENARIOS[name])  # fmt: skip
    perm = dict(n_permutations=n_permutations, seed=seed, verbose=False)
    split = split_study(epochs, seed, perm, device)
    if routes is not None and set(routes) <= {"maps_split"}:
        return dict(seed=seed, scenario=name, **split)
    result = decode(epochs, "content", cv=3, max_epochs=20, patience=20,
                    batch_size=32, seed=seed, device=device,
                    verbose=False)  # fmt: skip
    verdict = content_verdict(result, "stage", **perm)
    within = verdict[verdict["test"].str.startswith("within")]
    row = dict(
        seed=seed,
        scenario=name,
        balanced_accuracy=verdict.iloc[0]["balanced_accuracy"],
        within_stage_ba=within.iloc[-1]["balanced_accuracy"],
        claim_decoding=_claim(verdict),
        **split,
    )
    depth = "log_delta_power" in epochs.metadata
    if depth:
        covariates = {"depth_aware": "log_delta_power", "proxy": "delta_power"}
        for route, cov in covariates.items():
            aware = content_verdict(result, "stage", covariates=cov, **perm)
            row[f"claim_decoding_{route}"] = _claim(aware)
    attr = attribute(result, epochs, method="saliency", target="contrast",
                     label=0, device=device, verbose=False)  # fmt: skip
    lmm = fit_lmm(attr, "content + stage", verbose=False)
    row["claim_maps"] = _cluster_claim(lmm.cluster_test("content", **perm))
    two = two_stage_test(attr, "content", context="stage", **perm)
    row["claim_maps_population"] = _cluster_claim(two)
    if depth:
        lmm = fit_lmm(attr, "content + stage + log_delta_power", verbose=False)
        row["claim_maps_depth_aware"] = _cluster_claim(
            lmm.cluster_test("content", **perm)
        )
    if name in ("confound", "content"):
        # stages holding both contents (under confound 0.9 a small stage can
        # hold one only): a choice made on the design alone, never on the maps
        meta = attr.metadata
        both = meta.groupby("stage")["content"].nunique() == 2
        attr = attr[meta["stage"].map(both).to_numpy()]
        lmm = fit_lmm(attr, "content * C(stage, Sum)", verbose=False)
        coef = next(n for n in lmm.names if n.startswith("content") and ":" in n)
        row["claim_maps_interaction"] = _cluster_claim(lmm.cluster_test(coef, **perm))
    return row


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Claim rates per scenario and route, with Clopper-Pearson intervals.

    ``kind`` says what a claim is there (:data:`KINDS`); a false-claim rate
    is ``calibrated`` when its count is within the one-sided 95 % binomial
    limit of 5 % (``limit``, as a rate).
    """
    out = []
    for name, g in table.groupby("scenario", sort=False):
        for col in [c for c in g.columns if c.startswith("claim_")]:
            claims = g[col].dropna().astype(bool)
            k, n = int(claims.sum()), len(claims)
            if n == 0:
                continue
            route = col.removeprefix("claim_")
            kind = KINDS.get(name, {}).get(route, POWER)
            ci = stats.binomtest(k, n).proportion_ci(0.95)
            limit = stats.binom.ppf(0.95, n, 0.05)
            out.append(dict(
                scenario=name, route=route, kind=kind, claims=k, n=n, rate=k / n,
                ci_low=ci.low, ci_high=ci.high,
                limit=limit / n if kind == NULL else np.nan,
                calibrated=(k <= limit) if kind == NULL else None,
                mean_overall_ba=g[
                    "split_ba" if route == "maps_split" else "balanced_accuracy"
                ].mean(),
            ))  # fmt: skip
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="analyses-output")
    parser.add_argument("--seeds", type=int, default=200, help="per null scenario")
    parser.add_argument("--power-seeds", type=int, default=50,
                        help="seeds of content and weak")  # fmt: skip
    parser.add_argument("--n-permutations", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS),
                        choices=list(SCENARIOS))  # fmt: skip
    parser.add_argument("--n-jobs", type=int, default=None, help="parallel studies")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--routes", nargs="+", choices=["maps_split"],
                        help="run only these routes (default: all)")  # fmt: skip
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # seed by seed, every scenario at each seed: partial results cover them all
    tasks = [
        (seed, name)
        for seed in range(args.first_seed, args.first_seed + args.seeds)
        for name in args.scenarios
        if name in NULL_SCENARIOS or seed < args.first_seed + args.power_seeds
    ]
    rows = []
    # one task per simulated study: local processes with --n-jobs, or a Dask
    # cluster under joblib.parallel_config(backend="dask")
    for row in Parallel(n_jobs=args.n_jobs, return_as="generator_unordered")(
        delayed(safe_study)(seed, name, args.n_permutations, args.device, args.routes)
        for seed, name in tasks
    ):
        rows.append(row)
        if len(rows) % 20 == 0 or len(rows) == len(tasks):
            print(f"{len(rows)}/{len(tasks)} studies", flush=True)
            pd.DataFrame(rows).to_csv(out / "content_claim_calibration.csv",
                                      index=False)  # fmt: skip
    table = pd.DataFrame(rows).sort_values(["scenario", "seed"])
    table.to_csv(out / "content_claim_calibration.csv", index=False)
    if "error" in table:
        failed = table[table["error"].notna()]
        print(f"{len(failed)} studies failed (left out):")
        print(failed[["scenario", "seed", "error"]].to_string(index=False))
        table = table[table["error"].isna()]
    summary = summarize(table)
    summary.to_csv(out / "content_claim_calibration_summary.csv", index=False)
    print(summary.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
