"""Evoked containers of values that are not volts (attributions, statistics).

MNE decides how to scale and label a channel's values from its type alone
(``eeg``: x 1e6, "µV"), whatever the unit in ``info['chs']``; the types it
labels "AU" (``misc``) lose their electrode positions, hence their topomaps.
So eegsal's maps stay EEG channels, in a subclass of :class:`mne.EvokedArray`
whose plotting methods default to the values' own unit and a scaling of 1.
"""

from __future__ import annotations

from typing import Any

import mne
import numpy as np

__all__ = ["MapEvoked"]


class MapEvoked(mne.EvokedArray):
    """An :class:`mne.EvokedArray` of attribution values or statistics.

    It is an ordinary Evoked (``copy``, ``crop``, arithmetic, ``save``...),
    whose ``plot``, ``plot_image``, ``plot_topomap``, ``animate_topomap``,
    ``plot_joint`` and ``plot_topo`` show the values unscaled, labelled with
    ``unit``; ``units=`` and ``scalings=`` passed to them still win. Saved to
    FIF and read back, it is a plain :class:`mne.Evoked` (FIF records no unit
    label), to be plotted with ``units``/``scalings``. The functions of
    :mod:`mne.viz` (``mne.viz.plot_evoked(evoked)``, ``mne.viz.plot_compare_evokeds``)
    do not go through these methods and scale EEG channels to µV: call the
    methods, or pass ``units=dict(eeg=evoked.unit), scalings=dict(eeg=1)``.

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_times)
        The values, in ``unit``.
    info : mne.Info
        Channel information (positions for topographic maps).
    tmin : float
        Time of the first sample (s).
    comment : str
        Comment (shown as the title of MNE's plots).
    nave : int
        Number of epochs averaged.
    unit : str
        What the values are: ``'a.u.'`` for attributions, ``'t'`` for
        t-values...
    verbose : bool | str | int | None
        Control verbosity of the logging output (``True`` is ``'info'``).
    """

    def __init__(
        self,
        data: np.ndarray,
        info: mne.Info,
        tmin: float = 0.0,
        comment: str = "",
        nave: int = 1,
        *,
        unit: str = "a.u.",
        verbose: bool | str | int | None = None,
    ) -> None:
        super().__init__(
            data, info, tmin=tmin, comment=comment, nave=nave, verbose=verbose
        )
        self.unit = unit

    def _units(self, units: Any, scalings: Any) -> dict[str, Any]:
        """``units``/``scalings`` for MNE's plots: the values' unit, scaling 1."""
        # a topomap labels a type with a non-default scaling by units["misc"]
        types = {*self.get_channel_types(unique=True), "misc"}
        return dict(
            units={t: self.unit for t in types} if units is None else units,
            scalings={t: 1.0 for t in types} if scalings is None else scalings,
        )

    def plot(self, *args: Any, units: Any = None, scalings: Any = None, **kwargs: Any):
        """Plot the time courses (see :meth:`mne.Evoked.plot`), in ``self.unit``.

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`mne.Evoked.plot`.
        units, scalings : dict | None
            None: the values' unit, unscaled.

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        """
        return super().plot(*args, **self._units(units, scalings), **kwargs)

    def plot_image(
        self, *args: Any, units: Any = None, scalings: Any = None, **kwargs: Any
    ):
        """Plot channels x time as an image (see :meth:`mne.Evoked.plot_image`).

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`mne.Evoked.plot_image`.
        units, scalings : dict | None
            None: the values' unit, unscaled.

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        """
        return super().plot_image(*args, **self._units(units, scalings), **kwargs)

    def plot_topomap(
        self, *args: Any, units: Any = None, scalings: Any = None, **kwargs: Any
    ):
        """Plot topographic maps (see :meth:`mne.Evoked.plot_topomap`).

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`mne.Evoked.plot_topomap`.
        units, scalings : dict | str | float | None
            None: the values' unit, unscaled.

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        """
        return super().plot_topomap(*args, **self._units(units, scalings), **kwargs)

    def animate_topomap(
        self, *args: Any, units: Any = None, scalings: Any = None, **kwargs: Any
    ):
        """Animate topographic maps (see :meth:`mne.Evoked.animate_topomap`).

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`mne.Evoked.animate_topomap`.
        units, scalings : dict | None
            None: the values' unit, unscaled.

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        anim : matplotlib.animation.Animation
            The animation.
        """
        return super().animate_topomap(*args, **self._units(units, scalings), **kwargs)

    def plot_joint(
        self,
        *args: Any,
        ts_args: dict | None = None,
        topomap_args: dict | None = None,
        **kwargs: Any,
    ):
        """Plot time courses and topomaps (see :meth:`mne.Evoked.plot_joint`).

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`mne.Evoked.plot_joint`.
        ts_args, topomap_args : dict | None
            As in MNE; their ``units`` and ``scalings`` default to the values'
            unit, unscaled.

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        """
        ts_args, topomap_args = dict(ts_args or {}), dict(topomap_args or {})
        for args_ in (ts_args, topomap_args):
            defaults = self._units(args_.get("units"), args_.get("scalings"))
            args_.update(defaults)
        return super().plot_joint(
            *args, ts_args=ts_args, topomap_args=topomap_args, **kwargs
        )

    def plot_topo(self, *args: Any, scalings: Any = None, **kwargs: Any):
        """Plot time courses on the sensor layout (see :meth:`mne.Evoked.plot_topo`).

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`mne.Evoked.plot_topo`.
        scalings : dict | None
            None: unscaled.

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        """
        scalings = self._units(None, scalings)["scalings"]
        return super().plot_topo(*args, scalings=scalings, **kwargs)
