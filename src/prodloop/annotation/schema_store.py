"""Label schemas in the store: every version kept, none changed.

Saving a schema whose name is new stores version 1. Saving it again with different content stores the
next version; saving content identical to the latest version stores nothing and returns that version,
so applying the same YAML file twice is harmless.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from prodloop.annotation.schemas import LabelSchema, parse_schema_ref
from prodloop.documents import read_document_file
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.store import read_transaction, run_write
from prodloop.store.schema import label_schemas


def read_schema_file(path: str | Path) -> dict[str, Any]:
    """The document in a YAML (or JSON, which is YAML) schema file."""
    return read_document_file(path, "schema", "a label schema is a mapping with name, fields and guidelines")


def _row_schema(row: Any) -> LabelSchema:
    return LabelSchema.model_validate(row.document)


def _latest(connection: sa.Connection, project_id: int, name: str) -> Any:
    return connection.execute(
        sa.select(label_schemas)
        .where(label_schemas.c.project_id == project_id, label_schemas.c.name == name)
        .order_by(label_schemas.c.version.desc())
        .limit(1)
    ).first()


def save_schema(
    engine: sa.Engine, project_id: int, document: dict[str, Any], created_by: str | None = None
) -> tuple[LabelSchema, bool]:
    """Store ``document`` as the next version of its schema; returns ``(schema, created)``.

    The document's ``version`` may be left out (the next one is taken). When given, it must be the
    next version, or an existing version with the same content (then nothing is stored).
    """
    document = dict(document)
    asked = document.pop("version", None)
    if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int) or asked < 1):
        raise ValidationFailed(
            f"version {asked!r} is not a whole number from 1; leave out version to take the next one",
            [{"loc": "version", "message": "a whole number from 1"}],
        )
    draft = LabelSchema.from_document({**document, "version": 1})

    def write(connection: sa.Connection) -> tuple[LabelSchema, bool]:
        latest = _latest(connection, project_id, draft.name)
        if (
            latest is not None
            and latest.content_hash == draft.content_hash()
            and asked in (None, latest.version)
        ):
            return _row_schema(latest), False
        version = 1 if latest is None else latest.version + 1
        if asked is not None and asked != version:
            current = "no versions yet" if latest is None else f"the latest is {draft.name}@{latest.version}"
            raise Conflict(
                f"cannot save {draft.name}@{asked}: {current}, so a new version is {draft.name}@{version}; "
                "leave out version to take the next one",
                {"schema": draft.name, "asked": asked, "next": version},
            )
        schema = draft.model_copy(update={"version": version})
        try:
            connection.execute(
                label_schemas.insert().values(
                    project_id=project_id,
                    name=schema.name,
                    version=version,
                    document=schema.model_dump(mode="json"),
                    content_hash=schema.content_hash(),
                    created_by=created_by,
                    created_ns=time.time_ns(),
                )
            )
        except sa.exc.IntegrityError:
            raise Conflict(
                f"{schema.ref} was saved by someone else at the same moment; read it and try again"
            ) from None
        return schema, True

    return run_write(engine, write)


def schema_id(connection: sa.Connection, project_id: int, ref: str) -> tuple[int, LabelSchema]:
    """The store id and schema of ``name@version`` (or the latest version of ``name``); 404 if absent."""
    name, version = parse_schema_ref(ref)
    query = sa.select(label_schemas).where(
        label_schemas.c.project_id == project_id, label_schemas.c.name == name
    )
    if version is None:
        row = connection.execute(query.order_by(label_schemas.c.version.desc()).limit(1)).first()
    else:
        row = connection.execute(query.where(label_schemas.c.version == version)).first()
    if row is None:
        known = connection.execute(
            sa.select(sa.func.max(label_schemas.c.version)).where(
                label_schemas.c.project_id == project_id, label_schemas.c.name == name
            )
        ).scalar()
        hint = (
            f"its latest version is {name}@{known}"
            if known
            else "create it with `prodloop schema create FILE`"
        )
        raise NotFound(f"label schema {ref!r} does not exist; {hint}", {"schema": ref})
    return int(row.id), _row_schema(row)


def get_schema(engine: sa.Engine, project_id: int, ref: str) -> LabelSchema:
    """The schema ``name@version``, or the latest version of ``name``."""
    with read_transaction(engine) as connection:
        return schema_id(connection, project_id, ref)[1]


def schema_by_id(connection: sa.Connection, schema_pk: int) -> LabelSchema:
    row = connection.execute(sa.select(label_schemas).where(label_schemas.c.id == schema_pk)).one()
    return _row_schema(row)


def list_schemas(engine: sa.Engine, project_id: int) -> list[dict[str, Any]]:
    """Every schema with its latest version, number of versions and field names."""
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(label_schemas)
            .where(label_schemas.c.project_id == project_id)
            .order_by(label_schemas.c.name, label_schemas.c.version)
        ).all()
    latest: dict[str, Any] = {}
    for row in rows:
        latest[row.name] = row
    return [
        {
            "name": name,
            "latest": f"{name}@{row.version}",
            "versions": row.version,
            "fields": [spec["name"] for spec in row.document["fields"]],
            "created_ns": row.created_ns,
        }
        for name, row in latest.items()
    ]


def schema_versions(engine: sa.Engine, project_id: int, name: str) -> list[dict[str, Any]]:
    """Every version of schema ``name``: ref, content hash, who saved it and when."""
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(label_schemas)
            .where(label_schemas.c.project_id == project_id, label_schemas.c.name == name)
            .order_by(label_schemas.c.version)
        ).all()
    if not rows:
        raise NotFound(f"label schema {name!r} does not exist", {"schema": name})
    return [
        {
            "ref": f"{row.name}@{row.version}",
            "content_hash": row.content_hash,
            "created_by": row.created_by,
            "created_ns": row.created_ns,
        }
        for row in rows
    ]
