"""Gradient attribution methods, computed by Captum on EEG-shaped inputs."""

from __future__ import annotations

import mne
import numpy as np
import torch
from torch import nn

from eegsal._check import check_option, validate_type
from eegsal._logging import logger, progress, verbose
from eegsal.attribution.container import Attributions
from eegsal.decoding import DecodingResult, get_device

__all__ = ["METHODS", "attribute"]

METHODS = ("saliency", "input_x_gradient", "integrated_gradients")
TARGETS = ("logit", "probability", "log_probability")


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
        return logits


def _captum(method: str, forward, x, cls, n_steps):
    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    if method == "saliency":
        return Saliency(forward).attribute(x, target=cls, abs=False)
    if method == "input_x_gradient":
        return InputXGradient(forward).attribute(x, target=cls)
    return IntegratedGradients(forward).attribute(
        x, baselines=torch.zeros_like(x), target=cls, n_steps=n_steps
    )


@verbose
def attribute(
    result_or_model: DecodingResult | nn.Module,
    epochs: mne.BaseEpochs,
    *,
    method: str = "saliency",
    target: str = "logit",
    label: str | int = "true",
    n_steps: int = 50,
    batch_size: int = 64,
    device: str = "auto",
    verbose: bool | str | int | None = None,
) -> Attributions:
    """Attribute each epoch's decision to channels and time points.

    Parameters
    ----------
    result_or_model : DecodingResult | torch.nn.Module
        A cross-validated result (each epoch is then explained by the model of
        the fold that did **not** train on it) or any model mapping
        ``(batch, n_chans, n_times)`` EEG in µV to class logits.
    epochs : mne.Epochs
        The epochs to explain (for a result: the epochs it was decoded from).
    method : str
        ``'saliency'`` (signed gradient, unlike Captum's absolute default),
        ``'input_x_gradient'``, or ``'integrated_gradients'`` (zero baseline;
        Sundararajan et al., 2017).
    target : str
        What is explained: the class ``'logit'``, its softmax ``'probability'``,
        or ``'log_probability'``.
    label : str | int
        Which class: ``'true'`` (the epoch's label; needs a result),
        ``'predicted'``, or a fixed class index.
    n_steps : int
        Steps of the integrated-gradients path.
    batch_size : int
        Epochs per batch (memory is bounded by it).
    device : str
        ``'auto'`` (CUDA when present), ``'cpu'`` or ``'cuda'``.
    verbose : bool | str | int | None
        Control verbosity of the logging output.

    Returns
    -------
    attr : Attributions
        Values of shape (n_epochs, n_channels, n_times), in units of the
        target per µV (saliency) or of the target (input x gradient, IG).

    References
    ----------
    .. [1] Simonyan K, Vedaldi A, Zisserman A (2014). Deep inside convolutional
       networks. ICLR workshop.
    .. [2] Sundararajan M, Taly A, Yan Q (2017). Axiomatic attribution for deep
       networks. ICML.

    Examples
    --------
    >>> attr = eegsal.attribute(result, epochs, method="saliency")  # doctest: +SKIP
    """
    validate_type(result_or_model, (DecodingResult, nn.Module), "result_or_model")
    validate_type(epochs, mne.BaseEpochs, "epochs")
    check_option("method", method, METHODS)
    check_option("target", target, TARGETS)
    X = epochs.get_data(picks="eeg", units="uV").astype(np.float32)
    n = len(X)
    if isinstance(result_or_model, DecodingResult):
        res = result_or_model
        if len(res.predictions) != n:
            raise ValueError(
                f"epochs has {n} epochs but the result was decoded from "
                f"{len(res.predictions)}; pass the epochs given to decode()."
            )
        models, fold = res.models, res.predictions["fold"].to_numpy()
        classes = res.classes
        y_true = res.predictions["y_true"].to_numpy()
    else:
        models, fold, classes, y_true = [result_or_model], np.zeros(n, int), None, None
    if label == "true" and y_true is None:
        raise ValueError(
            "label='true' needs the class of each epoch: pass a DecodingResult, or "
            "use label='predicted' or a class index."
        )
    if not (label in ("true", "predicted") or isinstance(label, int | np.integer)):
        raise ValueError(f"label must be 'true', 'predicted' or an int, got {label!r}.")
    dev = get_device(device)
    logger.info(
        "Computing %s (%s) for %d epochs with %d model(s) on %s",
        method,
        target,
        n,
        len(models),
        dev,
    )
    out = np.zeros(X.shape, np.float32)
    for k, model in enumerate(models):
        idx = np.flatnonzero(fold == k)
        model = model.to(dev).eval()
        forward = _Target(model, target)
        batches = [idx[i : i + batch_size] for i in range(0, idx.size, batch_size)]
        for b in progress(batches, desc=f"{method} (model {k + 1}/{len(models)})"):
            x = torch.from_numpy(X[b]).to(dev)
            if label == "true":
                cls = torch.from_numpy(np.searchsorted(classes, y_true[b])).to(dev)
            elif label == "predicted":
                with torch.no_grad():
                    cls = model(x).argmax(dim=-1)
            else:
                cls = int(label)
            a = _captum(method, forward, x.requires_grad_(), cls, n_steps)
            out[b] = a.detach().cpu().numpy()
        model.zero_grad(set_to_none=True)
    picks = mne.pick_types(epochs.info, eeg=True)
    info = mne.pick_info(epochs.info, picks)
    meta = (
        epochs.metadata.reset_index(drop=True) if epochs.metadata is not None else None
    )
    return Attributions(
        out,
        info,
        epochs.times.copy(),
        metadata=meta,
        method=method,
        target=target,
        sign="signed",
        label=str(label),
        n_steps=n_steps if method == "integrated_gradients" else None,
    )
