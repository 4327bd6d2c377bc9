"""Every setting of prodloop, declared once with its name, default and help.

Settings come from explicit arguments first, then ``PRODLOOP_*`` environment variables, then the
defaults below. ``docs/settings.md`` is generated from this class (``prodloop settings --markdown``)
and a test checks that it is current.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """prodloop's settings; each field is read from ``PRODLOOP_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="PRODLOOP_", extra="ignore")

    home: Path = Field(
        default=Path(".prodloop"),
        description="Folder for the embedded store, the admin key file and other local state.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the store. Unset: SQLite at HOME/prodloop.db. "
            "PostgreSQL: postgresql+psycopg://user:password@host/db."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address that `prodloop serve` listens on.")
    port: int = Field(default=8000, description="Port that `prodloop serve` listens on.")
    workers: int = Field(
        default=1,
        ge=1,
        description=(
            "Server processes that `prodloop serve` runs on one port. More than one uses more cores for "
            "ingest; each process writes to the same store."
        ),
    )
    max_request_bytes: int = Field(
        default=16 * 1024 * 1024,
        description="Largest request body accepted, after gzip decompression too; larger ones get 413.",
    )
    max_batch_items: int = Field(
        default=10_000, description="Most traces or signals one native API request may carry."
    )
    sqlite_synchronous: str = Field(
        default="FULL",
        description=(
            "SQLite `synchronous` pragma. FULL makes every answered write survive power loss; "
            "NORMAL is faster and survives a crash of prodloop but not of the machine."
        ),
    )
    pool_size: int = Field(
        default=40,
        description=(
            "Database connections kept open per server process; match it to the requests served at once "
            "(the server runs up to 40 blocking handlers concurrently)."
        ),
    )

    worker_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description=(
            "How often an idle `prodloop worker` looks for due jobs, and how often it runs the schedulers "
            "(which enqueue scheduled monitors)."
        ),
    )
    worker_concurrency: int = Field(
        default=1, ge=1, description="Jobs one `prodloop worker` process runs at a time (threads)."
    )
    worker_modules: str | None = Field(
        default=None,
        description=(
            "Python modules, comma-separated, that `prodloop worker` imports besides prodloop's own, so that "
            "their handlers for your own job kinds are registered (`register_handler`)."
        ),
    )
    worker_builtin_handlers: bool = Field(
        default=True,
        description=(
            "Whether `prodloop worker` runs prodloop's own jobs (scheduled monitors, embeddings). Off: it "
            "runs only the jobs of PRODLOOP_WORKER_MODULES, for a pool of workers kept for your own jobs."
        ),
    )
    job_lock_seconds: int = Field(
        default=300,
        ge=1,
        description=(
            "How long a worker holds a job it took. A job whose worker died is taken over by another "
            "worker once this has passed; longer jobs call `heartbeat()` to keep it."
        ),
    )
    job_retry_seconds: float = Field(
        default=10.0,
        ge=0,
        description=(
            "Wait before a failed job's second attempt; it doubles for each further attempt, up to an hour."
        ),
    )
    job_keep_days: float = Field(
        default=30.0,
        ge=0,
        description=(
            "Days that jobs which ended (done or failed) are kept before workers delete them; 0 keeps them."
        ),
    )

    def worker_module_list(self) -> list[str]:
        """``worker_modules`` as a list of module names."""
        return [name.strip() for name in (self.worker_modules or "").split(",") if name.strip()]

    def as_environment(self) -> dict[str, str]:
        """These settings as ``PRODLOOP_*`` variables, for worker processes to read back."""
        return {
            f"PRODLOOP_{name.upper()}": str(value)
            for name, value in self.model_dump().items()
            if value is not None
        }

    def resolved_database_url(self) -> str:
        """The database URL to use: the explicit one, else SQLite under ``home``."""
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{(self.home / 'prodloop.db').as_posix()}"


def normalise_database_url(url: str) -> str:
    """Let users write ``postgresql://`` or ``postgres://``; prodloop talks to PostgreSQL with psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def settings_markdown() -> str:
    """The settings reference page, generated so that it cannot drift from the code."""
    lines = [
        "# Settings",
        "",
        "Each setting is read from the environment variable shown; command-line flags override it.",
        "This page is generated by `prodloop settings --markdown`.",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else f"`{default}`"
        lines.append(f"| `PRODLOOP_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(lines) + "\n"
