"""What the workbench pages show, shaped for the templates: an item's conversation and context, the
schema as form fields (and a submitted form read back into a label), guidelines as safe HTML, and
who may do what."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.datastructures import FormData

from prodloop.annotation import FieldSpec, LabelSchema
from prodloop.errors import ValidationFailed
from prodloop.server.auth import ROLE_PERMISSIONS, Permission, Principal
from prodloop.store import read_transaction
from prodloop.store.schema import labels

#: Form inputs of a label are named ``v.FIELD``, apart from the other inputs of the form.
PREFIX = "v."
OPTION_TYPES = frozenset({"categorical", "ordinal", "pairwise", "multi_label"})
TYPE_NAMES = {
    "categorical": "pick one",
    "multi_label": "pick any",
    "ordinal": "pick one, in order",
    "numeric": "number",
    "text": "free text",
    "pairwise": "which output is better",
}
PAIRWISE_NAMES = {"A": "A is better", "B": "B is better", "tie": "Tie"}

# Raw HTML in guidelines is shown as text, never run; links that would run script are refused by
# markdown-it's link check (javascript:, vbscript:, file:, and data: other than images).
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def may(principal: Principal, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[principal.role]


def markdown(text: str | None) -> Markup:
    """Guidelines in Markdown as HTML that is safe to put in the page."""
    return Markup(_MARKDOWN.render(text or ""))  # safe: markdown-it escapes the source (html off)


# --- an item -----------------------------------------------------------------------------------------


def is_messages(value: Any) -> bool:
    """A list of chat messages (``{"role", "content"}``), shown as a conversation."""
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def conversation(item: dict[str, Any]) -> list[Any] | None:
    """The item as one chat when its input is a list of messages: the output follows as the
    assistant's message (or messages)."""
    if not is_messages(item.get("input")):
        return None
    output = item.get("output")
    if output is None:
        return list(item["input"])
    if isinstance(output, str):
        return [*item["input"], {"role": "assistant", "content": output}]
    if is_messages(output):
        return [*item["input"], *output]
    if isinstance(output, dict) and "role" in output:
        return [*item["input"], output]
    return None


def pairwise_outputs(value: Any) -> list[tuple[str, Any]] | None:
    """The two outputs of a pairwise item: ``{"A": ..., "B": ...}`` (either case) or a list of two."""
    if isinstance(value, dict):
        keys = {str(key).upper(): key for key in value}
        if set(keys) == {"A", "B"}:
            return [("A", value[keys["A"]]), ("B", value[keys["B"]])]
    if isinstance(value, list) and len(value) == 2 and not is_messages(value):
        return [("A", value[0]), ("B", value[1])]
    return None


def context_blocks(value: Any) -> list[dict[str, Any]]:
    """Retrieved context as blocks ``{"title", "text", "extra"}``: a string, a list of strings, or a
    list of documents (``text``/``content``/``page_content`` with a ``title``/``source``/``id``)."""
    if value is None or value == "" or value == []:
        return []
    items = value if isinstance(value, list) else [value]
    blocks = []
    for number, item in enumerate(items, 1):
        if isinstance(item, dict):
            text_key = next((k for k in ("text", "content", "page_content", "document") if k in item), None)
            title_key = next((k for k in ("title", "source", "id", "name") if k in item), None)
            extra = {k: v for k, v in item.items() if k not in (text_key, title_key)}
            blocks.append(
                {
                    "title": str(item[title_key]) if title_key else f"#{number}",
                    "text": item[text_key] if text_key else None,
                    "extra": extra,
                }
            )
        else:
            blocks.append({"title": f"#{number}", "text": item, "extra": {}})
    return blocks


# --- the schema as a form ----------------------------------------------------------------------------


@dataclass
class FormField:
    """One schema field as the form shows it: its spec, the value to show, its error, a suggestion."""

    spec: FieldSpec
    value: Any = None
    error: str | None = None
    suggestion: Any = None
    disagree: bool = False

    @property
    def kind(self) -> str:
        return TYPE_NAMES[self.spec.type]

    @property
    def options(self) -> list[tuple[str, str]]:
        """``(value, caption)`` of each option, in the schema's order."""
        if self.spec.type == "pairwise":
            return [(option, PAIRWISE_NAMES.get(option, option)) for option in self.spec.options]
        return [(option, option) for option in self.spec.options]

    def chosen(self, option: str) -> bool:
        if isinstance(self.value, list | tuple):
            return option in self.value
        return bool(self.value == option)

    @property
    def shown(self) -> str:
        """The value as the input shows it (numbers without a trailing ``.0``)."""
        if self.value is None:
            return ""
        if isinstance(self.value, float) and self.value.is_integer():
            return str(int(self.value))
        return str(self.value)


@dataclass
class LabelForm:
    fields: list[FormField]
    problems: list[str] = field(default_factory=list)


def label_form(
    schema: LabelSchema,
    values: dict[str, Any] | None = None,
    error: ValidationFailed | None = None,
    suggestion: dict[str, Any] | None = None,
    disagreeing: list[str] | None = None,
) -> LabelForm:
    """The schema's fields with ``values`` filled in and ``error``'s problems placed on their fields."""
    values = values or {}
    per_field, general = _problems(error)
    return LabelForm(
        fields=[
            FormField(
                spec=spec,
                value=values.get(spec.name),
                error=per_field.get(spec.name),
                suggestion=(suggestion or {}).get(spec.name),
                disagree=spec.name in (disagreeing or ()),
            )
            for spec in schema.fields
        ],
        problems=general,
    )


def _problems(error: ValidationFailed | None) -> tuple[dict[str, str], list[str]]:
    """An error's problems by field (the first for each), and those that name no field of the form."""
    if error is None:
        return {}, []
    per_field: dict[str, str] = {}
    general: list[str] = []
    detail = error.detail if isinstance(error.detail, list) else []
    for problem in detail:
        if isinstance(problem, dict) and problem.get("field") and problem.get("problem") != "unknown field":
            per_field.setdefault(str(problem["field"]), str(problem.get("message") or error.message))
    if not per_field:
        general.append(error.message)
    return per_field, general


def read_label(schema: LabelSchema, form: FormData) -> dict[str, Any]:
    """The label in a submitted form: options as chosen, numbers as numbers, blank inputs left out.
    A number that cannot be read is a 422 naming its field, like the schema's own checks."""
    value: dict[str, Any] = {}
    problems = []
    for spec in schema.fields:
        name = PREFIX + spec.name
        if spec.type == "multi_label":
            value[spec.name] = [str(choice) for choice in form.getlist(name)]
            continue
        raw = form.get(name)
        if not isinstance(raw, str) or not raw.strip():
            continue
        if spec.type == "numeric":
            try:
                number: float = int(raw) if raw.strip().lstrip("+-").isdigit() else float(raw)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                message = f"value {raw!r} of field {spec.name!r} is not a number"
                problems.append(
                    {"field": spec.name, "value": raw, "problem": "not a number", "message": message}
                )
                continue
            value[spec.name] = number
        else:
            value[spec.name] = raw
    if problems:
        raise ValidationFailed(problems[0]["message"], problems)
    return value


def raw_label(schema: LabelSchema, form: FormData) -> dict[str, Any]:
    """The form's values as they were sent, to show again when they could not be read."""
    return {
        spec.name: form.getlist(PREFIX + spec.name)
        if spec.type == "multi_label"
        else form.get(PREFIX + spec.name)
        for spec in schema.fields
    }


def majority_values(schema: LabelSchema, values: list[dict[str, Any]]) -> dict[str, Any]:
    """Each field's most common answer where one answer leads (a start for the reviewer's form)."""
    result: dict[str, Any] = {}
    for spec in schema.fields:
        answers = [v.get(spec.name) for v in values if v.get(spec.name) not in (None, "", [])]
        counted = Counter(tuple(a) if isinstance(a, list) else a for a in answers).most_common(2)
        if counted and (len(counted) == 1 or counted[0][1] > counted[1][1]):
            top = counted[0][0]
            result[spec.name] = list(top) if isinstance(top, tuple) else top
    return result


def answer_text(value: Any) -> str:
    """A label's value for one field as a table cell shows it."""
    if value is None or value == []:
        return "\N{EN DASH}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- progress ----------------------------------------------------------------------------------------


def labelled_by(engine: sa.Engine, queue_id: int, annotator_id: int) -> int:
    """How many items of the queue this annotator has labelled (first labels; corrections aside)."""
    with read_transaction(engine) as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count()).where(
                    labels.c.queue_id == queue_id,
                    labels.c.annotator_id == annotator_id,
                    labels.c.role == "annotation",
                    labels.c.supersedes_id.is_(None),
                )
            ).scalar_one()
        )
