"""Deep4Net (Schirrmeister et al., 2017): four conv-pool blocks."""

from __future__ import annotations

import torch
from torch import nn

from eegsal._docs import fill_doc

__all__ = ["Deep4Net"]


@fill_doc
class Deep4Net(nn.Module):
    """A deep ConvNet: temporal + spatial conv, then three conv-max-pool blocks.

    Takes ``(batch, n_chans, n_times)``, returns logits ``(batch, n_classes)``.
    Internal layout ``(batch, filters, time, electrodes)``; layers (named
    submodules) in order:

    - ``temporal_conv``: ``(batch, 25, n_times - k + 1, n_chans)``. **Still has
      the electrode axis** (the last one).
    - ``spatial_conv``, ``bn_1``, ``pool_1``: no electrode axis from here on.
    - ``conv_2``/``bn_2``/``pool_2``, ``conv_3``/..., ``conv_4``/...: 50, 100
      and 200 filters.
    - ``classifier``: a convolution over all remaining time steps.

    Parameters
    ----------
    n_chans : int
        Number of EEG channels.
    n_times : int
        Number of time samples per epoch (at least 441 with the defaults).
    n_classes : int
        Number of classes.
    n_filters : tuple of int
        Filters of the four blocks (25, 50, 100, 200 in the paper).
    filter_length : int
        Temporal kernel length of every block (samples; 10 at 250 Hz).
    pool_length : int
        Max-pooling window and stride (samples; 3).
    drop_prob : float
        Dropout before blocks 2-4.

    Notes
    -----
    With 22 channels, 1,000 samples and 4 classes the model has 282,879
    trainable parameters, as braindecode's ``Deep4Net``.

    References
    ----------
    %(ref_schirrmeister)s
    """

    #: Grad-CAM layers: name -> (electrode axis, time axis) of the output
    #: ``(batch, filters, time, electrodes)``; None once electrodes are mixed.
    grad_cam_layers: dict[str, tuple[int | None, int]] = {
        "temporal_conv": (3, 2),
        **dict.fromkeys(
            ("spatial_conv", "bn_1", "act_1", "pool_1")
            + tuple(
                f"{kind}_{i}"
                for i in (2, 3, 4)
                for kind in ("drop", "conv", "bn", "act", "pool")
            ),
            (None, 2),
        ),
    }
    #: Layers whose output still has an electrode axis (the last dimension).
    channel_layers = tuple(k for k, (c, _) in grad_cam_layers.items() if c is not None)

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        n_classes: int = 2,
        *,
        n_filters: tuple[int, int, int, int] = (25, 50, 100, 200),
        filter_length: int = 10,
        pool_length: int = 3,
        drop_prob: float = 0.5,
    ):
        super().__init__()
        length = n_times
        for _ in range(4):
            length = (length - filter_length + 1) // pool_length
        if length < 1:
            raise ValueError(
                f"Deep4Net with filter_length={filter_length} and pool_length="
                f"{pool_length} needs more than {n_times=} samples; use longer "
                "epochs, a higher sampling rate, or shorter filters/pools."
            )
        self.n_chans, self.n_times, self.n_classes = n_chans, n_times, n_classes
        f1, f2, f3, f4 = n_filters
        self.temporal_conv = nn.Conv2d(1, f1, (filter_length, 1))
        self.spatial_conv = nn.Conv2d(f1, f1, (1, n_chans), bias=False)
        self.bn_1 = nn.BatchNorm2d(f1)
        self.act_1 = nn.ELU()
        self.pool_1 = nn.MaxPool2d((pool_length, 1))
        blocks = [(f1, f2), (f2, f3), (f3, f4)]
        for i, (c_in, c_out) in enumerate(blocks, start=2):
            setattr(self, f"drop_{i}", nn.Dropout(drop_prob))
            setattr(
                self,
                f"conv_{i}",
                nn.Conv2d(c_in, c_out, (filter_length, 1), bias=False),
            )
            setattr(self, f"bn_{i}", nn.BatchNorm2d(c_out))
            # one activation module per use: DeepLIFT rules attach to modules
            setattr(self, f"act_{i}", nn.ELU())
            setattr(self, f"pool_{i}", nn.MaxPool2d((pool_length, 1)))
        self.classifier = nn.Conv2d(f4, n_classes, (length, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, n_chans, n_times)`` to logits ``(batch, n_classes)``."""
        x = x.transpose(1, 2).unsqueeze(1)  # (batch, 1, time, electrodes)
        x = self.pool_1(self.act_1(self.bn_1(self.spatial_conv(self.temporal_conv(x)))))
        for i in (2, 3, 4):
            x = getattr(self, f"conv_{i}")(getattr(self, f"drop_{i}")(x))
            x = getattr(self, f"pool_{i}")(
                getattr(self, f"act_{i}")(getattr(self, f"bn_{i}")(x))
            )
        return self.classifier(x).flatten(1)
