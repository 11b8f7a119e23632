"""Grad-CAM for EEG models: channels x time where a layer has electrodes, else time.

A convolutional layer's output is ``(batch, features, a, b)``. One of ``a``,
``b`` is time; the other is the electrode axis only as long as no spatial
filter has mixed the electrodes (EEGNet, ShallowConvNet and Deep4Net: their
``temporal_conv``). There Grad-CAM is a channels x time map directly. After
the spatial convolution the electrode axis is gone (size 1): Grad-CAM is a
time course, and eegsal returns it as such (``spatially_resolved=False``)
rather than interpolating an electrode axis into existence.

Which axis is which is what the model declares (``grad_cam_layers``: layer
name -> electrode axis or None, time axis), not what the sizes suggest: an
EEGNet with 64 channels and 256 samples has 64 time steps at
``separable_pointwise``, which a size rule would take for electrodes.

Two principled ways give such a later layer its electrodes back:

- guided Grad-CAM: the time course times guided backpropagation, i.e. the
  electrodes come from the (guided) input gradient, which reflects the
  *filters* the model applies: it may weight channels that the model uses
  only to cancel noise;
- ``projection='pattern'``: each feature is spread over the electrodes by its
  activation *pattern* (Haufe et al., 2014), estimated on the explained
  epochs: the electrodes whose signal the feature carries. Use it when the
  question is "where on the scalp is the evidence", the gradient-based maps
  when it is "which inputs does the model read".
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "PatternAccumulator",
    "default_layer",
    "find_layer",
    "fit_patterns",
    "layer_axes",
    "pattern_gradcam",
]


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


def _declaring(model: nn.Module, layer: nn.Module) -> tuple[nn.Module, str] | None:
    """Find the innermost submodule declaring ``grad_cam_layers`` that holds ``layer``.

    Returns that module and the layer's name within it, or None when no
    declaring module holds the layer.
    """
    found = None
    for owner in model.modules():
        if not getattr(owner, "grad_cam_layers", None):
            continue
        for local, module in owner.named_modules():
            if module is layer and local:
                found = (owner, local)  # later modules are nested deeper
    return found


def _output_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """Output shape of every named submodule in one forward pass of ``x[:1]``."""
    shapes, handles = {}, []

    def keep(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                shapes.setdefault(name, tuple(output.shape))

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(keep(name)))
        with torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def _guess_axes(shape: tuple, n_chans: int) -> tuple[int | None, int] | str:
    """Electrode and time axes of an undeclared layer from its sizes, or why not.

    Trusted only where the sizes admit one reading: an axis of ``n_chans``
    beside an axis of more than one step (electrodes x time), or no axis of
    ``n_chans`` and one of size 1 (time only). A size-1 axis beside an axis of
    ``n_chans`` could be pooled time at the electrodes or ``n_chans`` time
    steps after spatial mixing; two axes of ``n_chans`` could be either way
    round: both are refused.
    """
    a, b = shape[2], shape[3]
    chans = [ax for ax in (2, 3) if shape[ax] == n_chans]
    if len(chans) == 1 and shape[5 - chans[0]] > 1:
        return chans[0], 5 - chans[0]
    if len(chans) == 1:
        return (
            f"an axis of {n_chans} (the number of channels) beside one of size 1 "
            "could be electrodes or time"
        )
    if len(chans) == 2:
        return f"both axes have {n_chans} steps, as many as channels"
    if a == 1 and b > 1:
        return None, 3
    if b == 1 and a > 1:
        return None, 2
    return "neither axis has as many steps as channels, nor size 1"


def layer_axes(model: nn.Module, name: str, x: torch.Tensor) -> tuple:
    """Shape of layer ``name``'s output and which axes are electrodes and time.

    The axes are those the model declares in a ``grad_cam_layers`` attribute
    (``{layer: (electrode axis or None, time axis)}``, as eegsal's models do),
    never guessed from sizes: a declared model's other layers are refused. For
    a model that declares nothing, the sizes decide where they admit only one
    reading (see ``_guess_axes``), and an ambiguous layer is refused with the
    layers that would work.

    Parameters
    ----------
    model : torch.nn.Module
        The model (or ``Sequential(Standardize, model)`` from :func:`decode`).
    name : str
        The layer, as for :func:`find_layer`; its output must be 4-D
        ``(batch, features, a, b)``.
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
    layer = find_layer(model, name)
    declared = _declaring(model, layer)
    if declared is not None:
        owner, local = declared
        if local not in owner.grad_cam_layers:
            raise ValueError(
                f"Grad-CAM at layer={name!r}: {type(owner).__name__} declares "
                "which axes are electrodes and time only for the layers "
                f"{list(owner.grad_cam_layers)}; choose one of them."
            )
    shapes = _output_shapes(model, x)
    key = next(k for k, m in model.named_modules() if m is layer)
    shape = shapes.get(key)
    if shape is None or len(shape) != 4:
        raise ValueError(
            f"Grad-CAM needs a layer with a 4-D output (batch, features, a, b); "
            f"layer={name!r} gave {shape if shape else 'nothing'}."
        )
    n_chans = x.shape[1]
    if declared is not None:
        chan_axis, time_axis = owner.grad_cam_layers[local]
        other = shape[5 - time_axis]
        if other != (1 if chan_axis is None else n_chans):
            raise ValueError(
                f"{type(owner).__name__} declares layer {local!r} as "
                f"{'time only' if chan_axis is None else 'electrodes x time'} "
                f"(time axis {time_axis}) but its output is {shape} for "
                f"{n_chans} channels; fix the model's grad_cam_layers."
            )
        return shape, chan_axis, time_axis
    axes = _guess_axes(shape, n_chans)
    if isinstance(axes, tuple):
        return (shape, *axes)
    usable = [
        k
        for k, sh in shapes.items()
        if len(sh) == 4 and isinstance(_guess_axes(sh, n_chans), tuple)
    ]
    raise ValueError(
        f"Grad-CAM at layer={name!r}: cannot tell electrodes from time in its "
        f"output {shape} ({n_chans} channels): {axes}. Layers whose axes are "
        f"unambiguous: {usable}; or declare the axes on the model, as "
        "grad_cam_layers = {layer: (electrode axis or None, time axis)}."
    )


def _time_only(a: torch.Tensor, time_axis: int) -> torch.Tensor:
    """(batch, K, 1, T') or (batch, K, T', 1) -> (batch, K, T')."""
    return a.squeeze(5 - time_axis)


class _Recorder:
    """Forward hook that keeps a layer's output (with its graph)."""

    def __init__(self, layer: nn.Module):
        self.out = None
        self._handle = layer.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.out = output

    def remove(self):
        self._handle.remove()


def _upsample(a: torch.Tensor, n_times: int) -> torch.Tensor:
    """Map a layer's time steps onto the input samples, as Grad-CAM does."""
    return nn.functional.interpolate(a, size=n_times, mode="linear")


class PatternAccumulator:
    """Activation patterns of a layer's features (Haufe et al., 2014).

    A feature map ``s_k(t)`` computed after spatial mixing is a *filter*
    output; the electrodes it reflects are given by its *pattern*, the
    regression of the data on the features:
    ``P = Cov(x, s) Cov(s)^-1`` (n_channels x n_features), estimated over all
    epochs and time points passed to :meth:`update`. Unlike the filter
    weights, a pattern is zero on a channel that the filter only uses to
    cancel noise.

    Parameters
    ----------
    n_chans : int
        Electrodes of the input.
    """

    def __init__(self, n_chans: int):
        self.n_chans = n_chans
        self._sums = None

    def update(self, x: torch.Tensor, s: torch.Tensor) -> None:
        """Add a batch: input ``x`` (B, C, T) and upsampled features (B, K, T)."""
        x = x.detach().double().transpose(1, 2).reshape(-1, x.shape[1])
        s = s.detach().double().transpose(1, 2).reshape(-1, s.shape[1])
        sums = (len(x), x.sum(0), s.sum(0), x.T @ s, s.T @ s)
        if self._sums is None:
            self._sums = list(sums)
        else:
            self._sums = [a + b for a, b in zip(self._sums, sums, strict=True)]

    def patterns(self) -> torch.Tensor:
        """Return the patterns, shape (n_channels, n_features), float32."""
        n, sx, ss, sxs, sss = self._sums
        cxs = sxs / n - torch.outer(sx, ss) / n**2
        css = sss / n - torch.outer(ss, ss) / n**2
        # least squares, so that features that never vary (dead units) get 0
        sol = torch.linalg.lstsq(css.cpu(), cxs.T.cpu(), driver="gelsd").solution
        return sol.T.float()


def pattern_gradcam(
    forward: nn.Module,
    layer: nn.Module,
    time_axis: int,
    x: torch.Tensor,
    cls,
    patterns: torch.Tensor,
    relu: bool,
) -> torch.Tensor:
    """Grad-CAM at a time-only layer, back-projected onto the electrodes.

    Each feature's Grad-CAM term ``alpha_k * s_k(t)`` is spread over the
    electrodes by its activation pattern: ``map(c, t) = sum_k P[c, k] alpha_k
    s_k(t)``, i.e. the part of the data that the evidence-weighted features
    explain.

    Returns
    -------
    cam : torch.Tensor, shape (batch, n_chans, n_times)
    """
    rec = _Recorder(layer)
    try:
        out = forward(x)
    finally:
        rec.remove()
    idx = torch.as_tensor(cls, device=out.device).reshape(-1, 1)
    sel = out.gather(1, idx.expand(out.shape[0], 1)).sum()
    (grad,) = torch.autograd.grad(sel, rec.out)
    alpha = _time_only(grad, time_axis).mean(dim=-1, keepdim=True)  # (B, K, 1)
    s = _upsample(_time_only(rec.out, time_axis), x.shape[-1])  # (B, K, T)
    cam = torch.einsum("ck,bkt->bct", patterns.to(x.device), alpha * s)
    return cam.clamp(min=0) if relu else cam


def fit_patterns(
    model: nn.Module, layer: nn.Module, time_axis: int, batches
) -> torch.Tensor:
    """Activation patterns of ``layer``'s features over input ``batches``.

    Parameters
    ----------
    model : torch.nn.Module
        The model (in eval mode).
    layer : torch.nn.Module
        A layer after spatial mixing (time-only output).
    time_axis : int
        2 or 3, the time axis of the layer's 4-D output.
    batches : iterable of torch.Tensor
        Inputs (batch, n_chans, n_times).

    Returns
    -------
    patterns : torch.Tensor, shape (n_chans, n_features)
    """
    acc = None
    rec = _Recorder(layer)
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
                s = _upsample(_time_only(rec.out, time_axis), x.shape[-1])
                if acc is None:
                    acc = PatternAccumulator(x.shape[1])
                acc.update(x, s)
    finally:
        rec.remove()
    return acc.patterns()
