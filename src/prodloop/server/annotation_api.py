"""The annotation API under ``/api/v1``: schemas, queues, leases, labels, review, agreement.

Thin routes over :mod:`prodloop.annotation`: each parses its input, calls one domain function and
returns what it gives. The key is the annotator: leasing, labelling, skipping and escalating act as the
annotator behind the calling key (created on its first use), so a model judge with its own key is an
annotator like anyone else.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
import yaml
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from prodloop import annotation
from prodloop.annotation import ItemIn, QueueSettings
from prodloop.capture import TraceFilter
from prodloop.errors import Conflict, InvalidRequest, ProdloopError, ValidationFailed
from prodloop.server.auth import ROLE_PERMISSIONS, Permission, Principal, Role, create_api_key, hash_key
from prodloop.server.deps import caller, engine_of, key_label, read_body, settings_of
from prodloop.server.errors import validation_failed
from prodloop.store import read_transaction, write_transaction
from prodloop.store.schema import annotators, api_keys

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, Depends(caller(Permission.READ))]
Labeller = Annotated[Principal, Depends(caller(Permission.ANNOTATE))]
Reviewer = Annotated[Principal, Depends(caller(Permission.REVIEW))]
#: Ids in paths: positive and within what the store holds, else a 422 rather than a driver overflow.
StoreId = Annotated[int, Path(ge=1, le=2**63 - 1)]
#: Label quality is computed from other people's labels: not for annotators, who work blind.
LabelReader = Annotated[Principal, Depends(caller(Permission.READ_LABELS))]
Admin = Annotated[Principal, Depends(caller(Permission.ADMIN))]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


# --------------------------------------------------------------------------------------------------
# Request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemBatch(_Body):
    """Items to add to a queue, each as a JSONL row would give it."""

    items: Annotated[list[ItemIn], Field(min_length=1)]


class SchemaChange(_Body):
    """The schema version a queue moves to."""

    schema_ref: Annotated[str, Field(alias="schema", description="Another version: `name@version`.")]


class ItemsFromTraces(_Body):
    """Which traces become items: the trace filters, then all of them or a sample of ``n``."""

    feature: str | None = None
    since: datetime | None = Field(None, description="Traces that started at or after this time.")
    until: datetime | None = Field(None, description="Traces that started before this time.")
    release: str | None = None
    model: str | None = None
    signal: str | None = Field(None, description="Only traces with a signal of this name.")
    has_signal: bool | None = None
    status: Literal["ok", "error"] | None = None
    n: Annotated[int | None, Field(ge=1, description="Sample size; all matching traces if absent.")] = None
    sample: Literal["newest", "random", "stratified"] = "newest"
    stratify_by: Literal["feature", "release", "model"] = "feature"
    seed: int = 0
    priority: Annotated[int, Field(ge=-(2**31), le=2**31 - 1)] = 0


class LabelIn(_Body):
    value: dict[str, Any] = Field(description="One value per schema field.")


class SkipIn(_Body):
    reason: Annotated[str | None, Field(max_length=2000)] = None


class EscalationIn(_Body):
    note: Annotated[str, Field(min_length=1, max_length=5000, description="What is unclear.")]
    field: str | None = Field(None, description="The schema field the note is about.")


class CorrectionIn(_Body):
    value: dict[str, Any]
    reason: Annotated[str, Field(min_length=1, max_length=5000, description="Why the label changes.")]


class AdjudicationIn(_Body):
    value: dict[str, Any]
    rationale: Annotated[str, Field(min_length=1, max_length=5000, description="Why this is final.")]


class AnnotatorIn(_Body):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Literal["human", "model"] = "human"


# --------------------------------------------------------------------------------------------------
# Plumbing


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` inlined, so that it stands alone in the spec."""
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

    return resolve(schema)  # type: ignore[no-any-return]


def _body_doc(model: type[BaseModel], *, yaml_too: bool = False, required: bool = True) -> dict[str, Any]:
    """OpenAPI for a body that the route reads itself (to bound its size and shape its errors)."""
    schema = _inline_schema(model)
    content = {"application/json": {"schema": schema}}
    if yaml_too:
        content["application/yaml"] = {"schema": schema}
    return {"requestBody": {"required": required, "content": content}}


_SCHEMA_DOCUMENT = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "object", "description": "A label schema: name, fields, guidelines."}}
            for media in ("application/json", "application/yaml")
        },
    }
}


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking domain function off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


def _non_finite(document: Any, where: str = "") -> str | None:
    """Where in ``document`` a NaN or infinity is (a JSON path), or None."""
    if isinstance(document, float) and not math.isfinite(document):
        return where or "body"
    if isinstance(document, dict):
        items: Any = document.items()
    elif isinstance(document, list):
        items = enumerate(document)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _parse_document(body: bytes) -> Any:
    if not body.strip():
        raise InvalidRequest("the request needs a JSON body")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc


def _validate(document: Any, model: type[M]) -> M:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_failed(exc) from exc


async def _read(request: Request, model: type[M], *, optional: bool = False) -> M:
    """The body as ``model``: 413 when too large, 400 when not JSON, 422 naming what is wrong. With
    ``optional``, an empty body is ``{}``."""
    body = await read_body(request)
    if optional and not body.strip():
        return _validate({}, model)
    return _validate(_parse_document(body), model)


def _check_batch(request: Request, size: int) -> None:
    limit = settings_of(request).max_batch_items
    if size > limit:
        raise ValidationFailed(
            f"batch of {size} items is larger than the limit of {limit} (PRODLOOP_MAX_BATCH_ITEMS); split it",
            {"limit": limit, "size": size},
        )


def _annotator_id(request: Request, principal: Principal) -> int:
    """The annotator behind the calling key (created on its first use). A key's annotator never
    changes, so the answer is kept for the life of the app: it saves a query on every lease and label."""
    cache: dict[tuple[int, int], int] | None = getattr(request.app.state, "annotator_of_key", None)
    if cache is None:
        cache = request.app.state.annotator_of_key = {}
    found = cache.get((principal.project_id, principal.key_id))
    if found is None:
        found = annotation.annotator_for_key(engine_of(request), principal.project_id, principal.key_id).id
        if len(cache) > 100_000:
            cache.clear()
        cache[principal.project_id, principal.key_id] = found
    return found


# --------------------------------------------------------------------------------------------------
# Schemas


def _schema_document(body: bytes, content_type: str) -> Any:
    if content_type.split(";")[0].strip().lower() in _YAML_TYPES:
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise InvalidRequest(f"body is not valid YAML: {exc}") from None
    return _parse_document(body)


@router.post(
    "/schemas",
    summary="Save a label schema (JSON or YAML); a changed schema becomes its next version",
    status_code=201,
    openapi_extra=_SCHEMA_DOCUMENT,
)
async def post_schema(request: Request, response: Response, principal: Admin) -> dict[str, Any]:
    document = _schema_document(await read_body(request), request.headers.get("content-type", ""))
    if not isinstance(document, dict):
        raise ValidationFailed(
            f"a label schema is an object with name, fields and guidelines, not {type(document).__name__}"
        )
    engine = engine_of(request)
    who = await run_in_threadpool(key_label, engine, principal.key_id)
    schema, created = await _call(annotation.save_schema, engine, principal.project_id, document, who)
    if not created:
        response.status_code = 200
    return {"schema": schema.model_dump(mode="json"), "created": created}


@router.get("/schemas", summary="Label schemas with their latest versions")
def get_schemas(request: Request, principal: Reader) -> dict[str, Any]:
    return {"schemas": annotation.list_schemas(engine_of(request), principal.project_id)}


@router.get("/schemas/{ref}", summary="One schema version: `name@version`, or `name` for the latest")
def get_schema(request: Request, principal: Reader, ref: str) -> dict[str, Any]:
    schema = annotation.get_schema(engine_of(request), principal.project_id, ref)
    return schema.model_dump(mode="json")


@router.get("/schemas/{name}/versions", summary="Every version of a schema")
def get_schema_versions(request: Request, principal: Reader, name: str) -> dict[str, Any]:
    return {"versions": annotation.schema_versions(engine_of(request), principal.project_id, name)}


# --------------------------------------------------------------------------------------------------
# Queues and items


@router.post(
    "/queues", summary="Create an annotation queue", status_code=201, openapi_extra=_body_doc(QueueSettings)
)
async def post_queue(request: Request, principal: Admin) -> dict[str, Any]:
    settings = await _read(request, QueueSettings)
    return await _call(annotation.create_queue, engine_of(request), principal.project_id, settings)


@router.put(
    "/queues/{queue}/schema",
    summary="Move a queue to another version of its schema; labels given keep theirs",
    openapi_extra=_body_doc(SchemaChange),
)
async def put_queue_schema(request: Request, principal: Admin, queue: str) -> dict[str, Any]:
    body = await _read(request, SchemaChange)
    return await _call(
        annotation.change_queue_schema, engine_of(request), principal.project_id, queue, body.schema_ref
    )


@router.get("/queues", summary="Every queue with its progress")
def get_queues(request: Request, principal: Reader) -> dict[str, Any]:
    queues = annotation.list_queues(engine_of(request), principal.project_id)
    return {"queues": [_blind(principal, queue) for queue in queues]}


@router.get("/queues/{queue}", summary="A queue (by name or id): its settings and progress")
def get_queue(request: Request, principal: Reader, queue: str) -> dict[str, Any]:
    return _blind(principal, annotation.get_queue(engine_of(request), principal.project_id, queue))


def _blind(principal: Principal, queue: dict[str, Any]) -> dict[str, Any]:
    """A queue as an annotator may see it: progress moves when items complete, which would tell an
    annotator working alone which of its items were gold, so blind callers get none."""
    if Permission.READ_LABELS in ROLE_PERMISSIONS[principal.role]:
        return queue
    return {**queue, "progress": None}


@router.post(
    "/queues/{queue}/items",
    summary="Add items to a queue; an item already in it is skipped",
    openapi_extra=_body_doc(ItemBatch),
)
async def post_items(request: Request, principal: Admin, queue: str) -> dict[str, int]:
    document = _parse_document(await read_body(request))
    if isinstance(document, dict) and isinstance(document.get("items"), list):
        _check_batch(request, len(document["items"]))
    where = _non_finite(document)
    if where is not None:
        raise ValidationFailed(
            f"{where}: NaN and infinities are not JSON numbers; send null or a string",
            [{"loc": where, "message": "not a finite number"}],
        )
    batch = _validate(document, ItemBatch)
    return await _call(annotation.add_items, engine_of(request), principal.project_id, queue, batch.items)


@router.post(
    "/queues/{queue}/items/from-traces",
    summary="Add traces (filtered, all or a sample of n) as items of a queue",
    openapi_extra=_body_doc(ItemsFromTraces),
)
async def post_items_from_traces(request: Request, principal: Admin, queue: str) -> dict[str, int]:
    body = await _read(request, ItemsFromTraces)
    if body.n is not None:
        _check_batch(request, body.n)
    filters = TraceFilter(
        feature=body.feature,
        since=body.since,
        until=body.until,
        release=body.release,
        model=body.model,
        signal=body.signal,
        has_signal=body.has_signal,
        status=body.status,
    )
    return await _call(
        annotation.add_items_from_traces,
        engine_of(request),
        principal.project_id,
        queue,
        filters,
        n=body.n,
        sample=body.sample,
        stratify_by=body.stratify_by,
        seed=body.seed,
        priority=body.priority,
    )


# --------------------------------------------------------------------------------------------------
# The annotator's loop: lease, label, skip, release, escalate


def _lease(engine: sa.Engine, project_id: int, queue: str, annotator_id: int) -> dict[str, Any] | None:
    return annotation.lease_next_item(engine, project_id, queue, annotator_id)


@router.post(
    "/queues/{queue}/lease",
    summary="Lease the caller's next item (204 when nothing is left for it)",
    responses={204: {"description": "Nothing left in the queue for this annotator."}},
)
def post_lease(request: Request, principal: Labeller, queue: str) -> Any:
    engine = engine_of(request)
    leased = _lease(engine, principal.project_id, queue, _annotator_id(request, principal))
    if leased is None:
        return Response(status_code=204)
    return leased


@router.post(
    "/items/{item_id}/labels",
    summary="Submit the caller's label of an item it has leased",
    status_code=201,
    openapi_extra=_body_doc(LabelIn),
)
async def post_label(request: Request, principal: Labeller, item_id: StoreId) -> dict[str, Any]:
    body = await _read(request, LabelIn)
    who = await run_in_threadpool(_annotator_id, request, principal)
    result = await _call(
        annotation.submit_label, engine_of(request), principal.project_id, item_id, who, body.value
    )
    if principal.role == Role.ANNOTATOR:
        # Blind: whether the item is now done, in review or still open would tell an annotator
        # what the others answered, or that the item was gold.
        result.pop("item_status", None)
    return result


@router.post(
    "/items/{item_id}/skip",
    summary="Give an item back and never be offered it again",
    openapi_extra=_body_doc(SkipIn, required=False),
)
async def post_skip(request: Request, principal: Labeller, item_id: StoreId) -> dict[str, Any]:
    body = await _read(request, SkipIn, optional=True)
    who = await run_in_threadpool(_annotator_id, request, principal)
    return await _call(
        annotation.skip_item, engine_of(request), principal.project_id, item_id, who, body.reason
    )


@router.post("/items/{item_id}/release", summary="Give a leased item back unlabelled")
def post_release(request: Request, principal: Labeller, item_id: StoreId) -> dict[str, Any]:
    who = _annotator_id(request, principal)
    return annotation.release_item(engine_of(request), principal.project_id, item_id, who)


@router.post(
    "/items/{item_id}/escalate",
    summary="Flag an item for a reviewer, with a note (about one field, or the whole item)",
    status_code=201,
    openapi_extra=_body_doc(EscalationIn),
)
async def post_escalation(request: Request, principal: Labeller, item_id: StoreId) -> dict[str, Any]:
    body = await _read(request, EscalationIn)
    who = await run_in_threadpool(_annotator_id, request, principal)
    return await _call(
        annotation.escalate_item,
        engine_of(request),
        principal.project_id,
        item_id,
        who,
        body.note,
        body.field,
    )


@router.post(
    "/labels/{label_id}/corrections",
    summary="Correct a label: a new version that supersedes it (others' labels need the review role)",
    status_code=201,
    openapi_extra=_body_doc(CorrectionIn),
)
async def post_correction(request: Request, principal: Labeller, label_id: StoreId) -> dict[str, Any]:
    body = await _read(request, CorrectionIn)
    who = await run_in_threadpool(_annotator_id, request, principal)
    author = annotation.Author(who, reviewer=Permission.REVIEW in ROLE_PERMISSIONS[principal.role])
    return await _call(
        annotation.correct_label,
        engine_of(request),
        principal.project_id,
        label_id,
        author,
        body.value,
        body.reason,
    )


@router.get(
    "/items/{item_id}/history",
    summary="Every label version of an item with who, when and why (an annotator sees only their own)",
)
def get_history(request: Request, principal: Reader, item_id: StoreId) -> dict[str, Any]:
    blind = _annotator_id(request, principal) if principal.role == Role.ANNOTATOR else None
    return annotation.item_history(engine_of(request), principal.project_id, item_id, only_annotator=blind)


# --------------------------------------------------------------------------------------------------
# Review


@router.get("/queues/{queue}/review", summary="Items waiting for a reviewer, with every label side by side")
def get_review(
    request: Request, principal: Reviewer, queue: str, limit: int = Query(50, ge=1, le=500)
) -> dict[str, Any]:
    return annotation.items_for_review(engine_of(request), principal.project_id, queue, limit=limit)


@router.post(
    "/items/{item_id}/adjudication",
    summary="Record a reviewer's final value for an item, with the rationale",
    status_code=201,
    openapi_extra=_body_doc(AdjudicationIn),
)
async def post_adjudication(request: Request, principal: Reviewer, item_id: StoreId) -> dict[str, Any]:
    body = await _read(request, AdjudicationIn)
    who = await run_in_threadpool(_annotator_id, request, principal)
    return await _call(
        annotation.adjudicate,
        engine_of(request),
        principal.project_id,
        item_id,
        who,
        body.value,
        body.rationale,
    )


@router.get("/queues/{queue}/escalations", summary="Escalation notes collected per schema field")
def get_escalations(request: Request, principal: Reviewer, queue: str) -> dict[str, Any]:
    return annotation.escalation_summary(engine_of(request), principal.project_id, queue)


# --------------------------------------------------------------------------------------------------
# Label quality


@router.get("/queues/{queue}/agreement", summary="Agreement per field and per class, with 95% intervals")
def get_agreement(
    request: Request,
    principal: LabelReader,
    queue: str,
    since: datetime | None = Query(None, description="Labels given at or after this time."),
    until: datetime | None = Query(None, description="Labels given before this time."),
    schema: str | None = Query(None, description="Only labels given under this `name@version`."),
    n_resamples: int = Query(1000, ge=0, le=10_000, description="Bootstrap resamples for the intervals."),
) -> dict[str, Any]:
    return annotation.queue_agreement(
        engine_of(request),
        principal.project_id,
        queue,
        since=since,
        until=until,
        schema=schema,
        n_resamples=n_resamples,
    )


@router.get("/queues/{queue}/agreement/by-version", summary="Agreement per schema version of the queue")
def get_agreement_by_version(
    request: Request,
    principal: LabelReader,
    queue: str,
    n_resamples: int = Query(1000, ge=0, le=10_000, description="Bootstrap resamples for the intervals."),
) -> dict[str, Any]:
    return annotation.agreement_by_schema_version(
        engine_of(request), principal.project_id, queue, n_resamples=n_resamples
    )


@router.get(
    "/queues/{queue}/gold", summary="Each annotator's accuracy on gold items, flagged below a threshold"
)
def get_gold(
    request: Request,
    principal: LabelReader,
    queue: str,
    threshold: float = Query(
        0.8, gt=0.0, le=1.0, description="Accuracy below which an annotator is flagged."
    ),
) -> dict[str, Any]:
    return annotation.gold_accuracy(engine_of(request), principal.project_id, queue, threshold=threshold)


@router.get("/queues/{queue}/aggregate", summary="Aggregated labels per item, and each annotator's confusion")
def get_aggregate(
    request: Request,
    principal: LabelReader,
    queue: str,
    method: Literal["majority", "dawid-skene"] = "majority",
) -> dict[str, Any]:
    return annotation.aggregate_queue(engine_of(request), principal.project_id, queue, method=method)


@router.get("/queues/{queue}/annotators", summary="Per annotator: labels, median time, skips, escalations")
def get_annotator_stats(request: Request, principal: LabelReader, queue: str) -> dict[str, Any]:
    return annotation.annotator_stats(engine_of(request), principal.project_id, queue)


@router.get("/queues/{queue}/throughput", summary="Labels given per time bucket")
def get_throughput(
    request: Request,
    principal: Reader,
    queue: str,
    bucket_seconds: int = Query(3600, ge=60, le=30 * 86400),
) -> dict[str, Any]:
    return annotation.throughput(
        engine_of(request), principal.project_id, queue, bucket_seconds=bucket_seconds
    )


# --------------------------------------------------------------------------------------------------
# Annotators


@router.get("/annotators", summary="The project's annotators: people and model judges")
def get_annotators(request: Request, principal: Reader) -> dict[str, Any]:
    found = annotation.list_annotators(engine_of(request), principal.project_id)
    return {"annotators": [annotator.to_dict() for annotator in found]}


def _annotator_with_key(engine: sa.Engine, principal: Principal, name: str, kind: str) -> dict[str, Any]:
    """A new annotator key (role annotator, named after the annotator) and the annotator bound to it;
    409, and no key made, when the name is taken by an annotator of another kind or with a key."""
    with read_transaction(engine) as connection:
        taken = connection.execute(
            sa.select(annotators.c.kind, annotators.c.key_id).where(
                annotators.c.project_id == principal.project_id, annotators.c.name == name
            )
        ).first()
    if taken is not None and (taken.kind != kind or taken.key_id is not None):
        raise Conflict(
            f"annotator {name!r} already exists"
            + (" with a key of its own" if taken.key_id is not None else f" as a {taken.kind}")
            + "; choose another name",
            {"name": name},
        )
    key = create_api_key(engine, principal.project, Role.ANNOTATOR, name=name)
    with read_transaction(engine) as connection:
        key_id = connection.execute(
            sa.select(api_keys.c.id).where(api_keys.c.key_hash == hash_key(key))
        ).scalar_one()
    try:
        found = annotation.register_annotator(engine, principal.project_id, name, kind, key_id=key_id)
    except ProdloopError:
        # Someone took the name in between: the key must not outlive the failed request.
        with write_transaction(engine) as connection:
            connection.execute(
                api_keys.update().where(api_keys.c.id == key_id).values(revoked_ns=time.time_ns())
            )
        raise
    return {"annotator": found.to_dict(), "key": key}


@router.post(
    "/annotators",
    summary="Register an annotator with a key of its own (shown once): how a model judge gets an identity",
    status_code=201,
    openapi_extra=_body_doc(AnnotatorIn),
)
async def post_annotator(request: Request, principal: Admin) -> dict[str, Any]:
    body = await _read(request, AnnotatorIn)
    return await _call(_annotator_with_key, engine_of(request), principal, body.name, body.kind)
