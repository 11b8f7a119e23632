"""The training step of a decoder trained with its maps, and the terms it adds.

What :mod:`eegsal.guidance` describes, at training time: the skorch training
step of :class:`eegsal.EEGDecoder` (:class:`GuidedTrainingMixin`), which adds
to the cross-entropy the right-for-the-right-reasons, keep-mask, consistency,
distillation (:func:`distillation_loss`) and explanation-matching
(:func:`explanation_matching_loss`) terms and applies the training
augmentations (random or saliency-guided CutOut, :func:`_cutout`, and those
of :mod:`eegsal.augmentation`); the input gradients these terms are built
from (:func:`std_gradients`); and :func:`check_guidance`, which turns a
decoder's :class:`~eegsal.guidance.Guidance`,
:class:`~eegsal.guidance.Distillation` and ``augment`` settings into the
values the step uses.

The settings objects stay in :mod:`eegsal.guidance`, which also gives every
name of this module (``from eegsal.guidance import distillation_loss``...),
loaded on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from skorch.dataset import unpack_data
from torch import nn

from eegsal._check import check_option, validate_type
from eegsal.augmentation import Augmenter
from eegsal.guidance import AUGMENTATIONS, Distillation, Guidance
from eegsal.models._timing import to_samples

__all__ = [
    "GuidedTrainingMixin",
    "check_guidance",
    "distillation_loss",
    "explanation_matching_loss",
    "std_gradients",
]


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


def explanation_matching_loss(
    student_maps: torch.Tensor, teacher_maps: torch.Tensor
) -> torch.Tensor:
    """Mean over epochs of ``1 - cos(student map, teacher map)``.

    Each epoch's maps are flattened over channels x times; the cosine is
    scale-free, so the term is 0 when the student's map is a positive
    multiple of the teacher's, 1 when orthogonal and 2 when opposite. An
    epoch whose map is all zero counts as orthogonal.

    Parameters
    ----------
    student_maps, teacher_maps : torch.Tensor, shape (batch, n_chans, n_times)
        The maps (the teacher's carry no gradient).

    Returns
    -------
    loss : torch.Tensor
        A scalar in [0, 2].
    """
    s = student_maps.float().flatten(1)
    t = teacher_maps.float().flatten(1).to(s.device)
    cos = F.cosine_similarity(s, t, dim=1, eps=1e-12)
    return (1 - cos).mean()


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


@contextmanager
def _held_batchnorm(module: nn.Module):
    """Leave the running statistics of ``module``'s norm layers as they were.

    The layers update copies of their buffers inside the block; the buffers
    themselves are never written (the graph of an earlier forward pass may
    hold them), and are put back after.
    """
    kind = nn.modules.batchnorm._NormBase  # BatchNorm and InstanceNorm
    norms = [m for m in module.modules() if isinstance(m, kind)]
    saved = [dict(m._buffers) for m in norms]
    for m in norms:
        m._buffers.update(
            {k: v.clone() for k, v in m._buffers.items() if v is not None}
        )
    try:
        yield
    finally:
        for m, buffers in zip(norms, saved, strict=True):
            m._buffers.update(buffers)


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
        mask = teacher = teacher_map = None
        if isinstance(Xi, dict):
            mask, teacher = Xi.get("mask"), Xi.get("teacher")
            Xi, teacher_map = Xi["X"], Xi.get("teacher_map")
        xi = Xi.to(self.device)
        yt = yi.to(self.device)
        module = self.module_
        x0, y0 = xi, yt  # the epochs before augmentation: the teacher's maps'
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
        if teacher_map is not None and g["explanation_weight"]:
            # the student's map in µV, as the teacher's: d logit / d x_std / scale;
            # a forward pass that moves neither the dropout draws nor the
            # BatchNorm statistics of the training step
            state_e = _rng_state(xi.device)
            with _held_batchnorm(module):
                _, grad_e = std_gradients(module, x0, y0, True, target="logit")
            _set_rng_state(state_e, xi.device)
            loss = loss + g["explanation_weight"] * explanation_matching_loss(
                grad_e / module[0].scale, teacher_map
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
    """Validate an :class:`EEGDecoder`'s training terms; return them ready to use.

    Parameters
    ----------
    decoder : EEGDecoder
        The decoder: its ``guidance`` (:class:`Guidance` or None), ``augment``,
        ``cutout``, ``cutout_s`` and ``distillation`` (:class:`Distillation`
        or None); ``classes_`` set when ``augment`` swaps labels.
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
    guidance = getattr(decoder, "guidance", None)
    validate_type(guidance, (Guidance, None), "guidance", "Guidance or None")
    distillation = getattr(decoder, "distillation", None)
    validate_type(distillation, (Distillation, None), "distillation",
                  "Distillation or None")  # fmt: skip
    settings = (Guidance() if guidance is None else guidance)._settings(
        n_chans, n_times
    )
    terms = {"weight": settings["rrr_weight"], "keep_weight": settings["keep_weight"]}
    masked = [name for name, value in terms.items() if value]
    if masked and getattr(decoder, "align", None) == "euclidean":
        raise ValueError(
            f"Guidance.{masked[0]} > 0 acts on the cells of a mask of electrodes x "
            "times, but align='euclidean' feeds the network whitened channels, each "
            "a mix of electrodes; use align='standardize' (each channel stays its "
            "electrode, z-scored per subject) or no alignment with the masks."
        )
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
    distill = (
        dict(distill_temperature=1.0, distill_weight=0.0, explanation_weight=0.0)
        if distillation is None
        else distillation._settings()
    )
    return dict(
        settings,
        augment=augment,
        augmenter=augmenter,
        n_classes=len(getattr(decoder, "classes_", [])),
        cutout=cutout,
        **distill,
        generator=gen,
    )
