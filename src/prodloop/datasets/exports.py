"""Exports of a snapshot: JSON Lines, Parquet, and Hugging Face ``datasets``.

- JSON Lines: each row's canonical JSON text, exactly as stored and hashed, one per line, so that
  ``sha256sum rows.jsonl`` prints the manifest's ``rows_sha256``. The snapshot (id, manifest) goes
  beside it as ``<name>.manifest.json``.
- Parquet and Hugging Face: one column per row key. ``item_id`` is an int64, ``trace_id`` a string and
  ``label_ids`` a list of int64; every other value (input, output, context, metadata, label,
  confidence, source, annotators) is its canonical JSON text, so the table's schema is the same
  whatever the rows hold (an input may be a string in one row and a list of messages in the next)
  and ``json.loads`` gives back each value exactly. The Parquet file carries the snapshot under the
  key-value metadata key ``prodloop.snapshot``; a Hugging Face export writes ``manifest.json`` into its
  directory.

Files are written under a temporary name and renamed when complete, so a failed export leaves nothing
that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from prodloop.datasets.content import canonical_json
from prodloop.datasets.snapshots import READ_PAGE, get_snapshot, iter_row_texts
from prodloop.errors import InvalidRequest, ValidationFailed

ExportFormat = Literal["jsonl", "parquet", "hf"]
EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "parquet", "hf")
#: Row keys kept as their own typed columns; every other key is a column of JSON text.
TYPED_COLUMNS = ("item_id", "trace_id", "label_ids")
JSON_COLUMNS = ("input", "output", "context", "metadata", "label", "confidence", "source", "annotators")
#: The Parquet key-value metadata key that holds the snapshot (id and manifest).
PARQUET_METADATA_KEY = b"prodloop.snapshot"

Progress = Callable[[int], None]


def _needs(module: str) -> Any:
    """Import an optional dependency of the exports, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InvalidRequest(
            f"this export needs the package {module.split('.')[0]!r}; "
            "install it with: pip install 'prodloop[datasets]'"
        ) from None


def _advance(progress: Progress | None, n: int) -> None:
    if progress is not None and n:
        progress(n)


def snapshot_document(snapshot: dict[str, Any]) -> bytes:
    """The snapshot (id, name, when, manifest) as the pretty JSON of a manifest sidecar file."""
    return json.dumps(snapshot, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def sidecar_path(path: Path) -> Path:
    """Where the manifest of an export at ``path`` goes: ``rows.jsonl`` -> ``rows.manifest.json``."""
    return path.with_name(f"{path.stem}.manifest.json")


def _check_target(path: Path, directory: bool) -> None:
    if directory:
        if path.exists() and not path.is_dir():
            raise ValidationFailed(f"{path} is a file; a Hugging Face export needs a directory")
        previous = (path / "manifest.json").exists() and (path / "state.json").exists()
        if path.is_dir() and any(path.iterdir()) and not previous:
            raise ValidationFailed(
                f"{path} is a directory that holds other files; give a new directory for the export"
            )
    elif path.is_dir():
        raise ValidationFailed(f"{path} is a directory; give the path of the file to write")


@contextmanager
def _atomic(path: Path, directory: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` that becomes ``path`` when the block succeeds. An existing
    file is replaced, and so is the directory of an earlier Hugging Face export, but nothing else."""
    _check_target(path, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        if path.is_dir() and partial.is_dir():
            shutil.rmtree(path)
        os.replace(partial, path)
    finally:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        elif partial.exists():
            partial.unlink()


# --------------------------------------------------------------------------------------------------
# JSON Lines


def jsonl_chunks(engine: sa.Engine, snapshot_id: str, progress: Progress | None = None) -> Iterator[bytes]:
    """The JSON Lines file of a snapshot (by its whole id), a page of rows per chunk."""
    lines: list[str] = []
    for _, text in iter_row_texts(engine, snapshot_id):
        lines.append(text)
        if len(lines) >= READ_PAGE:
            yield ("\n".join(lines) + "\n").encode("utf-8")
            _advance(progress, len(lines))
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode("utf-8")
        _advance(progress, len(lines))


def export_jsonl(
    engine: sa.Engine, project_id: int, ref: str, path: str | Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Write a snapshot's rows to ``path`` (JSON Lines) and its manifest beside it."""
    snapshot = get_snapshot(engine, project_id, ref)
    path = Path(path)
    with _atomic(path) as partial, partial.open("wb") as out:
        for chunk in jsonl_chunks(engine, snapshot["id"], progress):
            out.write(chunk)
    sidecar = sidecar_path(path)
    sidecar.write_bytes(snapshot_document(snapshot))
    return _done(snapshot, "jsonl", [path, sidecar])


def _done(snapshot: dict[str, Any], fmt: str, files: list[Path]) -> dict[str, Any]:
    return {
        "id": snapshot["id"],
        "format": fmt,
        "rows": snapshot["counts"]["rows"],
        "files": [str(file) for file in files],
    }


# --------------------------------------------------------------------------------------------------
# Tables: Parquet and Hugging Face


def table_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as a record of the exported table: typed columns, and JSON text for the rest."""
    record = {key: row.get(key) for key in TYPED_COLUMNS}
    for key in JSON_COLUMNS:
        record[key] = canonical_json(row.get(key)).decode("utf-8")
    return record


def _arrow_schema(pa: Any, snapshot: dict[str, Any] | None = None) -> Any:
    fields = [
        pa.field("item_id", pa.int64()),
        pa.field("trace_id", pa.string()),
        pa.field("label_ids", pa.list_(pa.int64())),
        *(pa.field(key, pa.string()) for key in JSON_COLUMNS),
    ]
    metadata = {PARQUET_METADATA_KEY: snapshot_document(snapshot)} if snapshot is not None else None
    return pa.schema(fields, metadata=metadata)


def _record_pages(
    engine: sa.Engine, snapshot_id: str, progress: Progress | None
) -> Iterator[list[dict[str, Any]]]:
    page: list[dict[str, Any]] = []
    for _, text in iter_row_texts(engine, snapshot_id):
        page.append(table_record(json.loads(text)))
        if len(page) >= READ_PAGE:
            yield page
            _advance(progress, len(page))
            page = []
    if page:
        yield page
        _advance(progress, len(page))


def _write_parquet(
    engine: sa.Engine, snapshot: dict[str, Any], target: Any, progress: Progress | None
) -> None:
    pa = _needs("pyarrow")
    pq = _needs("pyarrow.parquet")
    schema = _arrow_schema(pa, snapshot)
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        for page in _record_pages(engine, snapshot["id"], progress):
            writer.write_table(pa.Table.from_pylist(page, schema=schema))


def export_parquet(
    engine: sa.Engine, project_id: int, ref: str, path: str | Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Write a snapshot as one Parquet file (the snapshot in its metadata) and its manifest beside it."""
    snapshot = get_snapshot(engine, project_id, ref)
    path = Path(path)
    with _atomic(path) as partial:
        _write_parquet(engine, snapshot, str(partial), progress)
    sidecar = sidecar_path(path)
    sidecar.write_bytes(snapshot_document(snapshot))
    return _done(snapshot, "parquet", [path, sidecar])


def parquet_bytes(engine: sa.Engine, project_id: int, ref: str) -> tuple[dict[str, Any], bytes]:
    """A snapshot and its Parquet file, in memory (for the API)."""
    pa = _needs("pyarrow")
    snapshot = get_snapshot(engine, project_id, ref)
    sink = pa.BufferOutputStream()
    _write_parquet(engine, snapshot, sink, None)
    return snapshot, sink.getvalue().to_pybytes()


def _hf_features(hf: Any) -> Any:
    return hf.Features(
        {
            "item_id": hf.Value("int64"),
            "trace_id": hf.Value("string"),
            "label_ids": hf.List(hf.Value("int64")),
            **{key: hf.Value("string") for key in JSON_COLUMNS},
        }
    )


def to_hf_dataset(engine: sa.Engine, project_id: int, ref: str, progress: Progress | None = None) -> Any:
    """A snapshot as a Hugging Face ``datasets.Dataset`` (in memory), its description naming the
    snapshot id. Columns as in the Parquet export."""
    hf = _needs("datasets")
    snapshot = get_snapshot(engine, project_id, ref)
    records = [record for page in _record_pages(engine, snapshot["id"], progress) for record in page]
    features = _hf_features(hf)
    info = hf.DatasetInfo(
        description=f"prodloop dataset snapshot {snapshot['name']!r} ({snapshot['id']})",
        features=features,
    )
    return hf.Dataset.from_list(records, features=features, info=info)


def export_hf(
    engine: sa.Engine, project_id: int, ref: str, directory: str | Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Save a snapshot with ``datasets.Dataset.save_to_disk`` into ``directory`` (read it back with
    ``datasets.load_from_disk``), with ``manifest.json`` beside the data."""
    hf = _needs("datasets")
    directory = Path(directory)
    _check_target(directory, directory=True)
    snapshot = get_snapshot(engine, project_id, ref)
    dataset = to_hf_dataset(engine, project_id, snapshot["id"], progress)
    quiet = hf.is_progress_bar_enabled()
    if quiet:
        hf.disable_progress_bars()
    try:
        with _atomic(directory, directory=True) as partial:
            dataset.save_to_disk(str(partial))
            (partial / "manifest.json").write_bytes(snapshot_document(snapshot))
    finally:
        if quiet:
            hf.enable_progress_bars()
    return _done(snapshot, "hf", [directory])


def export_snapshot(
    engine: sa.Engine,
    project_id: int,
    ref: str,
    fmt: str,
    output: str | Path,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Export a snapshot in format ``fmt`` (jsonl, parquet or hf) to ``output``."""
    exporters = {"jsonl": export_jsonl, "parquet": export_parquet, "hf": export_hf}
    if fmt not in exporters:
        raise ValidationFailed(
            f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}", {"format": fmt}
        )
    return exporters[fmt](engine, project_id, ref, output, progress)
