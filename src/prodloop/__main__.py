"""``python -m prodloop`` runs the CLI."""

from prodloop.cli import main

main()
