"""Topographic maps of attributions over time, per condition."""

from __future__ import annotations

import matplotlib.pyplot as plt
import mne
import numpy as np
from matplotlib.figure import Figure

from eegsal.viz._text import wrap

__all__ = ["plot_topomap"]


def plot_topomap(
    attr,
    times,
    *,
    by: str | list[str] | None = None,
    absolute: bool = True,
    window: float | None = None,
    cmap: str | None = None,
    title: str | None = None,
    mark: list[str] | None = None,
    extrapolate: str = "auto",
) -> Figure:
    """Plot the mean attribution as topographic maps at several times.

    One row per value of ``by`` (or a single row), one column per time; every
    panel shares the colour scale, labelled in a.u. (attributions are not µV).

    Parameters
    ----------
    attr : Attributions
        Spatially resolved attributions.
    times : array-like of float
        Centre times (s) of the maps; for spectral maps, frequencies (Hz).
    by : str | list of str | None
        Metadata column giving one row of maps per value, e.g. ``'content'``,
        or columns giving one row per combination (``['stage', 'content']``).
    absolute : bool
        Map the mean absolute attribution (magnitude); otherwise the signed mean.
    window : float | None
        Width (s) of the time window averaged around each time; None uses the
        spacing between ``times`` (or a single sample).
    cmap : str | None
        Colour map; default ``'viridis'`` for magnitudes and ``'RdBu_r'`` for
        signed maps (both colour-blind safe).
    title : str | None
        Figure title; default names the method and target.
    mark : list of str | None
        Channels to highlight with white markers (e.g. the simulator's
        ground-truth content channels).
    extrapolate : str
        Passed to :func:`mne.viz.plot_topomap`; ``'local'`` keeps the map
        near the electrodes when they cover part of the head.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure.
    """
    if not attr.params.get("spatially_resolved", True):
        raise ValueError(
            f"{attr.method} at layer {attr.params.get('layer')!r} has no electrode "
            "axis (a time course per epoch); choose a layer before the spatial "
            "convolution (e.g. layer='temporal_conv') for topographic maps."
        )
    times = np.atleast_1d(np.asarray(times, float))
    lo, hi = attr.times[0], attr.times[-1]
    if ((times < lo) | (times > hi)).any():
        raise ValueError(
            f"times {times} must lie within the attributions' {lo:g}-{hi:g} s."
        )
    if window is None:
        window = float(np.min(np.diff(times))) if times.size > 1 else 0.0
    evokeds = attr.average(by=by, absolute=absolute)
    if not isinstance(evokeds, dict):
        evokeds = {"all epochs": evokeds}
    # columns by the container's own axis (an Evoked cannot hold frequency bands)
    axis = np.asarray(attr.times, float)
    maps = {}
    for name, evk in evokeds.items():
        cols = []
        for t in times:
            dist = np.abs(axis - t)
            sel = dist <= window / 2 + 1e-9
            sel = sel if sel.any() else dist == dist.min()
            cols.append(evk.data[:, sel].mean(axis=1))
        maps[name] = np.array(cols)
    allv = np.concatenate([m.ravel() for m in maps.values()])
    if absolute:
        vlim = (0.0, float(allv.max()))
        cmap = cmap or "viridis"
    else:
        m = float(np.abs(allv).max())
        vlim = (-m, m)
        cmap = cmap or "RdBu_r"
    mask = None
    if mark is not None:
        unknown = sorted(set(mark) - set(attr.ch_names))
        if unknown:
            raise ValueError(f"mark: channels {unknown} are not in the attributions.")
        mask = np.isin(attr.ch_names, list(mark))
    n_rows, n_cols = len(maps), times.size
    width = 1.9 * n_cols + 1.2
    title = wrap(title or f"{attr.method} → {attr.target}", 0.95 * width, 10)
    extra = 0.17 * title.count("\n")  # room for a title of several lines
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(width, 1.9 * n_rows + 0.6 + extra),
        squeeze=False,
        layout="constrained",
    )
    im = None
    for r, (name, cols) in enumerate(maps.items()):
        for c, t in enumerate(times):
            ax = axes[r, c]
            im, _ = mne.viz.plot_topomap(
                cols[c],
                attr.info,
                axes=ax,
                show=False,
                cmap=cmap,
                vlim=vlim,
                contours=0,
                sensors=True,
                extrapolate=extrapolate,
                mask=mask,
                mask_params=dict(
                    marker="o", markerfacecolor="w", markeredgecolor="k", markersize=5
                ),
            )
            if r == 0:
                unit = "Hz" if getattr(attr, "domain", "time") == "frequency" else "s"
                span = (
                    f"{t - window / 2:.2g}–{t + window / 2:.2g} {unit}"
                    if window
                    else f"{t:.2g} {unit}"
                )
                ax.set_title(span, fontsize=9)
            if c == 0:
                # an axis label, not free text: the layout makes room for it
                # (the topomap hides the ticks and frame, not the axis)
                ax.set_ylabel(name, fontsize=9)
    cbar = fig.colorbar(im, ax=axes, shrink=0.8 if n_rows <= 3 else 2.4 / n_rows)
    kind = "|attribution|" if absolute else "attribution"
    cbar.set_label(f"{kind} (a.u.)")
    fig.suptitle(title, fontsize=10)
    # the topomaps' equal aspect shrinks their axes after the first layout
    # pass, which then leaves row and colour-bar labels where the wider axes
    # were; lay out here so that a save (another pass) keeps them inside.
    # Matplotlib 3.9 settles on the second pass (3.10 on the first).
    for _ in range(2):
        fig.draw_without_rendering()
    return fig
