"""Testing the explanations: faithfulness, sanity, stability, localization."""

from eegsal.evaluation.correlations import (
    faithfulness_correlation,
    monotonicity_correlation,
)
from eegsal.evaluation.faithfulness import FaithfulnessCurves, curve_auc, faithfulness
from eegsal.evaluation.localization import localization
from eegsal.evaluation.sanity import (
    cascading_randomization,
    label_randomization,
    randomization_test,
)
from eegsal.evaluation.stability import stability

__all__ = [
    "FaithfulnessCurves",
    "cascading_randomization",
    "curve_auc",
    "faithfulness",
    "faithfulness_correlation",
    "label_randomization",
    "localization",
    "monotonicity_correlation",
    "randomization_test",
    "stability",
]
