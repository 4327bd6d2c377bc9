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
