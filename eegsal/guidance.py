"""Training that uses the maps: right for the right reasons, guided CutOut, consistency.

(and knowledge distillation from a teacher's soft targets, which shares the
training step; see :func:`distillation_loss`)

Three terms a decoder can be trained with (all off by default; see
:class:`eegsal.EEGDecoder`), each built from the input gradient of the
model's log-probabilities with respect to the *standardized* input (the
model's first layer), so that weights do not depend on the data's µV scale:

- **right for the right reasons** (Ross et al., 2017): a penalty
  ``rrr_weight * sum((M- * dlogp/dx)^2)`` on gradient inside a mask of
  irrelevant cells (e.g. frontal channels during REM, or annotated eye
  movements), and optionally ``keep_weight * (1 - share of the squared
  gradient inside M+)``, which rewards reasons inside a mask of relevant cells.
  A network can meet the gradient penalty by flattening its input gradient at
  the training epochs while still deciding by the masked cells (gradient
  masking); ``rrr_method="counterfactual"`` closes that door: the penalty is
  ``rrr_weight * sum((logp(x) - logp(x'))^2)``, where ``x'`` is the epoch with
  its masked cells taken from another epoch of the batch. By completeness,
  ``logp(x) - logp(x')`` is the integrated-gradients attribution of the masked
  cells, summed, on the path from ``x'`` to ``x``: the masked cells may hold
  no evidence *as a whole*, not just at ``x``;
- **saliency-guided CutOut** (one of the training augmentations of
  ``augment``; the others are in :mod:`eegsal.augmentation`): each training
  example loses the patch of ``cutout`` = (channels, samples), or
  ``cutout_s`` seconds long, where the current model's input x gradient is
  largest (its most salient channels, over its most salient window), set to
  the channel means;
  ``augment="cutout"`` removes a random patch instead (DeVries & Taylor, 2017);
- **explanation consistency**: ``consistency_weight`` times the squared
  difference between the maps (input gradients of the true class's logit)
  of an epoch and of a copy with Gaussian noise (``consistency_noise``
  standard deviations) and/or shifted by ``consistency_shift`` samples,
  relative to the maps' squared norm over the batch. Logits, not
  log-probabilities: the gradient of a confident log-probability vanishes,
  and a ratio to it would reward unconfident models.

:func:`make_mask` builds masks from channel names, time windows or MNE
annotations; :func:`localize_events` (defined in
:mod:`eegsal.attribution.events`, next to the Grad-CAM it uses) turns Grad-CAM
time courses into event onsets and offsets (weakly supervised localization).
"""

from __future__ import annotations

from collections.abc import Mapping

import mne
import numpy as np
import torch
import torch.nn.functional as F
from skorch.dataset import unpack_data

from eegsal._check import check_option
from eegsal.augmentation import Augmenter
from eegsal.models._timing import to_samples

__all__ = [
    "AUGMENTATIONS",
    "RRR_METHODS",
    "distillation_loss",
    "localize_events",  # noqa: F822 (eegsal.attribution.events, via __getattr__)
    "make_mask",
]

#: What ``augment=`` of :class:`eegsal.EEGDecoder` takes.
AUGMENTATIONS = ("cutout", "saliency_cutout")
#: What ``rrr_method=`` of :class:`eegsal.EEGDecoder` takes.
RRR_METHODS = ("gradient", "counterfactual")


def __getattr__(name: str):
    # localize_events explains a decoder: it lives with the attributions it
    # uses, and is loaded on first use so that the estimator, which imports
    # this module, does not import eegsal.attribution
    if name == "localize_events":
        from eegsal.attribution.events import localize_events

        globals()[name] = localize_events
        return localize_events
    raise AttributeError(f"module 'eegsal.guidance' has no attribute {name!r}")


def make_mask(
    epochs: mne.BaseEpochs,
    *,
    channels: list[str] | None = None,
    tmin: float | None = None,
    tmax: float | None = None,
    annotations: str | list[str] | None = None,
) -> np.ndarray:
    """Build a mask of channel x time cells, for every epoch or for each one.

    Parameters
    ----------
    epochs : mne.Epochs
        The epochs the mask applies to (EEG channels, in order).
    channels : list of str | None
        Channels of the mask; None takes all.
    tmin, tmax : float | None
        Time window of the mask (s, inclusive); None: the epoch's start or end.
    annotations : str | list of str | None
        Descriptions of annotations (e.g. ``'BAD_eye'``): the mask is then
        per epoch, true where an annotation with one of these descriptions
        overlaps the epoch (on ``channels`` only, or on the annotation's own
        channels when it names some and ``channels`` is None).

    Returns
    -------
    mask : ndarray of bool
        True on the cells of the mask: shape (n_channels, n_times), or
        (n_epochs, n_channels, n_times) with ``annotations``.
    """
    picks = mne.pick_types(epochs.info, eeg=True)
    names = [epochs.ch_names[i] for i in picks]
    times = epochs.times
    if channels is not None:
        unknown = sorted(set(channels) - set(names))
        if unknown:
            raise ValueError(
                f"channels {unknown} are not EEG channels of the epochs; they have "
                f"{names}."
            )
    rows = np.ones(len(names), bool) if channels is None else np.isin(names, channels)
    lo = times[0] if tmin is None else tmin
    hi = times[-1] if tmax is None else tmax
    cols = (times >= lo - 1e-9) & (times <= hi + 1e-9)
    if annotations is None:
        return rows[:, None] & cols[None, :]
    wanted = {annotations} if isinstance(annotations, str) else set(annotations)
    mask = np.zeros((len(epochs), len(names), len(times)), bool)
    per_epoch = epochs.get_annotations_per_epoch()
    for e, annots in enumerate(per_epoch):
        for onset, duration, description in annots:
            if description not in wanted:
                continue
            sel = cols & (times >= onset - 1e-9) & (times <= onset + duration + 1e-9)
            mask[e][np.ix_(rows, sel)] = True
    return mask


def std_gradients(
    module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    create_graph: bool,
    *,
    target: str = "logp",
):
    """Gradient of the log-probability of ``y`` w.r.t. the standardized input.

    Parameters
    ----------
    module : torch.nn.Sequential
        A fitted decoder module (``Standardize`` first).
    x : torch.Tensor
        Epochs in µV, (batch, channels, times).
    y : torch.Tensor
        Class index per epoch, or -1 for the sum over classes (Ross et al.).
    create_graph : bool
        Keep the graph (the gradient enters a loss).
    target : str
        ``'logp'``: log-probabilities (Ross et al.); ``'logit'``: logits, which
        do not saturate as the model grows confident.

    Returns
    -------
    logits, grad : torch.Tensor
        The logits, and d log p / d x_std of shape (batch, channels, times).
    """
    std = module[0]
    z = std(x.detach()).requires_grad_(True)
    logits = module[1:](z)
    out = logits.float()
    if target == "logp":
        out = F.log_softmax(out, dim=-1)
    total = out.sum() if y is None else out.gather(1, y[:, None]).sum()
    (grad,) = torch.autograd.grad(total, z, create_graph=create_graph)
    return logits, grad


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    hard_loss: torch.Tensor,
    *,
    temperature: float,
    weight: float,
) -> torch.Tensor:
    """Knowledge-distillation loss (Hinton et al., 2015).

    ``(1 - weight) * hard_loss + weight * T^2 * KL(p_T || q_T)``, where
    ``p_T = softmax(teacher_logits / T)`` are the teacher's soft targets,
    ``q_T = softmax(student_logits / T)`` the student's, and the KL
    divergence is averaged over the batch. The factor ``T^2`` keeps the
    gradients of the soft term on the scale of the hard one as ``T`` changes.

    Parameters
    ----------
    student_logits : torch.Tensor, shape (batch, n_classes)
        The student's logits.
    teacher_logits : torch.Tensor, shape (batch, n_classes)
        The teacher's logits (or log-probabilities: logits up to a constant
        per epoch, which the softmax at ``T`` ignores).
    hard_loss : torch.Tensor
        The loss on the true labels (the decoder's cross-entropy), a scalar.
    temperature : float
        ``T`` (> 0); higher values soften both distributions.
    weight : float
        Share of the soft term, in [0, 1]; 0 gives ``hard_loss``.

    Returns
    -------
    loss : torch.Tensor
        A scalar.

    References
    ----------
    .. [1] Hinton G, Vinyals O, Dean J (2015). Distilling the knowledge in a
       neural network. arXiv:1503.02531.
    """
    t = float(temperature)
    log_q = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / t, dim=-1)
    soft = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    return (1 - weight) * hard_loss + weight * t**2 * soft


def _cutout(x, module, y, size, guided, gen):
    """Replace one (channels x samples) patch per example by the channel means."""
    n, c, t = x.shape
    pc, pt = min(size[0], c), min(size[1], t)
    if guided:  # the current model's saliency, in eval mode (no BatchNorm update)
        was_training = module.training
        module.eval()
        try:
            with torch.enable_grad():
                _, grad = std_gradients(module, x, y, create_graph=False)
        finally:
            module.train(was_training)
        sal = (grad * module[0](x)).abs()  # input x gradient, standardized units
        chans = sal.sum(-1).topk(pc, dim=1).indices  # (n, pc)
        rows = sal.gather(1, chans[..., None].expand(-1, -1, t)).sum(1)  # (n, t)
        window = F.avg_pool1d(rows[:, None], pt, stride=1)[:, 0]  # (n, t - pt + 1)
        start = window.argmax(1)
    else:
        chans = torch.stack(
            [torch.randperm(c, generator=gen)[:pc] for _ in range(n)]
        ).to(x.device)
        start = torch.randint(0, t - pt + 1, (n,), generator=gen).to(x.device)
    keep = torch.ones_like(x, dtype=torch.bool)
    steps = start[:, None] + torch.arange(pt, device=x.device)[None]  # (n, pt)
    ex = torch.arange(n, device=x.device)[:, None, None]
    keep[ex, chans[:, :, None], steps[:, None, :]] = False
    return torch.where(keep, x, module[0].mean.expand_as(x))


def _rng_state(device):
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state, device):
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


class GuidedTrainingMixin:
    """skorch training step with the explanation terms of :mod:`eegsal.guidance`."""

    guidance: dict

    def train_step_single(self, batch, **fit_params):  # noqa: D102
        g = self.guidance
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        mask = teacher = None
        if isinstance(Xi, dict):
            Xi, mask, teacher = Xi["X"], Xi.get("mask"), Xi.get("teacher")
        xi = Xi.to(self.device)
        yt = yi.to(self.device)
        module = self.module_
        target = yi
        if g["augmenter"] is not None:  # transforms of eegsal.augmentation
            onehot = F.one_hot(yt, g["n_classes"]).float()
            xi, soft = g["augmenter"](xi, onehot)
            yt = soft.argmax(1)
            target = soft if g["augmenter"].soft else yt
        if g["augment"]:
            xi = _cutout(
                xi,
                module,
                yt,
                g["cutout"],
                g["augment"] == "saliency_cutout",
                g["generator"],
            )
        rrr = g["rrr_weight"] and g["rrr_method"] == "gradient"
        counterfactual = g["rrr_weight"] and g["rrr_method"] == "counterfactual"
        m = None
        if g["rrr_weight"]:
            m = g["rrr_mask"] if mask is None else mask.to(self.device)
        state = _rng_state(xi.device)  # the dropout masks of the main forward
        if rrr or g["keep_weight"]:
            y_pred, grad = std_gradients(module, xi, None, create_graph=True)
            sq = grad.pow(2)
        else:
            y_pred = self.infer(xi, **fit_params)
        loss = self.get_loss(y_pred, target, X=xi, training=True)
        if teacher is not None:  # the teacher's targets of the un-augmented epochs
            loss = distillation_loss(
                y_pred,
                teacher.to(xi.device),
                loss,
                temperature=g["distill_temperature"],
                weight=g["distill_weight"],
            )
        if rrr:
            loss = loss + g["rrr_weight"] * (sq * m).sum() / len(xi)
        if g["keep_weight"]:
            share = (sq * g["keep_mask"]).sum((1, 2)) / (sq.sum((1, 2)) + 1e-12)
            loss = loss + g["keep_weight"] * (1 - share).mean()
        if counterfactual:
            # the masked cells of each epoch swapped with those of another epoch
            # of the batch, under the same dropout masks: the output must not move
            order = torch.randperm(len(xi), generator=g["generator"]).to(xi.device)
            partner = torch.empty_like(order)
            partner[order] = order.roll(-1)
            x_cf = torch.where(m.bool(), xi[partner], xi)
            after = _rng_state(xi.device)
            _set_rng_state(state, xi.device)
            cf_pred = self.infer(x_cf, **fit_params)
            _set_rng_state(after, xi.device)
            logp = F.log_softmax(y_pred.float(), -1)
            moved = logp - F.log_softmax(cf_pred.float(), -1)
            loss = loss + g["rrr_weight"] * moved.pow(2).sum(1).mean()
        if g["consistency_weight"]:
            x2 = xi + g["consistency_noise"] * module[0].scale * torch.randn(
                xi.shape, generator=g["generator"]
            ).to(xi.device)
            shift = g["consistency_shift"]
            if shift:
                x2 = torch.roll(x2, shift, dims=-1)
            # both maps under the same dropout masks: only the input differs
            state = _rng_state(xi.device)
            _, grad2 = std_gradients(module, x2, yt, True, target="logit")
            _set_rng_state(state, xi.device)
            _, grad1 = std_gradients(module, xi, yt, True, target="logit")
            if shift:  # compare the maps where both saw the same samples
                grad2 = torch.roll(grad2, -shift, dims=-1)[..., : -abs(shift) or None]
                grad1 = grad1[..., : -abs(shift) or None]
            # one ratio for the batch: an epoch with a near-zero map cannot blow it up
            diff = (grad1 - grad2).pow(2).sum()
            norm = grad1.pow(2).sum().detach() + 1e-12
            loss = loss + g["consistency_weight"] * diff / norm
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def infer(self, x, **fit_params):  # noqa: D102
        if isinstance(x, dict):
            x = x["X"]
        return super().infer(x, **fit_params)


def check_guidance(
    decoder, n_chans: int, n_times: int, *, seed: int | None = None
) -> dict:
    """Validate an :class:`EEGDecoder`'s guidance settings; return them ready to use.

    Parameters
    ----------
    decoder : EEGDecoder
        The decoder (``classes_`` set when ``augment`` swaps labels).
    n_chans, n_times : int
        Shape of the epochs.
    seed : int | None
        Seed of the random draws; None: ``decoder.seed``.

    Returns
    -------
    guidance : dict
        The settings, with the ``augmenter`` of :mod:`eegsal.augmentation`
        (None without transforms) and a seeded torch ``generator``.
    """
    seed = decoder.seed if seed is None else seed
    shape = (n_chans, n_times)

    def fixed(name, value):
        if value is None:
            return None
        arr = np.asarray(value, dtype=np.float32)
        if arr.shape != shape:
            raise ValueError(
                f"{name} must have shape (n_channels, n_times) = {shape} (or, for "
                f"rrr_mask, one such mask per epoch), got {arr.shape}."
            )
        return torch.from_numpy(arr)

    augment, augmenter = decoder.augment, None
    if isinstance(augment, Mapping):
        kinds = [k for k in augment if k in AUGMENTATIONS]
        if len(kinds) > 1:
            raise ValueError(f"augment may hold one of {kinds}, not both.")
        for kind in kinds:
            if augment[kind]:
                raise ValueError(
                    f"augment[{kind!r}] takes no parameters (cutout= and cutout_s= "
                    f"give its patch), got {augment[kind]!r}."
                )
        spec = {k: v for k, v in augment.items() if k not in AUGMENTATIONS}
        names = getattr(decoder, "ch_names", None)
        if names is not None and len(names) != n_chans:
            raise ValueError(
                f"ch_names names {len(names)} channels but the epochs have {n_chans}."
            )
        if spec:
            augmenter = Augmenter(
                spec,
                sfreq=getattr(decoder, "sfreq", None),
                ch_names=names,
                classes=getattr(decoder, "classes_", None),
                seed=seed,
            )
        augment = kinds[0] if kinds else None
    elif augment is not None:
        check_option("augment", augment, AUGMENTATIONS)
    check_option("rrr_method", decoder.rrr_method, RRR_METHODS)
    rrr = decoder.rrr_mask
    per_epoch = rrr is not None and np.ndim(rrr) == 3
    if decoder.rrr_weight and rrr is None:
        raise ValueError("rrr_weight > 0 needs rrr_mask (eegsal.guidance.make_mask).")
    if decoder.keep_weight and decoder.keep_mask is None:
        raise ValueError("keep_weight > 0 needs keep_mask.")
    gen = torch.Generator().manual_seed(int(seed))
    cutout = tuple(int(v) for v in decoder.cutout)
    cutout_s = getattr(decoder, "cutout_s", None)
    if cutout_s is not None:
        sfreq = getattr(decoder, "sfreq", None)
        if sfreq is None:
            raise ValueError(
                f"cutout_s={cutout_s} s needs the sampling rate: decode epochs "
                "(eegsal.decode passes it) or give EEGDecoder(sfreq=...) in Hz."
            )
        cutout = (cutout[0], to_samples(cutout_s, sfreq, "cutout_s"))
    return dict(
        rrr_mask=None if per_epoch else fixed("rrr_mask", rrr),
        rrr_weight=float(decoder.rrr_weight),
        rrr_method=decoder.rrr_method,
        keep_mask=fixed("keep_mask", decoder.keep_mask),
        keep_weight=float(decoder.keep_weight),
        augment=augment,
        augmenter=augmenter,
        n_classes=len(getattr(decoder, "classes_", [])),
        cutout=cutout,
        consistency_weight=float(decoder.consistency_weight),
        consistency_noise=float(decoder.consistency_noise),
        consistency_shift=int(decoder.consistency_shift),
        distill_temperature=float(getattr(decoder, "distill_temperature", 1.0)),
        distill_weight=float(getattr(decoder, "distill_weight", 0.0)),
        generator=gen,
        per_epoch=per_epoch,
    )
