"""joblib parallelism: local workers and a Dask cluster give the serial results."""

import numpy as np
import pytest
from joblib import parallel_config

from eegsal.attribution import attribute
from eegsal.decoding import decode
from eegsal.stats import fit_lmm

KW = dict(cv=2, max_epochs=2, batch_size=32, seed=0, device="cpu")


@pytest.fixture(scope="module")
def serial(_study_session):
    epochs, _ = _study_session
    result = decode(epochs, "content", **KW)
    attr = attribute(result, epochs, method="saliency", label=0)
    lmm = fit_lmm(attr, "content + stage")
    test = lmm.cluster_test("content", n_permutations=12, seed=0)
    return result, lmm, test


def _same(result, test, serial):
    ref, _, ref_test = serial
    proba = [c for c in ref.predictions if c.startswith("proba_")]
    np.testing.assert_allclose(
        result.predictions[proba], ref.predictions[proba], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(result.predictions["fold"], ref.predictions["fold"])
    # the permutations are drawn in order whatever n_jobs: the same null
    np.testing.assert_allclose(test.null, ref_test.null, rtol=1e-12)
    np.testing.assert_allclose(test.stat, ref_test.stat)


def _run(epochs, serial, n_jobs):
    result = decode(epochs, "content", n_jobs=n_jobs, **KW)
    lmm = serial[1]  # the statistics on the same maps
    return result, lmm.cluster_test("content", n_permutations=12, seed=0,
                                    n_jobs=n_jobs)  # fmt: skip


def test_local_workers_equal_the_serial_run(_study_session, serial):
    epochs, _ = _study_session
    _same(*_run(epochs, serial, 2), serial)


def test_a_dask_cluster_equals_the_serial_run(_study_session, serial):
    distributed = pytest.importorskip("distributed")
    epochs, _ = _study_session
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
        parallel_config(backend="dask"),
    ):  # fmt: skip
        result, test = _run(epochs, serial, 2)
        assert len(client.scheduler_info()["workers"]) == 2
    _same(result, test, serial)
