"""Data augmentation of EEG training batches, seeded and off by default.

Each transform acts on a batch of epochs ``x`` (batch, n_channels, n_times)
and their labels as class probabilities ``y`` (batch, n_classes) (one-hot,
until mixup mixes them); each is applied to each epoch with its probability
``p``. :class:`Augmenter` chains the transforms given as
``augment={"name": {params}, ...}`` to :class:`eegsal.EEGDecoder`, in the
order of :data:`TRANSFORMS`, with one :class:`numpy.random.Generator`, so that
the same seed gives the same batches:

- ``time_shift`` (``p``, ``max_s``): circular shift by up to ``max_s``
  seconds either way;
- ``sign_flip`` (``p``): ``x -> -x``;
- ``ft_surrogate`` (``p``, ``phase_noise``): Fourier-transform surrogate
  (Schwabedal et al., 2019): every frequency's phase turned by a random angle
  in ``[0, 2 pi phase_noise)``, the same for all channels (keeping their
  phase relations), so that each channel's amplitude spectrum is kept
  exactly; the 0 Hz and Nyquist bins are left as they are (their phases are
  0 or pi in a real signal);
- ``frequency_shift`` (``p``, ``max_hz``): every frequency moved by the same
  ``df`` drawn in ``[-max_hz, max_hz]`` (the analytic signal times
  ``exp(2 pi i df t)``, real part; Rommel et al., 2022);
- ``channel_dropout`` (``p``, ``p_drop``): each channel set to 0 µV with
  probability ``p_drop``;
- ``channel_symmetry`` (``p``, ``labels``): left and right hemispheres
  swapped: each 10-20 channel with an odd number exchanged with its even
  homologue (C3 <-> C4, Fp1 <-> Fp2, FC5 <-> FC6; midline channels stay),
  and the labels of a lateralized task exchanged as ``labels`` maps them
  (e.g. ``{"left": "right"}``, read both ways);
- ``mixup`` (``p``, ``alpha``): each chosen epoch replaced by ``lam x_i +
  (1 - lam) x_j`` with another epoch ``j`` of the batch and its label by
  the same mix of the two, ``lam ~ Beta(alpha, alpha)`` (Zhang et al., 2018);
  training then uses the soft labels.

References
----------
.. [1] Schwabedal JTC, Snyder JC, Cakmak A, Nemati S, Clifford GD (2019).
   Addressing class imbalance in classification problems of noisy signals
   by using Fourier transform surrogates. arXiv:1806.08675.
.. [2] Rommel C, Paillard J, Moreau T, Gramfort A (2022). Data augmentation
   for learning predictive models on EEG: a systematic comparison. J Neural
   Eng 19(6), 066020.
.. [3] Zhang H, Cisse M, Dauphin YN, Lopez-Paz D (2018). mixup: beyond
   empirical risk minimization. ICLR.
.. [4] Schirrmeister RT et al. (2017). Deep learning with convolutional
   neural networks for EEG decoding and visualization. Hum Brain Mapp 38,
   5391-5420 (time shifts, "cropped training").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["TRANSFER_AUGMENT", "TRANSFORMS", "Augmenter", "homologous_pairs"]

#: Transform name -> its default parameters (``p`` is each epoch's probability).
TRANSFORMS: dict[str, dict] = {
    "time_shift": {"p": 0.5, "max_s": 0.2},
    "sign_flip": {"p": 0.5},
    "ft_surrogate": {"p": 0.5, "phase_noise": 1.0},
    "frequency_shift": {"p": 0.5, "max_hz": 2.0},
    "channel_dropout": {"p": 0.5, "p_drop": 0.2},
    "channel_symmetry": {"p": 0.5, "labels": None},
    "mixup": {"p": 0.5, "alpha": 0.4},
}
#: The training augmentation measured across subjects on the real motor EEG
#: (``benchmarks/bench_motor_decoding.py``, README): milder than the defaults.
TRANSFER_AUGMENT: dict[str, dict] = {
    "time_shift": {"p": 0.5, "max_s": 0.1},
    "sign_flip": {"p": 0.5},
    "ft_surrogate": {"p": 0.3, "phase_noise": 0.5},
    "channel_dropout": {"p": 0.3, "p_drop": 0.1},
    "mixup": {"p": 0.3, "alpha": 0.4},
}


def homologous_pairs(ch_names: Sequence[str]) -> np.ndarray:
    """Permutation of the channels that swaps the hemispheres (10-20 names).

    A 10-20/10-05 name ends in a number, odd on the left and even on the
    right, or in ``z`` on the midline; ``C3`` pairs with ``C4``, ``FC5`` with
    ``FC6``, ``TP9`` with ``TP10``. Channels without a homologue among
    ``ch_names`` (midline, or an absent partner) stay in place.

    Parameters
    ----------
    ch_names : list of str
        Channel names.

    Returns
    -------
    perm : ndarray of int, shape (n_channels,)
        ``x[perm]`` is the epoch with left and right exchanged.
    """
    index = {name.lower(): i for i, name in enumerate(ch_names)}
    perm = np.arange(len(ch_names))
    for i, name in enumerate(ch_names):
        match = re.fullmatch(r"([a-z]+)(\d+)", name.lower())
        if match is None:
            continue
        number = int(match[2])
        partner = number + 1 if number % 2 else number - 1
        j = index.get(f"{match[1]}{partner}")
        if j is not None:
            perm[i] = j
    return perm


def _order(name: str) -> int:
    return list(TRANSFORMS).index(name) if name in TRANSFORMS else -1


def check_augment(spec: Mapping) -> dict[str, dict]:
    """Validate ``augment={"name": {params}}``; return it with defaults filled in."""
    out = {}
    for name, params in sorted(spec.items(), key=lambda kv: _order(kv[0])):
        if name not in TRANSFORMS:
            raise ValueError(
                f"augment has an unknown transform {name!r}; known: "
                f"{list(TRANSFORMS)} (and 'cutout', 'saliency_cutout')."
            )
        params = dict(params or {})
        unknown = sorted(set(params) - set(TRANSFORMS[name]))
        if unknown:
            raise ValueError(
                f"augment[{name!r}] has unknown parameters {unknown}; it takes "
                f"{sorted(TRANSFORMS[name])}."
            )
        params = TRANSFORMS[name] | params
        if not 0 <= float(params["p"]) <= 1:
            raise ValueError(
                f"augment[{name!r}]['p'] must be in [0, 1], got {params['p']}."
            )
        out[name] = params
    return out


class Augmenter:
    """The transforms of ``augment``, applied to training batches in a fixed order.

    Parameters
    ----------
    spec : dict
        ``{"name": {params}}``; names and defaults in :data:`TRANSFORMS`.
    sfreq : float | None
        Sampling rate (Hz); needed by ``time_shift`` and ``frequency_shift``.
    ch_names : list of str | None
        Channel names; needed by ``channel_symmetry``.
    classes : array-like | None
        Class labels, in the order of the outputs; needed by
        ``channel_symmetry``'s ``labels``.
    seed : int
        Seed of every draw.
    """

    def __init__(self, spec, *, sfreq=None, ch_names=None, classes=None, seed=0):
        self.spec = check_augment(spec)
        self.sfreq = sfreq
        self.rng = np.random.default_rng(seed)
        self.soft = "mixup" in self.spec
        for name in ("time_shift", "frequency_shift"):
            if name in self.spec and sfreq is None:
                raise ValueError(
                    f"augment[{name!r}] needs the sampling rate: decode epochs "
                    "(eegsal.decode passes it) or give EEGDecoder(sfreq=...) in Hz."
                )
        self.perm = self.label_perm = None
        if "channel_symmetry" in self.spec:
            if ch_names is None:
                raise ValueError(
                    "augment['channel_symmetry'] needs the channel names: decode "
                    "epochs (eegsal.decode passes them) or give "
                    "EEGDecoder(ch_names=...)."
                )
            self.perm = homologous_pairs(ch_names)
            if np.array_equal(self.perm, np.arange(len(ch_names))):
                raise ValueError(
                    f"augment['channel_symmetry']: no left/right homologous pair "
                    f"among the channels {list(ch_names)}."
                )
            mapping = self.spec["channel_symmetry"]["labels"] or {}
            classes = [] if classes is None else [str(c) for c in classes]
            self.label_perm = np.arange(len(classes))
            for a, b in mapping.items():
                if str(a) not in classes or str(b) not in classes:
                    raise ValueError(
                        f"augment['channel_symmetry']['labels'] maps {a!r} to {b!r} "
                        f"but the classes are {classes}."
                    )
                i, j = classes.index(str(a)), classes.index(str(b))
                self.label_perm[i], self.label_perm[j] = j, i

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, n_channels, n_times)
            Epochs.
        y : torch.Tensor, shape (batch, n_classes)
            Class probabilities (one-hot for hard labels).

        Returns
        -------
        x, y : torch.Tensor
            The augmented batch, new tensors (the input is not changed).
        """
        x, y = x.clone(), y.clone()
        for name, params in self.spec.items():
            chosen = np.flatnonzero(self.rng.random(len(x)) < float(params["p"]))
            if chosen.size:
                x, y = getattr(self, "_" + name)(x, y, chosen, params)
        return x, y

    def _time_shift(self, x, y, idx, params):
        max_n = int(round(float(params["max_s"]) * self.sfreq))
        shifts = self.rng.integers(-max_n, max_n + 1, idx.size)
        for i, s in zip(idx, shifts, strict=True):
            x[i] = torch.roll(x[i], int(s), dims=-1)
        return x, y

    def _sign_flip(self, x, y, idx, params):
        x[idx] = -x[idx]
        return x, y

    def _ft_surrogate(self, x, y, idx, params):
        n_times = x.shape[-1]
        spec = torch.fft.rfft(x[idx].double(), dim=-1)
        angle = 2 * np.pi * float(params["phase_noise"])
        angle = angle * self.rng.random((idx.size, 1, spec.shape[-1]))
        angle[..., 0] = 0.0
        if n_times % 2 == 0:
            angle[..., -1] = 0.0
        turn = torch.polar(torch.ones(angle.shape, dtype=torch.float64),
                           torch.from_numpy(angle))  # fmt: skip
        out = torch.fft.irfft(spec * turn.to(spec.device), n=n_times, dim=-1)
        x[idx] = out.to(x.dtype)
        return x, y

    def _frequency_shift(self, x, y, idx, params):
        n_times = x.shape[-1]
        df = self.rng.uniform(-1, 1, idx.size) * float(params["max_hz"])
        spec = torch.fft.fft(x[idx].double(), dim=-1)
        h = torch.zeros(n_times, dtype=torch.float64)
        h[0] = 1.0
        h[1 : (n_times + 1) // 2] = 2.0
        if n_times % 2 == 0:
            h[n_times // 2] = 1.0
        analytic = torch.fft.ifft(spec * h.to(spec.device), dim=-1)
        t = torch.arange(n_times, dtype=torch.float64) / self.sfreq
        phase = 2 * np.pi * torch.from_numpy(df)[:, None] * t[None]  # (n, times)
        shifted = (analytic * torch.polar(torch.ones_like(phase), phase)[:, None]).real
        x[idx] = shifted.to(x.dtype)
        return x, y

    def _channel_dropout(self, x, y, idx, params):
        drop = self.rng.random((idx.size, x.shape[1])) < float(params["p_drop"])
        keep = torch.from_numpy(~drop).to(x.device, x.dtype)
        x[idx] = x[idx] * keep[..., None]
        return x, y

    def _channel_symmetry(self, x, y, idx, params):
        x[idx] = x[idx][:, torch.from_numpy(self.perm)]
        if self.label_perm is not None and len(self.label_perm):
            y[idx] = y[idx][:, torch.from_numpy(self.label_perm)]
        return x, y

    def _mixup(self, x, y, idx, params):
        alpha = float(params["alpha"])
        lam = self.rng.beta(alpha, alpha, idx.size)
        partner = self.rng.integers(0, len(x), idx.size)
        lam_x = torch.from_numpy(lam).to(x.device, x.dtype)[:, None, None]
        lam_y = torch.from_numpy(lam).to(y.device, y.dtype)[:, None]
        x0, y0 = x.clone(), y.clone()  # partners are drawn from the unmixed batch
        x[idx] = lam_x * x0[idx] + (1 - lam_x) * x0[partner]
        y[idx] = lam_y * y0[idx] + (1 - lam_y) * y0[partner]
        return x, y
