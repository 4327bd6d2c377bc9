"""``prodloop dataset …`` and ``prodloop checkpoint …``: snapshots, exports, lineage."""

from __future__ import annotations

import typer

dataset_app = typer.Typer(help="Immutable dataset snapshots and their exports.", no_args_is_help=True)
checkpoint_app = typer.Typer(help="Model checkpoints and what they were trained on.", no_args_is_help=True)
