"""annotation and datasets: label schemas, annotators, queues, items, leases, labels, skips,
escalations, dataset snapshots, checkpoints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("base_model", sa.String(length=300), nullable=True),
        sa.Column("adapter", sa.String(length=300), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_checkpoints_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("project_id", "name", name="uq_checkpoints_project_name"),
    )
    op.create_table(
        "label_schemas",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_label_schemas_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_schemas")),
        sa.UniqueConstraint("project_id", "name", "version", name="uq_label_schemas_project_name_version"),
    )
    op.create_table(
        "annotators",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name=op.f("fk_annotators_key_id_api_keys")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_annotators_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotators")),
        sa.UniqueConstraint("key_id", name=op.f("uq_annotators_key_id")),
        sa.UniqueConstraint("project_id", "name", name="uq_annotators_project_name"),
    )
    op.create_table(
        "queues",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("schema_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("lease_seconds", sa.Integer(), nullable=False),
        sa.Column("gold_share", sa.Float(), nullable=False),
        sa.Column("show_suggestions", sa.Boolean(), nullable=False),
        sa.Column("disagreement_rule", sa.String(length=20), nullable=False),
        sa.Column("disagreement_threshold", sa.Float(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_queues_project_id_projects")),
        sa.ForeignKeyConstraint(
            ["schema_id"], ["label_schemas.id"], name=op.f("fk_queues_schema_id_label_schemas")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queues")),
        sa.UniqueConstraint("project_id", "name", name="uq_queues_project_name"),
    )
    op.create_table(
        "dataset_snapshots",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("queue_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "manifest",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_dataset_snapshots_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["queue_id"], ["queues.id"], name=op.f("fk_dataset_snapshots_queue_id_queues")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_snapshots")),
    )
    with op.batch_alter_table("dataset_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dataset_snapshots_project_name", ["project_id", "name", "created_ns"], unique=False
        )

    op.create_table(
        "queue_items",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("queue_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_key", sa.String(length=200), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "suggestion",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "gold",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("n_labels", sa.Integer(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("completed_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_queue_items_project_id_projects")
        ),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"], name=op.f("fk_queue_items_queue_id_queues")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_items")),
        sa.UniqueConstraint("queue_id", "item_key", name="uq_queue_items_queue_item_key"),
    )
    with op.batch_alter_table("queue_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_queue_items_next", ["queue_id", "status", sa.text("priority DESC"), "id"], unique=False
        )
        batch_op.create_index("ix_queue_items_project_trace", ["project_id", "trace_id"], unique=False)

    op.create_table(
        "checkpoint_datasets",
        sa.Column("checkpoint_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_checkpoint_datasets_checkpoint_id_checkpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["dataset_snapshots.id"],
            name=op.f("fk_checkpoint_datasets_snapshot_id_dataset_snapshots"),
        ),
        sa.PrimaryKeyConstraint(
            "checkpoint_id", "snapshot_id", "purpose", name=op.f("pk_checkpoint_datasets")
        ),
    )
    op.create_table(
        "dataset_rows",
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["queue_items.id"], name=op.f("fk_dataset_rows_item_id_queue_items")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["dataset_snapshots.id"],
            name=op.f("fk_dataset_rows_snapshot_id_dataset_snapshots"),
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "position", name=op.f("pk_dataset_rows")),
    )
    with op.batch_alter_table("dataset_rows", schema=None) as batch_op:
        batch_op.create_index("ix_dataset_rows_trace", ["trace_id"], unique=False)

    op.create_table(
        "escalations",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("queue_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("annotator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("field", sa.String(length=100), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("resolved_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["annotator_id"], ["annotators.id"], name=op.f("fk_escalations_annotator_id_annotators")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["queue_items.id"], name=op.f("fk_escalations_item_id_queue_items")
        ),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"], name=op.f("fk_escalations_queue_id_queues")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
    )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.create_index("ix_escalations_queue_field", ["queue_id", "field"], unique=False)

    op.create_table(
        "labels",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("annotator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("author_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.Column("schema_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "value",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("supersedes_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotator_id"], ["annotators.id"], name=op.f("fk_labels_annotator_id_annotators")
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["annotators.id"], name=op.f("fk_labels_author_id_annotators")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["queue_items.id"], name=op.f("fk_labels_item_id_queue_items")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_labels_project_id_projects")),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"], name=op.f("fk_labels_queue_id_queues")),
        sa.ForeignKeyConstraint(
            ["schema_id"], ["label_schemas.id"], name=op.f("fk_labels_schema_id_label_schemas")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["labels.id"], name=op.f("fk_labels_supersedes_id_labels")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_labels_supersedes_id")),
    )
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.create_index("ix_labels_item", ["item_id", "annotator_id"], unique=False)
        batch_op.create_index("ix_labels_project_trace", ["project_id", "trace_id"], unique=False)
        batch_op.create_index("ix_labels_queue_created", ["queue_id", "created_ns"], unique=False)
        batch_op.create_index(
            "uq_labels_first_per_annotator",
            ["item_id", "annotator_id", "role"],
            unique=True,
            sqlite_where=sa.text("supersedes_id IS NULL"),
            postgresql_where=sa.text("supersedes_id IS NULL"),
        )

    op.create_table(
        "leases",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("queue_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("annotator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("leased_ns", sa.BigInteger(), nullable=False),
        sa.Column("expires_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotator_id"], ["annotators.id"], name=op.f("fk_leases_annotator_id_annotators")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["queue_items.id"], name=op.f("fk_leases_item_id_queue_items")),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"], name=op.f("fk_leases_queue_id_queues")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
        sa.UniqueConstraint("item_id", "annotator_id", name="uq_leases_item_annotator"),
    )
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.create_index("ix_leases_annotator_queue", ["annotator_id", "queue_id"], unique=False)

    op.create_table(
        "skips",
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("annotator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queue_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotator_id"], ["annotators.id"], name=op.f("fk_skips_annotator_id_annotators")
        ),
        sa.ForeignKeyConstraint(["item_id"], ["queue_items.id"], name=op.f("fk_skips_item_id_queue_items")),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"], name=op.f("fk_skips_queue_id_queues")),
        sa.PrimaryKeyConstraint("item_id", "annotator_id", name=op.f("pk_skips")),
    )
    op.create_table(
        "dataset_row_labels",
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("label_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["label_id"], ["labels.id"], name=op.f("fk_dataset_row_labels_label_id_labels")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["dataset_snapshots.id"],
            name=op.f("fk_dataset_row_labels_snapshot_id_dataset_snapshots"),
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "label_id", name=op.f("pk_dataset_row_labels")),
    )
    with op.batch_alter_table("dataset_row_labels", schema=None) as batch_op:
        batch_op.create_index("ix_dataset_row_labels_label", ["label_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dataset_row_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_dataset_row_labels_label")

    op.drop_table("dataset_row_labels")
    op.drop_table("skips")
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_index("ix_leases_annotator_queue")

    op.drop_table("leases")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_labels_first_per_annotator",
            sqlite_where=sa.text("supersedes_id IS NULL"),
            postgresql_where=sa.text("supersedes_id IS NULL"),
        )
        batch_op.drop_index("ix_labels_queue_created")
        batch_op.drop_index("ix_labels_project_trace")
        batch_op.drop_index("ix_labels_item")

    op.drop_table("labels")
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index("ix_escalations_queue_field")

    op.drop_table("escalations")
    with op.batch_alter_table("dataset_rows", schema=None) as batch_op:
        batch_op.drop_index("ix_dataset_rows_trace")

    op.drop_table("dataset_rows")
    op.drop_table("checkpoint_datasets")
    with op.batch_alter_table("queue_items", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_items_project_trace")
        batch_op.drop_index("ix_queue_items_next")

    op.drop_table("queue_items")
    with op.batch_alter_table("dataset_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_dataset_snapshots_project_name")

    op.drop_table("dataset_snapshots")
    op.drop_table("queues")
    op.drop_table("annotators")
    op.drop_table("label_schemas")
    op.drop_table("checkpoints")
