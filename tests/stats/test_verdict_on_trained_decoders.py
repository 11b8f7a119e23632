"""The verdict on real decoders trained on the simulator's two extreme scenarios.

Robust properties, not rates: on a strong confound (no content signal at all)
the decoder reads the stage, scores well overall and at chance within stages,
and the verdict claims nothing; on a strong content signal the within-stage
score is far above chance and the verdict says the effect holds. How often a
claim is made over many simulated studies is measured in
``analyses/content_claim_calibration.py``, not here.
"""

import pytest

from eegsal.decoding import decode
from eegsal.simulate import simulate_sleep_study
from eegsal.stats import content_verdict

pytestmark = pytest.mark.slow

TRAIN = dict(model="eegnet", cv=3, max_epochs=25, patience=25, seed=0, device="cpu")


def _verdict(scenario, **kw):
    epochs, _ = simulate_sleep_study(n_subjects=6, n_epochs=60, epoch_length=2.0,
                                     scenario=scenario, seed=0, **kw)  # fmt: skip
    result = decode(epochs, "content", **TRAIN)
    verdict = content_verdict(result, "stage", n_permutations=200, seed=0)
    return result, verdict


def test_a_decoder_of_a_confounded_study_reads_the_stage_and_claims_nothing():
    result, verdict = _verdict("confound", confound=0.95)
    overall = verdict.iloc[0]["balanced_accuracy"]
    pooled = verdict[verdict["test"].str.startswith("within")].iloc[-1]
    assert overall > 0.6  # the decoder exploits the stage ...
    assert pooled["balanced_accuracy"] < 0.62  # ... and nothing within a stage
    reading = verdict.iloc[-1]["reading"]
    assert "holds" not in reading and reading.startswith("No "), reading


def test_a_decoder_of_a_content_study_holds_within_every_stage():
    result, verdict = _verdict("content", effect_size=1.0, effect_spread=0.1)
    pooled = verdict[verdict["test"].str.startswith("within")].iloc[-1]
    assert pooled["balanced_accuracy"] > 0.65 and pooled["p"] < 0.01
    assert verdict.iloc[-1]["reading"].startswith("The content effect holds")
