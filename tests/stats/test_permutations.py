"""Permutation nulls: the batched updates against dense refits, and any n_jobs."""

import logging
import pickle

import mne
import numpy as np
import pandas as pd
import pytest

from eegsal.attribution import Attributions
from eegsal.stats import fit_lmm
from eegsal.stats.permutations import (
    BLOCK,
    SlopeNull,
    null_maps,
    permutation_scheme,
    shuffle,
    strata_rows,
)


def _attr(seed=0, sizes=(14, 20, 23, 30, 30, 41), n_chans=3, n_times=4):
    """Unequal subjects, content x stage effects and a numeric covariate."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    subject = np.repeat([f"s{i}" for i in range(len(sizes))], sizes)
    meta = pd.DataFrame({
        "subject": subject,
        "content": rng.choice(["flying", "other"], n),
        "stage": rng.choice(["N2", "N3", "REM"], n),
        "age": rng.normal(30, 5, n),
    })  # fmt: skip
    codes = pd.factorize(subject)[0]
    y = rng.standard_normal((n, n_chans * n_times))
    y += rng.standard_normal((len(sizes), n_chans * n_times))[codes]
    y += 0.5 * (meta["stage"] == "REM").to_numpy()[:, None]
    y += 0.3 * (meta["content"] == "other").to_numpy()[:, None]
    info = mne.create_info([f"E{i}" for i in range(n_chans)], 100.0, "eeg")
    data = y.reshape(n, n_chans, n_times).astype(np.float32)
    return Attributions(data, info, np.arange(n_times) / 100.0, metadata=meta,
                        method="saliency", target="logit")  # fmt: skip


def _dense_z(X, y, Z, gamma, j):
    """Wald z of coefficient j: GLS with V = I + gamma Z Z', from scratch."""
    n = len(X)
    V = np.eye(n) + gamma * Z @ Z.T
    vx = np.linalg.solve(V, np.column_stack([X, y]))
    A = X.T @ vx[:, :-1]
    beta = np.linalg.solve(A, X.T @ vx[:, -1])
    e = y - X @ beta
    scale = e @ np.linalg.solve(V, e) / (n - X.shape[1])
    return beta[j] / np.sqrt(scale * np.linalg.inv(A)[j, j])


CASES = [
    ("content + stage", "content[T.other]", "restricted shuffle", 1),
    ("content * stage", "content[T.other]", "Freedman-Lane", 1),  # one lane
    # strata of subjects only: stage moves too, a lane per moving column
    ("content * stage", "content[T.other]:stage[T.REM]", "Freedman-Lane", 5),
    ("content + age", "content[T.other]", "Freedman-Lane", 2),  # a lane per column
]


@pytest.mark.parametrize(("formula", "name", "scheme", "lanes"), CASES)
def test_batched_null_maps_equal_dense_refits_of_each_permutation(
    formula, name, scheme, lanes
):
    attr = _attr()
    lmm = fit_lmm(attr, formula)
    meta = attr.metadata.reset_index(drop=True)
    found = permutation_scheme(lmm, name)
    assert found.name == scheme
    j = lmm.coef(name)
    maps, refit = null_maps(lmm, j, found, None)
    assert not refit
    (u, classes), *_ = maps._held_fit()
    assert len(u) == lanes * len(attr)  # the moving columns as few products
    X = lmm.design.to_numpy()
    Y = attr.data.reshape(len(attr), -1).astype(float)
    Z = pd.get_dummies(meta["subject"]).to_numpy(float)
    if scheme == "Freedman-Lane":
        # the reduced model's fit and marginal residuals, at its own ratio
        reduced = np.delete(X, j, axis=1)
        fit = np.empty_like(Y)
        for f in range(Y.shape[1]):
            V = np.eye(len(X)) + maps.gamma0[f] * Z @ Z.T
            vx = np.linalg.solve(V, np.column_stack([reduced, Y[:, f]]))
            b = np.linalg.solve(reduced.T @ vx[:, :-1], reduced.T @ vx[:, -1])
            fit[:, f] = reduced @ b
        resid = Y - fit
    rng = np.random.default_rng(0)
    perms = [shuffle(len(X), strata_rows(meta, found.strata), rng) for _ in range(5)]
    got = maps.z_maps(perms)
    for perm, z in zip(perms, got, strict=True):
        if scheme == "Freedman-Lane":
            # the design's rows follow perm: the residuals follow its inverse
            design, data = X, fit + resid[np.argsort(perm)]
        else:
            design, data = X.copy(), Y
            design[:, j] = X[perm, j]
        ref = [_dense_z(design, data[:, f], Z, maps.gamma0[f], j)
               for f in range(Y.shape[1])]  # fmt: skip
        np.testing.assert_allclose(z, ref, rtol=1e-9, atol=1e-12)
    # the block updates equal refitting each permuted design's sums
    one_by_one = np.array([maps.z_of(p) for p in perms])
    np.testing.assert_allclose(got, one_by_one, rtol=1e-10, atol=1e-12)


def test_the_null_is_the_same_for_any_number_of_jobs():
    attr = _attr(1, sizes=(30,) * 6)
    lmm = fit_lmm(attr, "content * stage")
    n_perm = BLOCK + 7  # a last block that is not full
    kw = dict(n_permutations=n_perm, seed=3, threshold=1.0, adjacency=np.ones((3, 3)))
    serial = lmm.cluster_test("content[T.other]", n_jobs=1, **kw)
    for n_jobs in (2, 3):
        par = lmm.cluster_test("content[T.other]", n_jobs=n_jobs, **kw)
        np.testing.assert_array_equal(par.null, serial.null)
    assert len(serial.null) == n_perm and serial.null.max() > 0


def test_strata_come_in_the_order_of_their_first_row():
    # the draws of a seed follow this order; pandas 2 orders a grouping by
    # several columns by each column's first appearance instead
    meta = pd.DataFrame({"subject": ["s1", "s2", "s1", "s2", "s1", "s2"],
                         "stage": ["W", "N2", "N2", "W", "W", "N2"]})  # fmt: skip
    rows = strata_rows(meta, ["subject", "stage"])
    assert [r.tolist() for r in rows] == [[0, 4], [1, 5], [2], [3]]
    assert [r.tolist() for r in strata_rows(meta, "stage")] == [[0, 3, 4], [1, 2, 5]]
    # categories that no row has make no stratum; their order does not count
    cat = meta.assign(stage=pd.Categorical(meta["stage"], ["REM", "N2", "W"]))
    assert [r.tolist() for r in strata_rows(cat, ["subject", "stage"])] == [
        r.tolist() for r in rows
    ]
    # the same draws as permuting each stratum's rows in turn
    perm = shuffle(len(meta), rows, np.random.default_rng(0))
    rng, want = np.random.default_rng(0), np.arange(len(meta))
    for r in rows:
        want[r] = rng.permutation(r)
    np.testing.assert_array_equal(perm, want)


@pytest.mark.parametrize(("formula", "name", "scheme", "lanes"), CASES)
def test_the_torch_blocks_equal_the_numpy_blocks(formula, name, scheme, lanes):
    # the algebra of device="cuda", run by torch on the CPU: the restricted
    # shuffle, Freedman-Lane with one lane, a lane per moving column, and the
    # fallback of _lanes (a numeric covariate beside the tested label)
    attr = _attr()
    lmm = fit_lmm(attr, formula)
    meta = attr.metadata.reset_index(drop=True)
    found = permutation_scheme(lmm, name)
    maps, _ = null_maps(lmm, lmm.coef(name), found, None)
    assert maps.device is None  # the default: NumPy
    (u, _), *_ = maps._held_fit()
    assert len(u) == lanes * len(attr)
    rng = np.random.default_rng(1)
    rows = strata_rows(meta, found.strata)
    for n_perms in (BLOCK, 5):  # a full block and a short one
        perms = np.array([shuffle(len(attr), rows, rng) for _ in range(n_perms)])
        want = maps._z_block(perms)
        got = maps._z_block_torch(perms, "cpu")
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # the held fit goes to the device once, and stays out of pickles
    assert list(maps._on_device) == ["cpu"]
    clone = pickle.loads(pickle.dumps(maps))
    assert clone._on_device == {}
    np.testing.assert_allclose(clone._z_block_torch(perms, "cpu"), want, rtol=1e-10)


def test_a_cluster_test_on_a_device_equals_the_numpy_one(monkeypatch, caplog):
    import eegsal.stats.permutations as permutations

    attr = _attr(2, sizes=(30,) * 6)
    lmm = fit_lmm(attr, "content * stage")
    kw = dict(n_permutations=BLOCK + 7, seed=3, threshold=1.0,
              adjacency=np.ones((3, 3)))  # fmt: skip
    numpy_ = lmm.cluster_test("content[T.other]", **kw)
    assert lmm.cluster_test("content[T.other]", device="cpu", **kw).null.tolist() == (
        numpy_.null.tolist()
    )
    # "cuda" taken as torch's CPU: the whole test through the torch blocks
    monkeypatch.setattr(permutations, "_torch_device", lambda device: "cpu")
    blocks, z_block_torch = [], permutations.InterceptNull._z_block_torch

    def spy(self, perms, device):
        blocks.append((len(perms), device))
        return z_block_torch(self, perms, device)

    monkeypatch.setattr(permutations.InterceptNull, "_z_block_torch", spy)
    torch_ = lmm.cluster_test("content[T.other]", device="cuda", n_jobs=2, **kw)
    assert sorted(blocks) == [(7, "cpu"), (BLOCK, "cpu")]
    np.testing.assert_allclose(torch_.null, numpy_.null, rtol=1e-9)
    np.testing.assert_allclose(torch_.clusters["p"], numpy_.clusters["p"])
    np.testing.assert_array_equal(torch_.stat, numpy_.stat)  # observed: NumPy
    # refitted variance ratios stay on NumPy
    maps, refit = null_maps(lmm, lmm.coef("content[T.other]"),
                            permutation_scheme(lmm, "content[T.other]"), True,
                            "cuda")  # fmt: skip
    assert refit and maps.device is None
    # so do random slopes, with a logged note
    slopes = fit_lmm(attr, "content + stage", re_formula="content")
    with caplog.at_level(logging.INFO, logger="eegsal"):
        maps, _ = null_maps(slopes, 1, permutation_scheme(slopes, "content[T.other]"),
                            None, "cuda")  # fmt: skip
    assert isinstance(maps, SlopeNull) and maps.device is None
    assert "Random slopes: the permutations run on the CPU" in caplog.text


def test_the_device_is_resolved_without_a_gpu(monkeypatch):
    import torch

    from eegsal.stats.permutations import _torch_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _torch_device(None) is None
    assert _torch_device("cpu") is None
    assert _torch_device(torch.device("cpu")) is None
    assert _torch_device("auto") is None  # no GPU: NumPy
    with pytest.raises(ValueError, match="CUDA is not available"):
        _torch_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        _torch_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _torch_device("auto") == "cuda"
    assert _torch_device(torch.device("cuda", 1)) == "cuda:1"
