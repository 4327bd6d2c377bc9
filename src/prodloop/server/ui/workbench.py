"""The annotation workbench: the queue list, the annotator's page, the reviewer's adjudication page and
the queue dashboard. Each route parses its input, calls the annotation package, and renders a template.

The annotator's page leases one item at a time. Submitting a label, skipping or escalating answers
with the next item already leased, so the page needs no second round trip; htmx swaps it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from prodloop import annotation
from prodloop.annotation import quality
from prodloop.errors import Conflict, InvalidRequest, ValidationFailed
from prodloop.server.auth import Permission, Principal
from prodloop.server.deps import engine_of
from prodloop.server.ui import charts
from prodloop.server.ui.labelling import (
    LabelForm,
    answer_text,
    context_blocks,
    conversation,
    is_messages,
    label_form,
    labelled_by,
    majority_values,
    markdown,
    may,
    pairwise_outputs,
    raw_label,
    read_label,
)
from prodloop.server.ui.session import PageRoute, error_page, viewer
from prodloop.server.ui.views import _when_param, message_view, templates

router = APIRouter(include_in_schema=False, route_class=PageRoute)

NEEDS = {
    Permission.ANNOTATE: "label items (an annotator, reviewer or admin key)",
    Permission.REVIEW: "review and adjudicate (a reviewer or admin key)",
    Permission.READ_LABELS: "see label quality, which is computed from other people's labels "
    "(annotators work blind; a viewer, reviewer or admin key)",
}


def _refused(request: Request, principal: Principal, permission: Permission) -> Response | None:
    """A 403 page (the key stays signed in) when the key's role may not do ``permission``."""
    if may(principal, permission):
        return None
    return error_page(
        request,
        403,
        "Not with this key",
        f"A key with role {principal.role.value!r} may not {NEEDS[permission]}. "
        "Sign in with another key, or ask an admin for one (prodloop keys create --role ...).",
    )


def _is_htmx(request: Request) -> bool:
    return bool(request.headers.get("hx-request")) and not request.headers.get("hx-history-restore-request")


def _helpers() -> dict[str, Any]:
    return {
        "message_view": message_view,
        "is_messages": is_messages,
        "conversation": conversation,
        "pairwise_outputs": pairwise_outputs,
        "context_blocks": context_blocks,
        "answer_text": answer_text,
    }


# --- the queue list ----------------------------------------------------------------------------------


@router.get("/ui/queues")
def queues_page(request: Request) -> Response:
    principal = viewer(request)
    queues = annotation.list_queues(engine_of(request), principal.project_id)
    return templates.TemplateResponse(
        request,
        "queues.html",
        {
            "principal": principal,
            "active": "queues",
            "queues": queues,
            "can_annotate": may(principal, Permission.ANNOTATE),
            "can_review": may(principal, Permission.REVIEW),
            "can_read_labels": may(principal, Permission.READ_LABELS),
        },
    )


# --- the annotator's page ----------------------------------------------------------------------------


@dataclass
class Workbench:
    """Everything one answer of the annotator's page needs: the queue, the item leased (or none), the
    form, and a notice about what just happened."""

    principal: Principal
    queue: dict[str, Any]
    schema: annotation.LabelSchema
    annotator: annotation.Annotator
    leased: dict[str, Any] | None
    form: LabelForm | None
    notice: str | None = None
    escalate_error: str | None = None
    escalate_note: str = ""
    escalate_field: str = ""

    def context(self, request: Request) -> dict[str, Any]:
        engine = engine_of(request)
        return {
            "principal": self.principal,
            "active": "queues",
            "queue": {key: value for key, value in self.queue.items() if key != "progress"},
            "schema": self.schema,
            "annotator": self.annotator,
            "item": self.leased["item"] if self.leased else None,
            "lease": self.leased["lease"] if self.leased else None,
            "form": self.form,
            "notice": self.notice,
            "escalate_error": self.escalate_error,
            "escalate_note": self.escalate_note,
            "escalate_field": self.escalate_field,
            # Only the annotator's own count: queue-wide counters (labels still needed, items open or
            # done) change after an ordinary item's label and not after a gold item's, which would
            # tell the annotator which items are gold.
            "done_by_me": labelled_by(engine, self.queue["id"], self.annotator.id),
            "guidelines": markdown(self.schema.guidelines),
            "h": _helpers(),
        }


def _workbench(request: Request, queue: str, notice: str | None = None) -> Workbench:
    """The annotator's next item of ``queue``, leased now (or the one already held)."""
    principal = viewer(request)
    engine = engine_of(request)
    found = annotation.get_queue(engine, principal.project_id, queue)
    schema = annotation.queue_schema(engine, principal.project_id, found["id"])
    me = annotation.annotator_for_key(engine, principal.project_id, principal.key_id)
    leased = annotation.lease_next_item(engine, principal.project_id, found["id"], me.id)
    form = label_form(schema, suggestion=leased["item"]["suggestion"]) if leased else None
    return Workbench(principal, found, schema, me, leased, form, notice)


def _render(request: Request, bench: Workbench, status: int = 200) -> Response:
    name = "_annotate.html" if _is_htmx(request) else "annotate.html"
    return templates.TemplateResponse(
        request, name, bench.context(request), status_code=status, headers={"Vary": "HX-Request"}
    )


def _after_action(request: Request, queue: str, notice: str) -> Response:
    """The answer to a submit, skip or escalation: the next item (htmx) or back to the page."""
    if not _is_htmx(request):
        return RedirectResponse(f"/ui/queues/{queue}/annotate", status_code=303)
    return _render(request, _workbench(request, queue, notice))


@router.get("/ui/queues/{queue}/annotate")
def annotate_page(request: Request, queue: str) -> Response:
    principal = viewer(request)
    if refused := _refused(request, principal, Permission.ANNOTATE):
        return refused
    return _render(request, _workbench(request, queue))


def _item_id(raw: str) -> int:
    if not raw.isdigit():
        raise InvalidRequest(f"item id {raw!r} is not a number")
    return int(raw)


@router.post("/ui/queues/{queue}/items/{item}/label")
async def submit_label(request: Request, queue: str, item: str) -> Response:
    principal = viewer(request)
    if refused := _refused(request, principal, Permission.ANNOTATE):
        return refused
    item_id = _item_id(item)
    engine = engine_of(request)
    form = await request.form()
    schema = annotation.queue_schema(engine, principal.project_id, queue)
    me = annotation.annotator_for_key(engine, principal.project_id, principal.key_id)
    value: dict[str, Any] = {}
    try:
        value = read_label(schema, form)
        annotation.submit_label(engine, principal.project_id, item_id, me.id, value)
    except ValidationFailed as error:
        bench = _workbench(request, queue)
        if bench.leased and bench.leased["item"]["id"] == item_id:
            bench.form = label_form(
                schema, value or raw_label(schema, form), error, bench.leased["item"]["suggestion"]
            )
            return _render(request, bench, status=422)
        bench.notice = f"Item {item_id} was not saved: {error.message}"
        return _render(request, bench)
    except Conflict as error:
        return _after_action(request, queue, f"Item {item_id} was not saved: {error.message}")
    return _after_action(request, queue, f"Saved your label of item {item_id}.")


@router.post("/ui/queues/{queue}/items/{item}/skip")
def skip_item(request: Request, queue: str, item: str) -> Response:
    principal = viewer(request)
    if refused := _refused(request, principal, Permission.ANNOTATE):
        return refused
    item_id = _item_id(item)
    engine = engine_of(request)
    me = annotation.annotator_for_key(engine, principal.project_id, principal.key_id)
    annotation.skip_item(engine, principal.project_id, item_id, me.id, reason="skipped in the workbench")
    return _after_action(request, queue, f"Skipped item {item_id}; others will label it.")


@router.post("/ui/queues/{queue}/items/{item}/escalate")
async def escalate_item(request: Request, queue: str, item: str) -> Response:
    principal = viewer(request)
    if refused := _refused(request, principal, Permission.ANNOTATE):
        return refused
    item_id = _item_id(item)
    engine = engine_of(request)
    form = await request.form()
    note = str(form.get("note") or "").strip()
    field = str(form.get("field") or "").strip() or None
    me = annotation.annotator_for_key(engine, principal.project_id, principal.key_id)
    try:
        if not note:
            raise ValidationFailed(
                "an escalation needs a note: say what is unclear, so a reviewer can fix it"
            )
        annotation.escalate_item(engine, principal.project_id, item_id, me.id, note, field)
    except ValidationFailed as error:
        bench = _workbench(request, queue)
        bench.escalate_error, bench.escalate_note, bench.escalate_field = error.message, note, field or ""
        return _render(request, bench, status=422)
    where = f" about field {field}" if field else ""
    return _after_action(request, queue, f"Escalated item {item_id}{where} to a reviewer.")


# --- the reviewer's page -----------------------------------------------------------------------------


def _review_context(
    request: Request,
    principal: Principal,
    queue: str,
    chosen: int | None,
    notice: str | None = None,
    error: ValidationFailed | None = None,
    submitted: dict[str, Any] | None = None,
    rationale: str = "",
) -> dict[str, Any]:
    engine = engine_of(request)
    waiting = annotation.items_for_review(engine, principal.project_id, queue)
    schema = annotation.LabelSchema.model_validate(waiting["schema"])
    items = waiting["items"]
    current = next((i for i in items if i["id"] == chosen), None)
    if chosen is not None and current is None:
        # The item asked for is not among those waiting (another reviewer adjudicated it meanwhile, or it
        # is past the ones listed): show the first waiting item, and never with what was typed for the
        # other one, or submitting the form would record those values for an item they were not meant for.
        gone = (
            f"Item {chosen} is no longer waiting for adjudication here (another reviewer may have "
            "adjudicated it meanwhile)."
        )
        if submitted is not None:
            gone += " Nothing was recorded for it from your form."
        notice = f"{notice} {gone}" if notice else gone
        submitted, error, rationale = None, None, ""
        current = items[0] if items else None
    elif current is None:
        current = items[0] if items else None
    form = None
    if current is not None:
        values = (
            submitted
            if submitted is not None
            else majority_values(schema, [label["value"] for label in current["labels"]])
        )
        form = label_form(schema, values, error, disagreeing=current["disagreeing_fields"])
    return {
        "principal": principal,
        "active": "queues",
        "queue": annotation.get_queue(engine, principal.project_id, queue),
        "schema": schema,
        "waiting": items,
        "total": waiting["total"],
        "item": current,
        "form": form,
        "rationale": rationale,
        "notice": notice,
        "guidelines": markdown(schema.guidelines),
        "h": _helpers(),
    }


def _review_render(request: Request, context: dict[str, Any], status: int = 200) -> Response:
    name = "_review.html" if _is_htmx(request) else "review.html"
    return templates.TemplateResponse(
        request, name, context, status_code=status, headers={"Vary": "HX-Request"}
    )


@router.get("/ui/queues/{queue}/review")
def review_page(request: Request, queue: str, item: str = "") -> Response:
    principal = viewer(request)
    if refused := _refused(request, principal, Permission.REVIEW):
        return refused
    chosen = _item_id(item) if item else None
    return _review_render(request, _review_context(request, principal, queue, chosen))


@router.post("/ui/queues/{queue}/review/{item}")
async def adjudicate(request: Request, queue: str, item: str) -> Response:
    principal = viewer(request)
    if refused := _refused(request, principal, Permission.REVIEW):
        return refused
    item_id = _item_id(item)
    engine = engine_of(request)
    form = await request.form()
    schema = annotation.queue_schema(engine, principal.project_id, queue)
    rationale = str(form.get("rationale") or "")
    me = annotation.annotator_for_key(engine, principal.project_id, principal.key_id)
    value: dict[str, Any] = {}
    try:
        value = read_label(schema, form)
        annotation.adjudicate(engine, principal.project_id, item_id, me.id, value, rationale)
    except ValidationFailed as error:
        context = _review_context(
            request, principal, queue, item_id, None, error, value or raw_label(schema, form), rationale
        )
        # 422 (the form again, its problems marked) only when the page still shows this item; otherwise
        # the page says the item is no longer waiting and shows another one, with a fresh form.
        still_here = context["item"] is not None and context["item"]["id"] == item_id
        return _review_render(request, context, status=422 if still_here else 200)
    if not _is_htmx(request):
        return RedirectResponse(f"/ui/queues/{queue}/review", status_code=303)
    notice = f"Item {item_id} adjudicated."
    return _review_render(request, _review_context(request, principal, queue, None, notice))


# --- the dashboard -----------------------------------------------------------------------------------

BUCKETS = {"hour": 3600, "day": 86400}


@router.get("/ui/queues/{queue}")
def dashboard(
    request: Request, queue: str, bucket: str = "hour", since: str = "", until: str = ""
) -> Response:
    principal = viewer(request)
    if refused := _refused(request, principal, Permission.READ_LABELS):
        return refused
    engine = engine_of(request)
    pid = principal.project_id
    found = annotation.get_queue(engine, pid, queue)
    problems: list[str] = []
    since_at = _when_param("since", since, problems)
    until_at = _when_param("until", until, problems)
    if bucket not in BUCKETS:
        problems.append(f"bucket {bucket!r} must be hour or day")
        bucket = "hour"
    agreement = quality.queue_agreement(engine, pid, found["id"], since=since_at, until=until_at)
    flow = quality.throughput(engine, pid, found["id"], bucket_seconds=BUCKETS[bucket])
    specs = {
        "throughput": charts.throughput_spec(flow["buckets"], BUCKETS[bucket]) if flow["buckets"] else None,
        "agreement": charts.agreement_spec(agreement["fields"]),
        "per-class": charts.per_class_spec(agreement["fields"]),
    }
    context = {
        "principal": principal,
        "active": "queues",
        "queue": found,
        "progress": found["progress"],
        "agreement": agreement,
        "throughput": flow,
        "specs": specs,
        "bucket": bucket,
        "since": since,
        "until": until,
        "problems": problems,
        "annotators": quality.annotator_stats(engine, pid, found["id"])["annotators"],
        "gold": quality.gold_accuracy(engine, pid, found["id"]),
        "escalations": annotation.escalation_summary(engine, pid, found["id"])["fields"],
        "waiting": annotation.items_for_review(engine, pid, found["id"], limit=0)["total"],
        "can_annotate": may(principal, Permission.ANNOTATE),
        "can_review": may(principal, Permission.REVIEW),
        "verdict": charts.verdict,
    }
    return templates.TemplateResponse(request, "queue.html", context)
