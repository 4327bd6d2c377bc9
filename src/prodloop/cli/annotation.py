"""``prodloop schema …`` and ``prodloop queue …``: label schemas, queues, items and agreement."""

from __future__ import annotations

import typer

schema_app = typer.Typer(help="Versioned label schemas.", no_args_is_help=True)
queue_app = typer.Typer(help="Annotation queues: items, progress, agreement.", no_args_is_help=True)
annotator_app = typer.Typer(help="Annotators: people and model judges.", no_args_is_help=True)
