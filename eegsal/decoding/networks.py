"""The torch side of a decoder: the device, its input scaling, fold ensembles."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from eegsal.alignment import SubjectAlignment
from eegsal.models import build_model

__all__ = ["Ensemble", "get_device"]


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``device``: ``'auto'`` is CUDA when present, else the CPU.

    Parameters
    ----------
    device : str | torch.device
        ``'auto'``, ``'cpu'``, ``'cuda'``, ``'cuda:1'``...

    Returns
    -------
    device : torch.device
        The device.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was requested but CUDA is not available; "
            "use device='auto' or 'cpu'."
        )
    return device


class Standardize(nn.Module):
    """Per-channel standardization with statistics fitted on training data.

    Being the first layer of the fitted model, it makes the model take EEG in
    µV, so that gradients and attributions are per µV of input.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        super().__init__()
        self.register_buffer(
            "mean", torch.as_tensor(mean, dtype=torch.float32)[:, None]
        )
        self.register_buffer(
            "scale", torch.as_tensor(scale, dtype=torch.float32)[:, None]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (x - self.mean) / self.scale


class Ensemble(nn.Module):
    """Models of one fold trained with different seeds, as one model.

    Its output is the log of the members' mean softmax probability, which
    softmax turns back into that mean: the ensemble's "logits" give exactly
    the probabilities (and the predictions) that :func:`decode` reports.
    :func:`eegsal.attribute` explains an ensemble by the mean of its members'
    maps instead (see there).

    Parameters
    ----------
    members : list of torch.nn.Module
        Models mapping ``(batch, n_chans, n_times)`` to logits
        ``(batch, n_classes)``.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        logp = torch.stack([m(x).float().log_softmax(-1) for m in self.members])
        return torch.logsumexp(logp, 0) - np.log(len(self.members))


def members_of(model: nn.Module) -> list[nn.Module]:
    """Return the members of an :class:`Ensemble`, or ``[model]``.

    Parameters
    ----------
    model : torch.nn.Module
        A model or an ensemble.

    Returns
    -------
    members : list of torch.nn.Module
        The models whose outputs it averages.
    """
    return list(model.members) if isinstance(model, Ensemble) else [model]


def behind_alignment(model: nn.Module, alignment: SubjectAlignment) -> nn.Module:
    """Put a subject's alignment in front of a model (of each member of an ensemble).

    Parameters
    ----------
    model : torch.nn.Module
        A fitted model that takes aligned epochs.
    alignment : SubjectAlignment
        The subject's fixed alignment layer.

    Returns
    -------
    model : torch.nn.Module
        ``Sequential(alignment, model)`` (an :class:`Ensemble` of such), taking
        the subject's epochs in µV.
    """
    if isinstance(model, Ensemble):
        return Ensemble([nn.Sequential(alignment, m) for m in model.members])
    return nn.Sequential(alignment, model)


def input_mean(model: nn.Module) -> np.ndarray | None:
    """Return the training data's channel means in the model's input space (µV).

    Read from the fitted model's standardizing layer, mapped back through a
    subject alignment in front of it; None for a model without one.

    Parameters
    ----------
    model : torch.nn.Module
        A fitted decoder module.

    Returns
    -------
    mean : ndarray, shape (n_chans,) | None
        µV.
    """
    if not isinstance(model, nn.Sequential) or not len(model):
        return None
    first = model[0]
    if isinstance(first, Standardize):
        return first.mean.detach().cpu().numpy()[:, 0]
    if isinstance(first, SubjectAlignment) and len(model) > 1:
        inner = input_mean(model[1])
        return None if inner is None else first.input_mean(inner).astype(np.float32)
    return None


def _build_module(
    model: str | Callable[..., nn.Module],
    n_chans: int,
    n_times: int,
    n_classes: int,
    model_params: dict,
) -> nn.Sequential:
    net = build_model(model, n_chans, n_times, n_classes, model_params)
    return nn.Sequential(Standardize(np.zeros(n_chans), np.ones(n_chans)), net)
