"""Register a converted file in the ``dataset_info.json`` beside it, the way LLaMA-Factory finds datasets.

Only the named entry is set; every other entry (and the order of entries) is preserved. The update holds an
exclusive lock on the folder so two conversions into the same folder cannot lose each other's entry, and the new
file replaces the old one atomically. A ``dataset_info.json`` that is not a JSON object is reported, never
overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from r1sft.errors import R1sftError

DATASET_INFO = "dataset_info.json"


def read_dataset_info(folder: Path) -> dict:
    """The entries of ``folder/dataset_info.json`` ({} when there is none): the one reader of that file here."""
    path = folder / DATASET_INFO
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise R1sftError(f"{path}: not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(info, dict):
        raise R1sftError(f"{path}: expected a JSON object of dataset entries")
    return info


def check_dataset_info(folder: Path) -> None:
    """Fail before converting, not after, when the registration would fail."""
    read_dataset_info(folder)


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Exclusive lock on the folder itself (flock on its descriptor), so no lock file is left behind."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks, single-writer assumed
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def updated_dataset_info(folder: Path, name: str, entry: dict) -> bytes:
    """The new ``dataset_info.json`` content with ``name`` set; call while holding ``folder_lock(folder)``."""
    info = read_dataset_info(folder)
    info[name] = entry
    return (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

