"""Model checkpoints and the snapshots they were trained or evaluated on."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import sqlalchemy as sa

from prodloop.capture.queries import iso
from prodloop.datasets.content import canonical_json
from prodloop.datasets.snapshots import resolve_snapshot
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.store import read_transaction, run_write
from prodloop.store.schema import checkpoint_datasets, checkpoints, dataset_snapshots

Purpose = Literal["train", "eval"]
PURPOSES: tuple[str, ...] = ("train", "eval")


def _checkpoint_row(connection: sa.Connection, project_id: int, name: str) -> Any:
    row = connection.execute(
        sa.select(checkpoints).where(checkpoints.c.project_id == project_id, checkpoints.c.name == name)
    ).first()
    if row is None:
        raise NotFound(
            f"checkpoint {name!r} does not exist; `prodloop checkpoint ls` lists them", {"checkpoint": name}
        )
    return row


def _datasets_of(connection: sa.Connection, checkpoint_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    rows = connection.execute(
        sa.select(
            checkpoint_datasets.c.checkpoint_id,
            checkpoint_datasets.c.purpose,
            dataset_snapshots.c.id,
            dataset_snapshots.c.name,
            dataset_snapshots.c.manifest,
            dataset_snapshots.c.row_count,
        )
        .join(dataset_snapshots, dataset_snapshots.c.id == checkpoint_datasets.c.snapshot_id)
        .where(checkpoint_datasets.c.checkpoint_id.in_(checkpoint_ids))
        .order_by(checkpoint_datasets.c.purpose.desc(), dataset_snapshots.c.name, dataset_snapshots.c.id)
    ).all()
    found: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row.checkpoint_id, []).append(
            {
                "snapshot_id": row.id,
                "name": row.name,
                "queue": row.manifest.get("queue"),
                "aggregation": row.manifest.get("aggregation"),
                "rows": row.row_count,
                "purpose": row.purpose,
            }
        )
    return found


def _view(row: Any, datasets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "base_model": row.base_model,
        "adapter": row.adapter,
        "metadata": row.metadata,
        "created_at": iso(row.created_ns),
        "datasets": datasets,
    }


def _checked(
    name: str,
    datasets: Sequence[tuple[str, str]],
    base_model: str | None,
    adapter: str | None,
    metadata: dict[str, Any] | None,
) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("a checkpoint name needs 1 to 200 characters", {"name": name})
    if not datasets:
        raise ValidationFailed(
            "a checkpoint needs at least one dataset snapshot it was trained or evaluated on",
            {"checkpoint": name},
        )
    for _, purpose in datasets:
        if purpose not in PURPOSES:
            raise ValidationFailed(
                f"dataset purpose {purpose!r} is not one of {', '.join(PURPOSES)}", {"purpose": purpose}
            )
    for label, value in (("base model", base_model), ("adapter", adapter)):
        if value is not None and len(value) > 300:
            raise ValidationFailed(f"the {label} needs at most 300 characters", {label: value})
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ValidationFailed("checkpoint metadata must be a JSON object")
        canonical_json(metadata)
    return name


def register_checkpoint(
    engine: sa.Engine,
    project_id: int,
    name: str,
    datasets: Sequence[tuple[str, str]],
    base_model: str | None = None,
    adapter: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record checkpoint ``name`` and the snapshots it was trained or evaluated on: ``datasets`` is a
    list of ``(snapshot id or unique prefix, "train" | "eval")``. 409 if the name is taken, 404 for a
    snapshot that does not exist."""
    name = _checked(name, datasets, base_model, adapter, metadata)

    def write(connection: sa.Connection) -> dict[str, Any]:
        links = {(resolve_snapshot(connection, project_id, ref).id, purpose) for ref, purpose in datasets}
        taken = connection.execute(
            sa.select(checkpoints.c.id).where(
                checkpoints.c.project_id == project_id, checkpoints.c.name == name
            )
        ).first()
        if taken is not None:
            raise Conflict(
                f"checkpoint {name!r} is already registered; checkpoints are records, so register the new "
                "one under a new name",
                {"checkpoint": name},
            )
        try:
            new_id = connection.execute(
                checkpoints.insert()
                .values(
                    project_id=project_id,
                    name=name,
                    base_model=base_model,
                    adapter=adapter,
                    metadata=metadata or {},
                    created_ns=time.time_ns(),
                )
                .returning(checkpoints.c.id)
            ).scalar_one()
        except sa.exc.IntegrityError:
            raise Conflict(
                f"checkpoint {name!r} was registered at the same moment", {"checkpoint": name}
            ) from None
        connection.execute(
            checkpoint_datasets.insert(),
            [
                {"checkpoint_id": new_id, "snapshot_id": snapshot, "purpose": purpose}
                for snapshot, purpose in sorted(links)
            ],
        )
        row = connection.execute(sa.select(checkpoints).where(checkpoints.c.id == new_id)).one()
        return _view(row, _datasets_of(connection, [row.id]).get(row.id, []))

    return run_write(engine, write)


def get_checkpoint(engine: sa.Engine, project_id: int, name: str) -> dict[str, Any]:
    """A checkpoint with the snapshots it was trained and evaluated on."""
    with read_transaction(engine) as connection:
        row = _checkpoint_row(connection, project_id, name)
        return _view(row, _datasets_of(connection, [row.id]).get(row.id, []))


def list_checkpoints(engine: sa.Engine, project_id: int) -> list[dict[str, Any]]:
    """The project's checkpoints, newest first, each with its snapshots."""
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(checkpoints)
            .where(checkpoints.c.project_id == project_id)
            .order_by(checkpoints.c.created_ns.desc(), checkpoints.c.id.desc())
        ).all()
        linked = _datasets_of(connection, [row.id for row in rows])
    return [_view(row, linked.get(row.id, [])) for row in rows]
