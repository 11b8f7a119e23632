"""Channel x time images of attributions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from eegsal.viz._text import suptitle

__all__ = ["plot_image"]


def plot_image(
    attr,
    *,
    by: str | list[str] | None = None,
    absolute: bool = False,
    mask: np.ndarray | None = None,
    cmap: str | None = None,
    title: str | None = None,
    label: str | None = None,
    times: np.ndarray | None = None,
    domain: str | None = None,
) -> Figure:
    """Plot the mean attribution as a channels x time image, one panel per group.

    Parameters
    ----------
    attr : Attributions | dict of str to mne.Evoked
        Attributions (spatially resolved or time courses), or ready-made maps,
        one panel each (e.g. :meth:`eegsal.stats.LMMResult.to_evoked`).
    by : str | list of str | None
        Metadata column (or columns) giving one panel per value (combination).
    absolute : bool
        Average absolute values (magnitude) instead of signed values.
    mask : ndarray of bool, shape (n_channels, n_times) | None
        Cells to outline (e.g. significant clusters, or the simulator's
        ``GroundTruth.content_mask``).
    cmap : str | None
        Colour map; default ``'viridis'`` for magnitudes, ``'RdBu_r'`` for signed
        maps (both colour-blind safe), with a symmetric scale when signed.
    title : str | None
        Figure title; default names the method and target.
    label : str | None
        Colour bar label; default ``'attribution (a.u.)'``.
    times : ndarray | None
        The maps' axis (s, or Hz), for ready-made maps whose ``Evoked.times``
        cannot hold it (frequency bands, time bins); default theirs.
    domain : str | None
        ``'time'`` or ``'frequency'``, for ready-made maps; default that of
        ``attr``.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure.
    """
    frequency = (domain or getattr(attr, "domain", "time")) == "frequency"
    xlabel = "frequency (Hz)" if frequency else "time (s)"
    if isinstance(attr, dict):
        evokeds = attr
        first = next(iter(evokeds.values()))
        times = first.times if times is None else np.asarray(times)
        ch_names = first.ch_names
        title = title or ""
    else:
        evokeds = attr.average(by=by, absolute=absolute)
        if not isinstance(evokeds, dict):
            evokeds = {"all epochs": evokeds}
        times, ch_names = attr.times, attr.ch_names
        title = title or f"{attr.method} → {attr.target}"
    data = {k: v.data for k, v in evokeds.items()}
    n_rows = next(iter(data.values())).shape[0]
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != (n_rows, len(times)):
            raise ValueError(
                f"mask must have shape ({n_rows}, {len(times)}), got {mask.shape}."
            )
    values = np.concatenate([d.ravel() for d in data.values()])
    if absolute:
        vmin, vmax, cmap = 0.0, float(values.max()), cmap or "viridis"
    else:
        m = float(np.abs(values).max())
        vmin, vmax, cmap = -m, m, cmap or "RdBu_r"
    axis = np.asarray(times, float)
    steps = np.diff(axis)
    irregular = len(axis) > 2 and not np.allclose(steps, steps[0], rtol=1e-3)
    if irregular:  # e.g. frequency bands: one column each, labelled
        times = np.arange(len(axis), dtype=float)
    dt = (times[1] - times[0]) if len(times) > 1 else 1.0
    extent = (times[0] - dt / 2, times[-1] + dt / 2, n_rows - 0.5, -0.5)
    fig, axes = plt.subplots(
        1,
        len(data),
        figsize=(4.2 * len(data) + 1, 0.22 * n_rows + 1.8),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    im = None
    for ax, (name, d) in zip(axes[0], data.items(), strict=True):
        im = ax.imshow(
            d,
            aspect="auto",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            extent=extent,
            interpolation="nearest",
        )
        if mask is not None and mask.any():
            # pad with a ring of False cells so the outline closes at the edges;
            # the 0.5 level then runs along the cell borders
            t_pad = np.concatenate([[times[0] - dt], times, [times[-1] + dt]])
            ax.contour(
                t_pad,
                np.arange(-1, n_rows + 1),
                np.pad(mask, 1).astype(float),
                levels=[0.5],
                colors="k",
                linewidths=1.0,
            )
        ax.set_xlim(extent[0], extent[1])  # the padded outline must not widen them
        ax.set_ylim(extent[2], extent[3])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
        if irregular:
            ax.set_xticks(times, [f"{v:g}" for v in axis], fontsize=8)
        if n_rows == len(ch_names):
            ax.set_yticks(np.arange(n_rows), ch_names, fontsize=7)
        else:
            ax.set_yticks([])
    axes[0, 0].set_ylabel(
        "channel" if n_rows == len(ch_names) else "time course (no electrode axis)",
        fontsize=8,
    )
    cbar = fig.colorbar(im, ax=axes, shrink=0.8)
    default = ("|attribution|" if absolute else "attribution") + " (a.u.)"
    cbar.set_label(label or default)
    if title:
        suptitle(fig, title)
    return fig
