"""The HTML report of a study (``mne.Report``), built from its output folder."""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from eegsal._io import atomic_path
from eegsal._logging import logger, verbose
from eegsal.stats.verdict import verdict_text  # the verdict's one wording

__all__ = ["SECTIONS", "make_report", "verdict_text"]

#: The report's sections, in order.
SECTIONS = (
    "Summary",
    "Data",
    "Decoding",
    "Content vs context",
    "Attributions",
    "Faithfulness",
    "Statistics",
)


def figure_captions(context: str = "stage", split: bool = False) -> dict[str, str]:
    """Say in one sentence how to read each figure of the report.

    The wording follows the user guide (``docs/guide/report.rst``).

    Parameters
    ----------
    context : str
        The context column (``decode.context``).
    split : bool
        Whether the mixed model was fitted to the maps of half the subjects,
        explained by a decoder trained on the others (``stats.split``).

    Returns
    -------
    captions : dict of str to str
        Per figure (its file name without ``.png``; ``topomap`` and ``image``
        for the per-method figures), the sentence.
    """
    return {
        f"within_{context}": (
            f"Grey violins: the permutation null (labels shuffled within subject "
            f"x {context}); dot: the observed balanced accuracy, to compare with "
            "its own violin, not with chance (a null above 0.5 comes from few "
            f"epochs per subject x {context} stratum, whose label mix the "
            "shuffles keep)."
        ),
        "subject_scores": (
            f"Each subject's balanced accuracy within {context}s, pooled over "
            f"{context}s: a pooled score that rests on two subjects shows here."
        ),
        "similarity": (
            "Per subject (dots) and on average (squares, bootstrap 95 % "
            "interval), the correlation of the two decoders' channel profiles, "
            "time courses and whole maps; a content decoder that looks where "
            f"the {context} decoder looks is a warning sign."
        ),
        "topomap": (
            "Mean |attribution| at three times, one row per condition, all "
            "panels on one colour scale in a.u.: a content decoder's maps should "
            f"differ by content within a {context}, not only between {context}s."
        ),
        "image": (
            "Mean |attribution| per content value, channels by time, on one "
            "colour scale in a.u.; on simulated data the planted content cells "
            "are outlined."
        ),
        "faithfulness": (
            "Mean curves (± SEM over epochs) against a random order (dashed "
            "grey): a faithful map makes the deletion curve fall, and the "
            "insertion curve rise, faster than chance."
        ),
        "randomization": (
            "Rank correlation of the maps with those of copies whose layers are "
            "re-initialized from the output down: maps that explain the model "
            "fall towards 0."
        ),
        "lmm": (
            "Wald statistic of the content coefficient at every channel x time "
            "cell, with clusters of permutation p-value below alpha outlined: "
            + (
                "the maps are those of half the subjects, explained by a decoder "
                "trained on the other half, so that no tested label shaped a "
                "tested map and the permutations are exact (a claim about these "
                "subjects)."
                if split
                else "the maps come from cross-validated decoders, each trained "
                "on the labels of the other folds' subjects, and on such maps the "
                "test was liberal (content clusters in 19 of 200 small simulated "
                "studies at alpha = 0.05 under a stage confound), so read the "
                "clusters as where the maps differ, and the verdict as resting on "
                "the decoding tests (or set stats.split)."
            )
        ),
    }


def _table_html(df: pd.DataFrame, caption: str = "") -> str:
    body = df.to_html(
        index=False,
        float_format=lambda v: f"{v:.3g}",
        border=0,
        classes="table table-sm table-striped",
        na_rep="",
    )
    note = f"<p><em>{html.escape(caption)}</em></p>" if caption else ""
    return note + body


def _read_study_config(path: Path) -> dict:
    """Read the config.yaml a study run wrote; refuse anything else in one line."""
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError) as err:
        raise ValueError(f"{path}: not valid YAML ({err}).") from None
    need = {
        "decode": ("target", "context", "groups"),
        "attribute": ("methods",),
        "stats": ("alpha",),
        "report": (),
    }
    ok = isinstance(cfg, dict) and "name" in cfg
    ok = ok and all(
        isinstance(cfg.get(s), dict) and all(k in cfg[s] for k in keys)
        for s, keys in need.items()
    )
    if not ok:
        raise ValueError(
            f"{path}: not the config of a study written by 'eegsal run'; rerun "
            "the study."
        )
    return cfg


def _similarity_caption(sim: pd.DataFrame, target: str, context: str) -> str:
    """Say which classes' maps were compared, and how alike they are."""
    text = (
        "Mean spatial correlation of the two decoders' maps: "
        f"{sim.iloc[-1]['spatial']:.2f}"
    )
    if "context_class" not in sim:
        return text
    row = sim.iloc[0]
    value, best = row["target_class"], row["context_class"]
    return (
        f"Maps of the {target} decoder for {value!r} compared with the {context} "
        f"decoder's maps for {best!r}, the {context} with the highest "
        f"P({value} | {context}) = {row['p_target_given_context']:.2f}. {text}."
    )


@verbose
def make_report(
    out_dir: str | os.PathLike,
    *,
    dest: str | os.PathLike | None = None,
    verbose: bool | str | int | None = None,
) -> Path:
    """Write ``report.html`` and ``summary.txt`` from a study's output folder.

    Only these two files are written; the study's files are read, never
    rewritten, so a finished study on read-only media can be reported into
    another folder (``dest``).

    Parameters
    ----------
    out_dir : path-like
        A folder written by :func:`eegsal.pipeline.run_study`.
    dest : path-like | None
        Where to write the two files (created if needed); None: ``out_dir``.
    %(verbose)s

    Returns
    -------
    fname : pathlib.Path
        The report.
    """
    import mne

    out = Path(out_dir)
    if not (out / "config.yaml").is_file():
        raise FileNotFoundError(
            f"{out} holds no study (no config.yaml); run 'eegsal run CONFIG' first."
        )
    cfg = _read_study_config(out / "config.yaml")
    dec = cfg["decode"]
    target, context, groups = dec["target"], dec["context"], dec["groups"]
    tables, figures = out / "tables", out / "figures"

    def read(name):
        path = tables / name
        return pd.read_csv(path) if path.exists() else None

    report = mne.Report(title=cfg["report"].get("title") or cfg["name"], verbose=False)
    lines = [cfg["name"], ""]

    captions = figure_captions(context, split=bool(cfg["stats"].get("split")))

    def image(name, title, section, caption=None, kind=None):
        path = figures / f"{name}.png"
        if path.exists():
            how = captions[kind or name]
            caption = how if caption is None else f"{how} {caption}"
            report.add_image(path, title, caption=caption, section=section)

    # Summary and verdict
    within, subjects = read(f"within_{context}.csv"), read("subject_scores.csv")
    scores = read("scores.csv")
    ba = scores["balanced_accuracy"] if scores is not None else pd.Series([np.nan])
    headline = (
        f"The {target} decoder ({dec['model']}, {len(ba)}-fold cross-validation "
        f"over {groups}s) reaches balanced accuracy {ba.mean():.2f} "
        f"(folds {ba.min():.2f}-{ba.max():.2f})."
    )
    sentences = [headline]
    verdict = read("verdict.csv")
    if within is not None and subjects is not None:
        overall = None
        if verdict is not None:
            rows = verdict["test"].str.startswith("overall")
            overall = float(verdict.loc[rows, "balanced_accuracy"].iloc[0])
        sentences.append(
            verdict_text(
                within,
                subjects,
                target=target,
                context=within.columns[0],  # 'stage', or 'stage x delta_power'
                alpha=cfg["stats"]["alpha"],
                overall=overall,
                regression=read("regression.csv"),
            )
        )
    lines += sentences
    report.add_html(
        "".join(f"<p>{html.escape(s)}</p>" for s in sentences),
        "Verdict",
        section="Summary",
    )
    # Data
    counts = read("epochs_summary.csv")
    if counts is not None:
        cols = [c for c in (context, target) if c]
        pivot = counts.pivot_table(
            "n_epochs", groups, cols, aggfunc="sum", fill_value=0
        )
        pivot.columns = [
            " / ".join(map(str, c)) if isinstance(c, tuple) else str(c)
            for c in pivot.columns
        ]
        report.add_html(
            _table_html(
                pivot.reset_index(), f"Epochs per {groups} x {' x '.join(cols)}"
            ),
            "Epochs",
            section="Data",
        )
        lines.append(
            f"Epochs: {int(counts['n_epochs'].sum())} from "
            f"{counts[groups].nunique()} {groups}s."
        )
    # Decoding
    if scores is not None:
        report.add_html(
            _table_html(scores, "Per fold (held-out subjects)"),
            "Scores",
            section="Decoding",
        )
    by = read(f"scores_by_{context}.csv") if context else None
    if by is not None:
        report.add_html(
            _table_html(by, f"Out-of-fold scores within each {context}"),
            f"Scores by {context}",
            section="Decoding",
        )
    # Content vs context
    if verdict is not None:
        report.add_html(
            _table_html(verdict.drop(columns="reading")),
            "Verdict table",
            section="Content vs context",
        )
        lines += ["", verdict.drop(columns="reading").round(3).to_string(index=False)]
    image(f"within_{context}", f"Within-{context} decoding", "Content vs context")
    image("subject_scores", "Per subject", "Content vs context")
    sim = read("similarity.csv")
    image(
        "similarity",
        f"Content vs {context} decoder explanations",
        "Content vs context",
        caption=None if sim is None else _similarity_caption(sim, target, context),
    )
    if sim is not None:
        lines += ["", _similarity_caption(sim, target, context)]
    # Attributions
    for m in cfg["attribute"]["methods"]:
        image(f"topomap_{m}", f"{m}: topographies", "Attributions", kind="topomap")
        image(f"image_{m}", f"{m}: channels x time", "Attributions", kind="image")
    # Faithfulness
    auc = read("faithfulness_auc.csv")
    image("faithfulness", "Deletion and insertion curves", "Faithfulness")
    if auc is not None:
        table = (
            auc.groupby(["method", "kind"])[["auc_attribution", "auc_random", "gain"]]
            .mean()
            .reset_index()
        )
        report.add_html(
            _table_html(
                table,
                "Mean over the evaluated epochs; gain > "
                "0: better than a random ordering",
            ),
            "Faithfulness AUC",
            section="Faithfulness",
        )
        lines += ["", "Faithfulness (mean AUC):", table.round(3).to_string(index=False)]
    image("randomization", "Model randomization", "Faithfulness")
    rand = read("randomization.csv")
    if rand is not None:
        flagged = rand.groupby("method")["flagged"].any()
        report.add_html(
            _table_html(rand), "Randomization table", section="Faithfulness"
        )
        for m, f in flagged.items():
            lines.append(
                f"Randomization check, {m}: "
                f"{'FLAGGED (maps survive randomization)' if f else 'passed'}"
            )
    loc = read("localization.csv")
    if loc is not None and len(loc):
        table = (
            loc.groupby("method")[
                ["mass_accuracy", "rank_accuracy", "auroc", "mask_share"]
            ]
            .mean()
            .reset_index()
        )
        report.add_html(
            _table_html(
                table, "Against the simulated ground truth (mask_share: chance level)"
            ),
            "Localization",
            section="Faithfulness",
        )
    # Statistics
    image("lmm", "Mixed model and cluster test", "Statistics")
    clusters = read("clusters.csv")
    if clusters is not None:
        report.add_html(
            _table_html(clusters.head(10), "Largest clusters first"),
            "Clusters",
            section="Statistics",
        )
    dest = out if dest is None else Path(dest)
    with atomic_path(dest / "report.html") as tmp:
        report.save(tmp, open_browser=False, overwrite=True, verbose=False)
    with atomic_path(dest / "summary.txt") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    logger.info("Report written to %s", dest / "report.html")
    return dest / "report.html"
