"""Datasets: immutable, content-addressed snapshots of labelled items, exports, checkpoint lineage."""

from prodloop.datasets.checkpoints import PURPOSES, get_checkpoint, list_checkpoints, register_checkpoint
from prodloop.datasets.content import FORMAT_VERSION, canonical_json, rows_sha256, snapshot_id
from prodloop.datasets.diff import diff_snapshots
from prodloop.datasets.exports import (
    EXPORT_FORMATS,
    export_hf,
    export_jsonl,
    export_parquet,
    export_snapshot,
    jsonl_chunks,
    parquet_bytes,
    to_hf_dataset,
)
from prodloop.datasets.lineage import checkpoint_lineage, trace_lineage
from prodloop.datasets.snapshots import (
    AGGREGATIONS,
    get_snapshot,
    list_snapshots,
    snapshot_queue,
    snapshot_rows,
)
from prodloop.datasets.verify import verify_snapshot

__all__ = [
    "AGGREGATIONS",
    "EXPORT_FORMATS",
    "FORMAT_VERSION",
    "PURPOSES",
    "canonical_json",
    "checkpoint_lineage",
    "diff_snapshots",
    "export_hf",
    "export_jsonl",
    "export_parquet",
    "export_snapshot",
    "get_checkpoint",
    "get_snapshot",
    "jsonl_chunks",
    "list_checkpoints",
    "list_snapshots",
    "parquet_bytes",
    "register_checkpoint",
    "rows_sha256",
    "snapshot_id",
    "snapshot_queue",
    "snapshot_rows",
    "to_hf_dataset",
    "trace_lineage",
    "verify_snapshot",
]
