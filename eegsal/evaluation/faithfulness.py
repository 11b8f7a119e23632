"""Deletion and insertion curves: does removing what a map ranks first hurt most."""

from __future__ import annotations

from dataclasses import dataclass

import mne
import numpy as np
import pandas as pd

from eegsal._check import check_option, check_random_state
from eegsal._docs import fill_doc
from eegsal._logging import logger, verbose

__all__ = [
    "FaithfulnessCurves",
    "curve_auc",
    "faithfulness",
    "perturbation_reference",
]

PERTURBATIONS = ("zeros", "mean", "noise", "phase")


def curve_auc(fraction: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Area under score-vs-fraction curves (trapezoids), on fractions in [0, 1].

    Parameters
    ----------
    fraction : ndarray, shape (n_steps,)
        Fraction of the input removed (deletion) or restored (insertion).
    score : ndarray, shape (..., n_steps)
        Target score after each step.

    Returns
    -------
    auc : ndarray, shape (...)
        The area, in score units (the mean score over the fractions).
    """
    return np.trapezoid(score, fraction, axis=-1)


def perturbation_reference(
    x: np.ndarray, kind: str, rng: np.random.Generator
) -> np.ndarray:
    """Build what a removed cell becomes: one reference per epoch, shaped as ``x``.

    Parameters
    ----------
    x : ndarray, shape (n_epochs, n_channels, n_times)
        Epochs (µV).
    kind : str
        ``'zeros'``; ``'mean'`` (each channel's mean over the epoch);
        ``'noise'`` (Gaussian noise with each channel's mean and standard
        deviation); ``'phase'`` (a phase-randomized surrogate of each channel:
        the same amplitude spectrum, random Fourier phases, so the power
        stays and the timing goes; Theiler et al., 1992).
    rng : numpy.random.Generator
        Random numbers for ``'noise'`` and ``'phase'``.

    Returns
    -------
    reference : ndarray, shape (n_epochs, n_channels, n_times)
        The replacement values.
    """
    check_option("perturbation", kind, PERTURBATIONS)
    if kind == "zeros":
        return np.zeros_like(x)
    mean = x.mean(axis=-1, keepdims=True)
    if kind == "mean":
        return np.broadcast_to(mean, x.shape).astype(x.dtype)
    if kind == "noise":
        std = x.std(axis=-1, keepdims=True)
        return (mean + std * rng.standard_normal(x.shape)).astype(x.dtype)
    spec = np.fft.rfft(x - mean, axis=-1)
    phase = rng.uniform(0, 2 * np.pi, spec.shape)
    phase[..., 0] = 0.0  # keep the mean (zero here) real
    if x.shape[-1] % 2 == 0:
        phase[..., -1] = 0.0  # and the Nyquist term
    surrogate = np.fft.irfft(np.abs(spec) * np.exp(1j * phase), n=x.shape[-1])
    return (mean + surrogate).astype(x.dtype)


@dataclass
class FaithfulnessCurves:
    """Deletion or insertion curves, per epoch and ordering, and their areas.

    Attributes
    ----------
    curves : pandas.DataFrame
        One row per epoch x ordering x step: ``epoch, ordering``
        (``'attribution'`` or ``'random'``), ``step, fraction, score``.
    auc : pandas.DataFrame
        One row per epoch: ``auc_attribution``, ``auc_random`` and ``gain``
        (random minus attribution for deletion, attribution minus random for
        insertion: positive when the map beats chance), with the metadata.
    kind : str
        ``'deletion'`` or ``'insertion'``.
    params : dict
        Perturbation, patch, steps, target.
    """

    curves: pd.DataFrame
    auc: pd.DataFrame
    kind: str
    params: dict

    def __repr__(self) -> str:
        gain = self.auc["gain"]
        return (
            f"<FaithfulnessCurves | {self.kind}, {len(self.auc)} epochs, "
            f"{self.params['perturbation']} perturbation, gain over random "
            f"{gain.mean():.3g} ± {gain.std(ddof=0):.3g}>"
        )

    def plot(self, ax=None):
        """Plot the mean curves (± SEM over epochs) of both orderings.

        Parameters
        ----------
        ax : matplotlib.axes.Axes | None
            Where to draw; None makes a figure.

        Returns
        -------
        fig : matplotlib.figure.Figure
            The figure.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
        for ordering, group in self.curves.groupby("ordering", sort=False):
            stats = group.groupby("fraction")["score"].agg(["mean", "sem"])
            auc = self.auc[f"auc_{ordering}"].mean()
            ax.plot(stats.index, stats["mean"], label=f"{ordering} (AUC {auc:.3g})")
            ax.fill_between(stats.index, stats["mean"] - stats["sem"],
                            stats["mean"] + stats["sem"], alpha=0.25)  # fmt: skip
        removed = "removed" if self.kind == "deletion" else "restored"
        ax.set_xlabel(f"fraction of cells {removed}")
        ax.set_ylabel(self.params["target"])
        ax.set_title(f"{self.kind} ({self.params['perturbation']})", fontsize=10)
        ax.legend(fontsize=8, frameon=False)
        return ax.figure


def explained(result_or_model, epochs: mne.BaseEpochs, attr) -> tuple:
    """Return the explained class (``attr``'s label), models, folds and truth."""
    from eegsal.attribution.methods import resolve_models

    label = attr.params.get("label", "true")
    label = int(label) if str(label).lstrip("-").isdigit() else label
    return (label, *resolve_models(result_or_model, epochs, label))


def explained_batches(result_or_model, epochs, attr, *, batch_size, device, desc):
    """Yield ``(forward, idx, x, a, cls)``: the explained epochs, batch by batch.

    ``forward`` maps inputs to ``attr``'s target, ``x`` holds the epochs
    ``idx`` (µV, float32), ``a`` their maps (float64) and ``cls`` the
    explained class of each, an (n, 1) tensor on the device (for ``gather``).
    """
    import torch

    from eegsal.attribution.methods import class_index, fold_batches
    from eegsal.decoding.networks import get_device

    picks = mne.pick_types(epochs.info, eeg=True)
    label, models, fold, classes, y_true = explained(result_or_model, epochs, attr)
    dev = get_device(device)
    for model, forward, b, x in fold_batches(
        models,
        fold,
        epochs,
        picks,
        target=attr.target,
        batch_size=batch_size,
        device=dev,
        desc=desc,
    ):
        with torch.no_grad():
            cls = class_index(label, model, torch.from_numpy(x).to(dev), classes,
                              None if y_true is None else y_true[b])  # fmt: skip
        cls = torch.as_tensor(cls, device=dev).expand(len(b)).reshape(-1, 1)
        yield forward, b, x, np.asarray(attr[b].data, np.float64), cls


def patch_sums(a: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """Sum of the attribution in each (channels x samples) patch: (n, P)."""
    n, c, t = a.shape
    pc, pt = patch
    pad_c, pad_t = -c % pc, -t % pt
    a = np.pad(a, ((0, 0), (0, pad_c), (0, pad_t)))
    a = a.reshape(n, (c + pad_c) // pc, pc, (t + pad_t) // pt, pt)
    return a.sum(axis=(2, 4)).reshape(n, -1)


def patch_cells(shape, patch) -> np.ndarray:
    """Flat cell indices of each patch, (n_patches, cells per patch); -1 pads."""
    _, c, t = shape
    pc, pt = patch
    grid = np.full((-(-c // pc) * pc, -(-t // pt) * pt), -1)
    grid[:c, :t] = np.arange(c * t).reshape(c, t)
    n_pc, n_pt = grid.shape[0] // pc, grid.shape[1] // pt
    return (
        grid.reshape(n_pc, pc, n_pt, pt).transpose(0, 2, 1, 3).reshape(n_pc * n_pt, -1)
    )


@fill_doc
@verbose
def faithfulness(
    result_or_model,
    epochs: mne.BaseEpochs,
    attr,
    *,
    kind: str = "deletion",
    n_steps: int = 20,
    patch: tuple[int, int] = (1, 10),
    perturbation: str = "zeros",
    n_random: int = 1,
    batch_size: int = 64,
    seed: int | np.random.Generator | None = 0,
    device: str = "auto",
    verbose: bool | str | int | None = None,
) -> FaithfulnessCurves:
    """Trace deletion or insertion curves of a decoder's score along a map.

    Cells are grouped into patches of ``patch`` = (channels, samples) and
    ranked by their summed attribution, most relevant first. *Deletion*
    replaces the first 0, 1/n_steps, ..., all patches by the ``perturbation``
    reference; *insertion* starts from the reference and restores them. After
    each step the explained target (that of ``attr``: its target and class)
    is recorded; a random ordering of the same patches gives the chance
    curve. A faithful map makes the deletion curve fall, and the insertion
    curve rise, faster than chance (Samek et al., 2017; Petsiuk et al., 2018).

    Parameters
    ----------
    result_or_model : DecodingResult | torch.nn.Module
        What ``attr`` explains (each epoch scored by its held-out fold model).
    epochs : mne.Epochs
        The explained epochs.
    attr : Attributions
        The maps (spatially resolved).
    kind : str
        ``'deletion'`` or ``'insertion'``.
    n_steps : int
        Steps from none to all patches.
    patch : tuple of int
        Patch size (channels, samples); (1, 1) ranks single cells.
    perturbation : str
        Reference values: ``'zeros'``, ``'mean'``, ``'noise'`` or
        ``'phase'`` (see :func:`perturbation_reference`).
    n_random : int
        Random orderings per epoch (their curves are averaged); 0 skips the
        chance curve (``auc_random`` and ``gain`` are then NaN).
    batch_size : int
        Epochs per forward pass.
    %(seed)s
    %(device)s
    %(verbose)s

    Returns
    -------
    curves : FaithfulnessCurves
        Tidy curves and areas, with ``.plot()``.

    References
    ----------
    .. [1] Samek W et al. (2017). Evaluating the visualization of what a deep
       neural network has learned. IEEE TNNLS 28:2660-2673.
    .. [2] Petsiuk V, Das A, Saenko K (2018). RISE: randomized input sampling
       for explanation of black-box models. BMVC.

    Examples
    --------
    >>> fc = eegsal.evaluation.faithfulness(result, epochs, attr)  # doctest: +SKIP
    >>> fc.auc["gain"].mean()  # doctest: +SKIP
    """
    import torch

    check_option("kind", kind, ("deletion", "insertion"))
    check_option("perturbation", perturbation, PERTURBATIONS)
    if not attr.params.get("spatially_resolved", True):
        raise ValueError(
            "faithfulness needs a channels x time map; this one is a time course "
            "(Grad-CAM after spatial mixing)."
        )
    picks = mne.pick_types(epochs.info, eeg=True)
    n = len(epochs)
    if attr.data.shape != (n, len(picks), len(epochs.times)):
        raise ValueError(
            f"attr has shape {attr.data.shape}; the epochs give "
            f"{(n, len(picks), len(epochs.times))}: pass the explained epochs."
        )
    rng = check_random_state(seed)
    shape = (1, len(picks), len(epochs.times))
    n_patches = patch_sums(np.zeros(shape), patch).shape[1]
    cells_of = patch_cells(shape, patch)
    counts = np.round(np.linspace(0, n_patches, n_steps + 1)).astype(int)
    fraction = counts / n_patches
    scores = {"attribution": np.zeros((n, n_steps + 1))}
    scores["random"] = (
        np.zeros((n, n_steps + 1)) if n_random else np.full((n, n_steps + 1), np.nan)
    )
    logger.info(
        "%s curves: %d epochs x %d steps (%d patches of %s) x %d orderings",
        kind, n, n_steps, n_patches, patch, 1 + n_random,
    )  # fmt: skip
    for forward, b, x, a, cls in explained_batches(
        result_or_model, epochs, attr, batch_size=batch_size, device=device, desc=kind
    ):
        ref = perturbation_reference(x, perturbation, rng)
        with torch.no_grad():
            # ties in an unspecified (but fixed) order: 2x faster than "stable"
            ranked = np.argsort(-patch_sums(a, patch), axis=1)
            identity = np.tile(np.arange(n_patches), (len(b), 1))
            orders = [("attribution", ranked)] + [
                ("random", rng.permuted(identity, axis=1)) for _ in range(n_random)
            ]  # fmt: skip
            # each step moves only the new patches' cells, by flat indices into
            # one buffer whose last slot absorbs the patches' padding: the
            # curves cost their forward passes and little else
            start, src = (x, ref) if kind == "deletion" else (ref, x)
            size = start.size
            pad = np.zeros(1, x.dtype)
            src = np.concatenate([src.ravel(), pad])
            offset = (np.arange(len(b)) * start[0].size)[:, None, None]
            for name, order in orders:
                flat = cells_of[order]  # (epochs, patches, cells per patch)
                flat = np.where(flat >= 0, flat + offset, size)
                buf = np.concatenate([start.ravel(), pad])
                xs = buf[:size].reshape(x.shape)
                for s, count in enumerate(counts):
                    if s:
                        idx = flat[:, counts[s - 1] : count].ravel()
                        buf[idx] = src[idx]
                    xt = torch.from_numpy(xs).to(cls.device)
                    add = forward(xt).gather(1, cls)[:, 0].float().cpu().numpy()
                    if name == "random":
                        add = add / n_random
                    scores[name][b, s] += add
    rows = []
    for name, sc in scores.items():
        if name == "random" and not n_random:
            continue
        rows.append(pd.DataFrame({
            "epoch": np.repeat(np.arange(n), n_steps + 1),
            "ordering": name,
            "step": np.tile(np.arange(n_steps + 1), n),
            "fraction": np.tile(fraction, n),
            "score": sc.ravel(),
        }))  # fmt: skip
    auc = pd.DataFrame({
        "epoch": np.arange(n),
        "auc_attribution": curve_auc(fraction, scores["attribution"]),
        "auc_random": curve_auc(fraction, scores["random"]),
    })  # fmt: skip
    sign = 1 if kind == "insertion" else -1
    auc["gain"] = sign * (auc["auc_attribution"] - auc["auc_random"])
    if attr.metadata is not None:
        auc = auc.join(attr.metadata.reset_index(drop=True))
    params = dict(
        perturbation=perturbation,
        patch=list(patch),
        n_steps=n_steps,
        target=attr.target,
        method=attr.method,
        n_random=n_random,
    )
    return FaithfulnessCurves(pd.concat(rows, ignore_index=True), auc, kind, params)
