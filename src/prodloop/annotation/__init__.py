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
from prodloop.annotation.schemas import (
    FieldSpec,
    FieldType,
    LabelSchema,
    ordinal_rank,
    parse_schema_ref,
    validate_label,
)

__all__ = [
    "AgreementReport",
    "DawidSkeneResult",
    "FieldSpec",
    "FieldType",
    "LabelSchema",
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
    "ordinal_rank",
    "pairwise_cohen_kappa",
    "parse_schema_ref",
    "per_class_agreement",
    "percent_agreement",
    "reliability_matrix",
    "validate_label",
]
