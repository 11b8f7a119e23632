"""Backward rules at nonlinear modules: DeepLIFT's rescale rule.

The rule replaces the gradient at a nonlinear *module*, so it needs every
nonlinearity of a model to be one (eegsal's models compute theirs in modules;
:data:`eegsal.models._layers.ELEMENTWISE` lists the elementwise types).

- Captum's :class:`~captum.attr.DeepLift` applies the rescale rule only to the
  module types in its ``SUPPORTED_NON_LINEAR`` table and treats every other
  module as linear, so a model with, e.g., a squaring module breaks
  summation-to-delta without a word. :class:`RescaleDeepLift` applies Captum's
  own rescale rule (``deep_lift.nonlinear``) to every elementwise module,
  without changing Captum's table for anyone else.
"""

from __future__ import annotations

from captum.attr import DeepLift
from captum.attr._core.deep_lift import nonlinear as _rescale
from torch import nn

from eegsal.models._layers import ELEMENTWISE

__all__ = ["RescaleDeepLift"]


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
