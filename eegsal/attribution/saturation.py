"""Logit versus probability: how saturation shrinks probability gradients."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import torch
from torch import nn

from eegsal.attribution.methods import attribute
from eegsal.decoding import DecodingResult

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
    X = torch.from_numpy(epochs.get_data(picks="eeg", units="uV").astype(np.float32))
    if isinstance(result_or_model, DecodingResult):
        models, fold = result_or_model.models, result_or_model.predictions["fold"]
        fold = fold.to_numpy()
    else:
        models, fold = [result_or_model], np.zeros(len(X), int)
    rows = []
    for k, model in enumerate(models):
        idx = np.flatnonzero(fold == k)
        with torch.no_grad():
            rows.append((idx, model.cpu().eval()(X[idx]).softmax(-1).numpy()))
    proba = np.empty((len(X), rows[0][1].shape[1]))
    for idx, p in rows:
        proba[idx] = p
    if label == "true":
        classes = result_or_model.classes
        y = result_or_model.predictions["y_true"].to_numpy()
        cls = np.searchsorted(classes, y)
    elif label == "predicted":
        cls = proba.argmax(1)
    else:
        cls = np.full(len(X), int(label))
    out = (
        epochs.metadata.reset_index(drop=True).copy()
        if epochs.metadata is not None
        else pd.DataFrame(index=range(len(X)))
    )
    out["probability"] = proba[np.arange(len(X)), cls]
    out["logit_norm"] = np.linalg.norm(logit.data.reshape(len(X), -1), axis=1)
    out["probability_norm"] = np.linalg.norm(prob.data.reshape(len(X), -1), axis=1)
    out["ratio"] = out["probability_norm"] / out["logit_norm"]
    return out
