"""Statistics on attribution maps and decoders: content versus context."""

from eegsal.stats.clusters import ClusterTest, cluster_test
from eegsal.stats.lmm import LMMResult, RankDeficientError, fit_lmm
from eegsal.stats.regression import context_regression, out_of_fold_logit
from eegsal.stats.similarity import associated_context, explanation_similarity
from eegsal.stats.two_stage import two_stage_test
from eegsal.stats.verdict import (
    across_subjects,
    content_verdict,
    subject_scores,
    verdict_text,
)
from eegsal.stats.within import holm, within_context_scores

__all__ = [
    "ClusterTest",
    "LMMResult",
    "RankDeficientError",
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
