"""Every figure eegsal draws: a title, labelled axes, a colour bar, text inside.

One table lists each public plotting function of :mod:`eegsal.viz` and each
method that plots, with a small synthetic input; every entry must pass the
same checks, and every check is shown to fail on a figure built to break it.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.text import Text

import eegsal.viz
from eegsal.attribution import Attributions
from eegsal.evaluation.faithfulness import FaithfulnessCurves

CHANNELS = ["Fz", "F3", "F4", "Cz", "C3", "C4", "Pz", "O1", "O2"]


# --------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------


def _drawn_texts(fig: Figure) -> list[Text]:
    """Visible, non-empty texts that a draw of ``fig`` puts on the canvas."""
    texts = [
        t
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.figure is fig
    ]
    # tick labels exist for ticks outside the view too; keep the drawn ones
    drawn = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if loc is not None and not lo - 1e-9 * (hi - lo) <= loc <= hi + (
                    1e-9 * (hi - lo)
                ):
                    drawn.add(id(tick.label1))
                    drawn.add(id(tick.label2))
    return [t for t in texts if id(t) not in drawn]


def texts_outside(fig: Figure, tol: float = 1.0) -> list[str]:
    """Return the texts of ``fig`` that reach outside it (by more than ``tol`` px)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    out = []
    for text in _drawn_texts(fig):
        ext = text.get_window_extent(renderer)
        if (
            ext.x0 < box.x0 - tol
            or ext.y0 < box.y0 - tol
            or ext.x1 > box.x1 + tol
            or ext.y1 > box.y1 + tol
        ):
            out.append(text.get_text())
    return out


def _colorbar_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if hasattr(ax, "_colorbar")]


def has_title(fig: Figure) -> bool:
    """Whether ``fig`` has a suptitle or a title on one of its axes."""
    sup = fig._suptitle is not None and fig._suptitle.get_text().strip()
    titles = any(
        ax.get_title(loc).strip()
        for ax in fig.axes
        for loc in ("left", "center", "right")
    )
    return bool(sup or titles)


def unlabelled_axes(fig: Figure) -> list[str]:
    """Axes with data whose x or y axis shows tick labels but has no label.

    Panels that hide their tick labels (shared axes, topographic maps) need
    no label; colour bars are checked by :func:`colorbar_problems`.
    """
    fig.canvas.draw()
    cbars = _colorbar_axes(fig)
    problems = []
    for k, ax in enumerate(fig.axes):
        if ax in cbars or not ax.axison or not ax.has_data():
            continue
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            shown = any(
                t.get_visible() and t.get_text().strip() for t in axis.get_ticklabels()
            )
            if shown and not axis.get_label_text().strip():
                problems.append(f"axes {k} ({ax.get_title()!r}): no {name} label")
    return problems


def colorbar_problems(fig: Figure) -> list[str]:
    """Why the colour scale of ``fig``'s images is not explained, if it is not."""
    images = [
        a for ax in fig.axes for a in ax.get_children() if isinstance(a, AxesImage)
    ]
    images = [im for im in images if im.axes not in _colorbar_axes(fig)]
    if not images:
        return []
    bars = [im.colorbar for im in images if im.colorbar is not None]
    if not bars:
        return ["images but no colour bar"]
    return [
        "colour bar without a label"
        for bar in bars
        if not bar.ax.get_ylabel().strip() and not bar.ax.get_xlabel().strip()
    ]


def figure_problems(fig: Figure) -> list[str]:
    """Everything the checks find wrong with ``fig``."""
    # bounds first: a figure saved as it is drawn once, and a second draw can
    # move what the first left outside (constrained layout converges late)
    problems = [f"text outside the figure: {t!r}" for t in texts_outside(fig)]
    problems += [] if has_title(fig) else ["no title"]
    problems += unlabelled_axes(fig)
    problems += colorbar_problems(fig)
    return problems


# --------------------------------------------------------------------------
# small synthetic inputs
# --------------------------------------------------------------------------


def _info() -> mne.Info:
    info = mne.create_info(CHANNELS, 100.0, "eeg")
    info.set_montage("colin27_1020")
    return info


def _attributions(*, spatially_resolved: bool = True) -> Attributions:
    rng = np.random.default_rng(0)
    n_epochs, times = 24, np.arange(20) / 20
    meta = pd.DataFrame(
        {
            "subject": np.repeat([f"s{k}" for k in range(4)], 6),
            "stage": np.tile(["N2", "N2", "REM", "REM", "W", "W"], 4),
            "content": np.tile(["faces", "places"], 12),
        }
    )
    n_rows = len(CHANNELS) if spatially_resolved else 1
    data = rng.normal(size=(n_epochs, n_rows, times.size))
    return Attributions(
        data,
        _info(),
        times,
        metadata=meta,
        method="integrated_gradients",
        target="logit",
        spatially_resolved=spatially_resolved,
    )


def _topomap_long_rows() -> Figure:
    # one narrow column and row labels longer than the panels: the grid that
    # cut its labels at the left edge
    attr = _attributions()
    attr.metadata["context"] = np.resize(["executed movement", "rest"], 24)
    return attr.plot_topomap([0.5], by="context")


def _curves(kind: str, shift: float) -> FaithfulnessCurves:
    fraction = np.linspace(0, 1, 6)
    rows = [
        {
            "epoch": e,
            "ordering": o,
            "step": s,
            "fraction": f,
            "score": (1 - f) ** (2 if o == "attribution" else 1) + shift + 0.01 * e,
        }
        for e in range(3)
        for o in ("attribution", "random")
        for s, f in enumerate(fraction)
    ]
    auc = pd.DataFrame(
        {"auc_attribution": [0.3] * 3, "auc_random": [0.5] * 3, "gain": [0.2] * 3}
    )
    params = {"target": "logit", "perturbation": "zero"}
    return FaithfulnessCurves(pd.DataFrame(rows), auc, kind, params)


def _randomization() -> pd.DataFrame:
    layers = ["0.conv_temporal", "0.conv_spatial", "0.separable", "0.classifier"]
    rho = np.linspace(0.9, 0.1, len(layers))
    return pd.DataFrame(
        {
            "layer": layers,
            "spearman": rho,
            "q25": rho - 0.1,
            "q75": rho + 0.1,
            "flagged": False,
        }
    )


def _within() -> tuple[pd.DataFrame, pd.DataFrame]:
    names = ["N1", "N2", "N3", "REM", "W", "all (within-stage)"]
    scores = pd.DataFrame(
        {
            "stage": names,
            "balanced_accuracy": [0.84, 0.86, 0.8, 0.86, 0.99, 0.86],
            "p": 0.001,
            "p_holm": 0.005,
        }
    )
    rng = np.random.default_rng(0)
    null = pd.DataFrame(
        {
            "stage": np.repeat(names, 50),
            "balanced_accuracy": rng.normal(0.55, 0.05, 50 * len(names)),
        }
    )
    return scores, null


def _subject_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": [f"sub-{k:02d}" for k in range(8)],
            "balanced_accuracy": np.linspace(0.4, 0.9, 8),
        }
    )


def _similarity() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    units = pd.DataFrame(
        {
            "subject": [f"s{k}" for k in range(5)],
            "spatial": rng.uniform(-0.5, 0.9, 5),
            "temporal": rng.uniform(-0.5, 0.9, 5),
            "map": rng.uniform(-0.5, 0.9, 5),
        }
    )
    mean = {"subject": "mean"}
    for name in ("spatial", "temporal", "map"):
        mean[name] = units[name].mean()
        mean[f"{name}_ci_low"] = mean[name] - 0.2
        mean[f"{name}_ci_high"] = mean[name] + 0.2
    return pd.concat([units, pd.DataFrame([mean])], ignore_index=True)


def _lmm_image() -> Figure:
    from eegsal.stats import fit_lmm

    lmm = fit_lmm(_attributions(), "content + stage")
    return lmm.plot_image("content[T.places]", mask=np.abs(lmm.t[1]) > 1)


#: every public plotting function and method that plots, on small inputs
FIGURES: dict[str, Callable[[], Figure]] = {
    "plot_topomap": lambda: eegsal.viz.plot_topomap(
        _attributions(), [0.2, 0.5], by=["stage", "content"]
    ),
    "plot_topomap, signed, marked": lambda: eegsal.viz.plot_topomap(
        _attributions(), [0.3], absolute=False, mark=["C3", "C4"]
    ),
    "plot_topomap, one column, long row labels": _topomap_long_rows,
    "plot_image": lambda: eegsal.viz.plot_image(_attributions(), by="content"),
    "plot_image, time course": lambda: eegsal.viz.plot_image(
        _attributions(spatially_resolved=False)
    ),
    "plot_faithfulness": lambda: eegsal.viz.plot_faithfulness(
        {
            "saliency": [_curves("deletion", 0.0), _curves("insertion", 0.0)],
            "integrated_gradients": [_curves("deletion", 0.1)],
        }
    ),
    "plot_randomization": lambda: eegsal.viz.plot_randomization(
        {"saliency": _randomization()}
    ),
    "plot_within_context": lambda: eegsal.viz.plot_within_context(*_within()),
    "plot_subject_scores": lambda: eegsal.viz.plot_subject_scores(_subject_scores()),
    "plot_similarity": lambda: eegsal.viz.plot_similarity(_similarity()),
    "Attributions.plot_topomap": lambda: _attributions().plot_topomap(
        [0.25, 0.5, 0.75], by="stage"
    ),
    "Attributions.plot_image": lambda: _attributions().plot_image(absolute=True),
    "LMMResult.plot_image": _lmm_image,
    "FaithfulnessCurves.plot": lambda: _curves("deletion", 0.0).plot(),
}

#: the entries of FIGURES that stand for each function of eegsal.viz
_COVERS = {
    "plot_topomap": "plot_topomap",
    "plot_image": "plot_image",
    "plot_faithfulness": "plot_faithfulness",
    "plot_randomization": "plot_randomization",
    "plot_within_context": "plot_within_context",
    "plot_subject_scores": "plot_subject_scores",
    "plot_similarity": "plot_similarity",
}


def test_every_plotting_function_is_in_the_table():
    """A new plot_* function of eegsal.viz must join the table."""
    public = {n for n in eegsal.viz.__all__ if n.startswith("plot_")}
    assert public == set(_COVERS)
    assert set(_COVERS.values()) <= set(FIGURES)


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure(name):
    """Title, labelled axes, a labelled colour bar on images, text inside."""
    fig = FIGURES[name]()
    assert isinstance(fig, Figure)
    assert figure_problems(fig) == []


# --------------------------------------------------------------------------
# each check fails where it should
# --------------------------------------------------------------------------


def test_bounds_check_catches_text_outside():
    fig, ax = plt.subplots(figsize=(3, 2), layout="constrained")
    ax.plot([0, 1], [0, 1])
    ax.set(xlabel="x", ylabel="y", title="ok")
    assert texts_outside(fig) == []
    long = "a title far too long for a figure three inches wide " * 2
    fig.suptitle(long)
    fig.text(-0.2, 0.5, "left of the figure")
    assert set(texts_outside(fig)) == {long, "left of the figure"}


def test_bounds_check_tolerance():
    fig = plt.figure(figsize=(2, 2), dpi=100)
    text = fig.text(0, 0.5, "edge")
    fig.canvas.draw()
    x0 = text.get_window_extent().x0
    text.set_x(-(x0 + 0.5) / fig.bbox.width)  # half a pixel out: tolerated
    assert texts_outside(fig) == []
    text.set_x(-(x0 + 3) / fig.bbox.width)  # three pixels out: caught
    assert texts_outside(fig) == ["edge"]


def test_title_check():
    fig, ax = plt.subplots()
    assert not has_title(fig)
    ax.set_title("panel")
    assert has_title(fig)
    fig2 = plt.figure()
    fig2.suptitle("figure")
    assert has_title(fig2)


def test_axis_label_check():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [2, 3])
    assert len(unlabelled_axes(fig)) == 2
    ax.set_xlabel("time (s)")
    assert unlabelled_axes(fig) == ["axes 0 (''): no y label"]
    ax.set_ylabel("score")
    assert unlabelled_axes(fig) == []
    fig2, ax2 = plt.subplots()
    ax2.set_axis_off()  # a topographic map: no axis to label
    ax2.plot([0, 1], [2, 3])
    assert unlabelled_axes(fig2) == []


def test_colorbar_check():
    fig, ax = plt.subplots()
    im = ax.imshow(np.eye(3))
    assert colorbar_problems(fig) == ["images but no colour bar"]
    bar = fig.colorbar(im, ax=ax)
    assert colorbar_problems(fig) == ["colour bar without a label"]
    bar.set_label("a.u.")
    assert colorbar_problems(fig) == []


def test_similarity_title_names_the_decoders():
    fig = eegsal.viz.plot_similarity(_similarity(), names=("dream", "stage"))
    assert fig.axes[0].get_title().startswith("dream vs stage decoder")


def test_within_context_says_why_the_null_can_sit_above_chance():
    fig = eegsal.viz.plot_within_context(*_within())
    note = fig._supxlabel.get_text().replace("\n", " ")
    assert "label mix" in note and "subject x stage" in note


def test_long_titles_are_wrapped_inside_the_figure():
    long = "Band occlusion: change of the log-odds of 'movement' " * 3
    fig = _attributions().plot_topomap([0.5], title=long)
    assert "\n" in fig._suptitle.get_text()
    assert texts_outside(fig) == []
