"""The one schema of prodloop's store (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Times are integers of nanoseconds since the Unix epoch (UTC), as OpenTelemetry sends them, so that
range queries and ordering are exact and identical on both databases. Every record that concerns a
trace carries its OpenTelemetry trace id (32 lowercase hex characters).

Changing this module needs a new Alembic revision in ``store/migrations/versions``; a test checks
that the migrations and this module describe the same schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: JSON documents: JSONB on PostgreSQL, JSON text on SQLite.
JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
#: JSON documents where Python ``None`` is SQL NULL (not the JSON value ``null``), so that
#: ``IS NULL`` finds them.
NullableJSONDoc = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
#: Auto-incrementing 64-bit ids that SQLite also numbers by itself.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("name", sa.String(200)),
    # sha256 of the whole key; the key itself is shown once and never stored.
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    # The first characters of the key, so that a person can tell keys apart in a list.
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("revoked_ns", sa.BigInteger),
)

traces = sa.Table(
    "traces",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("trace_id", sa.String(32), primary_key=True),
    # Resource `service.name`: the production feature this trace belongs to.
    sa.Column("feature", sa.String(200)),
    # Span attribute `prodloop.release`: the behavioural version that served the trace.
    sa.Column("release", sa.String(200)),
    # Span attribute `prodloop.join_key`: the business key that late outcomes use.
    sa.Column("join_key", sa.String(200)),
    sa.Column("name", sa.String(500)),
    sa.Column("root_span_id", sa.String(16)),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("end_ns", sa.BigInteger, nullable=False),
    sa.Column("span_count", sa.Integer, nullable=False),
    sa.Column("error_count", sa.Integer, nullable=False),
    # Model and provider of the earliest LLM span, whatever order the spans arrive in.
    sa.Column("model", sa.String(200)),
    sa.Column("provider", sa.String(100)),
    sa.Column("model_start_ns", sa.BigInteger),
    sa.Column("input_tokens", sa.BigInteger),
    sa.Column("output_tokens", sa.BigInteger),
    sa.Column("conversation_id", sa.String(200)),
    sa.Column("input_text", sa.Text),
    sa.Column("output_text", sa.Text),
    # Where input/output text came from: 0 the root span, 1 an LLM span, 2 any other span.
    sa.Column("io_rank", sa.SmallInteger, nullable=False),
    # Start of the span the text came from: among spans of one rank, the earliest wins.
    sa.Column("io_start_ns", sa.BigInteger),
    sa.Column("ingested_ns", sa.BigInteger, nullable=False),
    sa.Index("ix_traces_project_start", "project_id", "start_ns", "trace_id"),
    sa.Index("ix_traces_project_feature_start", "project_id", "feature", "start_ns"),
    sa.Index("ix_traces_project_release", "project_id", "release", "start_ns"),
    sa.Index("ix_traces_project_model", "project_id", "model", "start_ns"),
    sa.Index("ix_traces_project_join_key", "project_id", "join_key"),
    # What arrived lately, for the background jobs that follow ingest (embeddings).
    sa.Index("ix_traces_project_ingested", "project_id", "ingested_ns"),
)

spans = sa.Table(
    "spans",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("trace_id", sa.String(32), primary_key=True),
    sa.Column("span_id", sa.String(16), primary_key=True),
    sa.Column("parent_span_id", sa.String(16)),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("end_ns", sa.BigInteger, nullable=False),
    sa.Column("status_code", sa.String(10), nullable=False),
    sa.Column("status_message", sa.Text),
    sa.Column("service_name", sa.String(200)),
    sa.Column("scope_name", sa.String(200)),
    sa.Column("scope_version", sa.String(100)),
    sa.Column("release", sa.String(200)),
    sa.Column("join_key", sa.String(200)),
    # OpenTelemetry GenAI (and OpenInference) conventions, mapped onto columns.
    sa.Column("operation", sa.String(100)),
    sa.Column("provider", sa.String(100)),
    sa.Column("request_model", sa.String(200)),
    sa.Column("response_model", sa.String(200)),
    sa.Column("input_tokens", sa.BigInteger),
    sa.Column("output_tokens", sa.BigInteger),
    sa.Column("temperature", sa.Float),
    sa.Column("top_p", sa.Float),
    sa.Column("max_tokens", sa.Integer),
    sa.Column("sampling", JSONDoc),
    sa.Column("conversation_id", sa.String(200)),
    sa.Column("tool_name", sa.String(200)),
    sa.Column("finish_reasons", JSONDoc),
    sa.Column("input_messages", JSONDoc),
    sa.Column("output_messages", JSONDoc),
    sa.Column("input_text", sa.Text),
    sa.Column("output_text", sa.Text),
    # Everything that was sent, kept as it came.
    sa.Column("attributes", JSONDoc, nullable=False),
    sa.Column("resource_attributes", JSONDoc, nullable=False),
    sa.Column("events", JSONDoc, nullable=False),
    sa.Column("links", JSONDoc, nullable=False),
)

signals = sa.Table(
    "signals",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    # The client's own id for the signal, so that a retried batch is not counted twice.
    sa.Column("client_id", sa.String(200)),
    # Known from the start, or filled in when a trace with the same join key arrives.
    sa.Column("trace_id", sa.String(32)),
    sa.Column("join_key", sa.String(200)),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("value", JSONDoc),
    # Numeric view of value (true=1, false=0, numbers as they are) for rates and means.
    sa.Column("value_num", sa.Float),
    sa.Column("text", sa.Text),
    sa.Column("edit_distance", sa.Integer),
    sa.Column("user_id", sa.String(200)),
    sa.Column("metadata", JSONDoc, nullable=False),
    sa.Column("timestamp_ns", sa.BigInteger, nullable=False),
    sa.Column("received_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "client_id", name="uq_signals_project_client_id"),
    sa.Index("ix_signals_project_trace", "project_id", "trace_id"),
    sa.Index("ix_signals_project_join_key", "project_id", "join_key"),
    sa.Index("ix_signals_project_kind_time", "project_id", "kind", "timestamp_ns"),
)

# --------------------------------------------------------------------------------------------------
# Annotation: schemas, annotators, queues, items, leases, labels, skips, escalations

label_schemas = sa.Table(
    "label_schemas",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # The whole LabelSchema as JSON; never changed once written.
    sa.Column("document", JSONDoc, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(200)),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "name", "version", name="uq_label_schemas_project_name_version"),
)

annotators = sa.Table(
    "annotators",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    # "human" or "model" (a model judge, measured against gold and people like anyone else).
    sa.Column("kind", sa.String(10), nullable=False),
    # The API key this annotator works with, when it works through the API.
    sa.Column("key_id", sa.Integer, sa.ForeignKey("api_keys.id"), unique=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "name", name="uq_annotators_project_name"),
)

queues = sa.Table(
    "queues",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("schema_id", BigId, sa.ForeignKey("label_schemas.id"), nullable=False),
    # How many distinct annotators must label each item.
    sa.Column("overlap", sa.Integer, nullable=False),
    sa.Column("lease_seconds", sa.Integer, nullable=False),
    # Share of leases that go to gold items while an annotator has gold items left.
    sa.Column("gold_share", sa.Float, nullable=False),
    sa.Column("show_suggestions", sa.Boolean, nullable=False),
    # "unanimity" or "majority"; with "majority", items whose top share is below the threshold.
    sa.Column("disagreement_rule", sa.String(20), nullable=False),
    sa.Column("disagreement_threshold", sa.Float, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "name", name="uq_queues_project_name"),
)

queue_items = sa.Table(
    "queue_items",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("queue_id", BigId, sa.ForeignKey("queues.id"), nullable=False),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    # Identity within the queue (the trace id, the JSONL row's id, or a hash of its content), so
    # adding the same thing twice adds it once.
    sa.Column("item_key", sa.String(200), nullable=False),
    sa.Column("trace_id", sa.String(32)),
    sa.Column("priority", sa.Integer, nullable=False),
    # What annotators see: input, output, context, metadata.
    sa.Column("payload", JSONDoc, nullable=False),
    # A model's suggested values, shown only where the queue allows.
    sa.Column("suggestion", NullableJSONDoc),
    # The known answer of a gold item; NULL for ordinary items.
    sa.Column("gold", NullableJSONDoc),
    sa.Column("source", sa.String(20), nullable=False),
    # open: waiting for labels; review: labelled with disagreement (or escalated), waiting for a
    # reviewer; done: labelled and agreed, or adjudicated.
    sa.Column("status", sa.String(10), nullable=False),
    # Distinct annotators with a label on this item (kept in the same transaction as the label).
    sa.Column("n_labels", sa.Integer, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("completed_ns", sa.BigInteger),
    # The alert that routed this item here (monitoring), if one did.
    sa.Column("alert_id", BigId),
    sa.UniqueConstraint("queue_id", "item_key", name="uq_queue_items_queue_item_key"),
    sa.Index("ix_queue_items_project_trace", "project_id", "trace_id"),
    sa.Index("ix_queue_items_alert", "alert_id"),
)

# The order annotators are served in (highest priority first, then oldest): a lease reads the index
# in this order and stops at the first item with room, instead of sorting every open item.
sa.Index(
    "ix_queue_items_next",
    queue_items.c.queue_id,
    queue_items.c.status,
    queue_items.c.priority.desc(),
    queue_items.c.id,
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("queue_id", BigId, sa.ForeignKey("queues.id"), nullable=False),
    sa.Column("item_id", BigId, sa.ForeignKey("queue_items.id"), nullable=False),
    sa.Column("annotator_id", BigId, sa.ForeignKey("annotators.id"), nullable=False),
    sa.Column("leased_ns", sa.BigInteger, nullable=False),
    sa.Column("expires_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("item_id", "annotator_id", name="uq_leases_item_annotator"),
    sa.Index("ix_leases_annotator_queue", "annotator_id", "queue_id"),
)

labels = sa.Table(
    "labels",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("queue_id", BigId, sa.ForeignKey("queues.id"), nullable=False),
    sa.Column("item_id", BigId, sa.ForeignKey("queue_items.id"), nullable=False),
    sa.Column("trace_id", sa.String(32)),
    # Whose answer this is: the annotator (or, for an adjudication, the reviewer).
    sa.Column("annotator_id", BigId, sa.ForeignKey("annotators.id"), nullable=False),
    # Who wrote this version, when not the annotator: a reviewer correcting someone's label.
    sa.Column("author_id", BigId, sa.ForeignKey("annotators.id")),
    # "annotation" (an annotator's answer) or "adjudication" (a reviewer's final value).
    sa.Column("role", sa.String(12), nullable=False),
    sa.Column("schema_id", BigId, sa.ForeignKey("label_schemas.id"), nullable=False),
    sa.Column("value", JSONDoc, nullable=False),
    # A correction names the label it replaces; a label is replaced at most once.
    sa.Column("supersedes_id", BigId, sa.ForeignKey("labels.id"), unique=True),
    # Why: the correction's reason, or the adjudication's rationale.
    sa.Column("reason", sa.Text),
    # Milliseconds from lease to submit: how long the label took.
    sa.Column("duration_ms", sa.Integer),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Index("ix_labels_item", "item_id", "annotator_id"),
    sa.Index("ix_labels_queue_created", "queue_id", "created_ns"),
    sa.Index("ix_labels_project_trace", "project_id", "trace_id"),
    # Nobody labels an item twice: one first label per annotator, item and role.
    sa.Index(
        "uq_labels_first_per_annotator",
        "item_id",
        "annotator_id",
        "role",
        unique=True,
        sqlite_where=sa.text("supersedes_id IS NULL"),
        postgresql_where=sa.text("supersedes_id IS NULL"),
    ),
)

skips = sa.Table(
    "skips",
    metadata,
    sa.Column("item_id", BigId, sa.ForeignKey("queue_items.id"), primary_key=True),
    sa.Column("annotator_id", BigId, sa.ForeignKey("annotators.id"), primary_key=True),
    sa.Column("queue_id", BigId, sa.ForeignKey("queues.id"), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)

escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("queue_id", BigId, sa.ForeignKey("queues.id"), nullable=False),
    sa.Column("item_id", BigId, sa.ForeignKey("queue_items.id"), nullable=False),
    sa.Column("annotator_id", BigId, sa.ForeignKey("annotators.id"), nullable=False),
    # The schema field the note is about; NULL for the item as a whole.
    sa.Column("field", sa.String(100)),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("resolved_ns", sa.BigInteger),
    sa.Index("ix_escalations_queue_field", "queue_id", "field"),
)

# --------------------------------------------------------------------------------------------------
# Datasets: immutable snapshots and the checkpoints trained or evaluated on them

dataset_snapshots = sa.Table(
    "dataset_snapshots",
    metadata,
    # sha256 of the snapshot's canonical content: rows and manifest.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("queue_id", BigId, sa.ForeignKey("queues.id")),
    sa.Column("manifest", JSONDoc, nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(200)),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Index("ix_dataset_snapshots_project_name", "project_id", "name", "created_ns"),
)

dataset_rows = sa.Table(
    "dataset_rows",
    metadata,
    sa.Column("snapshot_id", sa.String(64), sa.ForeignKey("dataset_snapshots.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("item_id", BigId, sa.ForeignKey("queue_items.id")),
    sa.Column("trace_id", sa.String(32)),
    # The row exactly as it was hashed (canonical JSON text), so re-hashing is byte-exact.
    sa.Column("content", sa.Text, nullable=False),
    sa.Index("ix_dataset_rows_trace", "trace_id"),
)

dataset_row_labels = sa.Table(
    "dataset_row_labels",
    metadata,
    sa.Column("snapshot_id", sa.String(64), sa.ForeignKey("dataset_snapshots.id"), primary_key=True),
    sa.Column("label_id", BigId, sa.ForeignKey("labels.id"), primary_key=True),
    sa.Index("ix_dataset_row_labels_label", "label_id"),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("base_model", sa.String(300)),
    sa.Column("adapter", sa.String(300)),
    sa.Column("metadata", JSONDoc, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "name", name="uq_checkpoints_project_name"),
)

checkpoint_datasets = sa.Table(
    "checkpoint_datasets",
    metadata,
    sa.Column("checkpoint_id", BigId, sa.ForeignKey("checkpoints.id"), primary_key=True),
    sa.Column("snapshot_id", sa.String(64), sa.ForeignKey("dataset_snapshots.id"), primary_key=True),
    # "train" or "eval": what the checkpoint did with the snapshot.
    sa.Column("purpose", sa.String(10), primary_key=True),
)

# --------------------------------------------------------------------------------------------------
# Monitoring: monitors, their runs, and the alerts they raise

monitors = sa.Table(
    "monitors",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("feature", sa.String(200), nullable=False),
    # The whole definition as the user gave it (validated), so a run can be replayed from its record.
    sa.Column("definition", JSONDoc, nullable=False),
    # Seconds between scheduled runs; NULL runs only when asked.
    sa.Column("schedule_seconds", sa.Integer),
    sa.Column("next_run_ns", sa.BigInteger),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("updated_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "name", name="uq_monitors_project_name"),
    sa.Index("ix_monitors_next_run", "enabled", "next_run_ns"),
)

monitor_runs = sa.Table(
    "monitor_runs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("monitor_id", BigId, sa.ForeignKey("monitors.id"), nullable=False),
    # "ok" or "failed" (the error says why; a failed check is reported as the monitor's).
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("started_ns", sa.BigInteger, nullable=False),
    sa.Column("finished_ns", sa.BigInteger, nullable=False),
    # The moment the run looked at: data after it did not count.
    sa.Column("as_of_ns", sa.BigInteger, nullable=False),
    # The definition that produced these results.
    sa.Column("definition", JSONDoc, nullable=False),
    sa.Column("results", JSONDoc, nullable=False),
    sa.Column("error", sa.Text),
    sa.Index("ix_monitor_runs_monitor", "monitor_id", "started_ns"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("monitor_id", BigId, sa.ForeignKey("monitors.id"), nullable=False),
    # What the alert is about, stable from run to run ("outcome:handled_rate"): a finding with the same
    # key as an alert that is not resolved adds to that alert instead of raising another.
    sa.Column("key", sa.String(300), nullable=False),
    # open, acknowledged, resolved
    sa.Column("status", sa.String(14), nullable=False),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("detail", JSONDoc, nullable=False),
    # How to find the affected traces (feature, time window, release, attributes, ranked trace ids).
    sa.Column("slice", JSONDoc, nullable=False),
    sa.Column("occurrences", sa.Integer, nullable=False),
    sa.Column("first_run_id", BigId, sa.ForeignKey("monitor_runs.id")),
    sa.Column("last_run_id", BigId, sa.ForeignKey("monitor_runs.id")),
    sa.Column("opened_ns", sa.BigInteger, nullable=False),
    sa.Column("last_seen_ns", sa.BigInteger, nullable=False),
    sa.Column("acknowledged_ns", sa.BigInteger),
    sa.Column("acknowledged_by", sa.String(200)),
    sa.Column("resolved_ns", sa.BigInteger),
    sa.Column("resolved_by", sa.String(200)),
    # Where its slice was routed for labelling, if it was.
    sa.Column("queue_id", BigId, sa.ForeignKey("queues.id")),
    sa.Column("routed_items", sa.Integer),
    sa.Column("routed_ns", sa.BigInteger),
    sa.Index("ix_alerts_project_status", "project_id", "status", "opened_ns"),
    # One unresolved alert per monitor and key: the deduplication holds under concurrent runs too.
    sa.Index(
        "uq_alerts_unresolved_key",
        "monitor_id",
        "key",
        unique=True,
        sqlite_where=sa.text("status != 'resolved'"),
        postgresql_where=sa.text("status != 'resolved'"),
    ),
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("alert_id", BigId, sa.ForeignKey("alerts.id"), nullable=False),
    # opened, seen, acknowledged, resolved, reopened, routed, webhook
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("actor", sa.String(200)),
    sa.Column("at_ns", sa.BigInteger, nullable=False),
    sa.Column("detail", JSONDoc, nullable=False),
    sa.Index("ix_alert_events_alert", "alert_id", "at_ns"),
)

# --------------------------------------------------------------------------------------------------
# Background jobs, shared by any number of `prodloop worker` processes

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id")),
    # What to do ("monitor.run", "embed.traces"): the handler registered under this name.
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("payload", JSONDoc, nullable=False),
    # queued, running, done, failed
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("run_after_ns", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    # The same key again while the first job exists adds no second job.
    sa.Column("dedup_key", sa.String(300), unique=True),
    sa.Column("worker", sa.String(200)),
    # A running job whose worker stops renewing this is taken over by another worker.
    sa.Column("locked_until_ns", sa.BigInteger),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("started_ns", sa.BigInteger),
    sa.Column("finished_ns", sa.BigInteger),
    sa.Column("error", sa.Text),
    sa.Column("result", NullableJSONDoc),
    sa.Index("ix_jobs_next", "status", "priority", "run_after_ns"),
)

# --------------------------------------------------------------------------------------------------
# Embeddings: vectors cached by the model that made them and the text's hash

embeddings = sa.Table(
    "embeddings",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), primary_key=True),
    # The model that made the vector, with its fingerprint: vectors of two models never mix.
    sa.Column("model", sa.String(200), primary_key=True),
    # sha256 of the UTF-8 text.
    sa.Column("text_hash", sa.String(64), primary_key=True),
    sa.Column("dim", sa.Integer, nullable=False),
    # float32, little-endian, dim values.
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)
