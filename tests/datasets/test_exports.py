"""Exports read back with the reading side's own tools (json, pyarrow, datasets) give the snapshot's
rows exactly, and carry its manifest."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rfc8785
import sqlalchemy as sa

import datasets as hf
from prodloop.datasets import (
    export_hf,
    export_jsonl,
    export_parquet,
    export_snapshot,
    snapshot_queue,
    snapshot_rows,
    to_hf_dataset,
)
from prodloop.datasets.exports import JSON_COLUMNS
from prodloop.errors import InvalidRequest, ValidationFailed
from tests.datasets.support import Labelled, labelled_queue


@pytest.fixture
def made(sqlite_engine: sa.Engine) -> tuple[Labelled, dict[str, Any], list[dict[str, Any]]]:
    setup = labelled_queue(sqlite_engine)
    snapshot = snapshot_queue(sqlite_engine, setup.pid, "intents", "train")
    rows = snapshot_rows(sqlite_engine, setup.pid, snapshot["id"], 0, 1000)["rows"]
    return setup, snapshot, [{k: v for k, v in row.items() if k != "position"} for row in rows]


def from_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows from exported table records: the JSON text columns parsed back."""
    return [
        {key: json.loads(value) if key in JSON_COLUMNS else value for key, value in record.items()}
        for record in records
    ]


def check_sidecar(document: dict[str, Any], snapshot: dict[str, Any]) -> None:
    assert document["id"] == snapshot["id"]
    assert hashlib.sha256(rfc8785.dumps(document["manifest"])).hexdigest() == snapshot["id"]


def test_jsonl_is_the_hashed_rows_byte_for_byte_with_the_manifest_beside_it(
    made: Any, tmp_path: Path
) -> None:
    setup, snapshot, rows = made
    result = export_jsonl(setup.engine, setup.pid, snapshot["id"][:10], tmp_path / "out" / "train.jsonl")
    data = (tmp_path / "out" / "train.jsonl").read_bytes()
    assert [json.loads(line) for line in data.splitlines()] == rows
    assert hashlib.sha256(data).hexdigest() == snapshot["manifest"]["rows_sha256"]
    sidecar = tmp_path / "out" / "train.manifest.json"
    check_sidecar(json.loads(sidecar.read_text()), snapshot)
    assert result == {
        "id": snapshot["id"],
        "format": "jsonl",
        "rows": 6,
        "files": [str(tmp_path / "out" / "train.jsonl"), str(sidecar)],
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["train.jsonl", "train.manifest.json"]


def test_parquet_reads_back_with_pyarrow(made: Any, tmp_path: Path) -> None:
    setup, snapshot, rows = made
    progress: list[int] = []
    export_parquet(setup.engine, setup.pid, snapshot["id"], tmp_path / "train.parquet", progress.append)
    table = pq.read_table(tmp_path / "train.parquet")
    assert table.schema.field("item_id").type == pa.int64()
    assert table.schema.field("label_ids").type.value_type == pa.int64()
    assert from_table(table.to_pylist()) == rows
    check_sidecar(json.loads(table.schema.metadata[b"prodloop.snapshot"]), snapshot)
    check_sidecar(json.loads((tmp_path / "train.manifest.json").read_text()), snapshot)
    assert sum(progress) == 6


def test_hugging_face_dataset_saved_and_in_memory(made: Any, tmp_path: Path) -> None:
    setup, snapshot, rows = made
    export_hf(setup.engine, setup.pid, snapshot["id"], tmp_path / "hf")
    loaded = hf.load_from_disk(str(tmp_path / "hf"))
    assert from_table(loaded.to_list()) == rows
    check_sidecar(json.loads((tmp_path / "hf" / "manifest.json").read_text()), snapshot)

    in_memory = to_hf_dataset(setup.engine, setup.pid, snapshot["id"])
    assert isinstance(in_memory, hf.Dataset)
    assert from_table(in_memory.to_list()) == rows
    assert snapshot["id"] in in_memory.info.description
    # Exporting again replaces the earlier export.
    export_hf(setup.engine, setup.pid, snapshot["id"], tmp_path / "hf")
    assert hf.load_from_disk(str(tmp_path / "hf")).num_rows == 6


def test_exports_refuse_to_overwrite_what_is_not_theirs(made: Any, tmp_path: Path) -> None:
    setup, snapshot, _ = made
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(ValidationFailed, match="holds other files"):
        export_hf(setup.engine, setup.pid, snapshot["id"], tmp_path / "notes")
    with pytest.raises(ValidationFailed, match="is a directory"):
        export_jsonl(setup.engine, setup.pid, snapshot["id"], tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    with pytest.raises(ValidationFailed, match="'csv' is not one of jsonl, parquet, hf"):
        export_snapshot(setup.engine, setup.pid, snapshot["id"], "csv", tmp_path / "x.csv")


@pytest.mark.parametrize(("fmt", "module"), [("parquet", "pyarrow"), ("hf", "datasets")])
def test_a_missing_optional_package_says_how_to_install_it(
    made: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, module: str
) -> None:
    setup, snapshot, _ = made
    monkeypatch.setitem(sys.modules, module, None)  # import now fails, as when it is not installed
    with pytest.raises(InvalidRequest, match=r"pip install 'prodloop\[datasets\]'"):
        export_snapshot(setup.engine, setup.pid, snapshot["id"], fmt, tmp_path / "out")
    assert not (tmp_path / "out").exists()
