"""Grad-CAM for EEG models: channels x time where a layer has electrodes, else time.

A convolutional layer's output is ``(batch, features, a, b)``. One of ``a``,
``b`` is time; the other is the electrode axis only as long as no spatial
filter has mixed the electrodes (EEGNet, ShallowConvNet and Deep4Net: their
``temporal_conv``). There Grad-CAM is a channels x time map directly. After
the spatial convolution the electrode axis is gone (size 1): Grad-CAM is a
time course, and eegsal returns it as such (``spatially_resolved=False``)
rather than interpolating an electrode axis into existence.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["find_layer", "layer_axes"]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule called ``name`` (or ending in ``.name``).

    Models fitted by :func:`eegsal.decode` are ``Sequential(Standardize, net)``,
    so ``'temporal_conv'`` finds ``'1.temporal_conv'``.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    name : str
        Layer name, as in ``model.named_modules()``.

    Returns
    -------
    layer : torch.nn.Module
        The layer.
    """
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    hits = [k for k in modules if k.endswith("." + name)]
    if len(hits) == 1:
        return modules[hits[0]]
    named = [k for k in modules if k]
    raise ValueError(
        f"layer={name!r} is not a layer of {type(model).__name__}"
        + (f" (ambiguous: {hits})" if hits else "")
        + f"; layers: {named}."
    )


def default_layer(model: nn.Module) -> str:
    """Return the first layer with an electrode axis that the model declares.

    Parameters
    ----------
    model : torch.nn.Module
        An eegsal model, or a model with a ``channel_layers`` attribute.

    Returns
    -------
    name : str
        The layer name.
    """
    for module in model.modules():
        names = getattr(module, "channel_layers", None)
        if names:
            return names[0]
    raise ValueError(
        f"{type(model).__name__} does not say which layers keep the electrode axis; "
        "pass layer='<name of a convolution before spatial mixing>'."
    )


def layer_axes(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> tuple:
    """Shape of ``layer``'s output and which axes are electrodes and time.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    layer : torch.nn.Module
        One of its layers, with a 4-D output ``(batch, features, a, b)``.
    x : torch.Tensor, shape (batch, n_chans, n_times)
        An input batch.

    Returns
    -------
    shape : tuple of int
        The layer's output shape.
    chan_axis : int | None
        2 or 3, or None when the electrode axis is gone.
    time_axis : int
        2 or 3.
    """
    shapes = []
    handle = layer.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        handle.remove()
    if not shapes or len(shapes[0]) != 4:
        raise ValueError(
            f"Grad-CAM needs a layer with a 4-D output (batch, features, a, b); "
            f"this layer gave {shapes[0] if shapes else 'nothing'}."
        )
    shape = shapes[0]
    n_chans = x.shape[1]
    a, b = shape[2], shape[3]
    if a == n_chans and b != n_chans:
        return shape, 2, 3
    if b == n_chans and a != n_chans:
        return shape, 3, 2
    if a == 1 and b > 1:
        return shape, None, 3
    if b == 1 and a > 1:
        return shape, None, 2
    raise ValueError(
        f"cannot tell electrodes from time in the layer output {shape} "
        f"({n_chans} channels); choose another layer."
    )
