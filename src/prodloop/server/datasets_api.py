"""The datasets API under ``/api/v1``: snapshots, exports, diffs, checkpoints, lineage."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
