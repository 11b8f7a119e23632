"""Logit versus probability: how saturation shrinks probability gradients."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import torch
from torch import nn

from eegsal.attribution.methods import attribute
from eegsal.decoding.result import DecodingResult

__all__ = ["saturation"]


def saturation(
    result_or_model: DecodingResult | nn.Module,
    epochs: mne.BaseEpochs,
    *,
    label: str | int = "true",
    batch_size: int = 64,
    device: str = "auto",
) -> pd.DataFrame:
    """Compare gradient maps of the logit and of the probability, epoch by epoch.

    A softmax output saturates: once an epoch is classified confidently, the
    gradient of its probability vanishes although the logit's does not, so
    probability maps go blank exactly where the model is surest. For two
    classes ``dp/dx = p (1 - p) d(log-odds)/dx``.

    Parameters
    ----------
    result_or_model : DecodingResult | torch.nn.Module
        As in :func:`eegsal.attribute`.
    epochs : mne.Epochs
        The epochs.
    label : str | int
        Which class, as in :func:`eegsal.attribute`.
    batch_size : int
        Epochs per batch.
    device : str
        ``'auto'``, ``'cpu'`` or ``'cuda'``.

    Returns
    -------
    table : pandas.DataFrame
        One row per epoch (with the metadata): ``probability`` of the explained
        class, ``logit_norm`` and ``probability_norm`` (L2 norms of the two
        saliency maps) and ``ratio`` (probability / logit norm).
    """
    kw = dict(label=label, batch_size=batch_size, device=device, method="saliency")
    logit = attribute(result_or_model, epochs, target="logit", **kw)
    prob = attribute(result_or_model, epochs, target="probability", **kw)
    if isinstance(result_or_model, DecodingResult):  # out-of-fold, already computed
        res = result_or_model
        proba = res.predictions[[f"proba_{c}" for c in res.classes]].to_numpy()
    else:
        X = epochs.get_data(picks="eeg", units="uV").astype(np.float32)
        model = result_or_model.cpu().eval()
        with torch.no_grad():
            proba = np.concatenate(
                [
                    model(torch.from_numpy(X[i : i + batch_size])).softmax(-1).numpy()
                    for i in range(0, len(X), batch_size)
                ]
            )
    n = len(proba)
    if label == "true":
        classes = result_or_model.classes
        y = result_or_model.predictions["y_true"].to_numpy()
        cls = np.searchsorted(classes, y)
    elif label == "predicted":
        cls = proba.argmax(1)
    else:
        cls = np.full(n, int(label))
    out = (
        epochs.metadata.reset_index(drop=True).copy()
        if epochs.metadata is not None
        else pd.DataFrame(index=range(n))
    )
    out["probability"] = proba[np.arange(n), cls]
    out["logit_norm"] = np.linalg.norm(logit.data.reshape(n, -1), axis=1)
    out["probability_norm"] = np.linalg.norm(prob.data.reshape(n, -1), axis=1)
    out["ratio"] = out["probability_norm"] / out["logit_norm"]
    return out
