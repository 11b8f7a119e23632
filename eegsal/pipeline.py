"""Studies run end to end; ``run_demo`` is the default simulated sleep study."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from eegsal._io import atomic_path
from eegsal._logging import logger, verbose

__all__ = ["run_demo"]


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def _mass_in_mask(values: np.ndarray, mask: np.ndarray) -> float:
    """Share of the total absolute attribution that falls inside ``mask``."""
    mag = np.abs(values).sum(axis=0)
    return float(mag[mask].sum() / mag.sum())


@verbose
def run_demo(
    out_dir: str | os.PathLike = "eegsal-demo",
    *,
    n_subjects: int = 8,
    n_epochs: int = 60,
    scenario: str = "content",
    cv: int = 4,
    max_epochs: int = 25,
    device: str = "auto",
    seed: int = 0,
    verbose: bool | str | int | None = None,
) -> dict[str, Path]:
    """Simulate a sleep study, decode its content, and map the gradients.

    The steps: :func:`eegsal.simulate.simulate_sleep_study` →
    :func:`eegsal.decode` (EEGNet, GroupKFold over subjects) →
    :func:`eegsal.attribute` (signed gradient saliency of the true class's logit)
    → a topographic figure, tables and a text summary in ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
        Output folder (created; existing files of a previous demo are replaced).
    n_subjects : int
        Simulated subjects.
    n_epochs : int
        Epochs per subject.
    scenario : str
        Simulator scenario (``'content'``, ``'confound'``, ``'both'``, ``'null'``).
    cv : int
        Number of GroupKFold folds.
    max_epochs : int
        Training epochs per fold (early stopping keeps the best on held-out subjects).
    device : str
        ``'auto'``, ``'cpu'`` or ``'cuda'``.
    seed : int
        Seed of the simulation and of training.
    verbose : bool | str | int | None
        Control verbosity of the logging output.

    Returns
    -------
    files : dict of str to pathlib.Path
        The files written, by name.
    """
    from eegsal.attribution import attribute
    from eegsal.decoding import decode
    from eegsal.simulate import simulate_sleep_study

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    epochs, truth = simulate_sleep_study(
        n_subjects=n_subjects, n_epochs=n_epochs, scenario=scenario, seed=seed
    )
    files = {}
    counts = (
        epochs.metadata.groupby(["subject", "stage", "content"])
        .size()
        .rename("n_epochs")
    )
    files["epochs"] = _write_csv(counts.reset_index(), out / "epochs_summary.csv")
    result = decode(
        epochs,
        "content",
        cv=cv,
        max_epochs=max_epochs,
        patience=max_epochs,
        batch_size=32,
        device=device,
        seed=seed,
    )
    files["scores"] = _write_csv(result.scores, out / "scores.csv")
    by_stage = result.score_by("stage")
    files["scores_by_stage"] = _write_csv(by_stage, out / "scores_by_stage.csv")
    files["predictions"] = _write_csv(result.predictions, out / "predictions.csv")

    attr = attribute(result, epochs, method="saliency", target="logit", device=device)
    t0, t1 = truth.content_window
    times = np.linspace(attr.times[0], attr.times[-1], 6)[1:-1]
    fig = attr.plot_topomap(
        times,
        by="content",
        absolute=True,
        title="Gradient saliency |d logit / d µV| by reported content "
        "(white: channels of the simulated content signal)",
        mark=truth.content_channels if truth.content_mask.any() else None,
    )
    with atomic_path(out / "saliency_topomap.png") as tmp:
        fig.savefig(tmp, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    files["topomap"] = out / "saliency_topomap.png"
    ch_mass = np.abs(attr.data).mean(axis=(0, 2))
    sal = pd.DataFrame({"channel": attr.ch_names, "mean_abs_saliency": ch_mass})
    sal["in_content_channels"] = sal["channel"].isin(truth.content_channels)
    files["saliency"] = _write_csv(
        sal.sort_values("mean_abs_saliency", ascending=False),
        out / "saliency_by_channel.csv",
    )
    mass = (
        _mass_in_mask(attr.data, truth.content_mask)
        if truth.content_mask.any()
        else np.nan
    )
    share = truth.content_mask.mean()
    ba = result.scores["balanced_accuracy"]
    sfreq, n_times = epochs.info["sfreq"], len(epochs.times)
    lines = [
        "eegsal demo: simulated sleep study",
        f"  {n_subjects} subjects x {n_epochs} epochs, "
        f"{len(epochs.ch_names)} channels, {n_times / sfreq:g} s at {sfreq:g} Hz, "
        f"scenario '{scenario}'",
        f"  content signal (ground truth): {', '.join(truth.content_channels)}, "
        f"{t0:g}-{t1:g} s"
        if truth.content_mask.any()
        else "  no content signal planted",
        "",
        f"Decoding 'content' with EEGNet, {len(result.models)}-fold GroupKFold "
        "over subjects:",
        f"  balanced accuracy {ba.mean():.3f} "
        f"(folds: {', '.join(f'{v:.2f}' for v in ba)})",
        f"  ROC AUC {result.scores['roc_auc'].mean():.3f}",
        "  by stage: "
        + ", ".join(
            f"{r.stage} {r.balanced_accuracy:.2f}" for r in by_stage.itertuples()
        ),
        "",
        "Gradient saliency (logit of the true class, signed; magnitudes summarized):",
        "  top channels: "
        + ", ".join(
            sal.sort_values("mean_abs_saliency", ascending=False)["channel"].head(5)
        ),
    ]
    if truth.content_mask.any():
        lines.append(
            f"  {100 * mass:.0f}% of |saliency| falls in the ground-truth content "
            f"cells, which are {100 * share:.0f}% of the channel x time map"
        )
    lines += ["", "Files: " + ", ".join(sorted(p.name for p in files.values()))]
    text = "\n".join(lines) + "\n"
    with atomic_path(out / "summary.txt") as tmp:
        tmp.write_text(text)
    files["summary"] = out / "summary.txt"
    logger.info("Demo written to %s", out)
    return files
