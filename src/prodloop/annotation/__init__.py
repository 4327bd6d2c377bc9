"""Annotation: label schemas, queues, gold items, label history, agreement, aggregation."""

from prodloop.annotation.aggregation import DawidSkeneResult, MajorityResult, dawid_skene, majority_vote
from prodloop.annotation.agreement import (
    AgreementReport,
    Level,
    Weights,
    agreement_report,
    bootstrap_ci,
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_from_ratings,
    fleiss_table,
    krippendorff_alpha,
    pairwise_cohen_kappa,
    per_class_agreement,
    percent_agreement,
    reliability_matrix,
)

__all__ = [
    "AgreementReport",
    "DawidSkeneResult",
    "Level",
    "MajorityResult",
    "Weights",
    "agreement_report",
    "bootstrap_ci",
    "cohen_kappa",
    "dawid_skene",
    "fleiss_kappa",
    "fleiss_kappa_from_ratings",
    "fleiss_table",
    "krippendorff_alpha",
    "majority_vote",
    "pairwise_cohen_kappa",
    "per_class_agreement",
    "percent_agreement",
    "reliability_matrix",
]
