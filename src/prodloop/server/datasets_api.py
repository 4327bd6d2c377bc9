"""The datasets API under ``/api/v1``: snapshots, exports, diffs, checkpoints, lineage.

Thin routes over :mod:`prodloop.datasets`. Snapshot ids may be given whole or as a unique prefix of
at least 8 hex digits.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from prodloop import datasets
from prodloop.server.auth import Permission, Principal
from prodloop.server.deps import caller, engine_of, key_label, parse_json_model, read_body

router = APIRouter(prefix="/api/v1")

#: Snapshots hold every annotator's labels: not for annotators, who work blind.
Reader = Annotated[Principal, Depends(caller(Permission.READ_LABELS))]
Admin = Annotated[Principal, Depends(caller(Permission.ADMIN))]


class SnapshotRequest(BaseModel):
    """Which queue to snapshot, under what name, aggregated how."""

    model_config = ConfigDict(extra="forbid")

    queue: Annotated[str, Field(min_length=1, description="Queue name (or id).")]
    name: Annotated[str, Field(min_length=1, max_length=200, description="The dataset's name.")]
    aggregation: Literal["majority", "dawid-skene", "adjudicated"] = "majority"


class CheckpointDataset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    snapshot_id: Annotated[str, Field(description="Snapshot id, or a unique prefix of 8+ hex digits.")]
    purpose: Literal["train", "eval"] = "train"


class CheckpointRequest(BaseModel):
    """A model checkpoint and the snapshots it was trained or evaluated on."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200, description="Unique in the project.")]
    datasets: Annotated[list[CheckpointDataset], Field(min_length=1)]
    base_model: Annotated[str | None, Field(max_length=300)] = None
    adapter: Annotated[str | None, Field(max_length=300)] = None
    metadata: dict[str, Any] | None = None


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body that the route reads itself (to bound its size and shape its errors), with
    the model's ``$defs`` inlined so that the schema stands alone in the spec."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": resolve(schema)}}}}


# --------------------------------------------------------------------------------------------------
# Snapshots


@router.post(
    "/datasets",
    summary="Snapshot a queue's final labels; the same content again returns the stored snapshot (200)",
    status_code=201,
    openapi_extra=_body_doc(SnapshotRequest),
)
async def post_dataset(request: Request, response: Response, principal: Admin) -> dict[str, Any]:
    body = parse_json_model(await read_body(request), SnapshotRequest)
    engine = engine_of(request)
    who = await run_in_threadpool(key_label, engine, principal.key_id)
    snapshot = await run_in_threadpool(
        datasets.snapshot_queue, engine, principal.project_id, body.queue, body.name, body.aggregation, who
    )
    if not snapshot["created"]:
        response.status_code = 200
    return snapshot


@router.get("/datasets", summary="Dataset snapshots, newest first")
def get_datasets(
    request: Request,
    principal: Reader,
    name: str | None = Query(None, description="Only snapshots with this name."),
    queue: str | None = Query(None, description="Only snapshots of this queue."),
) -> dict[str, Any]:
    return {"datasets": datasets.list_snapshots(engine_of(request), principal.project_id, name, queue)}


@router.get("/datasets/{snapshot}", summary="One snapshot with its whole manifest")
def get_dataset(request: Request, principal: Reader, snapshot: str) -> dict[str, Any]:
    return datasets.get_snapshot(engine_of(request), principal.project_id, snapshot)


@router.get("/datasets/{snapshot}/rows", summary="A page of a snapshot's rows, in order")
def get_dataset_rows(
    request: Request,
    principal: Reader,
    snapshot: str,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    return datasets.snapshot_rows(engine_of(request), principal.project_id, snapshot, offset, limit)


@router.get("/datasets/{snapshot}/verify", summary="Re-hash a snapshot and report what differs, if anything")
def get_dataset_verify(request: Request, principal: Reader, snapshot: str) -> dict[str, Any]:
    return datasets.verify_snapshot(engine_of(request), principal.project_id, snapshot)


@router.get(
    "/datasets/{snapshot}/export",
    summary="Download a snapshot: JSON Lines (streamed, exactly the hashed rows) or Parquet",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}, "application/vnd.apache.parquet": {}}}},
)
async def get_dataset_export(
    request: Request,
    principal: Reader,
    snapshot: str,
    format: Literal["jsonl", "parquet"] = Query("jsonl", description="jsonl or parquet."),
) -> Response:
    engine = engine_of(request)
    found = await run_in_threadpool(datasets.get_snapshot, engine, principal.project_id, snapshot)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", found["name"]).strip("-.") + f"-{found['id'][:12]}"
    headers = {"X-Prodloop-Snapshot": found["id"], "X-Prodloop-Rows-Sha256": found["manifest"]["rows_sha256"]}
    if format == "parquet":
        _, data = await run_in_threadpool(datasets.parquet_bytes, engine, principal.project_id, found["id"])
        headers["Content-Disposition"] = f'attachment; filename="{stem}.parquet"'
        return Response(data, media_type="application/vnd.apache.parquet", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{stem}.jsonl"'
    return StreamingResponse(
        datasets.jsonl_chunks(engine, found["id"]), media_type="application/x-ndjson", headers=headers
    )


@router.get("/datasets/{a}/diff/{b}", summary="Rows added, removed and relabelled from snapshot a to b")
def get_dataset_diff(request: Request, principal: Reader, a: str, b: str) -> dict[str, Any]:
    return datasets.diff_snapshots(engine_of(request), principal.project_id, a, b)


# --------------------------------------------------------------------------------------------------
# Checkpoints and lineage


@router.post(
    "/checkpoints",
    summary="Register a model checkpoint and the snapshots it was trained or evaluated on",
    status_code=201,
    openapi_extra=_body_doc(CheckpointRequest),
)
async def post_checkpoint(request: Request, principal: Admin) -> dict[str, Any]:
    body = parse_json_model(await read_body(request), CheckpointRequest)
    return await run_in_threadpool(
        datasets.register_checkpoint,
        engine_of(request),
        principal.project_id,
        body.name,
        [(entry.snapshot_id, entry.purpose) for entry in body.datasets],
        body.base_model,
        body.adapter,
        body.metadata,
    )


@router.get("/checkpoints", summary="Checkpoints, newest first, with their snapshots")
def get_checkpoints(request: Request, principal: Reader) -> dict[str, Any]:
    return {"checkpoints": datasets.list_checkpoints(engine_of(request), principal.project_id)}


@router.get(
    "/checkpoints/{name}/lineage",
    summary="A checkpoint's snapshots and the exact labels (and people) behind it",
)
def get_checkpoint_lineage(request: Request, principal: Reader, name: str) -> dict[str, Any]:
    return datasets.checkpoint_lineage(engine_of(request), principal.project_id, name)


@router.get(
    "/traces/{trace_id}/lineage",
    summary="A trace's queue items, every label version, the snapshots holding it, and their checkpoints",
)
def get_trace_lineage(request: Request, principal: Reader, trace_id: str) -> dict[str, Any]:
    return datasets.trace_lineage(engine_of(request), principal.project_id, trace_id)
