"""The canonical content of a snapshot and the hashes that make it content-addressed.

A snapshot is its rows and its manifest. Each row is stored as its RFC 8785 canonical JSON text, the
exact bytes that are hashed. The manifest lists the sha256 of every row (``row_hashes``) and of the
rows as one JSON Lines file (``rows_sha256``); the snapshot id is the sha256 of the manifest's
RFC 8785 canonical JSON. When and by whom a snapshot was made are kept beside the content, never in
it, so the same labels give the same id whoever snapshots them and whenever.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import rfc8785

from prodloop.errors import ValidationFailed

#: The version of the row and manifest format; stored in every manifest.
FORMAT_VERSION = 1


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON (UTF-8): sorted keys, no spaces, ECMAScript numbers."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as error:
        raise ValidationFailed(
            f"cannot hash this content as canonical JSON: {error}; integers beyond ±2^53 and NaN or "
            "infinite numbers have no canonical form, so store them as strings",
        ) from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def row_text(row: dict[str, Any]) -> str:
    """A row's canonical JSON text: what ``dataset_rows.content`` holds and ``row_hashes`` hashes."""
    return canonical_json(row).decode("utf-8")


def rows_sha256(texts: Iterable[str]) -> str:
    """sha256 of the rows as a JSON Lines file: each row's canonical text followed by ``\\n``."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def snapshot_id(manifest: dict[str, Any]) -> str:
    """The id of the snapshot that ``manifest`` describes: sha256 of its canonical JSON."""
    return sha256_hex(canonical_json(manifest))


def is_canonical(text: str) -> bool:
    """Whether ``text`` is JSON written exactly in its canonical form."""
    try:
        return canonical_json(json.loads(text)).decode("utf-8") == text
    except (ValueError, ValidationFailed):
        return False
