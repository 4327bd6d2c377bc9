"""Decay and drift monitoring: drift tests, outcome monitors, alerts that route slices to annotation."""

from prodloop.monitoring.alerts import acknowledge_alert, get_alert, list_alerts, resolve_alert
from prodloop.monitoring.checks import (
    CheckContext,
    CheckResult,
    MonitorCheck,
    check_names,
    get_check,
    register_check,
)
from prodloop.monitoring.definitions import MonitorDefinition, parse_definition, read_definition_file
from prodloop.monitoring.findings import Finding
from prodloop.monitoring.monitors import get_monitor, list_monitors, save_monitor, set_monitor_enabled
from prodloop.monitoring.routing import route_alert, slice_traces
from prodloop.monitoring.runs import get_run, list_runs, run_monitor

__all__ = [
    "CheckContext",
    "CheckResult",
    "Finding",
    "MonitorCheck",
    "MonitorDefinition",
    "acknowledge_alert",
    "check_names",
    "get_alert",
    "get_check",
    "get_monitor",
    "get_run",
    "list_alerts",
    "list_monitors",
    "list_runs",
    "parse_definition",
    "read_definition_file",
    "register_check",
    "resolve_alert",
    "route_alert",
    "run_monitor",
    "save_monitor",
    "set_monitor_enabled",
    "slice_traces",
]
