"""Decay and drift monitoring: drift tests, outcome monitors, alerts that route slices to annotation."""
