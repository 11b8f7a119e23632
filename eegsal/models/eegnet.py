"""EEGNet (Lawhern et al., 2018), version 4."""

from __future__ import annotations

import torch
from torch import nn

from eegsal._docs import fill_doc
from eegsal.models._timing import check_sfreq, to_samples

__all__ = ["EEGNet"]


def _same_pad(kernel_length: int) -> nn.ZeroPad2d:
    """Zero padding along time that keeps the length ("same"), also for even kernels."""
    left = (kernel_length - 1) // 2
    return nn.ZeroPad2d((left, kernel_length - 1 - left, 0, 0))


class _MaxNorm:
    """Mixin: renorm each output unit's weights to an L2 norm <= ``max_norm``.

    Applied before every training forward pass, as Keras' ``max_norm``
    constraint in the original EEGNet.
    """

    def __init__(self, *args, max_norm: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_norm = max_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.training:
            with torch.no_grad():
                self.weight.data = torch.renorm(self.weight.data, 2, 0, self.max_norm)
        return super().forward(x)


class _MaxNormConv2d(_MaxNorm, nn.Conv2d):
    pass


class _MaxNormLinear(_MaxNorm, nn.Linear):
    pass


@fill_doc
class EEGNet(nn.Module):
    """EEGNet-F1,D: temporal, depthwise spatial and separable convolutions.

    Takes ``(batch, n_chans, n_times)`` and returns logits ``(batch, n_classes)``.

    Layers (named submodules, for Grad-CAM's ``layer=``), with their output:

    - ``temporal_conv`` (+ ``temporal_bn``): ``(batch, F1, n_chans, n_times)``.
      **Still has the electrode axis**: Grad-CAM here is channels x time.
    - ``spatial_conv``: depthwise over all electrodes, ``(batch, F1*D, 1, n_times)``;
      from here on there is no electrode axis.
    - ``spatial_pool``: average pooling over ``pool_s`` (4 samples at 128 Hz),
      which brings the signal to about 32 Hz at any ``sfreq``.
    - ``separable_depthwise``, ``separable_pointwise``:
      ``(batch, F2, 1, n_times // p)`` (``p`` the pool length in samples; 4 at
      128 Hz). They act on the pooled signal, so their kernel (16 samples,
      0.5 s) and the second pooling (8 samples) stay in samples.
    - ``classifier``: a max-norm linear layer on the flattened features.

    Kernels and pools that act on the input are set in seconds (``kernel_s``,
    ``pool_s``) and turned into samples at ``sfreq``, so that the temporal
    filters cover the same frequencies at every sampling rate (64 samples at
    128 Hz; 50 at 100 Hz; 250 at 500 Hz).

    Parameters
    ----------
    %(model_shape)s
    F1 : int
        Number of temporal filters.
    D : int
        Spatial filters per temporal filter (depth multiplier).
    F2 : int | None
        Number of pointwise filters (default ``F1 * D``).
    sfreq : float | None
        Sampling rate of the input (Hz); None: 128 Hz, the published rate
        (the sample sizes of eegsal before ``sfreq`` existed).
    kernel_s : float
        Length of the temporal kernels (s; 0.5 s, i.e. 64 samples at 128 Hz, in
        the paper): ``round(kernel_s * sfreq)`` samples.
    pool_s : float
        Length and stride of the first average pooling (s; 4 samples at
        128 Hz).
    kernel_length : int | None
        Length of the temporal kernels in samples; when given it overrides
        ``kernel_s``.
    %(drop_prob)s

    Notes
    -----
    With the published settings (EEGNet-8,2, 22 channels, 512 samples, 4 classes)
    the model has 2,484 trainable parameters at 128 Hz, as braindecode's
    implementation.

    References
    ----------
    .. [1] Lawhern VJ et al. (2018). EEGNet: a compact convolutional neural network
       for EEG-based brain-computer interfaces. J Neural Eng 15, 056013.
    """

    #: Grad-CAM layers: name -> (electrode axis, time axis) of the output
    #: ``(batch, features, electrodes, time)``; None once electrodes are mixed.
    grad_cam_layers: dict[str, tuple[int | None, int]] = {
        "temporal_conv": (2, 3),
        "temporal_bn": (2, 3),
        **dict.fromkeys(
            (
                "spatial_conv",
                "spatial_bn",
                "spatial_act",
                "spatial_pool",
                "spatial_drop",
                "separable_depthwise",
                "separable_pointwise",
                "separable_bn",
                "separable_act",
                "separable_pool",
                "separable_drop",
            ),
            (None, 3),
        ),
    }
    #: Layers whose output still has an electrode axis (dimension 2).
    channel_layers = tuple(k for k, (c, _) in grad_cam_layers.items() if c is not None)

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        n_classes: int = 2,
        *,
        F1: int = 8,
        D: int = 2,
        F2: int | None = None,
        sfreq: float | None = None,
        kernel_s: float = 0.5,
        pool_s: float = 4 / 128,
        kernel_length: int | None = None,
        drop_prob: float = 0.25,
    ):
        super().__init__()
        F2 = F1 * D if F2 is None else F2
        self.sfreq = check_sfreq(sfreq, 128.0)
        if kernel_length is None:
            kernel_length = to_samples(kernel_s, self.sfreq, "kernel_s")
        pool = to_samples(pool_s, self.sfreq, "pool_s")
        self.kernel_length, self.pool_length = int(kernel_length), pool
        if n_times < pool * 8:
            raise ValueError(
                f"EEGNet needs n_times >= {pool * 8} (two poolings, of {pool} and 8 "
                f"samples at {self.sfreq:g} Hz), got {n_times=}."
            )
        self.n_chans, self.n_times, self.n_classes = n_chans, n_times, n_classes
        self.temporal_pad = _same_pad(kernel_length)
        self.temporal_conv = nn.Conv2d(1, F1, (1, kernel_length), bias=False)
        self.temporal_bn = nn.BatchNorm2d(F1)
        self.spatial_conv = _MaxNormConv2d(
            F1, F1 * D, (n_chans, 1), groups=F1, bias=False, max_norm=1.0
        )
        self.spatial_bn = nn.BatchNorm2d(F1 * D)
        self.spatial_act = nn.ELU()
        self.spatial_pool = nn.AvgPool2d((1, pool))
        self.spatial_drop = nn.Dropout(drop_prob)
        self.separable_pad = _same_pad(16)
        self.separable_depthwise = nn.Conv2d(
            F1 * D, F1 * D, (1, 16), groups=F1 * D, bias=False
        )
        self.separable_pointwise = nn.Conv2d(F1 * D, F2, 1, bias=False)
        self.separable_bn = nn.BatchNorm2d(F2)
        self.separable_act = nn.ELU()
        self.separable_pool = nn.AvgPool2d((1, 8))
        self.separable_drop = nn.Dropout(drop_prob)
        self.flatten = nn.Flatten()
        self.classifier = _MaxNormLinear(
            F2 * (n_times // pool // 8), n_classes, max_norm=0.25
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, n_chans, n_times)`` to logits ``(batch, n_classes)``."""
        x = self.temporal_bn(self.temporal_conv(self.temporal_pad(x.unsqueeze(1))))
        x = self.spatial_act(self.spatial_bn(self.spatial_conv(x)))
        x = self.spatial_drop(self.spatial_pool(x))
        x = self.separable_pointwise(self.separable_depthwise(self.separable_pad(x)))
        x = self.separable_act(self.separable_bn(x))
        x = self.separable_drop(self.separable_pool(x))
        return self.classifier(self.flatten(x))
