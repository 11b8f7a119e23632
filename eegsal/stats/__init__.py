"""Statistics on attribution maps and decoders: content versus context."""

from eegsal.stats.clusters import ClusterTest, cluster_test, two_stage_test
from eegsal.stats.confound import (
    content_verdict,
    explanation_similarity,
    subject_scores,
    within_context_scores,
)
from eegsal.stats.lmm import LMMResult, fit_lmm

__all__ = [
    "ClusterTest",
    "LMMResult",
    "cluster_test",
    "content_verdict",
    "explanation_similarity",
    "fit_lmm",
    "two_stage_test",
    "subject_scores",
    "within_context_scores",
]
