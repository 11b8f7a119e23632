"""Parameter-free elementwise layers of the models, and the list of elementwise types.

Attribution rules that differ from the plain gradient (DeepLIFT's rescale
rule, guided backpropagation) attach to *modules*: an operation written as a
function call (``x * x``, ``torch.log``) is invisible to them and is
silently treated as linear. The models therefore compute every nonlinearity
in a module, and :data:`ELEMENTWISE` says which module types act elementwise.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ELEMENTWISE", "SafeLog", "Square"]


class Square(nn.Module):
    """Elementwise square, ``x * x`` (ShallowConvNet's power nonlinearity)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x * x


class SafeLog(nn.Module):
    """Elementwise ``log(max(x, eps))``, the logarithm of a power, kept finite.

    Parameters
    ----------
    eps : float
        Floor of the argument (a plain attribute: no state-dict entry).
    """

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.log(torch.clamp(x, min=self.eps))

    def extra_repr(self) -> str:  # noqa: D102
        return f"eps={self.eps}"


#: Module types that apply a scalar function to each element of one input:
#: DeepLIFT's rescale rule and guided backpropagation's rule apply to them.
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.LeakyReLU,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    Square,
    SafeLog,
)
