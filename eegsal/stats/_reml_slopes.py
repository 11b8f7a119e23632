"""Random intercepts and slopes at many cells at once, by profiled REML.

Every cell shares the fixed-effects design ``X`` (N x p), the random-effects
design ``Z`` (N x q, e.g. intercept and content) and the grouping; only the
response ``y`` changes. In lme4's notation (Bates et al., 2015) the random
effects of group g are ``b_g ~ N(0, sigma^2 Lambda Lambda')`` with ``Lambda``
lower triangular (``theta``: its q(q + 1)/2 entries, row by row), and the
REML criterion, with ``sigma^2`` profiled out, is

    d(theta) = sum_g log det M_g + log det A + (N - p) log(r'V^-1 r / (N - p))

with ``M_g = I + Lambda' Z_g'Z_g Lambda`` (q x q) and, by the Woodbury identity
``V_g^-1 = I - Z_g W_g Z_g'`` with ``W_g = Lambda M_g^-1 Lambda'``,

    A = X'X - sum_g X_g'Z_g W_g Z_g'X_g            (= X' V^-1 X)
    b = X'y - sum_g X_g'Z_g W_g Z_g'y_g            (= X' V^-1 y)
    r'V^-1 r = y'y - sum_g y_g'Z_g W_g Z_g'y_g - b'A^-1 b.

So the data enter through ``X'y``, ``Z_g'y_g`` and ``y'y`` per cell, and the
design through ``X'X``, ``X_g'Z_g`` and ``Z_g'Z_g``, shared by all cells:
each evaluation is a few (cells, groups, q, q) arrays and one matrix product.
``theta`` is optimised per cell by a batched, safeguarded Newton method with
finite-difference derivatives. The criterion depends on ``Lambda Lambda'``
only, so it is even in each column of ``Lambda``: the diagonal of ``theta`` is
left unconstrained, a variance of zero is an interior point of that
parametrisation (reached, then snapped to exactly zero), and no bound is
needed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

_DIAG_STARTS = (0.1, 0.5, 2.0)  # starting relative SDs of each random effect
_STEP = 1e-4  # finite-difference step in theta
_SNAP = 1e-7  # deviance a zero variance may cost and still be taken


@dataclass
class GroupSums:
    """Cross-products that every evaluation of the REML criterion needs.

    Attributes
    ----------
    xx : ndarray, shape (p, p)
        ``X'X``.
    xz : ndarray, shape (G, p, q)
        ``X_g'Z_g`` per group.
    zz : ndarray, shape (G, q, q)
        ``Z_g'Z_g`` per group.
    xy : ndarray, shape (p, F)
        ``X'Y``.
    zy : ndarray, shape (G, q, F)
        ``Z_g'Y_g`` per group.
    yy : ndarray, shape (F,)
        ``y'y`` per cell.
    n : int
        Epochs.
    """

    xx: np.ndarray
    xz: np.ndarray
    zz: np.ndarray
    xy: np.ndarray
    zy: np.ndarray
    yy: np.ndarray
    n: int
    _cache: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def p(self) -> int:  # noqa: D102
        return self.xx.shape[0]

    @property
    def q(self) -> int:  # noqa: D102
        return self.zz.shape[1]

    def cells(self, idx) -> GroupSums:
        """Return the sums of a subset of cells."""
        return replace(
            self, xy=self.xy[:, idx], zy=self.zy[:, :, idx], yy=self.yy[idx],
            _cache=self._cache,
        )  # fmt: skip


def _indicator(codes: np.ndarray, n_groups: int) -> np.ndarray:
    ind = np.zeros((n_groups, len(codes)))
    ind[codes, np.arange(len(codes))] = 1.0
    return ind


def group_sums(
    X: np.ndarray, Z: np.ndarray, Y: np.ndarray, codes: np.ndarray
) -> GroupSums:
    """Compute the cross-products of ``X`` (N, p), ``Z`` (N, q), ``Y`` (N, F).

    ``codes`` (N,) numbers the groups 0..G-1.
    """
    n_groups = int(codes.max()) + 1
    ind = _indicator(codes, n_groups)
    xz = np.einsum("gn,np,nq->gpq", ind, X, Z)
    zz = np.einsum("gn,np,nq->gpq", ind, Z, Z)
    # Z_g'Y_g for all g: one (G*q, N) x (N, F) product
    zy = ((ind[:, None, :] * Z.T[None]).reshape(-1, len(X)) @ Y).reshape(
        n_groups, Z.shape[1], -1
    )
    yy = np.einsum("nf,nf->f", Y, Y)
    return GroupSums(X.T @ X, xz, zz, X.T @ Y, zy, yy, len(X))


def group_sums_blocks(X: np.ndarray, Z: np.ndarray, blocks, codes: np.ndarray):
    """Compute :func:`group_sums` from blocks ``(start, Y_block)`` of rows of ``Y``.

    The blocks come in order of rows (any trailing shape, flattened to
    cells); memory is bounded by a block and the (p + G q + 1) x F sums.
    """
    n_groups = int(codes.max()) + 1
    ind = _indicator(codes, n_groups)
    zind = (ind[:, None, :] * Z.T[None]).reshape(-1, len(X))  # (G q, N)
    xy = zy = yy = None
    for start, block in blocks:
        yblk = np.asarray(block, dtype=np.float64).reshape(len(block), -1)
        rows = slice(start, start + len(yblk))
        if xy is None:
            xy, zy, yy = X[rows].T @ yblk, zind[:, rows] @ yblk, 0.0
        else:
            xy += X[rows].T @ yblk
            zy += zind[:, rows] @ yblk
        yy = yy + np.einsum("nf,nf->f", yblk, yblk)
    s = group_sums(X, Z, np.zeros((len(X), 0)), codes)
    return replace(s, xy=xy, zy=zy.reshape(n_groups, Z.shape[1], -1), yy=yy)


def n_theta(q: int) -> int:
    """Count the covariance parameters of ``q`` random effects."""
    return q * (q + 1) // 2


def to_lambda(theta: np.ndarray, q: int) -> np.ndarray:
    """Lower-triangular ``Lambda`` (F, q, q) from ``theta`` (F, q(q+1)/2), row-wise."""
    lam = np.zeros((len(theta), q, q))
    rows, cols = np.tril_indices(q)
    lam[:, rows, cols] = theta
    return lam


def _small_inverse(M: np.ndarray):
    """Inverse and log-determinant of a stack (..., q, q) of SPD matrices.

    Closed forms for q <= 2 (NumPy's batched LAPACK calls cost more than the
    arithmetic on so small matrices).
    """
    q = M.shape[-1]
    if q == 1:
        return 1.0 / M, np.log(M[..., 0, 0])
    if q == 2:
        a, b, d = M[..., 0, 0], M[..., 0, 1], M[..., 1, 1]
        det = a * d - b * b
        inv = np.stack([np.stack([d, -b], -1), np.stack([-b, a], -1)], -2)
        return inv / det[..., None, None], np.log(det)
    return np.linalg.inv(M), np.linalg.slogdet(M)[1]


def _design_products(s: GroupSums):
    """Products of the design shared by every evaluation (cached on ``s``)."""
    if s._cache is None:
        n_groups, p, q = s.xz.shape
        # sum_g X_g'Z_g W_g Z_g'X_g = W (F, G q q) @ T (G q q, p p)
        T = np.einsum("gak,gbl->gklab", s.xz, s.xz).reshape(n_groups * q * q, p * p)
        xzt = s.xz.transpose(0, 2, 1).reshape(n_groups * q, p)
        s._cache = (T, xzt)
    return s._cache


def _parts(s: GroupSums, theta: np.ndarray):
    """Compute A, b, y'V^-1 y and sum_g log det M_g at ``theta`` (F, k)."""
    n_cells, (n_groups, p, q) = len(theta), s.xz.shape
    lam = to_lambda(theta, q)
    T, xzt = _design_products(s)
    # M_g = I + Lambda' Z_g'Z_g Lambda, (F, G, q, q), by elementwise sums
    # over the q x q entries (faster than einsum on these tiny matrices)
    zl = np.zeros((n_cells, n_groups, q, q))  # Z_g'Z_g Lambda
    for k, j, m in itertools.product(range(q), repeat=3):
        if m >= j:  # Lambda is lower triangular
            zl[..., k, j] += s.zz[None, :, k, m] * lam[:, None, m, j]
    M = np.zeros((n_cells, n_groups, q, q))
    for i, j in itertools.product(range(q), repeat=2):
        if j < i:
            M[..., i, j] = M[..., j, i]
            continue
        M[..., i, j] = (i == j) + sum(
            lam[:, None, k, i] * zl[..., k, j] for k in range(i, q)
        )
    Minv, logdet = _small_inverse(M)
    # W_g = Lambda M_g^-1 Lambda' (no inverse of Lambda: zero variances work)
    ml = np.zeros_like(M)  # M^-1 Lambda'
    for i, j in itertools.product(range(q), repeat=2):
        ml[..., i, j] = sum(Minv[..., i, k] * lam[:, None, j, k] for k in range(j + 1))
    W = np.zeros_like(M)
    for i, j in itertools.product(range(q), repeat=2):
        if j < i:
            W[..., i, j] = W[..., j, i]
            continue
        W[..., i, j] = sum(lam[:, None, i, k] * ml[..., k, j] for k in range(i + 1))
    zy = s.zy.transpose(2, 0, 1)  # (F, G, q)
    u = np.stack([sum(W[..., i, k] * zy[..., k] for k in range(q))
                  for i in range(q)], -1)  # fmt: skip
    A = s.xx - (W.reshape(n_cells, -1) @ T).reshape(n_cells, p, p)
    b = s.xy.T - u.reshape(n_cells, -1) @ xzt
    yvy = s.yy - (u * zy).sum((1, 2))
    return A, b, yvy, logdet.sum(1)


def _gls(s: GroupSums, theta: np.ndarray):
    A, b, yvy, logdet = _parts(s, theta)
    beta = np.linalg.solve(A, b[..., None])[..., 0]
    rvr = np.maximum(yvy - (b * beta).sum(1), 1e-300)
    return beta, A, rvr, logdet


def reml_deviance(s: GroupSums, theta: np.ndarray) -> np.ndarray:
    """Profiled REML deviance (F,) at ``theta`` (F, k), lme4's up to a constant.

    lme4's ``REMLcrit`` is this plus ``(N - p) (1 + log(2 pi))``.
    """
    _, A, rvr, logdet = _gls(s, theta)
    dof = s.n - s.p
    return logdet + np.linalg.slogdet(A)[1] + dof * np.log(rvr / dof)


def _derivatives(s: GroupSums, theta: np.ndarray, f0: np.ndarray, h: float):
    """Finite-difference gradient (F, k) and Hessian (F, k, k), step h (F, 1).

    Central differences for the gradient and the diagonal, forward ones for
    the off-diagonal entries (enough for Newton steps; the line search and
    the gradient decide where they stop).
    """
    k = theta.shape[1]
    eye = np.eye(k)[None] * h[:, :, None]  # (F, k, k): row i steps theta_i
    fp = np.stack([reml_deviance(s, theta + eye[:, i]) for i in range(k)], 1)
    fm = np.stack([reml_deviance(s, theta - eye[:, i]) for i in range(k)], 1)
    grad = (fp - fm) / (2 * h)
    hess = np.zeros((len(theta), k, k))
    hess[:, np.arange(k), np.arange(k)] = (fp - 2 * f0[:, None] + fm) / h**2
    for i, j in itertools.combinations(range(k), 2):
        # one evaluation per pair: (f(+i+j) - f(+i) - f(+j) + f) / h^2, O(h)
        fij = reml_deviance(s, theta + eye[:, i] + eye[:, j])
        hij = (fij - fp[:, i] - fp[:, j] + f0) / h[:, 0] ** 2
        hess[:, i, j] = hess[:, j, i] = hij
    return grad, hess


def _newton_step(grad: np.ndarray, hess: np.ndarray) -> np.ndarray:
    """Newton step on the Hessian made positive definite (|eigenvalues|, floored)."""
    vals, vecs = np.linalg.eigh(hess)
    scale = np.abs(vals).max(1, keepdims=True)
    vals = np.maximum(np.abs(vals), 1e-8 * scale + 1e-12)
    g = np.einsum("fki,fk->fi", vecs, grad)
    return -np.einsum("fik,fk->fi", vecs, g / vals)


def _diag_index(q: int) -> np.ndarray:
    rows, cols = np.tril_indices(q)
    return np.flatnonzero(rows == cols)


def canonical(theta: np.ndarray, q: int) -> np.ndarray:
    """Flip columns of ``Lambda`` to a non-negative diagonal (the same model)."""
    lam = to_lambda(theta, q)
    sign = np.where(np.diagonal(lam, axis1=1, axis2=2) < 0, -1.0, 1.0)
    lam = lam * sign[:, None, :]
    return lam[:, *np.tril_indices(q)]


def fit_theta(
    s: GroupSums,
    *,
    start: np.ndarray | None = None,
    max_iter: int = 50,
    tol: float = 1e-7,
    chunk: int = 4096,
) -> np.ndarray:
    """Minimise the REML deviance over ``theta`` for every cell at once.

    Starts from the best of a small grid (relative SDs 0.1, 0.5 and 2 for
    each random effect, no correlation), then takes Newton steps on the
    finite-difference Hessian (made positive definite) with step halving
    until the step changes the deviance by less than ``tol``. Finally, each
    variance whose removal costs less than ``1e-7`` in deviance is set to
    exactly zero (a boundary fit, as lme4's singular fits).

    Returns
    -------
    theta : ndarray, shape (F, q(q+1)/2)
        Rows of ``Lambda``'s lower triangle, diagonal non-negative.
    """
    n_cells, q = s.yy.shape[0], s.q
    if n_cells > chunk:  # bounded memory: (chunk, G, q, q) temporaries
        parts = [
            fit_theta(
                s.cells(slice(a, a + chunk)),
                start=None if start is None else start[a : a + chunk],
                max_iter=max_iter,
                tol=tol,
            )
            for a in range(0, n_cells, chunk)
        ]
        return np.concatenate(parts)
    k, diag = n_theta(q), _diag_index(q)
    starts = []
    for values in itertools.product(_DIAG_STARTS, repeat=q):
        t = np.zeros(k)
        t[diag] = values
        starts.append(t)
    starts = [np.tile(t, (n_cells, 1)) for t in starts]
    if start is not None:
        warm = np.array(start, dtype=float)
        warm[:, diag] = np.where(np.abs(warm[:, diag]) < 1e-3, 1e-2, warm[:, diag])
        starts.append(warm)
    devs = np.stack([reml_deviance(s, t) for t in starts])
    best = devs.argmin(0)
    theta = np.stack(starts)[best, np.arange(n_cells)]
    dev = devs.min(0)
    active = np.arange(n_cells)
    for _ in range(max_iter):
        if not len(active):
            break
        sa = s.cells(active)
        th, f0 = theta[active], dev[active]
        h = _STEP * np.maximum(1.0, np.abs(th).max(1, keepdims=True))
        grad, hess = _derivatives(sa, th, f0, h)
        step = _newton_step(grad, hess)
        # cap the step at 10 relative SDs or 10x the current size
        big = np.abs(step).max(1, keepdims=True)
        step *= np.minimum(1.0, 10 * np.maximum(1.0, np.abs(th).max(1))[:, None] / big)
        new_th, new_f = th.copy(), f0.copy()
        todo = np.ones(len(active), bool)
        for halving in range(30):
            cand = th + step * 0.5**halving
            fc = reml_deviance(sa.cells(todo), cand[todo])
            better = fc <= f0[todo]
            idx = np.flatnonzero(todo)[better]
            new_th[idx], new_f[idx] = cand[idx], fc[better]
            todo[idx] = False
            if not todo.any():
                break
        theta[active], dev[active] = new_th, new_f
        done = f0 - new_f < tol
        active = active[~done]
    theta = canonical(theta, q)
    return _snap(s, theta, dev)


def _snap(s: GroupSums, theta: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """Set to zero each random effect whose variance costs < ``_SNAP`` in deviance.

    Column j of ``Lambda`` set to zero (from the last) drops the part of the
    effect that is not explained by the earlier ones; the whole row j set to
    zero drops the effect itself (variance zero).
    """
    q = s.q
    rows, cols = np.tril_indices(q)
    for j in range(q - 1, -1, -1):
        for kill in (rows == j, cols == j):
            cand = theta.copy()
            cand[:, kill] = 0.0
            fc = reml_deviance(s, cand)
            take = fc <= dev + _SNAP
            theta = np.where(take[:, None], cand, theta)
            dev = np.where(take, np.minimum(fc, dev), dev)
    return theta


def estimates(s: GroupSums, theta: np.ndarray):
    """Return fixed effects, GLS standard errors, residual and random-effect variances.

    Returns
    -------
    beta, se : ndarray, shape (F, p)
    scale : ndarray, shape (F,)
        Residual variance (REML).
    cov_re : ndarray, shape (F, q, q)
        Random-effects covariance, ``scale * Lambda Lambda'``.
    """
    beta, A, rvr, _ = _gls(s, theta)
    scale = rvr / (s.n - s.p)
    cov_diag = np.diagonal(np.linalg.inv(A), axis1=1, axis2=2)
    se = np.sqrt(scale[:, None] * cov_diag)
    lam = to_lambda(theta, s.q)
    cov_re = scale[:, None, None] * lam @ lam.transpose(0, 2, 1)
    return beta, se, scale, cov_re


def drop(s: GroupSums, j: int) -> GroupSums:
    """Drop column ``j`` of the fixed design (the reduced model), data untouched."""
    keep = np.delete(np.arange(s.p), j)
    return replace(s, xx=s.xx[np.ix_(keep, keep)], xz=s.xz[:, keep], xy=s.xy[keep],
                   _cache=None)  # fmt: skip
