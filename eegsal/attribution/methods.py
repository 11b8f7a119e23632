"""Gradient attribution methods, computed by Captum on EEG-shaped inputs."""

from __future__ import annotations

import os
import warnings

import mne
import numpy as np
import pandas as pd
import torch
from torch import nn

from eegsal._check import check_option, validate_type
from eegsal._logging import logger, progress, verbose
from eegsal.attribution._rules import RescaleDeepLift, guided_gradient
from eegsal.attribution.container import Attributions
from eegsal.attribution.gradcam import (
    default_layer,
    find_layer,
    fit_patterns,
    layer_axes,
    pattern_gradcam,
)
from eegsal.attribution.io import AttributionsWriter
from eegsal.decoding.networks import get_device, input_mean, members_of
from eegsal.decoding.result import DecodingResult
from eegsal.models._timing import to_samples

__all__ = ["METHODS", "attribute"]

#: The attribution methods of :func:`eegsal.attribute` (``method=``).
METHODS = (
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "deeplift",
    "occlusion",
    "gradcam",
    "guided_gradcam",
)
TARGETS = ("logit", "probability", "log_probability", "contrast")
_USES_BASELINE = ("integrated_gradients", "deeplift", "occlusion")


class _Target(nn.Module):
    """Wrap a logit model so that its outputs are the requested target."""

    def __init__(self, model: nn.Module, target: str):
        super().__init__()
        self.model, self.target = model, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        logits = self.model(x)
        if self.target == "probability":
            return logits.softmax(dim=-1)
        if self.target == "log_probability":
            return logits.log_softmax(dim=-1)
        if self.target == "contrast":  # logit_k minus the mean of the other logits
            k = logits.shape[-1]
            return (k * logits - logits.sum(-1, keepdim=True)) / max(k - 1, 1)
        return logits


def _baseline(
    baseline, model: nn.Module, data_mean: np.ndarray | None, n_chans: int, n_times: int
) -> np.ndarray:
    """Build the reference input (n_chans, n_times), µV, of IG, DeepLIFT, occlusion."""
    if isinstance(baseline, str):
        check_option("baseline", baseline, ("zeros", "mean"))
        if baseline == "zeros":
            return np.zeros((n_chans, n_times), np.float32)
        mean = input_mean(model)  # the training folds' channel means, in µV
        if mean is None:
            mean = data_mean
        return np.repeat(mean[:, None], n_times, axis=1).astype(np.float32)
    arr = np.asarray(baseline, dtype=np.float32)
    if arr.shape == (n_chans,):
        arr = np.repeat(arr[:, None], n_times, axis=1)
    if arr.shape != (n_chans, n_times):
        raise ValueError(
            f"baseline must be 'zeros', 'mean' or an array of shape ({n_chans},) or "
            f"({n_chans}, {n_times}) in µV, got shape {arr.shape}."
        )
    return arr


def summation_delta(forward, x, base, cls, attr) -> torch.Tensor:
    """Completeness error of each epoch: sum of its map minus f(x) - f(baseline).

    The sums are taken in float64: the error is a small difference of large
    sums, which float32 would round differently for every batching.
    """
    with torch.no_grad():
        rows = torch.arange(x.shape[0], device=x.device)
        gain = forward(x)[rows, cls].double() - forward(base)[rows, cls].double()
    return attr.detach().double().flatten(1).sum(1) - gain


#: DeepLIFT's maps sum to f(x) - f(baseline) by construction; a larger miss
#: than float32 rounding (relative to |f(x) - f(baseline)|, over all epochs)
#: means a nonlinearity that its rules do not see.
DEEPLIFT_RTOL = 1e-3


def _check_summation(delta: np.ndarray, gain: np.ndarray) -> None:
    """Warn when DeepLIFT's maps do not sum to f(x) - f(baseline)."""
    miss = np.abs(delta).sum() / max(np.abs(gain).sum(), np.finfo(float).tiny)
    if miss > DEEPLIFT_RTOL:
        warnings.warn(
            f"DeepLIFT's maps miss summation-to-delta: their sums differ from "
            f"f(x) - f(baseline) by {miss:.2g} of |f(x) - f(baseline)| (per "
            "epoch: metadata column 'completeness_error'). The model or the "
            "target has a nonlinearity that DeepLIFT treats as linear: a function "
            "call (torch.square, torch.log, softmax) or a module it has no rule "
            "for. Compute it in an elementwise torch.nn module, or explain "
            "target='logit'.",
            RuntimeWarning,
            stacklevel=3,
        )


def _captum(method, forward, x, cls, base, opts):
    """One batch of maps, (batch, C, T) or (batch, 1, T), and IG/DeepLIFT deltas."""
    from captum import attr as ca

    if method == "saliency":
        return ca.Saliency(forward).attribute(x, target=cls, abs=False), None
    if method == "input_x_gradient":
        return ca.InputXGradient(forward).attribute(x, target=cls), None
    if method == "integrated_gradients":
        a = ca.IntegratedGradients(forward).attribute(
            x, baselines=base, target=cls, n_steps=opts["n_steps"]
        )
        return a, summation_delta(forward, x, base, cls, a)
    if method == "smoothgrad":
        sd = float(opts["noise"] * opts["data_std"])
        return ca.NoiseTunnel(ca.Saliency(forward)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=opts["n_samples"],
            stdevs=sd,
            target=cls,
            abs=False,
        ), None
    if method == "deeplift":
        with warnings.catch_warnings():  # Captum's note that it hooks activations
            warnings.filterwarnings("ignore", r"\s*Setting forward, backward hooks")
            a = RescaleDeepLift(forward).attribute(x, baselines=base, target=cls)
        return a, summation_delta(forward, x, base, cls, a)
    if method == "occlusion":
        return ca.Occlusion(forward).attribute(
            x,
            sliding_window_shapes=opts["window"],
            strides=opts["window"],
            baselines=base,
            target=cls,
        ), None
    # Grad-CAM at a layer; electrodes kept where the layer has them
    layer = opts["layer_module"]
    if opts["projection"] == "pattern":
        cam = pattern_gradcam(
            forward, layer, opts["time_axis"], x, cls, opts["patterns"], opts["relu"]
        )
        return cam, None
    cam = ca.LayerGradCam(forward, layer).attribute(
        x, target=cls, relu_attributions=opts["relu"]
    )[:, 0]
    chan_axis = opts["chan_axis"]
    if chan_axis == 3:  # (batch, time, electrodes)
        cam = cam.transpose(1, 2)
    elif chan_axis is None:  # (batch, 1, time) or (batch, time, 1)
        cam = cam.reshape(cam.shape[0], 1, -1)
    # the layer's time steps onto the input samples (time only, never electrodes);
    # half-sample-centred linear interpolation, constant beyond the ends
    cam = nn.functional.interpolate(cam, size=x.shape[-1], mode="linear")
    if method == "guided_gradcam":  # electrodes from the guided input gradient
        return guided_gradient(forward, x, cls) * cam, None
    return cam, None


@verbose
def attribute(
    result_or_model: DecodingResult | nn.Module,
    epochs: mne.BaseEpochs,
    *,
    method: str = "saliency",
    target: str = "logit",
    label: str | int = "true",
    baseline: str | np.ndarray = "zeros",
    n_steps: int = 50,
    noise: float = 0.1,
    n_samples: int = 25,
    window: tuple[int, int] = (1, 10),
    window_s: float | None = None,
    layer: str | None = None,
    relu: bool = True,
    projection: str | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "auto",
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    verbose: bool | str | int | None = None,
) -> Attributions:
    """Attribute each epoch's decision to channels and time points.

    Parameters
    ----------
    result_or_model : DecodingResult | torch.nn.Module
        A cross-validated result (each epoch is then explained by the model of
        the fold that did **not** train on it) or any model mapping
        ``(batch, n_chans, n_times)`` EEG in µV to class logits. A result
        decoded with ``align`` explains each epoch through its subject's
        alignment, a fixed linear layer in front of the fold model
        (:meth:`DecodingResult.explainers`): maps stay per electrode, per µV.
        An :class:`~eegsal.decoding.Ensemble` (``n_seeds > 1``) is explained
        by the mean of its members' maps; gradients and integrated gradients
        being linear in the explained function, that is the map of the mean
        of the members' targets: for ``target='probability'`` the ensemble's
        predicted probability (the mean of the members'), for ``'logit'``
        the mean of the members' logits, which is not the log of the mean
        probability that the predictions use (the two may rank classes
        differently where the members disagree). ``completeness_error`` is
        then the members' mean error.
    epochs : mne.Epochs
        The epochs to explain. For a result: the epochs it was decoded from,
        unchanged and in their order (or ``epochs[idx]`` with
        ``result.take(idx)``); others are refused
        (:meth:`DecodingResult.check_epochs`).
    method : str
        ``'saliency'`` (signed gradient, unlike Captum's absolute default),
        ``'input_x_gradient'``, ``'integrated_gradients'`` (Sundararajan et al.,
        2017), ``'smoothgrad'`` (mean signed gradient under Gaussian input
        noise; Smilkov et al., 2017), ``'deeplift'`` (Shrikumar et al., 2017;
        the rescale rule at every elementwise nonlinear module, so the map
        sums to ``f(x) - f(baseline)``; a nonlinearity written as a function
        call is invisible to it, which the recorded completeness error and a
        ``RuntimeWarning`` reveal), ``'occlusion'`` (change of the target when
        a channel x time window is replaced by the baseline; Zeiler & Fergus,
        2014) or ``'gradcam'``
        (Selvaraju et al., 2017) at ``layer``, or ``'guided_gradcam'``: the
        Grad-CAM time course (or map) times guided backpropagation (the input
        gradient with negative gradients zeroed at every elementwise
        activation module, ELU included; Springenberg et al., 2015), which
        gives a later layer's Grad-CAM its electrode axis from the input
        gradient.
    target : str
        What is explained: the class ``'logit'``, its softmax ``'probability'``,
        ``'log_probability'``, or ``'contrast'`` (the class's logit minus the
        mean of the other classes' logits: for two classes, the log-odds).
    label : str | int
        Which class: ``'true'`` (the epoch's label; needs a result),
        ``'predicted'``, or a fixed class index.
    baseline : str | ndarray
        Reference input of IG, DeepLIFT and occlusion: ``'zeros'``, ``'mean'``
        (per-channel mean of the training folds, read from the fitted model's
        standardizing layer; for a bare model, of ``epochs``), or an array of
        shape (n_chans,) or (n_chans, n_times) in µV.
    n_steps : int
        Steps of the integrated-gradients path.
    noise : float
        SmoothGrad noise level, in units of the standard deviation of the data.
    n_samples : int
        SmoothGrad noisy samples per epoch.
    window : tuple of int
        Occlusion window (channels, samples), moved with the same strides.
    window_s : float | None
        Occlusion window length in seconds; when given it replaces the
        samples of ``window`` (which then gives the channels only), turned
        into ``round(window_s * sfreq)`` samples at the epochs' rate. The
        maps record both (``params['window']`` in samples, ``window_s``).
    layer : str | None
        Grad-CAM layer; None takes the model's first layer that keeps the
        electrode axis (``temporal_conv`` for eegsal's models), which gives a
        channels x time map. A layer after the spatial convolution gives a time
        course only (``spatially_resolved=False``, data of shape
        (n_epochs, 1, n_times)). Which axes are electrodes and time is what
        the model declares (``grad_cam_layers``; eegsal's models declare every
        layer from ``temporal_conv`` to the last pooling); for other models it
        is read from the sizes where they admit one reading, else refused.
    relu : bool
        Grad-CAM: keep positive evidence only (the published rule).
    projection : None | 'pattern'
        Grad-CAM at a layer after spatial mixing: ``'pattern'`` spreads each
        feature's Grad-CAM term over the electrodes by its activation pattern
        (Haufe et al., 2014; estimated on the explained epochs, per fold
        model), giving a channels x time map of where on the scalp the
        evidence lies. None keeps the time course.
    batch_size : int
        Epochs per batch: the data are read, and the maps computed, one batch
        at a time, so memory is bounded by it (plus the output, unless
        ``out`` is given).
    seed : int
        Seed of SmoothGrad's noise.
    device : str
        ``'auto'`` (CUDA when present), ``'cpu'`` or ``'cuda'``.
    out : path-like | None
        Write the maps batch by batch to this HDF5 file (the format of
        :meth:`Attributions.save`) instead of holding them in memory; the
        returned attributions then read it lazily. For studies larger than
        memory (with ``epochs`` read with ``preload=False``). The file appears
        only once complete.
    overwrite : bool
        Replace an existing ``out`` file.
    verbose : bool | str | int | None
        Control verbosity of the logging output.

    Returns
    -------
    attr : Attributions
        Values of shape (n_epochs, n_channels, n_times): target per µV
        (saliency, SmoothGrad) or target units (the others). Integrated
        gradients and DeepLIFT add a metadata column ``completeness_error``:
        ``sum(attr) - (f(x) - f(baseline))`` per epoch, in float64 (Captum's
        convergence delta): for IG a saturation diagnostic, for DeepLIFT zero up
        to rounding unless a nonlinearity escaped its rules.

    References
    ----------
    .. [1] Simonyan K, Vedaldi A, Zisserman A (2014). Deep inside convolutional
       networks. ICLR workshop.
    .. [2] Sundararajan M, Taly A, Yan Q (2017). Axiomatic attribution for deep
       networks. ICML.
    .. [3] Smilkov D et al. (2017). SmoothGrad: removing noise by adding noise.
       arXiv:1706.03825.
    .. [4] Shrikumar A, Greenside P, Kundaje A (2017). Learning important features
       through propagating activation differences. ICML.
    .. [5] Zeiler MD, Fergus R (2014). Visualizing and understanding
       convolutional networks. ECCV.
    .. [6] Selvaraju RR et al. (2017). Grad-CAM: visual explanations from deep
       networks via gradient-based localization. ICCV.
    .. [7] Haufe S et al. (2014). On the interpretation of weight vectors of
       linear models in multivariate neuroimaging. NeuroImage 87:96-110.
    .. [8] Springenberg JT et al. (2015). Striving for simplicity: the all
       convolutional net. ICLR workshop.

    Examples
    --------
    >>> attr = eegsal.attribute(result, epochs, method="saliency")  # doctest: +SKIP
    """
    validate_type(result_or_model, (DecodingResult, nn.Module), "result_or_model")
    validate_type(epochs, mne.BaseEpochs, "epochs")
    check_option("method", method, METHODS)
    check_option("target", target, TARGETS)
    check_option("projection", projection, (None, "pattern"))
    picks = mne.pick_types(epochs.info, eeg=True)
    n, n_chans, n_times = len(epochs), len(picks), len(epochs.times)

    def get(idx) -> np.ndarray:  # one batch in memory at a time, µV, float32
        x = epochs.get_data(picks=picks, item=idx, units="uV", verbose=False)
        return x.astype(np.float32, copy=False)

    models, fold, classes, y_true = resolve_models(result_or_model, epochs, label)
    if window_s is not None:
        if method != "occlusion":
            raise ValueError(
                f"window_s applies to method='occlusion' only, got {method=}."
            )
        window = (window[0], to_samples(window_s, epochs.info["sfreq"], "window_s"))
    if method == "occlusion" and (
        len(window) != 2
        or not (1 <= window[0] <= n_chans and 1 <= window[1] <= n_times)
    ):
        raise ValueError(
            f"window must be (channels, samples) within ({n_chans}, {n_times}), "
            f"got {window!r}."
        )
    if projection is not None and method != "gradcam":
        raise ValueError(
            f"projection={projection!r} applies to method='gradcam' only, "
            f"got method={method!r}."
        )
    dev = get_device(device)
    opts = dict(
        n_steps=n_steps,
        noise=noise,
        n_samples=n_samples,
        window=tuple(int(w) for w in window),
        relu=relu,
    )
    chunks = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    if method == "smoothgrad" or (
        isinstance(baseline, str)
        and baseline == "mean"
        and not isinstance(result_or_model, DecodingResult)
    ):
        opts["data_mean"], opts["data_std"] = _moments(map(get, chunks))
    spatial = True
    if method in ("gradcam", "guided_gradcam"):
        first = members_of(models[0])[0]
        layer = default_layer(first) if layer is None else layer
        _, chan_axis, time_axis = layer_axes(first, layer, torch.from_numpy(get([0])))
        if projection is not None and chan_axis is not None:
            raise ValueError(
                f"layer={layer!r} keeps the electrode axis, so its Grad-CAM is "
                "already channels x time; projection='pattern' is for a layer "
                "after spatial mixing."
            )
        spatial = chan_axis is not None or method == "guided_gradcam"
        spatial = spatial or projection is not None
        opts.update(chan_axis=chan_axis, time_axis=time_axis, projection=projection)
    params_of = {
        "integrated_gradients": dict(n_steps=n_steps),
        "smoothgrad": dict(noise=noise, n_samples=n_samples, seed=seed),
        "occlusion": dict(window=list(opts["window"]))
        | ({} if window_s is None else {"window_s": float(window_s)}),
        "gradcam": dict(layer=layer, relu=relu, projection=projection),
        "guided_gradcam": dict(layer=layer, relu=relu),
    }
    logger.info(
        "Computing %s (%s) for %d epochs with %d model(s) on %s",
        method,
        target,
        n,
        len(models),
        dev,
    )
    meta = (
        epochs.metadata.reset_index(drop=True).copy()
        if epochs.metadata is not None
        else None
    )
    params = dict(label=str(label), spatially_resolved=spatial)
    if method in _USES_BASELINE:
        params["baseline"] = baseline if isinstance(baseline, str) else "array"
    params.update(params_of.get(method, {}))
    sign = "positive" if method == "gradcam" and relu else "signed"
    header = dict(
        info=mne.pick_info(epochs.info, picks),
        times=epochs.times.copy(),
        method=method,
        target=target,
        sign=sign,
        params=params,
    )
    shape = (n, n_chans if spatial else 1, n_times)
    sink = (
        _MemorySink(shape) if out is None else AttributionsWriter(out, shape, overwrite)
    )
    delta, gain = np.full(n, np.nan), np.full(n, np.nan)
    torch.manual_seed(seed)
    with sink:
        for k, model in enumerate(models):
            idx = np.flatnonzero(fold == k)
            model = model.to(dev).eval()
            batches = [idx[i : i + batch_size] for i in range(0, idx.size, batch_size)]
            # an ensemble's map: the mean of its members' maps
            members = []
            for member in members_of(model):
                m_opts = dict(opts)
                if "layer" in params_of.get(method, {}):
                    m_opts["layer_module"] = find_layer(member, layer)
                if projection == "pattern":
                    m_opts["patterns"] = fit_patterns(
                        member,
                        m_opts["layer_module"],
                        time_axis,
                        (torch.from_numpy(get(b)).to(dev) for b in batches),
                    )
                base = None
                if method in _USES_BASELINE:
                    base = _baseline(
                        baseline, member, opts.get("data_mean"), n_chans, n_times
                    )
                    base = torch.from_numpy(base).to(dev)[None]
                members.append((_Target(member, target), base, m_opts))
            for b in progress(batches, desc=f"{method} (model {k + 1}/{len(models)})"):
                x = torch.from_numpy(get(b)).to(dev)
                cls = class_index(
                    label, model, x, classes, None if y_true is None else y_true[b]
                )
                a_sum, d_sum = 0.0, None
                for forward, base, m_opts in members:
                    bb = None if base is None else base.expand(len(b), -1, -1)
                    a, d = _captum(method, forward, x.requires_grad_(), cls, bb, m_opts)
                    a_sum = a_sum + a.detach()
                    if d is not None:
                        d_sum = d if d_sum is None else d_sum + d
                a = a_sum / len(members)
                sink.write(b, a.cpu().numpy())
                if d_sum is not None:  # completeness of the members' mean target
                    delta[b] = (d_sum / len(members)).detach().cpu().numpy()
                    gain[b] = a.double().flatten(1).sum(1).cpu().numpy()
                    gain[b] -= delta[b]
            model.zero_grad(set_to_none=True)
        if method in ("integrated_gradients", "deeplift"):
            meta = pd.DataFrame(index=range(n)) if meta is None else meta
            meta["completeness_error"] = delta
        if method == "deeplift":
            _check_summation(delta, gain)
        return sink.finish(metadata=meta, **header)


def resolve_models(result_or_model, epochs: mne.BaseEpochs, label) -> tuple:
    """Models, fold of each epoch, classes and true labels of what is explained.

    With a :class:`DecodingResult`, each epoch belongs to the model of the
    fold that did not train on it (behind its subject's alignment, for a
    result decoded with ``align``: :meth:`DecodingResult.explainers`), so the
    epochs must be those the result was decoded from
    (:meth:`DecodingResult.check_epochs` refuses others); a bare model
    explains every epoch. The returned ``fold`` indexes ``models``.
    """
    if isinstance(result_or_model, DecodingResult):
        res = result_or_model
        res.check_epochs(epochs)
        models, fold = res.explainers()
        classes = res.classes
        y_true = res.predictions["y_true"].to_numpy()
        if (fold < 0).any():
            logger.warning(
                "%d of %d epochs were tested in no fold (fold -1): no model may "
                "explain them, their maps are left at 0.",
                (fold < 0).sum(),
                len(fold),
            )
    else:
        n = len(epochs)
        models, fold, classes, y_true = [result_or_model], np.zeros(n, int), None, None
    if label == "true" and y_true is None:
        raise ValueError(
            "label='true' needs the class of each epoch: pass a DecodingResult, or "
            "use label='predicted' or a class index."
        )
    if not (label in ("true", "predicted") or isinstance(label, int | np.integer)):
        raise ValueError(f"label must be 'true', 'predicted' or an int, got {label!r}.")
    return models, fold, classes, y_true


def fold_batches(models, fold, epochs, picks, *, target, batch_size, device, desc):
    """Yield ``(model, forward, idx, x)``: each fold model's epochs, batch by batch.

    ``forward`` maps the model's logits to ``target``; ``x`` holds the epochs
    ``idx`` in µV (float32), read one batch at a time.
    """
    for k, model in enumerate(models):
        model = model.to(device).eval()
        forward = _Target(model, target)
        idx = np.flatnonzero(fold == k)
        batches = [idx[i : i + batch_size] for i in range(0, idx.size, batch_size)]
        for b in progress(batches, desc=f"{desc} (model {k + 1}/{len(models)})"):
            x = epochs.get_data(picks=picks, item=b, units="uV").astype(np.float32)
            yield model, forward, b, x
        model.zero_grad(set_to_none=True)


def class_index(label, model, x: torch.Tensor, classes, y_true) -> torch.Tensor | int:
    """Return the explained class of each epoch in the batch ``x``."""
    if label == "true":
        return torch.from_numpy(np.searchsorted(classes, y_true)).to(x.device)
    if label == "predicted":
        with torch.no_grad():
            return model(x).argmax(dim=-1)
    return int(label)


def _moments(batches) -> tuple[np.ndarray, float]:
    """Per-channel mean and overall standard deviation, streamed over batches."""
    n = s_c = s2 = 0
    for x in batches:
        x = x.astype(np.float64)
        n_c = x.shape[0] * x.shape[2]
        n, s_c, s2 = n + n_c, s_c + x.sum(axis=(0, 2)), s2 + (x**2).sum()
    mean_c = s_c / (n or 1)
    grand = mean_c.mean()
    var = s2 / (n * len(mean_c)) - grand**2
    return mean_c.astype(np.float32), float(np.sqrt(max(var, 0.0)))


class _MemorySink:
    """Collect attributions in memory (the counterpart of AttributionsWriter)."""

    def __init__(self, shape):
        self.data = np.zeros(shape, np.float32)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, idx, values):
        self.data[idx] = values

    def finish(self, *, info, times, metadata, method, target, sign, params):
        return Attributions(
            self.data,
            info,
            times,
            metadata=metadata,
            method=method,
            target=target,
            sign=sign,
            **params,
        )
