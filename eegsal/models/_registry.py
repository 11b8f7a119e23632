"""Models by name, or any model class or factory, built the same way everywhere.

``model="eegnet"`` works wherever a model is asked for; so does a
:class:`torch.nn.Module` subclass or a factory called as
``factory(n_chans, n_times, n_classes, **model_params)`` (or, for a
braindecode-style class whose signature names ``n_outputs``, with keywords
``n_chans=, n_times=, n_outputs=``). A model whose signature has ``sfreq``
is given the sampling rate of the data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from eegsal._check import check_option
from eegsal.models.deep4 import Deep4Net
from eegsal.models.eegnet import EEGNet
from eegsal.models.shallow import ShallowConvNet

__all__ = [
    "MODELS",
    "build_model",
    "get_model_class",
    "model_name",
    "model_params_for",
    "resolve_model",
]

#: The registered models, by the name ``model=`` takes.
MODELS: dict[str, type[nn.Module]] = {
    "eegnet": EEGNet,
    "shallow": ShallowConvNet,
    "deep4": Deep4Net,
}

#: What ``model=`` may be: a registered name, a module class or a factory.
ModelSpec = str | Callable[..., nn.Module]


def get_model_class(name: str) -> type[nn.Module]:
    """Return the model class registered under ``name``.

    Parameters
    ----------
    name : str
        A registered name, e.g. ``'eegnet'``.

    Returns
    -------
    cls : type
        The :class:`torch.nn.Module` subclass.
    """
    check_option("model", name, tuple(MODELS))
    return MODELS[name]


def resolve_model(model: ModelSpec) -> Callable[..., nn.Module]:
    """Return the class or factory that ``model`` names or is.

    Parameters
    ----------
    model : str | type | callable
        A registered name, a :class:`torch.nn.Module` subclass, or a factory
        ``(n_chans, n_times, n_classes, **params) -> nn.Module``.

    Returns
    -------
    factory : callable
        The class or factory.
    """
    if isinstance(model, str):
        return get_model_class(model)
    if callable(model):
        return model
    raise TypeError(
        "model must be a registered name "
        f"({', '.join(map(repr, MODELS))}), a torch.nn.Module class or a factory "
        f"(n_chans, n_times, n_classes) -> nn.Module, got {model!r}."
    )


def model_name(model: ModelSpec) -> str:
    """Return the registered name, or ``module.qualname`` of a class or factory.

    Parameters
    ----------
    model : str | type | callable
        As for :func:`resolve_model`.

    Returns
    -------
    name : str
        E.g. ``'eegnet'`` or ``'mypackage.nets.MyNet'``.
    """
    if isinstance(model, str):
        return model
    module = getattr(model, "__module__", None) or "?"
    qualname = getattr(model, "__qualname__", None) or type(model).__qualname__
    return f"{module}.{qualname}"


def _parameters(factory: Callable) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(factory).parameters)
    except (TypeError, ValueError):  # a builtin without a signature
        return {}


def model_params_for(
    model: ModelSpec, params: dict | None, sfreq: float | None
) -> dict:
    """Return the keyword arguments the model is built with, ``sfreq`` included.

    The sampling rate is added when the model's signature has an ``sfreq``
    parameter and ``params`` does not give one; a different one in
    ``params`` is refused (the model would set its kernels for another rate).

    Parameters
    ----------
    model : str | type | callable
        As for :func:`resolve_model`.
    params : dict | None
        The user's keyword arguments of the model.
    sfreq : float | None
        Sampling rate of the data (Hz); None leaves ``params`` as they are.

    Returns
    -------
    params : dict
        A new dict.
    """
    params = dict(params or {})
    if sfreq is None or "sfreq" not in _parameters(resolve_model(model)):
        return params
    given = params.setdefault("sfreq", float(sfreq))
    if given is not None and abs(float(given) - float(sfreq)) > 1e-6 * float(sfreq):
        raise ValueError(
            f"model_params has sfreq={given} but the epochs are sampled at "
            f"{float(sfreq):g} Hz; leave sfreq out of model_params (it is taken "
            "from the epochs) or resample the epochs."
        )
    params["sfreq"] = None if given is None else float(given)
    return params


def build_model(
    model: ModelSpec, n_chans: int, n_times: int, n_classes: int, params: dict
) -> nn.Module:
    """Build a model that maps ``(batch, n_chans, n_times)`` to ``n_classes`` logits.

    Parameters
    ----------
    model : str | type | callable
        As for :func:`resolve_model`.
    n_chans, n_times, n_classes : int
        Channels, time samples per epoch and classes.
    params : dict
        Further keyword arguments.

    Returns
    -------
    net : torch.nn.Module
        The model, freshly initialized.
    """
    factory = resolve_model(model)
    names = _parameters(factory)
    if "n_outputs" in names and "n_classes" not in names:  # braindecode's signature
        net = factory(n_chans=n_chans, n_times=n_times, n_outputs=n_classes, **params)
    else:
        net = factory(n_chans, n_times, n_classes, **params)
    if not isinstance(net, nn.Module):
        raise TypeError(
            f"model {model_name(model)} returned {type(net).__name__}, not a "
            "torch.nn.Module."
        )
    return net
