"""Documents that users write as files: label schemas and monitor definitions, in YAML (or JSON, which
is YAML)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from prodloop.errors import InvalidRequest, ValidationFailed


def read_document_file(path: str | Path, kind: str, shape: str) -> dict[str, Any]:
    """The mapping in the YAML file at ``path``, a ``kind`` ("schema", "monitor") described as
    ``shape`` in the error when the file holds something else."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidRequest(f"cannot read {kind} file {str(path)!r}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise InvalidRequest(f"{kind} file {str(path)!r} is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ValidationFailed(f"{kind} file {str(path)!r} holds {type(document).__name__}; {shape}")
    return document
