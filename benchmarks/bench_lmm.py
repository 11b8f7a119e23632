"""Mass-univariate mixed model: the vectorized engine against a statsmodels loop.

2,000 epochs from 20 subjects over 64 channels x 128 time points, with
``attribution ~ content * stage + (1 | subject)`` (5 stages: 10 coefficients).
statsmodels' ``MixedLM`` (REML) is timed on a random sample of cells and
extrapolated to the map; the fast engine fits the whole map, in the same run.
The time per cell is set beside the floor: one pass over the maps (read and
converted to float64, block by block). Then the cluster-based permutation test
of ``content`` over the map (Freedman-Lane: content also enters the
interaction), against the one-permutation-at-a-time path timed on a few
permutations in the same run, and ``within_context_scores`` (1,000
permutations of 2,000 epochs' predictions, with the AUC). The anchor of the
cluster test is MNE's (``spatio_temporal_cluster_test``, two-sample F, free
permutations) on the same maps, timed per permutation in the same run. With
``--slopes``, ``attribution ~ content + stage + (1 + content | subject)`` is
timed the same way (fast engine on the whole map, or on its first
``--slope-channels`` channels, against statsmodels' ``MixedLM(exog_re=...)`` on
sampled cells), with the largest differences between the two on those cells.

Run: python benchmarks/bench_lmm.py [--cells 40] [--n-permutations 1000]
     [--old-permutations 5] [--mne-permutations 100] [--slopes]
     [--slope-channels 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import mne
import numpy as np
import pandas as pd

from eegsal.attribution import Attributions
from eegsal.stats import fit_lmm


def make_study(seed: int = 0, n_chans: int = 64, slope_sd: float = 0.0) -> Attributions:
    """Random maps with subject offsets and a planted content cluster.

    ``slope_sd`` > 0 adds a content effect per subject and cell, N(0, slope_sd^2);
    the first ``n_chans`` channels are kept.
    """
    rng = np.random.default_rng(seed)
    n_sub, per, n_times = 20, 100, 128
    montage = mne.channels.make_standard_montage("colin27_1005")
    info = mne.create_info(montage.ch_names[:64], 128.0, "eeg")
    info.set_montage(montage)
    n = n_sub * per
    meta = pd.DataFrame(
        {
            "subject": np.repeat([f"sub-{i:02d}" for i in range(n_sub)], per),
            "content": rng.choice(["flying", "other"], n),
            "stage": rng.choice(["W", "N1", "N2", "N3", "REM"], n),
        }
    )
    y = rng.standard_normal((n, 64, n_times), dtype=np.float32)
    y += rng.standard_normal((n_sub, 64, n_times), dtype=np.float32)[
        np.repeat(np.arange(n_sub), per)
    ]
    other = (meta["content"] == "other").to_numpy()[:, None, None]
    y[:, :8, 40:60] += 0.2 * other
    if slope_sd:
        slopes = rng.standard_normal((n_sub, 64, n_times), dtype=np.float32)
        y += slope_sd * slopes[np.repeat(np.arange(n_sub), per)] * other
    info = mne.pick_info(info, np.arange(n_chans))
    y = np.ascontiguousarray(y[:, :n_chans])
    return Attributions(y, info, np.arange(n_times) / 128.0, metadata=meta,
                        method="saliency", target="logit")  # fmt: skip


def main() -> None:
    """Time both engines and the cluster test; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-permutations", type=int, default=1000)
    parser.add_argument("--old-permutations", type=int, default=5)
    parser.add_argument("--mne-permutations", type=int, default=100,
                        help="of MNE's cluster test, the anchor")  # fmt: skip
    parser.add_argument("--slopes", action="store_true")
    parser.add_argument("--slope-channels", type=int, default=64)
    args = parser.parse_args()
    if args.slopes:
        bench_slopes(args)
        return
    from statsmodels.regression.mixed_linear_model import MixedLM

    attr = make_study()
    n_cells = attr.data.shape[1] * attr.data.shape[2]
    fast_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        lmm = fit_lmm(attr, "content * stage", verbose=False)
        fast_times.append(time.perf_counter() - t0)
    fast = statistics.median(fast_times)
    X = lmm.design.to_numpy()
    groups = attr.metadata["subject"].to_numpy()
    Y = attr.data.reshape(len(attr), -1)
    rng = np.random.default_rng(1)
    cells = rng.choice(n_cells, args.cells, replace=False)
    per_cell = []
    for f in cells:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MixedLM(Y[:, f].astype(float), X, groups).fit(reml=True)
        per_cell.append(time.perf_counter() - t0)
    sm_cell = statistics.median(per_cell)
    floor = statistics.median(_read_maps(attr) for _ in range(args.repeats))
    print(f"fast engine, whole map ({n_cells} cells): {fast:.2f} s (median of "
          f"{args.repeats}), {1e6 * fast / n_cells:.0f} us per cell; reading the "
          f"maps (the floor): {floor:.2f} s, {100 * floor / fast:.0f} %")  # fmt: skip
    print(f"statsmodels MixedLM: {1e3 * sm_cell:.1f} ms per cell (median of "
          f"{args.cells}) -> {sm_cell * n_cells:.0f} s for the map")  # fmt: skip
    print(f"map vs statsmodels: {sm_cell * n_cells / fast:.0f}x")
    t0 = time.perf_counter()
    ct = lmm.cluster_test("content", n_permutations=args.n_permutations, seed=0,
                          verbose=False)  # fmt: skip
    took = time.perf_counter() - t0
    one = _one_at_a_time(lmm, "content", args.old_permutations)
    per = took / args.n_permutations
    print(f"cluster test, {args.n_permutations} permutations ({ct.scheme}): "
          f"{took:.1f} s, {1e3 * per:.1f} ms per permutation; one at a time: "
          f"{1e3 * one:.0f} ms per permutation (median of {args.old_permutations}):"
          f" {one / per:.0f}x")  # fmt: skip
    print(ct.clusters.head(3).to_string())
    mne_per = _mne_cluster_test(attr, args.mne_permutations)
    print(f"MNE spatio_temporal_cluster_test on the same maps (two-sample F of "
          f"content, free permutations, no subjects, no stage), "
          f"{args.mne_permutations} permutations: {1e3 * mne_per:.1f} ms per "
          f"permutation; eegsal's / MNE's: {per / mne_per:.2f}")  # fmt: skip
    wc = statistics.median(_within_context() for _ in range(args.repeats))
    print(f"within_context_scores, 1000 permutations of 2000 epochs: {wc:.2f} s")


def _mne_cluster_test(attr, n_perm: int) -> float:
    """Seconds per permutation of MNE's cluster test on the same maps.

    The anchor: :func:`mne.stats.spatio_temporal_cluster_test`, the two-sample
    F test of content with free permutations (the same channel adjacency and
    time neighbours, one thread), which models neither the subjects nor the
    stage. Its first permutation (the observed statistic) is timed with the
    rest.
    """
    with mne.utils.use_log_level("warning"):
        adjacency, _ = mne.channels.find_ch_adjacency(attr.info, "eeg")
    other = (attr.metadata["content"] == "other").to_numpy()
    data = np.asarray(attr.data, dtype=np.float64).transpose(0, 2, 1)
    t0 = time.perf_counter()
    mne.stats.spatio_temporal_cluster_test(
        [data[~other], data[other]], n_permutations=n_perm, adjacency=adjacency,
        tail=1, rng=0, n_jobs=1, out_type="indices", verbose=False,
    )  # fmt: skip
    return (time.perf_counter() - t0) / n_perm


def _read_maps(attr) -> float:
    """Seconds to read the maps once, as the fit does (float64 blocks of cells)."""
    t0 = time.perf_counter()
    Y = attr.data.reshape(len(attr), -1)
    for a in range(0, Y.shape[1], 1024):
        block = np.asarray(Y[:, a : a + 1024], dtype=np.float64)
        np.einsum("nf,nf->f", block, block)
    return time.perf_counter() - t0


def _one_at_a_time(lmm, name: str, n_perm: int) -> float:
    """Median seconds of one permutation refitted alone and scored (the old path)."""
    from eegsal.stats.clusters import _adjacency, _max_mass
    from eegsal.stats.permutations import (
        null_maps,
        permutation_scheme,
        shuffle,
        strata_rows,
    )

    scheme = permutation_scheme(lmm, name)
    maps, _ = null_maps(lmm, lmm.coef(name), scheme, None)
    rows = strata_rows(lmm.attr.metadata.reset_index(drop=True), scheme.strata)
    adj = _adjacency(lmm.attr.info, *lmm.attr.data.shape[1:], None)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(n_perm):
        t0 = time.perf_counter()
        _max_mass(maps.z_of(shuffle(len(maps.X), rows, rng)), adj, 1.96, 0)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _within_context() -> float:
    """Seconds of within_context_scores: 1,000 permutations, 2,000 epochs, AUC."""
    from eegsal.decoding import DecodingResult
    from eegsal.stats import within_context_scores

    rng = np.random.default_rng(5)
    n = 2000
    pred = pd.DataFrame({
        "subject": np.repeat([f"s{i}" for i in range(20)], 100),
        "stage": rng.choice(["W", "N1", "N2", "N3", "REM"], n),
        "y_true": rng.choice(["flying", "other"], n),
        "fold": 0,
    })  # fmt: skip
    right = rng.random(n) < 0.6
    pred["y_pred"] = np.where(right, pred["y_true"], rng.choice(["flying", "other"], n))
    pred["proba_other"] = rng.random(n)
    result = DecodingResult(pred, pd.DataFrame({"balanced_accuracy": [0.5]}), [],
                            ["flying", "other"], dict(target="content", model="none"))
    t0 = time.perf_counter()
    within_context_scores(result, "stage", n_permutations=1000, verbose=False)
    return time.perf_counter() - t0


def bench_slopes(args) -> None:
    """Random intercept and content slope: fast engine against statsmodels."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    attr = make_study(n_chans=args.slope_channels, slope_sd=0.3)
    n_cells = attr.data.shape[1] * attr.data.shape[2]
    kw = dict(re_formula="1 + content", verbose=False)
    fast_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        lmm = fit_lmm(attr, "content + stage", **kw)
        fast_times.append(time.perf_counter() - t0)
    fast = statistics.median(fast_times)
    X = lmm.design.to_numpy()
    Z = X[:, :2]  # intercept and content
    groups = attr.metadata["subject"].to_numpy()
    Y = attr.data.reshape(len(attr), -1)
    cells = np.random.default_rng(1).choice(n_cells, args.cells, replace=False)
    per_cell, d_beta, d_se, d_cov = [], [], [], []
    beta, se = lmm.beta.reshape(len(lmm.names), -1), lmm.se.reshape(len(lmm.names), -1)
    cov = lmm.cov_re.reshape(2, 2, -1)
    for f in cells:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = MixedLM(Y[:, f].astype(float), X, groups, exog_re=Z).fit(reml=True)
        per_cell.append(time.perf_counter() - t0)
        d_beta.append(np.abs(beta[:, f] - ref.fe_params).max() / ref.bse_fe.min())
        d_se.append(np.abs(se[:, f] / ref.bse_fe - 1).max())
        d_cov.append(np.abs(cov[:, :, f] - ref.cov_re).max() / ref.scale)
    sm_cell = statistics.median(per_cell)
    print(f"random slopes, fast engine ({n_cells} cells): {fast:.2f} s (median of "
          f"{args.repeats})")  # fmt: skip
    print(f"statsmodels MixedLM(exog_re): {1e3 * sm_cell:.1f} ms per cell (median "
          f"of {args.cells}) -> {sm_cell * n_cells:.0f} s")  # fmt: skip
    print(f"speed-up: {sm_cell * n_cells / fast:.0f}x")
    print(f"max |beta difference| / SE: {max(d_beta):.2e}; max SE rel. "
          f"difference: {max(d_se):.2e}; max |cov_re difference| / scale: "
          f"{max(d_cov):.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
