"""Calibration of a study on its own data: false-claim rate and power.

:func:`eegsal.pipeline.calibrate` runs the study's decoding and verdict on
repeated draws of labels over the user's recordings:

* null draws (amplitude 0): labels drawn from P(content | context) only, the
  data left exactly as recorded; any content claim is a false claim;
* planted draws: the same labels, and a known signal
  (:func:`eegsal.simulate.plant_content`) of a given amplitude in the
  positive epochs; the share of claims is the power at that amplitude.

This module holds what one draw computes, the summary (Clopper-Pearson
intervals, the binomial limit of a 5 % false-claim rate), the figure and the
sentence; :mod:`eegsal.pipeline` runs the draws and writes the files.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

import mne
import numpy as np
import pandas as pd

from eegsal._config import ConfigError
from eegsal._logging import logger

__all__ = ["Plan", "claimed", "draw_epochs", "one_draw", "plot_calibration",
           "sentence", "summarize"]  # fmt: skip

#: Columns of the per-draw table (``tables/calibration_draws.csv``).
DRAW_COLUMNS = [
    "draw", "amplitude", "kind", "seed", "n_epochs", "n_positive",
    "planted_cells", "max_change", "balanced_accuracy", "within_balanced_accuracy",
    "p_within", "p_subjects", "claim", "n_maps", "maps_balanced_accuracy", "p_maps",
    "claim_maps",
]  # fmt: skip
#: Columns of the summary (``tables/calibration_summary.csv``).
SUMMARY_COLUMNS = [
    "route", "amplitude", "kind", "n_draws", "n_claims", "rate", "ci_low",
    "ci_high", "limit_5pct", "within_limit", "mean_balanced_accuracy",
]  # fmt: skip


@dataclass
class Plan:
    """What every draw plants, and where; the same for all draws of a run."""

    target: str
    context: str
    groups: str
    labels: tuple[str, str]
    rate_by: dict[str, float]
    channels: list[str]
    window: tuple[float, float]
    waveform: str
    frequency: float
    band: tuple[float, float]
    seed: int
    maps: bool
    cfg: dict = field(repr=False)

    def describe(self) -> str:
        """Say in words what is planted (for the log and the sentence)."""
        what = {
            "burst": f"a {self.frequency:g} Hz burst",
            "erp": "an ERP-like bump",
            "band_power": f"a {self.band[0]:g}-{self.band[1]:g} Hz power change",
        }[self.waveform]
        return (
            f"{what} on {', '.join(self.channels)} at {self.window[0]:g}-"
            f"{self.window[1]:g} s"
        )


def load_epochs(cfg: dict) -> mne.BaseEpochs:
    """Read the epochs of a study config's data section, preloaded."""
    data = cfg["data"]
    if "simulate" in data:
        from eegsal.simulate import simulate_sleep_study

        epochs, _ = simulate_sleep_study(**data["simulate"], verbose=False)
        return epochs
    from eegsal.data import load_manifest

    return load_manifest(data["manifest"], data.get("root"), preload=True)


def make_plan(
    cfg: dict,
    epochs: mne.BaseEpochs,
    *,
    channels: list[str] | None,
    window: tuple[float, float] | None,
    waveform: str,
    frequency: float,
    band: tuple[float, float],
    rate_by: dict[str, float] | None,
    seed: int,
    maps: bool,
) -> Plan:
    """Fill in the plan's defaults from the config and the data."""
    from eegsal.simulate import HOT_ZONE

    dec = cfg["decode"]
    target, context, groups = dec["target"], dec["context"], dec["groups"]
    if not context:
        raise ConfigError(
            "decode.context: calibration tests the content beyond a context; "
            "name the context column (e.g. stage)."
        )
    meta = epochs.metadata
    for col in (context, groups):
        if meta is None or col not in meta:
            raise ConfigError(
                f"decode: the epochs' metadata has no column {col!r}; it has "
                f"{[] if meta is None else list(meta.columns)}."
            )
    ctx = meta[context].astype(str)
    classes = sorted(meta[target].astype(str).unique()) if target in meta else []
    explain = cfg["attribute"].get("explain")
    if len(classes) == 2 and explain is not None and str(explain) not in classes:
        raise ConfigError(
            f"attribute.explain: {explain!r} is not a class of {target}; its "
            f"classes are {', '.join(map(repr, classes))}."
        )
    if len(classes) == 2:
        first = str(explain) if explain is not None else classes[0]
        labels = (first, next(c for c in classes if c != first))
    else:
        labels = ("present", "absent")
    if rate_by is None:
        if len(classes) == 2:  # the data's own P(content | context)
            hit = meta[target].astype(str) == labels[0]
            rate_by = hit.groupby(ctx).mean().to_dict()
        else:
            rate_by = dict.fromkeys(sorted(set(ctx)), 0.5)
    rate_by = {str(k): float(v) for k, v in rate_by.items()}
    if channels is None:
        channels = [c for c in epochs.ch_names if c in HOT_ZONE]
        if not channels:
            raise ValueError(
                "channels: none of the posterior channels "
                f"{', '.join(HOT_ZONE)} is in the data; name the channels to "
                "plant the content on."
            )
    if maps and cfg["stats"].get("split"):
        from eegsal._study import split_half

        try:  # at least 4 groups, before any draw
            split_half(meta[groups], groups, seed)
        except ConfigError as err:
            msg = f"{err} Or calibrate the decoding alone (no --maps)."
            raise ConfigError(msg) from None
    if window is None:
        t0, length = epochs.times[0], len(epochs.times) / epochs.info["sfreq"]
        window = (round(t0 + length / 4, 3), round(t0 + 3 * length / 4, 3))
    return Plan(
        target=target, context=context, groups=groups, labels=labels,
        rate_by=rate_by, channels=list(channels),
        window=(float(window[0]), float(window[1])), waveform=waveform,
        frequency=float(frequency), band=(float(band[0]), float(band[1])),
        seed=int(seed), maps=bool(maps), cfg=cfg,
    )  # fmt: skip


def draw_seed(plan: Plan, draw: int) -> int:
    """Seed of draw ``draw``: the same for every amplitude (paired draws)."""
    return int(np.random.SeedSequence([plan.seed, draw]).generate_state(1)[0])


def draw_epochs(plan: Plan, epochs: mne.BaseEpochs, draw: int, amplitude: float):
    """Return the labelled (and, for ``amplitude`` > 0, planted) epochs of a draw.

    Returns
    -------
    epochs : mne.Epochs
        A copy; labels in ``plan.target``.
    truth : eegsal.simulate.GroundTruth
        What was planted (an empty mask for ``amplitude`` 0).
    """
    from eegsal.simulate import plant_content

    return plant_content(
        epochs, channels=plan.channels, window=plan.window,
        waveform=plan.waveform, amplitude=float(amplitude),
        frequency=plan.frequency, band=plan.band, label_column=plan.target,
        labels=plan.labels, rate_by=plan.rate_by, context=plan.context,
        seed=draw_seed(plan, draw), verbose=False,
    )  # fmt: skip


def claimed(verdict: pd.DataFrame) -> bool:
    """Whether a :func:`eegsal.stats.content_verdict` table claims content.

    The claim of :func:`eegsal.stats.verdict_text`: every test that enters
    the verdict holds (the pooled within-context test, the across-subject
    test and, when run, the content coefficient); single-context rows
    (``p_holm`` set) and rows without a test (no ``p``) do not enter.
    """
    tests = verdict["test"].astype(str)
    enters = verdict["p_holm"].isna() & (
        tests.str.startswith("across subjects")
        | tests.str.startswith("content coefficient")
        | (verdict["p"].notna() & tests.str.startswith("within "))
    )
    return bool(enters.sum() >= 2 and verdict.loc[enters, "holds"].all())


def _decode_draw(plan: Plan, epochs, draw: int, device: str, cv, verbose=False):
    """Decode a draw's labels with the study's decoder (seed ``decode.seed + draw``)."""
    from eegsal.decoding import decode

    dec = plan.cfg["decode"]
    return decode(
        epochs, plan.target, model=dec["model"], groups=dec["groups"], cv=cv,
        device=device, seed=dec["seed"] + draw, n_jobs=1, verbose=verbose,
        **dec["params"],
    )  # fmt: skip


def _maps_p(
    plan: Plan, result, epochs, device: str, seed: int, draw: int
) -> tuple[float, int, float]:
    """Smallest cluster p of the content term in the maps' mixed model.

    The test is the study's stats stage on this draw: its maps (without
    ``stats.split`` those of the cross-validated decoder ``result``; with it,
    those of the half of the groups that a decoder trained on the other half,
    with this draw's decoder seed, explains), its explained class, time bins,
    ``stats.formula`` and coefficient. Returns the smallest cluster p (NaN
    where not even the additive model can be fitted: the tested groups'
    content fixed by their context), the number of maps (epochs) tested and
    the balanced accuracy of the decoder that made them.
    """
    from sklearn.metrics import balanced_accuracy_score

    from eegsal._study import _bin_times, _fit_or_additive, split_half, tested_term
    from eegsal.attribution import attribute
    from eegsal.stats import RankDeficientError

    cfg, st, att = plan.cfg, plan.cfg["stats"], plan.cfg["attribute"]
    dec = cfg["decode"]
    if st.get("split"):
        half = split_half(epochs.metadata[dec["groups"]], dec["groups"],
                          dec["seed"] + draw)  # fmt: skip
        # "error": that one half has no prediction is the point of the split
        result = _decode_draw(plan, epochs, draw, device, half, verbose="error")
        tested = np.flatnonzero(result.predictions["fold"].to_numpy() >= 0)
        result, epochs = result.take(tested), epochs[tested]
    pred = result.predictions
    accuracy = float(balanced_accuracy_score(pred["y_true"], pred["y_pred"]))
    # the explained class: the study's (attribute.explain is plan.labels[0])
    label = att["label"]
    if att.get("explain") is not None:
        label = [str(c) for c in result.classes].index(plan.labels[0])
    method = st["method"]
    attr = attribute(
        result, epochs, method=method, target=att["target"], label=label,
        device=device, verbose=False, **att["params"].get(method, {}),
    )  # fmt: skip
    if st["bin"]:
        attr = _bin_times(attr, st["bin"])
    try:
        lmm = _fit_or_additive(attr, st["formula"], groups=dec["groups"],
                               absolute=st["absolute"], verbose=False)  # fmt: skip
    except RankDeficientError as err:
        logger.warning("Draw %d: no maps test (%s); left out of the maps route.",
                       draw, err)  # fmt: skip
        return np.nan, len(epochs), accuracy
    test = lmm.cluster_test(tested_term(lmm, plan.target),
                            n_permutations=st["n_permutations"], seed=seed,
                            verbose=False)  # fmt: skip
    p = float(test.clusters["p"].min()) if len(test.clusters) else 1.0
    return p, len(epochs), accuracy


def one_draw(
    plan: Plan, epochs: mne.BaseEpochs, draw: int, amplitude: float, device: str
) -> dict[str, Any]:
    """Label (and plant), decode and judge one draw; return its row."""
    from eegsal.stats import content_verdict

    cfg = plan.cfg
    dec, st = cfg["decode"], cfg["stats"]
    seed = draw_seed(plan, draw)
    planted, truth = draw_epochs(plan, epochs, draw, amplitude)
    change = np.abs(planted.get_data() - epochs.get_data()).max()
    result = _decode_draw(plan, planted, draw, device, dec["cv"])
    verdict = content_verdict(
        result, plan.context, groups=dec["groups"],
        n_permutations=st["within_permutations"], alpha=st["alpha"], seed=seed,
        verbose=False,
    )  # fmt: skip
    pooled = verdict[
        verdict["test"].str.startswith("within ") & verdict["p_holm"].isna()
    ]
    subjects = verdict[verdict["test"].str.startswith("across subjects")]
    row = dict(
        draw=draw,
        amplitude=float(amplitude),
        kind="context_only" if amplitude == 0 else "planted",
        seed=seed,
        n_epochs=len(planted),
        n_positive=int((planted.metadata[plan.target] == plan.labels[0]).sum()),
        planted_cells=int(truth.content_mask.sum()),
        max_change=float(change),
        balanced_accuracy=float(verdict["balanced_accuracy"].iloc[0]),
        within_balanced_accuracy=float(pooled["balanced_accuracy"].iloc[-1]),
        p_within=float(pooled["p"].iloc[-1]),
        p_subjects=float(subjects["p"].iloc[0]),
        claim=claimed(verdict),
        n_maps=np.nan,
        maps_balanced_accuracy=np.nan,
        p_maps=np.nan,
        claim_maps=np.nan,
    )
    if plan.maps:
        p, n_maps, accuracy = _maps_p(plan, result, planted, device, seed, draw)
        claim = np.nan if np.isnan(p) else bool(p < st["alpha"])  # NaN: no test
        row.update(n_maps=n_maps, maps_balanced_accuracy=accuracy, p_maps=p,
                   claim_maps=claim)  # fmt: skip
    return row


def summarize(draws: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Claim rate per route and amplitude, with 95 % Clopper-Pearson intervals.

    Parameters
    ----------
    draws : pandas.DataFrame
        The per-draw table (:data:`DRAW_COLUMNS`).
    alpha : float
        The nominal false-claim rate (the verdict's level).

    Returns
    -------
    summary : pandas.DataFrame
        :data:`SUMMARY_COLUMNS`. ``limit_5pct`` (null rows): the largest share
        of false claims consistent with a true rate of ``alpha`` (one-sided
        95 % binomial limit, ``binom.ppf(0.95, n, alpha) / n``);
        ``within_limit``: whether the observed share is at most that.
        A draw whose route ran no test (``claim_maps`` NaN) is left out of
        that route's ``n_draws``; ``mean_balanced_accuracy`` is that of the
        decoder whose output the route tests (for ``maps`` with
        ``stats.split``, the split decoder's).
    """
    from scipy import stats

    routes = [("decoding", "claim", "balanced_accuracy")]
    if "claim_maps" in draws and draws["claim_maps"].notna().any():
        routes.append(("maps", "claim_maps", "maps_balanced_accuracy"))
    rows = []
    for route, col, accuracy in routes:
        for amp, g in draws.groupby("amplitude", sort=True):
            g = g[g[col].notna()]  # a draw without a test is no claim, nor a miss
            if not len(g):
                continue
            k, n = int(g[col].astype(bool).sum()), len(g)
            ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
            null = amp == 0
            limit = stats.binom.ppf(0.95, n, alpha) / n if null else np.nan
            rows.append(
                dict(
                    route=route,
                    amplitude=float(amp),
                    kind="context_only" if null else "planted",
                    n_draws=n,
                    n_claims=k,
                    rate=k / n,
                    ci_low=ci.low,
                    ci_high=ci.high,
                    limit_5pct=limit,
                    within_limit=bool(k / n <= limit) if null else np.nan,
                    mean_balanced_accuracy=g[accuracy].mean(),
                )
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def smallest_powered(summary: pd.DataFrame, power: float = 0.8) -> float | None:
    """Smallest planted amplitude from which every larger one has ``power``."""
    planted = summary[(summary["route"] == "decoding") & (summary["kind"] == "planted")]
    planted = planted.sort_values("amplitude")
    ok = (planted["rate"] >= power).to_numpy()
    for i in range(len(ok)):
        if ok[i:].all():
            return float(planted["amplitude"].iloc[i])
    return None


def sentence(summary: pd.DataFrame, design: str, plan: Plan, power: float = 0.8) -> str:
    """Say whether the study, as designed, is calibrated and can detect an effect."""
    dec = summary[summary["route"] == "decoding"]
    null = dec[dec["kind"] == "context_only"].iloc[0]
    n = int(null["n_draws"])
    k_max = int(round(null["limit_5pct"] * n))
    false = (
        f"With labels that follow the {plan.context} only (no signal), the verdict "
        f"claimed content in {int(null['n_claims'])} of {n} draws (rate "
        f"{null['rate']:.2f}, 95 % CI {null['ci_low']:.2f}-{null['ci_high']:.2f}); "
        f"a true rate of 5 % gives at most {k_max} of {n} (one-sided 95 %): "
        + (
            "calibrated on these data."
            if null["within_limit"]
            else "more false claims than 5 % allows: do not trust a claim of this "
            "study on these data."
        )
    )
    best = smallest_powered(summary, power)
    planted = dec[dec["kind"] == "planted"]
    if best is not None:
        row = planted[planted["amplitude"] == best].iloc[0]
        detect = (
            f"Power >= {power * 100:g} % from amplitude {best:g} SD (claims in "
            f"{int(row['n_claims'])} of {int(row['n_draws'])} draws)"
        )
    else:
        top = planted.sort_values("amplitude").iloc[-1]
        detect = (
            f"Power >= {power * 100:g} % not reached up to amplitude "
            f"{top['amplitude']:g} SD (claims in {int(top['n_claims'])} of "
            f"{int(top['n_draws'])} draws)"
        )
    return (
        f"{design}. {false} {detect}, for {plan.describe()} (amplitude: RMS in SD "
        f"of each channel). More draws give tighter intervals."
    )


def plot_calibration(summary: pd.DataFrame, power: float = 0.8, title: str = ""):
    """Plot the claim rate against the planted amplitude, with 95 % intervals.

    Amplitude 0 is the false-claim rate (labels that follow the context
    only); the others are the power.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for (route, g), marker in zip(summary.groupby("route", sort=False), "os",
                                  strict=False):  # fmt: skip
        g = g.sort_values("amplitude")
        err = np.vstack([g["rate"] - g["ci_low"], g["ci_high"] - g["rate"]])
        ax.errorbar(g["amplitude"], g["rate"], yerr=err, marker=marker, capsize=3,
                    label=f"{route} claims (95 % Clopper-Pearson)")  # fmt: skip
    null = summary[summary["kind"] == "context_only"]
    if len(null):
        limit = "limit of a 5 % false-claim rate (one-sided 95 %)"
        ax.axhline(null["limit_5pct"].iloc[0], color="C3", ls=":", lw=1,
                   label=limit)  # fmt: skip
    ax.axhline(0.05, color="0.5", ls="--", lw=1, label="nominal 5 %")
    ax.axhline(power, color="C2", ls="--", lw=1, label=f"power {power * 100:g} %")
    ax.set(
        xlabel="planted amplitude (SD of each channel; 0: labels follow the "
        "context only)",
        ylabel="share of draws with a content claim",
        ylim=(-0.03, 1.03),
        title="\n".join(
            textwrap.fill(line, 64)
            for line in (title or "False claims and power of the study").split("\n")
        ),
    )
    ax.legend(fontsize="small", loc="best")
    return fig


def log_plan(plan: Plan, n: int, amplitudes: list[float]) -> None:
    """Say what the calibration runs."""
    logger.info(
        "Calibrating: %d draws x %d amplitudes (%s SD) of %s; labels %r with "
        "P(%s | %s) = %s",
        n, len(amplitudes), ", ".join(f"{a:g}" for a in amplitudes),
        plan.describe(), plan.labels[0], plan.labels[0], plan.context,
        ", ".join(f"{k} {v:.2f}" for k, v in plan.rate_by.items()),
    )  # fmt: skip
