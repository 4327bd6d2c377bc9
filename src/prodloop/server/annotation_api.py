"""The annotation API under ``/api/v1``: schemas, queues, leases, labels, review, agreement."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
