"""Backward rules at nonlinear modules: DeepLIFT's rescale rule, guided backprop.

Both rules replace the gradient at a nonlinear *module*, so both need every
nonlinearity of a model to be one (eegsal's models compute theirs in modules;
:data:`eegsal.models._layers.ELEMENTWISE` lists the elementwise types).

- Captum's :class:`~captum.attr.DeepLift` applies the rescale rule only to the
  module types in its ``SUPPORTED_NON_LINEAR`` table and treats every other
  module as linear, so a model with, e.g., a squaring module breaks
  summation-to-delta without a word. :class:`RescaleDeepLift` applies Captum's
  own rescale rule (``deep_lift.nonlinear``) to every elementwise module,
  without changing Captum's table for anyone else.
- Captum's :class:`~captum.attr.GuidedBackprop` changes the gradient at
  ``nn.ReLU`` only; at an ELU it is the plain gradient. :func:`guided_gradient`
  applies the same rule (negative gradients zeroed at the module's input) at
  every elementwise module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from captum.attr import DeepLift
from captum.attr._core.deep_lift import nonlinear as _rescale
from torch import nn

from eegsal.models._layers import ELEMENTWISE

__all__ = ["RescaleDeepLift", "guided_gradient"]


class RescaleDeepLift(DeepLift):
    """Captum's DeepLIFT, with the rescale rule at every elementwise module.

    The rescale rule (Shrikumar et al., 2017) replaces the derivative of an
    elementwise ``y = f(x)`` by ``(f(x) - f(x0)) / (x - x0)``, where ``x0`` is
    the input at the baseline; it holds for any scalar function, which is what
    makes the attributions sum to ``f(x) - f(baseline)``. Other modules
    (max-pooling, softmax) keep Captum's rules. The two methods overridden
    are private to Captum (0.9): ``tests/attribution/test_rules.py`` checks
    summation-to-delta on every registered model, so a change shows there.
    """

    def _is_non_linear(self, module: nn.Module) -> bool:
        return isinstance(module, ELEMENTWISE) or super()._is_non_linear(module)

    def _backward_hook(self, module: nn.Module, grad_input, grad_output):
        if not isinstance(module, ELEMENTWISE):
            return super()._backward_hook(module, grad_input, grad_output)
        if not self.satisfies_attribute_criteria(module):
            raise RuntimeError(
                f"DeepLIFT: the module {module} is used more than once in the "
                "model; give each use its own module."
            )
        multipliers = _rescale(
            module, module.input, module.output, grad_input, grad_output, eps=self.eps
        )
        del module.input, module.output
        return multipliers


def _guided_hook(module: nn.Module, grad_input: tuple, grad_output: tuple) -> tuple:
    """Zero the negative gradients at the module's input (Springenberg et al.)."""
    return tuple(None if g is None else g.clamp(min=0) for g in grad_input)


@contextmanager
def _guided_rule(model: nn.Module) -> Iterator[None]:
    """Guided-backpropagation hooks on every elementwise module, removed on exit.

    In-place activations are run out of place meanwhile (a full backward hook
    needs the module's output intact); everything is restored, even on error.
    """
    handles, inplace = [], []
    try:
        for module in model.modules():
            if isinstance(module, ELEMENTWISE):
                if getattr(module, "inplace", False):
                    module.inplace = False
                    inplace.append(module)
                handles.append(module.register_full_backward_hook(_guided_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module in inplace:
            module.inplace = True


def guided_gradient(forward: nn.Module, x: torch.Tensor, cls) -> torch.Tensor:
    """Guided backpropagation: the gradient, negative parts cut at every activation.

    At each elementwise nonlinear module the gradient with respect to its input
    is replaced by its positive part, as Captum's ``GuidedBackprop`` does at
    ReLUs (Springenberg et al., 2015); for a ReLU-only model the two agree.

    Parameters
    ----------
    forward : torch.nn.Module
        Maps ``(batch, n_chans, n_times)`` to ``(batch, n_outputs)``.
    x : torch.Tensor, shape (batch, n_chans, n_times)
        The inputs.
    cls : int | torch.Tensor
        The output explained, for all epochs or one per epoch.

    Returns
    -------
    grad : torch.Tensor, shape (batch, n_chans, n_times)
        The guided gradient of output ``cls`` with respect to ``x``.
    """
    x = x.detach().requires_grad_()
    with _guided_rule(forward), torch.enable_grad():
        out = forward(x)
        idx = torch.as_tensor(cls, device=out.device).reshape(-1, 1)
        (grad,) = torch.autograd.grad(out.gather(1, idx.expand(len(out), 1)).sum(), x)
    return grad
