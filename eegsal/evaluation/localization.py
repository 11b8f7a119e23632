"""Localization of attribution maps against the simulator's ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

__all__ = ["localization"]


def localization(attr, truth, *, label: str | None = None) -> pd.DataFrame:
    """How well each map points at the planted content signal.

    Parameters
    ----------
    attr : Attributions
        Maps of simulated epochs (channels x time).
    truth : GroundTruth
        The simulator's ground truth (``content_mask``).
    label : str | None
        The content value whose epochs carry the signal; default the
        simulator's positive label (``truth.params['labels'][0]``).

    Returns
    -------
    table : pandas.DataFrame
        One row per epoch that carries the signal: ``mass_accuracy`` (share
        of the positive attribution inside the mask), ``rank_accuracy``
        (share of the K highest cells inside the mask, K its size; Arras et
        al., 2022), ``auroc`` (``|attribution|`` scoring mask vs non-mask cells)
        and ``mask_share`` (the chance level of the first two), with the
        metadata.

    References
    ----------
    .. [1] Arras L, Osman A, Samek W (2022). CLEVR-XAI: a benchmark dataset
       for the ground truth evaluation of neural network explanations.
       Information Fusion 81:14-40.
    """
    mask = np.asarray(truth.content_mask, bool)
    if not mask.any():
        raise ValueError(
            "the ground truth has no content signal (scenario 'confound' or 'null'); "
            "localization needs the 'content' or 'both' scenario."
        )
    if attr.data.shape[1:] != mask.shape:
        raise ValueError(
            f"maps of shape {attr.data.shape[1:]} do not match the ground truth "
            f"{mask.shape}; localization needs channels x time maps of the epochs."
        )
    label = truth.params.get("labels", ("flying",))[0] if label is None else label
    meta = attr.metadata.reset_index(drop=True)
    idx = np.flatnonzero((meta["content"] == label).to_numpy())
    k = int(mask.sum())
    flat = mask.ravel()
    rows = []
    for i in idx:
        a = np.asarray(attr.data[i], np.float64).ravel()
        pos = np.clip(a, 0, None)
        top = np.argpartition(-np.abs(a), k - 1)[:k]
        rows.append(
            dict(
                epoch=i,
                mass_accuracy=pos[flat].sum() / pos.sum() if pos.sum() else np.nan,
                rank_accuracy=flat[top].mean(),
                auroc=roc_auc_score(flat, np.abs(a)),
                mask_share=flat.mean(),
            )
        )
    return pd.DataFrame(rows).join(meta.iloc[idx].reset_index(drop=True))
