"""The permuted z-maps of a random-intercept fit on a GPU, with torch tensors.

The same algebra as :meth:`eegsal.stats.permutations.InterceptNull._z_block`,
in float64 on a CUDA device: the held fit is moved there once per null, each
block of permutations is computed there, and the z-maps come back as NumPy
arrays (the cluster labelling stays on the CPU). torch is imported only here,
and only when a device other than the CPU is asked for, so that
``import eegsal.stats`` stays torch-free.
"""

from __future__ import annotations

import numpy as np


def _torch_device(device) -> str | None:
    """Where the held-ratio permutations run: None (NumPy) or a CUDA device.

    None and ``'cpu'`` keep NumPy; ``'auto'`` is ``'cuda'`` when PyTorch sees
    a GPU, else NumPy; ``'cuda'``, ``'cuda:1'``... (or a ``torch.device``)
    need one. torch is imported only when a device other than the CPU is
    asked for.
    """
    if device is None or str(device) == "cpu":
        return None
    name = str(device)
    if name != "auto" and not (name == "cuda" or name.startswith("cuda:")):
        raise ValueError(
            f"device must be None, 'cpu', 'auto', 'cuda' or 'cuda:N', got {device!r}."
        )
    from eegsal.decoding.networks import get_device  # the one resolution of devices

    resolved = get_device(name)
    return None if resolved.type == "cpu" else str(resolved)


def held_on_device(null, device):
    """Move ``null``'s held fit to ``device`` once, as float64 tensors.

    ``null`` is an :class:`~eegsal.stats.permutations.InterceptNull`; its
    held fit (``_held_fit``) is kept on the device in ``null._on_device``.
    Every class whose rows are all the rows shares one copy of ``Y``.
    """
    key = str(device)
    with null._lock:
        if key not in null._on_device:
            import torch

            def t(a):
                return torch.as_tensor(np.asarray(a, dtype=np.float64),
                                       device=device)  # fmt: skip

            (u, classes), beta0, rwr0, inv_mm, inv_jm, inv_jj = null._held_fit()
            shared, on_device = {}, []
            for rows, offset, v, y_k, c_k in classes:
                if id(y_k) not in shared:
                    shared[id(y_k)] = t(y_k)
                every = len(rows) == len(null.X)
                rows_t = None if every else torch.as_tensor(rows, device=device)
                on_device.append((rows_t, offset, t(v), shared[id(y_k)], t(c_k)))
            m = null.moving
            null._on_device[key] = (
                t(u), on_device, t(beta0[:, null.j]), t(beta0[:, m].T), t(rwr0),
                t(inv_mm), t(inv_jm), t(inv_jj),
            )  # fmt: skip
        return null._on_device[key]


def z_block_on_device(null, perms: np.ndarray, device) -> np.ndarray:
    """:meth:`InterceptNull._z_block` with torch tensors (float64) on ``device``.

    The same algebra on the held fit moved there once
    (:func:`held_on_device`); the z-maps come back as a NumPy array, equal
    to the NumPy path's to floating-point error (not bit for bit: the
    sums run in another order).
    """
    import torch

    u, classes, beta0_j, b0, rwr0, inv_mm, inv_jm, inv_jj = held_on_device(null, device)
    p = torch.as_tensor(np.asarray(perms, dtype=np.int64), device=device)
    delta = torch.zeros((len(p), len(b0), len(rwr0)), dtype=torch.float64,
                        device=device)  # fmt: skip
    for rows, offset, v, y_k, c_k in classes:
        idx = p if rows is None else p[:, rows]
        d_k = u[idx + offset] @ y_k - c_k  # (B, F)
        delta += v[None, :, None] * d_k[:, None, :]  # (B, M, F)
    beta_j = beta0_j + torch.einsum("fm,bmf->bf", inv_jm, delta)
    quad = (torch.einsum("bmf,fmk->bfk", delta, inv_mm)
            * delta.transpose(1, 2)).sum(-1)  # fmt: skip
    rwr = rwr0 - 2 * torch.einsum("bmf,mf->bf", delta, b0) - quad
    scale = rwr.clamp_min(1e-300) / (len(null.X) - null.X.shape[1])
    return (beta_j / torch.sqrt(scale * inv_jj)).cpu().numpy()
