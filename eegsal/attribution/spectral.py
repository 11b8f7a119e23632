"""Spectral attributions: which frequencies, on which channels, drove the decision.

The input is re-parameterised by its Fourier transform inside the graph: each
epoch's channel spectra are split into amplitudes and phases, and the model
sees ``irfft(amplitude * exp(i * phase))``, which is the epoch itself. Holding
the phases fixed, the gradient with respect to the amplitudes says how the
target changes with the power at each frequency (Schirrmeister et al., 2017),
and integrated gradients along amplitudes scaled from zero give a complete
decomposition of ``f(x) - f(0)`` over channels x frequencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mne
import numpy as np
import torch
from torch import nn

from eegsal._check import check_option, validate_type
from eegsal._docs import fill_doc
from eegsal._logging import logger, verbose
from eegsal.attribution.container import Attributions
from eegsal.decoding.networks import get_device

if TYPE_CHECKING:
    from eegsal.decoding.result import DecodingResult

__all__ = ["BANDS", "attribute_spectrum"]

#: canonical EEG bands (Hz): [low, high)
BANDS = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 12.0),
    "sigma": (12.0, 16.0),
    "beta": (16.0, 30.0),
    "gamma": (30.0, 45.0),
}
SPECTRAL_METHODS = ("amplitude_gradient", "integrated_gradients", "band_occlusion")


class _FromAmplitudes(nn.Module):
    """The model, fed by Fourier amplitudes with the phases of given epochs."""

    def __init__(self, forward: nn.Module, phase: torch.Tensor, n_times: int):
        super().__init__()
        self.forward_model, self.n_times = forward, n_times
        self.register_buffer("unit", torch.polar(torch.ones_like(phase), phase))

    def forward(self, amplitude: torch.Tensor) -> torch.Tensor:  # noqa: D102
        unit = self.unit
        if len(amplitude) != len(unit):  # Captum's IG stacks the steps, batch by batch
            unit = unit.repeat(len(amplitude) // len(unit), 1, 1)
        x = torch.fft.irfft(amplitude * unit, n=self.n_times)
        return self.forward_model(x)


def _band_mask(freqs: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    return (freqs >= band[0]) & (freqs < band[1])


@fill_doc
@verbose
def attribute_spectrum(
    result_or_model: DecodingResult | nn.Module,
    epochs: mne.BaseEpochs,
    *,
    method: str = "amplitude_gradient",
    target: str = "logit",
    label: str | int = "true",
    n_steps: int = 50,
    bands: dict[str, tuple[float, float]] | None = None,
    batch_size: int = 64,
    device: str = "auto",
    verbose: bool | str | int | None = None,
) -> Attributions:
    """Attribute each epoch's decision to channels x frequencies (or bands).

    Parameters
    ----------
    result_or_model : DecodingResult | torch.nn.Module
        As in :func:`eegsal.attribute` (held-out fold models for a result).
    epochs : mne.Epochs
        The epochs to explain.
    method : str
        ``'amplitude_gradient'``: the gradient of the target with respect to
        the Fourier amplitudes, phases fixed (target per µV of amplitude);
        ``'integrated_gradients'``: IG along amplitudes scaled from 0 to the
        epoch's (complete: the map sums to ``f(x) - f(0)``, reported per epoch
        as ``completeness_error``); ``'band_occlusion'``: the drop of the
        target when one band is removed from one channel (its Fourier bins
        zeroed: an ideal zero-phase band-stop), per channel x band.
    target : str
        As in :func:`eegsal.attribute`.
    label : str | int
        As in :func:`eegsal.attribute`.
    n_steps : int
        Integrated-gradients steps.
    bands : dict of str to (float, float) | None
        Bands of ``'band_occlusion'`` (Hz, [low, high)); default
        :data:`BANDS`.
    batch_size : int
        Epochs per batch.
    %(device)s
    %(verbose)s

    Returns
    -------
    attr : Attributions
        Values of shape (n_epochs, n_channels, n_freqs) with ``domain =
        'frequency'``: ``attr.freqs`` (Hz) are the rFFT frequencies, or the
        band centres for band occlusion (``attr.params['bands']`` names
        them). The statistics of :mod:`eegsal.stats` run on them unchanged.

    References
    ----------
    .. [1] Schirrmeister RT et al. (2017). Deep learning with convolutional
       neural networks for EEG decoding and visualization. Hum Brain Mapp
       38:5391-5420.

    Examples
    --------
    >>> spec = eegsal.attribution.attribute_spectrum(result, epochs)  # doctest: +SKIP
    """
    from captum.attr import IntegratedGradients, Saliency

    from eegsal.attribution.methods import (
        class_index,
        fold_batches,
        resolve_models,
        summation_delta,
    )

    validate_type(epochs, mne.BaseEpochs, "epochs")
    check_option("method", method, SPECTRAL_METHODS)
    picks = mne.pick_types(epochs.info, eeg=True)
    n, n_chans, n_times = len(epochs), len(picks), len(epochs.times)
    sfreq = epochs.info["sfreq"]
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    bands = dict(BANDS if bands is None else bands)
    models, fold, classes, y_true = resolve_models(result_or_model, epochs, label)
    dev = get_device(device)
    if method == "band_occlusion":
        masks = {k: _band_mask(freqs, b) for k, b in bands.items()}
        empty = [k for k, m in masks.items() if not m.any()]
        if empty:
            raise ValueError(
                f"bands {empty} contain no frequency bin of these epochs "
                f"({freqs[1]:.3g} Hz resolution, up to {freqs[-1]:.4g} Hz)."
            )
        out = np.zeros((n, n_chans, len(bands)), np.float32)
    else:
        out = np.zeros((n, n_chans, len(freqs)), np.float32)
    delta = np.full(n, np.nan)
    logger.info("Spectral %s for %d epochs on %s", method, n, dev)
    for model, forward, b, x in fold_batches(
        models,
        fold,
        epochs,
        picks,
        target=target,
        batch_size=batch_size,
        device=dev,
        desc=f"spectral {method}",
    ):
        xt = torch.from_numpy(x).to(dev)
        cls = class_index(label, model, xt, classes,
                          None if y_true is None else y_true[b])  # fmt: skip
        spec = torch.fft.rfft(xt)
        if method == "band_occlusion":
            with torch.no_grad():
                sel = torch.as_tensor(cls, device=dev).expand(len(b)).reshape(-1, 1)
                y0 = forward(xt).gather(1, sel)[:, 0]
                for j, mask in enumerate(masks.values()):
                    keep = torch.from_numpy(~mask).to(dev)
                    for c in range(n_chans):
                        s = spec.clone()
                        s[:, c] = s[:, c] * keep
                        xs = torch.fft.irfft(s, n=n_times)
                        drop = y0 - forward(xs).gather(1, sel)[:, 0]
                        out[b, c, j] = drop.float().cpu().numpy()
            continue
        amp = spec.abs()
        wrapped = _FromAmplitudes(forward, spec.angle(), n_times).to(dev)
        if method == "amplitude_gradient":
            a = Saliency(wrapped).attribute(amp.requires_grad_(), target=cls,
                                            abs=False)  # fmt: skip
        else:
            zero = torch.zeros_like(amp)
            a = IntegratedGradients(wrapped).attribute(
                amp.requires_grad_(), baselines=zero, target=cls, n_steps=n_steps
            )
            d = summation_delta(wrapped, amp, zero, cls, a)
            delta[b] = d.cpu().numpy()
        out[b] = a.detach().cpu().numpy()
    meta = None if epochs.metadata is None else epochs.metadata.reset_index(drop=True)
    if method == "integrated_gradients":
        meta = meta.copy() if meta is not None else None
        if meta is None:
            import pandas as pd

            meta = pd.DataFrame(index=range(n))
        meta["completeness_error"] = delta
    axis = freqs
    params = dict(label=str(label), domain="frequency")
    if method == "band_occlusion":
        axis = np.array([(lo + hi) / 2 for lo, hi in bands.values()])
        params["bands"] = {k: list(v) for k, v in bands.items()}
    if method == "integrated_gradients":
        params.update(n_steps=n_steps, baseline="zero amplitudes")
    return Attributions(
        out,
        mne.pick_info(epochs.info, picks),
        axis,
        metadata=meta,
        method=f"spectral_{method}",
        target=target,
        sign="signed",
        **params,
    )
