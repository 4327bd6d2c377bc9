"""The ``prodloop`` command: a thin shell over the Python API."""

from prodloop.cli.main import app, main

__all__ = ["app", "main"]
