"""Deep4Net (Schirrmeister et al., 2017): four conv-pool blocks."""

from __future__ import annotations

import torch
from torch import nn

from eegsal._docs import fill_doc
from eegsal.models._timing import check_sfreq, to_samples

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
    sfreq : float | None
        Sampling rate of the input (Hz); None: 250 Hz, the published rate (the
        sample sizes of eegsal before ``sfreq`` existed).
    filter_s : float
        Temporal kernel of the first block (s; 0.04 s, 10 samples at 250 Hz).
    pool_s : float
        Max-pooling window and stride of the first block (s; 0.012 s, 3
        samples at 250 Hz): it brings the signal to about 83 Hz at any
        ``sfreq``.
    filter_length, pool_length : int | None
        Kernel and pool of every block in samples (10 and 3 in the paper).
        None: the first block's from ``filter_s`` and ``pool_s`` at ``sfreq``,
        blocks 2-4 with the paper's 10 and 3 samples of the pooled signal.
    drop_prob : float
        Dropout before blocks 2-4.

    Notes
    -----
    Only the first block sees the input rate; blocks 2-4 act on its pooled
    output, whose rate is ``sfreq / pool`` (83.3 Hz at 250 Hz). Setting the
    first block in seconds keeps that rate, and so the durations of the later
    blocks' kernels, close to the paper's at any ``sfreq`` (up to the rounding
    of the first pool: at 100 Hz it is 1 sample, and the later kernels span
    0.1 s instead of 0.12 s).
    With 22 channels, 1,000 samples, 4 classes and 250 Hz the model has
    282,879 trainable parameters, as braindecode's ``Deep4Net``.

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
        sfreq: float | None = None,
        filter_s: float = 0.04,
        pool_s: float = 0.012,
        filter_length: int | None = None,
        pool_length: int | None = None,
        drop_prob: float = 0.5,
    ):
        super().__init__()
        self.sfreq = check_sfreq(sfreq, 250.0)
        first = (
            to_samples(filter_s, self.sfreq, "filter_s")
            if filter_length is None
            else int(filter_length)
        )
        pool_1 = (
            to_samples(pool_s, self.sfreq, "pool_s")
            if pool_length is None
            else int(pool_length)
        )
        filter_length = 10 if filter_length is None else int(filter_length)
        pool_length = 3 if pool_length is None else int(pool_length)
        #: kernel and pool of each block, in samples of the signal it sees
        self.block_sizes = [(first, pool_1)] + [(filter_length, pool_length)] * 3
        length = n_times
        for k, p in self.block_sizes:
            length = (length - k + 1) // p
        if length < 1:
            raise ValueError(
                f"Deep4Net with kernels and pools of {self.block_sizes} samples "
                f"needs more than {n_times=} samples; use longer epochs, or "
                "shorter filters/pools."
            )
        self.n_chans, self.n_times, self.n_classes = n_chans, n_times, n_classes
        f1, f2, f3, f4 = n_filters
        self.temporal_conv = nn.Conv2d(1, f1, (first, 1))
        self.spatial_conv = nn.Conv2d(f1, f1, (1, n_chans), bias=False)
        self.bn_1 = nn.BatchNorm2d(f1)
        self.act_1 = nn.ELU()
        self.pool_1 = nn.MaxPool2d((pool_1, 1))
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
