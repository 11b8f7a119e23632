"""Decoders trained for real: simulator ground truth and real motor EEG.

Chance is not 0.5 by fiat: each score is compared with a permutation
threshold (labels shuffled within subject against the fixed out-of-fold
predictions, 1,000 times), the 99th percentile of the null distribution.
"""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from eegsal.data import SENSORIMOTOR, load_eegbci
from eegsal.decoding import decode
from eegsal.simulate import simulate_sleep_study
from tests.conftest import shared_data_or_skip

pytestmark = pytest.mark.slow


def permutation_threshold(result, q=99, n_permutations=1000, seed=0):
    """q-th percentile of balanced accuracy with labels shuffled within subject."""
    pred = result.predictions
    y, y_hat = pred["y_true"].to_numpy(), pred["y_pred"].to_numpy()
    groups = pred.groupby(result.config["groups"]).indices.values()
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    for i in range(n_permutations):
        perm = y.copy()
        for idx in groups:
            perm[idx] = rng.permutation(perm[idx])
        null[i] = balanced_accuracy_score(perm, y_hat)
    return np.percentile(null, q), balanced_accuracy_score(y, y_hat)


@pytest.fixture(scope="module")
def scenario_results():
    out = {}
    for scenario in ("content", "null"):
        # a strong effect: with the default 0.6 and 8 x 48 epochs, EEGNet in 25
        # epochs stays at chance for some seeds (subjects drawn with weak effects)
        epochs, _ = simulate_sleep_study(
            n_subjects=8, n_epochs=48, scenario=scenario, effect_size=1.0, seed=3
        )
        out[scenario] = decode(
            epochs, "content", cv=4, max_epochs=25, patience=25, batch_size=32, seed=0
        )
    return out


def test_content_scenario_is_decoded_far_above_chance(scenario_results):
    threshold, score = permutation_threshold(scenario_results["content"])
    assert threshold < 0.62  # sanity of the null: chance is near 0.5
    assert score > threshold + 0.15


def test_null_scenario_is_not(scenario_results):
    # one study is one draw: its score exceeds the 99th percentile in 1 % of
    # studies by definition, so the margin keeps this a property, not a rate
    # (rates over many seeds: analyses/content_claim_calibration.py)
    threshold, score = permutation_threshold(scenario_results["null"])
    assert score < threshold + 0.05


def test_real_motor_movement_vs_rest_across_subjects():
    root = shared_data_or_skip("eegmmidb", "MNE-eegbci-data").parent
    epochs = load_eegbci(
        root, runs=(3, 7, 11), contrast="movement_rest", picks=SENSORIMOTOR, sfreq=80.0
    )
    assert len(epochs) == 720 and epochs.metadata["subject"].nunique() == 8
    result = decode(
        epochs, "content", model="shallow", cv=4, max_epochs=20, lr=6.25e-4, seed=0,
        model_params=dict(filter_length=12, pool_length=35, pool_stride=7),
    )  # fmt: skip
    threshold, score = permutation_threshold(result)
    # measured 0.66 (30 epochs); MNE's CSP+LDA reaches about 0.60 across subjects
    assert score > threshold + 0.03
    assert score > 0.58
