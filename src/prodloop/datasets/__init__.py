"""Datasets: immutable, content-addressed snapshots of labelled items, exports, checkpoint lineage."""

__all__: list[str] = []
