"""What a recipe needs to know about its datasets: their dataset_info.json entries and the special tokens they need.

Converters register each dataset in ``<dataset_dir>/dataset_info.json`` with an extra ``"r1sft"`` block that
LLaMA-Factory ignores; data converted with ``--think thought`` lists the tags it needs as special tokens there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from r1sft.errors import R1sftError

SAMPLE_DATASET = "r1sft_sample"


def load_dataset_info(dataset_dir: Path) -> dict[str, Any] | None:
    """The parsed dataset_info.json of ``dataset_dir``, or None when there is none."""
    path = dataset_dir / "dataset_info.json"
    if not path.is_file():
        return None
    try:
        with path.open(encoding="utf-8") as handle:
            info = json.load(handle)
    except json.JSONDecodeError as exc:
        raise R1sftError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise R1sftError(f"{path}: expected an object mapping dataset names to entries")
    return info


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


def datasets_keeping_earlier_reasoning(names: list[str], dataset_dir: Path) -> list[str]:
    """The named datasets converted with ``--earlier-reasoning keep`` (absent from the entry: dropped)."""
    info = load_dataset_info(dataset_dir) or {}
    return [name for name in names
            if isinstance(info.get(name), dict) and (info[name].get("r1sft") or {}).get("earlier_reasoning") == "keep"]
