"""ShallowConvNet (Schirrmeister et al., 2017): a learned filter-bank CSP."""

from __future__ import annotations

import torch
from torch import nn

from eegsal._docs import fill_doc
from eegsal.models._layers import SafeLog, Square
from eegsal.models._timing import check_sfreq, to_samples

__all__ = ["ShallowConvNet"]


@fill_doc
class ShallowConvNet(nn.Module):
    """Temporal conv, spatial conv, squaring, mean pooling, log, linear classifier.

    The network mirrors filter-bank common spatial patterns: its output is a
    log band-power feature per (temporal x spatial) filter and pooling window.
    Takes ``(batch, n_chans, n_times)``, returns logits ``(batch, n_classes)``.

    Layers (named submodules) and their outputs, in the internal layout
    ``(batch, filters, time, electrodes)``:

    - ``temporal_conv``: ``(batch, F, n_times - k + 1, n_chans)``. **Still has the
      electrode axis** (the last one).
    - ``spatial_conv``, ``bn``: ``(batch, F, n_times - k + 1, 1)``; no electrode
      axis from here on.
    - ``square``, ``pool``, ``log``: the squares, their mean over
      ``pool_length`` samples every ``pool_stride``, and its logarithm
      (floored at 1e-6); then ``dropout``. Square and log are modules so
      that attribution rules that act on nonlinear modules (DeepLIFT,
      guided backpropagation) see them; they hold no parameters.
    - ``classifier``: a convolution over all remaining time steps.

    Parameters
    ----------
    %(model_shape)s
    n_filters : int
        Number of temporal and of spatial filters (40 in the paper).
    sfreq : float | None
        Sampling rate of the input (Hz); None: 250 Hz, the published rate (the
        sample sizes of eegsal before ``sfreq`` existed).
    filter_s : float
        Temporal kernel length (s; 0.1 s, 25 samples at 250 Hz, in the paper).
    pool_s : float | None
        Mean-pooling window (s; 0.3 s, 75 samples at 250 Hz, in the paper).
        None: one window over the whole epoch, so that each filter gives one
        log band-power, as CSP's log-variance (what transfers best across
        subjects in ``benchmarks/bench_motor_decoding.py``).
    pool_stride_s : float
        Mean-pooling stride (s; 0.06 s, 15 samples at 250 Hz); no effect with
        one window.
    filter_length, pool_length, pool_stride : int | None
        The same in samples; each one given overrides its duration.
    %(drop_prob)s

    Notes
    -----
    Every layer acts at the input rate, so all three sizes are set in seconds
    and turned into samples at ``sfreq`` (``round(seconds * sfreq)``).
    With 22 channels, 1,000 samples, 4 classes and 250 Hz the model has 46,084
    trainable parameters, as braindecode's ``ShallowFBCSPNet``.

    References
    ----------
    %(ref_schirrmeister)s
    """

    #: Grad-CAM layers: name -> (electrode axis, time axis) of the output
    #: ``(batch, filters, time, electrodes)``; None once electrodes are mixed.
    grad_cam_layers: dict[str, tuple[int | None, int]] = {
        "temporal_conv": (3, 2),
        **dict.fromkeys(
            ("spatial_conv", "bn", "square", "pool", "log", "dropout"), (None, 2)
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
        n_filters: int = 40,
        sfreq: float | None = None,
        filter_s: float = 0.1,
        pool_s: float | None = 0.3,
        pool_stride_s: float = 0.06,
        filter_length: int | None = None,
        pool_length: int | None = None,
        pool_stride: int | None = None,
        drop_prob: float = 0.5,
    ):
        super().__init__()
        self.sfreq = check_sfreq(sfreq, 250.0)
        if filter_length is None:
            filter_length = to_samples(filter_s, self.sfreq, "filter_s")
        if pool_length is None and pool_s is None:  # the whole epoch
            pool_length = max(n_times - int(filter_length) + 1, 1)
        elif pool_length is None:
            pool_length = to_samples(pool_s, self.sfreq, "pool_s")
        if pool_stride is None:
            pool_stride = to_samples(pool_stride_s, self.sfreq, "pool_stride_s")
        self.filter_length, self.pool_length = int(filter_length), int(pool_length)
        self.pool_stride = int(pool_stride)
        n_pool = (n_times - filter_length + 1 - pool_length) // pool_stride + 1
        if n_pool < 1:
            raise ValueError(
                f"ShallowConvNet needs n_times >= filter_length + pool_length - 1 = "
                f"{filter_length + pool_length - 1}, got {n_times=}; shorten "
                "filter_length or pool_length (samples) for short epochs."
            )
        self.n_chans, self.n_times, self.n_classes = n_chans, n_times, n_classes
        self.temporal_conv = nn.Conv2d(1, n_filters, (filter_length, 1))
        self.spatial_conv = nn.Conv2d(n_filters, n_filters, (1, n_chans), bias=False)
        self.bn = nn.BatchNorm2d(n_filters, momentum=0.1)
        self.square = Square()
        self.pool = nn.AvgPool2d((pool_length, 1), stride=(pool_stride, 1))
        self.log = SafeLog(eps=1e-6)
        self.dropout = nn.Dropout(drop_prob)
        self.classifier = nn.Conv2d(n_filters, n_classes, (n_pool, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, n_chans, n_times)`` to logits ``(batch, n_classes)``."""
        x = x.transpose(1, 2).unsqueeze(1)  # (batch, 1, time, electrodes)
        x = self.bn(self.spatial_conv(self.temporal_conv(x)))
        x = self.log(self.pool(self.square(x)))
        x = self.classifier(self.dropout(x))
        return x.flatten(1)
