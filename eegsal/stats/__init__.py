"""Statistics on attribution maps and decoders: content versus context."""

from eegsal.stats.clusters import ClusterTest, cluster_test
from eegsal.stats.confound import (
    across_subjects,
    associated_context,
    content_verdict,
    context_regression,
    explanation_similarity,
    holm,
    out_of_fold_logit,
    subject_scores,
    verdict_text,
    within_context_scores,
)
from eegsal.stats.lmm import LMMResult, fit_lmm
from eegsal.stats.two_stage import two_stage_test

__all__ = [
    "ClusterTest",
    "LMMResult",
    "across_subjects",
    "associated_context",
    "cluster_test",
    "content_verdict",
    "context_regression",
    "explanation_similarity",
    "fit_lmm",
    "holm",
    "out_of_fold_logit",
    "two_stage_test",
    "subject_scores",
    "verdict_text",
    "within_context_scores",
]
