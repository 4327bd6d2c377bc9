"""Label schemas in the store: versions, idempotent saves, references, YAML files, listings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from prodloop.annotation import get_schema, list_schemas, read_schema_file, save_schema, schema_versions
from prodloop.errors import Conflict, InvalidRequest, NotFound, ValidationFailed
from prodloop.server.auth import ensure_project
from prodloop.store.schema import label_schemas


def intent(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "support-intent",
        "guidelines": "Pick the main reason.",
        "fields": [{"name": "intent", "type": "categorical", "options": ["billing", "refund", "other"]}],
    }
    doc.update(overrides)
    return doc


def with_options(*options: str, **overrides: Any) -> dict[str, Any]:
    return intent(fields=[{"name": "intent", "type": "categorical", "options": list(options)}], **overrides)


def stored_rows(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(label_schemas)).scalar_one()


@pytest.fixture
def pid(engine: sa.Engine) -> int:
    return ensure_project(engine, "default")


def test_each_change_is_the_next_version_and_old_versions_stay(engine: sa.Engine, pid: int) -> None:
    first, created = save_schema(engine, pid, intent(), created_by="ana")
    assert (first.ref, created) == ("support-intent@1", True)
    second, created = save_schema(engine, pid, with_options("billing", "refund", "bug", "other"))
    assert (second.ref, created) == ("support-intent@2", True)
    third, created = save_schema(engine, pid, intent(guidelines="Pick the **main** reason; see examples."))
    assert (third.ref, created) == ("support-intent@3", True)

    assert get_schema(engine, pid, "support-intent").ref == "support-intent@3"
    assert get_schema(engine, pid, "support-intent@2").fields[0].options == (
        "billing",
        "refund",
        "bug",
        "other",
    )
    old = get_schema(engine, pid, "support-intent@1")
    assert old.fields[0].options == ("billing", "refund", "other")
    assert old.guidelines == "Pick the main reason."


def test_saving_identical_content_stores_nothing(engine: sa.Engine, pid: int) -> None:
    save_schema(engine, pid, intent())
    save_schema(engine, pid, with_options("billing", "other"))
    again, created = save_schema(engine, pid, with_options("billing", "other"))
    assert (again.ref, created) == ("support-intent@2", False)
    # Naming the version it already is changes nothing either: applying the same file twice is harmless.
    again, created = save_schema(engine, pid, with_options("billing", "other", version=2))
    assert (again.ref, created) == ("support-intent@2", False)
    assert stored_rows(engine) == 2
    assert [v["ref"] for v in schema_versions(engine, pid, "support-intent")] == [
        "support-intent@1",
        "support-intent@2",
    ]


def test_going_back_to_older_content_is_a_new_version(engine: sa.Engine, pid: int) -> None:
    save_schema(engine, pid, intent())
    save_schema(engine, pid, with_options("billing", "other"))
    back, created = save_schema(engine, pid, intent())
    assert (back.ref, created) == ("support-intent@3", True)
    hashes = [v["content_hash"] for v in schema_versions(engine, pid, "support-intent")]
    assert hashes[0] == hashes[2] != hashes[1]


def test_an_explicit_version_must_be_the_next_one(engine: sa.Engine, pid: int) -> None:
    with pytest.raises(Conflict) as caught:
        save_schema(engine, pid, intent(version=3))
    assert caught.value.status == 409
    assert "support-intent@1" in caught.value.message
    assert caught.value.detail == {"schema": "support-intent", "asked": 3, "next": 1}
    assert stored_rows(engine) == 0

    first, created = save_schema(engine, pid, intent(version=1))
    assert (first.ref, created) == ("support-intent@1", True)
    with pytest.raises(Conflict) as caught:
        save_schema(engine, pid, with_options("billing", "other", version=5))
    message = caught.value.message
    assert "support-intent@2" in message and "latest is support-intent@1" in message
    assert "leave out version" in message
    # Changed content under the version that exists is not an edit in place either.
    with pytest.raises(Conflict):
        save_schema(engine, pid, with_options("billing", "other", version=1))
    assert stored_rows(engine) == 1
    assert get_schema(engine, pid, "support-intent@1").fields[0].options == ("billing", "refund", "other")


def test_a_version_that_is_not_a_whole_number_is_a_422(engine: sa.Engine, pid: int) -> None:
    for bad in ("2", 0, -1, True, 1.5):
        with pytest.raises(ValidationFailed) as caught:
            save_schema(engine, pid, intent(version=bad))
        assert "version" in caught.value.message
    assert stored_rows(engine) == 0


def test_an_invalid_document_is_a_422_and_stores_nothing(engine: sa.Engine, pid: int) -> None:
    with pytest.raises(ValidationFailed) as caught:
        save_schema(engine, pid, intent(fields=[{"name": "intent", "type": "categorical"}]))
    assert "options" in caught.value.message
    assert stored_rows(engine) == 0


def test_an_unknown_reference_is_a_404_with_a_hint(engine: sa.Engine, pid: int) -> None:
    with pytest.raises(NotFound) as caught:
        get_schema(engine, pid, "support-intent")
    assert caught.value.status == 404
    assert "prodloop schema create" in caught.value.message
    assert caught.value.detail == {"schema": "support-intent"}

    save_schema(engine, pid, intent())
    save_schema(engine, pid, with_options("billing", "other"))
    with pytest.raises(NotFound) as caught:
        get_schema(engine, pid, "support-intent@7")
    assert "support-intent@7" in caught.value.message
    assert "latest version is support-intent@2" in caught.value.message
    with pytest.raises(ValidationFailed):
        get_schema(engine, pid, "support-intent@latest")


def test_schemas_belong_to_their_project(engine: sa.Engine, pid: int) -> None:
    other = ensure_project(engine, "other")
    save_schema(engine, pid, intent())
    with pytest.raises(NotFound):
        get_schema(engine, other, "support-intent")
    assert list_schemas(engine, other) == []
    # The same name in another project starts its own history.
    schema, created = save_schema(engine, other, with_options("a", "b"))
    assert (schema.ref, created) == ("support-intent@1", True)
    assert get_schema(engine, pid, "support-intent").fields[0].options == ("billing", "refund", "other")


def test_list_and_versions(engine: sa.Engine, pid: int) -> None:
    save_schema(engine, pid, intent(), created_by="ana")
    save_schema(engine, pid, with_options("billing", "other"), created_by="bo")
    save_schema(
        engine,
        pid,
        {
            "name": "answer-quality",
            "fields": [
                {"name": "correct", "type": "categorical", "options": ["yes", "no"]},
                {"name": "comment", "type": "text", "required": False},
            ],
        },
    )
    listed = list_schemas(engine, pid)
    assert [(s["name"], s["latest"], s["versions"], s["fields"]) for s in listed] == [
        ("answer-quality", "answer-quality@1", 1, ["correct", "comment"]),
        ("support-intent", "support-intent@2", 2, ["intent"]),
    ]
    versions = schema_versions(engine, pid, "support-intent")
    assert [(v["ref"], v["created_by"]) for v in versions] == [
        ("support-intent@1", "ana"),
        ("support-intent@2", "bo"),
    ]
    assert versions[0]["created_ns"] <= versions[1]["created_ns"]
    assert versions[0]["content_hash"] != versions[1]["content_hash"]
    with pytest.raises(NotFound):
        schema_versions(engine, pid, "nothing-here")


# --------------------------------------------------------------------------------------------------
# Schema files

YAML_SCHEMA = """\
name: support-intent
description: Why did the customer write in?
guidelines: |
  # Intent

  Pick the **main** reason. Refunds win over billing.
fields:
  - name: intent
    type: categorical
    options: [billing, refund, bug, other]
    help: The main reason
  - name: urgency
    type: ordinal
    options: [low, medium, high]
  - name: note
    type: text
    required: false
"""


def test_a_yaml_file_is_read_and_saved(engine: sa.Engine, pid: int, tmp_path: Path) -> None:
    path = tmp_path / "intent.yaml"
    path.write_text(YAML_SCHEMA, encoding="utf-8")
    document = read_schema_file(path)
    assert document["fields"][0]["options"] == ["billing", "refund", "bug", "other"]
    schema, created = save_schema(engine, pid, document)
    assert (schema.ref, created) == ("support-intent@1", True)
    assert schema.guidelines.startswith("# Intent\n\nPick the **main** reason.")
    assert [(f.name, f.type, f.required) for f in schema.fields] == [
        ("intent", "categorical", True),
        ("urgency", "ordinal", True),
        ("note", "text", False),
    ]
    # The same file applied again is no new version; the same content as JSON is the same schema too.
    assert save_schema(engine, pid, read_schema_file(str(path))) == (schema, False)
    as_json = tmp_path / "intent.json"
    as_json.write_text(json.dumps(document), encoding="utf-8")
    assert save_schema(engine, pid, read_schema_file(as_json)) == (schema, False)


def test_a_file_that_is_not_yaml_is_a_clear_400(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: support-intent\nfields: [\n  - name: intent\n", encoding="utf-8")
    with pytest.raises(InvalidRequest) as caught:
        read_schema_file(path)
    assert caught.value.status == 400
    assert str(path) in caught.value.message and "not valid YAML" in caught.value.message
    assert "line" in caught.value.message  # where the YAML breaks


def test_a_missing_file_is_a_400_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(InvalidRequest) as caught:
        read_schema_file(path)
    assert str(path) in caught.value.message and "cannot read" in caught.value.message


@pytest.mark.parametrize(("text", "holds"), [("- a\n- b\n", "list"), ("", "NoneType"), ("just text", "str")])
def test_a_file_that_is_not_a_mapping_is_a_422(tmp_path: Path, text: str, holds: str) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationFailed) as caught:
        read_schema_file(path)
    assert f"holds {holds}" in caught.value.message and "mapping" in caught.value.message
