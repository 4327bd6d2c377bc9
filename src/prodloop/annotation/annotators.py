"""Annotators: the people and model judges who label.

Each annotator who works through the API has a key of their own, and the key is the annotator: the
first time a key leases or labels, its annotator is created under the key's name (or its prefix).
A model judge is an annotator of kind ``model``; its labels go through the same agreement and gold
measures as people's, so its calibration against humans is a number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from prodloop.errors import Conflict, ValidationFailed
from prodloop.store import dialect_insert, read_transaction, run_write
from prodloop.store.schema import annotators, api_keys

AnnotatorKind = Literal["human", "model"]
KINDS: tuple[str, ...] = ("human", "model")


@dataclass(frozen=True)
class Annotator:
    id: int
    name: str
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationFailed(f"annotator kind {kind!r} is not one of {', '.join(KINDS)}", {"kind": kind})


def annotator_for_key(engine: sa.Engine, project_id: int, key_id: int) -> Annotator:
    """The annotator that works with API key ``key_id``, created on first use."""
    with read_transaction(engine) as connection:
        row = connection.execute(sa.select(annotators).where(annotators.c.key_id == key_id)).first()
    if row is not None:
        return Annotator(row.id, row.name, row.kind)

    def create(connection: sa.Connection) -> Annotator:
        key = connection.execute(
            sa.select(api_keys.c.name, api_keys.c.prefix).where(api_keys.c.id == key_id)
        ).one()
        base = (key.name or f"key {key.prefix}")[:160]  # room for the suffixes within 200 characters
        # The key's name, unless another annotator has it: then the name with the key's prefix, then
        # with its id, which no other key has.
        for name in (base, f"{base} ({key.prefix})", f"{base} (key {key_id})"):
            insert = dialect_insert(connection, annotators).values(
                project_id=project_id, name=name, kind="human", key_id=key_id, created_ns=time.time_ns()
            )
            connection.execute(insert.on_conflict_do_nothing())
            row = connection.execute(sa.select(annotators).where(annotators.c.key_id == key_id)).first()
            if row is not None:
                return Annotator(row.id, row.name, row.kind)
        raise Conflict(f"no free annotator name for key {key.prefix}; rename the key", {"key": key.prefix})

    return run_write(engine, create)


def register_annotator(
    engine: sa.Engine, project_id: int, name: str, kind: str = "human", key_id: int | None = None
) -> Annotator:
    """Create annotator ``name`` (or return it when it exists with the same kind)."""
    _check_kind(kind)
    if not name or len(name) > 200:
        raise ValidationFailed("an annotator name needs 1 to 200 characters", {"name": name})

    def write(connection: sa.Connection) -> Annotator:
        row = connection.execute(
            sa.select(annotators).where(annotators.c.project_id == project_id, annotators.c.name == name)
        ).first()
        if row is None:
            try:
                new_id = connection.execute(
                    annotators.insert()
                    .values(
                        project_id=project_id, name=name, kind=kind, key_id=key_id, created_ns=time.time_ns()
                    )
                    .returning(annotators.c.id)
                ).scalar_one()
            except sa.exc.IntegrityError:
                raise Conflict(
                    f"annotator {name!r} was created by someone else at the same moment", {"name": name}
                ) from None
            return Annotator(int(new_id), name, kind)
        if row.kind != kind or (key_id is not None and row.key_id not in (None, key_id)):
            raise Conflict(f"annotator {name!r} already exists as a {row.kind}", {"name": name})
        if key_id is not None and row.key_id is None:
            connection.execute(annotators.update().where(annotators.c.id == row.id).values(key_id=key_id))
        return Annotator(row.id, row.name, row.kind)

    return run_write(engine, write)


def list_annotators(engine: sa.Engine, project_id: int) -> list[Annotator]:
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(annotators).where(annotators.c.project_id == project_id).order_by(annotators.c.name)
        ).all()
    return [Annotator(row.id, row.name, row.kind) for row in rows]
