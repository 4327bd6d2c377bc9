"""Label schemas: definitions, versions, content hashes, references, and labels checked against them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from prodloop.annotation.schemas import (
    PAIRWISE_OPTIONS,
    FieldSpec,
    LabelSchema,
    ordinal_rank,
    parse_schema_ref,
    validate_label,
)
from prodloop.errors import InvalidRequest, ValidationFailed

WHERE = "schema support-intent v3"


def document(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "support-intent",
        "version": 3,
        "description": "Why did the customer write in?",
        "guidelines": "# Intent\n\nPick the **main** reason.",
        "fields": [
            {"name": "intent", "type": "categorical", "options": ["billing", "refund", "bug", "other"]},
            {"name": "tags", "type": "multi_label", "options": ["angry", "vip", "churn"], "required": False},
            {"name": "urgency", "type": "ordinal", "options": ["low", "medium", "high"]},
            {"name": "score", "type": "numeric", "minimum": 1, "maximum": 5},
            {"name": "note", "type": "text", "max_length": 20, "required": False},
            {"name": "better", "type": "pairwise", "help": "Which reply is better?"},
        ],
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def schema() -> LabelSchema:
    return LabelSchema.from_document(document())


def good_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"intent": "refund", "urgency": "high", "score": 4, "better": "tie"}
    values.update(overrides)
    return values


def failure(schema: LabelSchema, values: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        validate_label(schema, values)
    assert caught.value.status == 422
    return caught.value


# --------------------------------------------------------------------------------------------------
# Reading definitions


def test_document_reads_into_schema(schema: LabelSchema) -> None:
    assert schema.ref == "support-intent@3"
    assert schema.field_names == ("intent", "tags", "urgency", "score", "note", "better")
    assert schema.guidelines.startswith("# Intent")
    assert schema.field("score").minimum == 1.0
    assert schema.field("intent").required is True
    assert schema.field("tags").required is False
    assert schema.field("better").options == PAIRWISE_OPTIONS == ("A", "B", "tie")
    assert schema.field("better").help == "Which reply is better?"


def test_from_json_reads_the_same_schema(schema: LabelSchema) -> None:
    assert LabelSchema.from_json(json.dumps(document())) == schema


def test_from_json_rejects_text_that_is_not_json() -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        LabelSchema.from_json("{name: ")


def test_version_defaults_to_one() -> None:
    doc = document()
    del doc["version"]
    assert LabelSchema.from_document(doc).ref == "support-intent@1"


def test_field_lookup_names_the_fields_when_missing(schema: LabelSchema) -> None:
    with pytest.raises(ValidationFailed) as caught:
        schema.field("intnet")
    assert caught.value.message == (
        f"field 'intnet' is not in {WHERE} (its fields: intent, tags, urgency, score, note, better)"
    )


def test_schema_is_immutable(schema: LabelSchema) -> None:
    with pytest.raises(Exception, match="frozen"):
        schema.guidelines = "changed"  # type: ignore[misc]
    with pytest.raises(Exception, match="frozen"):
        schema.fields[0].options = ("x",)  # type: ignore[misc]


def definition_error(**overrides: Any) -> str:
    with pytest.raises(ValidationFailed) as caught:
        LabelSchema.from_document(document(**overrides))
    assert caught.value.status == 422
    return caught.value.message


def one_field(**spec: Any) -> list[dict[str, Any]]:
    return [{"name": "f", **spec}]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            [{"name": "intent", "type": "text"}, {"name": "intent", "type": "numeric"}],
            "fields: field names must be unique, repeated: intent",
        ),
        ([], "fields: Tuple should have at least 1 item after validation, not 0"),
        (
            one_field(type="categorical"),
            "fields.0: field 'f' is categorical and needs a non-empty list of options",
        ),
        (
            one_field(type="ordinal", options=[]),
            "fields.0: field 'f' is ordinal and needs a non-empty list of options",
        ),
        (
            one_field(type="multi_label", options=["a", "b", "a"]),
            "fields.0: field 'f' is multi_label; its options must be unique, repeated: a",
        ),
        (
            one_field(type="categorical", options=["a", " "]),
            "fields.0: field 'f' is categorical; its options",
        ),
        (
            one_field(type="numeric", minimum=10, maximum=1),
            "fields.0: field 'f' is numeric; its minimum 10 is above its maximum 1",
        ),
        (one_field(type="numeric", options=["a"]), "fields.0: field 'f' is numeric and takes no options"),
        (
            one_field(type="pairwise", options=["left", "right"]),
            "fields.0: field 'f' is pairwise; its options are always A, B, tie and need not be given",
        ),
        (
            one_field(type="text", minimum=0),
            "fields.0: field 'f' is text; minimum apply only to numeric fields",
        ),
        (
            one_field(type="categorical", options=["a"], max_length=5),
            "fields.0: field 'f' is categorical; max_length apply only to text fields",
        ),
        (
            one_field(type="multi_label", options=["a", "b"], min_choices=2, max_choices=1),
            "fields.0: field 'f' is multi_label; its min_choices 2 is above its max_choices 1",
        ),
        (
            one_field(type="multi_label", options=["a", "b"], max_choices=3),
            "fields.0: field 'f' is multi_label; its max_choices 3 is more than its 2 options",
        ),
        (one_field(type="rating"), "fields.0.type: Input should be"),
        (one_field(type="text", optoins=["a"]), "fields.0.optoins: Extra inputs are not permitted"),
        ([{"name": "has space", "type": "text"}], "fields.0.name: String should match pattern"),
    ],
)
def test_definition_errors_say_what_is_wrong(fields: list[dict[str, Any]], message: str) -> None:
    assert definition_error(fields=fields).startswith(message)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Support Intent"}, "name: String should match pattern"),
        ({"version": 0}, "version: Input should be greater than or equal to 1"),
        ({"version": "3"}, "version: Input should be a valid integer"),
        ({"fields": None}, "fields: Input should be a valid tuple"),
    ],
)
def test_schema_level_errors_name_the_key(overrides: dict[str, Any], message: str) -> None:
    assert definition_error(**overrides).startswith(message)


def test_missing_fields_key_is_reported() -> None:
    doc = document()
    del doc["fields"]
    with pytest.raises(ValidationFailed, match=r"^fields: Field required"):
        LabelSchema.from_document(doc)


def test_document_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(ValidationFailed, match="is an object with name, version and fields, not list"):
        LabelSchema.from_document([1, 2])  # type: ignore[arg-type]


def test_field_spec_can_be_built_directly() -> None:
    spec = FieldSpec(name="better", type="pairwise")
    assert spec.options == ("A", "B", "tie")
    assert spec.required is True


# --------------------------------------------------------------------------------------------------
# Versions and content hashes


def test_next_version_is_a_new_schema_and_leaves_the_old_one(schema: LabelSchema) -> None:
    before = schema.model_dump()
    newer = schema.next_version(guidelines="Pick the first reason mentioned.")
    assert newer.ref == "support-intent@4"
    assert newer.guidelines == "Pick the first reason mentioned."
    assert newer.fields == schema.fields
    assert schema.model_dump() == before
    assert schema.ref == "support-intent@3"


def test_next_version_with_new_fields_validates_them(schema: LabelSchema) -> None:
    fields = [*schema.fields, {"name": "lang", "type": "categorical", "options": ["en", "de"]}]
    newer = schema.next_version(fields=fields)
    assert newer.field("lang").options == ("en", "de")
    assert newer.version == 4
    with pytest.raises(ValidationFailed, match="fields: field names must be unique, repeated: intent"):
        schema.next_version(fields=[*schema.fields, schema.fields[0]])


def test_next_version_cannot_rename_or_set_version(schema: LabelSchema) -> None:
    with pytest.raises(ValidationFailed, match="cannot change its name; create a new schema"):
        schema.next_version(name="other")
    with pytest.raises(ValidationFailed, match="cannot change its version"):
        schema.next_version(version=9)


def test_next_version_rejects_unknown_keys(schema: LabelSchema) -> None:
    with pytest.raises(ValidationFailed, match=r"^guideline: Extra inputs are not permitted"):
        schema.next_version(guideline="typo")


def test_equal_definitions_hash_the_same(schema: LabelSchema) -> None:
    # Same content, written differently: key order, int vs float bounds, defaults spelled out.
    doc = document()
    doc["fields"] = [dict(reversed(list(spec.items()))) for spec in doc["fields"]]
    doc["fields"][3]["minimum"] = 1.0
    doc["fields"][0]["required"] = True
    doc["fields"][5]["options"] = ["A", "B", "tie"]
    other = LabelSchema.from_document(dict(reversed(list(doc.items()))))
    digest = schema.content_hash()
    assert other.content_hash() == digest
    assert len(digest) == 64
    assert int(digest, 16) >= 0


def test_hash_ignores_version_so_an_empty_edit_is_detectable(schema: LabelSchema) -> None:
    assert schema.next_version().content_hash() == schema.content_hash()


@pytest.mark.parametrize(
    "changes",
    [
        {"guidelines": "Other guidelines."},
        {"description": "Other description."},
        {"fields": [{"name": "intent", "type": "categorical", "options": ["billing", "refund"]}]},
    ],
)
def test_hash_changes_when_content_changes(schema: LabelSchema, changes: dict[str, Any]) -> None:
    assert schema.next_version(**changes).content_hash() != schema.content_hash()


def test_hash_depends_on_option_order(schema: LabelSchema) -> None:
    fields = [{"name": "urgency", "type": "ordinal", "options": ["low", "medium", "high"]}]
    flipped = [{"name": "urgency", "type": "ordinal", "options": ["high", "medium", "low"]}]
    assert (
        schema.next_version(fields=fields).content_hash()
        != schema.next_version(fields=flipped).content_hash()
    )


# --------------------------------------------------------------------------------------------------
# Schema references


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("support-intent@3", ("support-intent", 3)),
        ("support-intent@12", ("support-intent", 12)),
        ("support-intent", ("support-intent", None)),
        ("tone_v2@1", ("tone_v2", 1)),
    ],
)
def test_parse_schema_ref(ref: str, parsed: tuple[str, int | None]) -> None:
    assert parse_schema_ref(ref) == parsed


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("support-intent@0", "schema reference 'support-intent@0' has version '0'; a version is a whole"),
        ("support-intent@v3", "has version 'v3'"),
        ("support-intent@", "has version ''"),
        ("support-intent@3@4", "has version '3@4'"),
        ("support-intent@-1", "has version '-1'"),
        ("@3", "schema reference '@3' needs a schema name (lowercase letters, digits, '-' and '_')"),
        ("", "schema reference '' needs a schema name"),
        ("Support Intent@3", "schema reference 'Support Intent@3' needs a schema name"),
    ],
)
def test_parse_schema_ref_rejects_bad_refs(ref: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_schema_ref(ref)
    assert caught.value.status == 422
    assert message in caught.value.message


# --------------------------------------------------------------------------------------------------
# Validating labels


def test_good_label_comes_back_normalised(schema: LabelSchema) -> None:
    values = good_values(tags=["churn", "angry", "churn"], note="slow reply")
    assert validate_label(schema, values) == {
        "intent": "refund",
        "tags": ["angry", "churn"],
        "urgency": "high",
        "score": 4.0,
        "note": "slow reply",
        "better": "tie",
    }
    assert isinstance(validate_label(schema, values)["score"], float)


def test_optional_fields_may_be_absent_or_none(schema: LabelSchema) -> None:
    assert validate_label(schema, good_values())["tags"] is None
    normalised = validate_label(schema, good_values(tags=None, note=None))
    assert normalised["tags"] is None
    assert normalised["note"] is None


def test_categorical_rejects_value_not_an_option(schema: LabelSchema) -> None:
    error = failure(schema, good_values(intent="maybe"))
    assert error.message == (
        f"label 'maybe' is not an option of field 'intent' ({WHERE} allows: billing, refund, bug, other)"
    )
    assert error.detail == [
        {
            "field": "intent",
            "value": "maybe",
            "problem": "not an option",
            "allowed": ["billing", "refund", "bug", "other"],
            "message": error.message,
        }
    ]
    assert error.to_dict()["error"]["code"] == "validation_failed"


@pytest.mark.parametrize("value", [1, ["refund"], "Refund", ""])
def test_categorical_takes_only_exact_option_strings(schema: LabelSchema, value: Any) -> None:
    error = failure(schema, good_values(intent=value))
    assert error.message == (
        f"label {value!r} is not an option of field 'intent' ({WHERE} allows: billing, refund, bug, other)"
    )


def test_ordinal_keeps_option_and_rejects_others(schema: LabelSchema) -> None:
    assert validate_label(schema, good_values(urgency="low"))["urgency"] == "low"
    error = failure(schema, good_values(urgency=2))
    assert error.message == f"label 2 is not an option of field 'urgency' ({WHERE} allows: low, medium, high)"


@pytest.mark.parametrize("value", ["A", "B", "tie"])
def test_pairwise_accepts_a_b_tie(schema: LabelSchema, value: str) -> None:
    assert validate_label(schema, good_values(better=value))["better"] == value


def test_pairwise_rejects_other_values(schema: LabelSchema) -> None:
    error = failure(schema, good_values(better="a"))
    assert error.message == f"label 'a' is not an option of field 'better' ({WHERE} allows: A, B, tie)"


def test_multi_label_orders_by_options_and_drops_repeats(schema: LabelSchema) -> None:
    assert validate_label(schema, good_values(tags=("vip", "angry", "vip")))["tags"] == ["angry", "vip"]
    assert validate_label(schema, good_values(tags=[]))["tags"] == []


def test_multi_label_rejects_an_unknown_option(schema: LabelSchema) -> None:
    error = failure(schema, good_values(tags=["angry", "happy"]))
    assert (
        error.message == f"label 'happy' is not an option of field 'tags' ({WHERE} allows: angry, vip, churn)"
    )
    assert error.detail[0]["value"] == "happy"


def test_multi_label_rejects_a_bare_string(schema: LabelSchema) -> None:
    error = failure(schema, good_values(tags="angry"))
    assert error.message == (
        f"field 'tags' takes a list of options, not 'angry' ({WHERE} allows: angry, vip, churn)"
    )


def test_multi_label_counts_choices() -> None:
    spec = {
        "name": "tags",
        "type": "multi_label",
        "options": ["a", "b", "c"],
        "min_choices": 1,
        "max_choices": 2,
    }
    schema = LabelSchema.from_document({"name": "tags", "fields": [spec]})
    assert validate_label(schema, {"tags": ["c", "a"]}) == {"tags": ["a", "c"]}
    with pytest.raises(ValidationFailed) as caught:
        validate_label(schema, {"tags": []})
    assert caught.value.message == "field 'tags' has 0 choices, []; schema tags v1 allows 1 to 2 of: a, b, c"
    with pytest.raises(
        ValidationFailed, match=r"has 3 choices, \['a', 'b', 'c'\]; schema tags v1 allows 1 to 2"
    ):
        validate_label(schema, {"tags": ["a", "b", "c"]})


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (5, 5.0), (2.5, 2.5)])
def test_numeric_accepts_numbers_within_bounds(schema: LabelSchema, value: float, expected: float) -> None:
    assert validate_label(schema, good_values(score=value))["score"] == expected


@pytest.mark.parametrize("value", [0, 5.01, -3])
def test_numeric_rejects_out_of_range(schema: LabelSchema, value: float) -> None:
    error = failure(schema, good_values(score=value))
    assert error.message == f"value {value!r} is out of range for field 'score' ({WHERE} allows: 1 to 5)"
    assert error.detail[0]["allowed"] == {"minimum": 1.0, "maximum": 5.0}


@pytest.mark.parametrize("value", ["4", True, float("nan"), float("inf"), [4]])
def test_numeric_rejects_non_numbers(schema: LabelSchema, value: Any) -> None:
    error = failure(schema, good_values(score=value))
    assert error.message == f"value {value!r} of field 'score' is not a finite number ({WHERE})"


def test_numeric_with_one_bound() -> None:
    field = {"name": "tokens", "type": "numeric", "minimum": 0}
    schema = LabelSchema.from_document({"name": "cost", "fields": [field]})
    assert validate_label(schema, {"tokens": 10**9}) == {"tokens": 1e9}
    with pytest.raises(ValidationFailed, match=r"^value -1 is out of range .* allows: at least 0\)$"):
        validate_label(schema, {"tokens": -1})


def test_text_accepts_text_up_to_max_length(schema: LabelSchema) -> None:
    assert validate_label(schema, good_values(note="x" * 20))["note"] == "x" * 20


def test_text_rejects_too_long_and_non_text(schema: LabelSchema) -> None:
    error = failure(schema, good_values(note="x" * 21))
    assert error.message == f"text of field 'note' is 21 characters long ({WHERE} allows at most 20)"
    error = failure(schema, good_values(note=42))
    assert error.message == f"value 42 of field 'note' is not text ({WHERE})"


def test_required_text_must_not_be_blank() -> None:
    schema = LabelSchema.from_document({"name": "notes", "fields": [{"name": "why", "type": "text"}]})
    assert validate_label(schema, {"why": "because"}) == {"why": "because"}
    with pytest.raises(
        ValidationFailed, match=r"^field 'why' is required by schema notes v1 and is missing$"
    ):
        validate_label(schema, {"why": "  "})


@pytest.mark.parametrize("values", [{"urgency": "high", "score": 4, "better": "A"}, good_values(intent=None)])
def test_missing_required_field_is_an_error(schema: LabelSchema, values: dict[str, Any]) -> None:
    error = failure(schema, values)
    assert error.message == f"field 'intent' is required by {WHERE} and is missing"
    assert error.detail[0]["problem"] == "missing"


def test_unknown_field_names_the_schema_fields(schema: LabelSchema) -> None:
    error = failure(schema, good_values(mood="sad"))
    assert error.message == (
        f"field 'mood' is not in {WHERE} (its fields: intent, tags, urgency, score, note, better)"
    )
    assert error.detail[0]["allowed"] == ["intent", "tags", "urgency", "score", "note", "better"]


def test_every_problem_is_listed_and_the_first_is_named(schema: LabelSchema) -> None:
    error = failure(schema, {"intnet": "refund", "urgency": "urgent", "score": 9, "better": "B"})
    assert [(p["field"], p["problem"]) for p in error.detail] == [
        ("intnet", "unknown field"),
        ("intent", "missing"),
        ("urgency", "not an option"),
        ("score", "out of range"),
    ]
    assert error.message == (
        f"field 'intnet' is not in {WHERE} (its fields: intent, tags, urgency, score, note, better)"
        " (and 3 more problems)"
    )


def test_label_that_is_not_an_object_is_rejected(schema: LabelSchema) -> None:
    with pytest.raises(ValidationFailed, match=f"a label for {WHERE} is an object of field values, not list"):
        validate_label(schema, ["refund"])  # type: ignore[arg-type]


def test_labels_are_checked_against_their_own_version(schema: LabelSchema) -> None:
    narrower = schema.next_version(
        fields=[{"name": "intent", "type": "categorical", "options": ["billing", "other"]}]
    )
    assert validate_label(schema, good_values(intent="refund"))["intent"] == "refund"
    with pytest.raises(ValidationFailed) as caught:
        validate_label(narrower, {"intent": "refund"})
    assert caught.value.message == (
        "label 'refund' is not an option of field 'intent' (schema support-intent v4 allows: billing, other)"
    )


# --------------------------------------------------------------------------------------------------
# Ordinal ranks


def test_ordinal_rank_is_the_position_among_options(schema: LabelSchema) -> None:
    assert [ordinal_rank(schema, "urgency", value) for value in ("low", "medium", "high")] == [0, 1, 2]


def test_ordinal_rank_rejects_other_fields_and_values(schema: LabelSchema) -> None:
    with pytest.raises(
        ValidationFailed, match=r"^field 'intent' of schema support-intent v3 is categorical, not"
    ):
        ordinal_rank(schema, "intent", "refund")
    with pytest.raises(ValidationFailed, match=r"^label 'urgent' is not an option of field 'urgency'"):
        ordinal_rank(schema, "urgency", "urgent")
    with pytest.raises(ValidationFailed, match=r"^field 'nope' is not in schema support-intent v3"):
        ordinal_rank(schema, "nope", "low")
