"""Stability of attribution maps under small input noise."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd

from eegsal._check import check_random_state
from eegsal._docs import fill_doc
from eegsal._logging import progress, verbose

__all__ = ["stability"]


@fill_doc
@verbose
def stability(
    result_or_model,
    epochs: mne.BaseEpochs,
    *,
    method="saliency",
    noise: tuple[float, ...] = (0.01, 0.05, 0.1),
    n_samples: int = 10,
    seed: int | np.random.Generator | None = 0,
    verbose: bool | str | int | None = None,
    **attribute_params,
) -> pd.DataFrame:
    """Max- and average-sensitivity of the maps to Gaussian input noise.

    For each noise level (in units of the standard deviation of the data),
    ``n_samples`` noisy copies of every epoch are explained, and the relative
    change of the map is measured:
    ``||a(x + e) - a(x)|| / ||a(x)||`` (Frobenius norms), its maximum over the
    samples (max-sensitivity) and its mean (average sensitivity; Yeh et al.,
    2019). A map that does not change scores 0.

    Parameters
    ----------
    result_or_model : DecodingResult | torch.nn.Module
        The decoder.
    epochs : mne.Epochs
        Epochs to explain.
    method : str | callable
        An :func:`eegsal.attribute` method, or
        ``f(result_or_model, epochs) -> ndarray``.
    noise : tuple of float
        Noise levels, relative to the standard deviation of the data.
    n_samples : int
        Noisy copies per epoch and level.
    %(seed)s
    %(verbose)s
    **attribute_params
        Passed to :func:`eegsal.attribute`.

    Returns
    -------
    table : pandas.DataFrame
        One row per epoch x noise level: ``epoch, noise, max_sensitivity,
        avg_sensitivity``.

    References
    ----------
    .. [1] Yeh CK et al. (2019). On the (in)fidelity and sensitivity of
       explanations. NeurIPS.
    """
    from eegsal.attribution import attribute

    def explain(ep):
        if callable(method):
            return np.asarray(method(result_or_model, ep), dtype=np.float64)
        return np.asarray(attribute(result_or_model, ep, method=method, verbose=False,
                                    **attribute_params).data, np.float64)  # fmt: skip

    rng = check_random_state(seed)
    x = epochs.get_data(picks="eeg")
    base = explain(epochs)
    norm = np.linalg.norm(base.reshape(len(base), -1), axis=1)
    norm = np.where(norm > 0, norm, 1.0)
    sd = x.std()
    rows = []
    for level in progress(list(noise), desc="noise levels"):
        rel = np.empty((n_samples, len(x)))
        for s in range(n_samples):
            noisy = epochs.copy().pick("eeg")
            noisy._data = x + level * sd * rng.standard_normal(x.shape)
            diff = explain(noisy) - base
            rel[s] = np.linalg.norm(diff.reshape(len(x), -1), axis=1) / norm
        rows.append(pd.DataFrame({"epoch": np.arange(len(x)), "noise": level,
                                  "max_sensitivity": rel.max(0),
                                  "avg_sensitivity": rel.mean(0)}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)
