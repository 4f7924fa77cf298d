"""What a recipe needs to know about its datasets: their dataset_info.json entries and the special tokens they need.

Converters register each dataset in ``<dataset_dir>/dataset_info.json`` with an extra ``"r1sft"`` block that
LLaMA-Factory ignores; data converted with ``--think thought`` lists the tags it needs as special tokens there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from r1sft.data.registry import DATASET_INFO, read_dataset_info
from r1sft.errors import R1sftError

SAMPLE_DATASET = "r1sft_sample"


def load_dataset_info(dataset_dir: Path) -> dict[str, Any] | None:
    """The parsed dataset_info.json of ``dataset_dir`` (read by the converters' own reader), or None when there is
    none."""
    if not (dataset_dir / DATASET_INFO).is_file():
        return None
    return read_dataset_info(dataset_dir)


def special_tokens(entry: dict[str, Any]) -> list[str]:
    """The special tokens a dataset_info.json entry says its data needs (``r1sft.special_tokens``)."""
    block = entry.get("r1sft") if isinstance(entry, dict) else None
    tokens = block.get("special_tokens") if isinstance(block, dict) else None
    return [str(token) for token in tokens] if isinstance(tokens, list) else []


def datasets_special_tokens(names: list[str], dataset_dir: Path, *, require: bool) -> list[str]:
    """The union, in order, of the special tokens the named datasets need.

    With ``require`` every name must be registered. The bundled sample may be missing before the converters helper
    has produced it: it then contributes no tokens (it is converted without ``--think thought``).
    """
    info = load_dataset_info(dataset_dir) or {}
    tokens: list[str] = []
    for name in names:
        if name not in info:
            if require and name != SAMPLE_DATASET:
                known = ", ".join(sorted(info)) or "none"
                raise R1sftError(
                    f"dataset '{name}' is not registered in {dataset_dir / 'dataset_info.json'} (registered: {known}); "
                    "convert it first: r1sft convert SOURCE --input FILE --output data/<name>.jsonl"
                )
            continue
        for token in special_tokens(info[name]):
            if token not in tokens:
                tokens.append(token)
    return tokens


def dataset_files_missing(entry: dict[str, Any], dataset_dir: Path) -> str | None:
    """Why a registered dataset cannot be loaded from disk, or None when its file (or folder) is there."""
    if not isinstance(entry, dict):
        return "its dataset_info.json entry is not an object"
    for remote in ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name"):
        if entry.get(remote):
            return f"it is loaded from {remote} (r1sft works offline: convert it to a local file)"
    file_name = entry.get("file_name")
    if not file_name:
        return "its entry has no file_name"
    path = dataset_dir / str(file_name)
    if not path.exists():
        return f"its file {path} does not exist"
    return None


def dataset_rows(entry: dict[str, Any], dataset_dir: Path) -> int | None:
    """Rows in a registered dataset: 0 for an empty file, else the converter's ``r1sft.rows``, else what a peek at
    the file tells (1 for "at least one"); None when neither says."""
    path = dataset_dir / str(entry.get("file_name", ""))
    if path.is_file() and path.stat().st_size == 0:
        return 0
    block = entry.get("r1sft")
    rows = block.get("rows") if isinstance(block, dict) else None
    if isinstance(rows, int) and not isinstance(rows, bool):
        return rows
    return _peek_rows(path) if path.is_file() else None


def _peek_rows(path: Path) -> int | None:
    """0 or 1 (has a row) for JSON Lines and JSON files, the row count of a parquet file, None for other formats."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception:  # noqa: BLE001 - an unreadable file is the loader's to report
            return None
    with path.open("rb") as handle:
        if suffix == ".json":  # an array: empty when it closes before its first element
            head = handle.read(1 << 16).lstrip()
            return 0 if not head or (head[:1] == b"[" and head[1:].lstrip()[:1] == b"]") else 1
        if suffix == ".jsonl":
            return 1 if any(line.strip() for line in handle) else 0
    return None


def empty_dataset(name: str, entry: dict[str, Any], dataset_dir: Path) -> str | None:
    """Why the dataset would stop training before its first step (it has no rows), naming the fix; or None."""
    if not isinstance(entry, dict) or dataset_rows(entry, dataset_dir) != 0:
        return None
    file = dataset_dir / str(entry.get("file_name", ""))
    return (f"dataset '{name}' has no rows ({file}): LLaMA-Factory would fail loading it; convert data with rows "
            "into it, or leave it out of the datasets")


def datasets_keeping_earlier_reasoning(names: list[str], dataset_dir: Path) -> list[str]:
    """The named datasets converted with ``--earlier-reasoning keep`` (absent from the entry: dropped)."""
    info = load_dataset_info(dataset_dir) or {}
    return [name for name in names
            if isinstance(info.get(name), dict) and (info[name].get("r1sft") or {}).get("earlier_reasoning") == "keep"]
