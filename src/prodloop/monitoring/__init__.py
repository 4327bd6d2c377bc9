"""Decay and drift monitoring: drift tests with Evidently's defaults, outcome monitors, descriptors,
text and embedding drift, eval coverage, flywheel health, and alerts that route slices to annotation."""

from prodloop.monitoring.alerts import acknowledge_alert, get_alert, list_alerts, resolve_alert
from prodloop.monitoring.changepoints import CusumResult, WindowTest, cusum, window_test
from prodloop.monitoring.checks import (
    CheckContext,
    CheckResult,
    MonitorCheck,
    check_names,
    get_check,
    register_check,
)
from prodloop.monitoring.coverage import coverage_findings, eval_coverage, send_cluster_to_queue
from prodloop.monitoring.coverage_clusters import CoverageReport, UncoveredCluster, coverage_gap
from prodloop.monitoring.coverage_distances import default_radius
from prodloop.monitoring.definitions import MonitorDefinition, parse_definition, read_definition_file
from prodloop.monitoring.descriptors import (
    TraceDescriptors,
    descriptor_drift,
    detect_language,
    is_refusal,
    json_validity,
    trace_descriptors,
)
from prodloop.monitoring.drift import ColumnDrift, DriftReport, column_drift, dataset_drift
from prodloop.monitoring.embedding_drift import EmbeddingCluster, EmbeddingDriftResult, embedding_drift
from prodloop.monitoring.files import file_drift, read_table
from prodloop.monitoring.findings import Finding
from prodloop.monitoring.flywheel import StallRule, flywheel_health
from prodloop.monitoring.health import feature_health
from prodloop.monitoring.learned import LearnedThreshold, chunk_drift, learn_threshold
from prodloop.monitoring.learning_curve import fit_learning_curve
from prodloop.monitoring.monitors import get_monitor, list_monitors, save_monitor, set_monitor_enabled
from prodloop.monitoring.outcome_metrics import OutcomeCheck, outcome_metric
from prodloop.monitoring.outcome_queries import outcome_series
from prodloop.monitoring.outcomes import OutcomeResult, evaluate_outcome
from prodloop.monitoring.pricing import price_for
from prodloop.monitoring.report_html import drift_report_html
from prodloop.monitoring.routing import route_alert, slice_traces
from prodloop.monitoring.runs import get_run, list_runs, run_monitor
from prodloop.monitoring.selection import default_stattest, infer_column_type
from prodloop.monitoring.stattests import (
    DriftTestResult,
    StatTest,
    get_stattest,
    register_stattest,
    stattest_names,
)
from prodloop.monitoring.terms import distinguishing_terms
from prodloop.monitoring.text import text_content_drift, text_drift_explanation

__all__ = [
    "CheckContext",
    "CheckResult",
    "ColumnDrift",
    "CoverageReport",
    "CusumResult",
    "DriftReport",
    "DriftTestResult",
    "EmbeddingCluster",
    "EmbeddingDriftResult",
    "Finding",
    "LearnedThreshold",
    "MonitorCheck",
    "MonitorDefinition",
    "OutcomeCheck",
    "OutcomeResult",
    "StallRule",
    "StatTest",
    "TraceDescriptors",
    "UncoveredCluster",
    "WindowTest",
    "acknowledge_alert",
    "check_names",
    "chunk_drift",
    "column_drift",
    "coverage_findings",
    "coverage_gap",
    "cusum",
    "dataset_drift",
    "default_radius",
    "default_stattest",
    "descriptor_drift",
    "detect_language",
    "distinguishing_terms",
    "drift_report_html",
    "embedding_drift",
    "eval_coverage",
    "evaluate_outcome",
    "feature_health",
    "file_drift",
    "fit_learning_curve",
    "flywheel_health",
    "get_alert",
    "get_check",
    "get_monitor",
    "get_run",
    "get_stattest",
    "infer_column_type",
    "is_refusal",
    "json_validity",
    "learn_threshold",
    "list_alerts",
    "list_monitors",
    "list_runs",
    "outcome_metric",
    "outcome_series",
    "parse_definition",
    "price_for",
    "read_definition_file",
    "read_table",
    "register_check",
    "register_stattest",
    "resolve_alert",
    "route_alert",
    "run_monitor",
    "save_monitor",
    "send_cluster_to_queue",
    "set_monitor_enabled",
    "slice_traces",
    "stattest_names",
    "text_content_drift",
    "text_drift_explanation",
    "trace_descriptors",
    "window_test",
]
