"""Models by name, so that ``model="eegnet"`` works wherever a model is asked for."""

from __future__ import annotations

from torch import nn

from eegsal._check import check_option
from eegsal.models.deep4 import Deep4Net
from eegsal.models.eegnet import EEGNet
from eegsal.models.shallow import ShallowConvNet

MODELS: dict[str, type[nn.Module]] = {
    "eegnet": EEGNet,
    "shallow": ShallowConvNet,
    "deep4": Deep4Net,
}


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
